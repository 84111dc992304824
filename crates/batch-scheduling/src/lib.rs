//! Which bucket of sequences the engine steps next, when the running sequences fall into
//! buckets that cannot share a step (decoding sequences batch only when their caches have the
//! same length). Where the pipeline batches decoding sequences of any length (on the CPU, GGUF
//! models without a sliding window: `Pipeline::decodes_mixed_lengths` in the vendored crate),
//! every sequence runs at every pass and this rule is not asked. Elsewhere the vendored mistral.rs
//! scheduler asks [`bucket_to_run`] on every pass; the
//! rule lives here, as data in and data out, so that it is tested with the workspace.
//!
//! The rule:
//! 1. A bucket that has waited [`MAX_WAIT_PASSES`] passes runs next (the one that waited
//!    longest, then the one of highest priority): no answer stalls longer than that while
//!    others run, however many requests keep arriving.
//! 2. Otherwise, when another bucket is at most [`MAX_CATCH_UP_TOKENS`] tokens ahead of the
//!    shortest, the shortest runs, so that it catches up and the two then decode as one batch.
//!    Taking turns instead would keep the gap forever.
//! 3. Otherwise as mistral.rs released it: the bucket of highest priority, or the shortest when
//!    the scheduler asks for discrete bucketing.
//!
//! Rules 1 and 2 together make a newcomer a few tokens behind catch up at `MAX_WAIT_PASSES`
//! steps for every step of the answers ahead of it: those slow down while it catches up, but
//! keep streaming.

/// The most scheduling passes a bucket waits while others run.
pub const MAX_WAIT_PASSES: usize = 4;

/// The widest gap, in tokens, that the shortest bucket closes by running ahead of the others.
pub const MAX_CATCH_UP_TOKENS: usize = 128;

/// What the rule knows of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The length of its sequences' caches.
    pub length: usize,
    /// The most passes any of its sequences has waited since it last ran.
    pub waited_passes: usize,
    /// mistral.rs's priority of the bucket (its sequences' waits plus the logarithms of their
    /// lengths, summed).
    pub priority: f64,
}

/// The index in `buckets` of the bucket to run next; `None` when there are none.
pub fn bucket_to_run(buckets: &[Bucket], discrete: bool) -> Option<usize> {
    let shortest = (0..buckets.len()).min_by_key(|&index| buckets[index].length)?;
    let by_priority = |indices: &mut dyn Iterator<Item = usize>| {
        indices.max_by(|&left, &right| buckets[left].priority.total_cmp(&buckets[right].priority))
    };
    let longest_wait = buckets.iter().map(|bucket| bucket.waited_passes).max().unwrap_or(0);
    if buckets.len() > 1 && longest_wait >= MAX_WAIT_PASSES {
        return by_priority(&mut (0..buckets.len()).filter(|&index| buckets[index].waited_passes == longest_wait));
    }
    let shortest_length = buckets[shortest].length;
    let catches_up_soon = buckets
        .iter()
        .any(|bucket| bucket.length > shortest_length && bucket.length - shortest_length <= MAX_CATCH_UP_TOKENS);
    if discrete || catches_up_soon {
        return Some(shortest);
    }
    by_priority(&mut (0..buckets.len()))
}

/// Positions of padding each sequence of a mixed-length batch may bring beyond the rule of
/// [`lengths_batch_together`]: one block of the KV cache's growth.
pub const PADDING_ALLOWANCE_PER_SEQUENCE: usize = 512;

/// Whether decoding sequences whose caches hold `lengths` positions should share one step
/// where the pipeline can batch different lengths. Their batch buffer gives every sequence the
/// longest one's capacity, so a long conversation beside short completions would multiply its
/// memory by the batch size. They batch when that padding is at most what they hold, plus
/// [`PADDING_ALLOWANCE_PER_SEQUENCE`] each; otherwise they fall back to batches of one length
/// ([`bucket_to_run`]).
pub fn lengths_batch_together(lengths: &[usize]) -> bool {
    let Some(&longest) = lengths.iter().max() else {
        return true;
    };
    let held: usize = lengths.iter().sum();
    let padding = longest * lengths.len() - held;
    padding <= held + PADDING_ALLOWANCE_PER_SEQUENCE * lengths.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_close_together_batch_and_a_long_one_among_short_ones_does_not() {
        assert!(lengths_batch_together(&[]));
        assert!(lengths_batch_together(&[5000]));
        // The steady arrivals of `modeld bench` on Qwen2's vocabulary: 100 to 360 positions.
        assert!(lengths_batch_together(&[364, 300, 250, 150, 100, 90]));
        // Short answers only: the allowance covers them whatever their spread.
        assert!(lengths_batch_together(&[600, 20, 20, 20]));
        // A long conversation beside seven completions would pad them to 4,096 each.
        assert!(!lengths_batch_together(&[4096, 100, 100, 100, 100, 100, 100, 100]));
        // Two long ones of similar length do batch.
        assert!(lengths_batch_together(&[4096, 3500]));
    }

    // The bound is far below the gaps the simulations close (70 tokens, arrivals 25 passes
    // apart), so waiting within it is not waiting out a whole catch-up.
    const _: () = assert!(MAX_WAIT_PASSES < 70 / 4 && MAX_WAIT_PASSES < 25);

    fn bucket(length: usize, waited_passes: usize, priority: f64) -> Bucket {
        Bucket { length, waited_passes, priority }
    }

    #[test]
    fn nothing_to_run() {
        assert_eq!(bucket_to_run(&[], false), None);
    }

    #[test]
    fn one_bucket_runs_however_long_it_waited() {
        assert_eq!(bucket_to_run(&[bucket(10, 0, 1.0)], false), Some(0));
        assert_eq!(bucket_to_run(&[bucket(10, 50, 1.0)], true), Some(0));
    }

    #[test]
    fn the_shortest_catches_up_with_a_bucket_close_ahead() {
        let buckets = [bucket(40, 1, 30.0), bucket(20, 0, 5.0)];
        assert_eq!(bucket_to_run(&buckets, false), Some(1));
        assert_eq!(bucket_to_run(&buckets, true), Some(1));
    }

    #[test]
    fn far_apart_buckets_go_by_priority_unless_discrete() {
        let buckets = [bucket(20, 0, 5.0), bucket(400, 1, 30.0)];
        assert_eq!(bucket_to_run(&buckets, false), Some(1));
        assert_eq!(bucket_to_run(&buckets, true), Some(0));
    }

    #[test]
    fn a_bucket_that_waited_the_most_passes_runs_even_while_another_catches_up() {
        let buckets = [bucket(20, 0, 5.0), bucket(40, MAX_WAIT_PASSES, 3.0), bucket(41, MAX_WAIT_PASSES - 1, 90.0)];
        assert_eq!(bucket_to_run(&buckets, false), Some(1));
        assert_eq!(bucket_to_run(&buckets, true), Some(1));
        // Equal waits: the higher priority first.
        let buckets = [bucket(20, 0, 5.0), bucket(40, 6, 3.0), bucket(41, 6, 4.0)];
        assert_eq!(bucket_to_run(&buckets, false), Some(2));
    }

    /// A sequence of the simulation: its cache length, the tokens it still generates, and the
    /// passes it has waited since it last stepped.
    #[derive(Clone, Copy)]
    struct Simulated {
        length: usize,
        remaining: usize,
        waited: usize,
    }

    /// What the scheduler's loop does with `sequences`, and with `arrivals` (`(pass, prompt
    /// length)`, each generating `generated` tokens): each pass the chosen bucket's sequences
    /// step one token (reaching another bucket's length, they merge with it), the others wait.
    /// Returns the longest wait of any sequence between two of its steps, the number of
    /// sequence steps, and the passes until the last sequence finished.
    fn simulate(mut sequences: Vec<Simulated>, arrivals: &[(usize, usize)], generated: usize) -> (usize, usize, usize) {
        let (mut longest_wait, mut steps) = (0, 0);
        for pass in 0.. {
            for &(_, length) in arrivals.iter().filter(|(at, _)| *at == pass) {
                sequences.push(Simulated { length, remaining: generated, waited: 0 });
            }
            if sequences.is_empty() {
                if arrivals.iter().all(|(at, _)| *at < pass) {
                    return (longest_wait, steps, pass);
                }
                continue;
            }
            let mut lengths: Vec<usize> = sequences.iter().map(|sequence| sequence.length).collect();
            lengths.sort_unstable();
            lengths.dedup();
            let buckets: Vec<Bucket> = lengths
                .iter()
                .map(|&length| {
                    let members = sequences.iter().filter(|sequence| sequence.length == length);
                    Bucket {
                        length,
                        waited_passes: members.clone().map(|sequence| sequence.waited).max().unwrap_or(0),
                        priority: members.map(|sequence| sequence.waited as f64 + (length as f64).log2()).sum(),
                    }
                })
                .collect();
            let chosen = lengths[bucket_to_run(&buckets, false).expect("a bucket")];
            for sequence in &mut sequences {
                if sequence.length == chosen {
                    sequence.length += 1;
                    sequence.remaining -= 1;
                    sequence.waited = 0;
                    steps += 1;
                } else {
                    sequence.waited += 1;
                    longest_wait = longest_wait.max(sequence.waited);
                }
            }
            sequences.retain(|sequence| sequence.remaining > 0);
        }
        unreachable!()
    }

    #[test]
    fn a_newcomer_catches_up_and_no_running_answer_waits_past_the_bound() {
        // Three answers 100 tokens in, 300 more to go; a request of 30 tokens arrives.
        let running = Simulated { length: 100, remaining: 300, waited: 0 };
        let (longest_wait, steps, passes) = simulate(vec![running; 3], &[(1, 30)], 300);
        // The answers ahead wait at most the bound, not the 70 passes of a catch-up in one go.
        assert!(longest_wait <= MAX_WAIT_PASSES, "waited {longest_wait} passes");
        assert_eq!(steps, 4 * 300);
        // 70 tokens to close: in each MAX_WAIT_PASSES + 1 passes the newcomer steps
        // MAX_WAIT_PASSES times and the answers ahead once; then they share every step.
        let catch_up = 70 * (MAX_WAIT_PASSES + 1) / (MAX_WAIT_PASSES - 1);
        assert!(passes <= 1 + catch_up + 300 + MAX_WAIT_PASSES, "{passes} passes");
    }

    #[test]
    fn steady_arrivals_never_stall_an_answer_past_the_bound() {
        // A request every 25 passes, of 10 to 70 tokens, each answered with 64.
        let arrivals: Vec<(usize, usize)> = (0..40).map(|index| (index * 25, 10 + 10 * (index % 7))).collect();
        let (longest_wait, steps, passes) = simulate(Vec::new(), &arrivals, 64);
        assert_eq!(steps, 40 * 64);
        // Buckets waiting at once take turns, the longest wait first.
        assert!(longest_wait <= MAX_WAIT_PASSES, "waited {longest_wait} passes");
        // Batching keeps up with the arrivals (the last arrives at pass 975 and answers in 64
        // steps): far fewer passes than one per token.
        assert!(passes < 40 * 25 + 100, "{passes} passes for {steps} steps");
    }
}
