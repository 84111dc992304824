//! Multi-head self-attention over sequences packed one after another, without padding: each
//! query attends to the keys of its own sequence only, so a batch of short sentences costs
//! what its sentences cost.

use rayon::prelude::*;

use crate::math::{add_scaled, dot, softmax_in_place};

/// Query-key products below which attention runs on the calling thread.
const SEQUENTIAL_PRODUCTS: usize = 1 << 14;

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
    let mut starts = Vec::with_capacity(sequence_lengths.len() + 1);
    starts.push(0);
    for length in sequence_lengths {
        starts.push(starts.last().unwrap() + length);
    }
    let attend = Attend { query_key_value, starts: &starts, heads, width };
    let products: usize = sequence_lengths.iter().map(|length| length * length).sum::<usize>() * width;
    if products <= SEQUENTIAL_PRODUCTS {
        attend.rows(0, context);
        return;
    }
    let rows_per_task = rows.div_ceil(rayon::current_num_threads() * 4).max(1);
    context.par_chunks_mut(rows_per_task * width).enumerate().for_each(|(task, chunk)| {
        attend.rows(task * rows_per_task, chunk);
    });
}

struct Attend<'a> {
    query_key_value: &'a [f32],
    /// Where each sequence starts, and the total at the end.
    starts: &'a [usize],
    heads: usize,
    width: usize,
}

impl Attend<'_> {
    /// The context of the rows from `first_row` on that `context` holds.
    fn rows(&self, first_row: usize, context: &mut [f32]) {
        let width = self.width;
        let head_width = width / self.heads;
        let scale = 1.0 / (head_width as f32).sqrt();
        let stride = 3 * width;
        let mut scores = Vec::new();
        for (offset, output) in context.chunks_exact_mut(width).enumerate() {
            let row = first_row + offset;
            let sequence = self.starts.partition_point(|start| *start <= row) - 1;
            let keys = self.starts[sequence]..self.starts[sequence + 1];
            output.fill(0.0);
            for head in 0..self.heads {
                let columns = head * head_width..(head + 1) * head_width;
                let query = &self.query_key_value[row * stride..][columns.clone()];
                scores.clear();
                scores.extend(keys.clone().map(|key| {
                    let key = &self.query_key_value[key * stride + width..][columns.clone()];
                    dot(query, key) * scale
                }));
                softmax_in_place(&mut scores);
                let output = &mut output[columns.clone()];
                for (key, probability) in keys.clone().zip(&scores) {
                    let value = &self.query_key_value[key * stride + 2 * width..][columns.clone()];
                    add_scaled(output, value, *probability);
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
        let (heads, width) = (4, 32);
        // Small and large enough to run both on the calling thread and on the pool.
        for lengths in [vec![3usize, 1, 5], vec![40, 7, 64, 1, 30]] {
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
