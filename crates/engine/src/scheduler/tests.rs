//! Scheduler behaviour on the scripted engine.

use super::*;
use crate::scripted::ScriptedEngine;
use crate::ModelKind;

fn spec(dir: &tempfile::TempDir, name: &str) -> LoadSpec {
    let path = dir.path().join(name);
    std::fs::write(&path, b"weights").unwrap();
    LoadSpec { model_path: path, num_ctx: 2048, kind: ModelKind::Generation }
}

fn scheduler(engine: Arc<ScriptedEngine>, max_loaded_models: usize) -> Arc<Scheduler> {
    Scheduler::new(engine, SchedulerConfig { max_loaded_models, ..SchedulerConfig::default() })
}

#[tokio::test]
async fn reuses_loaded_model_across_context_sizes_and_reloads_on_new_weights() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new());
    let scheduler = scheduler(engine.clone(), 3);
    let a = spec(&dir, "a");
    drop(scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap());
    drop(scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap());
    assert_eq!(engine.n_loads(), 1);
    for num_ctx in [2049, 2048, 4096] {
        drop(scheduler.acquire("a", &LoadSpec { num_ctx, ..a.clone() }, None, Priority::Chat).await.unwrap());
    }
    assert_eq!(engine.n_loads(), 1, "another num_ctx serves on the loaded copy");
    assert_eq!(scheduler.status()[0].context_length, 4096, "ps shows the latest context size");
    let other_weights = spec(&dir, "a-updated");
    drop(scheduler.acquire("a", &other_weights, None, Priority::Chat).await.unwrap());
    assert_eq!(engine.n_loads(), 2, "new weights under the same name reload");
}

#[tokio::test]
async fn keep_alive_zero_unloads_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    let lease =
        scheduler.acquire("a", &spec(&dir, "a"), Some(KeepAlive::For(Duration::ZERO)), Priority::Chat).await.unwrap();
    assert!(scheduler.is_loaded("a"), "stays while in use");
    drop(lease);
    assert!(!scheduler.is_loaded("a"));
}

#[tokio::test]
async fn unload_waits_for_running_requests() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    let lease = scheduler.acquire("a", &spec(&dir, "a"), None, Priority::Chat).await.unwrap();
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
        drop(scheduler.acquire(key, &spec(&dir, key), None, Priority::Chat).await.unwrap());
    }
    drop(scheduler.acquire("a", &spec(&dir, "a"), None, Priority::Chat).await.unwrap());
    drop(scheduler.acquire("c", &spec(&dir, "c"), None, Priority::Chat).await.unwrap());
    assert!(scheduler.is_loaded("a"));
    assert!(!scheduler.is_loaded("b"));
    assert!(scheduler.is_loaded("c"));
}

#[tokio::test]
async fn expired_keep_alive_unloads() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    drop(
        scheduler
            .acquire("a", &spec(&dir, "a"), Some(KeepAlive::For(Duration::from_millis(50))), Priority::Chat)
            .await
            .unwrap(),
    );
    assert!(scheduler.is_loaded("a"));
    scheduler.unload_expired(Instant::now() + Duration::from_millis(60));
    assert!(!scheduler.is_loaded("a"));
}

#[tokio::test]
async fn forever_has_no_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = scheduler(Arc::new(ScriptedEngine::new()), 3);
    drop(scheduler.acquire("a", &spec(&dir, "a"), Some(KeepAlive::Forever), Priority::Chat).await.unwrap());
    scheduler.unload_expired(Instant::now() + Duration::from_secs(1_000_000));
    assert!(scheduler.is_loaded("a"));
    assert!(scheduler.status()[0].expires_at.is_none());
}

#[tokio::test]
async fn requests_beyond_num_parallel_wait_and_beyond_max_queue_are_busy() {
    let dir = tempfile::tempdir().unwrap();
    let config = SchedulerConfig { num_parallel: 2, max_queue: 3, ..SchedulerConfig::default() };
    let scheduler = Scheduler::new(Arc::new(ScriptedEngine::new()), config);
    let a = spec(&dir, "a");
    let first = scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap();
    let second = scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap();
    assert_eq!(scheduler.status()[0].n_active_requests, 2);
    // Another model has turns of its own.
    drop(scheduler.acquire("b", &spec(&dir, "b"), None, Priority::Chat).await.unwrap());

    // The third waits for a turn; with it and two more waiting, the queue is full.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let (scheduler, a) = (scheduler.clone(), a.clone());
            tokio::spawn(async move { scheduler.acquire("a", &a, None, Priority::Chat).await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(waiting.iter().all(|task| !task.is_finished()));
    assert!(matches!(scheduler.acquire("a", &a, None, Priority::Chat).await, Err(SchedulerError::Busy)));

    drop(first);
    drop(second);
    for task in waiting {
        task.await.unwrap().unwrap();
    }
    drop(scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap());
}

#[tokio::test]
async fn a_model_that_does_not_fit_is_refused_with_ollamas_text() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new());
    let config = SchedulerConfig { max_memory: Some(4), ..SchedulerConfig::default() };
    let scheduler = Scheduler::new(engine.clone(), config);
    let Err(error) = scheduler.acquire("a", &spec(&dir, "a"), None, Priority::Chat).await else { panic!("loaded") };
    assert_eq!(error, SchedulerError::InsufficientMemory { required: 8, available: 4 });
    assert_eq!(error.to_string(), "model requires more system memory (8 B) than is available (4 B)");
    assert_eq!(engine.n_loads(), 0, "nothing was loaded");
    assert!(!scheduler.is_loaded("a"));
}

#[test]
fn available_memory_and_human_bytes() {
    let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20971520 kB\n";
    assert_eq!(parse_mem_available(meminfo), Some(20 << 30));
    assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    assert!(system_available_memory().is_some_and(|bytes| bytes > 0));
    assert_eq!(human_binary_bytes(20 << 30), "20.0 GiB");
    assert_eq!(human_binary_bytes(1536 << 20), "1.5 GiB");
    assert_eq!(human_binary_bytes(3 << 20), "3.0 MiB");
    assert_eq!(human_binary_bytes(512), "512 B");
}

#[tokio::test]
async fn an_interactive_request_runs_beside_a_chat_holding_the_only_slot() {
    let dir = tempfile::tempdir().unwrap();
    let config = SchedulerConfig { num_parallel: 1, ..SchedulerConfig::default() };
    let scheduler = Scheduler::new(Arc::new(ScriptedEngine::new()), config);
    let a = spec(&dir, "a");
    let chat = scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap();
    let in_time = Duration::from_secs(5);
    let completion = tokio::time::timeout(in_time, scheduler.acquire("a", &a, None, Priority::Interactive))
        .await
        .expect("a completion waited behind the chat")
        .unwrap();
    assert_eq!(scheduler.status()[0].n_active_requests, 2);
    // The reserved slot is for interactive requests only, and there is one of it.
    let short = Duration::from_millis(100);
    assert!(tokio::time::timeout(short, scheduler.acquire("a", &a, None, Priority::Chat)).await.is_err());
    assert!(tokio::time::timeout(short, scheduler.acquire("a", &a, None, Priority::Interactive)).await.is_err());
    drop(completion);
    drop(
        tokio::time::timeout(in_time, scheduler.acquire("a", &a, None, Priority::Interactive)).await.unwrap().unwrap(),
    );
    drop(chat);
    drop(tokio::time::timeout(in_time, scheduler.acquire("a", &a, None, Priority::Chat)).await.unwrap().unwrap());
}

#[tokio::test]
async fn waiting_requests_are_served_by_priority_then_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = SchedulerConfig { num_parallel: 1, reserved_interactive: 0, ..SchedulerConfig::default() };
    let scheduler = Scheduler::new(Arc::new(ScriptedEngine::new()), config);
    let a = spec(&dir, "a");
    let running = scheduler.acquire("a", &a, None, Priority::Chat).await.unwrap();
    let (served_sender, mut served) = tokio::sync::mpsc::unbounded_channel();
    let arrivals = [
        ("batch", Priority::Batch),
        ("chat 1", Priority::Chat),
        ("interactive", Priority::Interactive),
        ("chat 2", Priority::Chat),
        ("abandoned", Priority::Interactive),
    ];
    let mut tasks = Vec::new();
    for (label, priority) in arrivals {
        let (scheduler, a, served_sender) = (scheduler.clone(), a.clone(), served_sender.clone());
        tasks.push(tokio::spawn(async move {
            let lease = scheduler.acquire("a", &a, None, priority).await.unwrap();
            served_sender.send(label).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(lease);
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A waiter that gives up leaves the queue without taking a turn.
    tasks.pop().unwrap().abort();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(running);
    for task in tasks {
        task.await.unwrap();
    }
    drop(served_sender);
    let mut order = Vec::new();
    while let Some(label) = served.recv().await {
        order.push(label);
    }
    assert_eq!(order, ["interactive", "chat 1", "chat 2", "batch"]);
}
