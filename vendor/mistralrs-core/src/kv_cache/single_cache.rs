use candle_core::{DType, Result, Tensor};

use super::NormalCache;

#[derive(Debug, Clone)]
pub struct SingleCache {
    // all_data is an option on a Tensor, this makes it possible to only create the actual tensor
    // on the first call where the batch size is easily known.
    // Also this makes it safe to clone a KvCache that has been reset (as in it will not share
    // its internal state with the cloned instance).
    pub all_data: Option<Tensor>,
    pub dim: usize,
    pub current_seq_len: usize,
    pub capacity_seq_len: usize,
    pub max_seq_len: usize,
    /// modeld: in the working cache of a batch whose sequences have cached different numbers
    /// of positions (answers that started at different times, decoding in one step), each
    /// sequence's own length, and `current_seq_len` is the longest. `append` writes each
    /// sequence's new positions after its own, and attention reads each sequence's own
    /// (`Sdpa::run_attention_over_lengths`). `None` when every sequence has `current_seq_len`.
    pub sequence_lengths: Option<Vec<usize>>,
}

impl SingleCache {
    pub fn new(dim: usize, max_seq_len: usize, capacity_seq_len: usize) -> Self {
        Self {
            all_data: None,
            dim,
            current_seq_len: 0,
            max_seq_len,
            capacity_seq_len,
            sequence_lengths: None,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// modeld: keeps the first `current_seq_len` positions, rounded up to a whole `granule`, in
    /// a buffer of its own, and drops the capacity past them (`append` grows it again when it is
    /// needed). A buffer that is a view of a larger one (a batch's) is copied even when it has
    /// no capacity to drop, so that it no longer keeps the larger one alive.
    pub fn shrink_to_fit(&mut self, granule: usize) -> Result<()> {
        let Some(data) = self.all_data.as_ref() else {
            return Ok(());
        };
        let capacity = data.dim(self.dim)?;
        let keep = (self.current_seq_len.div_ceil(granule).max(1) * granule).min(capacity);
        if keep == capacity && data.spans_whole_storage() {
            return Ok(());
        }
        let shrunk = data.narrow(self.dim, 0, keep)?.force_contiguous()?;
        self.all_data = Some(shrunk);
        self.capacity_seq_len = keep;
        Ok(())
    }

    pub fn current_seq_len(&self) -> usize {
        self.current_seq_len
    }

    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    pub fn all_data(&self) -> Option<&Tensor> {
        self.all_data.as_ref()
    }

    pub fn current_data(&self) -> Result<Option<Tensor>> {
        let data = match self.all_data.as_ref() {
            None => None,
            Some(d) => Some(d.narrow(self.dim, 0, self.current_seq_len)?),
        };
        Ok(data)
    }

    pub fn reset(&mut self) {
        self.current_seq_len = 0;
        self.all_data = None;
        self.sequence_lengths = None;
    }

    pub fn try_set_len(&self, len: usize) -> candle_core::Result<()> {
        if self.sequence_lengths.is_some() {
            candle_core::bail!("kv-cache: cannot set one length on a batch of different lengths");
        }
        if len > self.capacity_seq_len {
            candle_core::bail!(
                "kv-cache: requested length ({}) exceeds current capacity ({})",
                len,
                self.capacity_seq_len
            );
        }
        Ok(())
    }

    pub fn set_len(&mut self, len: usize) -> candle_core::Result<()> {
        self.try_set_len(len)?;
        self.current_seq_len = len;
        Ok(())
    }

    pub fn append(&mut self, src: &Tensor) -> Result<()> {
        // modeld: on the CPU, F32 keys and values are kept at F16's precision, as llama.cpp's
        // default KV cache keeps them. The prefix cache then stores entries in F16 with no
        // loss (`prefix_cacher`), so an answer resumed from an entry computes with the very
        // values a cold evaluation does.
        let rounded;
        let src = if src.device().is_cpu() && src.dtype() == DType::F32 {
            rounded = src.to_dtype(DType::F16)?.to_dtype(DType::F32)?;
            &rounded
        } else {
            src
        };
        let seq_len = src.dim(self.dim)?;
        // This doesn't seem very idiomatic but because the creation can fail, it's tricky to use
        // self.all_data.get_or_insert_with.
        if self.all_data.is_none() {
            // modeld: a fresh buffer (a prompt evaluated from its first token) holds what it
            // receives, in whole blocks, as the preallocated cache it replaces on the CPU did;
            // not the capacity the model's working cache kept from an earlier, longer batch.
            let blocks = seq_len.div_ceil(NormalCache::CACHE_GROW_SIZE).max(1);
            self.capacity_seq_len = (blocks * NormalCache::CACHE_GROW_SIZE).min(self.max_seq_len);
            let mut shape = src.dims().to_vec();
            shape[self.dim] = self.capacity_seq_len;
            let ad = Tensor::zeros(shape, src.dtype(), src.device())?;
            self.all_data = Some(ad);
        };

        // Expand kv cache
        if self.current_seq_len + seq_len > self.capacity_seq_len {
            let diff = self.current_seq_len + seq_len - self.capacity_seq_len;
            let n_blocks_needed = diff.div_ceil(NormalCache::CACHE_GROW_SIZE);
            self.capacity_seq_len += n_blocks_needed * NormalCache::CACHE_GROW_SIZE;
            if self.capacity_seq_len > self.max_seq_len {
                candle_core::bail!(
                    "kv-cache: requested capacity ({}) above max seq len ({})",
                    self.capacity_seq_len,
                    self.max_seq_len
                )
            }
            let mut shape = src.dims().to_vec();
            shape[self.dim] = self.capacity_seq_len;
            let ad = Tensor::zeros(shape, src.dtype(), src.device())?;
            ad.slice_set(self.all_data.as_ref().unwrap(), self.dim, 0)?;
            self.all_data = Some(ad);
        }

        let ad = self.all_data.as_mut().unwrap();

        // modeld: a batch of different lengths: each sequence's rows go after its own.
        if let Some(lengths) = self.sequence_lengths.as_mut() {
            if lengths.len() != src.dim(0)? {
                candle_core::bail!(
                    "kv-cache: {} sequence lengths for a batch of {}",
                    lengths.len(),
                    src.dim(0)?
                );
            }
            for (sequence, length) in lengths.iter_mut().enumerate() {
                ad.narrow(0, sequence, 1)?
                    .slice_set(&src.narrow(0, sequence, 1)?, self.dim, *length)?;
                *length += seq_len;
            }
            self.current_seq_len += seq_len;
            return Ok(());
        }

        ad.slice_set(src, self.dim, self.current_seq_len)?;
        self.current_seq_len += seq_len;
        Ok(())
    }
}
