//! Pull and push models between the local store and a registry, over the OCI distribution
//! protocol (Docker registry v2) that Ollama's registry speaks.
//!
//! A model name's host is the registry (`registry.ollama.ai` by default), its namespace and
//! model the repository, its tag the manifest reference. Requests go over https unless the pull
//! or push is `insecure` (or the name says `http://` and the request allows it).
//!
//! - [`pull`]: the manifest, then every blob the store lacks, in parallel parts with HTTP
//!   `Range`, into a resumable partial file ([`model_store::BlobDownload`]); every new blob is
//!   hashed before it becomes a blob, and the manifest (its bytes as received) is written only
//!   after all its blobs are in place. Layers only the replaced manifest used are removed.
//! - [`push`]: every blob the registry lacks (a `HEAD` first; a cross-repository mount when the
//!   layer came from another model on the same registry; monolithic or chunked uploads), then
//!   the manifest's bytes as stored.
//! - Authentication: a `401` with a `Bearer` challenge is answered by asking the challenge's
//!   realm for a token (only on the registry's own host) and retrying once.
//!
//! Progress is reported as Ollama reports it ([`Progress`]); errors read as Ollama's
//! ([`Error`]). Every response body read is bounded; a registry's answer can never make a blob
//! longer than its manifest says, nor write a manifest whose blobs are not verified.

mod auth;
mod client;
mod error;
mod pull;
mod push;

pub use error::Error;
pub use pull::pull;
pub use push::push;

/// How to reach the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Use plain http instead of https.
    pub insecure: bool,
    /// Fetch blobs in parts of this size instead of a sixteenth of the blob between 100 MB
    /// and 1 GB.
    pub part_bytes: Option<u64>,
}

/// One progress report, as Ollama streams them: a status, and for a blob its digest, size and
/// bytes done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `pulling manifest`, `pulling <hex12>`, `verifying sha256 digest`, `pushing <hex12>`...
    pub status: String,
    /// The blob, for per-blob statuses.
    pub digest: Option<String>,
    /// Its size.
    pub total: Option<u64>,
    /// Bytes transferred so far (absent when none, as Ollama omits a zero).
    pub completed: Option<u64>,
}

impl Progress {
    /// A status without a blob.
    pub fn status(text: impl Into<String>) -> Progress {
        Progress { status: text.into(), digest: None, total: None, completed: None }
    }

    /// A blob's progress under `verb` (`pulling`, `pushing`).
    fn blob(verb: &str, digest: &model_store::Digest, total: u64, completed: u64) -> Progress {
        Progress {
            status: format!("{verb} {}", digest.short()),
            digest: Some(digest.to_string()),
            total: Some(total),
            completed: (completed > 0).then_some(completed),
        }
    }
}

/// Where progress goes.
pub trait ProgressSink: Send + Sync {
    /// Reports one step.
    fn report(&self, progress: Progress);
}

impl<F: Fn(Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, progress: Progress) {
        self(progress)
    }
}
