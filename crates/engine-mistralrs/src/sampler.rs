//! `TokenSampler`: samples each token in modeld (temperature, top-k, top-p, min-p, a
//! per-request seed) as a mistral.rs logits processor, and records the ids and times.
//!
//! mistral.rs applies the repeat, presence and frequency penalties before calling it; it then
//! masks every logit but the chosen one, so mistral.rs's greedy pick is this sampler's pick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::Sampling;
use mistralrs::{CustomLogitsProcessor, Tensor};

/// What the sampler saw: every sampled id, and when the first and last were sampled.
#[derive(Debug, Default)]
pub(crate) struct SamplerRecord {
    pub(crate) token_ids: Vec<u32>,
    /// Length of the context at the last sample; a second call at the same length is
    /// mistral.rs resampling under a grammar mask, which replaces the first pick.
    last_context_len: Option<usize>,
    pub(crate) first_token_at: Option<Instant>,
    pub(crate) last_token_at: Option<Instant>,
}

pub(crate) struct TokenSampler {
    sampling: Sampling,
    rng: Mutex<SplitMix64>,
    record: Arc<Mutex<SamplerRecord>>,
    /// The model's count of tokens sampled, over every generation.
    tokens_sampled: Arc<AtomicU64>,
}

impl TokenSampler {
    pub(crate) fn new(
        sampling: Sampling,
        record: Arc<Mutex<SamplerRecord>>,
        tokens_sampled: Arc<AtomicU64>,
    ) -> TokenSampler {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = sampling.seed.unwrap_or_else(|| {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
            nanos as u64 ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        });
        TokenSampler { sampling, rng: Mutex::new(SplitMix64(seed)), record, tokens_sampled }
    }
}

impl CustomLogitsProcessor for TokenSampler {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let values: Vec<f32> = logits.to_dtype(mistralrs::DType::F32)?.flatten_all()?.to_vec1()?;
        let chosen = {
            let mut rng = self.rng.lock().unwrap();
            choose_token(&values, &self.sampling, || rng.next_f64())
        };
        let now = Instant::now();
        self.tokens_sampled.fetch_add(1, Ordering::Relaxed);
        {
            let mut record = self.record.lock().unwrap();
            if record.last_context_len == Some(context.len()) {
                record.token_ids.pop();
            }
            record.last_context_len = Some(context.len());
            record.token_ids.push(chosen as u32);
            record.first_token_at.get_or_insert(now);
            record.last_token_at = Some(now);
        }
        let mut masked = vec![f32::NEG_INFINITY; values.len()];
        masked[chosen] = 0.0;
        Tensor::from_vec(masked, logits.shape(), logits.device())
    }
}

/// Picks a token index from logits: greedy at temperature 0, else temperature-scaled
/// softmax restricted by top-k, top-p and min-p, sampled with `uniform` in [0, 1).
pub(crate) fn choose_token(logits: &[f32], sampling: &Sampling, mut uniform: impl FnMut() -> f64) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.is_nan())
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(index, _)| index)
            .unwrap_or(0)
    };
    if sampling.temperature <= 0.0 || sampling.top_k == 1 {
        return argmax();
    }
    let mut candidates: Vec<(usize, f32)> =
        logits.iter().copied().enumerate().filter(|(_, value)| value.is_finite()).collect();
    if candidates.is_empty() {
        return argmax();
    }
    let by_logit_descending = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1);
    if sampling.top_k > 0 && sampling.top_k < candidates.len() {
        candidates.select_nth_unstable_by(sampling.top_k - 1, by_logit_descending);
        candidates.truncate(sampling.top_k);
    }
    candidates.sort_unstable_by(by_logit_descending);
    let max_logit = candidates[0].1 as f64;
    let mut probabilities: Vec<f64> =
        candidates.iter().map(|(_, logit)| ((*logit as f64 - max_logit) / sampling.temperature).exp()).collect();
    let total: f64 = probabilities.iter().sum();
    probabilities.iter_mut().for_each(|probability| *probability /= total);
    let mut keep = probabilities.len();
    if sampling.top_p > 0.0 && sampling.top_p < 1.0 {
        let mut cumulative = 0.0;
        for (index, probability) in probabilities.iter().enumerate() {
            cumulative += probability;
            if cumulative >= sampling.top_p {
                keep = index + 1;
                break;
            }
        }
    }
    if sampling.min_p > 0.0 {
        let threshold = probabilities[0] * sampling.min_p;
        keep = keep.min(probabilities.iter().take_while(|probability| **probability >= threshold).count().max(1));
    }
    let kept_total: f64 = probabilities[..keep].iter().sum();
    let mut target = uniform() * kept_total;
    for (index, probability) in probabilities[..keep].iter().enumerate() {
        target -= probability;
        if target <= 0.0 {
            return candidates[index].0;
        }
    }
    candidates[keep - 1].0
}

/// A small, fast, seedable generator (SplitMix64); quality is ample for sampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_k: usize, top_p: f64, min_p: f64) -> Sampling {
        Sampling { temperature, top_k, top_p, min_p, ..Default::default() }
    }

    #[test]
    fn greedy_and_truncations() {
        let logits = [1.0, 3.0, 2.0, f32::NEG_INFINITY];
        assert_eq!(choose_token(&logits, &sampling(0.0, 40, 0.9, 0.0), || 0.99), 1);
        // top_k 2 leaves indexes 1 and 2; a draw near 1 picks the less likely one.
        assert_eq!(choose_token(&logits, &sampling(1.0, 2, 1.0, 0.0), || 0.999), 2);
        // top_p small keeps only the best.
        assert_eq!(choose_token(&logits, &sampling(1.0, 0, 0.1, 0.0), || 0.999), 1);
        // min_p 0.9 keeps only tokens nearly as likely as the best.
        assert_eq!(choose_token(&logits, &sampling(1.0, 0, 1.0, 0.9), || 0.999), 1);
        // Without limits every finite token can come up.
        assert_eq!(choose_token(&logits, &sampling(1.0, 0, 1.0, 0.0), || 0.999), 0);
    }

    #[test]
    fn same_seed_same_draws() {
        let draws = |seed| {
            let mut rng = SplitMix64(seed);
            (0..5).map(|_| rng.next_f64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(7).iter().all(|draw| (0.0..1.0).contains(draw)));
    }
}
