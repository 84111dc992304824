//! Resumable blob downloads: bytes arrive in parts, at any offset, into one partial file that
//! survives a crash, and become a blob only once the whole file hashes to the expected digest.
//!
//! A download of `sha256:<hex>` keeps two files in `blobs/`:
//!
//! - `.modeld-partial-sha256-<hex>`: the data, preallocated to the blob's size, written at each
//!   part's offset. It is exclusively `flock`ed while a download holds it, so a second download
//!   of the same digest (another request, another process) waits for the first and then finds
//!   the blob in place.
//! - `.modeld-partial-sha256-<hex>.parts`: how many bytes of each part are known to be on disk.
//!   It is replaced atomically, and only after the data it describes is `fsync`ed, so after a
//!   crash it never claims more than the disk holds; a resumed download asks for the rest.
//!
//! Neither is a blob, so no reader and no manifest can see them. A digest that does not match
//! removes both; so does a write that fails for lack of space, leaving the store as it was.
//! Collection ([`super::StoreWriteGuard::collect_garbage`]) removes partial downloads older than
//! its grace that no download holds.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{io_context, locked_temporary_file, sync_dir, Error, Result, Store};
use crate::Digest;

/// Prefix of partial download files (data and state) in `blobs/`.
pub(super) const PARTIAL_PREFIX: &str = ".modeld-partial-";
pub(super) const STATE_SUFFIX: &str = ".parts";
/// Largest number of parts a download may be split into.
pub const MAX_DOWNLOAD_PARTS: usize = 64;

/// A blob being downloaded in parts. Dropping it keeps the partial file for the next try.
#[derive(Debug)]
pub struct BlobDownload {
    blobs_dir: PathBuf,
    digest: Digest,
    size: u64,
    data_path: PathBuf,
    state_path: PathBuf,
    data: Arc<fs::File>,
    parts: Vec<DownloadPart>,
    /// With one part, the hash of its first `hashed` bytes: each [`BlobDownload::save_progress`]
    /// hashes what it synced (off the network's path, while more arrives), so
    /// [`BlobDownload::finish`] reads only the tail again.
    hasher: sha2::Sha256,
    hashed: u64,
}

/// One byte range of a download: `start..end`, of which the first `completed` bytes are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadPart {
    /// First byte of the part.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Bytes from `start` already written.
    pub completed: u64,
}

impl DownloadPart {
    /// Bytes still missing.
    pub fn remaining(&self) -> u64 {
        self.end - self.start - self.completed
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DownloadState {
    size: u64,
    parts: Vec<DownloadPart>,
}

/// Writes into a download's partial file; cheap to clone, one per part in flight.
#[derive(Debug, Clone)]
pub struct PartWriter {
    data: Arc<fs::File>,
}

impl PartWriter {
    /// Writes `bytes` at `offset` of the blob. A full disk is reported as
    /// [`Error::Io`] with [`io::ErrorKind::StorageFull`].
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.data.write_all_at(bytes, offset).map_err(io_context("writing downloaded bytes"))
    }
}

impl Store {
    /// Starts or resumes the download of the blob `digest` of `size` bytes, in parts of
    /// `part_size` bytes (at most [`MAX_DOWNLOAD_PARTS`]; the last may be shorter). Waits while
    /// another download of the same digest runs, in this process or another; returns `None` when
    /// the blob is (by then) in the store.
    ///
    /// Blocks: call it off an async runtime's worker threads.
    pub fn begin_download(&self, digest: &Digest, size: u64, part_size: u64) -> Result<Option<BlobDownload>> {
        if self.has_blob(digest) {
            return Ok(None);
        }
        let blobs_dir = self.blobs_dir();
        let data_path = blobs_dir.join(format!("{PARTIAL_PREFIX}{}", digest.file_name()));
        let state_path = blobs_dir.join(format!("{PARTIAL_PREFIX}{}{STATE_SUFFIX}", digest.file_name()));
        let data = fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(io_context(format!("opening {}", data_path.display())))?;
        match data.lock() {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Unsupported => {}
            Err(error) => return Err(Error::Io { context: format!("locking {}", data_path.display()), source: error }),
        }
        if self.has_blob(digest) {
            // Another download finished while this one waited; its partial files are gone, and
            // the one this call created is empty.
            let _ = fs::remove_file(&data_path);
            return Ok(None);
        }
        let part_size = part_size.max(1).max(size.div_ceil(MAX_DOWNLOAD_PARTS as u64));
        let on_disk = data.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        let parts = read_state(&state_path)
            .filter(|state| {
                state.size == size && on_disk == size && parts_are_consistent(&state.parts, size, part_size)
            })
            .map(|state| state.parts)
            .unwrap_or_else(|| fresh_parts(size, part_size));
        if on_disk != size {
            data.set_len(size).map_err(io_context(format!("sizing {}", data_path.display())))?;
        }
        Ok(Some(BlobDownload {
            blobs_dir,
            digest: digest.clone(),
            size,
            data_path,
            state_path,
            data: Arc::new(data),
            parts,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            hashed: 0,
        }))
    }
}

impl BlobDownload {
    /// The parts with what a previous try already wrote.
    pub fn parts(&self) -> &[DownloadPart] {
        &self.parts
    }

    /// Bytes already on disk over all parts.
    pub fn completed(&self) -> u64 {
        self.parts.iter().map(|part| part.completed).sum()
    }

    /// A writer into the partial file.
    pub fn writer(&self) -> PartWriter {
        PartWriter { data: Arc::clone(&self.data) }
    }

    /// Records how many bytes of each part are written, in the order of [`BlobDownload::parts`],
    /// after syncing the data, so a resumed download skips them. Blocks.
    pub fn save_progress(&mut self, completed: &[u64]) -> Result<()> {
        for (part, &done) in self.parts.iter_mut().zip(completed) {
            part.completed = done.min(part.end - part.start);
        }
        self.data.sync_data().map_err(io_context("syncing downloaded bytes"))?;
        if let [part] = self.parts[..] {
            self.hashed = hash_file_range(&self.data, self.hashed..part.completed, &mut self.hasher)?;
        }
        let state = DownloadState { size: self.size, parts: self.parts.clone() };
        let bytes = serde_json::to_vec(&state).expect("download state always serializes");
        let mut file = locked_temporary_file(&self.blobs_dir)?;
        file.write_all(&bytes).map_err(io_context("writing download state"))?;
        file.persist(&self.state_path)
            .map_err(|error| Error::Io { context: "saving download state".into(), source: error.error })?;
        Ok(())
    }

    /// Hashes the whole file; if it is `digest`, syncs it and moves it into place as the blob.
    /// A mismatch removes the partial files and is [`Error::DigestMismatch`]. Blocks.
    pub fn finish(self) -> Result<()> {
        // One part: only what no save hashed yet; several: the whole file.
        let (mut hasher, from) = if self.parts.len() == 1 {
            (self.hasher.clone(), self.hashed)
        } else {
            (<sha2::Sha256 as sha2::Digest>::new(), 0)
        };
        hash_file_range(&self.data, from..self.size, &mut hasher)?;
        let actual = Digest::from_hasher(hasher);
        if actual != self.digest {
            let expected = self.digest.clone();
            self.discard();
            return Err(Error::DigestMismatch { expected, actual });
        }
        self.data.sync_all().map_err(io_context("syncing downloaded blob"))?;
        let destination = self.blobs_dir.join(self.digest.file_name());
        fs::rename(&self.data_path, &destination)
            .map_err(io_context(format!("moving blob to {}", destination.display())))?;
        let _ = fs::remove_file(&self.state_path);
        sync_dir(&self.blobs_dir);
        Ok(())
    }

    /// Removes the partial files: the next try starts from nothing.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.state_path);
        let _ = fs::remove_file(&self.data_path);
        sync_dir(&self.blobs_dir);
    }
}

/// Feeds the bytes of `file` in `range` to `hasher`; where it stopped (the range's end, or
/// the end of the file).
fn hash_file_range(file: &fs::File, range: std::ops::Range<u64>, hasher: &mut sha2::Sha256) -> Result<u64> {
    let mut buffer = vec![0u8; (1 << 20).min(range.end.saturating_sub(range.start)) as usize];
    let mut offset = range.start;
    while offset < range.end {
        let want = buffer.len().min((range.end - offset) as usize);
        let n_read = file.read_at(&mut buffer[..want], offset).map_err(io_context("hashing downloaded blob"))?;
        if n_read == 0 {
            break;
        }
        sha2::Digest::update(hasher, &buffer[..n_read]);
        offset += n_read as u64;
    }
    Ok(offset)
}

fn read_state(path: &Path) -> Option<DownloadState> {
    let file = fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    // A state file is a few KiB at most; anything larger is not ours.
    file.take(1 << 16).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn fresh_parts(size: u64, part_size: u64) -> Vec<DownloadPart> {
    if size == 0 {
        return vec![DownloadPart { start: 0, end: 0, completed: 0 }];
    }
    (0..size.div_ceil(part_size))
        .map(|index| {
            let start = index * part_size;
            DownloadPart { start, end: (start + part_size).min(size), completed: 0 }
        })
        .collect()
}

/// Whether saved parts are exactly the split this download would make, with sane counts.
fn parts_are_consistent(parts: &[DownloadPart], size: u64, part_size: u64) -> bool {
    let fresh = fresh_parts(size, part_size);
    parts.len() == fresh.len()
        && parts.iter().zip(&fresh).all(|(saved, expected)| {
            saved.start == expected.start && saved.end == expected.end && saved.completed <= saved.end - saved.start
        })
}

/// Whether a file name in `blobs/` is a partial download (data or state).
pub(super) fn is_partial_download(file_name: &str) -> bool {
    file_name.starts_with(PARTIAL_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn parts_written_out_of_order_become_the_blob() {
        let (_dir, store) = store();
        let bytes: Vec<u8> = (0..10_000u32).map(|index| (index * 7 % 251) as u8).collect();
        let digest = Digest::of_bytes(&bytes);
        let download = store.begin_download(&digest, bytes.len() as u64, 3000).unwrap().unwrap();
        assert_eq!(download.parts().len(), 4);
        let writer = download.writer();
        for part in download.parts().iter().rev() {
            writer.write_at(part.start, &bytes[part.start as usize..part.end as usize]).unwrap();
        }
        download.finish().unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), bytes);
        let leftovers: Vec<_> = fs::read_dir(store.root().join("blobs"))
            .unwrap()
            .flatten()
            .filter(|entry| is_partial_download(&entry.file_name().to_string_lossy()))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(store.begin_download(&digest, bytes.len() as u64, 3000).unwrap().is_none());
    }

    #[test]
    fn saved_progress_resumes_and_unsaved_progress_does_not() {
        let (_dir, store) = store();
        let bytes = vec![42u8; 8192];
        let digest = Digest::of_bytes(&bytes);
        let mut download = store.begin_download(&digest, 8192, 4096).unwrap().unwrap();
        download.writer().write_at(0, &bytes[..1000]).unwrap();
        download.writer().write_at(4096, &bytes[4096..6000]).unwrap();
        download.save_progress(&[1000, 1904]).unwrap();
        drop(download);
        let resumed = store.begin_download(&digest, 8192, 4096).unwrap().unwrap();
        assert_eq!(resumed.completed(), 2904);
        assert_eq!(resumed.parts()[1], DownloadPart { start: 4096, end: 8192, completed: 1904 });
        drop(resumed);
        // A different split (or size) starts again rather than trusting the old counts.
        let restarted = store.begin_download(&digest, 8192, 2048).unwrap().unwrap();
        assert_eq!(restarted.completed(), 0);
    }

    #[test]
    fn one_part_resumed_in_order_is_hashed_across_both_tries() {
        let (_dir, store) = store();
        let bytes: Vec<u8> = (0..50_000u32).map(|index| (index % 253) as u8).collect();
        let digest = Digest::of_bytes(&bytes);
        let mut first = store.begin_download(&digest, 50_000, 1 << 20).unwrap().unwrap();
        first.writer().write_at(0, &bytes[..20_000]).unwrap();
        first.save_progress(&[20_000]).unwrap();
        drop(first);
        let second = store.begin_download(&digest, 50_000, 1 << 20).unwrap().unwrap();
        assert_eq!(second.completed(), 20_000);
        second.writer().write_at(20_000, &bytes[20_000..35_000]).unwrap();
        second.writer().write_at(35_000, &bytes[35_000..]).unwrap();
        second.finish().unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), bytes);

        // The same with a forged byte in the part written before the interruption.
        let other: Vec<u8> = bytes.iter().map(|byte| byte ^ 1).collect();
        let other_digest = Digest::of_bytes(&other);
        let mut first = store.begin_download(&other_digest, 50_000, 1 << 20).unwrap().unwrap();
        let mut forged = other[..20_000].to_vec();
        forged[7] ^= 0xFF;
        first.writer().write_at(0, &forged).unwrap();
        first.save_progress(&[20_000]).unwrap();
        drop(first);
        let second = store.begin_download(&other_digest, 50_000, 1 << 20).unwrap().unwrap();
        second.writer().write_at(20_000, &other[20_000..]).unwrap();
        assert!(matches!(second.finish(), Err(Error::DigestMismatch { .. })));
        assert!(!store.has_blob(&other_digest));
    }

    #[test]
    fn wrong_bytes_are_reported_and_leave_nothing() {
        let (_dir, store) = store();
        let digest = Digest::of_bytes(b"the real bytes");
        let download = store.begin_download(&digest, 14, 1 << 20).unwrap().unwrap();
        download.writer().write_at(0, b"forged  bytes!").unwrap();
        let error = download.finish().unwrap_err();
        assert!(matches!(error, Error::DigestMismatch { .. }), "{error}");
        assert!(!store.has_blob(&digest));
        assert_eq!(fs::read_dir(store.root().join("blobs")).unwrap().count(), 0);
    }

    #[test]
    fn a_crafted_state_file_is_not_trusted() {
        let (_dir, store) = store();
        let bytes = vec![1u8; 100];
        let digest = Digest::of_bytes(&bytes);
        drop(store.begin_download(&digest, 100, 50).unwrap().unwrap());
        let state = store.root().join("blobs").join(format!("{PARTIAL_PREFIX}{}{STATE_SUFFIX}", digest.file_name()));
        fs::write(
            &state,
            br#"{"size":100,"parts":[{"start":0,"end":50,"completed":999},{"start":50,"end":100,"completed":0}]}"#,
        )
        .unwrap();
        assert_eq!(store.begin_download(&digest, 100, 50).unwrap().unwrap().completed(), 0);
    }
}
