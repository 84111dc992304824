//! Remote models: the core's requests for models served by other servers, sent to one of
//! their replicas and streamed back as the core's events.
//!
//! [`RemoteClient`] implements [`serving::RemoteModels`]. For each request it picks a replica
//! ([`routing`]: the one whose prefix cache likely holds the prompt, else the least loaded
//! healthy one), speaks its API ([`ollama`] or [`openai`]), and translates the stream as it
//! arrives ([`decode`]). A replica that fails before the first token (refused connection, a
//! server error, a stream that ends early) is marked down and probed with a growing backoff,
//! and the request goes once to another; a failure after the first token ends the stream with
//! an error event. Dropping the stream closes the upstream request. API keys are read, by the
//! lookup the daemon gives, when each request is sent, and never stored.
//!
//! Without the default `client` feature only the pure parts build (routing, request bodies,
//! stream decoding): the fuzz targets use them without an HTTP client.

#[cfg(feature = "client")]
mod client;
pub mod decode;
pub mod ollama;
pub mod openai;
pub mod routing;
pub mod schema;

#[cfg(feature = "client")]
pub use client::{KeyLookup, RemoteClient, RemoteSettings};
