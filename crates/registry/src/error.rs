//! `Error`: what can go wrong talking to a registry, worded as Ollama words it.

use model_store::Digest;

/// A pull or push failure. The `Display` text is what the API streams as `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry has no manifest for this name (a `404`).
    #[error("pull model manifest: file does not exist")]
    ManifestNotFound,
    /// The local store has no model of this name (push).
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// A name with `http://` pulled or pushed without `insecure`.
    #[error("insecure protocol http")]
    InsecureProtocol,
    /// The registry refused the credentials or the token.
    #[error("unauthorized: access denied")]
    Unauthorized,
    /// A downloaded blob hashed to another digest; it was deleted.
    #[error("digest mismatch, file must be downloaded again: want {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the manifest names.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The registry answered with an error status.
    #[error("{0}")]
    Registry(String),
    /// The registry broke the protocol (a malformed manifest, a blob of the wrong length...).
    #[error("{0}")]
    Protocol(String),
    /// The connection failed.
    #[error("{0}")]
    Network(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] model_store::Error),
}

impl Error {
    /// The HTTP status a non-streaming request answers with: Ollama reports pull and push
    /// failures as 500, except an unknown model (404) and a refused login (401).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::ModelNotFound(_) => 404,
            Error::Unauthorized => 401,
            _ => 500,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(error: reqwest::Error) -> Error {
        // reqwest's own text stops at the outermost cause ("error sending request"); the
        // useful part (connection refused, certificate) is below it.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Network(text)
    }
}
