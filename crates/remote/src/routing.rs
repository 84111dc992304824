//! Which replica serves a request, as data in and data out: the least loaded healthy one,
//! unless one already holds a long prefix of the prompt in its cache (a chat's next turn, a
//! typing session's next completion, an agent's next tool round), as SGLang's cache-aware
//! router chooses.
//!
//! A prompt is cut into blocks of [`BLOCK_BYTES`]; each block's hash covers everything before
//! it, so two prompts share their first `n` block hashes exactly when they share their first
//! `n` blocks. Each replica remembers the hashes of the prompts it was sent (the most recent
//! [`REMEMBERED_BLOCKS`]), which approximates what its prefix cache holds.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Bytes of prompt per block.
pub const BLOCK_BYTES: usize = 256;
/// Blocks hashed per prompt at most (the first 64 KiB decide).
pub const MAX_BLOCKS: usize = 256;
/// Block hashes each replica remembers.
pub const REMEMBERED_BLOCKS: usize = 65_536;
/// A replica holding this many blocks of the prompt is worth more than an even load.
pub const MIN_MATCHED_BLOCKS: usize = 2;
/// How many more outstanding requests than the least loaded replica a replica may have and
/// still be chosen for its cache.
pub const AFFINITY_SLACK: usize = 4;

/// The chained hashes of a prompt's whole blocks (a last partial block counts too, so short
/// prompts still have one).
pub fn prefix_blocks(text: &str) -> Vec<u64> {
    let bytes = text.as_bytes();
    let mut hasher = DefaultHasher::new();
    bytes
        .chunks(BLOCK_BYTES)
        .take(MAX_BLOCKS)
        .map(|block| {
            block.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

/// The block hashes a replica was sent, oldest forgotten first.
#[derive(Debug, Default)]
pub struct PrefixMemory {
    /// Hash to the sequence number of its latest use.
    latest_use: HashMap<u64, u64>,
    /// Uses in order; an entry whose number is not the hash's latest use is stale.
    order: VecDeque<(u64, u64)>,
    next_use: u64,
}

impl PrefixMemory {
    /// How many of the prompt's first blocks this replica was sent.
    pub fn matched(&self, blocks: &[u64]) -> usize {
        blocks.iter().take_while(|block| self.latest_use.contains_key(block)).count()
    }

    /// Remembers that the replica was sent these blocks.
    pub fn remember(&mut self, blocks: &[u64]) {
        for block in blocks {
            self.next_use += 1;
            self.latest_use.insert(*block, self.next_use);
            self.order.push_back((*block, self.next_use));
        }
        while self.latest_use.len() > REMEMBERED_BLOCKS || self.order.len() > 2 * REMEMBERED_BLOCKS {
            let Some((block, used)) = self.order.pop_front() else { break };
            if self.latest_use.get(&block) == Some(&used) {
                self.latest_use.remove(&block);
            }
        }
    }

    /// Forgets everything (the replica restarted or failed: its cache is gone).
    pub fn clear(&mut self) {
        *self = PrefixMemory::default();
    }
}

/// What routing knows of one replica for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaView {
    /// Not marked down (or its backoff is over).
    pub healthy: bool,
    /// Requests sent to it that have not finished.
    pub outstanding: usize,
    /// Leading blocks of this request's prompt it was sent before.
    pub matched_blocks: usize,
    /// Already tried for this request (it failed before the first token).
    pub tried: bool,
    /// Serving as many requests as its `parallel` allows.
    pub full: bool,
}

/// The replica to send a request to: among the healthy ones not tried yet and not full (all
/// such ones when none is healthy), the one with the longest cached prefix when that is long
/// enough and its load within [`AFFINITY_SLACK`] of the least loaded; else the least loaded,
/// ties broken from `rotation` on so that even load spreads. `None` when every replica was
/// tried or is full.
pub fn choose_replica(replicas: &[ReplicaView], rotation: usize) -> Option<usize> {
    let untried: Vec<usize> =
        (0..replicas.len()).filter(|index| !replicas[*index].tried && !replicas[*index].full).collect();
    let healthy: Vec<usize> = untried.iter().copied().filter(|index| replicas[*index].healthy).collect();
    let candidates = if healthy.is_empty() { untried } else { healthy };
    let least_load = candidates.iter().map(|index| replicas[*index].outstanding).min()?;
    let cached = candidates
        .iter()
        .copied()
        .filter(|index| replicas[*index].matched_blocks >= MIN_MATCHED_BLOCKS)
        .filter(|index| replicas[*index].outstanding <= least_load + AFFINITY_SLACK)
        .max_by_key(|index| (replicas[*index].matched_blocks, std::cmp::Reverse(replicas[*index].outstanding)));
    if cached.is_some() {
        return cached;
    }
    let n = replicas.len().max(1);
    candidates
        .into_iter()
        .filter(|index| replicas[*index].outstanding == least_load)
        .min_by_key(|index| (index + n - rotation % n) % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(healthy: bool, outstanding: usize, matched_blocks: usize) -> ReplicaView {
        ReplicaView { healthy, outstanding, matched_blocks, tried: false, full: false }
    }

    #[test]
    fn prompts_that_share_a_prefix_share_its_blocks() {
        let first = "x".repeat(BLOCK_BYTES * 3) + "first question";
        let next = "x".repeat(BLOCK_BYTES * 3) + "first question, answer, next question";
        let other = "y".to_owned() + &"x".repeat(BLOCK_BYTES * 3);
        let (first, next, other) = (prefix_blocks(&first), prefix_blocks(&next), prefix_blocks(&other));
        assert_eq!(first.len(), 4);
        assert_eq!(first[..3], next[..3]);
        assert_ne!(first[3], next[3]);
        // A block's hash covers everything before it: equal blocks after a difference differ.
        assert!(other.iter().all(|block| !first.contains(block)));
        assert_eq!(prefix_blocks(&"z".repeat(BLOCK_BYTES * (MAX_BLOCKS + 10))).len(), MAX_BLOCKS);
        assert!(prefix_blocks("").is_empty());
    }

    #[test]
    fn memory_matches_leading_blocks_and_forgets_the_oldest() {
        let mut memory = PrefixMemory::default();
        let conversation = prefix_blocks(&"a".repeat(BLOCK_BYTES * 5));
        memory.remember(&conversation[..3]);
        assert_eq!(memory.matched(&conversation), 3);
        assert_eq!(memory.matched(&prefix_blocks("b")), 0);
        for round in 0..(REMEMBERED_BLOCKS / 1000 + 1) as u64 {
            let filler: Vec<u64> = (0..1000).map(|i| (round << 32) | i).collect();
            memory.remember(&filler);
        }
        assert_eq!(memory.matched(&conversation), 0);
        assert!(memory.latest_use.len() <= REMEMBERED_BLOCKS);
        assert!(memory.order.len() <= 2 * REMEMBERED_BLOCKS);
    }

    #[test]
    fn the_replica_with_the_prefix_wins_while_its_load_is_close() {
        assert_eq!(choose_replica(&[view(true, 1, 0), view(true, 2, 6)], 0), Some(1));
        // Too far behind on load: the least loaded takes it.
        assert_eq!(choose_replica(&[view(true, 0, 0), view(true, 1 + AFFINITY_SLACK, 6)], 0), Some(0));
        // A match shorter than the minimum is no reason.
        assert_eq!(choose_replica(&[view(true, 0, 0), view(true, 1, 1)], 0), Some(0));
        // The longest match among several.
        assert_eq!(choose_replica(&[view(true, 0, 3), view(true, 0, 5), view(true, 0, 4)], 0), Some(1));
    }

    #[test]
    fn unhealthy_and_tried_replicas_are_passed_over() {
        assert_eq!(choose_replica(&[view(false, 0, 9), view(true, 3, 0)], 0), Some(1));
        let mut tried = view(true, 0, 9);
        tried.tried = true;
        assert_eq!(choose_replica(&[tried, view(false, 5, 0)], 0), Some(1), "a down replica beats none");
        assert_eq!(choose_replica(&[tried], 0), None);
        assert_eq!(choose_replica(&[], 0), None);
    }

    #[test]
    fn full_replicas_wait_their_turn() {
        let mut full = view(true, 2, 9);
        full.full = true;
        assert_eq!(choose_replica(&[full, view(true, 3, 0)], 0), Some(1));
        assert_eq!(choose_replica(&[full, full], 0), None);
    }

    #[test]
    fn even_load_rotates() {
        let even = [view(true, 0, 0), view(true, 0, 0), view(true, 0, 0)];
        let chosen: Vec<usize> = (0..6).map(|rotation| choose_replica(&even, rotation).unwrap()).collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2]);
        assert_eq!(choose_replica(&[view(true, 2, 0), view(true, 1, 0), view(true, 1, 0)], 0), Some(1));
        assert_eq!(choose_replica(&[view(true, 2, 0), view(true, 1, 0), view(true, 1, 0)], 2), Some(2));
    }
}
