//! `Digest`: a parsed, validated `sha256:<64 hex>` content address.

use std::fmt;
use std::str::FromStr;

/// A sha256 digest, stored as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// The text did not match `^sha256[:-][0-9a-fA-F]{64}$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest format")]
pub struct DigestError;

impl Digest {
    /// Parses `sha256:<hex>` or `sha256-<hex>` (the form used in blob file names).
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let hex_part = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("sha256-")).ok_or(DigestError)?;
        if hex_part.len() != 64 || !hex_part.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(DigestError);
        }
        Ok(Digest { hex: hex_part.to_ascii_lowercase() })
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest { hex: hex::encode(sha2::Sha256::digest(bytes)) }
    }

    /// The digest of everything `reader` yields, read in 1 MiB pieces (a GGUF file is never
    /// held in memory whole).
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<Digest> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n_read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => n_read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            hasher.update(&buffer[..n_read]);
        }
        Ok(Digest::from_hasher(hasher))
    }

    /// The digest of the file at `path`, streamed.
    pub fn of_file(path: &std::path::Path) -> std::io::Result<Digest> {
        Digest::of_reader(std::fs::File::open(path)?)
    }

    pub(crate) fn from_hasher(hasher: sha2::Sha256) -> Digest {
        use sha2::Digest as _;
        Digest { hex: hex::encode(hasher.finalize()) }
    }

    /// The 64 lowercase hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first twelve hex characters, as Ollama's CLI shows them.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The blob file name, `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(text: &str) -> Result<Digest, DigestError> {
        Digest::parse(text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}
