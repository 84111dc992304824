//! `Scheduler`: keeps loaded models in memory, shares them between requests, and unloads them
//! when their keep-alive runs out or room is needed (least recently used first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

pub use turns::Priority;
use turns::{Turn, TurnQueue};

use crate::{EngineError, Engines, KeepAlive, LoadSpec, LoadedModel, ModelKind};

mod turns;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Models resident at once (`OLLAMA_MAX_LOADED_MODELS`).
    pub max_loaded_models: usize,
    /// Keep-alive for a model loaded without one; `None` is forever (`OLLAMA_KEEP_ALIVE`).
    pub default_keep_alive: Option<Duration>,
    /// Requests one model serves at once (`OLLAMA_NUM_PARALLEL`); more wait their turn, by
    /// [`Priority`]. One request more may run when it is [`Priority::Interactive`] (see
    /// [`SchedulerConfig::reserved_interactive`]).
    pub num_parallel: usize,
    /// Slots per model that only interactive requests (completion while typing) may use, on
    /// top of `num_parallel`, so that they never wait behind a long chat.
    pub reserved_interactive: usize,
    /// Requests that may wait at once (`OLLAMA_MAX_QUEUE`); more are refused as busy.
    pub max_queue: usize,
    /// Memory a model load may assume available, at most (`MODELD_MAX_MEMORY`); the system's
    /// available memory (`MemAvailable`) bounds it in any case.
    pub max_memory: Option<u64>,
}

impl Default for SchedulerConfig {
    /// Ollama's defaults.
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            max_loaded_models: 3,
            default_keep_alive: Some(Duration::from_secs(300)),
            num_parallel: 1,
            reserved_interactive: 1,
            max_queue: 512,
            max_memory: None,
        }
    }
}

/// A scheduler error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// The engine failed to load the model.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `max_queue` requests are already waiting.
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    Busy,
    /// The model would not fit in the memory available; loading it would get the daemon killed.
    #[error("model requires more system memory ({}) than is available ({})", human_binary_bytes(*required), human_binary_bytes(*available))]
    InsufficientMemory {
        /// Estimated bytes the model needs.
        required: u64,
        /// Bytes available.
        available: u64,
    },
}

/// Ollama's `format.HumanBytes2`: binary units, one decimal (`1.5 GiB`); the CLI's sizes use
/// `HumanBytes`, decimal units, instead.
pub fn human_binary_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value >= KIB * KIB * KIB {
        format!("{:.1} GiB", value / (KIB * KIB * KIB))
    } else if value >= KIB * KIB {
        format!("{:.1} MiB", value / (KIB * KIB))
    } else if value >= KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// Bytes a model needs in memory, estimated from its weights file: the weights, read into
/// memory, plus a quarter for the KV cache, activations and copies the engine makes.
fn estimated_model_memory(model_path: &std::path::Path) -> u64 {
    let weights = std::fs::metadata(model_path).map(|metadata| metadata.len()).unwrap_or(0);
    weights.saturating_add(weights / 4)
}

/// `MemAvailable` of `/proc/meminfo` in bytes; `None` where the system does not say.
fn system_available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemAvailable:"))?;
    let kibibytes: u64 = line.trim_start_matches("MemAvailable:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kibibytes.checked_mul(1024)
}

/// What `/api/ps` shows of a loaded model.
#[derive(Debug, Clone)]
pub struct LoadedModelStatus {
    /// The key it was loaded under (the model's full name).
    pub key: String,
    /// When it will be unloaded; `None` means never.
    pub expires_at: Option<SystemTime>,
    /// Context window it serves.
    pub context_length: usize,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
    /// Requests using it now.
    pub n_active_requests: usize,
}

/// Keeps models loaded.
pub struct Scheduler {
    engines: Engines,
    config: SchedulerConfig,
    slots: Mutex<HashMap<String, Slot>>,
    load_lock: tokio::sync::Mutex<()>,
    /// Per model: whose turn it is.
    turns: Mutex<HashMap<String, Arc<TurnQueue>>>,
    n_waiting: Arc<std::sync::atomic::AtomicUsize>,
}

struct Slot {
    model: Arc<dyn LoadedModel>,
    spec: LoadSpec,
    n_active_requests: usize,
    keep_alive: Option<Duration>,
    idle_deadline: Option<Instant>,
    last_used: Instant,
}

/// A model in use by one request. Dropping it starts the model's keep-alive countdown.
pub struct Lease {
    scheduler: Weak<Scheduler>,
    key: String,
    model: Arc<dyn LoadedModel>,
    load_duration: Duration,
    _turn: Turn,
}

/// Counts a request as waiting while it lives.
struct Waiting(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Scheduler {
    /// Whether the engine for `kind` loads GGUF files of `architecture`: `Err` with a sentence
    /// saying why not.
    pub fn check_architecture(&self, kind: ModelKind, architecture: &str) -> Result<(), EngineError> {
        let engine = self.engines.for_kind(kind)?;
        match engine.architectures() {
            Some(known) if !known.contains(&architecture) => Err(EngineError::Unsupported(format!(
                "unsupported architecture \"{architecture}\" (modeld runs {} models: {})",
                kind.as_str(),
                known.join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// A scheduler over `engines` (one engine converts into the set that loads generation
    /// models with it). Spawns a task that unloads expired models, so it must be called inside
    /// a tokio runtime.
    pub fn new(engines: impl Into<Engines>, config: SchedulerConfig) -> Arc<Scheduler> {
        let scheduler = Arc::new(Scheduler {
            engines: engines.into(),
            config,
            slots: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            turns: Mutex::new(HashMap::new()),
            n_waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        });
        let weak = Arc::downgrade(&scheduler);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(200));
            loop {
                interval.tick().await;
                let Some(scheduler) = weak.upgrade() else { break };
                scheduler.unload_expired(Instant::now());
            }
        });
        scheduler
    }

    /// The loaded model under `key`, loading it with `spec` first if needed (or reloading it if
    /// it was loaded from other weights; see [`LoadSpec::served_by`]), with the engine for the
    /// spec's kind of model. `keep_alive`: `None` keeps the model's setting. Waits while the
    /// model serves `num_parallel` requests, more urgent requests first; refuses with
    /// [`SchedulerError::Busy`] when `max_queue` requests already wait.
    pub async fn acquire(
        self: &Arc<Self>,
        key: &str,
        spec: &LoadSpec,
        keep_alive: Option<KeepAlive>,
        priority: Priority,
    ) -> Result<Lease, SchedulerError> {
        let started = Instant::now();
        let turn = {
            use std::sync::atomic::Ordering;
            if self.n_waiting.fetch_add(1, Ordering::SeqCst) >= self.config.max_queue {
                self.n_waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(SchedulerError::Busy);
            }
            let _waiting = Waiting(self.n_waiting.clone());
            let turns = self
                .turns
                .lock()
                .unwrap()
                .entry(key.to_owned())
                .or_insert_with(|| TurnQueue::new(self.config.num_parallel, self.config.reserved_interactive))
                .clone();
            turns.take(priority).await
        };
        let turn = match self.try_reuse(key, spec, keep_alive, started, turn) {
            Ok(lease) => return Ok(lease),
            Err(turn) => turn,
        };
        let _loading = self.load_lock.lock().await;
        let turn = match self.try_reuse(key, spec, keep_alive, started, turn) {
            Ok(lease) => return Ok(lease),
            Err(turn) => turn,
        };
        let engine = self.engines.for_kind(spec.kind)?;
        self.make_room(key);
        self.check_memory(key, spec).await?;
        tracing::info!(model = key, path = %spec.model_path.display(), num_ctx = spec.num_ctx, kind = ?spec.kind, "loading model");
        let model = engine.load(spec).await?;
        let mut slots = self.slots.lock().unwrap();
        slots.insert(
            key.to_owned(),
            Slot {
                model: model.clone(),
                spec: spec.clone(),
                n_active_requests: 1,
                keep_alive: keep_alive.map_or(self.config.default_keep_alive, KeepAlive::duration),
                idle_deadline: None,
                last_used: Instant::now(),
            },
        );
        Ok(Lease {
            scheduler: Arc::downgrade(self),
            key: key.to_owned(),
            model,
            load_duration: started.elapsed(),
            _turn: turn,
        })
    }

    /// A lease on `key` if it is loaded with `spec`; else the turn back.
    fn try_reuse(
        self: &Arc<Self>,
        key: &str,
        spec: &LoadSpec,
        keep_alive: Option<KeepAlive>,
        started: Instant,
        turn: Turn,
    ) -> Result<Lease, Turn> {
        let mut slots = self.slots.lock().unwrap();
        let Some(slot) = slots.get_mut(key).filter(|slot| spec.served_by(&slot.spec)) else { return Err(turn) };
        slot.spec.num_ctx = spec.num_ctx;
        slot.n_active_requests += 1;
        slot.idle_deadline = None;
        slot.last_used = Instant::now();
        if let Some(keep_alive) = keep_alive {
            slot.keep_alive = keep_alive.duration();
        }
        Ok(Lease {
            scheduler: Arc::downgrade(self),
            key: key.to_owned(),
            model: slot.model.clone(),
            load_duration: started.elapsed(),
            _turn: turn,
        })
    }

    /// Refuses a load that would not fit, after unloading idle models to make room. The file
    /// and `/proc` reads run on a blocking thread.
    async fn check_memory(&self, key: &str, spec: &LoadSpec) -> Result<(), SchedulerError> {
        let limit = self.config.max_memory;
        let available = move || {
            let system = system_available_memory().unwrap_or(u64::MAX);
            limit.map_or(system, |limit| limit.min(system))
        };
        let model_path = spec.model_path.clone();
        let (required, available_before) =
            tokio::task::spawn_blocking(move || (estimated_model_memory(&model_path), available()))
                .await
                .map_err(|error| EngineError::Load(error.to_string()))?;
        if required <= available_before {
            return Ok(());
        }
        let n_unloaded = {
            let mut slots = self.slots.lock().unwrap();
            let before = slots.len();
            slots.retain(|other, slot| other == key || slot.n_active_requests > 0);
            before - slots.len()
        };
        let available =
            tokio::task::spawn_blocking(available).await.map_err(|error| EngineError::Load(error.to_string()))?;
        if required <= available {
            return Ok(());
        }
        tracing::warn!(
            model = key,
            required,
            available,
            n_unloaded,
            "refusing to load a model that does not fit in memory"
        );
        Err(SchedulerError::InsufficientMemory { required, available })
    }

    /// Drops a stale copy of `key` and, at the limit, the least recently used idle models.
    fn make_room(&self, key: &str) {
        let mut slots = self.slots.lock().unwrap();
        slots.remove(key);
        while slots.len() >= self.config.max_loaded_models.max(1) {
            let victim = slots
                .iter()
                .filter(|(_, slot)| slot.n_active_requests == 0)
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(key, _)| key.clone());
            let Some(victim) = victim else { break };
            tracing::info!(model = victim, "unloading least recently used model");
            slots.remove(&victim);
        }
    }

    /// Unloads `key` now, or as soon as its running requests finish. Returns whether it was
    /// loaded.
    pub fn unload(&self, key: &str) -> bool {
        let mut slots = self.slots.lock().unwrap();
        let Some(slot) = slots.get_mut(key) else { return false };
        if slot.n_active_requests == 0 {
            slots.remove(key);
            tracing::info!(model = key, "unloaded model");
        } else {
            slot.keep_alive = Some(Duration::ZERO);
        }
        true
    }

    /// Whether `key` is loaded.
    pub fn is_loaded(&self, key: &str) -> bool {
        self.slots.lock().unwrap().contains_key(key)
    }

    /// Unloads everything (at shutdown).
    pub fn unload_all(&self) {
        self.slots.lock().unwrap().clear();
    }

    /// Loaded models, latest deadline first.
    pub fn status(&self) -> Vec<LoadedModelStatus> {
        let now_instant = Instant::now();
        let now_system = SystemTime::now();
        let slots = self.slots.lock().unwrap();
        let mut statuses: Vec<LoadedModelStatus> = slots
            .iter()
            .map(|(key, slot)| {
                let expires_at = match (slot.idle_deadline, slot.keep_alive) {
                    (Some(deadline), _) => Some(now_system + deadline.saturating_duration_since(now_instant)),
                    (None, Some(keep_alive)) => Some(now_system + keep_alive),
                    (None, None) => None,
                };
                LoadedModelStatus {
                    key: key.clone(),
                    expires_at,
                    context_length: slot.spec.num_ctx,
                    memory_bytes: slot.model.description().memory_bytes,
                    n_active_requests: slot.n_active_requests,
                }
            })
            .collect();
        statuses.sort_by(|a, b| match (a.expires_at, b.expires_at) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => b.cmp(&a),
        });
        statuses
    }

    fn release(&self, key: &str, model: &Arc<dyn LoadedModel>) {
        let mut slots = self.slots.lock().unwrap();
        let Some(slot) = slots.get_mut(key) else { return };
        if !Arc::ptr_eq(&slot.model, model) {
            return;
        }
        slot.n_active_requests = slot.n_active_requests.saturating_sub(1);
        slot.last_used = Instant::now();
        if slot.n_active_requests == 0 {
            match slot.keep_alive {
                Some(keep_alive) if keep_alive.is_zero() => {
                    slots.remove(key);
                    tracing::info!(model = key, "unloaded model (keep_alive 0)");
                }
                Some(keep_alive) => slot.idle_deadline = Some(Instant::now() + keep_alive),
                None => slot.idle_deadline = None,
            }
        }
    }

    fn unload_expired(&self, now: Instant) {
        let mut slots = self.slots.lock().unwrap();
        slots.retain(|key, slot| {
            let expired = slot.n_active_requests == 0 && slot.idle_deadline.is_some_and(|deadline| deadline <= now);
            if expired {
                tracing::info!(model = key, "keep-alive expired, unloading model");
            }
            !expired
        });
    }
}

impl Lease {
    /// The model.
    pub fn model(&self) -> &Arc<dyn LoadedModel> {
        &self.model
    }

    /// How long this request waited for the model to be ready.
    pub fn load_duration(&self) -> Duration {
        self.load_duration
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(scheduler) = self.scheduler.upgrade() {
            scheduler.release(&self.key, &self.model);
        }
    }
}

#[cfg(test)]
mod tests;
