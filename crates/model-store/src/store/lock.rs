//! The store's write lock: one writer at a time across threads (a lock shared by the clones of
//! a `Store`) and across processes (an exclusive lock on `<root>/.modeld-store.lock`).
//!
//! The in-process part remembers which thread holds it, so a thread asking again while it holds
//! a guard gets [`Error::WriteLockHeld`] instead of waiting for itself forever.

use std::fs::File;
use std::io;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread::ThreadId;

use super::{io_context, Error, Result, Store, LOCK_FILE_NAME};

/// The in-process half of the write lock.
#[derive(Debug, Default)]
pub(super) struct WriterLock {
    owner: Mutex<Option<ThreadId>>,
    released: Condvar,
}

impl WriterLock {
    /// Waits until no thread holds the lock, then takes it for this thread.
    fn acquire(&self) -> Result<()> {
        let current = std::thread::current().id();
        let mut owner = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        if *owner == Some(current) {
            return Err(Error::WriteLockHeld);
        }
        while owner.is_some() {
            owner = self.released.wait(owner).unwrap_or_else(PoisonError::into_inner);
        }
        *owner = Some(current);
        Ok(())
    }

    fn release(&self) {
        *self.owner.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.released.notify_one();
    }
}

/// Proof that this thread holds the store's write lock; dropping it releases the lock.
///
/// Write through its methods (`put`, `copy`, `delete`, `remove_unreferenced`,
/// `collect_garbage`, `touch_blob`) while holding it; the `Store` methods of the same names take
/// the lock themselves. Reading (`get`, `list`, blobs) needs no lock. Writing blobs needs none
/// either, but a caller that writes blobs and then a manifest naming them should hold the guard
/// across both, so that no collection with a short grace removes the new blobs in between.
#[derive(Debug)]
pub struct StoreWriteGuard<'store> {
    store: &'store Store,
    /// `None` where the filesystem has no file locks: then only this process is excluded.
    lock_file: Option<File>,
}

impl Store {
    /// Takes the store's write lock, waiting for other threads and processes to release it.
    /// Blocking: call it from a blocking context (`spawn_blocking`). Fails with
    /// [`Error::WriteLockHeld`] if this thread already holds it.
    pub fn write_lock(&self) -> Result<StoreWriteGuard<'_>> {
        self.writer.acquire()?;
        match self.lock_file() {
            Ok(lock_file) => Ok(StoreWriteGuard { store: self, lock_file }),
            Err(error) => {
                self.writer.release();
                Err(error)
            }
        }
    }

    /// Opens and exclusively locks the lock file; `None` if this filesystem has no locks.
    fn lock_file(&self) -> Result<Option<File>> {
        let path = self.root.join(LOCK_FILE_NAME);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_context(format!("opening {}", path.display())))?;
        match file.lock() {
            Ok(()) => Ok(Some(file)),
            Err(error) if error.kind() == io::ErrorKind::Unsupported => Ok(None),
            Err(error) => Err(Error::Io { context: format!("locking {}", path.display()), source: error }),
        }
    }
}

impl<'store> StoreWriteGuard<'store> {
    /// The store this guard locks, for reads.
    pub fn store(&self) -> &'store Store {
        self.store
    }
}

impl Drop for StoreWriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.lock_file.take() {
            let _ = file.unlock();
        }
        self.store.writer.release();
    }
}
