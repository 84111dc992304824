//! The local model store in Ollama's on-disk layout: names, digests, manifests and blobs.
//!
//! A models directory holds `manifests/<host>/<namespace>/<model>/<tag>` files (Docker v2
//! manifests) and content-addressed `blobs/sha256-<hex>` files. Everything that writes goes
//! through a temporary file, `fsync` and `rename`, so a crash never leaves a partial blob or a
//! manifest pointing at a missing blob.

mod digest;
pub mod gguf;
mod manifest;
mod name;
mod store;

pub use digest::{Digest, DigestError};
pub use manifest::{media_type, ConfigV2, Layer, Manifest};
pub use name::{ModelName, NameError, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG};
pub use store::{BlobWrite, Error, ModelEntry, Result, Store};
