//! Prints the Q4_1 × Q8_1 dot products' speed on one thread for each kernel this CPU runs, against
//! the released scalar kernel: weight rows of 576 and 1536 values (SmolLM2-135M's widths) cycled
//! through copies larger than the caches, as a decoding step streams its weights, for the
//! four-weight-row form (decoding) and the sixteen-activation-row form (prompts):
//! `cargo run -p cpu-kernels --example quantized-dot-bench`.
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::time::Instant;

use cpu_kernels::quantized_dot::{
    dot_q4_1_q8_1_four_with, dot_q4_1_q8_1_reference, dot_q4_1_q8_1_rows_with, BlockQ4_1, BlockQ8_1, DotKernel,
    BLOCK_VALUES,
};
use half::f16;

/// Bytes of weights streamed per run: past the last-level cache of most machines.
const STREAMED_BYTES: usize = 96 << 20;

fn main() {
    let runs = 7;
    println!("kernels on this CPU: {:?}", DotKernel::available());
    println!("{:>6} {:>10}  GB/s of weights (median of {runs}), one thread", "width", "form");
    for width in [576, 1536] {
        let blocks = width / BLOCK_VALUES;
        let rows = STREAMED_BYTES / (blocks * size_of::<BlockQ4_1>());
        let weights: Vec<BlockQ4_1> = (0..rows * blocks)
            .map(|index| BlockQ4_1 {
                d: f16::from_f32(0.01),
                m: f16::from_f32(-0.05),
                qs: [(index % 251) as u8; BLOCK_VALUES / 2],
            })
            .collect();
        let activations: Vec<BlockQ8_1> = (0..16 * blocks)
            .map(|index| BlockQ8_1 {
                d: f16::from_f32(0.02),
                s: f16::from_f32(1.5),
                qs: [(index % 127) as i8; BLOCK_VALUES],
            })
            .collect();
        let row = |index: usize| &weights[index * blocks..(index + 1) * blocks];
        let bytes = (weights.len() * size_of::<BlockQ4_1>()) as f64;
        let mut line = format!("{width:>6} {:>10} ", "four");
        let mut sink = 0f32;
        let median = |mut times: Vec<f64>| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        for kernel in DotKernel::available() {
            let seconds = median(
                (0..runs)
                    .map(|_| {
                        let start = Instant::now();
                        for first in (0..rows - 3).step_by(4) {
                            let sums = dot_q4_1_q8_1_four_with(
                                kernel,
                                [row(first), row(first + 1), row(first + 2), row(first + 3)],
                                &activations[..blocks],
                            );
                            sink += sums[0];
                        }
                        start.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            line += &format!(" {kernel:?} {:.1}", bytes / seconds / 1e9);
        }
        let seconds = median(
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    for index in 0..rows {
                        sink += dot_q4_1_q8_1_reference(row(index), &activations[..blocks]);
                    }
                    start.elapsed().as_secs_f64()
                })
                .collect(),
        );
        line += &format!(" released-scalar {:.1}", bytes / seconds / 1e9);
        println!("{line}");
        let mut line = format!("{width:>6} {:>10} ", "16 rows");
        let mut sums = [0f32; 16];
        let scales = cpu_kernels::quantized_dot::activation_scales(&activations);
        for kernel in DotKernel::available() {
            let seconds = median(
                (0..runs)
                    .map(|_| {
                        let start = Instant::now();
                        for index in 0..rows {
                            dot_q4_1_q8_1_rows_with(kernel, row(index), &activations, &scales, &mut sums);
                            sink += sums[0];
                        }
                        start.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            // Multiply-adds per second: each weight times sixteen activations.
            let operations = (weights.len() * BLOCK_VALUES * 16) as f64;
            line += &format!(" {kernel:?} {:.1} GB/s {:.0} Gop/s", bytes / seconds / 1e9, operations / seconds / 1e9);
        }
        println!("{line}");
        std::hint::black_box(sink);
    }
}
