//! Garbage collection of blobs no manifest references, and start-up recovery after a crash.
//!
//! Collection reads every file under `manifests/`, parsed or not: a file that parses as a
//! manifest references its layers and config; every file, parsed or not, also references each
//! `sha256:<64 hex>` or `sha256-<64 hex>` string in its bytes, so a manifest Ollama is writing
//! or a format this version does not know still protects its blobs. If any manifest file or
//! directory cannot be read, nothing is removed.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{download, io_context, sync_dir, Result, Store, StoreWriteGuard, MAX_WALK_DEPTH, TEMPORARY_PREFIX};
use crate::{Digest, Manifest};

/// How [`Store::collect_garbage`] treats unreferenced blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Unreferenced blobs modified less than this long ago are kept: a client uploads blobs
    /// before it calls create, `HEAD /api/blobs` refreshes a blob it relies on, and another
    /// process (Ollama) writes a pull's manifest only after all its blobs. There is no default:
    /// the caller picks one, e.g. an hour or more on a store shared with Ollama; zero keeps
    /// nothing.
    pub grace: Duration,
}

impl GcPolicy {
    /// A policy keeping unreferenced blobs younger than `grace`.
    pub const fn with_grace(grace: Duration) -> GcPolicy {
        GcPolicy { grace }
    }
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed, in digest order.
    pub removed: Vec<Digest>,
    /// Their total size.
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they were modified within the grace period.
    pub kept_recent: usize,
    /// Manifest files that do not parse: kept, and every digest in their bytes kept with them.
    pub unparsable_manifests: Vec<PathBuf>,
    /// Manifest files or directories that could not be read. When any is listed, no blob was
    /// removed, since they might reference any of them.
    pub unreadable: Vec<PathBuf>,
    /// Files of interrupted downloads older than the grace period, no longer resumable, removed.
    pub partial_downloads_removed: usize,
}

impl StoreWriteGuard<'_> {
    /// Deletes every blob no manifest references, except those modified less than
    /// `policy.grace` ago. Only files named exactly `sha256-<64 lowercase hex>` in `blobs/` are
    /// candidates: temporary files and Ollama's `-partial` downloads are never touched.
    pub fn collect_garbage(&self, policy: GcPolicy) -> Result<GcReport> {
        let blobs_dir = self.store().blobs_dir();
        let mut candidates = BTreeSet::new();
        let mut partial_downloads = Vec::new();
        let entries = fs::read_dir(&blobs_dir).map_err(io_context(format!("reading {}", blobs_dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_context(format!("reading {}", blobs_dir.display())))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else { continue };
            if let Ok(digest) = Digest::parse(file_name) {
                if digest.file_name() == file_name {
                    candidates.insert(digest);
                }
            } else if download::is_partial_download(file_name) {
                partial_downloads.push(entry.path());
            }
        }
        let mut report = self.remove_blobs(candidates, policy.grace)?;
        report.partial_downloads_removed = remove_stale_partial_downloads(&partial_downloads, policy.grace);
        if report.partial_downloads_removed > 0 {
            sync_dir(&blobs_dir);
        }
        Ok(report)
    }

    /// Deletes those of `candidates` that no manifest references any more, whatever their age
    /// (they were just released by a delete or a replaced manifest). A manifest that does not
    /// parse protects the digests in its bytes, as in [`StoreWriteGuard::collect_garbage`].
    pub fn remove_unreferenced(&self, candidates: Vec<Digest>) -> Result<GcReport> {
        self.remove_blobs(candidates.into_iter().collect(), Duration::ZERO)
    }

    fn remove_blobs(&self, candidates: BTreeSet<Digest>, grace: Duration) -> Result<GcReport> {
        let store = self.store();
        let references = store.references();
        let mut report = GcReport {
            unparsable_manifests: references.unparsable,
            unreadable: references.unreadable,
            ..GcReport::default()
        };
        if !report.unreadable.is_empty() {
            return Ok(report);
        }
        let now = SystemTime::now();
        for digest in candidates {
            if references.digests.contains(&digest) {
                continue;
            }
            let path = store.blob_path(&digest);
            let metadata = match fs::symlink_metadata(&path) {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_context(format!("reading {}", path.display()))(error)),
            };
            if !grace.is_zero() {
                // An unknown or future modification time counts as recent.
                let age = metadata.modified().ok().and_then(|modified| now.duration_since(modified).ok());
                if age.is_none_or(|age| age < grace) {
                    report.kept_recent += 1;
                    continue;
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.bytes_freed += metadata.len();
                    report.removed.push(digest);
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    sync_dir(&store.blobs_dir());
                    return Err(io_context(format!("removing {}", path.display()))(error));
                }
            }
        }
        if !report.removed.is_empty() {
            sync_dir(&store.blobs_dir());
        }
        Ok(report)
    }
}

/// What the manifest files reference.
struct References {
    digests: HashSet<Digest>,
    unparsable: Vec<PathBuf>,
    unreadable: Vec<PathBuf>,
}

/// Files found below a directory, following symbolic links up to [`MAX_WALK_DEPTH`] levels.
pub(super) struct Walk {
    /// Regular files.
    pub(super) files: Vec<PathBuf>,
    /// Entries that could not be read, and directories deeper than the limit.
    pub(super) unreadable: Vec<PathBuf>,
}

/// Walks `root` (absent: nothing). Entries that vanish while walking are skipped; other
/// failures are listed as unreadable. Special files (pipes, sockets) are skipped: they are not
/// manifests, and reading a pipe could block.
pub(super) fn walk_files(root: &Path) -> Walk {
    let mut walk = Walk { files: Vec::new(), unreadable: Vec::new() };
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => {
                walk.unreadable.push(dir);
                continue;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                walk.unreadable.push(dir.clone());
                continue;
            };
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(metadata) if metadata.is_dir() => {
                    if depth + 1 > MAX_WALK_DEPTH {
                        walk.unreadable.push(path);
                    } else {
                        stack.push((path, depth + 1));
                    }
                }
                Ok(metadata) if metadata.is_file() => walk.files.push(path),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(_) => walk.unreadable.push(path),
            }
        }
    }
    walk
}

/// What one manifest file's bytes reference.
pub(super) struct FileReferences {
    /// The digests of the parsed manifest, if it parses, and every `sha256:<64 hex>` /
    /// `sha256-<64 hex>` string in the raw bytes.
    pub(super) digests: HashSet<Digest>,
    /// Whether the bytes parse as a manifest.
    pub(super) parses: bool,
}

/// Reads what a manifest file's bytes reference, parsing them once.
pub(super) fn referenced_digests(bytes: &[u8]) -> FileReferences {
    let mut digests = raw_digests(bytes);
    let manifest = serde_json::from_slice::<Manifest>(bytes);
    if let Ok(manifest) = &manifest {
        digests.extend(manifest.all_digests().cloned());
    }
    FileReferences { digests, parses: manifest.is_ok() }
}

/// Every `sha256:<64 hex>` or `sha256-<64 hex>` in `bytes`.
fn raw_digests(bytes: &[u8]) -> HashSet<Digest> {
    const PREFIX: &[u8] = b"sha256";
    const TEXT_LENGTH: usize = PREFIX.len() + 1 + 64;
    let mut digests = HashSet::new();
    let mut start = 0;
    while start + TEXT_LENGTH <= bytes.len() {
        let Some(found) = bytes[start..].windows(PREFIX.len()).position(|window| window == PREFIX) else { break };
        let at = start + found;
        if let Some(text) = bytes.get(at..at + TEXT_LENGTH) {
            if let Some(digest) = std::str::from_utf8(text).ok().and_then(|text| Digest::parse(text).ok()) {
                digests.insert(digest);
            }
        }
        start = at + 1;
    }
    digests
}

impl Store {
    fn references(&self) -> References {
        let walk = walk_files(&self.manifests_dir());
        let mut references =
            References { digests: HashSet::new(), unparsable: Vec::new(), unreadable: walk.unreadable };
        for path in walk.files {
            match fs::read(&path) {
                Ok(bytes) => {
                    let file = referenced_digests(&bytes);
                    if !file.parses {
                        references.unparsable.push(path);
                    }
                    references.digests.extend(file.digests);
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(_) => references.unreadable.push(path),
            }
        }
        references.unparsable.sort();
        references.unreadable.sort();
        references
    }

    /// Start-up recovery: removes temporary files no live writer holds locked and empty
    /// manifest directories. Best effort: a read-only store opens all the same.
    pub(super) fn recover(&self) {
        remove_stray_temporary_files(&self.blobs_dir(), 0);
        remove_stray_temporary_files(&self.manifests_dir(), 0);
        // Under the write lock, so no `put` is between creating a directory and filling it.
        if let Ok(_guard) = self.write_lock() {
            remove_empty_dirs_below(&self.manifests_dir(), 0);
        }
    }
}

/// Removes files named with [`TEMPORARY_PREFIX`] below `dir` (symbolic links not followed)
/// unless a writer holds them locked.
fn remove_stray_temporary_files(dir: &Path, depth: usize) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut removed_any = false;
    for entry in entries.flatten() {
        let Ok(file_type) = entry.file_type() else { continue };
        let path = entry.path();
        if file_type.is_dir() {
            if depth < MAX_WALK_DEPTH {
                remove_stray_temporary_files(&path, depth + 1);
            }
        } else if file_type.is_file() && entry.file_name().to_string_lossy().starts_with(TEMPORARY_PREFIX) {
            let Ok(file) = fs::File::open(&path) else { continue };
            let abandoned = match file.try_lock() {
                Ok(()) => true,
                Err(fs::TryLockError::WouldBlock) => false,
                Err(fs::TryLockError::Error(error)) => error.kind() == io::ErrorKind::Unsupported,
            };
            if abandoned && fs::remove_file(&path).is_ok() {
                removed_any = true;
            }
        }
    }
    if removed_any {
        sync_dir(dir);
    }
}

/// Removes the files of interrupted downloads (data and state) modified longer than `grace`
/// ago that no download holds locked; how many.
fn remove_stale_partial_downloads(paths: &[PathBuf], grace: Duration) -> usize {
    let now = SystemTime::now();
    let mut removed = 0;
    for path in paths {
        let Ok(metadata) = fs::symlink_metadata(path) else { continue };
        let age = metadata.modified().ok().and_then(|modified| now.duration_since(modified).ok());
        if !metadata.is_file() || age.is_none_or(|age| age < grace) {
            continue;
        }
        // The data file is locked while a download runs; its state file goes with it.
        let data_path = path.to_string_lossy().trim_end_matches(download::STATE_SUFFIX).to_owned();
        let in_use =
            fs::File::open(&data_path).is_ok_and(|file| matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)));
        if !in_use && fs::remove_file(path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Removes the empty directories below `dir` (not `dir` itself), deepest first.
fn remove_empty_dirs_below(dir: &Path, depth: usize) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut removed_any = false;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|file_type| file_type.is_dir()) || depth >= MAX_WALK_DEPTH {
            continue;
        }
        let child = entry.path();
        remove_empty_dirs_below(&child, depth + 1);
        if fs::remove_dir(&child).is_ok() {
            removed_any = true;
        }
    }
    if removed_any {
        sync_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_digests_are_found_in_any_bytes() {
        let hex = "ab".repeat(32);
        let text = format!(
            "{{\"layers\":[{{\"digest\":\"sha256:{hex}\"}}, \"sha256-{}\", \"sha256:{}\", sha256sha256:{}",
            "CD".repeat(32),
            "ef".repeat(31),
            "01".repeat(32)
        );
        let found: BTreeSet<String> = raw_digests(text.as_bytes()).iter().map(Digest::to_string).collect();
        let expected: BTreeSet<String> =
            [format!("sha256:{hex}"), format!("sha256:{}", "cd".repeat(32)), format!("sha256:{}", "01".repeat(32))]
                .into_iter()
                .collect();
        assert_eq!(found, expected);
        assert!(raw_digests(b"sha256:").is_empty());
    }
}
