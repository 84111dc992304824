//! Attention of one new query row per head over a sequence's cached keys and values, as every
//! decoding step computes it (and the last row of a prompt, which must match it bit for bit).
//!
//! Scores are dot products summed in vector lanes, the softmax is exact (largest score first,
//! then one pass of exponentials), and the context is summed sixteen columns at a time in
//! registers. Each (sequence, head) pair is one task that computes the same way whatever else
//! runs, so a sequence decoded in a batch gets the bits it gets alone.

use rayon::prelude::*;

use crate::math::{exp, multiply_add, LANES};

/// Query-key products below which the heads run on the calling thread.
const SEQUENTIAL_PRODUCTS: usize = 1 << 14;

/// Rows of a strided array: the row of sequence `s`, position `p` and head `h` starts at
/// `s · sequence_stride + p · position_stride + h · head_stride`, and its values are contiguous.
#[derive(Debug, Clone, Copy)]
pub struct StridedRows<'a> {
    pub data: &'a [f32],
    pub sequence_stride: usize,
    pub position_stride: usize,
    pub head_stride: usize,
}

impl StridedRows<'_> {
    #[inline(always)]
    fn row(&self, sequence: usize, position: usize, head: usize, width: usize) -> &[f32] {
        let start = sequence * self.sequence_stride + position * self.position_stride + head * self.head_stride;
        &self.data[start..start + width]
    }

    /// One past the last value that rows up to these counts read: a caller whose data may be
    /// shorter checks it against `data.len()` before calling the kernel, which asserts it.
    pub fn reach(&self, sequences: usize, positions: usize, heads: usize, width: usize) -> usize {
        (sequences - 1) * self.sequence_stride
            + (positions - 1) * self.position_stride
            + (heads - 1) * self.head_stride
            + width
    }
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
pub struct OneQueryShape {
    pub sequences: usize,
    /// Query heads.
    pub heads: usize,
    /// Key and value heads; each serves `heads / kv_heads` query heads in turn (grouped-query
    /// attention).
    pub kv_heads: usize,
    /// Values per head.
    pub width: usize,
    /// Cached positions each query attends to.
    pub positions: usize,
    /// Factor of the query-key products.
    pub scale: f32,
}

/// Writes `output[(s · heads + h) · width ..][..width]`, the attention context of head `h` of
/// sequence `s`: `Σ_p softmax_p(scale · q·k_p + mask_p) · v_p` over the `positions` cached
/// keys and values of its key-value head `h / (heads / kv_heads)`. `queries` take position 0.
/// `mask`, when given, holds additive terms for each (sequence, head, position), in that order;
/// a position whose term is `-∞` takes no part.
///
/// # Panics
/// When the sizes disagree: heads not a multiple of the key-value heads, rows reaching past
/// their data, or a mask or output of another size.
pub fn attend_one_query(
    shape: OneQueryShape,
    queries: StridedRows<'_>,
    keys: StridedRows<'_>,
    values: StridedRows<'_>,
    mask: Option<&[f32]>,
    output: &mut [f32],
) {
    let OneQueryShape { sequences, heads, kv_heads, width, positions, .. } = shape;
    assert_eq!(output.len(), sequences * heads * width, "output size");
    if output.is_empty() {
        return;
    }
    assert!(kv_heads > 0 && heads.is_multiple_of(kv_heads), "{heads} heads over {kv_heads} key-value heads");
    assert!(positions > 0, "attention over no positions");
    assert!(queries.reach(sequences, 1, heads, width) <= queries.data.len(), "queries reach past their data");
    assert!(keys.reach(sequences, positions, kv_heads, width) <= keys.data.len(), "keys reach past their data");
    assert!(values.reach(sequences, positions, kv_heads, width) <= values.data.len(), "values reach past their data");
    if let Some(mask) = mask {
        assert_eq!(mask.len(), sequences * heads * positions, "mask size");
    }
    let task = |(index, output): (usize, &mut [f32])| {
        let (sequence, head) = (index / heads, index % heads);
        let mask = mask.map(|mask| &mask[index * positions..(index + 1) * positions]);
        let head_task = HeadTask { shape, sequence, head, kv_head: head / (heads / kv_heads), mask };
        head_task.attend_widest(&queries, &keys, &values, output);
    };
    if sequences * heads * positions * width <= SEQUENTIAL_PRODUCTS {
        output.chunks_exact_mut(width).enumerate().for_each(task);
    } else {
        output.par_chunks_exact_mut(width).enumerate().for_each(task);
    }
}

/// One head of one sequence.
struct HeadTask<'a> {
    shape: OneQueryShape,
    sequence: usize,
    head: usize,
    kv_head: usize,
    mask: Option<&'a [f32]>,
}

impl HeadTask<'_> {
    /// [`HeadTask::attend`] in the widest vectors the CPU has. Every form computes the same
    /// operations in the same order, so the choice does not change the result.
    fn attend_widest(
        &self,
        queries: &StridedRows<'_>,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX-512F and FMA, checked just above.
            unsafe {
                self.attend_avx512(queries, keys, values, output)
            };
            return;
        }
        self.attend(queries, keys, values, output);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn attend_avx512(
        &self,
        queries: &StridedRows<'_>,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        self.attend(queries, keys, values, output);
    }

    #[inline(always)]
    fn attend(&self, queries: &StridedRows<'_>, keys: &StridedRows<'_>, values: &StridedRows<'_>, output: &mut [f32]) {
        let OneQueryShape { width, positions, scale, .. } = self.shape;
        let query = queries.row(self.sequence, 0, self.head, width);
        let mut scores = vec![0f32; positions];
        // A loop rather than an iterator's closure, so that it is compiled inside the caller's
        // target features.
        for (position, score) in scores.iter_mut().enumerate() {
            *score = dot(query, keys.row(self.sequence, position, self.kv_head, width)) * scale;
        }
        if let Some(mask) = self.mask {
            for (score, term) in scores.iter_mut().zip(mask) {
                *score += term;
            }
        }
        let largest = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if largest == f32::NEG_INFINITY {
            // Every position masked: nothing to attend to.
            output.fill(0.0);
            return;
        }
        for score in scores.iter_mut() {
            // `exp` never returns zero; a masked position must weigh nothing.
            *score = if *score == f32::NEG_INFINITY { 0.0 } else { exp(*score - largest) };
        }
        let inverse_total = 1.0 / crate::math::sum(&scores);
        let value_row = |position: usize| values.row(self.sequence, position, self.kv_head, width);
        if width.is_multiple_of(LANES) {
            for (block, output) in output.chunks_exact_mut(LANES).enumerate() {
                let mut sums = [0f32; LANES];
                for (position, weight) in scores.iter().enumerate() {
                    multiply_add(&mut sums, *weight, &value_row(position)[block * LANES..]);
                }
                for (output, sum) in output.iter_mut().zip(sums) {
                    *output = sum * inverse_total;
                }
            }
        } else {
            output.fill(0.0);
            for (position, weight) in scores.iter().enumerate() {
                crate::math::add_scaled(output, value_row(position), *weight);
            }
            for output in output.iter_mut() {
                *output *= inverse_total;
            }
        }
    }
}

/// The dot product of two rows, summed in lanes, then the lanes in a fixed order.
#[inline(always)]
fn dot(left: &[f32], right: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (left_blocks, right_blocks) = (left.chunks_exact(LANES), right.chunks_exact(LANES));
    let rest: f32 = left_blocks.remainder().iter().zip(right_blocks.remainder()).map(|(a, b)| a * b).sum();
    for (left, right) in left_blocks.zip(right_blocks) {
        let left: &[f32; LANES] = left.try_into().expect("a block");
        let right: &[f32; LANES] = right.try_into().expect("a block");
        for lane in 0..LANES {
            lanes[lane] = left[lane].mul_add(right[lane], lanes[lane]);
        }
    }
    // Halves added pairwise on fixed sizes, which the compiler keeps in vector registers.
    let eight: [f32; 8] = std::array::from_fn(|lane| lanes[lane] + lanes[lane + 8]);
    let four: [f32; 4] = std::array::from_fn(|lane| eight[lane] + eight[lane + 4]);
    let two: [f32; 2] = std::array::from_fn(|lane| four[lane] + four[lane + 2]);
    (two[0] + two[1]) + rest
}

#[cfg(test)]
mod tests;
