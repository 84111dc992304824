//! The Q4_1 × Q8_1 dot products: every SIMD kernel this CPU runs gives bit for bit the portable
//! kernel's sums in every form (one row, four weight rows, several activation rows), and those
//! sums agree with the released scalar kernel within rounding.

use cpu_kernels::quantized_dot::{
    activation_scales, dot_q4_1_q8_1_four_with, dot_q4_1_q8_1_reference, dot_q4_1_q8_1_rows_with, dot_q4_1_q8_1_with,
    quantize_q8_1, quantize_q8_1_with, BlockQ4_1, BlockQ8_1, DotKernel, BLOCK_VALUES,
};
use half::f16;

/// xorshift64*: reproducible random data without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn weight_block(&mut self) -> BlockQ4_1 {
        let mut qs = [0u8; BLOCK_VALUES / 2];
        qs.iter_mut().for_each(|byte| *byte = self.next() as u8);
        BlockQ4_1 { d: f16::from_f32(self.unit() * 0.05), m: f16::from_f32(self.unit() * 0.4), qs }
    }

    /// Activation blocks with every byte value, -128 included, and arbitrary `s`.
    fn activation_block(&mut self) -> BlockQ8_1 {
        let mut qs = [0i8; BLOCK_VALUES];
        qs.iter_mut().for_each(|byte| *byte = self.next() as i8);
        BlockQ8_1 { d: f16::from_f32(self.unit() * 0.1), s: f16::from_f32(self.unit() * 30.0), qs }
    }
}

fn weight_rows(random: &mut Random, rows: usize, blocks: usize) -> Vec<Vec<BlockQ4_1>> {
    (0..rows).map(|_| (0..blocks).map(|_| random.weight_block()).collect()).collect()
}

fn activation_blocks(random: &mut Random, count: usize) -> Vec<BlockQ8_1> {
    (0..count).map(|_| random.activation_block()).collect()
}

#[test]
fn every_kernel_and_form_gives_the_portable_sums_bit_for_bit() {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let kernels = DotKernel::available();
    assert!(kernels.contains(&DotKernel::Portable));
    for blocks in [1, 2, 3, 18, 48, 49] {
        for rows in [1, 3, 4, 5, 9] {
            let weights = weight_rows(&mut random, 4, blocks);
            let activations = activation_blocks(&mut random, rows * blocks);
            let activation_row = |row: usize| &activations[row * blocks..(row + 1) * blocks];
            // The specification: one row against one row, portable.
            let expected: Vec<Vec<u32>> = weights
                .iter()
                .map(|weight| {
                    (0..rows)
                        .map(|row| dot_q4_1_q8_1_with(DotKernel::Portable, weight, activation_row(row)).to_bits())
                        .collect()
                })
                .collect();
            for &kernel in &kernels {
                for (index, weight) in weights.iter().enumerate() {
                    for scales in [Vec::new(), activation_scales(&activations)] {
                        let mut sums = vec![0f32; rows];
                        dot_q4_1_q8_1_rows_with(kernel, weight, &activations, &scales, &mut sums);
                        let bits: Vec<u32> = sums.iter().map(|sum| sum.to_bits()).collect();
                        let precomputed = !scales.is_empty();
                        assert_eq!(
                            bits, expected[index],
                            "{kernel:?} rows, {blocks} blocks, {rows} rows, {precomputed}"
                        );
                    }
                    let single = dot_q4_1_q8_1_with(kernel, weight, activation_row(0));
                    assert_eq!(single.to_bits(), expected[index][0], "{kernel:?} one row, {blocks} blocks");
                }
                let expected_by_row: Vec<Vec<u32>> =
                    (0..rows).map(|row| expected.iter().map(|per_weight| per_weight[row]).collect()).collect();
                for (row, wanted) in expected_by_row.iter().enumerate() {
                    let four = dot_q4_1_q8_1_four_with(
                        kernel,
                        [&weights[0], &weights[1], &weights[2], &weights[3]],
                        activation_row(row),
                    );
                    let bits: Vec<u32> = four.iter().map(|sum| sum.to_bits()).collect();
                    assert_eq!(&bits, wanted, "{kernel:?} four, {blocks} blocks");
                }
            }
        }
    }
}

/// The sums differ from the released scalar kernel's only by the order of the additions: within
/// 2⁻¹⁸ of the sum of the terms' magnitudes (f32 carries 24 bits; 49 blocks of eight lanes lose
/// a few).
#[test]
fn sums_agree_with_the_released_scalar_kernel() {
    let mut random = Random(42);
    for blocks in [1, 2, 18, 48, 96] {
        for _ in 0..50 {
            let weights = weight_rows(&mut random, 1, blocks).remove(0);
            let activations = activation_blocks(&mut random, blocks);
            let magnitude: f32 = weights
                .iter()
                .zip(&activations)
                .map(|(x, y)| {
                    let mut sumi = 0i32;
                    for j in 0..BLOCK_VALUES / 2 {
                        sumi += i32::from(x.qs[j] & 0x0F) * i32::from(y.qs[j])
                            + i32::from(x.qs[j] >> 4) * i32::from(y.qs[j + BLOCK_VALUES / 2]);
                    }
                    (sumi as f32 * x.d.to_f32() * y.d.to_f32()).abs() + (x.m.to_f32() * y.s.to_f32()).abs()
                })
                .sum();
            let reference = dot_q4_1_q8_1_reference(&weights, &activations);
            for kernel in DotKernel::available() {
                let sum = dot_q4_1_q8_1_with(kernel, &weights, &activations);
                let tolerance = magnitude * f32::powi(2.0, -18);
                assert!(
                    (sum - reference).abs() <= tolerance,
                    "{kernel:?}, {blocks} blocks: {sum} against {reference} (tolerance {tolerance})"
                );
            }
        }
    }
}

#[test]
fn activations_quantize_as_llama_cpp_does() {
    let mut random = Random(7);
    let values: Vec<f32> = (0..4 * BLOCK_VALUES).map(|_| random.unit() * 3.0).collect();
    let mut blocks = vec![BlockQ8_1::ZERO; 4];
    quantize_q8_1(&values, &mut blocks);
    for (chunk, block) in values.chunks_exact(BLOCK_VALUES).zip(&blocks) {
        let max_magnitude = chunk.iter().fold(0f32, |max, value| max.max(value.abs()));
        assert_eq!(block.d, f16::from_f32(max_magnitude / 127.0));
        // The largest value maps to ±127 and every value is within half a step of its level.
        assert_eq!(block.qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
        let step = max_magnitude / 127.0;
        for (value, q) in chunk.iter().zip(block.qs) {
            assert!((value - f32::from(q) * step).abs() <= step * 0.5 + 1e-6, "{value} as {q}");
        }
        let sum: i32 = block.qs.iter().map(|q| i32::from(*q)).sum();
        assert_eq!(block.s, f16::from_f32(max_magnitude / 127.0 * sum as f32));
    }
    // Ties go to the even level, as `_mm256_round_ps` in llama.cpp's SIMD quantizer does.
    let mut ties = vec![0f32; BLOCK_VALUES];
    ties[0] = 127.0;
    ties[1] = 2.5;
    ties[2] = -3.5;
    let mut block = [BlockQ8_1::ZERO];
    quantize_q8_1(&ties, &mut block);
    assert_eq!(&block[0].qs[..3], &[127, 2, -4]);
    // A block of zeros has zero scales and levels.
    quantize_q8_1(&[0f32; BLOCK_VALUES], &mut block);
    assert_eq!(block[0], BlockQ8_1::ZERO);
}

#[test]
fn every_quantizer_gives_the_portable_blocks() {
    let mut random = Random(11);
    let mut values = Vec::new();
    for block in 0..4096 {
        let scale = match block % 8 {
            0 => 0.0,
            1 => 1e-40, // subnormal: 127 / max overflows to infinity
            2 => 1e-30,
            3 => 3e38,
            _ => 10f32.powi((block % 13) - 6),
        };
        values.extend((0..BLOCK_VALUES).map(|_| random.unit() * scale));
    }
    // Evenly spaced half-integers, a negative zero, and values that are not finite.
    values[BLOCK_VALUES..2 * BLOCK_VALUES].copy_from_slice(&std::array::from_fn::<f32, 32, _>(|i| i as f32 - 15.5));
    values[5 * BLOCK_VALUES] = -0.0;
    values[9 * BLOCK_VALUES + 3] = f32::NAN;
    values[17 * BLOCK_VALUES + 30] = f32::INFINITY;
    values[25 * BLOCK_VALUES + 7] = f32::NEG_INFINITY;
    values[33 * BLOCK_VALUES + 1] = f32::MAX;
    let blocks = values.len() / BLOCK_VALUES;
    let mut expected = vec![BlockQ8_1::ZERO; blocks];
    quantize_q8_1_with(DotKernel::Portable, &values, &mut expected);
    for kernel in DotKernel::available() {
        let mut blocks_of_kernel = vec![BlockQ8_1::ZERO; blocks];
        quantize_q8_1_with(kernel, &values, &mut blocks_of_kernel);
        for (index, (got, want)) in blocks_of_kernel.iter().zip(&expected).enumerate() {
            assert_eq!(
                (got.d.to_bits(), got.s.to_bits(), got.qs),
                (want.d.to_bits(), want.s.to_bits(), want.qs),
                "{kernel:?}, block {index}"
            );
        }
    }
}
