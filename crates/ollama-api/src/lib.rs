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
