//! Store behaviour on temporary directories populated by code.

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
