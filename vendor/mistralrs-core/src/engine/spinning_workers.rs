//! modeld: keeps the engine's other CPU workers awake for the length of a forward step.
//!
//! On the CPU the engine thread is worker 0 of its own rayon pool (see `MistralRs::new`). A
//! decoding step runs a few hundred short parallel loops (every matrix product, attention), and
//! between them the other workers run out of work, yield a few dozen times and go to sleep on a
//! futex; each loop then starts by waking them (a system call, and an inter-processor interrupt
//! inside a virtual machine) and the engine thread sleeps and is woken the same way at the loop's
//! end. Measured on 2 cores, that was about a sixth of a decoding step's samples. llama.cpp's
//! thread pool spins between operations instead.
//!
//! [`SpinningWorkers::start`] gives every other worker of the pool a job that steals and runs
//! work (`rayon::yield_now`) and spins while there is none, until the returned guard is dropped,
//! so the step's loops find them awake. A worker stops on its own after [`IDLE_LIMIT`] without
//! work (a step waiting on something other than computation), and falls back to rayon's own
//! sleeping.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How long a spinning worker waits without finding work before it goes back to sleep.
const IDLE_LIMIT: Duration = Duration::from_millis(5);

/// While alive, the other workers of the current rayon pool spin looking for work.
pub(crate) struct SpinningWorkers {
    done: Arc<AtomicBool>,
}

impl SpinningWorkers {
    /// Starts the other workers spinning, when the calling thread is a worker of a pool of two or
    /// more threads (the engine on the CPU). Elsewhere (a GPU engine, one core) it does nothing.
    pub(crate) fn start() -> Option<SpinningWorkers> {
        let caller = rayon::current_thread_index()?;
        if rayon::current_num_threads() < 2 {
            return None;
        }
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        rayon::spawn_broadcast(move |context| {
            if context.index() != caller {
                spin_until(&flag);
            }
        });
        Some(SpinningWorkers { done })
    }
}

impl Drop for SpinningWorkers {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

thread_local! {
    /// Whether this worker is inside [`spin_until`]: a job of the next step that the spinning
    /// worker picks up itself returns at once instead of nesting a second spin.
    static SPINNING: Cell<bool> = const { Cell::new(false) };
}

/// Runs the pool's jobs as they appear until `done` is set or no job came for [`IDLE_LIMIT`].
fn spin_until(done: &AtomicBool) {
    if SPINNING.with(|spinning| spinning.replace(true)) {
        return;
    }
    spin_loop_until(done);
    SPINNING.with(|spinning| spinning.set(false));
}

fn spin_loop_until(done: &AtomicBool) {
    let mut last_work = Instant::now();
    let mut idle_rounds = 0u32;
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {
                last_work = Instant::now();
                idle_rounds = 0;
            }
            Some(rayon::Yield::Idle) => {
                idle_rounds += 1;
                // Reading the clock every round would cost more than the spinning it bounds.
                if idle_rounds % 256 == 0 && last_work.elapsed() > IDLE_LIMIT {
                    return;
                }
                std::hint::spin_loop();
            }
            None => return,
        }
    }
}
