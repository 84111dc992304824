//! `modeld bench`: starts a daemon, measures prompt-eval and decode speed, time to first token
//! and the daemon's peak memory, and optionally runs llama.cpp's `llama-bench` beside it.

/// Benchmark settings.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Model to measure (must exist in the store).
    #[arg(long, default_value = "smollm2:135m")]
    pub(crate) model: String,
}

pub(crate) async fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not built yet")
}
