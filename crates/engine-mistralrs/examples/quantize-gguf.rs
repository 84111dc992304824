//! `quantize-gguf SOURCE DESTINATION TYPE`: quantizes a GGUF file with modeld's quantizer
//! (as `create --quantize` does) and prints the time it took, for comparing with llama.cpp's
//! `llama-quantize` on the same input (`scripts/quantize-check.py`).

use std::io::BufWriter;
use std::time::Instant;

use engine_mistralrs::quantize::{quantize_gguf, Quantization};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, source, destination, target] = &args[..] else {
        eprintln!("usage: quantize-gguf SOURCE DESTINATION TYPE (q8_0, q4_0, q4_K_S, q4_K_M)");
        std::process::exit(2);
    };
    let Some(quantization) = Quantization::parse(target) else {
        eprintln!("unknown type {target}");
        std::process::exit(2);
    };
    let started = Instant::now();
    let file = std::fs::File::create(destination).expect("creating the destination");
    let mut writer = BufWriter::new(file);
    let summary = quantize_gguf(std::path::Path::new(source), &mut writer, quantization, &mut |_, _| {})
        .unwrap_or_else(|error| {
            eprintln!("{error}");
            std::process::exit(1);
        });
    drop(writer);
    eprintln!(
        "quantized {} tensors from {} to {} in {:.2} s",
        summary.n_quantized,
        summary.source_type,
        quantization.name(),
        started.elapsed().as_secs_f64()
    );
}
