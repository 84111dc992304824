//! modeld's language server: inline fill-in-the-middle completion for editors, asking the
//! daemon over its Ollama API so that one loaded model serves every editor and agent.

pub mod cache;
pub mod chat;
mod completion;
pub mod daemon;
pub mod documents;
pub mod index;
pub mod postprocess;
pub mod prompt;
mod server;
pub mod settings;
pub mod stats;
pub mod syntax;
pub mod text;

pub use daemon::Launcher;
pub use server::{
    serve_stdio, supported_languages, LanguageServerConfig, ACCEPT_COMMAND, CHAT_METHOD, CUSTOM_COMPLETION_METHOD,
    DISMISS_COMMAND, EXPLAIN_COMMAND, PARTIAL_ACCEPT_COMMAND, STATS_COMMAND,
};
pub use settings::DEFAULT_MODEL;
pub use stats::{load_all as load_stats, Stats};
