//! `modeld run MODEL [PROMPT]`: one streamed answer, or an interactive chat with history.

// A command-line face: it prints its answers on stdout.
#![allow(clippy::print_stdout)]

use std::io::{IsTerminal, Read, Write};

use anyhow::bail;
use serde_json::{json, Map, Value};

use crate::client::{is_not_found, Client};

pub(crate) struct RunConfig {
    pub(crate) model: String,
    pub(crate) prompt: String,
    pub(crate) verbose: bool,
    pub(crate) keep_alive: Option<String>,
}

pub(crate) async fn run(config: RunConfig) -> anyhow::Result<()> {
    let client = Client::from_environment();
    let shown = match client.post("/api/show", &json!({"model": config.model})).await {
        Ok(shown) => shown,
        Err(error) if is_not_found(&error) => {
            bail!("model '{}' not found; import it with `modeld create {} -f Modelfile`", config.model, config.model);
        }
        Err(error) => return Err(error),
    };
    let capabilities = shown["capabilities"].as_array().cloned().unwrap_or_default();
    let embeds_only = capabilities.contains(&json!("embedding")) && !capabilities.contains(&json!("completion"));
    let mut prompt = config.prompt.clone();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        // A closed or unreadable stdin counts as empty input.
        let mut piped = String::new();
        let _ = stdin.lock().read_to_string(&mut piped);
        if !piped.trim().is_empty() {
            prompt = if prompt.is_empty() { piped } else { format!("{prompt}\n{piped}") };
        }
    }
    if embeds_only {
        return embed_once(&client, &config, &prompt).await;
    }
    if !prompt.is_empty() || !stdin.is_terminal() {
        return generate_once(&client, &config, &prompt).await;
    }
    interactive(&client, &config).await
}

/// An embedding model's answer: the vector of the input, as a JSON array on one line.
async fn embed_once(client: &Client, config: &RunConfig, input: &str) -> anyhow::Result<()> {
    if input.trim().is_empty() {
        bail!("{} is an embedding model: give the text to embed, as an argument or on stdin", config.model);
    }
    let mut request = base_request(config);
    request.insert("input".into(), Value::from(input));
    let answer = client.post("/api/embed", &Value::Object(request)).await?;
    let vector = answer["embeddings"].get(0).cloned().unwrap_or_else(|| json!([]));
    println!("{vector}");
    Ok(())
}

fn base_request(config: &RunConfig) -> Map<String, Value> {
    let mut request = Map::new();
    request.insert("model".into(), Value::from(config.model.clone()));
    if let Some(keep_alive) = &config.keep_alive {
        request.insert("keep_alive".into(), Value::from(keep_alive.clone()));
    }
    request
}

/// A spinner on stderr (when it is a terminal) until the first token arrives or it is dropped.
struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner { task: None };
        }
        let task = tokio::spawn(async {
            let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            for frame in frames.iter().cycle() {
                eprint!("\r{frame} ");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        Spinner { task: Some(task) }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            eprint!("\r  \r");
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn generate_once(client: &Client, config: &RunConfig, prompt: &str) -> anyhow::Result<()> {
    let mut request = base_request(config);
    request.insert("prompt".into(), Value::from(prompt));
    let mut stdout = std::io::stdout();
    let mut final_chunk = Value::Null;
    let mut spinner = Spinner::start();
    client
        .stream("/api/generate", &Value::Object(request), |chunk| {
            spinner.stop();
            if let Some(text) = chunk["response"].as_str() {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            if chunk["done"] == true {
                final_chunk = chunk.clone();
            }
            Ok(())
        })
        .await?;
    println!();
    if config.verbose {
        print_timings(&final_chunk);
    }
    Ok(())
}

async fn interactive(client: &Client, config: &RunConfig) -> anyhow::Result<()> {
    let mut load = base_request(config);
    load.insert("prompt".into(), Value::from(""));
    let mut spinner = Spinner::start();
    client.post("/api/generate", &Value::Object(load)).await?;
    spinner.stop();
    let mut editor = rustyline::DefaultEditor::new()?;
    let history_path = std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".modeld_history"));
    if let Some(path) = &history_path {
        let _ = editor.load_history(path);
    }
    let mut messages: Vec<Value> = Vec::new();
    loop {
        let line = match editor.readline(">>> ") {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(input);
        match input {
            "/bye" | "/exit" => break,
            "/clear" => {
                messages.clear();
                println!("Cleared session context");
                continue;
            }
            "/?" | "/help" => {
                println!("Available Commands:\n  /clear          Clear session context\n  /bye            Exit\n  /?, /help       Help for a command\n");
                continue;
            }
            command if command.starts_with('/') => {
                println!("Unknown command '{command}'. Type /? for help");
                continue;
            }
            _ => {}
        }
        messages.push(json!({"role": "user", "content": input}));
        let mut request = base_request(config);
        request.insert("messages".into(), Value::from(messages.clone()));
        let mut answer = String::new();
        let mut final_chunk = Value::Null;
        let mut stdout = std::io::stdout();
        let mut spinner = Spinner::start();
        let result = client
            .stream("/api/chat", &Value::Object(request), |chunk| {
                spinner.stop();
                if let Some(text) = chunk["message"]["content"].as_str() {
                    answer.push_str(text);
                    stdout.write_all(text.as_bytes())?;
                    stdout.flush()?;
                }
                if chunk["done"] == true {
                    final_chunk = chunk.clone();
                }
                Ok(())
            })
            .await;
        println!("\n");
        if let Err(error) = result {
            eprintln!("Error: {error:#}");
            messages.pop();
            continue;
        }
        messages.push(json!({"role": "assistant", "content": answer}));
        if config.verbose {
            print_timings(&final_chunk);
        }
    }
    if let Some(path) = &history_path {
        let _ = editor.save_history(path);
    }
    Ok(())
}

fn print_timings(chunk: &Value) {
    let nanos = |key: &str| chunk[key].as_u64().unwrap_or_default();
    let seconds = |key: &str| std::time::Duration::from_nanos(nanos(key));
    let rate = |count: &str, duration: &str| {
        let duration = nanos(duration) as f64 / 1e9;
        if duration > 0.0 {
            nanos(count) as f64 / duration
        } else {
            0.0
        }
    };
    eprintln!("total duration:       {:?}", seconds("total_duration"));
    eprintln!("load duration:        {:?}", seconds("load_duration"));
    eprintln!("prompt eval count:    {} token(s)", nanos("prompt_eval_count"));
    eprintln!("prompt eval duration: {:?}", seconds("prompt_eval_duration"));
    eprintln!("prompt eval rate:     {:.2} tokens/s", rate("prompt_eval_count", "prompt_eval_duration"));
    eprintln!("eval count:           {} token(s)", nanos("eval_count"));
    eprintln!("eval duration:        {:?}", seconds("eval_duration"));
    eprintln!("eval rate:            {:.2} tokens/s", rate("eval_count", "eval_duration"));
}
