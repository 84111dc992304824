//! Which inputs of an embedding request run together: consecutive inputs up to a token budget.
//! Sequences are packed without padding, so lengths need not be alike; the budget bounds the
//! forward pass's buffers (the widest is tokens × the feed-forward width).

/// Most tokens one batch holds: past a few thousand rows the matrix products run no faster.
const MAX_BATCH_TOKENS: usize = 4096;

/// Groups of input indices in order, each to run as one packed batch. Every index appears once;
/// a group holds at most `MAX_BATCH_TOKENS` tokens unless it is a single longer input.
pub(crate) fn plan(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for (index, length) in lengths.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if tokens + length <= MAX_BATCH_TOKENS => {
                group.push(index);
                tokens += length;
            }
            _ => {
                groups.push(vec![index]);
                tokens = *length;
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inputs_run_together_up_to_the_budget() {
        assert_eq!(plan(&[12, 500, 10, 11]), vec![vec![0, 1, 2, 3]]);
        assert_eq!(plan(&[4000, 100, 10, 5000, 1]), vec![vec![0], vec![1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn every_input_is_planned_once_in_order_and_batches_stay_bounded() {
        let lengths: Vec<usize> = (0..1000).map(|index| (index * 7919) % 512 + 1).collect();
        let groups = plan(&lengths);
        let seen: Vec<usize> = groups.iter().flatten().copied().collect();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for group in &groups {
            let tokens: usize = group.iter().map(|index| lengths[*index]).sum();
            assert!(tokens <= MAX_BATCH_TOKENS || group.len() == 1);
        }
        assert!(plan(&[]).is_empty());
        assert_eq!(plan(&[0, 0]), vec![vec![0, 1]]);
    }
}
