//! `Store`: reads and writes manifests and blobs under one models directory.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::Digest as _;

use crate::{Digest, Manifest, ModelName};

/// Prefix of temporary files; leftovers from a crash are removed when the store opens.
const TEMPORARY_PREFIX: &str = ".modeld-tmp-";

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No manifest for this name.
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// A referenced blob is missing.
    #[error("blob \"{0}\" not found")]
    BlobNotFound(Digest),
    /// Uploaded bytes hashed to another digest.
    #[error("digest mismatch, expected \"{expected}\", got \"{actual}\"")]
    DigestMismatch {
        /// The digest the caller named.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A manifest file that does not parse.
    #[error("invalid manifest for {name}: {source}")]
    InvalidManifest {
        /// Which manifest.
        name: String,
        /// Why.
        source: serde_json::Error,
    },
    /// Filesystem failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// One model found in the store.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// Its name, spelled as on disk.
    pub name: ModelName,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// sha256 of the manifest file bytes.
    pub manifest_digest: Digest,
    /// Manifest file modification time.
    pub modified_at: SystemTime,
}

/// A models directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A blob being written: bytes go to a temporary file and are hashed on the way.
/// Dropping it without [`BlobWrite::finish`] removes the temporary file.
pub struct BlobWrite {
    blobs_dir: PathBuf,
    file: tempfile::NamedTempFile,
    hasher: sha2::Sha256,
    n_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the models directory at `root`, and removes temporary files
    /// left behind by a crash.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.blobs_dir(), store.manifests_dir()] {
            fs::create_dir_all(&dir).map_err(io_context(format!("creating {}", dir.display())))?;
        }
        if let Ok(entries) = fs::read_dir(store.blobs_dir()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(TEMPORARY_PREFIX) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(store)
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Where the blob with this digest lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Starts writing a blob.
    pub fn begin_blob(&self) -> Result<BlobWrite> {
        let blobs_dir = self.blobs_dir();
        let file = tempfile::Builder::new()
            .prefix(TEMPORARY_PREFIX)
            .tempfile_in(&blobs_dir)
            .map_err(io_context("creating temporary blob"))?;
        Ok(BlobWrite { blobs_dir, file, hasher: sha2::Sha256::new(), n_bytes: 0 })
    }

    /// Writes a whole blob from a reader; verifies it against `expected` when given.
    pub fn write_blob(&self, mut reader: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let mut blob = self.begin_blob()?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n_read = reader.read(&mut buffer).map_err(io_context("reading blob source"))?;
            if n_read == 0 {
                break;
            }
            blob.write(&buffer[..n_read])?;
        }
        blob.finish(expected)
    }

    /// Writes a small blob from memory.
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        self.write_blob(bytes, None)
    }

    /// Reads a blob as UTF-8 text (templates, system prompts, params).
    pub fn read_blob_string(&self, digest: &Digest) -> Result<String> {
        let bytes = fs::read(self.blob_path(digest)).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.clone()),
            _ => Error::Io { context: format!("reading blob {digest}"), source: error },
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Finds the on-disk spelling of a name, folding case part by part.
    fn existing_manifest_path(&self, name: &ModelName) -> Option<PathBuf> {
        let mut path = self.manifests_dir();
        for part in [&name.host, &name.namespace, &name.model, &name.tag] {
            let exact = path.join(part);
            if exact.exists() {
                path = exact;
                continue;
            }
            let entries = fs::read_dir(&path).ok()?;
            let found =
                entries.flatten().find(|entry| entry.file_name().to_string_lossy().eq_ignore_ascii_case(part))?;
            path = found.path();
        }
        path.is_file().then_some(path)
    }

    fn name_from_manifest_path(&self, path: &Path) -> Option<ModelName> {
        let relative = path.strip_prefix(self.manifests_dir()).ok()?;
        let parts: Vec<String> =
            relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
        let [host, namespace, model, tag] = <[String; 4]>::try_from(parts).ok()?;
        ModelName::parse(&format!("{host}/{namespace}/{model}:{tag}")).ok()
    }

    /// Reads the manifest of a model.
    pub fn get(&self, name: &ModelName) -> Result<ModelEntry> {
        let path = self.existing_manifest_path(name).ok_or_else(|| Error::ModelNotFound(name.display_shortest()))?;
        self.read_entry(&path)
    }

    fn read_entry(&self, path: &Path) -> Result<ModelEntry> {
        let name =
            self.name_from_manifest_path(path).ok_or_else(|| Error::ModelNotFound(path.display().to_string()))?;
        let bytes = fs::read(path).map_err(io_context(format!("reading manifest {}", path.display())))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|source| Error::InvalidManifest { name: name.display_shortest(), source })?;
        let modified_at = fs::metadata(path).and_then(|metadata| metadata.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(ModelEntry { name, manifest, manifest_digest: Digest::of_bytes(&bytes), modified_at })
    }

    /// Every model with a readable manifest, newest first.
    pub fn list(&self) -> Vec<ModelEntry> {
        let mut entries = Vec::new();
        let mut stack = vec![self.manifests_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(read_dir) = fs::read_dir(&dir) else { continue };
            for entry in read_dir.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(model_entry) = self.read_entry(&path) {
                    entries.push(model_entry);
                }
            }
        }
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.modified_at));
        entries
    }

    /// Writes a manifest under `name`, atomically. Every blob it references must already be
    /// in the store, so a manifest never points at a missing blob.
    pub fn put(&self, name: &ModelName, manifest: &Manifest) -> Result<Digest> {
        for digest in manifest.all_digests() {
            if !self.has_blob(digest) {
                return Err(Error::BlobNotFound(digest.clone()));
            }
        }
        let path = self
            .existing_manifest_path(name)
            .unwrap_or_else(|| self.manifests_dir().join(name.manifest_relative_path()));
        let bytes = serde_json::to_vec(manifest).expect("manifests always serialize");
        let dir = path.parent().expect("manifest paths have a parent");
        fs::create_dir_all(dir).map_err(io_context(format!("creating {}", dir.display())))?;
        write_file_atomically(dir, &path, &bytes)?;
        Ok(Digest::of_bytes(&bytes))
    }

    /// Copies a model under a new name; blobs are shared.
    pub fn copy(&self, source: &ModelName, destination: &ModelName) -> Result<()> {
        let entry = self.get(source)?;
        self.put(destination, &entry.manifest)?;
        Ok(())
    }

    /// Removes a model: its manifest, empty directories above it, and blobs that no other
    /// manifest references.
    pub fn delete(&self, name: &ModelName) -> Result<()> {
        let path = self.existing_manifest_path(name).ok_or_else(|| Error::ModelNotFound(name.display_shortest()))?;
        let removed = self.read_entry(&path).ok();
        fs::remove_file(&path).map_err(io_context(format!("removing {}", path.display())))?;
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(current) = dir {
            if current == self.manifests_dir() || fs::remove_dir(&current).is_err() {
                break;
            }
            dir = current.parent().map(Path::to_path_buf);
        }
        if let Some(removed) = removed {
            self.remove_unreferenced(removed.manifest.all_digests().cloned().collect())?;
        }
        Ok(())
    }

    /// Deletes those of `candidates` that no manifest references any more.
    pub fn remove_unreferenced(&self, candidates: Vec<Digest>) -> Result<()> {
        let in_use: std::collections::HashSet<Digest> =
            self.list().iter().flat_map(|entry| entry.manifest.all_digests().cloned().collect::<Vec<_>>()).collect();
        for digest in candidates {
            if !in_use.contains(&digest) {
                let _ = fs::remove_file(self.blob_path(&digest));
            }
        }
        Ok(())
    }
}

impl BlobWrite {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.n_bytes += bytes.len() as u64;
        self.file.write_all(bytes).map_err(io_context("writing blob"))
    }

    /// Syncs and moves the blob to its content address. With `expected`, a different digest
    /// is an error and nothing is kept.
    pub fn finish(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let digest = Digest::from_hasher(self.hasher);
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(Error::DigestMismatch { expected: expected.clone(), actual: digest });
            }
        }
        self.file.as_file().sync_all().map_err(io_context("syncing blob"))?;
        let destination = self.blobs_dir.join(digest.file_name());
        self.file.persist(&destination).map_err(|error| Error::Io {
            context: format!("moving blob to {}", destination.display()),
            source: error.error,
        })?;
        sync_dir(&self.blobs_dir);
        Ok((digest, self.n_bytes))
    }
}

fn write_file_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(dir)
        .map_err(io_context(format!("creating temporary file in {}", dir.display())))?;
    file.write_all(bytes).map_err(io_context("writing manifest"))?;
    file.as_file().sync_all().map_err(io_context("syncing manifest"))?;
    file.persist(path).map_err(|error| Error::Io {
        context: format!("moving manifest to {}", path.display()),
        source: error.error,
    })?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests;
