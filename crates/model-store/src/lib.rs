//! The local model store in Ollama's on-disk layout: names, digests, manifests and blobs.
//!
//! A models directory holds `manifests/<host>/<namespace>/<model>/<tag>` files (Docker v2
//! manifests) and content-addressed `blobs/sha256-<hex>` files. The store keeps these
//! invariants (details in the `store` module):
//!
//! - a blob file's name is the digest of its bytes: blobs are written to a temporary file,
//!   hashed, `fsync`ed and renamed;
//! - manifests are replaced atomically, and no manifest this store writes names a missing blob:
//!   manifest writes and blob removals take turns under one write lock, shared by threads and,
//!   through `<root>/.modeld-store.lock`, by processes ([`Store::write_lock`]);
//! - garbage collection ([`Store::collect_garbage`]) removes only blobs that no manifest file
//!   references, counting every digest in the bytes of manifests it cannot parse, and keeps
//!   blobs younger than a grace period (uploads waiting for their create);
//! - a crash leaves at worst temporary files, empty directories and unreferenced blobs, which
//!   [`Store::open`] and the next collection remove; Ollama's own `-partial` files are never
//!   touched.
//!
//! [`gguf`] reads GGUF headers; no input can make it panic or allocate more than the file holds.
//! [`Options`] are the parameters a params layer (a Modelfile's `PARAMETER`s) and a request's
//! `options` set, checked as Ollama checks them.

pub mod convert_bert;
mod digest;
pub mod gguf;
mod manifest;
mod name;
mod options;
mod remote;
pub mod safetensors;
mod store;

pub use digest::{Digest, DigestError};
pub use manifest::{media_type, ConfigV2, Layer, Manifest};
pub use name::{ModelName, NameError, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG};
pub use options::{Options, OptionsError};
pub use remote::{RemoteApi, RemoteEndpoint, RemoteEndpointError};
pub use store::{
    BlobDownload, BlobWrite, DownloadPart, Error, GcPolicy, GcReport, ModelEntry, PartWriter, Result, Store,
    StoreWriteGuard, TemporaryBlobFile, LOCK_FILE_NAME, MAX_DOWNLOAD_PARTS,
};
