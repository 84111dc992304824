//! Store behaviour on temporary directories populated by code.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::{media_type, Layer};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn manifest_with(store: &Store, weights: &[u8]) -> Manifest {
    let (config_digest, config_size) = store.write_blob_bytes(b"{}").unwrap();
    let (model_digest, model_size) = store.write_blob_bytes(weights).unwrap();
    Manifest::new(
        Layer { media_type: media_type::CONFIG.into(), digest: config_digest, size: config_size, from: None },
        vec![Layer { media_type: media_type::MODEL.into(), digest: model_digest, size: model_size, from: None }],
    )
}

fn name(text: &str) -> ModelName {
    ModelName::parse(text).unwrap()
}

#[test]
fn blob_is_content_addressed_and_verified() {
    let (_dir, store) = store();
    let (digest, size) = store.write_blob_bytes(b"hello").unwrap();
    assert_eq!(digest.hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_eq!(size, 5);
    assert!(store.has_blob(&digest));

    let wrong = Digest::of_bytes(b"other");
    let error = store.write_blob(&b"hello again"[..], Some(&wrong)).unwrap_err();
    assert!(error.to_string().starts_with("digest mismatch, expected \"sha256:"), "{error}");
    assert!(!store.has_blob(&Digest::of_bytes(b"hello again")));
}

#[test]
fn abandoned_blob_write_leaves_nothing() {
    let (dir, store) = store();
    let mut blob = store.begin_blob().unwrap();
    blob.write(b"partial").unwrap();
    drop(blob);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("blobs")).unwrap().collect();
    assert!(leftovers.is_empty());
}

#[test]
fn manifest_round_trip_copy_and_delete() {
    let (dir, store) = store();
    let manifest = manifest_with(&store, b"weights");
    store.put(&name("Tiny:1"), &manifest).unwrap();
    assert!(dir.path().join("manifests/registry.ollama.ai/library/Tiny/1").is_file());

    // Lookups ignore case and keep the on-disk spelling.
    let entry = store.get(&name("tiny:1")).unwrap();
    assert_eq!(entry.name.display_shortest(), "Tiny:1");

    store.copy(&name("tiny:1"), &name("user/copy")).unwrap();
    assert_eq!(store.list().len(), 2);

    let model_digest = manifest.layers[0].digest.clone();
    store.delete(&name("tiny:1")).unwrap();
    assert!(store.has_blob(&model_digest), "still referenced by the copy");
    assert!(!dir.path().join("manifests/registry.ollama.ai/library").exists());

    store.delete(&name("user/copy")).unwrap();
    assert!(!store.has_blob(&model_digest));
    assert!(store.list().is_empty());
    assert!(matches!(store.get(&name("user/copy")), Err(Error::ModelNotFound(_))));
}

#[test]
fn manifest_with_missing_blob_is_refused() {
    let (_dir, store) = store();
    let mut manifest = manifest_with(&store, b"weights");
    manifest.layers[0].digest = Digest::of_bytes(b"never written");
    assert!(matches!(store.put(&name("broken"), &manifest), Err(Error::BlobNotFound(_))));
    assert!(store.list().is_empty());
}

/// Writes blob bytes straight into `blobs/`, as a process killed after the rename left them,
/// with the given modification time.
fn plant_blob(root: &Path, bytes: &[u8], modified: SystemTime) -> Digest {
    let digest = Digest::of_bytes(bytes);
    let path = root.join("blobs").join(digest.file_name());
    fs::write(&path, bytes).unwrap();
    fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    digest
}

fn hours_ago(hours: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(hours * 3600)
}

fn files_named_like(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    gc::walk_files(dir)
        .files
        .into_iter()
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// Every manifest names blobs that exist and hash to their names.
fn assert_consistent(store: &Store) {
    for entry in store.list() {
        for digest in entry.manifest.all_digests() {
            let bytes = fs::read(store.blob_path(digest)).unwrap_or_else(|error| {
                panic!("{} names missing blob {digest}: {error}", entry.name.display_shortest())
            });
            assert_eq!(&Digest::of_bytes(&bytes), digest);
        }
    }
}

#[test]
fn crash_at_each_step_of_a_create_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::open(root).unwrap();
    let manifest = manifest_with(&store, b"kept weights");
    store.put(&name("kept"), &manifest).unwrap();
    for digest in manifest.all_digests() {
        fs::File::options().write(true).open(store.blob_path(digest)).unwrap().set_modified(hours_ago(3)).unwrap();
    }
    drop(store);

    // Killed after writing a blob, before the manifest: an old orphan and a recent one.
    let old_orphan = plant_blob(root, b"orphan from yesterday", hours_ago(24));
    let recent_orphan = plant_blob(root, b"orphan from a minute ago", SystemTime::now());
    // Killed while writing a blob: temporary files, one in a subdirectory.
    fs::write(root.join("blobs/.modeld-tmp-abc123"), b"half a blob").unwrap();
    fs::create_dir_all(root.join("blobs/nested")).unwrap();
    fs::write(root.join("blobs/nested/.modeld-tmp-def"), b"half").unwrap();
    // Ollama's own download in flight: never ours to remove.
    let partial = root.join(format!("blobs/sha256-{}-partial", "1".repeat(64)));
    fs::write(&partial, b"ollama is downloading this").unwrap();
    // Killed while writing a manifest: its temporary file in a directory of its own.
    let crashed_dir = root.join("manifests/registry.ollama.ai/library/crashed");
    fs::create_dir_all(&crashed_dir).unwrap();
    fs::write(crashed_dir.join(".modeld-tmp-xyz"), b"{\"schemaVersion\":2,").unwrap();
    // An empty directory left by a delete that was cut short.
    fs::create_dir_all(root.join("manifests/registry.ollama.ai/empty/dirs")).unwrap();
    // A manifest cut short (another writer, or a format we do not know) naming an old blob.
    let protected = plant_blob(root, b"blob of the half-written manifest", hours_ago(24));
    let half_written = root.join("manifests/registry.ollama.ai/library/half/latest");
    fs::create_dir_all(half_written.parent().unwrap()).unwrap();
    fs::write(&half_written, format!("{{\"schemaVersion\":2,\"layers\":[{{\"digest\":\"sha256:{}\"", protected.hex()))
        .unwrap();

    let store = Store::open(root).unwrap();
    assert!(files_named_like(root, TEMPORARY_PREFIX).is_empty());
    assert!(partial.is_file());
    assert!(!crashed_dir.exists());
    assert!(!root.join("manifests/registry.ollama.ai/empty").exists());
    assert!(half_written.is_file());
    assert_eq!(store.list().len(), 1);
    assert_consistent(&store);
    // Opening does not collect.
    assert!(store.has_blob(&old_orphan) && store.has_blob(&recent_orphan));

    let report = store.collect_garbage(GcPolicy::with_grace(Duration::from_secs(3600))).unwrap();
    assert_eq!(report.removed, vec![old_orphan.clone()]);
    assert_eq!(report.bytes_freed, b"orphan from yesterday".len() as u64);
    assert_eq!(report.kept_recent, 1);
    assert_eq!(report.unparsable_manifests, vec![half_written.clone()]);
    assert!(report.unreadable.is_empty());
    assert!(store.has_blob(&recent_orphan));

    let report = store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
    assert_eq!(report.removed, vec![recent_orphan.clone()]);
    assert_eq!(report.kept_recent, 0);
    assert_eq!(report.unparsable_manifests, vec![half_written.clone()]);
    assert!(store.has_blob(&protected), "named by the unparsable manifest");
    assert!(half_written.is_file());
    assert!(partial.is_file());
    assert_consistent(&store);
    assert!(manifest.all_digests().all(|digest| store.has_blob(digest)));
}

#[test]
fn open_leaves_temporary_files_of_live_writers_alone() {
    let (dir, store) = store();
    let mut blob = store.begin_blob().unwrap();
    blob.write(b"still uploading").unwrap();
    // Another process (or another Store) opening the same directory meanwhile.
    let other = Store::open(dir.path()).unwrap();
    assert_eq!(files_named_like(&dir.path().join("blobs"), TEMPORARY_PREFIX).len(), 1);
    let (digest, _) = blob.finish(None).unwrap();
    assert!(other.has_blob(&digest));
}

#[test]
fn collection_keeps_what_any_manifest_file_names() {
    let (dir, store) = store();
    let named = plant_blob(dir.path(), b"named by an odd manifest", hours_ago(5));
    let orphan = plant_blob(dir.path(), b"named by nothing", hours_ago(5));
    // A manifest at a depth `list` ignores, written by a newer tool.
    let odd = dir.path().join("manifests/example.com/model/tag");
    fs::create_dir_all(odd.parent().unwrap()).unwrap();
    fs::write(&odd, format!("{{\"future\":[\"sha256-{}\"]}}", named.hex())).unwrap();
    let report = store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
    assert_eq!(report.removed, vec![orphan]);
    assert!(store.has_blob(&named));
    assert_eq!(report.unparsable_manifests, vec![odd]);
}

#[cfg(unix)]
#[test]
fn an_unreadable_manifest_tree_stops_removal() {
    let (dir, store) = store();
    let orphan = plant_blob(dir.path(), b"orphan", hours_ago(5));
    // A symbolic link loop: the walk gives up at its depth limit and reports it.
    let looped = dir.path().join("manifests/registry.ollama.ai/loop");
    fs::create_dir_all(looped.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(dir.path().join("manifests/registry.ollama.ai"), &looped).unwrap();
    let report = store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
    assert!(!report.unreadable.is_empty());
    assert!(report.removed.is_empty());
    assert!(store.has_blob(&orphan));
    assert!(store.list().is_empty(), "list terminates too");

    fs::remove_file(&looped).unwrap();
    let report = store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
    assert_eq!(report.removed, vec![orphan]);
}

#[test]
fn unparsable_manifest_protects_its_blobs_from_remove_unreferenced_and_delete() {
    let (dir, store) = store();
    let manifest = manifest_with(&store, b"shared weights");
    store.put(&name("a"), &manifest).unwrap();
    let weights = manifest.layers[0].digest.clone();
    let foreign = dir.path().join("manifests/registry.ollama.ai/library/b/latest");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, format!("not json but names sha256:{}", weights.hex())).unwrap();

    store.delete(&name("a")).unwrap();
    assert!(store.has_blob(&weights));
    assert!(!store.has_blob(&manifest.config.digest));
    let report = store.remove_unreferenced(vec![weights.clone()]).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(report.unparsable_manifests, vec![foreign.clone()]);
    assert!(store.has_blob(&weights));

    // Deleting the unparsable manifest itself releases the blobs it names.
    store.delete(&name("b")).unwrap();
    assert!(!store.has_blob(&weights));
}

#[test]
fn touched_blob_survives_a_collection_with_grace() {
    let (dir, store) = store();
    let old = plant_blob(dir.path(), b"uploaded yesterday", hours_ago(24));
    assert!(store.touch_blob(&old).unwrap());
    assert!(!store.touch_blob(&Digest::of_bytes(b"never uploaded")).unwrap());
    let report = store.collect_garbage(GcPolicy::with_grace(Duration::from_secs(3600))).unwrap();
    assert_eq!((report.removed.len(), report.kept_recent), (0, 1));
    assert!(store.has_blob(&old));
}

#[test]
fn limited_blob_write_stops_at_the_limit_and_leaves_nothing() {
    let (dir, store) = store();
    let mut blob = store.begin_blob_limited(10).unwrap();
    blob.write(b"123456").unwrap();
    blob.write(b"7890").unwrap();
    assert_eq!(blob.len(), 10);
    assert!(matches!(blob.write(b"!"), Err(Error::BlobTooLarge { limit: 10 })));
    assert!(matches!(blob.write(b""), Err(Error::BlobTooLarge { limit: 10 })));
    assert!(matches!(blob.finish(None), Err(Error::BlobTooLarge { limit: 10 })));
    assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);

    let mut exact = store.begin_blob_limited(5).unwrap();
    exact.write(b"hello").unwrap();
    assert_eq!(exact.finish(None).unwrap().1, 5);
}

#[test]
fn write_lock_excludes_other_writers_and_refuses_reentry() {
    let (dir, store) = store();
    let guard = store.write_lock().unwrap();
    // Writing through the guard works; asking the store again on this thread is refused.
    let manifest = manifest_with(&store, b"weights");
    guard.put(&name("locked"), &manifest).unwrap();
    assert!(matches!(store.put(&name("other"), &manifest), Err(Error::WriteLockHeld)));
    assert!(matches!(store.write_lock(), Err(Error::WriteLockHeld)));

    // Another process cannot take the lock file meanwhile.
    let lock_file = fs::File::options().write(true).open(dir.path().join(LOCK_FILE_NAME)).unwrap();
    assert!(matches!(lock_file.try_lock(), Err(fs::TryLockError::WouldBlock)));

    // Another thread, on a clone, waits until the guard is dropped.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let (store, released, manifest) = (store.clone(), released.clone(), manifest.clone());
        std::thread::spawn(move || {
            store.put(&name("other"), &manifest).unwrap();
            released.load(std::sync::atomic::Ordering::SeqCst)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    released.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(guard);
    assert!(waiter.join().unwrap(), "the other writer ran before the guard was released");
    assert!(lock_file.try_lock().is_ok());
    lock_file.unlock().unwrap();
    assert_eq!(store.list().len(), 2);
}

/// A xorshift64 generator for reproducible interleavings.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn concurrent_writers_and_collectors_never_leave_a_manifest_without_its_blobs() {
    let (_dir, store) = store();
    let names: Vec<ModelName> = (0..5).map(|index| name(&format!("model{index}"))).collect();
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let (store, names) = (store.clone(), names.clone());
            std::thread::spawn(move || {
                let mut random = XorShift(0x2545_F491_4F6C_DD1D ^ ((thread + 1) * 0x9E37_79B9));
                for round in 0..30 {
                    let model = &names[random.below(names.len() as u64) as usize];
                    // Some weights are shared between models, some unique to this round.
                    let weights = if random.below(2) == 0 {
                        format!("shared weights {}", random.below(3))
                    } else {
                        format!("weights of thread {thread} round {round}")
                    };
                    match (thread + round) % 4 {
                        0 => {
                            // A create as the route does it: blobs, manifest and clean-up as one unit.
                            let guard = store.write_lock().unwrap();
                            let manifest = manifest_with(&store, weights.as_bytes());
                            let previous = store.get(model).ok();
                            guard.put(model, &manifest).unwrap();
                            if let Some(previous) = previous {
                                guard.remove_unreferenced(previous.manifest.all_digests().cloned().collect()).unwrap();
                            }
                        }
                        1 => {
                            // Without the guard, a collection may take the fresh blobs first:
                            // then the put is refused, never half done.
                            let manifest = manifest_with(&store, weights.as_bytes());
                            match store.put(model, &manifest) {
                                Ok(_) | Err(Error::BlobNotFound(_)) => {}
                                Err(error) => panic!("put: {error}"),
                            }
                        }
                        2 => match store.delete(model) {
                            Ok(()) | Err(Error::ModelNotFound(_)) => {}
                            Err(error) => panic!("delete: {error}"),
                        },
                        _ => {
                            store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_consistent(&store);
    // A last collection leaves exactly the blobs the manifests name.
    store.collect_garbage(GcPolicy::with_grace(Duration::ZERO)).unwrap();
    let named: HashSet<Digest> =
        store.list().iter().flat_map(|entry| entry.manifest.all_digests().cloned().collect::<Vec<_>>()).collect();
    let present: HashSet<Digest> = fs::read_dir(store.root().join("blobs"))
        .unwrap()
        .map(|entry| Digest::parse(&entry.unwrap().file_name().to_string_lossy()).unwrap())
        .collect();
    assert_eq!(named, present);
}
