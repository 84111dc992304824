//! Which inputs of an embedding request run together, and on which thread: consecutive inputs
//! up to a token budget form a batch (sequences are packed without padding, so lengths need not
//! be alike; the budget bounds the forward pass's buffers), and a batch with enough tokens is
//! split into one part per thread, each run as its own forward pass.

use std::ops::Range;

/// Most tokens one batch holds: past a few thousand rows the matrix products run no faster.
const MAX_BATCH_TOKENS: usize = 4096;

/// Fewest tokens a part of a split batch holds. Below this a product streams its weights from
/// memory rather than computing, and two threads sharing one product's weights beat two
/// threads each streaming all of them.
const MIN_PART_TOKENS: usize = 48;

/// Ranges of consecutive inputs, each to run as one packed batch. Every index appears once;
/// a batch holds at most `MAX_BATCH_TOKENS` tokens unless it is a single longer input.
pub(crate) fn plan(lengths: &[usize]) -> Vec<Range<usize>> {
    let mut batches: Vec<Range<usize>> = Vec::new();
    let mut tokens = 0;
    for (index, length) in lengths.iter().enumerate() {
        match batches.last_mut() {
            Some(batch) if tokens + length <= MAX_BATCH_TOKENS => {
                batch.end = index + 1;
                tokens += length;
            }
            _ => {
                batches.push(index..index + 1);
                tokens = *length;
            }
        }
    }
    batches
}

/// A batch's inputs cut into at most `threads` consecutive parts of about equal tokens, each of
/// at least `MIN_PART_TOKENS`: one part per thread, so the threads run whole forward passes with
/// no hand-over between them. A batch too small to split is one part (its products are then
/// split across the threads instead).
pub(crate) fn split(lengths: &[usize], threads: usize) -> Vec<Range<usize>> {
    let total: usize = lengths.iter().sum();
    let parts = threads.min(total / MIN_PART_TOKENS).min(lengths.len()).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    let mut tokens = 0;
    for (index, length) in lengths.iter().enumerate() {
        tokens += length;
        // Close a part once it reaches its share of the tokens, leaving an input for each part after it.
        let share = total * (ranges.len() + 1) / parts;
        let inputs_left = lengths.len() - index - 1;
        if ranges.len() + 1 < parts && tokens >= share && inputs_left >= parts - ranges.len() - 1 {
            ranges.push(start..index + 1);
            start = index + 1;
        }
    }
    if start < lengths.len() || ranges.is_empty() {
        ranges.push(start..lengths.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inputs_run_together_up_to_the_budget() {
        assert_eq!(plan(&[12, 500, 10, 11]), vec![0..4]);
        assert_eq!(plan(&[4000, 100, 10, 5000, 1]), vec![0..1, 1..3, 3..4, 4..5]);
    }

    #[test]
    fn every_input_is_planned_once_in_order_and_batches_stay_bounded() {
        let lengths: Vec<usize> = (0..1000).map(|index| (index * 7919) % 512 + 1).collect();
        let batches = plan(&lengths);
        let seen: Vec<usize> = batches.iter().cloned().flatten().collect();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for batch in &batches {
            let tokens: usize = lengths[batch.clone()].iter().sum();
            assert!(tokens <= MAX_BATCH_TOKENS || batch.len() == 1);
        }
        assert!(plan(&[]).is_empty());
        assert_eq!(plan(&[0, 0]), vec![0..2]);
    }

    #[test]
    fn a_large_batch_splits_evenly_and_a_small_one_not_at_all() {
        assert_eq!(split(&[23; 64], 2), vec![0..32, 32..64]);
        assert_eq!(split(&[23; 8], 2), vec![0..4, 4..8]);
        assert_eq!(split(&[23; 8], 1), vec![0..8]);
        // One sentence, or too few tokens for two parts worth splitting.
        assert_eq!(split(&[256], 2), vec![0..1]);
        assert_eq!(split(&[10, 12, 9], 2), vec![0..3]);
        // A long text and short ones: the parts balance tokens, not inputs.
        assert_eq!(split(&[200, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20], 2), vec![0..1, 1..11]);
        assert_eq!(split(&[], 2), vec![0..0]);
    }

    #[test]
    fn parts_cover_the_batch_in_order_for_any_thread_count() {
        let lengths: Vec<usize> = (0..97).map(|index| (index * 31) % 200 + 1).collect();
        for threads in 1..9 {
            let parts = split(&lengths, threads);
            assert!(parts.len() <= threads && !parts.is_empty());
            assert_eq!(parts.iter().cloned().flatten().collect::<Vec<_>>(), (0..97).collect::<Vec<_>>());
            assert!(parts.iter().all(|part| !part.is_empty()));
        }
    }
}
