//! Prints the speed of a prompt block's causal attention over a KV cache (`attend_causal_rows`)
//! on SmolLM2-135M's heads, for a whole prompt and for a short extension of a cached one, in
//! milliseconds per layer and GFLOP/s (medians of runs), on the calling thread's pool:
//! `cargo run -p cpu-kernels --example causal-attention-bench`.
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::time::Instant;

use cpu_kernels::cached_attention::{attend_causal_rows, OneQueryShape, StridedRows};

fn main() {
    let (heads, kv_heads, width) = (9, 3, 64);
    println!("{:>6} {:>9}  {:>10} {:>8}", "rows", "positions", "ms/layer", "GFLOP/s");
    // (new rows, positions): whole prompts, and 20 tokens after 530 cached ones.
    for (rows, positions) in [(128usize, 128usize), (512, 512), (2048, 2048), (20, 550), (1, 550)] {
        let capacity = positions.next_multiple_of(512);
        let fill = |count: usize, seed: usize| -> Vec<f32> {
            (0..count).map(|index| (((index + seed) * 7919 % 1000) as f32 / 500.0) - 1.0).collect()
        };
        let queries = fill(rows * heads * width, 1);
        let (keys, values) = (fill(kv_heads * capacity * width, 2), fill(kv_heads * capacity * width, 3));
        let cache = |data| StridedRows {
            data,
            sequence_stride: kv_heads * capacity * width,
            position_stride: width,
            head_stride: capacity * width,
        };
        let query_rows = StridedRows {
            data: &queries,
            sequence_stride: rows * heads * width,
            position_stride: heads * width,
            head_stride: width,
        };
        let shape = OneQueryShape { sequences: 1, heads, kv_heads, width, positions, scale: 0.125 };
        let mut output = vec![0f32; heads * rows * width];
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                attend_causal_rows(shape, rows, query_rows, cache(&keys), cache(&values), &mut output);
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        // Query-key products and the weighted sum of values, over each row's positions.
        let pairs: usize = (0..rows).map(|row| positions - rows + row + 1).sum();
        let flops = (pairs * heads * width * 4) as f64;
        println!("{rows:>6} {positions:>9}  {:>10.3} {:>8.1}", median * 1e3, flops / median / 1e9);
    }
}
