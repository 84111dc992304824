//! Prints the packed matrix product's speed (GFLOP/s, median of runs) on the shapes of a small
//! BERT encoder, for each kernel this CPU runs and each weight storage. The weights cycle through
//! copies larger than the caches, as a forward pass streams its layers' weights:
//! `cargo run -p cpu-kernels --example matmul-bench`.
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::time::Instant;

use cpu_kernels::matmul::{multiply_with, Kernel, PackedWeights, Storage};

/// Bytes of weight copies cycled through: past the last-level cache of most machines.
const STREAMED_BYTES: usize = 96 << 20;

fn main() {
    let runs = 5;
    // (rows, outputs, inputs): one token, a query of 10 tokens, a sentence, 8 sentences and 64
    // sentences, over the attention's query-key-value product and the feed-forward's products.
    let shapes = [
        (1, 1536, 384),
        (10, 1152, 384),
        (24, 1536, 384),
        (24, 384, 1536),
        (192, 1536, 384),
        (1536, 1536, 384),
        (1536, 384, 1536),
    ];
    println!("{:>6} {:>6} {:>6}  GFLOP/s by kernel and weight storage", "rows", "out", "in");
    for (rows, outputs, inputs) in shapes {
        let input: Vec<f32> = (0..rows * inputs).map(|index| (index % 97) as f32 * 0.01).collect();
        let mut output = vec![0f32; rows * outputs];
        let mut line = format!("{rows:>6} {outputs:>6} {inputs:>6} ");
        for storage in [Storage::F32, Storage::F16] {
            let copies = (STREAMED_BYTES / (outputs * inputs * 4)).max(1);
            let weights: Vec<PackedWeights> = (0..copies)
                .map(|copy| {
                    let weight: Vec<f32> =
                        (0..outputs * inputs).map(|index| ((index + copy) % 89) as f32 * 0.01).collect();
                    PackedWeights::with_storage(&weight, None, outputs, inputs, storage)
                })
                .collect();
            for kernel in Kernel::available() {
                let mut timings = Vec::with_capacity(runs * copies);
                for _ in 0..runs {
                    for packed in &weights {
                        let started = Instant::now();
                        multiply_with(kernel, &input, rows, packed, &mut output);
                        timings.push(started.elapsed().as_secs_f64());
                    }
                }
                timings.sort_by(f64::total_cmp);
                let flops = 2.0 * (rows * outputs * inputs) as f64;
                line += &format!("  {kernel:?}/{storage:?} {:.1}", flops / timings[timings.len() / 2] / 1e9);
            }
        }
        println!("{line}");
    }
}
