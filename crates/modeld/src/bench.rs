//! `modeld bench`: a benchmark suite that measures a modeld daemon and, side by side, llama.cpp
//! (`llama-bench` for raw prompt and decode speed, `llama-server` for serving figures) on the
//! same GGUF file, and prints each figure with the modeld/llama.cpp speed ratio.
//!
//! Serving figures go through each server's streaming HTTP API the same way: time to first
//! token cold, for the same prompt again and for a prompt extending the previous one (the
//! completion-as-you-type pattern), throughput and latency under concurrent requests, the gaps
//! between tokens while new requests keep arriving, the latency of each keystroke's completion in
//! a typing session, load time and peak memory.

// A command-line face: it prints its answers on stdout.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
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
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rounds of the whole suite, modeld and llama.cpp taking turns; each figure is the median
    /// over rounds, so that a slow spell of the machine falls on both systems rather than one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Prompt lengths, in tokens, for the prompt-speed figures.
    #[arg(long, value_delimiter = ',', default_value = "128,512,2048")]
    prompt_tokens: Vec<usize>,
    /// Tokens generated for the decode figure.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Concurrent request counts for the serving figures.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    concurrency: Vec<usize>,
    /// Milliseconds between the starts of the steady-arrivals figures' requests (at most a
    /// minute).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(..=60_000))]
    arrival_ms: u64,
    /// `OLLAMA_NUM_PARALLEL` for the measured daemon; by default the largest concurrency, the
    /// number of slots llama-server gets, so both serve the same number of requests at once.
    #[arg(long)]
    num_parallel: Option<usize>,
    /// Threads for llama.cpp (modeld uses every core).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, usize::from))]
    threads: usize,
    /// llama.cpp's `llama-bench`, for prompt and decode speed on the same file.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// llama.cpp's `llama-server`, for the serving figures on the same file.
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// Print the figures as one JSON document (machine, settings, rows), for runs compared over
    /// time (`bench/results/`), instead of the table.
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    /// The most concurrent requests measured: llama-server's slot count.
    fn max_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(1)
    }

    /// `OLLAMA_NUM_PARALLEL` for the measured daemon.
    fn num_parallel(&self) -> usize {
        self.num_parallel.unwrap_or_else(|| self.max_concurrency()).max(1)
    }
}

/// Tokens each concurrent request generates.
const CONCURRENT_DECODE_TOKENS: usize = 64;
/// The prompt of the prefix-reuse figures, in tokens, and how much the extended one adds.
const PREFIX_PROMPT_TOKENS: usize = 512;
const PREFIX_EXTENSION_TOKENS: usize = 20;
const SENTENCE: &str = "The quick brown fox jumps over the lazy dog near the quiet river bank. ";
/// Requests of one steady-arrivals run, started `--arrival-ms` apart, each generating
/// [`CONCURRENT_DECODE_TOKENS`].
const ARRIVING_REQUESTS: usize = 12;
/// Characters typed, one completion request each, in one typing session.
const TYPED_CHARACTERS: usize = 40;
/// Tokens of each keystroke's suggestion (a short line).
const TYPING_SUGGESTION_TOKENS: usize = 8;

/// A figure of one system.
#[derive(Debug, Clone, Copy, Default)]
struct Figure(Option<f64>);

/// One line of the report.
struct Row {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    modeld: Figure,
    llama: Figure,
}

/// Serving figures, per system.
#[derive(Default)]
struct ServingFigures {
    load_seconds: Option<f64>,
    /// Cold, same again, extended by a few tokens.
    first_token_ms: [Option<f64>; 3],
    /// Per concurrency: total tokens/s, p50 and p95 latency (ms).
    concurrent: Vec<(usize, f64, f64, f64)>,
    /// Under steady arrivals: the p95 and the longest gap between two tokens of one answer (ms).
    arrival_gap_ms: [Option<f64>; 2],
    /// In a typing session: the median and p95 time to a keystroke's whole suggestion (ms).
    typing_ms: [Option<f64>; 2],
    peak_rss_mib: Option<f64>,
}

impl ServingFigures {
    /// Each figure's median over rounds (a figure missing from a round is left out of its median).
    fn median_of(rounds: &[ServingFigures]) -> ServingFigures {
        let median_of = |pick: &dyn Fn(&ServingFigures) -> Option<f64>| {
            let values: Vec<f64> = rounds.iter().filter_map(pick).collect();
            (!values.is_empty()).then(|| median(values))
        };
        let n_concurrent = rounds.iter().map(|round| round.concurrent.len()).min().unwrap_or(0);
        ServingFigures {
            load_seconds: median_of(&|round| round.load_seconds),
            first_token_ms: std::array::from_fn(|index| median_of(&|round| round.first_token_ms[index])),
            concurrent: (0..n_concurrent)
                .map(|index| {
                    let n_requests = rounds[0].concurrent[index].0;
                    let at = |pick: fn(&(usize, f64, f64, f64)) -> f64| {
                        median(rounds.iter().map(|round| pick(&round.concurrent[index])).collect())
                    };
                    (n_requests, at(|figures| figures.1), at(|figures| figures.2), at(|figures| figures.3))
                })
                .collect(),
            arrival_gap_ms: std::array::from_fn(|index| median_of(&|round| round.arrival_gap_ms[index])),
            typing_ms: std::array::from_fn(|index| median_of(&|round| round.typing_ms[index])),
            peak_rss_mib: median_of(&|round| round.peak_rss_mib),
        }
    }
}

/// Each position's median over rounds of speed figures (prompt lengths, then decode).
fn median_speeds(rounds: &[Vec<f64>]) -> Vec<f64> {
    let n_figures = rounds.iter().map(Vec::len).min().unwrap_or(0);
    (0..n_figures).map(|index| median(rounds.iter().map(|round| round[index]).collect())).collect()
}

pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let gguf = std::fs::canonicalize(&args.gguf).with_context(|| format!("reading {}", args.gguf.display()))?;
    let mut rows = Vec::new();

    // Raw speed: modeld's figures come from its own measured durations; llama-bench's are its
    // averages over the same lengths. Each round measures modeld, then llama.cpp.
    let mut modeld_rounds = Vec::new();
    let mut llama_speed_rounds = Vec::new();
    let mut llama_serving_rounds = Vec::new();
    for round in 0..args.rounds {
        if args.rounds > 1 {
            eprintln!("round {} of {}", round + 1, args.rounds);
        }
        modeld_rounds.push(run_modeld(&args, &gguf).await?);
        if let Some(binary) = &args.llama_bench {
            llama_speed_rounds.push(run_llama_bench(binary, &gguf, &args)?);
        }
        if let Some(binary) = &args.llama_server {
            match run_llama_server(binary, &gguf, &args).await {
                Ok(figures) => llama_serving_rounds.push(figures),
                Err(error) => eprintln!("llama-server: {error:#}"),
            }
        }
    }
    let (modeld_speed_rounds, modeld_serving_rounds): (Vec<_>, Vec<_>) = modeld_rounds.into_iter().unzip();
    let modeld_speed = median_speeds(&modeld_speed_rounds);
    let modeld_serving = ServingFigures::median_of(&modeld_serving_rounds);
    let llama_speed = (!llama_speed_rounds.is_empty()).then(|| median_speeds(&llama_speed_rounds));
    let llama_serving = (!llama_serving_rounds.is_empty()).then(|| ServingFigures::median_of(&llama_serving_rounds));

    for (index, n_tokens) in args.prompt_tokens.iter().enumerate() {
        rows.push(Row {
            name: format!("prompt, {n_tokens} tokens"),
            unit: "tokens/s",
            higher_is_better: true,
            modeld: Figure(modeld_speed.get(index).copied()),
            llama: Figure(llama_speed.as_ref().and_then(|speed| speed.get(index).copied())),
        });
    }
    rows.push(Row {
        name: format!("decode, {} tokens", args.decode_tokens),
        unit: "tokens/s",
        higher_is_better: true,
        modeld: Figure(modeld_speed.last().copied()),
        llama: Figure(llama_speed.as_ref().and_then(|speed| speed.last().copied())),
    });
    // How close decoding comes to streaming the weights at the machine's memory speed: the
    // bytes a decoding step reads times tokens/s, as a share of the copy bandwidth.
    let bandwidth = copy_bandwidth_bytes_per_second();
    let bytes_per_token = decode_bytes_per_token(&gguf);
    let share = |speed: Option<f64>| bytes_per_token.zip(speed).map(|(bytes, speed)| 100.0 * bytes * speed / bandwidth);
    let decode_row = rows.last().map(|row| (row.modeld.0, row.llama.0)).unwrap_or_default();
    rows.push(Row {
        name: "decode, share of copy bandwidth".to_owned(),
        unit: "%",
        higher_is_better: true,
        modeld: Figure(share(decode_row.0)),
        llama: Figure(share(decode_row.1)),
    });
    let mut serving_row = |name: String, unit, higher_is_better, pick: &dyn Fn(&ServingFigures) -> Option<f64>| {
        let (modeld, llama) = (Figure(pick(&modeld_serving)), Figure(llama_serving.as_ref().and_then(pick)));
        rows.push(Row { name, unit, higher_is_better, modeld, llama });
    };
    let labels = [
        format!("first token, {PREFIX_PROMPT_TOKENS}-token prompt"),
        "first token, same prompt again".to_owned(),
        format!("first token, prompt +{PREFIX_EXTENSION_TOKENS} tokens"),
    ];
    for (index, name) in labels.into_iter().enumerate() {
        serving_row(name, "ms", false, &|figures| figures.first_token_ms[index]);
    }
    for (index, n_requests) in args.concurrency.iter().enumerate() {
        let at = |figures: &ServingFigures| figures.concurrent.get(index).copied();
        serving_row(format!("{n_requests} concurrent: total"), "tokens/s", true, &|figures| {
            at(figures).map(|(_, rate, _, _)| rate)
        });
        serving_row(format!("{n_requests} concurrent: p50 latency"), "ms", false, &|figures| {
            at(figures).map(|(_, _, p50, _)| p50)
        });
        serving_row(format!("{n_requests} concurrent: p95 latency"), "ms", false, &|figures| {
            at(figures).map(|(_, _, _, p95)| p95)
        });
    }
    let labels = ["steady arrivals: p95 gap between tokens", "steady arrivals: longest gap"];
    for (index, name) in labels.into_iter().enumerate() {
        serving_row(name.to_owned(), "ms", false, &|figures| figures.arrival_gap_ms[index]);
    }
    let labels = ["typing session: median suggestion", "typing session: p95 suggestion"];
    for (index, name) in labels.into_iter().enumerate() {
        serving_row(name.to_owned(), "ms", false, &|figures| figures.typing_ms[index]);
    }
    serving_row("load".into(), "s", false, &|figures| figures.load_seconds);
    serving_row("peak RSS".into(), "MiB", false, &|figures| figures.peak_rss_mib);

    let memory = Memory { copy_bandwidth_bytes_per_second: bandwidth, decode_bytes_per_token: bytes_per_token };
    if args.json {
        println!("{:#}", report_json(&args, &gguf, &memory, &rows));
        return Ok(());
    }
    println!(
        "{} ({} runs per figure in each of {} rounds, medians; {} CPUs; modeld OLLAMA_NUM_PARALLEL={}, llama-server {} slots)",
        gguf.display(),
        args.runs,
        args.rounds,
        num_cpus(),
        args.num_parallel(),
        args.max_concurrency()
    );
    println!(
        "{:<36} {:>12} {:>12}  {:<9} {:>8}",
        "figure", "modeld", "llama.cpp", "unit", "speed ratio (>1: modeld ahead)"
    );
    for row in rows {
        let show = |figure: Figure| figure.0.map_or("-".to_owned(), |value| format!("{value:.1}"));
        let ratio = row.ratio().map_or("-".to_owned(), |ratio| format!("{ratio:.2}"));
        println!("{:<36} {:>12} {:>12}  {:<9} {:>8}", row.name, show(row.modeld), show(row.llama), row.unit, ratio);
    }
    println!(
        "memory copy bandwidth {:.1} GB/s; a decoding step reads {} MB of weights",
        memory.copy_bandwidth_bytes_per_second / 1e9,
        memory.decode_bytes_per_token.map_or("?".to_owned(), |bytes| format!("{:.1}", bytes / 1e6))
    );
    Ok(())
}

/// What the decode figures are measured against.
struct Memory {
    copy_bandwidth_bytes_per_second: f64,
    decode_bytes_per_token: Option<f64>,
}

/// Bytes of weights one decoding step reads: every tensor, except a token-embedding table beside
/// a separate output matrix, of which a step reads one row, left out (SmolLM2 ties the two, so
/// its table counts whole, as the output matrix).
fn decode_bytes_per_token(gguf: &Path) -> Option<f64> {
    let header = model_store::gguf::read_header(gguf).ok()?;
    let has_output = header.tensors.iter().any(|tensor| tensor.name == "output.weight");
    let bytes = header
        .tensors
        .iter()
        .filter(|tensor| !(has_output && tensor.name == "token_embd.weight"))
        .map(|tensor| tensor.size_bytes)
        .sum::<u64>();
    Some(bytes as f64)
}

/// Bytes per second that `memcpy` moves between two buffers far larger than the caches, one
/// part per core in parallel, median of five runs (each byte read once and written once).
fn copy_bandwidth_bytes_per_second() -> f64 {
    const BYTES: usize = 256 << 20;
    let threads = num_cpus();
    let source = vec![1u8; BYTES];
    let mut destination = vec![0u8; BYTES];
    let part = BYTES.div_ceil(threads);
    let rates = (0..6)
        .map(|_| {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for (from, to) in source.chunks(part).zip(destination.chunks_mut(part)) {
                    scope.spawn(move || to.copy_from_slice(from));
                }
            });
            BYTES as f64 / started.elapsed().as_secs_f64()
        })
        .collect::<Vec<_>>();
    // The first run also faults the destination's pages in.
    median(rates[1..].to_vec())
}

impl Row {
    /// modeld's speed relative to llama.cpp's: above 1 when modeld is ahead, whichever way the
    /// figure counts.
    fn ratio(&self) -> Option<f64> {
        match (self.modeld.0, self.llama.0) {
            (Some(modeld), Some(llama)) if modeld > 0.0 && llama > 0.0 => {
                Some(if self.higher_is_better { modeld / llama } else { llama / modeld })
            }
            _ => None,
        }
    }
}

/// The suite's figures as one JSON document: when and where it ran, with what settings, and
/// each row with its ratio.
fn report_json(args: &BenchArgs, gguf: &Path, memory: &Memory, rows: &[Row]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "figure": row.name,
                "unit": row.unit,
                "higher_is_better": row.higher_is_better,
                "modeld": row.modeld.0,
                "llama_cpp": row.llama.0,
                "ratio": row.ratio(),
            })
        })
        .collect();
    json!({
        "suite": "modeld bench",
        "modeld_version": env!("CARGO_PKG_VERSION"),
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": {
            "cpu": cpu_model(),
            "cpus": num_cpus(),
            "arch": std::env::consts::ARCH,
            "features": cpu_features(),
            "copy_bandwidth_gb_per_second": memory.copy_bandwidth_bytes_per_second / 1e9,
        },
        "decode_weight_bytes_per_token": memory.decode_bytes_per_token,
        "model": gguf.file_name().map(|name| name.to_string_lossy().into_owned()),
        "settings": {
            "runs": args.runs,
            "rounds": args.rounds,
            "prompt_tokens": args.prompt_tokens,
            "decode_tokens": args.decode_tokens,
            "concurrency": args.concurrency,
            "arrival_ms": args.arrival_ms,
            "num_parallel": args.num_parallel(),
            "llama_cpp_threads": args.threads,
            "llama_bench": args.llama_bench.is_some(),
            "llama_server": args.llama_server.is_some(),
        },
        "rows": rows,
    })
}

/// The SIMD extensions the CPU reports, of those the kernels may use.
fn cpu_features() -> Vec<&'static str> {
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let detected = [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
            ("avx512vnni", std::arch::is_x86_feature_detected!("avx512vnni")),
            ("avxvnni", std::arch::is_x86_feature_detected!("avxvnni")),
        ];
        features.extend(detected.iter().filter(|(_, present)| *present).map(|(name, _)| *name));
    }
    #[cfg(target_arch = "aarch64")]
    features.push("neon");
    features
}

/// The CPU's model name (`/proc/cpuinfo` on Linux), for comparing runs across machines.
fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, name)| name.trim().to_owned()))
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A server under test, spoken to through its streaming completion endpoint.
#[derive(Clone)]
enum Server {
    Modeld(Client),
    Llama(Client),
}

/// One streamed completion.
struct Completion {
    first_token: Duration,
    /// When each streamed piece of the answer arrived, from the request's start.
    token_times: Vec<Duration>,
    total: Duration,
    n_generated: usize,
    /// The final object.
    done: Value,
}

impl Server {
    async fn complete(&self, prompt: &str, n_predict: usize) -> anyhow::Result<Completion> {
        let (client, path, body) = match self {
            Server::Modeld(client) => (
                client,
                "/api/generate",
                json!({"model": "bench", "prompt": prompt, "raw": true,
                       "options": {"temperature": 0, "num_predict": n_predict, "num_ctx": 4096}}),
            ),
            Server::Llama(client) => (
                client,
                "/completion",
                json!({"prompt": prompt, "n_predict": n_predict, "stream": true, "cache_prompt": true,
                       "temperature": 0}),
            ),
        };
        let started = Instant::now();
        let mut first_token = None;
        let mut token_times = Vec::new();
        let mut done = Value::Null;
        client
            .stream(path, &body, |object| {
                let now = started.elapsed();
                first_token.get_or_insert(now);
                if object["done"] == true || object["stop"] == true {
                    done = object.clone();
                } else {
                    token_times.push(now);
                }
                Ok(())
            })
            .await?;
        let n_generated = done["eval_count"]
            .as_u64()
            .or_else(|| done["tokens_predicted"].as_u64())
            .or_else(|| done["timings"]["predicted_n"].as_u64())
            .unwrap_or(0) as usize;
        let total = started.elapsed();
        Ok(Completion { first_token: first_token.unwrap_or(total), token_times, total, n_generated, done })
    }
}

/// Measures the serving figures of a running server (`pid` for its memory).
async fn measure_serving(
    server: &Server,
    args: &BenchArgs,
    tokens_per_sentence: f64,
    pid: u32,
) -> anyhow::Result<ServingFigures> {
    let mut figures = ServingFigures::default();
    let sentences = |n_tokens: usize| (n_tokens as f64 / tokens_per_sentence).round().max(1.0) as usize;
    let mut first_token_ms: [Vec<f64>; 3] = Default::default();
    for run in 0..args.runs {
        // A unique number first, so no earlier run's prefix helps.
        let prompt = format!("Prefix run {run}. {}", SENTENCE.repeat(sentences(PREFIX_PROMPT_TOKENS)));
        let extended = format!("{prompt}{}", SENTENCE.repeat(sentences(PREFIX_EXTENSION_TOKENS)));
        for (index, text) in [&prompt, &prompt, &extended].into_iter().enumerate() {
            let completion = server.complete(text, 1).await?;
            first_token_ms[index].push(completion.first_token.as_secs_f64() * 1e3);
        }
    }
    for (index, samples) in first_token_ms.into_iter().enumerate() {
        figures.first_token_ms[index] = Some(median(samples));
    }
    for &n_requests in &args.concurrency {
        let mut rates = Vec::new();
        let mut latencies = Vec::new();
        for run in 0..args.runs {
            let started = Instant::now();
            let requests: Vec<_> = (0..n_requests)
                .map(|request| {
                    let server = server.clone();
                    let prompt = format!("Request {run}-{request}. Count from 1 to 1000: 1, 2, 3, 4, 5,");
                    tokio::spawn(async move { server.complete(&prompt, CONCURRENT_DECODE_TOKENS).await })
                })
                .collect();
            let mut n_generated = 0;
            for request in requests {
                let completion = request.await??;
                n_generated += completion.n_generated;
                latencies.push(completion.total.as_secs_f64() * 1e3);
            }
            rates.push(n_generated as f64 / started.elapsed().as_secs_f64());
        }
        figures.concurrent.push((n_requests, median(rates), percentile(&latencies, 0.5), percentile(&latencies, 0.95)));
    }
    let gaps = steady_arrival_gaps_ms(server, args).await?;
    figures.arrival_gap_ms = [Some(percentile(&gaps, 0.95)), gaps.iter().copied().reduce(f64::max)];
    let latencies = typing_session_latencies_ms(server, args).await?;
    figures.typing_ms = [Some(percentile(&latencies, 0.5)), Some(percentile(&latencies, 0.95))];
    figures.peak_rss_mib = peak_rss_bytes(pid).map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    Ok(figures)
}

/// The gaps between successive tokens of every answer while requests keep arriving: in each
/// run, [`ARRIVING_REQUESTS`] requests of a few sentences start `--arrival-ms` apart, so each
/// new prompt comes while earlier answers are decoding (a server that pauses running answers
/// for newcomers shows it here).
async fn steady_arrival_gaps_ms(server: &Server, args: &BenchArgs) -> anyhow::Result<Vec<f64>> {
    let mut gaps = Vec::new();
    for run in 0..args.runs {
        let started = tokio::time::Instant::now();
        let requests: Vec<_> = (0..ARRIVING_REQUESTS)
            .map(|request| {
                let server = server.clone();
                let prompt = format!(
                    "Arrival {run}-{request}. {}Count from 1 to 1000: 1, 2, 3,",
                    SENTENCE.repeat(1 + request % 4)
                );
                let start_at = started + Duration::from_millis(args.arrival_ms * request as u64);
                tokio::spawn(async move {
                    tokio::time::sleep_until(start_at).await;
                    server.complete(&prompt, CONCURRENT_DECODE_TOKENS).await
                })
            })
            .collect();
        for request in requests {
            let completion = request.await??;
            let times = &completion.token_times;
            gaps.extend(times.windows(2).map(|pair| (pair[1] - pair[0]).as_secs_f64() * 1e3));
        }
    }
    Ok(gaps)
}

/// The time to each keystroke's whole suggestion while typing: a source file of about 500
/// tokens, then [`TYPED_CHARACTERS`] characters typed one at a time, each asking for a
/// suggestion of [`TYPING_SUGGESTION_TOKENS`] tokens continuing the text up to the cursor, one
/// after the other, as an editor's completion client asks (the language server's own cache and
/// debouncing left out: this measures the server).
async fn typing_session_latencies_ms(server: &Server, args: &BenchArgs) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for run in 0..args.runs {
        let mut text = format!("# Typing session {run}.\n");
        for index in 0..12 {
            text.push_str(&format!("def weighted_sum_{index}(values):\n    total = 0\n"));
            text.push_str(&format!("    for value in values:\n        total += value * {index}\n    return total\n\n"));
        }
        let typed = "def running_mean(values, window):\n    result = []\n    for index in range(len(values)):\n";
        for character in typed.chars().take(TYPED_CHARACTERS) {
            text.push(character);
            let completion = server.complete(&text, TYPING_SUGGESTION_TOKENS).await?;
            latencies.push(completion.total.as_secs_f64() * 1e3);
        }
    }
    Ok(latencies)
}

/// Starts a daemon, imports the weights, and measures prompt and decode speed (by the
/// daemon's own figures) and the serving figures. Returns prompt speeds per length, then
/// decode speed.
async fn run_modeld(args: &BenchArgs, gguf: &Path) -> anyhow::Result<(Vec<f64>, ServingFigures)> {
    let home = std::env::temp_dir().join(format!("modeld-bench-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let host = format!("127.0.0.1:{}", free_port()?);
    let mut daemon = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("OLLAMA_HOST", &host)
        .env("OLLAMA_MODELS", home.join("models"))
        .env("OLLAMA_KEEP_ALIVE", "-1")
        .env("OLLAMA_NUM_PARALLEL", args.num_parallel().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = daemon.id().context("daemon pid")?;
    let result = async {
        let client = Client::new(format!("http://{host}"));
        wait_until_up(&client, "/api/version").await?;
        let digest = crate::create::file_digest(gguf).await?;
        client.upload_blob(gguf, &digest, |_, _| {}).await?;
        let file_name = gguf.file_name().unwrap_or_default().to_string_lossy().into_owned();
        client.post("/api/create", &json!({"model": "bench", "files": {file_name: digest}, "stream": false})).await?;
        let load_started = Instant::now();
        client.post("/api/generate", &json!({"model": "bench", "prompt": ""})).await?;
        let load_seconds = load_started.elapsed().as_secs_f64();

        let server = Server::Modeld(client);
        let calibration = server.complete(&format!("0 {}", SENTENCE.repeat(10)), 1).await?;
        let tokens_per_sentence = (calibration.done["prompt_eval_count"].as_f64().unwrap_or(150.0) / 10.0).max(1.0);
        let mut speeds = Vec::new();
        for &n_tokens in &args.prompt_tokens {
            let n_sentences = (n_tokens as f64 / tokens_per_sentence).round().max(1.0) as usize;
            let mut rates = Vec::new();
            for run in 0..args.runs {
                let prompt = format!("{n_tokens}-{run} {}", SENTENCE.repeat(n_sentences));
                let completion = server.complete(&prompt, 1).await?;
                rates.push(rate(&completion.done, "prompt_eval_count", "prompt_eval_duration"));
            }
            speeds.push(median(rates));
        }
        let mut rates = Vec::new();
        for run in 0..args.runs {
            let prompt = format!("Run {run}. Count from 1 to 1000: 1, 2, 3, 4, 5,");
            let completion = server.complete(&prompt, args.decode_tokens).await?;
            rates.push(rate(&completion.done, "eval_count", "eval_duration"));
        }
        speeds.push(median(rates));
        let mut serving = measure_serving(&server, args, tokens_per_sentence, pid).await?;
        serving.load_seconds = Some(load_seconds);
        anyhow::Ok((speeds, serving))
    }
    .await;
    let _ = daemon.kill().await;
    let _ = std::fs::remove_dir_all(&home);
    result
}

/// Starts `llama-server` on the same file with one slot per concurrent request, and measures
/// the serving figures.
async fn run_llama_server(binary: &Path, gguf: &Path, args: &BenchArgs) -> anyhow::Result<ServingFigures> {
    let port = free_port()?;
    let max_concurrency = args.max_concurrency();
    let started = Instant::now();
    let mut server = tokio::process::Command::new(binary)
        .arg("-m")
        .arg(gguf)
        .args(["-t", &args.threads.to_string(), "--port", &port.to_string()])
        .args(["-np", &max_concurrency.to_string(), "-c", &(4096 * max_concurrency).to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = server.id().context("llama-server pid")?;
    let result = async {
        let client = Client::without_connection_reuse(format!("http://127.0.0.1:{port}"));
        wait_until_up(&client, "/health").await?;
        let load_seconds = started.elapsed().as_secs_f64();
        let server = Server::Llama(client.clone());
        let tokenized = client.post("/tokenize", &json!({"content": format!("0 {}", SENTENCE.repeat(10))})).await?;
        let tokens_per_sentence = (tokenized["tokens"].as_array().map_or(150, Vec::len) as f64 / 10.0).max(1.0);
        let mut figures = measure_serving(&server, args, tokens_per_sentence, pid).await?;
        figures.load_seconds = Some(load_seconds);
        anyhow::Ok(figures)
    }
    .await;
    let _ = server.kill().await;
    result
}

/// llama-bench's prompt speeds (one per requested length), then its decode speed.
fn run_llama_bench(binary: &Path, gguf: &Path, args: &BenchArgs) -> anyhow::Result<Vec<f64>> {
    let lengths: Vec<String> = args.prompt_tokens.iter().map(usize::to_string).collect();
    let output = std::process::Command::new(binary)
        .arg("-m")
        .arg(gguf)
        .args(["-t", &args.threads.to_string(), "-p", &lengths.join(","), "-n", &args.decode_tokens.to_string()])
        .args(["-r", &args.runs.to_string(), "-o", "json"])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).context("parsing llama-bench JSON")?;
    let speed = |n_prompt: usize, n_gen: usize| {
        results
            .iter()
            .find(|result| {
                result["n_prompt"].as_u64() == Some(n_prompt as u64) && result["n_gen"].as_u64() == Some(n_gen as u64)
            })
            .and_then(|result| result["avg_ts"].as_f64())
            .unwrap_or(0.0)
    };
    let mut speeds: Vec<f64> = args.prompt_tokens.iter().map(|n_tokens| speed(*n_tokens, 0)).collect();
    speeds.push(speed(0, args.decode_tokens));
    Ok(speeds)
}

async fn wait_until_up(client: &Client, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.get(path).await.is_err() {
        if Instant::now() > deadline {
            bail!("the server did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
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

fn median(values: Vec<f64>) -> f64 {
    percentile(&values, 0.5)
}

/// The value below which `fraction` of `values` lie (nearest rank; the median of an even
/// count is the mean of the middle two).
fn percentile(values: &[f64], fraction: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if fraction == 0.5 && sorted.len().is_multiple_of(2) {
        let middle = sorted.len() / 2;
        return (sorted[middle - 1] + sorted[middle]) / 2.0;
    }
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.95), 95.0);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn rounds_merge_figure_by_figure() {
        let round = |load, first, rate, rss| ServingFigures {
            load_seconds: load,
            first_token_ms: [Some(first), Some(first / 10.0), None],
            concurrent: vec![(1, rate, rate * 2.0, rate * 3.0), (8, rate * 4.0, 1.0, 2.0)],
            arrival_gap_ms: [Some(rate), None],
            typing_ms: [Some(first), Some(rate)],
            peak_rss_mib: rss,
        };
        let rounds = [
            round(Some(1.0), 300.0, 10.0, Some(900.0)),
            round(None, 100.0, 30.0, Some(700.0)),
            round(Some(3.0), 200.0, 20.0, None),
        ];
        let merged = ServingFigures::median_of(&rounds);
        assert_eq!(merged.load_seconds, Some(2.0));
        assert_eq!(merged.first_token_ms, [Some(200.0), Some(20.0), None]);
        assert_eq!(merged.concurrent, vec![(1, 20.0, 40.0, 60.0), (8, 80.0, 1.0, 2.0)]);
        assert_eq!(merged.arrival_gap_ms, [Some(20.0), None]);
        assert_eq!(merged.typing_ms, [Some(200.0), Some(20.0)]);
        assert_eq!(merged.peak_rss_mib, Some(800.0));
        assert_eq!(median_speeds(&[vec![1.0, 5.0, 9.0], vec![3.0, 4.0], vec![2.0, 6.0, 7.0]]), vec![2.0, 5.0]);
    }

    #[test]
    fn ratios_say_modeld_is_ahead_above_one_and_the_json_carries_every_row() {
        let row = |name: &str, unit, higher_is_better, modeld, llama| Row {
            name: name.into(),
            unit,
            higher_is_better,
            modeld: Figure(modeld),
            llama: Figure(llama),
        };
        let rows = [
            row("decode", "tokens/s", true, Some(60.0), Some(40.0)),
            row("first token", "ms", false, Some(200.0), Some(100.0)),
            row("load", "s", false, Some(1.0), None),
        ];
        assert_eq!(rows[0].ratio(), Some(1.5));
        assert_eq!(rows[1].ratio(), Some(0.5));
        assert_eq!(rows[2].ratio(), None);
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            args: BenchArgs,
        }
        let parse = |extra: &[&str]| {
            let command = ["bench", "--gguf", "m.gguf", "--json"].iter().chain(extra);
            <Command as clap::Parser>::try_parse_from(command).map(|command| command.args)
        };
        // A spacing that would overflow the arrival times is refused, not a panic mid-run.
        assert!(parse(&["--arrival-ms", "18446744073709551615"]).is_err());
        assert_eq!(parse(&["--arrival-ms", "60000"]).unwrap().arrival_ms, 60_000);
        let args = parse(&[]).unwrap();
        let memory = Memory { copy_bandwidth_bytes_per_second: 10e9, decode_bytes_per_token: Some(98e6) };
        let report = report_json(&args, Path::new("/models/m.gguf"), &memory, &rows);
        assert_eq!(report["model"], "m.gguf");
        assert_eq!(report["settings"]["prompt_tokens"], json!([128, 512, 2048]));
        assert_eq!(report["settings"]["rounds"], 1);
        assert_eq!(report["rows"].as_array().unwrap().len(), 3);
        assert_eq!(
            report["rows"][1],
            json!({"figure": "first token", "unit": "ms", "higher_is_better": false,
            "modeld": 200.0, "llama_cpp": 100.0, "ratio": 0.5})
        );
        assert_eq!(report["rows"][2]["ratio"], Value::Null);
        assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
        assert_eq!(report["machine"]["copy_bandwidth_gb_per_second"], 10.0);
        assert_eq!(report["decode_weight_bytes_per_token"], 98e6);
    }
}
