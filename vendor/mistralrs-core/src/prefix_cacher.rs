use candle_core::{DType, Device, Result};
use indexmap::IndexMap;
use itertools::Itertools;
use tracing::info;

use crate::{
    kv_cache::RecurrentStateSnapshot, paged_attention::block_hash::BlockHash, pipeline::KvCache,
    sequence::Sequence,
};

#[derive(PartialEq, Eq, Debug, Hash)]
struct Tokens(Vec<u32>);

impl Tokens {
    /// Returns the length of the common prefix shared with `other`.
    fn shared_prefix_len(&self, other: &Self) -> usize {
        self.0
            .iter()
            .zip(other.0.iter())
            .take_while(|(a, b)| a == b)
            .count()
    }
}

impl From<Vec<u32>> for Tokens {
    fn from(value: Vec<u32>) -> Self {
        Self(value)
    }
}

#[derive(Clone)]
struct CacheElement {
    cache: Vec<Option<KvCache>>,
    /// modeld: how many of the tokens were the sequence's prompt (the rest it generated).
    prompt_len: usize,
    /// Recurrent state snapshots for hybrid models (one per recurrent layer)
    recurrent_snapshots: Option<Vec<RecurrentStateSnapshot>>,
    audio_hashes: Option<Vec<u64>>,
    image_hashes: Option<Vec<u64>>,
    video_hashes: Option<Vec<u64>>,
    /// modeld: whether its F32 keys and values are kept in F16 (see `demote_to_f16`).
    demoted_to_f16: bool,
}

impl CacheElement {
    /// modeld: on the CPU, an entry that is no longer the most recently added keeps its keys
    /// and values in F16, half the bytes. The KV cache holds them at F16's precision already
    /// (`SingleCache::append`), so nothing is lost; an entry that is used again gets its F32
    /// form back (`promote_to_f32`). The newest entry stays F32, so the request that most
    /// likely continues it (the same prompt again, a chat's next turn, the next keystroke)
    /// takes it over without a conversion. Should a conversion fail, the entry stays as it is.
    fn demote_to_f16(&mut self) {
        if self.demoted_to_f16
            || !self.is_on_cpu()
            || !self.cache.iter().flatten().all(|layer| match layer {
                KvCache::Normal { k, v } => [&k.all_data, &v.all_data]
                    .iter()
                    .all(|data| data.as_ref().is_none_or(|t| t.dtype() == DType::F32)),
                _ => false,
            })
        {
            return;
        }
        let Ok(layers) = self.converted_layers(DType::F16) else {
            return;
        };
        self.cache = layers;
        self.demoted_to_f16 = true;
    }

    /// modeld: the F32 form of a demoted entry (see `demote_to_f16`).
    fn promote_to_f32(&mut self) -> Result<()> {
        if self.demoted_to_f16 {
            self.cache = self.converted_layers(DType::F32)?;
            self.demoted_to_f16 = false;
        }
        Ok(())
    }

    /// The layers with their keys and values in `dtype`, converted in parallel (the engine
    /// thread is a worker of the pool).
    fn converted_layers(&self, dtype: DType) -> Result<Vec<Option<KvCache>>> {
        use rayon::prelude::*;
        self.cache
            .par_iter()
            .map(|layer| {
                let Some(KvCache::Normal { k, v }) = layer else {
                    return Ok(layer.clone());
                };
                let convert = |cache: &crate::kv_cache::SingleCache| -> Result<_> {
                    let mut converted = cache.clone();
                    converted.all_data = cache
                        .all_data
                        .as_ref()
                        .map(|data| data.to_dtype(dtype))
                        .transpose()?;
                    Ok(converted)
                };
                Ok(Some(KvCache::Normal {
                    k: convert(k)?,
                    v: convert(v)?,
                }))
            })
            .collect()
    }

    fn can_rewind_to(&self, len: usize) -> bool {
        self.cache
            .iter()
            .flatten()
            .all(|layer| layer.try_set_len(len).is_ok())
    }
}

/// modeld: an entry's KV cache is kept at its length rounded up to this many positions.
const PREFIX_ENTRY_GRANULE: usize = 64;

/// modeld: the most bytes of KV cache kept for prefix reuse on the CPU, per prefix cache (one
/// per loaded model); `usize::MAX` (the default) keeps mistral.rs's unbounded behaviour.
static CPU_PREFIX_CACHE_BUDGET_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);

/// modeld: bounds the KV cache that each prefix cache keeps on the CPU to `bytes`; past it the
/// least recently used entries are dropped. mistral.rs's own eviction only moves caches off
/// GPUs, so without a bound every finished sequence stays in memory.
pub fn set_cpu_prefix_cache_budget_bytes(bytes: usize) {
    CPU_PREFIX_CACHE_BUDGET_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

impl CacheElement {
    /// Bytes held by the K and V tensors of every layer.
    fn size_in_bytes(&self) -> usize {
        let tensor_bytes = |tensor: &Option<candle_core::Tensor>| {
            tensor.as_ref().map_or(0, |t| t.elem_count() * t.dtype().size_in_bytes())
        };
        self.cache
            .iter()
            .flatten()
            .map(|layer| match layer {
                KvCache::Normal { k, v } => tensor_bytes(&k.all_data) + tensor_bytes(&v.all_data),
                KvCache::Rotating { k, v } => tensor_bytes(&k.all_data) + tensor_bytes(&v.all_data),
                KvCache::Shared { .. } => 0,
            })
            .sum()
    }

    fn is_on_cpu(&self) -> bool {
        self.cache.iter().flatten().any(|layer| match layer {
            KvCache::Normal { k, .. } => k.all_data.as_ref().is_some_and(|t| t.device().is_cpu()),
            KvCache::Rotating { k, .. } => k.all_data.as_ref().is_some_and(|t| t.device().is_cpu()),
            KvCache::Shared { .. } => false,
        })
    }
}

pub struct PrefixCacheManagerV2 {
    caches: IndexMap<Tokens, CacheElement>,
    paged_recurrent_caches: IndexMap<Vec<BlockHash>, Vec<RecurrentStateSnapshot>>,
    n_on_device: usize,
    no_prefix_cache: bool,
    has_paged_attention: bool,
}

#[derive(Clone)]
pub enum MatchingCache {
    Normal {
        normal: Vec<Option<KvCache>>,
        recurrent_snapshots: Option<Vec<RecurrentStateSnapshot>>,
        images_to_keep: usize,
        audios_to_keep: usize,
        videos_to_keep: usize,
        toks: Vec<u32>,
        offset: usize,
    },
}

impl PrefixCacheManagerV2 {
    pub fn new(n_on_device: usize, no_prefix_cache: bool, has_paged_attention: bool) -> Self {
        if !no_prefix_cache && !has_paged_attention {
            info!("Prefix caching enabled (sequence-level, non-paged attention). Expect higher multi-turn throughput for both text and multimodal.");
        }
        PrefixCacheManagerV2 {
            caches: IndexMap::new(),
            paged_recurrent_caches: IndexMap::new(),
            n_on_device,
            no_prefix_cache,
            has_paged_attention,
        }
    }

    fn paged_recurrent_capacity(&self) -> usize {
        self.n_on_device.max(1).saturating_mul(8)
    }

    /// This always keeps the cache on the device.
    pub fn add_sequence(
        &mut self,
        seq: &mut Sequence,
        recurrent_snapshots: Option<Vec<RecurrentStateSnapshot>>,
    ) {
        // Do not cache if prefix caching disabled
        if self.no_prefix_cache {
            return;
        }

        // For paged attention, prefix caching is handled by the KVCacheManager.
        // PrefixCacheManagerV2 only handles non-paged attention caching.
        if !self.has_paged_attention {
            // modeld: the sequence has finished (every caller adds a sequence that is done or
            // canceled), so its KV cache moves into the entry instead of being shared with it:
            // the entry is then the only holder of its storage, and the request that takes it
            // over (the same prompt again, a chat's next turn) writes into it in place instead
            // of copying it whole (`NormalCacheManager::clone_in_cache`).
            let mut cache: Vec<_> = seq.normal_cache().iter_mut().map(Option::take).collect();
            // modeld: on the CPU an entry keeps its positions, not the capacity its buffer grew
            // to (blocks of `CACHE_GROW_SIZE`: a 40-token answer held 512 positions, a 600-token
            // one 1,024), so the budget holds entries, not empty capacity; `PREFIX_ENTRY_GRANULE`
            // positions of slack let the request that takes the entry over append a few tokens
            // in place.
            // A sequence that decoded in a batch holds views of the batch's buffer
            // (`clone_out_cache` chunks it); its entry gets a copy of its own part, since a view
            // kept the whole batch's buffer alive. Should a copy fail, the entry keeps its
            // buffer as it is.
            for layer in cache.iter_mut().flatten() {
                if let KvCache::Normal { k, v } = layer {
                    if !k.all_data.as_ref().is_some_and(|data| data.device().is_cpu()) {
                        continue;
                    }
                    let _ = k.shrink_to_fit(PREFIX_ENTRY_GRANULE);
                    let _ = v.shrink_to_fit(PREFIX_ENTRY_GRANULE);
                }
            }
            let toks: Tokens = seq.get_toks().to_vec().into();

            // modeld: an entry whose tokens the new one extends can serve no match the new one
            // cannot (when the new one can be rewound to every length the old one serves: no
            // recurrent state, no sliding window rolled past its start), so it only holds
            // memory; and the new entry goes last, as the most recently used.
            let new_element = CacheElement {
                cache,
                prompt_len: seq.prompt_tokens(),
                recurrent_snapshots,
                image_hashes: seq.image_hashes().map(|x| x.to_vec()),
                audio_hashes: seq.audio_hashes().map(|x| x.to_vec()),
                video_hashes: seq.video_hashes().map(|x| x.to_vec()),
                demoted_to_f16: false,
            };
            let new_element_rewinds = seq.recurrent_state_idx().is_none();
            self.caches.retain(|cached, element| {
                !(new_element_rewinds
                    && element.recurrent_snapshots.is_none()
                    && cached.0.len() <= toks.0.len()
                    && toks.shared_prefix_len(cached) == cached.0.len()
                    && new_element.can_rewind_to(cached.0.len().saturating_sub(1)))
            });
            self.caches.shift_remove(&toks);
            // modeld: every entry but the newest keeps its keys and values in F16.
            for element in self.caches.values_mut() {
                element.demote_to_f16();
            }
            self.caches.insert(toks, new_element);
        }
    }

    /// Evict the caches. This will evict the first k seqs such that the number of sequences on device after the copy is
    /// the maximum allowed. Returns the number of evicted sequences.
    pub fn evict_caches(&mut self) -> Result<usize> {
        if self.no_prefix_cache {
            return Ok(0);
        }
        let mut n_on_device = 0;
        for cache in self.caches.values() {
            let first_non_none = cache
                .cache
                .iter()
                .find_or_first(|x| x.as_ref().is_some_and(|kv| kv.k().ok().flatten().is_some()));
            let Some(Some(first_non_none)) = first_non_none else {
                continue;
            };

            let cache_device = match first_non_none {
                KvCache::Normal { k, .. } => {
                    k.all_data().as_ref().expect("No KV cache data").device()
                }
                KvCache::Rotating { k, .. } => {
                    k.all_data().as_ref().expect("No KV cache data").device()
                }
                KvCache::Shared { .. } => continue,
            };

            if !matches!(cache_device, Device::Cpu) {
                n_on_device += 1;
            }
        }
        let mut n_evicted = 0;
        // Intentionally evict the first ones first, as they are the oldest
        for cache in self.caches.values_mut() {
            if n_on_device - n_evicted <= self.n_on_device {
                break;
            }
            let first_non_none = cache
                .cache
                .iter()
                .find_or_first(|x| x.as_ref().is_some_and(|kv| kv.k().ok().flatten().is_some()));
            let Some(Some(first_non_none)) = first_non_none else {
                continue;
            };

            let cache_device = match first_non_none {
                KvCache::Normal { k, .. } => {
                    k.all_data().as_ref().expect("No KV cache data").device()
                }
                KvCache::Rotating { k, .. } => {
                    k.all_data().as_ref().expect("No KV cache data").device()
                }
                KvCache::Shared { .. } => continue,
            };

            if !matches!(cache_device, Device::Cpu) {
                cache.cache.clear();
                n_evicted += 1;
            }
        }

        self.caches.retain(|_tokens, cache| !cache.cache.is_empty());

        // modeld: on the CPU, drop the least recently used entries past the byte budget.
        let budget = CPU_PREFIX_CACHE_BUDGET_BYTES.load(std::sync::atomic::Ordering::Relaxed);
        if budget != usize::MAX {
            let mut cpu_bytes: usize = self
                .caches
                .values()
                .filter(|element| element.is_on_cpu())
                .map(CacheElement::size_in_bytes)
                .sum();
            let mut index = 0;
            while cpu_bytes > budget && index < self.caches.len() {
                let element = &self.caches[index];
                if element.is_on_cpu() {
                    cpu_bytes -= element.size_in_bytes();
                    self.caches.shift_remove_index(index);
                    n_evicted += 1;
                } else {
                    index += 1;
                }
            }
        }

        Ok(n_evicted)
    }

    /// Evict all the caches.
    pub fn evict_all_caches(&mut self) -> Result<usize> {
        let len = self.caches.len();
        self.caches.clear();
        self.paged_recurrent_caches.clear();
        Ok(len)
    }

    /// Add a recurrent-state snapshot for a paged-attention block-hash prefix key.
    /// This is used by hybrid models to restore recurrent states alongside paged KV prefix hits.
    pub fn add_paged_recurrent_prefix(
        &mut self,
        key: Vec<BlockHash>,
        snapshots: Vec<RecurrentStateSnapshot>,
    ) {
        if self.no_prefix_cache
            || !self.has_paged_attention
            || key.is_empty()
            || snapshots.is_empty()
        {
            return;
        }

        // Maintain LRU order by reinserting on update.
        let _ = self.paged_recurrent_caches.shift_remove(&key);
        self.paged_recurrent_caches.insert(key, snapshots);

        while self.paged_recurrent_caches.len() > self.paged_recurrent_capacity() {
            let _ = self.paged_recurrent_caches.shift_remove_index(0);
        }
    }

    /// Lookup a recurrent-state snapshot for a paged-attention block-hash prefix key.
    /// Returns a cloned snapshot and updates LRU order.
    pub fn get_paged_recurrent_prefix(
        &mut self,
        key: &[BlockHash],
    ) -> Option<Vec<RecurrentStateSnapshot>> {
        if self.no_prefix_cache || !self.has_paged_attention || key.is_empty() {
            return None;
        }

        let key = key.to_vec();
        let snapshots = self.paged_recurrent_caches.shift_remove(&key)?;
        let out = snapshots.clone();
        self.paged_recurrent_caches.insert(key, snapshots);
        Some(out)
    }

    /// Search for a matching cache given some tokens. Image-containing sequences are now cached too.
    pub fn search_for_matching_cache(
        &mut self,
        toks: &[u32],
        image_hashes: Option<&[u64]>,
        audio_hashes: Option<&[u64]>,
        video_hashes: Option<&[u64]>,
    ) -> Result<Option<MatchingCache>> {
        // Do not search if prefix caching disabled or no tokens
        if self.no_prefix_cache || toks.is_empty() {
            return Ok(None);
        }

        if self.has_paged_attention {
            // For paged attention, prefix caching is handled by the KVCacheManager.
            // PrefixCacheManagerV2 only handles non-paged attention caching.
            return Ok(None);
        }

        let toks = Tokens(toks.to_vec());

        let mut best_match: Option<(usize, usize, usize, usize, usize)> = None;
        for (index, (k, v)) in self.caches.iter().enumerate() {
            let match_len = toks.shared_prefix_len(k);
            if match_len == 0 {
                continue;
            }

            let images_match_until = match image_hashes {
                Some(input_hashes) => match &v.image_hashes {
                    Some(cached_hashes) => input_hashes
                        .iter()
                        .zip(cached_hashes)
                        .take_while(|(a, b)| a == b)
                        .count(),
                    None => 0,
                },
                None => 0,
            };

            let audios_match_until = match audio_hashes {
                Some(input_hashes) => match &v.audio_hashes {
                    Some(cached_hashes) => input_hashes
                        .iter()
                        .zip(cached_hashes)
                        .take_while(|(a, b)| a == b)
                        .count(),
                    None => 0,
                },
                None => 0,
            };

            // Vision/audio models can use repeated placeholder tokens (e.g. <image_soft_token>)
            // that are identical regardless of the actual image/audio content. This means
            // token-level matching can extend through image/audio regions even when the
            // underlying content differs, leaving stale vision/audio encoder outputs in the
            // KV cache. Skip entries where any overlapping images or audios diverge.
            let cached_image_count = v.image_hashes.as_ref().map_or(0, |h| h.len());
            let input_image_count = image_hashes.map_or(0, |h| h.len());
            if images_match_until < input_image_count.min(cached_image_count) {
                continue;
            }

            let cached_audio_count = v.audio_hashes.as_ref().map_or(0, |h| h.len());
            let input_audio_count = audio_hashes.map_or(0, |h| h.len());
            if audios_match_until < input_audio_count.min(cached_audio_count) {
                continue;
            }

            let videos_match_until = match video_hashes {
                Some(input_hashes) => match &v.video_hashes {
                    Some(cached_hashes) => input_hashes
                        .iter()
                        .zip(cached_hashes)
                        .take_while(|(a, b)| a == b)
                        .count(),
                    None => 0,
                },
                None => 0,
            };

            let cached_video_count = v.video_hashes.as_ref().map_or(0, |h| h.len());
            let input_video_count = video_hashes.map_or(0, |h| h.len());
            if videos_match_until < input_video_count.min(cached_video_count) {
                continue;
            }

            // Sliding/rotating caches only retain a fixed tail. If a cache has already
            // truncated older tokens, it can still safely serve an exact extension of the
            // cached prefix, but it cannot be rewound to an earlier logical length. Skip such
            // candidates here so a rolled-over cache does not block a shorter valid prefix hit.
            if !v.can_rewind_to(match_len) {
                continue;
            }

            if best_match
                .as_ref()
                .is_none_or(|(len, _, _, _, _)| match_len > *len)
            {
                best_match = Some((
                    match_len,
                    index,
                    images_match_until,
                    audios_match_until,
                    videos_match_until,
                ));
            }
        }

        if let Some((
            match_len,
            cache_index,
            images_match_until,
            audios_match_until,
            videos_match_until,
        )) = best_match
        {
            // modeld: the matched entry becomes the most recently used.
            let last = self.caches.len() - 1;
            self.caches.move_index(cache_index, last);
            let cache_element = &self.caches[last];
            // modeld: a prompt that is wholly cached still needs the logits of its last
            // token, so rewind the cache by one token and evaluate just that one, instead of
            // evaluating the whole prompt again. States that cannot be rewound (recurrent
            // layers, rolled-over sliding windows, media placeholders) keep the old behaviour.
            let shared_len = match_len;
            let mut match_len = match_len;
            if match_len == toks.0.len() {
                let rewindable = match_len > 1
                    && cache_element.recurrent_snapshots.is_none()
                    && image_hashes.is_none_or(|h| h.is_empty())
                    && audio_hashes.is_none_or(|h| h.is_empty())
                    && video_hashes.is_none_or(|h| h.is_empty())
                    && cache_element.can_rewind_to(match_len - 1);
                if !rewindable {
                    return Ok(None);
                }
                match_len -= 1;
            }
            let new_toks = toks.0[match_len..].to_vec();
            if new_toks.is_empty() || !cache_element.can_rewind_to(match_len) {
                return Ok(None);
            }

            // modeld: a prompt that holds the whole prompt of the cached sequence continues it
            // (the same prompt again, a chat's next turn, an agent's next tool round): the
            // entry is handed over, not copied, so the new sequence writes into its cache in
            // place (see `NormalCacheManager::clone_in_cache`), and comes back, longer, when
            // the sequence ends. Other matches (prompts that share a system prompt, a typing
            // session's edited prefixes) copy it and leave it for the next. A request that
            // continues the same sequence while the first continuation still runs misses it.
            // The cached prompt's last token may differ: text appended to a prompt that ends
            // in a space or a partial word is tokenized across the joint (" " and "Sentence"
            // become " Sentence"), and that is still a continuation.
            let hand_over = shared_len + 1 >= cache_element.prompt_len
                && cache_element.recurrent_snapshots.is_none()
                && cache_element.image_hashes.as_ref().is_none_or(|h| h.is_empty())
                && cache_element.audio_hashes.as_ref().is_none_or(|h| h.is_empty())
                && cache_element.video_hashes.as_ref().is_none_or(|h| h.is_empty());
            let mut cache = if hand_over {
                self.caches
                    .shift_remove_index(last)
                    .expect("the matched entry is the last")
                    .1
            } else {
                cache_element.clone()
            };
            // Count how many input images are not already cached
            let images_to_keep = if let Some(input_hashes) = image_hashes {
                input_hashes.len().saturating_sub(images_match_until)
            } else {
                0
            };
            let audios_to_keep = if let Some(input_hashes) = audio_hashes {
                input_hashes.len().saturating_sub(audios_match_until)
            } else {
                0
            };
            let videos_to_keep = if let Some(input_hashes) = video_hashes {
                input_hashes.len().saturating_sub(videos_match_until)
            } else {
                0
            };
            // modeld: a demoted entry is used in F32 (a copy either way: handed over, it was
            // not the newest; copied, `clone_in_cache` would have copied it).
            cache.promote_to_f32()?;
            for layer in cache.cache.iter_mut().flatten() {
                layer.set_len(match_len)?;
            }
            return Ok(Some(MatchingCache::Normal {
                normal: cache.cache,
                recurrent_snapshots: cache.recurrent_snapshots,
                images_to_keep,
                audios_to_keep,
                videos_to_keep,
                toks: new_toks,
                offset: match_len,
            }));
        }

        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::{CacheElement, MatchingCache, PrefixCacheManagerV2};
    use crate::kv_cache::{KvCache, RotatingCache, SingleCache};

    fn make_cache_tensor(len: usize) -> candle_core::Result<Tensor> {
        Tensor::zeros((1, 1, len, 1), DType::F32, &Device::Cpu)
    }

    fn make_rotating_kv_cache(
        logical_len: usize,
        sliding_window: usize,
    ) -> candle_core::Result<KvCache> {
        let src = make_cache_tensor(logical_len)?;
        let mut k = RotatingCache::new(2, sliding_window, sliding_window);
        let mut v = RotatingCache::new(2, sliding_window, sliding_window);
        let _ = k.append(&src)?;
        let _ = v.append(&src)?;
        Ok(KvCache::Rotating { k, v })
    }

    fn make_normal_kv_cache(logical_len: usize) -> candle_core::Result<KvCache> {
        let src = make_cache_tensor(logical_len)?;
        let mut k = SingleCache::new(2, logical_len, logical_len);
        let mut v = SingleCache::new(2, logical_len, logical_len);
        k.append(&src)?;
        v.append(&src)?;
        Ok(KvCache::Normal { k, v })
    }

    #[test]
    fn skips_rolled_over_rotating_candidate_that_cannot_rewind() -> candle_core::Result<()> {
        let mut prefix_cacher = PrefixCacheManagerV2::new(1, false, false);

        prefix_cacher.caches.insert(
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10].into(),
            CacheElement {
                cache: vec![Some(make_rotating_kv_cache(10, 4)?)],
                prompt_len: 10,
                recurrent_snapshots: None,
                audio_hashes: None,
                image_hashes: None,
                video_hashes: None,
                demoted_to_f16: false,
            },
        );
        prefix_cacher.caches.insert(
            vec![1, 2, 3, 4, 5, 9].into(),
            CacheElement {
                cache: vec![Some(make_normal_kv_cache(6)?)],
                prompt_len: 6,
                recurrent_snapshots: None,
                audio_hashes: None,
                image_hashes: None,
                video_hashes: None,
                demoted_to_f16: false,
            },
        );

        let hit = prefix_cacher.search_for_matching_cache(
            &[1, 2, 3, 4, 5, 6, 7, 99],
            None,
            None,
            None,
        )?;

        match hit {
            Some(MatchingCache::Normal { toks, offset, .. }) => {
                assert_eq!(offset, 5);
                assert_eq!(toks, vec![6, 7, 99]);
            }
            None => panic!("expected a shorter valid prefix-cache hit"),
        }

        Ok(())
    }

    #[test]
    fn allows_exact_extension_from_rolled_over_rotating_cache() -> candle_core::Result<()> {
        let mut prefix_cacher = PrefixCacheManagerV2::new(1, false, false);

        prefix_cacher.caches.insert(
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10].into(),
            CacheElement {
                cache: vec![Some(make_rotating_kv_cache(10, 4)?)],
                prompt_len: 10,
                recurrent_snapshots: None,
                audio_hashes: None,
                image_hashes: None,
                video_hashes: None,
                demoted_to_f16: false,
            },
        );

        let hit = prefix_cacher.search_for_matching_cache(
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            None,
            None,
            None,
        )?;

        match hit {
            Some(MatchingCache::Normal { toks, offset, .. }) => {
                assert_eq!(offset, 10);
                assert_eq!(toks, vec![11]);
            }
            None => panic!("expected exact-extension prefix-cache hit"),
        }

        Ok(())
    }
}
