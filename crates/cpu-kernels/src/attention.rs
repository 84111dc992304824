//! Multi-head self-attention over sequences packed one after another, without padding: each
//! query attends to the keys of its own sequence only, so a batch of short sentences costs
//! what its sentences cost.

use rayon::prelude::*;

use crate::math::{add_scaled, multiply_add, softmax_in_place};

/// Query-key products below which attention runs on the calling thread.
const SEQUENTIAL_PRODUCTS: usize = 1 << 14;

/// Queries one task takes from a long sequence.
const QUERIES_PER_TASK: usize = 64;

/// Scores and context columns are summed this many at a time, in one register: keys are padded
/// to a multiple of it (zeros), and a head whose width is a multiple of it takes the fast path.
const BLOCK: usize = crate::math::LANES;

/// Writes each row's attention context (`rows × width`, the heads side by side) from its
/// queries, keys and values (`rows × 3·width`: the row's query, then its key, then its value).
/// `sequence_lengths` are the packed sequences' lengths, in order, summing to the rows.
///
/// # Panics
/// When the sizes disagree, or `heads` does not divide the width.
pub fn self_attention(query_key_value: &[f32], sequence_lengths: &[usize], heads: usize, context: &mut [f32]) {
    let rows: usize = sequence_lengths.iter().sum();
    if rows == 0 {
        assert!(context.is_empty() && query_key_value.is_empty(), "sizes of an empty batch");
        return;
    }
    let width = context.len() / rows;
    assert_eq!(context.len(), rows * width, "context size");
    assert_eq!(query_key_value.len(), rows * 3 * width, "query, key and value size");
    assert!(heads > 0 && width.is_multiple_of(heads), "{heads} heads in a width of {width}");
    // One task per run of up to `QUERIES_PER_TASK` queries of one sequence, each with the rows
    // of the context it writes.
    let mut tasks = Vec::new();
    let mut rest = context;
    let mut first = 0;
    for length in sequence_lengths {
        for queries in (0..*length).step_by(QUERIES_PER_TASK) {
            let count = QUERIES_PER_TASK.min(length - queries);
            let (output, after) = rest.split_at_mut(count * width);
            tasks.push(Task { first, length: *length, queries: queries..queries + count, output });
            rest = after;
        }
        first += length;
    }
    let shape = Shape { query_key_value, heads, width };
    let products: usize = sequence_lengths.iter().map(|length| length * length).sum::<usize>() * width;
    if products <= SEQUENTIAL_PRODUCTS {
        tasks.into_iter().for_each(|task| shape.attend_widest(task));
    } else {
        tasks.into_par_iter().for_each(|task| shape.attend_widest(task));
    }
}

/// What every task reads.
struct Shape<'a> {
    query_key_value: &'a [f32],
    heads: usize,
    width: usize,
}

/// Queries `queries` of the sequence whose rows start at `first`, and their context rows.
struct Task<'a> {
    first: usize,
    length: usize,
    queries: std::ops::Range<usize>,
    output: &'a mut [f32],
}

impl Shape<'_> {
    /// [`Shape::attend`] in the widest vectors the CPU has.
    fn attend_widest(&self, task: Task<'_>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe {
                self.attend_avx512(task)
            };
            return;
        }
        self.attend(task);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn attend_avx512(&self, task: Task<'_>) {
        self.attend(task);
    }

    #[inline(always)]
    fn attend(&self, task: Task<'_>) {
        let Task { first, length, queries, output } = task;
        let width = self.width;
        let head_width = width / self.heads;
        let stride = 3 * width;
        let padded = length.next_multiple_of(BLOCK);
        // The sequence's keys transposed per head (for each head, a row of the padded length
        // per dimension), so a query's scores are sums of whole rows: no horizontal sums.
        let mut keys = vec![0f32; self.heads * head_width * padded];
        for position in 0..length {
            let key = &self.query_key_value[(first + position) * stride + width..][..width];
            for (column, value) in key.iter().enumerate() {
                keys[column * padded + position] = *value;
            }
        }
        let scale = 1.0 / (head_width as f32).sqrt();
        let mut scores = vec![0f32; padded];
        let mut query_scaled = vec![0f32; head_width];
        for (query, output) in queries.zip(output.chunks_exact_mut(width)) {
            let row = &self.query_key_value[(first + query) * stride..][..width];
            for head in 0..self.heads {
                let columns = head * head_width..(head + 1) * head_width;
                for (scaled, value) in query_scaled.iter_mut().zip(&row[columns.clone()]) {
                    *scaled = value * scale;
                }
                let head_keys = &keys[columns.start * padded..columns.end * padded];
                // Sixteen scores at a time, summed in a register over the head's dimensions.
                for (block, scores) in scores.chunks_exact_mut(BLOCK).enumerate() {
                    let mut sums = [0f32; BLOCK];
                    for (value, key_row) in query_scaled.iter().zip(head_keys.chunks_exact(padded)) {
                        multiply_add(&mut sums, *value, &key_row[block * BLOCK..]);
                    }
                    scores.copy_from_slice(&sums);
                }
                softmax_in_place(&mut scores[..length]);
                let output = &mut output[columns.clone()];
                let values =
                    |position: usize| &self.query_key_value[(first + position) * stride + 2 * width..][columns.clone()];
                if head_width.is_multiple_of(BLOCK) {
                    // Sixteen columns of the context at a time, summed in a register over the keys.
                    for (block, output) in output.chunks_exact_mut(BLOCK).enumerate() {
                        let mut sums = [0f32; BLOCK];
                        for (position, probability) in scores[..length].iter().enumerate() {
                            multiply_add(&mut sums, *probability, &values(position)[block * BLOCK..]);
                        }
                        output.copy_from_slice(&sums);
                    }
                } else {
                    output.fill(0.0);
                    for (position, probability) in scores[..length].iter().enumerate() {
                        add_scaled(output, values(position), *probability);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention for one sequence, written out in f64.
    fn reference(query_key_value: &[f32], first: usize, length: usize, heads: usize, width: usize) -> Vec<f64> {
        let head_width = width / heads;
        let at = |row: usize, part: usize, column: usize| {
            f64::from(query_key_value[row * 3 * width + part * width + column])
        };
        let mut context = vec![0f64; length * width];
        for query in 0..length {
            for head in 0..heads {
                let columns = head * head_width..(head + 1) * head_width;
                let scores: Vec<f64> = (0..length)
                    .map(|key| {
                        columns.clone().map(|c| at(first + query, 0, c) * at(first + key, 1, c)).sum::<f64>()
                            / (head_width as f64).sqrt()
                    })
                    .collect();
                let largest = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|score| (score - largest).exp()).collect();
                let total: f64 = weights.iter().sum();
                for column in columns {
                    context[query * width + column] =
                        (0..length).map(|key| weights[key] / total * at(first + key, 2, column)).sum();
                }
            }
        }
        context
    }

    #[test]
    fn packed_sequences_attend_only_to_themselves() {
        // Heads of 8 take the general path, heads of 32 the blocks of sixteen; batches small and
        // large enough to run both on the calling thread and on the pool.
        for ((heads, width), lengths) in [(4, 32), (2, 64)]
            .into_iter()
            .flat_map(|shape| [(shape, vec![3usize, 1, 5]), (shape, vec![40, 7, 64, 1, 30])])
        {
            let rows: usize = lengths.iter().sum();
            let query_key_value: Vec<f32> =
                (0..rows * 3 * width).map(|index| ((index * 7919 % 1000) as f32 / 500.0 - 1.0) * 2.0).collect();
            let mut context = vec![f32::NAN; rows * width];
            self_attention(&query_key_value, &lengths, heads, &mut context);
            let mut first = 0;
            for length in lengths {
                let expected = reference(&query_key_value, first, length, heads, width);
                for (got, want) in context[first * width..(first + length) * width].iter().zip(&expected) {
                    assert!((f64::from(*got) - want).abs() < 1e-5, "{got} against {want}");
                }
                first += length;
            }
        }
        self_attention(&[], &[], 2, &mut []);
        self_attention(&[], &[0, 0], 2, &mut []);
    }
}
