//! `modeld lsp`: the language server over stdio, or `--stats` to print what it recorded.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use crate::environment;

/// modeld's cache directory: `$XDG_CACHE_HOME/modeld`, else `~/.cache/modeld`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(cache) = environment::variable("XDG_CACHE_HOME").filter(|path| !path.is_empty()) {
        return PathBuf::from(cache).join("modeld");
    }
    let home = environment::variable("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("modeld")
}

/// Logs to stderr without colours, for commands whose stdout is a protocol (LSP, MCP): the
/// `MODELD_LOG` filter, else `default_filter`.
pub(crate) fn log_to_stderr(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MODELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}

/// How the stdio faces start the daemon when none answers: `modeld serve`, logging to the
/// cache directory.
pub(crate) fn daemon_launcher() -> Option<lsp::Launcher> {
    std::env::current_exe().ok().map(|command| lsp::Launcher {
        command,
        arguments: vec!["serve".into()],
        log_path: cache_dir().join("logs").join("serve.log"),
    })
}

pub(crate) async fn run(stats: bool) -> anyhow::Result<()> {
    let cache_dir = cache_dir();
    if stats {
        print!("{}", lsp::load_stats(&cache_dir).summary());
        return Ok(());
    }
    // Editors keep stderr in their LSP log.
    log_to_stderr("info");
    let launcher = daemon_launcher();
    let no_autostart = environment::flag("MODELD_LSP_NO_AUTOSTART");
    lsp::serve_stdio(lsp::LanguageServerConfig {
        base_url: environment::base_url(),
        launcher: if no_autostart { None } else { launcher },
        cache_dir,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
    .await;
    Ok(())
}
