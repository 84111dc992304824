//! Serde types for Ollama's HTTP wire format: requests, responses and stream chunks.
//!
//! These types are a compatibility promise with every Ollama client, so they mirror Ollama's
//! JSON field for field. Parsing of loosely typed fields (`keep_alive`, `options`, `think`)
//! into checked values also lives here, next to the fields it reads, and so does the parser of
//! Ollama's Modelfile format ([`modelfile`]).

mod duration;
pub mod modelfile;
mod types;

pub use duration::{parse_go_duration, KeepAlive, KeepAliveError};
/// Request `options` and Modelfile `PARAMETER`s; the params layer's format is the store's.
pub use model_store::{Options, OptionsError};
pub use types::*;

/// modeld's extension to the wire format: a request header asking for interactive priority
/// (a completion an editor asks for while the user types), served ahead of chats. Ollama
/// ignores it.
pub const PRIORITY_HEADER: &str = "x-modeld-priority";
/// The [`PRIORITY_HEADER`] value for interactive priority.
pub const PRIORITY_INTERACTIVE: &str = "interactive";
