//! `Store`: reads and writes manifests and blobs under one models directory.
//!
//! Invariants, kept across threads, processes and crashes:
//!
//! - **A blob's name is its content's digest.** Bytes go to a temporary file (`.modeld-tmp-…`,
//!   exclusively `flock`ed while written), are hashed on the way, `fsync`ed and renamed into
//!   `blobs/sha256-<hex>`; the directory is `fsync`ed after the rename.
//! - **One writer at a time.** Every manifest change (`put`, `copy`, `delete`), every blob
//!   removal and every `touch_blob` runs under the store's write lock: an in-process lock shared by
//!   all clones of a [`Store`] plus an exclusive lock on `<root>/.modeld-store.lock`, so other
//!   modeld processes on the same directory wait too. [`Store::write_lock`] hands out the lock as
//!   a [`StoreWriteGuard`] for callers that must do several steps as one unit (write layer blobs,
//!   put the manifest, collect what the old manifest left behind); the guard has the same write
//!   methods, and while a thread holds it, it writes through the guard: the `Store` methods that
//!   lock would return [`Error::WriteLockHeld`] instead of deadlocking.
//! - **No manifest names a missing blob.** `put` checks that every blob exists under the lock,
//!   and blobs are only removed under the lock after reading every manifest file.
//! - **Unknown manifests protect their blobs.** A manifest file that does not parse (one Ollama is
//!   writing, a newer format) keeps every `sha256:<hex>` / `sha256-<hex>` string in its bytes
//!   alive and is reported, never deleted; a manifest file or directory that cannot be read stops
//!   the removal of any blob.
//! - **Young blobs survive collection.** [`Store::collect_garbage`] keeps unreferenced blobs
//!   modified less than [`GcPolicy::grace`] ago: uploads (`POST /api/blobs`) waiting for their
//!   create, blobs a client just checked with `HEAD` ([`Store::touch_blob`] refreshes the
//!   modification time), blobs of an Ollama pull whose manifest is not written yet.
//! - **Crashes leave nothing behind for long.** [`Store::open`] removes temporary files that no
//!   live writer holds locked, anywhere under `blobs/` and `manifests/`, and empty manifest
//!   directories; it never touches Ollama's `-partial` downloads, and it does not collect blobs
//!   (the caller runs [`Store::collect_garbage`] with its own grace, unless `OLLAMA_NOPRUNE`).
//! - **Durability.** Manifests are written to a temporary file, `fsync`ed and renamed; every
//!   directory created on the way and the manifest directory after a rename or removal are
//!   `fsync`ed, and so is `blobs/` after blobs are removed.

mod download;
mod gc;
mod lock;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sha2::Digest as _;

pub use download::{BlobDownload, DownloadPart, PartWriter, MAX_DOWNLOAD_PARTS};
pub use gc::{GcPolicy, GcReport};
pub use lock::StoreWriteGuard;

use crate::{Digest, Manifest, ModelName};

/// Prefix of temporary files; leftovers from a crash are removed when the store opens.
const TEMPORARY_PREFIX: &str = ".modeld-tmp-";
/// The file whose exclusive lock makes writers of this directory take turns across processes.
pub const LOCK_FILE_NAME: &str = ".modeld-store.lock";
/// Deepest directory level walked below `blobs/` or `manifests/`; guards against symlink loops.
const MAX_WALK_DEPTH: usize = 16;

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
    /// A blob write went past the limit given to [`Store::begin_blob_limited`].
    #[error("blob larger than the limit of {limit} bytes")]
    BlobTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// This thread already holds the store's write lock; write through its [`StoreWriteGuard`].
    #[error("the store's write lock is already held by this thread")]
    WriteLockHeld,
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

/// A models directory. Clones share one write lock.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    writer: Arc<lock::WriterLock>,
}

/// A blob being written: bytes go to a temporary file and are hashed on the way.
/// Dropping it without [`BlobWrite::finish`] removes the temporary file.
pub struct BlobWrite {
    blobs_dir: PathBuf,
    file: tempfile::NamedTempFile,
    hasher: sha2::Sha256,
    n_bytes: u64,
    limit: Option<u64>,
    failed: Option<FailedWrite>,
}

/// Why a [`BlobWrite`] can no longer finish.
#[derive(Debug, Clone, Copy)]
enum FailedWrite {
    TooLarge(u64),
    Io,
}

/// A file being written in `blobs/` that becomes a blob with [`Store::adopt_blob`], or
/// disappears when dropped.
pub type TemporaryBlobFile = tempfile::NamedTempFile;

impl Store {
    /// Opens (creating if needed) the models directory at `root`, and recovers from a crash:
    /// removes temporary files no live writer holds, anywhere under `blobs/` and `manifests/`,
    /// and empty manifest directories (the latter under the write lock, so this may wait for
    /// another process's write). Ollama's `-partial` files are left alone, and no blob is
    /// collected here: call [`Store::collect_garbage`] for that. Recovery is best effort: a
    /// read-only models directory still opens.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into(), writer: Arc::default() };
        for dir in [store.blobs_dir(), store.manifests_dir()] {
            create_dirs_synced(&dir).map_err(io_context(format!("creating {}", dir.display())))?;
        }
        store.recover();
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
        self.begin_blob_with(None)
    }

    /// Starts writing a blob of at most `max_bytes`: a write past it fails with
    /// [`Error::BlobTooLarge`] and the blob can no longer be finished.
    pub fn begin_blob_limited(&self, max_bytes: u64) -> Result<BlobWrite> {
        self.begin_blob_with(Some(max_bytes))
    }

    fn begin_blob_with(&self, limit: Option<u64>) -> Result<BlobWrite> {
        let blobs_dir = self.blobs_dir();
        let file = locked_temporary_file(&blobs_dir)?;
        Ok(BlobWrite { blobs_dir, file, hasher: sha2::Sha256::new(), n_bytes: 0, limit, failed: None })
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

    /// A temporary file in `blobs/` for a writer that has to seek (a GGUF writer); start-up
    /// recovery removes it if it is left behind. [`Store::adopt_blob`] makes it a blob.
    pub fn temporary_blob_file(&self) -> Result<TemporaryBlobFile> {
        locked_temporary_file(&self.blobs_dir())
    }

    /// Hashes a file from [`Store::temporary_blob_file`], syncs it and moves it to its content
    /// address; its digest and size.
    pub fn adopt_blob(&self, file: TemporaryBlobFile) -> Result<(Digest, u64)> {
        let reader = file.reopen().map_err(io_context("reopening a written blob"))?;
        let digest = Digest::of_reader(io::BufReader::with_capacity(1 << 20, reader))
            .map_err(io_context("hashing a written blob"))?;
        let size = file.as_file().metadata().map_err(io_context("reading a written blob"))?.len();
        file.as_file().sync_all().map_err(io_context("syncing blob"))?;
        let destination = self.blob_path(&digest);
        file.persist(&destination).map_err(|error| Error::Io {
            context: format!("moving blob to {}", destination.display()),
            source: error.error,
        })?;
        sync_dir(&self.blobs_dir());
        Ok((digest, size))
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

    /// The manifest file's bytes exactly as stored (what a push sends, so the registry's digest
    /// is the local one), with the parsed manifest.
    pub fn get_bytes(&self, name: &ModelName) -> Result<(Vec<u8>, Manifest)> {
        let path = self.existing_manifest_path(name).ok_or_else(|| Error::ModelNotFound(name.display_shortest()))?;
        read_manifest_file(&path, name)
    }

    fn read_entry(&self, path: &Path) -> Result<ModelEntry> {
        let name =
            self.name_from_manifest_path(path).ok_or_else(|| Error::ModelNotFound(path.display().to_string()))?;
        let (bytes, manifest) = read_manifest_file(path, &name)?;
        let modified_at = fs::metadata(path).and_then(|metadata| metadata.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(ModelEntry { name, manifest, manifest_digest: Digest::of_bytes(&bytes), modified_at })
    }

    /// Every model with a readable manifest, newest first.
    pub fn list(&self) -> Vec<ModelEntry> {
        let mut entries: Vec<ModelEntry> =
            gc::walk_files(&self.manifests_dir()).files.iter().filter_map(|path| self.read_entry(path).ok()).collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.modified_at));
        entries
    }

    /// Writes a manifest under `name`, atomically, under the write lock. Every blob it
    /// references must already be in the store, so a manifest never points at a missing blob.
    pub fn put(&self, name: &ModelName, manifest: &Manifest) -> Result<Digest> {
        self.write_lock()?.put(name, manifest)
    }

    /// Copies a model under a new name, under the write lock; blobs are shared.
    pub fn copy(&self, source: &ModelName, destination: &ModelName) -> Result<()> {
        self.write_lock()?.copy(source, destination)
    }

    /// Removes a model under the write lock: its manifest, empty directories above it, and
    /// blobs that no other manifest references.
    pub fn delete(&self, name: &ModelName) -> Result<()> {
        self.write_lock()?.delete(name)
    }

    /// Deletes those of `candidates` that no manifest references any more, under the write lock
    /// (see [`StoreWriteGuard::remove_unreferenced`]).
    pub fn remove_unreferenced(&self, candidates: Vec<Digest>) -> Result<GcReport> {
        self.write_lock()?.remove_unreferenced(candidates)
    }

    /// Deletes every blob no manifest references, except those younger than the policy's grace,
    /// under the write lock (see [`StoreWriteGuard::collect_garbage`]).
    pub fn collect_garbage(&self, policy: GcPolicy) -> Result<GcReport> {
        self.write_lock()?.collect_garbage(policy)
    }

    /// Refreshes a blob's modification time, so collection keeps it for a grace period, and
    /// says whether it exists. Takes the write lock, so a blob reported present is not being
    /// removed by a collection at that moment.
    pub fn touch_blob(&self, digest: &Digest) -> Result<bool> {
        self.write_lock()?.touch_blob(digest)
    }
}

impl StoreWriteGuard<'_> {
    /// Writes a manifest under `name`, atomically. Every blob it references must already be in
    /// the store ([`Error::BlobNotFound`] otherwise).
    pub fn put(&self, name: &ModelName, manifest: &Manifest) -> Result<Digest> {
        let bytes = serde_json::to_vec(manifest).expect("manifests always serialize");
        self.put_checked(name, manifest, &bytes)
    }

    /// Writes manifest bytes exactly as given (a pulled manifest keeps the digest its registry
    /// gave it) under `name`, atomically, and returns the manifest it replaced, if any. The
    /// bytes must parse as a manifest ([`Error::InvalidManifest`]) whose blobs are all in the
    /// store ([`Error::BlobNotFound`]).
    pub fn put_bytes(&self, name: &ModelName, bytes: &[u8]) -> Result<Option<Manifest>> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|source| Error::InvalidManifest { name: name.display_shortest(), source })?;
        let replaced = self.store().get(name).ok().map(|entry| entry.manifest);
        self.put_checked(name, &manifest, bytes)?;
        Ok(replaced)
    }

    fn put_checked(&self, name: &ModelName, manifest: &Manifest, bytes: &[u8]) -> Result<Digest> {
        let store = self.store();
        for digest in manifest.all_digests() {
            if !store.has_blob(digest) {
                return Err(Error::BlobNotFound(digest.clone()));
            }
        }
        let path = store
            .existing_manifest_path(name)
            .unwrap_or_else(|| store.manifests_dir().join(name.manifest_relative_path()));
        let dir = path.parent().expect("manifest paths have a parent");
        create_dirs_synced(dir).map_err(io_context(format!("creating {}", dir.display())))?;
        write_file_atomically(dir, &path, bytes)?;
        Ok(Digest::of_bytes(bytes))
    }

    /// Copies a model under a new name; blobs are shared.
    pub fn copy(&self, source: &ModelName, destination: &ModelName) -> Result<()> {
        let entry = self.store().get(source)?;
        self.put(destination, &entry.manifest)?;
        Ok(())
    }

    /// Removes a model: its manifest, empty directories above it, and blobs that no other
    /// manifest references. The blobs of a manifest that does not parse are found by scanning
    /// its bytes for digests.
    pub fn delete(&self, name: &ModelName) -> Result<()> {
        let store = self.store();
        let manifests_dir = store.manifests_dir();
        let path = store.existing_manifest_path(name).ok_or_else(|| Error::ModelNotFound(name.display_shortest()))?;
        let candidates = fs::read(&path).map(|bytes| gc::referenced_digests(&bytes).digests).unwrap_or_default();
        fs::remove_file(&path).map_err(io_context(format!("removing {}", path.display())))?;
        let mut dir = path.parent().map(Path::to_path_buf);
        if let Some(parent) = &dir {
            sync_dir(parent);
        }
        while let Some(current) = dir {
            if current == manifests_dir || fs::remove_dir(&current).is_err() {
                break;
            }
            dir = current.parent().map(Path::to_path_buf);
            if let Some(parent) = &dir {
                sync_dir(parent);
            }
        }
        self.remove_unreferenced(candidates.into_iter().collect())?;
        Ok(())
    }

    /// Refreshes a blob's modification time and says whether it exists.
    pub fn touch_blob(&self, digest: &Digest) -> Result<bool> {
        let path = self.store().blob_path(digest);
        let file = match fs::File::options().write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(Error::Io { context: format!("opening blob {digest}"), source: error }),
        };
        if !file.metadata().map_err(io_context(format!("reading blob {digest}")))?.is_file() {
            return Ok(false);
        }
        file.set_modified(SystemTime::now()).map_err(io_context(format!("touching blob {digest}")))?;
        Ok(true)
    }
}

impl BlobWrite {
    /// Appends bytes. Past the limit of [`Store::begin_blob_limited`] it fails with
    /// [`Error::BlobTooLarge`]; after any failure the blob can no longer be written or finished.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(failed) = self.failed {
            return Err(failed.error());
        }
        if let Some(limit) = self.limit {
            if self.n_bytes.saturating_add(bytes.len() as u64) > limit {
                self.failed = Some(FailedWrite::TooLarge(limit));
                // Give the disk space back now; the file itself goes when this is dropped.
                let _ = self.file.as_file().set_len(0);
                return Err(Error::BlobTooLarge { limit });
            }
        }
        if let Err(error) = self.file.write_all(bytes) {
            self.failed = Some(FailedWrite::Io);
            return Err(Error::Io { context: "writing blob".into(), source: error });
        }
        self.hasher.update(bytes);
        self.n_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.n_bytes
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.n_bytes == 0
    }

    /// Syncs and moves the blob to its content address. With `expected`, a different digest
    /// is an error and nothing is kept.
    pub fn finish(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        if let Some(failed) = self.failed {
            return Err(failed.error());
        }
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

impl FailedWrite {
    fn error(self) -> Error {
        match self {
            FailedWrite::TooLarge(limit) => Error::BlobTooLarge { limit },
            FailedWrite::Io => Error::Io {
                context: "writing blob".into(),
                source: io::Error::other("an earlier write to this blob failed"),
            },
        }
    }
}

/// A manifest file's bytes and what they parse to (`name` is for the error).
fn read_manifest_file(path: &Path, name: &ModelName) -> Result<(Vec<u8>, Manifest)> {
    let bytes = fs::read(path).map_err(io_context(format!("reading manifest {}", path.display())))?;
    let manifest = serde_json::from_slice(&bytes)
        .map_err(|source| Error::InvalidManifest { name: name.display_shortest(), source })?;
    Ok((bytes, manifest))
}

/// A temporary file in `dir`, exclusively locked so that start-up recovery in another process
/// (or another `Store` of this one) leaves it alone while it is written.
fn locked_temporary_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(dir)
        .map_err(io_context(format!("creating temporary file in {}", dir.display())))?;
    // Best effort: without file locks, recovery only runs at start-up anyway.
    let _ = file.as_file().lock();
    Ok(file)
}

fn write_file_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = locked_temporary_file(dir)?;
    file.write_all(bytes).map_err(io_context("writing manifest"))?;
    file.as_file().sync_all().map_err(io_context("syncing manifest"))?;
    file.persist(path).map_err(|error| Error::Io {
        context: format!("moving manifest to {}", path.display()),
        source: error.error,
    })?;
    sync_dir(dir);
    Ok(())
}

/// Creates `dir` and any missing parents one by one, syncing each parent after creating a
/// child in it, so the new entries survive a crash.
fn create_dirs_synced(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.is_dir() {
        missing.push(current);
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => break,
        }
    }
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => continue,
            Err(error) => return Err(error),
        }
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => sync_dir(Path::new(".")),
        }
    }
    Ok(())
}

/// `fsync`s a directory, best effort (some filesystems refuse it).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests;
