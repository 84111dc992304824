//! One-query attention against a reference written out in f64, on strided layouts, grouped
//! heads and masks; and the same bits for a sequence alone and in a batch, on the pool and off
//! it, in every vector width. A prompt block's causal rows against one-query steps at their
//! positions, bit for bit.

use super::*;

/// Deterministic values in [-2, 2).
fn values(count: usize, seed: usize) -> Vec<f32> {
    (0..count).map(|index| (((index + seed) * 7919 % 1000) as f32 / 250.0) - 2.0).collect()
}

/// A cache laid out as candle's KV cache is: (sequence, head, capacity, width), read as
/// (sequence, position, head, width) through strides; `capacity` past the positions in use.
struct Cache {
    data: Vec<f32>,
    kv_heads: usize,
    capacity: usize,
    width: usize,
}

impl Cache {
    fn new(sequences: usize, kv_heads: usize, capacity: usize, width: usize, seed: usize) -> Cache {
        Cache { data: values(sequences * kv_heads * capacity * width, seed), kv_heads, capacity, width }
    }

    fn rows(&self) -> StridedRows<'_> {
        StridedRows {
            data: &self.data,
            sequence_stride: self.kv_heads * self.capacity * self.width,
            position_stride: self.width,
            head_stride: self.capacity * self.width,
        }
    }

    fn at(&self, sequence: usize, position: usize, head: usize, column: usize) -> f64 {
        let rows = self.rows();
        f64::from(rows.row(sequence, position, head, self.width)[column])
    }
}

fn reference(shape: OneQueryShape, queries: &[f32], keys: &Cache, values: &Cache, mask: Option<&[f32]>) -> Vec<f64> {
    let OneQueryShape { sequences, heads, kv_heads, width, positions, scale } = shape;
    let mut output = vec![0f64; sequences * heads * width];
    for sequence in 0..sequences {
        for head in 0..heads {
            let index = sequence * heads + head;
            let kv_head = head / (heads / kv_heads);
            let query = &queries[index * width..(index + 1) * width];
            let scores: Vec<f64> = (0..positions)
                .map(|position| {
                    let product: f64 = (0..width)
                        .map(|column| f64::from(query[column]) * keys.at(sequence, position, kv_head, column))
                        .sum();
                    product * f64::from(scale) + mask.map_or(0.0, |mask| f64::from(mask[index * positions + position]))
                })
                .collect();
            let largest = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|score| (score - largest).exp()).collect();
            let total: f64 = weights.iter().sum();
            for column in 0..width {
                output[index * width + column] = (0..positions)
                    .map(|position| weights[position] / total * values.at(sequence, position, kv_head, column))
                    .sum();
            }
        }
    }
    output
}

fn run(shape: OneQueryShape, queries: &[f32], keys: &Cache, values: &Cache, mask: Option<&[f32]>) -> Vec<f32> {
    let query_rows = StridedRows {
        data: queries,
        sequence_stride: shape.heads * shape.width,
        position_stride: 0,
        head_stride: shape.width,
    };
    let mut output = vec![f32::NAN; shape.sequences * shape.heads * shape.width];
    attend_one_query(shape, query_rows, keys.rows(), values.rows(), mask, &mut output);
    output
}

#[test]
fn attention_matches_the_reference_on_grouped_heads_and_strided_caches() {
    // (sequences, heads, kv_heads, width, positions): SmolLM2's and Qwen2's head groups, a
    // width that is not a multiple of the lanes, one position, and enough work for the pool.
    for (sequences, heads, kv_heads, width, positions) in
        [(1, 9, 3, 64, 37), (2, 14, 2, 64, 200), (3, 4, 4, 24, 5), (1, 2, 1, 16, 1), (4, 8, 2, 32, 300)]
    {
        let shape = OneQueryShape { sequences, heads, kv_heads, width, positions, scale: 1.0 / (width as f32).sqrt() };
        let queries = values(sequences * heads * width, 1);
        let (keys, cached_values) = (
            Cache::new(sequences, kv_heads, positions + 7, width, 2),
            Cache::new(sequences, kv_heads, positions + 7, width, 3),
        );
        let got = run(shape, &queries, &keys, &cached_values, None);
        let want = reference(shape, &queries, &keys, &cached_values, None);
        for (index, (got, want)) in got.iter().zip(&want).enumerate() {
            assert!((f64::from(*got) - want).abs() < 1e-5, "{shape:?} at {index}: {got} against {want}");
        }
    }
}

#[test]
fn masked_positions_take_no_part() {
    let shape = OneQueryShape { sequences: 2, heads: 4, kv_heads: 2, width: 32, positions: 50, scale: 0.2 };
    let queries = values(2 * 4 * 32, 5);
    let (keys, cached_values) = (Cache::new(2, 2, 64, 32, 6), Cache::new(2, 2, 64, 32, 7));
    // Hide the first twenty positions (a sliding window), and add a bias to the others.
    let mask: Vec<f32> = (0..2 * 4 * 50)
        .map(|index| if index % 50 < 20 { f32::NEG_INFINITY } else { (index % 7) as f32 * 0.1 })
        .collect();
    let got = run(shape, &queries, &keys, &cached_values, Some(&mask));
    let want = reference(shape, &queries, &keys, &cached_values, Some(&mask));
    for (got, want) in got.iter().zip(&want) {
        assert!((f64::from(*got) - want).abs() < 1e-5, "{got} against {want}");
    }
    let all_masked = vec![f32::NEG_INFINITY; 2 * 4 * 50];
    assert!(run(shape, &queries, &keys, &cached_values, Some(&all_masked)).iter().all(|value| *value == 0.0));
}

#[test]
fn sequences_of_different_lengths_in_a_batch_get_the_bits_each_gets_alone() {
    // Qwen2's head groups; lengths across the vector widths' remainders and the pool threshold.
    let (heads, kv_heads, width, capacity) = (14, 2, 64, 320);
    let lengths = [1, 300, 17, 64, 257];
    let sequences = lengths.len();
    let longest = *lengths.iter().max().unwrap();
    let batch = OneQueryShape { sequences, heads, kv_heads, width, positions: longest, scale: 0.125 };
    let queries = values(sequences * heads * width, 21);
    let (keys, cached_values) =
        (Cache::new(sequences, kv_heads, capacity, width, 22), Cache::new(sequences, kv_heads, capacity, width, 23));
    let query_rows =
        StridedRows { data: &queries, sequence_stride: heads * width, position_stride: 0, head_stride: width };
    let mut together = vec![f32::NAN; sequences * heads * width];
    attend_one_query_over_lengths(batch, &lengths, query_rows, keys.rows(), cached_values.rows(), None, &mut together);
    for (sequence, &length) in lengths.iter().enumerate() {
        let span = |stride: usize| sequence * stride..(sequence + 1) * stride;
        let cut = |cache: &Cache| Cache {
            data: cache.data[span(kv_heads * capacity * width)].to_vec(),
            kv_heads,
            capacity,
            width,
        };
        let alone_shape = OneQueryShape { sequences: 1, positions: length, ..batch };
        let alone = run(alone_shape, &queries[span(heads * width)], &cut(&keys), &cut(&cached_values), None);
        assert!(
            alone.iter().zip(&together[span(heads * width)]).all(|(a, b)| a.to_bits() == b.to_bits()),
            "sequence {sequence} of length {length} differs alone and in a mixed batch"
        );
    }
}

#[test]
#[should_panic(expected = "outside 1..=")]
fn a_length_past_the_longest_is_refused() {
    let shape = OneQueryShape { sequences: 2, heads: 2, kv_heads: 1, width: 16, positions: 8, scale: 1.0 };
    let queries = values(2 * 2 * 16, 1);
    let (keys, cached_values) = (Cache::new(2, 1, 8, 16, 2), Cache::new(2, 1, 8, 16, 3));
    let query_rows = StridedRows { data: &queries, sequence_stride: 32, position_stride: 0, head_stride: 16 };
    let mut output = vec![0f32; 64];
    attend_one_query_over_lengths(shape, &[8, 9], query_rows, keys.rows(), cached_values.rows(), None, &mut output);
}

#[test]
fn a_sequence_gets_the_same_bits_alone_and_in_a_batch() {
    let (heads, kv_heads, width, positions) = (9, 3, 64, 700);
    let batch = OneQueryShape { sequences: 3, heads, kv_heads, width, positions, scale: 0.125 };
    let queries = values(3 * heads * width, 11);
    let (keys, cached_values) = (Cache::new(3, kv_heads, 800, width, 12), Cache::new(3, kv_heads, 800, width, 13));
    let together = run(batch, &queries, &keys, &cached_values, None);
    for sequence in 0..3 {
        let alone_shape = OneQueryShape { sequences: 1, ..batch };
        let span = |stride: usize| sequence * stride..(sequence + 1) * stride;
        let alone_queries = &queries[span(heads * width)];
        let cut = |cache: &Cache| Cache {
            data: cache.data[span(kv_heads * 800 * width)].to_vec(),
            kv_heads,
            capacity: 800,
            width,
        };
        let alone = run(alone_shape, alone_queries, &cut(&keys), &cut(&cached_values), None);
        let in_batch = &together[span(heads * width)];
        assert!(
            alone.iter().zip(in_batch).all(|(a, b)| a.to_bits() == b.to_bits()),
            "sequence {sequence} differs alone and in a batch"
        );
    }
    // The same call on the calling thread only: the pool does not change the bits.
    let single_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let serial = single_thread.install(|| run(batch, &queries, &keys, &cached_values, None));
    assert!(serial.iter().zip(&together).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
#[cfg(target_arch = "x86_64")]
fn every_vector_width_gives_the_same_bits() {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return;
    }
    let shape = OneQueryShape { sequences: 1, heads: 4, kv_heads: 2, width: 64, positions: 90, scale: 0.125 };
    let queries = values(4 * 64, 21);
    let (keys, cached_values) = (Cache::new(1, 2, 90, 64, 22), Cache::new(1, 2, 90, 64, 23));
    let query_rows = StridedRows { data: &queries, sequence_stride: 4 * 64, position_stride: 0, head_stride: 64 };
    for head in 0..4 {
        let task = HeadTask { shape, sequence: 0, head, kv_head: head / 2, mask: None };
        let (mut portable, mut widest) = (vec![0f32; 64], vec![0f32; 64]);
        task.attend(&query_rows, &keys.rows(), &cached_values.rows(), &mut portable);
        task.attend_widest(&query_rows, &keys.rows(), &cached_values.rows(), &mut widest);
        assert!(portable.iter().zip(&widest).all(|(a, b)| a.to_bits() == b.to_bits()), "head {head}");
    }
}

#[test]
#[should_panic(expected = "keys reach past their data")]
fn rows_past_the_data_are_refused() {
    let shape = OneQueryShape { sequences: 1, heads: 2, kv_heads: 1, width: 16, positions: 10, scale: 1.0 };
    let queries = values(32, 0);
    let keys = Cache::new(1, 1, 9, 16, 1);
    let cached_values = Cache::new(1, 1, 10, 16, 2);
    run(shape, &queries, &keys, &cached_values, None);
}

/// A prompt block's queries laid out as candle's (sequence, position, head, width) tensor
/// transposed to (sequence, head, position, width) is: positions `heads · width` apart.
fn prompt_queries(data: &[f32], heads: usize, rows: usize, width: usize) -> StridedRows<'_> {
    StridedRows { data, sequence_stride: rows * heads * width, position_stride: heads * width, head_stride: width }
}

fn run_causal_rows(shape: OneQueryShape, rows: usize, queries: &[f32], keys: &Cache, values: &Cache) -> Vec<f32> {
    let OneQueryShape { sequences, heads, width, .. } = shape;
    let mut output = vec![f32::NAN; sequences * heads * rows * width];
    attend_causal_rows(
        shape,
        rows,
        prompt_queries(queries, heads, rows, width),
        keys.rows(),
        values.rows(),
        &mut output,
    );
    output
}

#[test]
fn causal_rows_equal_one_query_steps_at_their_positions_bit_for_bit() {
    // (sequences, heads, kv_heads, width, rows, positions): a prompt extending a cached one, a
    // whole prompt, a width the lanes do not divide, a batch with enough work for the pool, one
    // row, and rows that leave a short last block.
    for (sequences, heads, kv_heads, width, rows, positions) in [
        (1, 9, 3, 64, 37, 50),
        (2, 14, 2, 64, 6, 6),
        (1, 4, 2, 24, 5, 9),
        (3, 4, 4, 32, 130, 200),
        (1, 2, 1, 16, 1, 1),
        (1, 3, 1, 80, 10, 300),
    ] {
        let shape = OneQueryShape { sequences, heads, kv_heads, width, positions, scale: 1.0 / (width as f32).sqrt() };
        let queries = values(sequences * rows * heads * width, 31);
        let (keys, cached_values) = (
            Cache::new(sequences, kv_heads, positions + 3, width, 32),
            Cache::new(sequences, kv_heads, positions + 3, width, 33),
        );
        let got = run_causal_rows(shape, rows, &queries, &keys, &cached_values);
        let query_rows = prompt_queries(&queries, heads, rows, width);
        for row in 0..rows {
            // The step that decodes position `positions - rows + row`: one query per head, no
            // mask, over the positions up to it.
            let step = OneQueryShape {
                sequences,
                heads,
                kv_heads,
                width,
                positions: positions - rows + row + 1,
                scale: shape.scale,
            };
            let step_queries =
                StridedRows { data: &queries[row * query_rows.position_stride..], position_stride: 0, ..query_rows };
            let mut want = vec![f32::NAN; sequences * heads * width];
            attend_one_query(step, step_queries, keys.rows(), cached_values.rows(), None, &mut want);
            for sequence in 0..sequences {
                for head in 0..heads {
                    let got = &got[((sequence * heads + head) * rows + row) * width..][..width];
                    let want = &want[(sequence * heads + head) * width..][..width];
                    assert!(
                        got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{shape:?}: sequence {sequence}, head {head}, row {row}: {got:?} against {want:?}"
                    );
                }
            }
        }
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn causal_rows_give_the_same_bits_in_every_vector_width() {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        return;
    }
    let (heads, width, rows) = (2, 64, 8);
    let queries = values(rows * heads * width, 41);
    let (keys, cached_values) = (Cache::new(1, 1, 40, 64, 42), Cache::new(1, 1, 40, 64, 43));
    let query_rows = prompt_queries(&queries, heads, rows, width);
    for head in 0..heads {
        for first_row in [0, BLOCK_ROWS] {
            let block =
                RowBlock { sequence: 0, head, kv_head: 0, width, scale: 0.125, first_length: 30 + first_row + 1 };
            let (mut portable, mut widest) = (vec![0f32; BLOCK_ROWS * width], vec![0f32; BLOCK_ROWS * width]);
            block.attend(&query_rows, first_row, &keys.rows(), &cached_values.rows(), &mut portable);
            block.attend_widest(&query_rows, first_row, &keys.rows(), &cached_values.rows(), &mut widest);
            assert!(portable.iter().zip(&widest).all(|(a, b)| a.to_bits() == b.to_bits()), "head {head}");
        }
    }
}

#[test]
#[should_panic(expected = "new rows among")]
fn more_new_rows_than_positions_are_refused() {
    let shape = OneQueryShape { sequences: 1, heads: 1, kv_heads: 1, width: 16, positions: 4, scale: 1.0 };
    let queries = values(5 * 16, 0);
    let keys = Cache::new(1, 1, 8, 16, 1);
    run_causal_rows(shape, 5, &queries, &keys, &keys);
}
