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
    attend_one_query_over(shape, None, queries, keys, values, mask, output);
}

/// [`attend_one_query`] for a batch whose sequences have cached different numbers of positions
/// (decoding answers that started at different times in one step): sequence `s` attends over
/// its first `positions_of[s]` positions, which must be at least one and at most
/// `shape.positions`, the longest. The rows past a sequence's own positions are not read, and
/// each (sequence, head) computes exactly what a call of its own with
/// `positions = positions_of[s]` computes, so an answer gets the bits it gets alone. A mask,
/// when given, is laid out for `shape.positions` per (sequence, head).
///
/// # Panics
/// As [`attend_one_query`], and when `positions_of` has another length than the batch or a
/// length outside `1..=shape.positions`.
pub fn attend_one_query_over_lengths(
    shape: OneQueryShape,
    positions_of: &[usize],
    queries: StridedRows<'_>,
    keys: StridedRows<'_>,
    values: StridedRows<'_>,
    mask: Option<&[f32]>,
    output: &mut [f32],
) {
    assert_eq!(positions_of.len(), shape.sequences, "one length per sequence");
    assert!(
        positions_of.iter().all(|length| (1..=shape.positions).contains(length)),
        "sequence lengths {positions_of:?} outside 1..={}",
        shape.positions
    );
    attend_one_query_over(shape, Some(positions_of), queries, keys, values, mask, output);
}

fn attend_one_query_over(
    shape: OneQueryShape,
    positions_of: Option<&[usize]>,
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
    assert!(positions > 0, "attention over no positions");
    let sizes = Sizes { sequences, heads, kv_heads, width, positions };
    sizes.assert_within_data(1, &queries, &keys, &values);
    if let Some(mask) = mask {
        assert_eq!(mask.len(), sequences * heads * positions, "mask size");
    }
    let task = |(index, output): (usize, &mut [f32])| {
        let (sequence, head) = (index / heads, index % heads);
        let own_positions = positions_of.map_or(positions, |lengths| lengths[sequence]);
        let mask = mask.map(|mask| &mask[index * positions..index * positions + own_positions]);
        let shape = OneQueryShape { positions: own_positions, ..shape };
        let head_task = HeadTask { shape, sequence, head, kv_head: head / (heads / kv_heads), mask };
        head_task.attend_widest(&queries, &keys, &values, output);
    };
    if sequences * heads * positions * width <= SEQUENTIAL_PRODUCTS {
        output.chunks_exact_mut(width).enumerate().for_each(task);
    } else {
        output.par_chunks_exact_mut(width).enumerate().for_each(task);
    }
}

/// The sizes both kernels check their arguments against.
struct Sizes {
    sequences: usize,
    heads: usize,
    kv_heads: usize,
    width: usize,
    positions: usize,
}

impl Sizes {
    /// Panics unless the heads group evenly over the key-value heads and `query_rows` rows of
    /// queries and `positions` rows of keys and values lie within their data.
    fn assert_within_data(
        &self,
        query_rows: usize,
        queries: &StridedRows<'_>,
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
    ) {
        let Sizes { sequences, heads, kv_heads, width, positions } = *self;
        assert!(kv_heads > 0 && heads.is_multiple_of(kv_heads), "{heads} heads over {kv_heads} key-value heads");
        assert!(
            queries.reach(sequences, query_rows, heads, width) <= queries.data.len(),
            "queries reach past their data"
        );
        assert!(keys.reach(sequences, positions, kv_heads, width) <= keys.data.len(), "keys reach past their data");
        assert!(
            values.reach(sequences, positions, kv_heads, width) <= values.data.len(),
            "values reach past their data"
        );
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
        if has_avx512_fma() {
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
        let width = self.shape.width;
        if width.is_multiple_of(LANES) {
            x86::attend_one_query(self, queries.row(self.sequence, 0, self.head, width), keys, values, output);
        } else {
            self.attend(queries, keys, values, output);
        }
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
        let Some(inverse_total) = self.softmax(&mut scores) else {
            // Every position masked: nothing to attend to.
            output.fill(0.0);
            return;
        };
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

    /// Adds the mask's terms to the scores and turns them into the softmax's numerators (largest
    /// first, then one pass of exponentials); returns one over their total, or `None` when every
    /// position is masked.
    #[inline(always)]
    fn softmax(&self, scores: &mut [f32]) -> Option<f32> {
        if let Some(mask) = self.mask {
            for (score, term) in scores.iter_mut().zip(mask) {
                *score += term;
            }
        }
        exact_softmax(scores)
    }
}

/// Turns scores into the softmax's numerators (largest first, then one pass of exponentials)
/// and returns one over their total, or `None`, leaving the scores as they were, when every
/// score is `-∞`. Both kernels compute every row's softmax here, so their bits agree.
#[inline(always)]
fn exact_softmax(scores: &mut [f32]) -> Option<f32> {
    let largest = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if largest == f32::NEG_INFINITY {
        return None;
    }
    for score in scores.iter_mut() {
        // `exp` never returns zero; a masked position must weigh nothing.
        *score = if *score == f32::NEG_INFINITY { 0.0 } else { exp(*score - largest) };
    }
    Some(1.0 / crate::math::sum(scores))
}

/// Query rows of a prompt block computed together, sharing each key and value row they read.
const BLOCK_ROWS: usize = 4;

/// Writes `output[((s · heads + h) · rows + r) · width ..][..width]`: query row `r` of head `h`
/// of sequence `s` sits at position `positions - rows + r` and attends to the positions up to
/// and including its own (a causal mask). `queries` hold the rows at positions `0..rows`.
/// `shape` is the last row's one-query step: its `positions` count every cached position, the
/// new rows' own included.
///
/// Each row is computed exactly as [`attend_one_query`] computes one query over that many
/// positions without a mask, bit for bit: a prompt's rows equal the decoding steps at their
/// positions.
///
/// # Panics
/// When the sizes disagree, as [`attend_one_query`] does, or `rows` exceeds `positions`.
pub fn attend_causal_rows(
    shape: OneQueryShape,
    rows: usize,
    queries: StridedRows<'_>,
    keys: StridedRows<'_>,
    values: StridedRows<'_>,
    output: &mut [f32],
) {
    let OneQueryShape { sequences, heads, kv_heads, width, positions, scale } = shape;
    assert_eq!(output.len(), sequences * heads * rows * width, "output size");
    if output.is_empty() {
        return;
    }
    assert!(rows <= positions, "{rows} new rows among {positions} positions");
    let sizes = Sizes { sequences, heads, kv_heads, width, positions };
    sizes.assert_within_data(rows, &queries, &keys, &values);
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
        if has_avx512_fma() {
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
        let width = self.width;
        if output.len() == BLOCK_ROWS * width && width.is_multiple_of(LANES) {
            let query = |row: usize| queries.row(self.sequence, first_row + row, self.head, width);
            x86::attend_four_rows(self, std::array::from_fn(query), keys, values, output);
        } else {
            self.attend(queries, first_row, keys, values, output);
        }
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
        let inverse_totals = self.softmax_rows::<ROWS>(&mut scores, longest);
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

    /// Each row's scores (row `r` at `r * longest ..`, `first_length + r` of them) turned into
    /// the softmax's numerators as the one-query kernel computes them; returns one over each
    /// row's total.
    #[inline(always)]
    fn softmax_rows<const ROWS: usize>(&self, scores: &mut [f32], longest: usize) -> [f32; ROWS] {
        let mut inverse_totals = [0f32; ROWS];
        for (row, inverse_total) in inverse_totals.iter_mut().enumerate() {
            let scores = &mut scores[row * longest..][..self.first_length + row];
            match exact_softmax(scores) {
                Some(inverse) => *inverse_total = inverse,
                // As the one-query kernel: a row with nothing to attend to is zeros.
                None => scores.fill(0.0),
            }
        }
        inverse_totals
    }
}

/// Whether the CPU runs the kernels' AVX-512 forms (AVX-512F and FMA).
#[cfg(target_arch = "x86_64")]
fn has_avx512_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
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

/// The causal rows kernel's four-row blocks in AVX-512 registers: the same operations in the
/// same order as [`RowBlock::attend`] (each lane's sums, then the lanes added in the tree
/// [`dot`] uses), for four rows of scores reduced together and four rows' contexts summed from
/// each value row read once.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{dot, remainder_product, HeadTask, OneQueryShape, RowBlock, StridedRows, BLOCK_ROWS, LANES};

    /// [`RowBlock::attend_rows`] for four rows of a width the lanes divide.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn attend_four_rows(
        block: &RowBlock,
        queries: [&[f32]; BLOCK_ROWS],
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        let width = block.width;
        assert!(width.is_multiple_of(LANES) && output.len() == BLOCK_ROWS * width);
        assert!(queries.iter().all(|query| query.len() == width));
        let longest = block.first_length + BLOCK_ROWS - 1;
        let key_row = |position: usize| keys.row(block.sequence, position, block.kv_head, width);
        let value_row = |position: usize| values.row(block.sequence, position, block.kv_head, width);
        // What `dot` adds after the lanes: the product of the values past the last whole
        // block, of which there are none.
        let rest = remainder_product(&[], &[]);
        let mut scores = vec![0f32; BLOCK_ROWS * longest];
        for position in 0..longest {
            let key = key_row(position);
            #[allow(unsafe_code)]
            // SAFETY: the key row and every query row hold `width` values (`row` slices them,
            // the queries were checked above), a multiple of the lanes; AVX-512F and FMA are
            // enabled on this function.
            let four = unsafe { four_scores(&queries, &[key; BLOCK_ROWS], rest, block.scale) };
            for (row, score) in four.into_iter().enumerate() {
                scores[row * longest + position] = score;
            }
        }
        let inverse_totals = block.softmax_rows::<BLOCK_ROWS>(&mut scores, longest);
        let blocks = width / LANES;
        let mut first_block = 0;
        while first_block < blocks {
            let group = if blocks - first_block >= 4 { 4 } else { 1 };
            let context = Context { scores: &scores, longest, shortest: block.first_length, inverse_totals };
            #[allow(unsafe_code)]
            // SAFETY: every value row holds `width` values, so blocks `first_block ..
            // first_block + group` exist in each; the output holds four rows of `width`.
            unsafe {
                if group == 4 {
                    context.sum::<4>(&value_row, first_block, width, output);
                } else {
                    context.sum::<1>(&value_row, first_block, width, output);
                }
            }
            first_block += group;
        }
    }

    /// [`HeadTask::attend_query`] for a width the lanes divide: scores four positions at a
    /// time, reduced together, and the context summed from four blocks of each value row at once.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) fn attend_one_query(
        task: &HeadTask,
        query: &[f32],
        keys: &StridedRows<'_>,
        values: &StridedRows<'_>,
        output: &mut [f32],
    ) {
        let OneQueryShape { width, positions, scale, .. } = task.shape;
        assert!(width.is_multiple_of(LANES) && query.len() == width && output.len() == width);
        let key_row = |position: usize| keys.row(task.sequence, position, task.kv_head, width);
        let value_row = |position: usize| values.row(task.sequence, position, task.kv_head, width);
        let rest = remainder_product(&[], &[]);
        let mut scores = vec![0f32; positions];
        let whole = positions - positions % 4;
        for (first, scores) in scores[..whole].chunks_exact_mut(4).enumerate() {
            let keys: [&[f32]; 4] = std::array::from_fn(|offset| key_row(first * 4 + offset));
            #[allow(unsafe_code)]
            // SAFETY: the query and each key row hold `width` values, a multiple of the lanes;
            // AVX-512F and FMA are enabled on this function.
            let four = unsafe { four_scores(&[query; 4], &keys, rest, scale) };
            scores.copy_from_slice(&four);
        }
        for (position, score) in scores.iter_mut().enumerate().skip(whole) {
            *score = dot(query, key_row(position)) * scale;
        }
        let Some(inverse_total) = task.softmax(&mut scores) else {
            output.fill(0.0);
            return;
        };
        let blocks = width / LANES;
        let mut first_block = 0;
        while first_block < blocks {
            let group = if blocks - first_block >= 4 { 4 } else { 1 };
            #[allow(unsafe_code)]
            // SAFETY: every value row holds `width` values, so blocks `first_block ..
            // first_block + group` exist in each, as in the output.
            unsafe {
                if group == 4 {
                    sum_one::<4>(&scores, &value_row, first_block, inverse_total, output);
                } else {
                    sum_one::<1>(&scores, &value_row, first_block, inverse_total, output);
                }
            }
            first_block += group;
        }
    }

    /// Columns `first_block · 16 ..` of `GROUP` blocks of one query's context: the weighted
    /// values summed position by position from zero, as [`super::multiply_add`] sums them,
    /// times `inverse_total`.
    ///
    /// # Safety
    /// Every value row and the output hold those blocks; the CPU has AVX-512F and FMA.
    #[inline]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn sum_one<'v, const GROUP: usize>(
        scores: &[f32],
        value_row: &impl Fn(usize) -> &'v [f32],
        first_block: usize,
        inverse_total: f32,
        output: &mut [f32],
    ) {
        let mut sums = [_mm512_setzero_ps(); GROUP];
        for (position, weight) in scores.iter().enumerate() {
            let row = value_row(position).as_ptr().add(first_block * LANES);
            let weight = _mm512_set1_ps(*weight);
            for (block, sum) in sums.iter_mut().enumerate() {
                *sum = _mm512_fmadd_ps(weight, _mm512_loadu_ps(row.add(block * LANES)), *sum);
            }
        }
        let output = output[first_block * LANES..][..GROUP * LANES].as_mut_ptr();
        for (block, sum) in sums.iter().enumerate() {
            _mm512_storeu_ps(output.add(block * LANES), _mm512_mul_ps(*sum, _mm512_set1_ps(inverse_total)));
        }
    }

    /// Four dot products, `lefts[i] · rights[i]`, each summed in sixteen lanes, the lanes added
    /// as [`super::add_lanes`] adds them (halves, then quarters, then pairs, then the last two),
    /// then `rest`, times `scale`: [`dot`]'s operations, four at a time.
    ///
    /// # Safety
    /// Every row holds the same number of values, a multiple of sixteen; the CPU has AVX-512F
    /// and FMA.
    #[inline]
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn four_scores(lefts: &[&[f32]; 4], rights: &[&[f32]; 4], rest: f32, scale: f32) -> [f32; 4] {
        let mut sums = [_mm512_setzero_ps(); 4];
        for block in 0..rights[0].len() / LANES {
            for ((sum, left), right) in sums.iter_mut().zip(lefts).zip(rights) {
                let (left, right) = (
                    _mm512_loadu_ps(left.as_ptr().add(block * LANES)),
                    _mm512_loadu_ps(right.as_ptr().add(block * LANES)),
                );
                *sum = _mm512_fmadd_ps(left, right, *sum);
            }
        }
        // Lanes l and l + 8 of rows 0 and 1 side by side, and of rows 2 and 3.
        let eight_01 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(sums[0], sums[1]),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(sums[0], sums[1]),
        );
        let eight_23 = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(sums[2], sums[3]),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(sums[2], sums[3]),
        );
        // Lanes l and l + 4 of those: row r's four sums in the r-th quarter.
        let four = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(eight_01, eight_23),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(eight_01, eight_23),
        );
        // Lanes l and l + 2 of each quarter, then lanes 0 and 1.
        let two = _mm512_add_ps(four, _mm512_permute_ps::<0b01_00_11_10>(four));
        let one = _mm512_add_ps(two, _mm512_permute_ps::<0b10_11_00_01>(two));
        let scaled = _mm512_mul_ps(_mm512_add_ps(one, _mm512_set1_ps(rest)), _mm512_set1_ps(scale));
        let mut lanes = [0f32; LANES];
        _mm512_storeu_ps(lanes.as_mut_ptr(), scaled);
        [lanes[0], lanes[4], lanes[8], lanes[12]]
    }

    /// The softmax's numerators of four rows, for summing their contexts.
    struct Context<'a> {
        scores: &'a [f32],
        longest: usize,
        /// Positions the first row attends to; row r attends to `shortest + r`.
        shortest: usize,
        inverse_totals: [f32; BLOCK_ROWS],
    }

    impl Context<'_> {
        /// Writes columns `first_block · 16 ..` of `GROUP` blocks of each of the four output
        /// rows: the weighted values summed position by position from zero, as
        /// [`super::multiply_add`] sums them, times the row's inverse total.
        ///
        /// # Safety
        /// Every value row and each output row of `width` hold those blocks; the CPU has
        /// AVX-512F and FMA.
        #[inline]
        #[allow(unsafe_code)]
        #[target_feature(enable = "avx512f,fma")]
        unsafe fn sum<'v, const GROUP: usize>(
            &self,
            value_row: &impl Fn(usize) -> &'v [f32],
            first_block: usize,
            width: usize,
            output: &mut [f32],
        ) {
            let (scores, longest, shortest) = (self.scores, self.longest, self.shortest);
            let mut sums = [[_mm512_setzero_ps(); GROUP]; BLOCK_ROWS];
            let load = |position: usize| -> [__m512; GROUP] {
                let row = value_row(position).as_ptr().add(first_block * LANES);
                std::array::from_fn(|block| _mm512_loadu_ps(row.add(block * LANES)))
            };
            for position in 0..shortest {
                let values = load(position);
                for (row, sums) in sums.iter_mut().enumerate() {
                    let weight = _mm512_set1_ps(*scores.get_unchecked(row * longest + position));
                    for (sum, value) in sums.iter_mut().zip(values) {
                        *sum = _mm512_fmadd_ps(weight, value, *sum);
                    }
                }
            }
            for position in shortest..longest {
                let values = load(position);
                for (row, sums) in sums.iter_mut().enumerate().skip(position + 1 - shortest) {
                    let weight = _mm512_set1_ps(scores[row * longest + position]);
                    for (sum, value) in sums.iter_mut().zip(values) {
                        *sum = _mm512_fmadd_ps(weight, value, *sum);
                    }
                }
            }
            for (row, sums) in sums.iter().enumerate() {
                let inverse_total = _mm512_set1_ps(self.inverse_totals[row]);
                let output = output[row * width + first_block * LANES..][..GROUP * LANES].as_mut_ptr();
                for (block, sum) in sums.iter().enumerate() {
                    _mm512_storeu_ps(output.add(block * LANES), _mm512_mul_ps(*sum, inverse_total));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
