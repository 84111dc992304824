//! What happened to suggestions: requests, cache hits, cancellations, accepts and dismissals,
//! and latency, kept per language server process in a file the user can read with
//! `modeld lsp --stats`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latency samples kept for percentiles.
const KEPT_LATENCIES: usize = 2000;

/// Counters of one language server process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Inline completion requests received.
    pub requests: u64,
    /// Requests answered from the cache (typing through, or the same place again).
    pub cache_hits: u64,
    /// Requests that asked the model.
    pub generations: u64,
    /// Requests that returned a suggestion.
    pub suggestions: u64,
    /// Requests cancelled by the client or by a newer request for the same document.
    pub cancelled: u64,
    /// Requests that failed (daemon unreachable, model missing, bad position).
    pub failed: u64,
    /// Suggestions the user accepted whole.
    pub accepted: u64,
    /// Suggestions the user accepted part of.
    pub partially_accepted: u64,
    /// Characters accepted, whole or partly.
    pub accepted_characters: u64,
    /// Suggestions the user dismissed.
    pub dismissed: u64,
    /// Latency of answered requests in milliseconds, most recent last.
    pub latencies_ms: Vec<u32>,
}

/// Percentiles of a latency list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub p50_ms: u32,
    pub p95_ms: u32,
}

impl Stats {
    pub fn record_latency(&mut self, latency: Duration) {
        if self.latencies_ms.len() == KEPT_LATENCIES {
            self.latencies_ms.remove(0);
        }
        self.latencies_ms.push(latency.as_millis().min(u32::MAX as u128) as u32);
    }

    pub fn percentiles(&self) -> Option<Percentiles> {
        percentiles(&self.latencies_ms)
    }

    /// Adds another process's counters to these.
    pub fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.cache_hits += other.cache_hits;
        self.generations += other.generations;
        self.suggestions += other.suggestions;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
        self.accepted += other.accepted;
        self.partially_accepted += other.partially_accepted;
        self.accepted_characters += other.accepted_characters;
        self.dismissed += other.dismissed;
        self.latencies_ms.extend_from_slice(&other.latencies_ms);
    }

    /// A human summary, as `modeld lsp --stats` prints it.
    pub fn summary(&self) -> String {
        let shown_outcomes = self.accepted + self.partially_accepted + self.dismissed;
        let acceptance = if shown_outcomes == 0 {
            "n/a".to_owned()
        } else {
            format!("{:.0}%", 100.0 * (self.accepted + self.partially_accepted) as f64 / shown_outcomes as f64)
        };
        let latency = match self.percentiles() {
            Some(Percentiles { p50_ms, p95_ms }) => format!("p50 {p50_ms} ms, p95 {p95_ms} ms"),
            None => "n/a".to_owned(),
        };
        format!(
            "requests            {}\n\
             from cache          {}\n\
             asked the model     {}\n\
             with a suggestion   {}\n\
             cancelled           {}\n\
             failed              {}\n\
             accepted            {}\n\
             partly accepted     {}\n\
             accepted characters {}\n\
             dismissed           {}\n\
             acceptance rate     {acceptance}\n\
             latency             {latency}\n",
            self.requests,
            self.cache_hits,
            self.generations,
            self.suggestions,
            self.cancelled,
            self.failed,
            self.accepted,
            self.partially_accepted,
            self.accepted_characters,
            self.dismissed,
        )
    }
}

/// The 50th and 95th percentiles (nearest rank) of `samples`.
pub fn percentiles(samples: &[u32]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = |fraction: f64| {
        let index = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    Some(Percentiles { p50_ms: rank(0.5), p95_ms: rank(0.95) })
}

/// Where language server processes keep their statistics.
pub fn stats_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("lsp-stats")
}

/// Writes this process's statistics (a whole-file replace, so a reader never sees half).
pub fn save(cache_dir: &Path, stats: &Stats) -> std::io::Result<()> {
    let directory = stats_dir(cache_dir);
    std::fs::create_dir_all(&directory)?;
    let path = directory.join(format!("{}.json", std::process::id()));
    let temporary = directory.join(format!(".{}.json.tmp", std::process::id()));
    std::fs::write(&temporary, serde_json::to_vec(stats).unwrap_or_default())?;
    std::fs::rename(temporary, path)
}

/// The statistics of every language server process that saved any, added up.
pub fn load_all(cache_dir: &Path) -> Stats {
    let mut total = Stats::default();
    let Ok(entries) = std::fs::read_dir(stats_dir(cache_dir)) else { return total };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|extension| extension == "json") {
            // Bounded: a stats file is a few kilobytes; skip anything odd.
            if entry.metadata().is_ok_and(|metadata| metadata.len() < 1 << 20) {
                if let Some(stats) =
                    std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice::<Stats>(&bytes).ok())
                {
                    total.add(&stats);
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentiles(&samples), Some(Percentiles { p50_ms: 50, p95_ms: 95 }));
        assert_eq!(percentiles(&[7]), Some(Percentiles { p50_ms: 7, p95_ms: 7 }));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn saved_stats_add_up_across_processes() {
        let directory = std::env::temp_dir().join(format!("modeld-lsp-stats-test-{}", std::process::id()));
        let stats = Stats { requests: 3, accepted: 1, dismissed: 1, latencies_ms: vec![10, 20], ..Stats::default() };
        save(&directory, &stats).unwrap();
        std::fs::write(stats_dir(&directory).join("1.json"), serde_json::to_vec(&stats).unwrap()).unwrap();
        std::fs::write(stats_dir(&directory).join("2.json"), b"not json").unwrap();
        let total = load_all(&directory);
        assert_eq!(total.requests, 6);
        assert_eq!(total.latencies_ms.len(), 4);
        assert!(total.summary().contains("acceptance rate     50%"));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
