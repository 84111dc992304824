//! The k-quant blocks are llama.cpp's, byte for byte: real weights quantized by `llama-quantize`
//! (`fixtures/k_quants_llama_cpp.txt`) come out the same from `cpu_kernels::k_quants`.

use cpu_kernels::k_quants::{quantize_q4_k, quantize_q5_k, quantize_q6_k};

fn fixture(name: &str) -> Vec<u8> {
    let text = include_str!("fixtures/k_quants_llama_cpp.txt");
    let hex = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the fixture"));
    (0..hex.len()).step_by(2).map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap()).collect()
}

fn input(kind: &str) -> Vec<f32> {
    fixture(&format!("{kind}_input"))
        .chunks_exact(2)
        .map(|pair| half::f16::from_le_bytes([pair[0], pair[1]]).to_f32())
        .collect()
}

type Quantize = fn(&[f32]) -> Vec<u8>;

#[test]
fn blocks_match_llama_cpp_byte_for_byte() {
    let cases: [(&str, Quantize, usize); 3] =
        [("q4_k", quantize_q4_k, 144), ("q5_k", quantize_q5_k, 176), ("q6_k", quantize_q6_k, 210)];
    for (kind, quantize, block_bytes) in cases {
        let values = input(kind);
        let expected = fixture(&format!("{kind}_blocks"));
        assert_eq!(values.len(), 16 * 256, "{kind}");
        let actual = quantize(&values);
        let differing: Vec<usize> = actual
            .chunks(block_bytes)
            .zip(expected.chunks(block_bytes))
            .enumerate()
            .filter(|(_, (actual, expected))| actual != expected)
            .map(|(index, _)| index)
            .collect();
        assert!(differing.is_empty() && actual.len() == expected.len(), "{kind}: blocks {differing:?} differ");
    }
}
