//! Which inputs of an embedding request run together: sorted by length and cut into batches
//! whose padding stays small, so a batch of short sentences does not pay for one long text.

/// Most tokens (padding included) one batch holds.
const MAX_BATCH_TOKENS: usize = 16_384;

/// Groups of input indices, each to run as one padded batch. Every index appears once. A
/// group's longest input is at most half again as long as its shortest, plus eight tokens.
pub(crate) fn plan(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|index| lengths[*index]);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut shortest = 0;
    for index in order {
        let length = lengths[index].max(1);
        let fits = groups.last().is_some_and(|group| {
            length <= shortest + shortest / 2 + 8 && (group.len() + 1) * length <= MAX_BATCH_TOKENS
        });
        if fits {
            groups.last_mut().unwrap().push(index);
        } else {
            groups.push(vec![index]);
            shortest = length;
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_lengths_run_together_and_a_long_text_alone() {
        let lengths = [12, 500, 10, 11, 14, 13];
        let groups = plan(&lengths);
        assert_eq!(groups, vec![vec![2, 3, 0, 5, 4], vec![1]]);
    }

    #[test]
    fn every_input_is_planned_once_and_batches_stay_bounded() {
        let lengths: Vec<usize> = (0..1000).map(|index| (index * 7919) % 512 + 1).collect();
        let groups = plan(&lengths);
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        for group in &groups {
            let longest = group.iter().map(|index| lengths[*index]).max().unwrap();
            let shortest = group.iter().map(|index| lengths[*index]).min().unwrap();
            assert!(longest <= shortest + shortest / 2 + 8, "{shortest}..{longest}");
            assert!(group.len() * longest <= MAX_BATCH_TOKENS);
        }
        assert!(plan(&[]).is_empty());
        assert_eq!(plan(&[0, 0]), vec![vec![0, 1]]);
    }
}
