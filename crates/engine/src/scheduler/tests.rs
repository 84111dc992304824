//! Scheduler behaviour on the scripted engine.

use super::*;
use crate::scripted::ScriptedEngine;

fn spec(dir: &tempfile::TempDir, name: &str) -> LoadSpec {
    let path = dir.path().join(name);
    std::fs::write(&path, b"weights").unwrap();
    LoadSpec { model_path: path, num_ctx: 2048 }
}

fn scheduler(engine: Arc<ScriptedEngine>, max_loaded_models: usize) -> Arc<Scheduler> {
    Scheduler::new(engine, SchedulerConfig { max_loaded_models, default_keep_alive: Some(Duration::from_secs(300)) })
}

#[tokio::test]
async fn reuses_loaded_model_and_reloads_on_new_spec() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new());
    let scheduler = scheduler(engine.clone(), 3);
    let a = spec(&dir, "a");
    drop(scheduler.acquire("a", &a, None).await.unwrap());
    drop(scheduler.acquire("a", &a, None).await.unwrap());
    assert_eq!(engine.n_loads(), 1);
    let bigger = LoadSpec { num_ctx: 4096, ..a.clone() };
    drop(scheduler.acquire("a", &bigger, None).await.unwrap());
    assert_eq!(engine.n_loads(), 2);
    assert_eq!(scheduler.status()[0].context_length, 4096);
}

#[tokio::test]
async fn keep_alive_zero_unloads_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    let lease = scheduler.acquire("a", &spec(&dir, "a"), Some(Some(Duration::ZERO))).await.unwrap();
    assert!(scheduler.is_loaded("a"), "stays while in use");
    drop(lease);
    assert!(!scheduler.is_loaded("a"));
}

#[tokio::test]
async fn unload_waits_for_running_requests() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    let lease = scheduler.acquire("a", &spec(&dir, "a"), None).await.unwrap();
    assert!(scheduler.unload("a"));
    assert!(scheduler.is_loaded("a"));
    drop(lease);
    assert!(!scheduler.is_loaded("a"));
    assert!(!scheduler.unload("a"));
}

#[tokio::test]
async fn evicts_least_recently_used_idle_model() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 2);
    for key in ["a", "b"] {
        drop(scheduler.acquire(key, &spec(&dir, key), None).await.unwrap());
    }
    drop(scheduler.acquire("a", &spec(&dir, "a"), None).await.unwrap());
    drop(scheduler.acquire("c", &spec(&dir, "c"), None).await.unwrap());
    assert!(scheduler.is_loaded("a"));
    assert!(!scheduler.is_loaded("b"));
    assert!(scheduler.is_loaded("c"));
}

#[tokio::test]
async fn expired_keep_alive_unloads() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    drop(scheduler.acquire("a", &spec(&dir, "a"), Some(Some(Duration::from_millis(50)))).await.unwrap());
    assert!(scheduler.is_loaded("a"));
    scheduler.unload_expired(Instant::now() + Duration::from_millis(60));
    assert!(!scheduler.is_loaded("a"));
}

#[tokio::test]
async fn forever_has_no_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    drop(scheduler.acquire("a", &spec(&dir, "a"), Some(None)).await.unwrap());
    scheduler.unload_expired(Instant::now() + Duration::from_secs(1_000_000));
    assert!(scheduler.is_loaded("a"));
    assert!(scheduler.status()[0].expires_at.is_none());
}
