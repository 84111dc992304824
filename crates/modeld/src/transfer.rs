//! `modeld pull` and `modeld push`: ask the daemon to move a model to or from a registry, and
//! draw its progress as Ollama's CLI does (a bar per blob, a line per step).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Client;
use crate::format::human_bytes;

/// Pulls (`push == false`) or pushes `model` through the daemon.
pub(crate) async fn transfer(model: &str, insecure: bool, push: bool) -> anyhow::Result<()> {
    let client = Client::from_environment();
    let path = if push { "/api/push" } else { "/api/pull" };
    let mut display = ProgressDisplay::new(std::io::stderr().is_terminal());
    let result = client
        .stream(path, &json!({"model": model, "insecure": insecure, "stream": true}), |line| {
            display.update(line);
            Ok(())
        })
        .await;
    display.finish_line();
    result?;
    if push {
        eprintln!("You can find your model at:\n\n\t{}", model_location(model));
    }
    Ok(())
}

/// Where a pushed model lives, for the closing message.
fn model_location(model: &str) -> String {
    match model_store_name(model) {
        Some((host, repository)) => format!("{host}/{repository}"),
        None => model.to_owned(),
    }
}

fn model_store_name(model: &str) -> Option<(String, String)> {
    let name = model_store::ModelName::parse(model).ok()?;
    Some((name.host.clone(), format!("{}/{}:{}", name.namespace, name.model, name.tag)))
}

/// Draws the progress stream: on a terminal, the current line is redrawn in place; elsewhere
/// each step and each finished blob is printed once.
struct ProgressDisplay {
    terminal: bool,
    current_status: Option<String>,
    line_open: bool,
    started: HashMap<String, (Instant, u64)>,
    last_draw: Option<Instant>,
}

impl ProgressDisplay {
    fn new(terminal: bool) -> ProgressDisplay {
        ProgressDisplay { terminal, current_status: None, line_open: false, started: HashMap::new(), last_draw: None }
    }

    fn update(&mut self, line: &Value) {
        let Some(status) = line.get("status").and_then(Value::as_str) else { return };
        let total = line.get("total").and_then(Value::as_u64);
        let completed = line.get("completed").and_then(Value::as_u64).unwrap_or(0);
        let new_step = self.current_status.as_deref() != Some(status);
        if new_step {
            self.finish_line();
            self.current_status = Some(status.to_owned());
            self.last_draw = None;
        }
        let text = match total {
            Some(total) => {
                let (started, first_completed) =
                    *self.started.entry(status.to_owned()).or_insert((Instant::now(), completed));
                bar_line(status, completed, total, started.elapsed(), completed.saturating_sub(first_completed))
            }
            None => status.to_owned(),
        };
        let done = total.is_none_or(|total| completed >= total);
        if self.terminal {
            let due = self.last_draw.is_none_or(|drawn| drawn.elapsed() >= Duration::from_millis(100));
            if due || done {
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r\x1b[K{text}");
                let _ = stderr.flush();
                self.line_open = true;
                self.last_draw = Some(Instant::now());
            }
        } else if new_step || done {
            // Without a terminal: the step once, and a blob again when it completes.
            if total.is_some() && !done {
                return;
            }
            eprintln!("{text}");
        }
    }

    fn finish_line(&mut self) {
        if self.line_open {
            eprintln!();
            self.line_open = false;
        }
    }
}

/// `pulling dde5aa3fc5ff:  45% ▕███████         ▏  45 MB/100 MB  12 MB/s  4s`.
fn bar_line(status: &str, completed: u64, total: u64, elapsed: Duration, transferred: u64) -> String {
    const WIDTH: u64 = 25;
    let fraction = if total == 0 { 1.0 } else { completed.min(total) as f64 / total as f64 };
    let filled = (fraction * WIDTH as f64).round() as u64;
    let bar: String = (0..WIDTH).map(|cell| if cell < filled { '█' } else { ' ' }).collect();
    let mut text = format!("{status}: {:>3.0}% ▕{bar}▏ {}", fraction * 100.0, human_bytes(total));
    if completed < total {
        text =
            format!("{status}: {:>3.0}% ▕{bar}▏ {}/{}", fraction * 100.0, human_bytes(completed), human_bytes(total));
        let seconds = elapsed.as_secs_f64();
        if seconds > 0.5 && transferred > 0 {
            let rate = transferred as f64 / seconds;
            let remaining = (total - completed) as f64 / rate;
            text.push_str(&format!("  {}/s  {}s", human_bytes(rate as u64), remaining.ceil() as u64));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_percent_sizes_and_rate() {
        assert_eq!(
            bar_line("pulling abc", 50_000_000, 100_000_000, Duration::from_secs(5), 50_000_000),
            "pulling abc:  50% ▕█████████████            ▏ 50 MB/100 MB  10 MB/s  5s"
        );
        assert_eq!(
            bar_line("pulling abc", 100, 100, Duration::ZERO, 0),
            "pulling abc: 100% ▕█████████████████████████▏ 100 B"
        );
        assert_eq!(
            bar_line("pushing abc", 0, 0, Duration::ZERO, 0),
            "pushing abc: 100% ▕█████████████████████████▏ 0 B"
        );
    }

    #[test]
    fn pushed_models_are_located_on_their_registry() {
        assert_eq!(model_location("127.0.0.1:5000/team/tiny"), "127.0.0.1:5000/team/tiny:latest");
        assert_eq!(model_location("smollm2:v1"), "registry.ollama.ai/library/smollm2:v1");
    }
}
