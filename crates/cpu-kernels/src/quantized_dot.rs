//! Dot products of GGUF-quantized weight rows with quantized activation rows, the inner loop of
//! candle's matrix product over Q4_1 weights: one weight row against one activation row, four
//! weight rows against one activation row (decoding one sequence), and one weight row against
//! several activation rows (prompts, batched decoding).
//!
//! The instruction set is chosen at run time ([`DotKernel`]). Every kernel computes the same
//! arithmetic in the same order: per block, the integer dot product in eight lanes of four
//! neighbouring bytes each, converted to `f32` and added to eight accumulators with one fused
//! multiply-add by `d_weight * d_activation`; the blocks' `m_weight * s_activation` summed apart;
//! at the end the eight lanes added pairwise as llama.cpp's `hsum_float_8` does, then the sum of
//! minimums. So every form and every kernel gives bit for bit the same sum for the same two rows:
//! a sequence decoded alone or in a batch gets the same logits, and the portable kernel is the
//! specification the SIMD ones are tested against.
#![allow(unsafe_code)]

use half::f16;

/// How far ahead of the rows being read the four-row kernels (decoding one sequence) prefetch
/// the rows that come next, here and in candle's Q8_0 kernel: rows of 576 or 1536 values are 360
/// or 960 bytes of Q4_1, too short for the hardware prefetcher to run ahead of one core's reads.
/// On 2 cores of a Xeon VM (`examples/quantized-dot-bench.rs`, one thread, weights streamed from
/// memory) this took the four-row form from 5.1-5.8 to 8.4-8.8 GB/s.
pub const WEIGHT_PREFETCH_BYTES: usize = 4096;

/// Where a kernel reading `rows_bytes` of weights from `rows` prefetches from: the rows the next
/// call reads, [`WEIGHT_PREFETCH_BYTES`] ahead or just past these rows when they are longer. The
/// pointer may lie past the matrix's end: it is only prefetched, and prefetches never fault.
#[inline(always)]
pub fn prefetch_ahead_of<T>(rows: *const T, rows_bytes: usize) -> *const i8 {
    (rows as *const i8).wrapping_add(rows_bytes.max(WEIGHT_PREFETCH_BYTES))
}

/// Values per Q4_1 and Q8_1 block.
pub const BLOCK_VALUES: usize = 32;

/// A block of 32 weights as `d * q + m`, `q` in 0..16, two per byte: byte `j` holds value `j` in
/// its low nibble and value `j + 16` in its high nibble (GGUF's Q4_1 layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; BLOCK_VALUES / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// A block of 32 activations as `d * q`, with `s = d * sum(q)` (GGUF's Q8_1 layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; BLOCK_VALUES],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

impl BlockQ8_1 {
    pub const ZERO: BlockQ8_1 = BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; BLOCK_VALUES] };
}

/// Which instructions the dot products run on. All give identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotKernel {
    /// AVX-512 VNNI on 256-bit registers (`vpdpbusd`, one instruction per block product).
    Avx512Vnni,
    /// AVX-VNNI, the same instruction in VEX encoding (Alder Lake and later).
    AvxVnni,
    /// AVX2 (`vpmaddubsw` and `vpmaddwd`).
    Avx2,
    /// Plain Rust, lane by lane.
    Portable,
}

impl DotKernel {
    const ALL: [DotKernel; 4] = [DotKernel::Avx512Vnni, DotKernel::AvxVnni, DotKernel::Avx2, DotKernel::Portable];

    /// Whether this CPU has the instructions the kernel uses (feature detection is cached).
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let avx2 = || {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
        };
        match self {
            #[cfg(target_arch = "x86_64")]
            DotKernel::Avx512Vnni => {
                avx2()
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            DotKernel::AvxVnni => avx2() && std::arch::is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            DotKernel::Avx2 => avx2(),
            DotKernel::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU runs.
    pub fn detect() -> DotKernel {
        DotKernel::ALL.into_iter().find(|kernel| kernel.is_supported()).unwrap_or(DotKernel::Portable)
    }

    /// Every kernel this CPU runs, fastest first (for tests and benchmarks).
    pub fn available() -> Vec<DotKernel> {
        DotKernel::ALL.into_iter().filter(|kernel| kernel.is_supported()).collect()
    }
}

/// Quantizes `values` (32 per block) to Q8_1 as llama.cpp does: `d = max|x| / 127`,
/// `q = round_ties_even(x * 127 / max|x|)`, `s = d * sum(q)` rounded once to F16.
pub fn quantize_q8_1(values: &[f32], blocks: &mut [BlockQ8_1]) {
    quantize_q8_1_with(DotKernel::detect(), values, blocks)
}

/// [`quantize_q8_1`] on a chosen kernel: every kernel gives the portable quantizer's blocks bit
/// for bit (the SIMD ones hand a block holding a NaN or an infinity, or a scale too small to
/// invert, to the portable one, whose saturating conversions they do not share).
pub fn quantize_q8_1_with(kernel: DotKernel, values: &[f32], blocks: &mut [BlockQ8_1]) {
    assert_eq!(
        values.len(),
        blocks.len() * BLOCK_VALUES,
        "quantize_q8_1: {} values for {} blocks",
        values.len(),
        blocks.len()
    );
    #[cfg(target_arch = "x86_64")]
    let avx2 = matches!(kernel, DotKernel::Avx512Vnni | DotKernel::AvxVnni | DotKernel::Avx2) && kernel.is_supported();
    for (chunk, block) in values.chunks_exact(BLOCK_VALUES).zip(blocks.iter_mut()) {
        let chunk: &[f32; BLOCK_VALUES] = chunk.try_into().expect("chunks_exact gives whole blocks");
        // SAFETY: AVX2 is present (checked by `is_supported` above).
        #[cfg(target_arch = "x86_64")]
        if avx2 && unsafe { x86::quantize_block_avx2(chunk, block) } {
            continue;
        }
        portable::quantize_block(chunk, block);
    }
}

/// The dot product of one Q4_1 weight row with one Q8_1 activation row of as many blocks.
pub fn dot_q4_1_q8_1(weights: &[BlockQ4_1], activations: &[BlockQ8_1]) -> f32 {
    dot_q4_1_q8_1_with(DotKernel::detect(), weights, activations)
}

/// [`dot_q4_1_q8_1`] on a chosen kernel.
pub fn dot_q4_1_q8_1_with(kernel: DotKernel, weights: &[BlockQ4_1], activations: &[BlockQ8_1]) -> f32 {
    let mut sums = [0f32];
    dot_q4_1_q8_1_rows_with(kernel, weights, activations, &[], &mut sums);
    sums[0]
}

/// Four weight rows against one activation row: each activation block is loaded once.
pub fn dot_q4_1_q8_1_four(weights: [&[BlockQ4_1]; 4], activations: &[BlockQ8_1]) -> [f32; 4] {
    dot_q4_1_q8_1_four_with(DotKernel::detect(), weights, activations)
}

/// [`dot_q4_1_q8_1_four`] on a chosen kernel.
pub fn dot_q4_1_q8_1_four_with(kernel: DotKernel, weights: [&[BlockQ4_1]; 4], activations: &[BlockQ8_1]) -> [f32; 4] {
    let blocks = activations.len();
    for row in weights {
        assert_eq!(
            row.len(),
            blocks,
            "dot_q4_1_q8_1_four: weight row of {} blocks, activations of {blocks}",
            row.len()
        );
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx512Vnni if kernel.is_supported() => unsafe { x86::four_avx512_vnni(weights, activations) },
        #[cfg(target_arch = "x86_64")]
        DotKernel::AvxVnni if kernel.is_supported() => unsafe { x86::four_avx_vnni(weights, activations) },
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 if kernel.is_supported() => unsafe { x86::four_avx2(weights, activations) },
        _ => weights.map(|row| portable::dot(row, activations)),
    }
}

/// The scales of activation blocks as `f32`, `d` then `s` for each block: converted once per
/// matrix product for [`dot_q4_1_q8_1_rows`] instead of once per product.
pub fn activation_scales(activations: &[BlockQ8_1]) -> Vec<f32> {
    activations.iter().flat_map(|block| [block.d.to_f32(), block.s.to_f32()]).collect()
}

/// One weight row against `sums.len()` consecutive activation rows of `weights.len()` blocks
/// each: each weight block is loaded and unpacked once for four activation rows.
/// `activation_scales` is [`activation_scales`] of `activations`, or empty to convert them here.
pub fn dot_q4_1_q8_1_rows(
    weights: &[BlockQ4_1],
    activations: &[BlockQ8_1],
    activation_scales: &[f32],
    sums: &mut [f32],
) {
    dot_q4_1_q8_1_rows_with(DotKernel::detect(), weights, activations, activation_scales, sums)
}

/// [`dot_q4_1_q8_1_rows`] on a chosen kernel.
pub fn dot_q4_1_q8_1_rows_with(
    kernel: DotKernel,
    weights: &[BlockQ4_1],
    activations: &[BlockQ8_1],
    activation_scales: &[f32],
    sums: &mut [f32],
) {
    let blocks = weights.len();
    assert_eq!(
        activations.len(),
        blocks * sums.len(),
        "dot_q4_1_q8_1_rows: {} activation blocks for {} rows of {blocks}",
        activations.len(),
        sums.len()
    );
    assert!(
        activation_scales.is_empty() || activation_scales.len() == 2 * activations.len(),
        "dot_q4_1_q8_1_rows: {} scales for {} activation blocks",
        activation_scales.len(),
        activations.len()
    );
    match kernel {
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx512Vnni if kernel.is_supported() => unsafe {
            x86::rows_avx512_vnni(weights, activations, activation_scales, sums)
        },
        #[cfg(target_arch = "x86_64")]
        DotKernel::AvxVnni if kernel.is_supported() => unsafe {
            x86::rows_avx_vnni(weights, activations, activation_scales, sums)
        },
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 if kernel.is_supported() => unsafe {
            x86::rows_avx2(weights, activations, activation_scales, sums)
        },
        _ => {
            for (row, sum) in sums.iter_mut().enumerate() {
                *sum = portable::dot(weights, &activations[row * blocks..(row + 1) * blocks]);
            }
        }
    }
}

/// The released scalar kernel (candle 0.10.2's and ggml's generic `vec_dot_q4_1_q8_1`): block by
/// block, `sumi * d_x * d_y + m_x * s_y`. Kept as the reference the kernels are measured against.
pub fn dot_q4_1_q8_1_reference(weights: &[BlockQ4_1], activations: &[BlockQ8_1]) -> f32 {
    let mut total = 0f32;
    for (x, y) in weights.iter().zip(activations) {
        let mut sumi = 0i32;
        for j in 0..BLOCK_VALUES / 2 {
            let low = i32::from(x.qs[j] & 0x0F);
            let high = i32::from(x.qs[j] >> 4);
            sumi += low * i32::from(y.qs[j]) + high * i32::from(y.qs[j + BLOCK_VALUES / 2]);
        }
        total += sumi as f32 * x.d.to_f32() * y.d.to_f32() + x.m.to_f32() * y.s.to_f32();
    }
    total
}

/// Adds the eight lanes as llama.cpp's `hsum_float_8`: lanes `i` and `i + 4`, then `0 + 2` and
/// `1 + 3`, then those two.
fn horizontal_sum(lanes: [f32; 8]) -> f32 {
    let quarter = [lanes[0] + lanes[4], lanes[1] + lanes[5], lanes[2] + lanes[6], lanes[3] + lanes[7]];
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

mod portable {
    use super::*;

    /// The specification of every kernel, lane by lane.
    pub(super) fn quantize_block(values: &[f32; BLOCK_VALUES], block: &mut BlockQ8_1) {
        let max_magnitude = values.iter().fold(0f32, |max, value| max.max(value.abs()));
        let d = max_magnitude / 127.0;
        let inverse = if max_magnitude != 0.0 { 127.0 / max_magnitude } else { 0.0 };
        let mut sum = 0i32;
        for (value, q) in values.iter().zip(block.qs.iter_mut()) {
            *q = (value * inverse).round_ties_even() as i8;
            sum += i32::from(*q);
        }
        block.d = f16::from_f32(d);
        block.s = f16::from_f32(d * sum as f32);
    }

    pub(super) fn dot(weights: &[BlockQ4_1], activations: &[BlockQ8_1]) -> f32 {
        let mut lanes = [0f32; 8];
        let mut minimums = 0f32;
        for (x, y) in weights.iter().zip(activations) {
            // The weight's 32 values in the activation's order: low nibbles, then high nibbles.
            let mut values = [0u8; BLOCK_VALUES];
            for j in 0..BLOCK_VALUES / 2 {
                values[j] = x.qs[j] & 0x0F;
                values[j + BLOCK_VALUES / 2] = x.qs[j] >> 4;
            }
            let scale = x.d.to_f32() * y.d.to_f32();
            for (lane, accumulator) in lanes.iter_mut().enumerate() {
                let products: i32 =
                    (4 * lane..4 * lane + 4).map(|index| i32::from(values[index]) * i32::from(y.qs[index])).sum();
                *accumulator = scale.mul_add(products as f32, *accumulator);
            }
            minimums += x.m.to_f32() * y.s.to_f32();
        }
        horizontal_sum(lanes) + minimums
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BlockQ4_1, BlockQ8_1};

    use super::prefetch_ahead_of;

    /// A weight block's 32 values as unsigned bytes in the activation's order.
    #[inline(always)]
    unsafe fn weight_values(block: *const BlockQ4_1) -> __m256i {
        let packed = _mm_loadu_si128((*block).qs.as_ptr().cast());
        let mask = _mm_set1_epi8(0x0F);
        let low = _mm_and_si128(packed, mask);
        let high = _mm_and_si128(_mm_srli_epi16::<4>(packed), mask);
        _mm256_set_m128i(high, low)
    }

    /// The two F16 scales at the start of a block (`d` and `m`, or `d` and `s`) as `f32`.
    #[inline(always)]
    unsafe fn scales(block: *const u8) -> (f32, f32) {
        let both = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(block.cast::<i32>())));
        (_mm_cvtss_f32(both), _mm_cvtss_f32(_mm_movehdup_ps(both)))
    }

    #[inline(always)]
    unsafe fn horizontal_sum(lanes: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_extractf128_ps::<1>(lanes), _mm256_castps256_ps128(lanes));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn products_avx2(weights: __m256i, activations: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(weights, activations), _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn products_avx_vnni(weights: __m256i, activations: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), weights, activations)
    }

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn products_avx512_vnni(weights: __m256i, activations: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), weights, activations)
    }

    /// One block of [`super::quantize_q8_1`] on AVX2, the portable quantizer's arithmetic lane by
    /// lane: the same maximum, the same `inverse` (computed in scalar), the same product and
    /// rounding to the even level. Returns false, writing nothing, for a block that is not all
    /// finite or whose `inverse` is not finite: there the portable quantizer's saturating `as i8`
    /// differs from `vcvtps2dq`, so the caller quantizes that block the portable way.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_block_avx2(values: &[f32; 32], block: &mut BlockQ8_1) -> bool {
        let pointer = values.as_ptr();
        let vectors = [0, 8, 16, 24].map(|offset| _mm256_loadu_ps(pointer.add(offset)));
        let sign_bit = _mm256_set1_ps(-0.0);
        let mut maximum = _mm256_setzero_ps();
        let mut not_finite = _mm256_setzero_ps();
        for vector in vectors {
            let magnitude = _mm256_andnot_ps(sign_bit, vector);
            // A NaN, or an infinity (whose product with `inverse` below is a NaN or ±inf).
            not_finite = _mm256_or_ps(not_finite, _mm256_cmp_ps::<_CMP_NLT_UQ>(magnitude, _mm256_set1_ps(f32::MAX)));
            maximum = _mm256_max_ps(magnitude, maximum);
        }
        if _mm256_movemask_ps(not_finite) != 0 {
            return false;
        }
        let half = _mm_max_ps(_mm256_extractf128_ps::<1>(maximum), _mm256_castps256_ps128(maximum));
        let quarter = _mm_max_ps(half, _mm_movehl_ps(half, half));
        let max_magnitude = _mm_cvtss_f32(_mm_max_ss(quarter, _mm_movehdup_ps(quarter)));
        let d = max_magnitude / 127.0;
        let inverse = if max_magnitude != 0.0 { 127.0 / max_magnitude } else { 0.0 };
        if !inverse.is_finite() {
            return false;
        }
        let inverse_lanes = _mm256_set1_ps(inverse);
        let levels = vectors.map(|vector| {
            _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
                vector,
                inverse_lanes,
            )))
        });
        let total = _mm256_add_epi32(_mm256_add_epi32(levels[0], levels[1]), _mm256_add_epi32(levels[2], levels[3]));
        let total = _mm_add_epi32(_mm256_extracti128_si256::<1>(total), _mm256_castsi256_si128(total));
        let total = _mm_add_epi32(total, _mm_shuffle_epi32::<0b01_00_11_10>(total));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(total, _mm_shuffle_epi32::<0b10_11_00_01>(total)));
        // Packing works within 128-bit halves; the permutation puts the 32 bytes back in order.
        let words =
            _mm256_packs_epi16(_mm256_packs_epi32(levels[0], levels[1]), _mm256_packs_epi32(levels[2], levels[3]));
        let bytes = _mm256_permutevar8x32_epi32(words, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(block.qs.as_mut_ptr().cast(), bytes);
        block.d = half::f16::from_f32(d);
        block.s = half::f16::from_f32(d * sum as f32);
        true
    }

    /// The kernels for one way of forming a block's eight lane sums of four byte products.
    macro_rules! kernels {
        ($four:ident, $rows:ident, $tile:ident, $features:literal, $products:ident) => {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $four(weights: [&[BlockQ4_1]; 4], activations: &[BlockQ8_1]) -> [f32; 4] {
                let mut lanes = [_mm256_setzero_ps(); 4];
                let mut minimums = [0f32; 4];
                // Callers pass four neighbouring rows of a matrix, and the next call the four
                // after them: each block step prefetches the 80 bytes that far ahead. Prefetches
                // never fault, so past the matrix's end they only cost an instruction.
                let ahead = prefetch_ahead_of(weights[0].as_ptr(), 4 * activations.len() * size_of::<BlockQ4_1>());
                for (block, activation) in activations.iter().enumerate() {
                    let next = ahead.wrapping_add(block * 4 * size_of::<BlockQ4_1>());
                    _mm_prefetch::<_MM_HINT_T0>(next);
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64));
                    let activation_values = _mm256_loadu_si256(activation.qs.as_ptr().cast());
                    let (d_activation, s_activation) = scales((activation as *const BlockQ8_1).cast());
                    for row in 0..4 {
                        let weight = weights[row].as_ptr().add(block);
                        let (d_weight, m_weight) = scales(weight.cast());
                        let sums = _mm256_cvtepi32_ps($products(weight_values(weight), activation_values));
                        lanes[row] = _mm256_fmadd_ps(_mm256_set1_ps(d_weight * d_activation), sums, lanes[row]);
                        minimums[row] += m_weight * s_activation;
                    }
                }
                [0, 1, 2, 3].map(|row| horizontal_sum(lanes[row]) + minimums[row])
            }

            /// `ROWS` activation rows, `blocks` apart from `activations`, against one weight row;
            /// with `PRECOMPUTED`, `scales_f32` holds their scales as `f32` (`d`, `s` per block).
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $tile<const ROWS: usize, const PRECOMPUTED: bool>(
                weights: &[BlockQ4_1],
                activations: *const BlockQ8_1,
                scales_f32: *const f32,
                sums: &mut [f32],
            ) {
                let blocks = weights.len();
                let mut lanes = [_mm256_setzero_ps(); ROWS];
                let mut minimums = [0f32; ROWS];
                // The caller's next weight row follows this one: prefetch ahead as the
                // four-row form does (batched decoding streams the weights here).
                let ahead = prefetch_ahead_of(weights.as_ptr(), blocks * size_of::<BlockQ4_1>());
                for (block, weight) in weights.iter().enumerate() {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(block * size_of::<BlockQ4_1>()));
                    let weight_values = weight_values(weight);
                    let (d_weight, m_weight) = scales((weight as *const BlockQ4_1).cast());
                    let d_weights = _mm256_set1_ps(d_weight);
                    for row in 0..ROWS {
                        let activation = activations.add(row * blocks + block);
                        let activation_values = _mm256_loadu_si256((*activation).qs.as_ptr().cast());
                        let sums = _mm256_cvtepi32_ps($products(weight_values, activation_values));
                        // The same products `d_weight * d_activation` and `m_weight * s_activation`
                        // as the other forms, here lane by lane.
                        let (d, s_activation) = if PRECOMPUTED {
                            let pair = scales_f32.add(2 * (row * blocks + block));
                            (_mm256_mul_ps(d_weights, _mm256_broadcast_ss(&*pair)), *pair.add(1))
                        } else {
                            let (d_activation, s_activation) = scales(activation.cast());
                            (_mm256_set1_ps(d_weight * d_activation), s_activation)
                        };
                        lanes[row] = _mm256_fmadd_ps(d, sums, lanes[row]);
                        minimums[row] += m_weight * s_activation;
                    }
                }
                for row in 0..ROWS {
                    sums[row] = horizontal_sum(lanes[row]) + minimums[row];
                }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn $rows(
                weights: &[BlockQ4_1],
                activations: &[BlockQ8_1],
                activation_scales: &[f32],
                sums: &mut [f32],
            ) {
                let blocks = weights.len();
                let precomputed = !activation_scales.is_empty();
                let mut row = 0;
                while row < sums.len() {
                    let take = if sums.len() - row >= 4 { 4 } else { 1 };
                    let first = activations.as_ptr().add(row * blocks);
                    let first_scales = activation_scales.as_ptr().wrapping_add(2 * row * blocks);
                    let sums = &mut sums[row..row + take];
                    match (take, precomputed) {
                        (4, true) => $tile::<4, true>(weights, first, first_scales, sums),
                        (4, false) => $tile::<4, false>(weights, first, first_scales, sums),
                        (_, true) => $tile::<1, true>(weights, first, first_scales, sums),
                        (_, false) => $tile::<1, false>(weights, first, first_scales, sums),
                    }
                    row += take;
                }
            }
        };
    }

    kernels!(four_avx2, rows_avx2, tile_avx2, "avx2,fma,f16c", products_avx2);
    kernels!(four_avx_vnni, rows_avx_vnni, tile_avx_vnni, "avx2,fma,f16c,avxvnni", products_avx_vnni);
    kernels!(
        four_avx512_vnni,
        rows_avx512_vnni,
        tile_avx512_vnni,
        "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
        products_avx512_vnni
    );
}
