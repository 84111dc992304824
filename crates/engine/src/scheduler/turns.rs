//! Turns on one model: `num_parallel` shared slots, one more reserved for interactive requests,
//! and waiters served by priority (first come first served within a priority).
//!
//! The reserved slot is what keeps completion while typing responsive: with
//! `OLLAMA_NUM_PARALLEL=1` a long chat holds the only shared slot, and a completion request
//! would otherwise wait for the whole answer.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How urgently a request wants the model. Higher priorities are served first when requests
/// wait, and [`Priority::Interactive`] may use a slot reserved for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Work nobody watches token by token: embeddings of a corpus, scripted jobs.
    Batch,
    /// A person reads the answer as it streams: chat and generate.
    #[default]
    Chat,
    /// A person is typing and waits for it: inline completion.
    Interactive,
}

impl Priority {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Batch => "batch",
            Priority::Chat => "chat",
            Priority::Interactive => "interactive",
        }
    }
}

/// Which kind of slot a turn holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Shared,
    Reserved,
}

/// The turns of one model.
pub(crate) struct TurnQueue {
    state: Mutex<QueueState>,
}

struct QueueState {
    free_shared: usize,
    free_reserved: usize,
    next_ticket: u64,
    waiters: Vec<Waiter>,
}

struct Waiter {
    priority: Priority,
    ticket: u64,
    sender: oneshot::Sender<Turn>,
}

/// The right to run one request on the model; dropping it hands the slot to the next waiter.
pub(crate) struct Turn {
    queue: Option<Arc<TurnQueue>>,
    kind: SlotKind,
}

impl TurnQueue {
    /// `n_shared` slots for every request and `n_reserved` more for interactive ones.
    pub(crate) fn new(n_shared: usize, n_reserved: usize) -> Arc<TurnQueue> {
        Arc::new(TurnQueue {
            state: Mutex::new(QueueState {
                free_shared: n_shared.max(1),
                free_reserved: n_reserved,
                next_ticket: 0,
                waiters: Vec::new(),
            }),
        })
    }

    /// Waits for a turn. Dropping the future gives up the place in the queue.
    pub(crate) async fn take(self: &Arc<Self>, priority: Priority) -> Turn {
        let receiver = {
            let mut state = self.state.lock().unwrap();
            // Nobody jumps a waiter of the same or a higher priority.
            let queue_ahead = state.waiters.iter().any(|waiter| waiter.priority >= priority);
            if !queue_ahead {
                if state.free_shared > 0 {
                    state.free_shared -= 1;
                    return Turn { queue: Some(self.clone()), kind: SlotKind::Shared };
                }
                if priority == Priority::Interactive && state.free_reserved > 0 {
                    state.free_reserved -= 1;
                    return Turn { queue: Some(self.clone()), kind: SlotKind::Reserved };
                }
            }
            let (sender, receiver) = oneshot::channel();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiters.push(Waiter { priority, ticket, sender });
            receiver
        };
        receiver.await.expect("a waiter's sender is only dropped after sending")
    }

    /// Hands a freed slot to the most urgent waiter that may use it, or frees it.
    fn release(self: &Arc<Self>, kind: SlotKind) {
        loop {
            let waiter = {
                let mut state = self.state.lock().unwrap();
                state.waiters.retain(|waiter| !waiter.sender.is_closed());
                let eligible = |waiter: &Waiter| kind == SlotKind::Shared || waiter.priority == Priority::Interactive;
                let best = state
                    .waiters
                    .iter()
                    .enumerate()
                    .filter(|(_, waiter)| eligible(waiter))
                    .max_by(|(_, a), (_, b)| a.priority.cmp(&b.priority).then(b.ticket.cmp(&a.ticket)))
                    .map(|(index, _)| index);
                match best {
                    Some(position) => state.waiters.remove(position),
                    None => {
                        match kind {
                            SlotKind::Shared => state.free_shared += 1,
                            SlotKind::Reserved => state.free_reserved += 1,
                        }
                        return;
                    }
                }
            };
            match waiter.sender.send(Turn { queue: Some(self.clone()), kind }) {
                Ok(()) => return,
                // The waiter gave up meanwhile: try the next one, without recursing through drop.
                Err(mut turn) => turn.queue = None,
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release(self.kind);
        }
    }
}
