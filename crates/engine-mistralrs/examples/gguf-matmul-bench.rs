//! Prints the speed of candle's quantized matrix product (the vendored one the engine runs) on
//! SmolLM2-135M's shapes, for each weight type and a range of activation rows (1: decoding one
//! sequence; 2 to 8: batched decoding; 16 to 512: prompts). Weights cycle through copies larger
//! than the caches, as a forward pass streams its layers:
//! `cargo run -p engine-mistralrs --example gguf-matmul-bench [TYPE...]` (q4_1, q8_0, q4_0,
//! q4k, q6k; default q4_1 and q8_0).
#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// Bytes of F32 weights per copy set: past the last-level cache once quantized.
const STREAMED_VALUES: usize = 64 << 20;

fn main() {
    let types: Vec<GgmlDType> = {
        let names: Vec<String> = std::env::args().skip(1).collect();
        let names = if names.is_empty() { vec!["q4_1".into(), "q8_0".into()] } else { names };
        names
            .iter()
            .map(|name| match name.as_str() {
                "q4_1" => GgmlDType::Q4_1,
                "q8_0" => GgmlDType::Q8_0,
                "q4_0" => GgmlDType::Q4_0,
                "q4k" => GgmlDType::Q4K,
                "q6k" => GgmlDType::Q6K,
                other => panic!("unknown type {other}"),
            })
            .collect()
    };
    let runs = 5;
    let threads = candle_core::utils::get_num_threads();
    println!("threads {threads}; GFLOP/s (median of {runs}) and, at one row, GB/s of weights");
    // (outputs, inputs): SmolLM2's attention query and output, the feed-forward's up and down.
    let shapes = [(576, 576), (1536, 576), (576, 1536)];
    for dtype in types {
        for (outputs, inputs) in shapes {
            let copies = (STREAMED_VALUES / (outputs * inputs)).max(2);
            let weights: Vec<QMatMul> = (0..copies)
                .map(|copy| {
                    let values: Vec<f32> = (0..outputs * inputs)
                        .map(|index| (((index * 7 + copy * 13) % 1009) as f32 / 1009.0 - 0.5) * 0.2)
                        .collect();
                    let tensor = Tensor::from_vec(values, (outputs, inputs), &Device::Cpu).unwrap();
                    QMatMul::from_qtensor(QTensor::quantize(&tensor, dtype).unwrap()).unwrap()
                })
                .collect();
            let weight_bytes = outputs * inputs / dtype.block_size() * dtype.type_size();
            let mut line = format!("{dtype:?} {outputs:>5}x{inputs:<5}");
            for rows in [1, 2, 4, 8, 16, 128, 512] {
                let input_values: Vec<f32> =
                    (0..rows * inputs).map(|index| ((index % 113) as f32 / 113.0 - 0.5) * 2.0).collect();
                let input = Tensor::from_vec(input_values, (rows, inputs), &Device::Cpu).unwrap();
                // Enough products per run for a few milliseconds.
                let per_run = (copies * 8 / rows).clamp(copies, 4 * copies);
                let mut times = Vec::new();
                for _ in 0..runs {
                    let started = Instant::now();
                    for index in 0..per_run {
                        std::hint::black_box(weights[index % copies].forward(&input).unwrap());
                    }
                    times.push(started.elapsed().as_secs_f64() / per_run as f64);
                }
                times.sort_by(f64::total_cmp);
                let seconds = times[runs / 2];
                let flops = 2.0 * (rows * outputs * inputs) as f64 / seconds / 1e9;
                if rows == 1 {
                    line += &format!("  1:{flops:.1} ({:.1} GB/s)", weight_bytes as f64 / seconds / 1e9);
                } else {
                    line += &format!("  {rows}:{flops:.1}");
                }
            }
            println!("{line}");
        }
    }
}
