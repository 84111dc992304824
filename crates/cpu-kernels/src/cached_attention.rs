//! Attention of one new query row per head over a sequence's cached keys and values, as every
//! decoding step computes it (and the last row of a prompt, which must match it bit for bit).
//!
//! Scores are dot products summed in vector lanes, the softmax is exact (largest score first,
//! then one pass of exponentials), and the context is summed sixteen columns at a time in
//! registers. Each (sequence, head) pair is one task that computes the same way whatever else
//! runs, so a sequence decoded in a batch gets the bits it gets alone.
//!
//! [`attend_causal_rows`] computes a prompt block's rows (each new position over the positions
//! up to it) the same way, row for row, a few rows at a time so that they share every key and
//! value row they read: a prompt's positions come out bit for bit as decoding steps at those
//! positions would compute them, however the prompt was split into steps or taken from a cache.

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
        self.attend_query(queries.row(self.sequence, 0, self.head, self.shape.width), keys, values, output);
    }

    /// The attention of `query` (this head's query row).
    #[inline(always)]
    fn attend_query(&self, query: &[f32], keys: &StridedRows<'_>, values: &StridedRows<'_>, output: &mut [f32]) {
        let OneQueryShape { width, positions, scale, .. } = self.shape;
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

/// Query rows of a prompt block computed together, sharing each key and value row they read.
const BLOCK_ROWS: usize = 4;

/// The sizes of one [`attend_causal_rows`] call.
#[derive(Debug, Clone, Copy)]
pub struct CausalRowsShape {
    pub sequences: usize,
    /// Query heads.
    pub heads: usize,
    /// Key and value heads, grouped as in [`OneQueryShape`].
    pub kv_heads: usize,
    /// Values per head.
    pub width: usize,
    /// New query rows per sequence and head: the last `rows` of the `positions`.
    pub rows: usize,
    /// Cached positions, the new rows' own included.
    pub positions: usize,
    /// Factor of the query-key products.
    pub scale: f32,
}

/// Writes `output[((s · heads + h) · rows + r) · width ..][..width]`: query row `r` of head `h`
/// of sequence `s` sits at position `positions - rows + r` and attends to the positions up to
/// and including its own (a causal mask). `queries` hold the rows at positions `0..rows`.
///
/// Each row is computed exactly as [`attend_one_query`] computes one query over that many
/// positions without a mask, bit for bit: a prompt's rows equal the decoding steps at their
/// positions.
///
/// # Panics
/// When the sizes disagree, as [`attend_one_query`] does, or `rows` exceeds `positions`.
pub fn attend_causal_rows(
    shape: CausalRowsShape,
    queries: StridedRows<'_>,
    keys: StridedRows<'_>,
    values: StridedRows<'_>,
    output: &mut [f32],
) {
    let CausalRowsShape { sequences, heads, kv_heads, width, rows, positions, scale } = shape;
    assert_eq!(output.len(), sequences * heads * rows * width, "output size");
    if output.is_empty() {
        return;
    }
    assert!(kv_heads > 0 && heads.is_multiple_of(kv_heads), "{heads} heads over {kv_heads} key-value heads");
    assert!(rows <= positions, "{rows} new rows among {positions} positions");
    assert!(queries.reach(sequences, rows, heads, width) <= queries.data.len(), "queries reach past their data");
    assert!(keys.reach(sequences, positions, kv_heads, width) <= keys.data.len(), "keys reach past their data");
    assert!(values.reach(sequences, positions, kv_heads, width) <= values.data.len(), "values reach past their data");
    let first_position = positions - rows;
    let task = |(index, output): (usize, &mut [f32])| {
        let per_head = rows.div_ceil(BLOCK_ROWS);
        let (pair, block) = (index / per_head, index % per_head);
        let (sequence, head) = (pair / heads, pair % heads);
        let first_row = block * BLOCK_ROWS;
        let task = RowBlock {
            sequence,
            head,
            kv_head: head / (heads / kv_heads),
            width,
            scale,
            first_length: first_position + first_row + 1,
        };
        task.attend_widest(&queries, first_row, &keys, &values, output);
    };
    // Blocks of rows, each within one (sequence, head): the last block of a head may be short.
    let blocks = output.chunks_mut(rows * width).flat_map(|head_rows| head_rows.chunks_mut(BLOCK_ROWS * width));
    if sequences * heads * rows * positions * width <= SEQUENTIAL_PRODUCTS {
        blocks.enumerate().for_each(task);
    } else {
        blocks.collect::<Vec<_>>().into_par_iter().enumerate().for_each(task);
    }
}

/// Up to [`BLOCK_ROWS`] consecutive query rows of one head of one sequence.
struct RowBlock {
    sequence: usize,
    head: usize,
    kv_head: usize,
    width: usize,
    scale: f32,
    /// Positions the block's first row attends to; each next row attends to one more.
    first_length: usize,
}

impl RowBlock {
    /// [`RowBlock::attend`] in the widest vectors the CPU has (the same bits in every form).
    fn attend_widest(
        &self,
        queries: &StridedRows<'_>,
        first_row: usize,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX-512F and FMA, checked just above.
            unsafe {
                self.attend_avx512(queries, first_row, keys, values, output)
            };
            return;
        }
        self.attend(queries, first_row, keys, values, output);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn attend_avx512(
        &self,
        queries: &StridedRows<'_>,
        first_row: usize,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        self.attend(queries, first_row, keys, values, output);
    }

    #[inline(always)]
    fn attend(
        &self,
        queries: &StridedRows<'_>,
        first_row: usize,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        let width = self.width;
        let query = |row: usize| queries.row(self.sequence, first_row + row, self.head, width);
        match output.len() / width {
            BLOCK_ROWS if width.is_multiple_of(LANES) => {
                self.attend_rows::<BLOCK_ROWS>(std::array::from_fn(query), keys, values, output)
            }
            count => {
                // A head's last, short block, or a width the lanes do not divide: one row at a
                // time, through the one-query kernel itself.
                for (row, output) in output.chunks_exact_mut(width).enumerate().take(count) {
                    let shape = OneQueryShape {
                        sequences: 1,
                        heads: 1,
                        kv_heads: 1,
                        width,
                        positions: self.first_length + row,
                        scale: self.scale,
                    };
                    let task = HeadTask { shape, sequence: self.sequence, head: 0, kv_head: self.kv_head, mask: None };
                    task.attend_query(query(row), keys, values, output);
                }
            }
        }
    }

    /// `ROWS` rows at once, each computed as [`HeadTask::attend_query`] computes it.
    #[inline(always)]
    fn attend_rows<const ROWS: usize>(
        &self,
        queries: [&[f32]; ROWS],
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        let width = self.width;
        let longest = self.first_length + ROWS - 1;
        let length = |row: usize| self.first_length + row;
        let key_row = |position: usize| keys.row(self.sequence, position, self.kv_head, width);
        let value_row = |position: usize| values.row(self.sequence, position, self.kv_head, width);
        // Row r's scores at `r * longest ..`; positions past a row's length are computed and
        // never read.
        let mut scores = vec![0f32; ROWS * longest];
        for position in 0..longest {
            let key = key_row(position);
            for row in 0..ROWS {
                scores[row * longest + position] = dot(queries[row], key) * self.scale;
            }
        }
        let mut inverse_totals = [0f32; ROWS];
        for row in 0..ROWS {
            let scores = &mut scores[row * longest..][..length(row)];
            let largest = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if largest == f32::NEG_INFINITY {
                // As the one-query kernel: a row with nothing to attend to is zeros.
                scores.fill(0.0);
                continue;
            }
            for score in scores.iter_mut() {
                *score = if *score == f32::NEG_INFINITY { 0.0 } else { exp(*score - largest) };
            }
            inverse_totals[row] = 1.0 / crate::math::sum(scores);
        }
        let shortest = length(0);
        for block in 0..width / LANES {
            let mut sums = [[0f32; LANES]; ROWS];
            for position in 0..shortest {
                let value: &[f32; LANES] = value_row(position)[block * LANES..][..LANES].try_into().expect("a block");
                for row in 0..ROWS {
                    multiply_add(&mut sums[row], scores[row * longest + position], value);
                }
            }
            for position in shortest..longest {
                let value = &value_row(position)[block * LANES..];
                for row in position + 1 - shortest..ROWS {
                    multiply_add(&mut sums[row], scores[row * longest + position], value);
                }
            }
            for (row, sums) in sums.iter().enumerate() {
                let output = &mut output[row * width + block * LANES..][..LANES];
                for (output, sum) in output.iter_mut().zip(sums) {
                    *output = sum * inverse_totals[row];
                }
            }
        }
    }
}

/// The dot product of two rows, summed in lanes, then the lanes in a fixed order.
#[inline(always)]
fn dot(left: &[f32], right: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (left_blocks, right_blocks) = (left.chunks_exact(LANES), right.chunks_exact(LANES));
    let rest = remainder_product(left_blocks.remainder(), right_blocks.remainder());
    for (left, right) in left_blocks.zip(right_blocks) {
        let left: &[f32; LANES] = left.try_into().expect("a block");
        let right: &[f32; LANES] = right.try_into().expect("a block");
        for lane in 0..LANES {
            lanes[lane] = left[lane].mul_add(right[lane], lanes[lane]);
        }
    }
    add_lanes(lanes, rest)
}

/// The products of the values past the last whole block, summed in order.
#[inline(always)]
fn remainder_product(left: &[f32], right: &[f32]) -> f32 {
    left.iter().zip(right).map(|(a, b)| a * b).sum()
}

/// A dot product's lanes added up, then `rest`.
#[inline(always)]
fn add_lanes(lanes: [f32; LANES], rest: f32) -> f32 {
    // Halves added pairwise on fixed sizes, which the compiler keeps in vector registers.
    let eight: [f32; 8] = std::array::from_fn(|lane| lanes[lane] + lanes[lane + 8]);
    let four: [f32; 4] = std::array::from_fn(|lane| eight[lane] + eight[lane + 4]);
    let two: [f32; 2] = std::array::from_fn(|lane| four[lane] + four[lane + 2]);
    (two[0] + two[1]) + rest
}

#[cfg(test)]
mod tests;
