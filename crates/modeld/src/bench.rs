//! `modeld bench`: starts a daemon, measures prompt-eval and decode speed, time to first token
//! and the daemon's peak memory through the HTTP API, and optionally runs llama.cpp's
//! `llama-bench` on the same weights for a side-by-side ratio.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::Client;

/// Benchmark settings.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// GGUF weights to measure; imported into a temporary models directory as `bench`.
    #[arg(long)]
    gguf: PathBuf,
    /// Runs per figure; medians are printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Prompt length in tokens for the prompt-eval figure.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated for the decode figure.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Path to llama.cpp's `llama-bench`, run with `-t 2` on the same file for comparison.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
}

struct Figures {
    prompt_tokens_per_second: f64,
    decode_tokens_per_second: f64,
}

pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let gguf = std::fs::canonicalize(&args.gguf).with_context(|| format!("reading {}", args.gguf.display()))?;
    let home = std::env::temp_dir().join(format!("modeld-bench-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let host = format!("127.0.0.1:{port}");
    let mut daemon = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("OLLAMA_HOST", &host)
        .env("OLLAMA_MODELS", home.join("models"))
        .env("OLLAMA_KEEP_ALIVE", "-1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let daemon_pid = daemon.id().context("daemon pid")?;
    let result = measure(&args, &gguf, &host, daemon_pid).await;
    let _ = daemon.kill().await;
    let _ = std::fs::remove_dir_all(&home);
    let (figures, ttft, peak_rss_bytes, load) = result?;

    println!("modeld on {} ({} runs, medians)", gguf.display(), args.runs);
    println!("  load time                  {:>10.2} s", load.as_secs_f64());
    println!("  prompt eval ({:>4} tokens) {:>10.1} tokens/s", args.prompt_tokens, figures.prompt_tokens_per_second);
    println!("  decode      ({:>4} tokens) {:>10.1} tokens/s", args.decode_tokens, figures.decode_tokens_per_second);
    println!(
        "  time to first token        {:>10.1} ms  ({}-token prompt)",
        ttft.as_secs_f64() * 1e3,
        args.prompt_tokens
    );
    println!("  daemon peak RSS            {:>10.1} MiB", peak_rss_bytes as f64 / (1024.0 * 1024.0));
    if let Some(llama_bench) = &args.llama_bench {
        let reference = run_llama_bench(llama_bench, &gguf, &args)?;
        println!("llama.cpp llama-bench -t 2 on the same file");
        println!(
            "  prompt eval {:>10.1} tokens/s   modeld/llama.cpp {:.2}",
            reference.prompt_tokens_per_second,
            figures.prompt_tokens_per_second / reference.prompt_tokens_per_second
        );
        println!(
            "  decode      {:>10.1} tokens/s   modeld/llama.cpp {:.2}",
            reference.decode_tokens_per_second,
            figures.decode_tokens_per_second / reference.decode_tokens_per_second
        );
    }
    Ok(())
}

async fn measure(
    args: &BenchArgs,
    gguf: &std::path::Path,
    host: &str,
    daemon_pid: u32,
) -> anyhow::Result<(Figures, Duration, u64, Duration)> {
    let client = Client::new(format!("http://{host}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get("/api/version").await.is_err() {
        if Instant::now() > deadline {
            bail!("the benchmark daemon did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let digest = {
        let bytes = std::fs::read(gguf)?;
        use sha2::Digest as _;
        let hex: String = sha2::Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    };
    client.upload_blob(gguf, &digest, |_, _| {}).await?;
    let file_name = gguf.file_name().unwrap_or_default().to_string_lossy().into_owned();
    client.post("/api/create", &json!({"model": "bench", "files": {file_name: digest}, "stream": false})).await?;

    let load_started = Instant::now();
    client.post("/api/generate", &json!({"model": "bench", "prompt": ""})).await?;
    let load = load_started.elapsed();

    // A unique number first defeats mistral.rs's prefix cache, so every run evaluates the
    // whole prompt.
    let sentence = "The quick brown fox jumps over the lazy dog near the quiet river bank. ";
    let calibration = generate(&client, &format!("0 {}", sentence.repeat(10)), 1).await?;
    let tokens_per_sentence = (calibration.0["prompt_eval_count"].as_f64().unwrap_or(150.0) / 10.0).max(1.0);
    let n_sentences = (args.prompt_tokens as f64 / tokens_per_sentence).round().max(1.0) as usize;

    let mut prompt_rates = Vec::new();
    let mut first_token_times = Vec::new();
    for run in 0..args.runs {
        let prompt = format!("{} {}", run + 1, sentence.repeat(n_sentences));
        let (done, first_token) = generate(&client, &prompt, 1).await?;
        prompt_rates.push(rate(&done, "prompt_eval_count", "prompt_eval_duration"));
        first_token_times.push(first_token.as_secs_f64());
    }
    let mut decode_rates = Vec::new();
    for run in 0..args.runs {
        let prompt = format!("Run {run}. Count from 1 to 1000: 1, 2, 3, 4, 5,");
        let (done, _) = generate(&client, &prompt, args.decode_tokens).await?;
        decode_rates.push(rate(&done, "eval_count", "eval_duration"));
    }
    let peak_rss_bytes = std::fs::read_to_string(format!("/proc/{daemon_pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find(|line| line.starts_with("VmHWM:")).and_then(|line| {
                line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).map(|kib| kib * 1024)
            })
        })
        .unwrap_or(0);
    Ok((
        Figures { prompt_tokens_per_second: median(prompt_rates), decode_tokens_per_second: median(decode_rates) },
        Duration::from_secs_f64(median(first_token_times)),
        peak_rss_bytes,
        load,
    ))
}

/// Streams one raw generation; returns the final chunk and the time to the first text.
async fn generate(client: &Client, prompt: &str, num_predict: usize) -> anyhow::Result<(Value, Duration)> {
    let body = json!({
        "model": "bench", "prompt": prompt, "raw": true,
        "options": {"temperature": 0, "num_predict": num_predict, "num_ctx": 4096}
    });
    let started = Instant::now();
    let mut first_token = None;
    let mut done = Value::Null;
    client
        .stream("/api/generate", &body, |chunk| {
            if first_token.is_none() && chunk["response"].as_str().is_some_and(|text| !text.is_empty()) {
                first_token = Some(started.elapsed());
            }
            if chunk["done"] == true {
                done = chunk.clone();
            }
            Ok(())
        })
        .await?;
    Ok((done, first_token.unwrap_or_else(|| started.elapsed())))
}

fn rate(done: &Value, count: &str, duration: &str) -> f64 {
    let count = done[count].as_f64().unwrap_or(0.0);
    let seconds = done[duration].as_f64().unwrap_or(0.0) / 1e9;
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn run_llama_bench(binary: &std::path::Path, gguf: &std::path::Path, args: &BenchArgs) -> anyhow::Result<Figures> {
    let output = std::process::Command::new(binary)
        .args(["-m"])
        .arg(gguf)
        .args(["-t", "2", "-p", &args.prompt_tokens.to_string(), "-n", &args.decode_tokens.to_string(), "-o", "json"])
        .args(["-r", &args.runs.to_string()])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).context("parsing llama-bench JSON")?;
    let pick = |is_prompt: bool| {
        results
            .iter()
            .find(|result| (result["n_prompt"].as_u64().unwrap_or(0) > 0) == is_prompt)
            .and_then(|result| result["avg_ts"].as_f64())
            .unwrap_or(0.0)
    };
    Ok(Figures { prompt_tokens_per_second: pick(true), decode_tokens_per_second: pick(false) })
}
