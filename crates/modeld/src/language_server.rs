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

pub(crate) async fn run(stats: bool) -> anyhow::Result<()> {
    let cache_dir = cache_dir();
    if stats {
        print!("{}", lsp::load_stats(&cache_dir).summary());
        return Ok(());
    }
    // stdout is the protocol: logs go to stderr, which editors keep in their LSP log.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MODELD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let launcher = std::env::current_exe().ok().map(|command| lsp::Launcher {
        command,
        arguments: vec!["serve".into()],
        log_path: cache_dir.join("logs").join("serve.log"),
    });
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
