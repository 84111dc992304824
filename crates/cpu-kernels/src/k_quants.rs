//! Q4_K, Q5_K and Q6_K blocks as llama.cpp writes them without an importance matrix (its
//! reference quantization): weighted least-squares scales and minimums per 32 values (Q4_K,
//! Q5_K), a search over nearby scales per 16 values (Q6_K), round-half-to-even throughout.
//!
//! candle's own `from_float` for these types follows an older ggml (other fitting functions,
//! round-half-away-from-zero), so its blocks differ from llama.cpp's; the quantizer in
//! `engine-mistralrs` writes these bytes and candle only stores them. Blocks are independent:
//! rows of blocks are quantized in parallel on the rayon pool.

use half::f16;

/// Values per super-block.
pub const QK_K: usize = 256;
/// Bytes per block of each type.
pub const Q4_K_BYTES: usize = 144;
pub const Q5_K_BYTES: usize = 176;
pub const Q6_K_BYTES: usize = 210;
/// Below this magnitude a group counts as all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Quantizes `values` (a multiple of 256 long) to Q4_K blocks.
pub fn quantize_q4_k(values: &[f32]) -> Vec<u8> {
    in_parallel(values, q4_k_blocks)
}

/// Quantizes `values` (a multiple of 256 long) to Q5_K blocks.
pub fn quantize_q5_k(values: &[f32]) -> Vec<u8> {
    in_parallel(values, q5_k_blocks)
}

/// Quantizes `values` (a multiple of 256 long) to Q6_K blocks.
pub fn quantize_q6_k(values: &[f32]) -> Vec<u8> {
    in_parallel(values, q6_k_blocks)
}

/// Runs `blocks` over runs of 64 super-blocks in parallel and joins the bytes in order.
fn in_parallel(values: &[f32], blocks: fn(&[f32]) -> Vec<u8>) -> Vec<u8> {
    use rayon::prelude::*;
    let parts: Vec<Vec<u8>> = values.par_chunks(64 * QK_K).map(blocks).collect();
    parts.concat()
}

/// Rounds to the nearest integer, ties to even (ggml's `nearest_int`).
fn nearest_int(value: f32) -> i32 {
    value.round_ties_even() as i32
}

/// Q4_K blocks of `values`, one after another.
fn q4_k_blocks(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() / QK_K * Q4_K_BYTES);
    for block in values.chunks_exact(QK_K) {
        let (d, dmin, scales, levels) = scaled_levels_with_minimums(block, 15, -1.0, 20);
        bytes.extend_from_slice(&d.to_le_bytes());
        bytes.extend_from_slice(&dmin.to_le_bytes());
        bytes.extend_from_slice(&scales);
        for chunk in levels.chunks_exact(64) {
            for index in 0..32 {
                bytes.push(chunk[index] | (chunk[index + 32] << 4));
            }
        }
    }
    bytes
}

/// Q5_K blocks of `values`, one after another.
fn q5_k_blocks(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() / QK_K * Q5_K_BYTES);
    for block in values.chunks_exact(QK_K) {
        let (d, dmin, scales, levels) = scaled_levels_with_minimums(block, 31, -0.5, 15);
        bytes.extend_from_slice(&d.to_le_bytes());
        bytes.extend_from_slice(&dmin.to_le_bytes());
        bytes.extend_from_slice(&scales);
        let mut high_bits = [0u8; 32];
        let mut low_bits = [0u8; 128];
        for (chunk_index, chunk) in levels.chunks_exact(64).enumerate() {
            let (first_mask, second_mask) = (1u8 << (2 * chunk_index), 2u8 << (2 * chunk_index));
            for index in 0..32 {
                let (mut first, mut second) = (chunk[index], chunk[index + 32]);
                if first > 15 {
                    first -= 16;
                    high_bits[index] |= first_mask;
                }
                if second > 15 {
                    second -= 16;
                    high_bits[index] |= second_mask;
                }
                low_bits[chunk_index * 32 + index] = first | (second << 4);
            }
        }
        bytes.extend_from_slice(&high_bits);
        bytes.extend_from_slice(&low_bits);
    }
    bytes
}

/// The shared part of Q4_K and Q5_K: per 32 values a scale and a minimum fitted by weighted
/// least squares, both stored as 6-bit multiples of the block's `d` and `dmin`, then each value's
/// level in `0..=max_level`. Returns `d`, `dmin`, the packed scales and the levels.
fn scaled_levels_with_minimums(
    block: &[f32],
    max_level: i32,
    first_step: f32,
    n_steps: usize,
) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut scales = [0f32; 8];
    let mut minimums = [0f32; 8];
    let mut levels = [0u8; QK_K];
    let mut max_scale = 0f32;
    let mut max_minimum = 0f32;
    for (group, values) in block.chunks_exact(32).enumerate() {
        let mut sum_squares = 0f32;
        for &value in values {
            sum_squares += value * value;
        }
        let average = (sum_squares / 32.0).sqrt();
        let mut weights = [0f32; 32];
        for (weight, &value) in weights.iter_mut().zip(values) {
            *weight = average + value.abs();
        }
        let (scale, minimum) = fit_scale_and_minimum(
            values,
            &weights,
            max_level,
            first_step,
            0.1,
            n_steps,
            &mut levels[group * 32..][..32],
        );
        scales[group] = scale;
        minimums[group] = minimum;
        if scale > max_scale {
            max_scale = scale;
        }
        if minimum > max_minimum {
            max_minimum = minimum;
        }
    }
    let inverse_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inverse_minimum = if max_minimum > 0.0 { 63.0 / max_minimum } else { 0.0 };
    let mut packed = [0u8; 12];
    for group in 0..8 {
        let scale_level = (nearest_int(inverse_scale * scales[group]) as u8).min(63);
        let minimum_level = (nearest_int(inverse_minimum * minimums[group]) as u8).min(63);
        if group < 4 {
            packed[group] = scale_level;
            packed[group + 4] = minimum_level;
        } else {
            packed[group + 4] = (scale_level & 0xF) | ((minimum_level & 0xF) << 4);
            packed[group - 4] |= (scale_level >> 4) << 6;
            packed[group] |= (minimum_level >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_minimum / 63.0);
    for (group, values) in block.chunks_exact(32).enumerate() {
        let (scale_level, minimum_level) = unpack_scale_and_minimum(group, &packed);
        let step = d.to_f32() * scale_level as f32;
        if step == 0.0 {
            continue;
        }
        let offset = dmin.to_f32() * minimum_level as f32;
        for (level, &value) in levels[group * 32..][..32].iter_mut().zip(values) {
            *level = nearest_int((value + offset) / step).clamp(0, max_level) as u8;
        }
    }
    (d, dmin, packed, levels)
}

/// The 6-bit scale and minimum of group `group` (0..8) from the 12 packed bytes.
fn unpack_scale_and_minimum(group: usize, packed: &[u8; 12]) -> (u8, u8) {
    if group < 4 {
        (packed[group] & 63, packed[group + 4] & 63)
    } else {
        (
            (packed[group + 4] & 0xF) | ((packed[group - 4] >> 6) << 4),
            (packed[group + 4] >> 4) | ((packed[group] >> 6) << 4),
        )
    }
}

/// Fits `value ≈ scale × level − minimum` over one group with levels in `0..=max_level`, by
/// trying `n_steps + 1` inverse scales from `(max_level + first_step) / range` up in steps of
/// `step`, keeping the one with the least weighted squared error. Writes the levels; returns
/// the scale and the minimum (as a positive offset).
fn fit_scale_and_minimum(
    values: &[f32],
    weights: &[f32; 32],
    max_level: i32,
    first_step: f32,
    step: f32,
    n_steps: usize,
    levels: &mut [u8],
) -> (f32, f32) {
    let n = values.len();
    let mut min = values[0];
    let mut max = values[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * values[0];
    for index in 1..n {
        let value = values[index];
        if value < min {
            min = value;
        }
        if value > max {
            max = value;
        }
        let weight = weights[index];
        sum_w += weight;
        sum_x += weight * value;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let mut inverse = max_level as f32 / (max - min);
    let mut scale = 1.0 / inverse;
    let mut best_error = 0f32;
    for index in 0..n {
        let level = nearest_int(inverse * (values[index] - min)).clamp(0, max_level);
        levels[index] = level as u8;
        let difference = scale * level as f32 + min - values[index];
        best_error += weights[index] * (difference * difference);
    }
    let mut trial = [0u8; 32];
    for step_index in 0..=n_steps {
        inverse = (first_step + step * step_index as f32 + max_level as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for index in 0..n {
            let level = nearest_int(inverse * (values[index] - min)).clamp(0, max_level);
            trial[index] = level as u8;
            let weight = weights[index];
            let level = level as f32;
            sum_l += weight * level;
            sum_l2 += weight * level * level;
            sum_xl += weight * level * values[index];
        }
        let determinant = sum_w * sum_l2 - sum_l * sum_l;
        if determinant > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / determinant;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / determinant;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for index in 0..n {
                let difference = this_scale * trial[index] as f32 + this_min - values[index];
                error += weights[index] * (difference * difference);
            }
            if error < best_error {
                levels[..n].copy_from_slice(&trial[..n]);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Q6_K blocks of `values`, one after another.
fn q6_k_blocks(values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() / QK_K * Q6_K_BYTES);
    for block in values.chunks_exact(QK_K) {
        let mut levels = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        for (group, group_values) in block.chunks_exact(16).enumerate() {
            let scale = fit_symmetric_scale(group_values, 32, &mut levels[group * 16..][..16]);
            scales[group] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            bytes.extend(std::iter::repeat_n(0u8, Q6_K_BYTES));
            continue;
        }
        let inverse = -128.0 / max_scale;
        let d = f16::from_f32(1.0 / inverse);
        let mut packed_scales = [0i8; 16];
        for (packed, &scale) in packed_scales.iter_mut().zip(&scales) {
            *packed = nearest_int(inverse * scale).min(127) as i8;
        }
        let mut stored = [0u8; QK_K];
        for (group, group_values) in block.chunks_exact(16).enumerate() {
            let step = d.to_f32() * packed_scales[group] as f32;
            if step == 0.0 {
                // ggml leaves the levels of the fit here.
                for index in 0..16 {
                    stored[group * 16 + index] = levels[group * 16 + index] as u8;
                }
                continue;
            }
            for (index, &value) in group_values.iter().enumerate() {
                stored[group * 16 + index] = (nearest_int(value / step).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut low = [0u8; 128];
        let mut high = [0u8; 64];
        for half_block in 0..2 {
            let levels = &stored[half_block * 128..][..128];
            let low = &mut low[half_block * 64..][..64];
            let high = &mut high[half_block * 32..][..32];
            for index in 0..32 {
                let q1 = levels[index] & 0xF;
                let q2 = levels[index + 32] & 0xF;
                let q3 = levels[index + 64] & 0xF;
                let q4 = levels[index + 96] & 0xF;
                low[index] = q1 | (q3 << 4);
                low[index + 32] = q2 | (q4 << 4);
                high[index] = (levels[index] >> 4)
                    | ((levels[index + 32] >> 4) << 2)
                    | ((levels[index + 64] >> 4) << 4)
                    | ((levels[index + 96] >> 4) << 6);
            }
        }
        bytes.extend_from_slice(&low);
        bytes.extend_from_slice(&high);
        bytes.extend(packed_scales.iter().map(|scale| *scale as u8));
        bytes.extend_from_slice(&d.to_le_bytes());
    }
    bytes
}

/// Fits a signed scale for one group with levels in `-max_level..max_level`, weighting each
/// value by its square, and tries the 18 nearby inverse scales `(max_level ± 0.1k) / max`.
/// Writes levels offset by `max_level`; returns the scale.
fn fit_symmetric_scale(values: &[f32], max_level: i32, levels: &mut [i8]) -> f32 {
    let mut max = 0f32;
    let mut abs_max = 0f32;
    for &value in values {
        if value.abs() > abs_max {
            abs_max = value.abs();
            max = value;
        }
    }
    if abs_max < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level_of = |inverse: f32, value: f32| nearest_int(inverse * value).clamp(-max_level, max_level - 1);
    let mut inverse = -(max_level as f32) / max;
    let (mut sum_lx, mut sum_l2) = (0f32, 0f32);
    for (level_slot, &value) in levels.iter_mut().zip(values) {
        let level = level_of(inverse, value);
        *level_slot = (level + max_level) as i8;
        let weight = value * value;
        sum_lx += weight * value * level as f32;
        sum_l2 += weight * level as f32 * level as f32;
    }
    let mut scale = if sum_l2 != 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for step in -9i32..=9 {
        if step == 0 {
            continue;
        }
        inverse = -(max_level as f32 + 0.1 * step as f32) / max;
        let (mut trial_lx, mut trial_l2) = (0f32, 0f32);
        for &value in values {
            let level = level_of(inverse, value) as f32;
            let weight = value * value;
            trial_lx += weight * value * level;
            trial_l2 += weight * level * level;
        }
        if trial_l2 > 0.0 && trial_lx * trial_lx > best * trial_l2 {
            for (level_slot, &value) in levels.iter_mut().zip(values) {
                *level_slot = (level_of(inverse, value) + max_level) as i8;
            }
            scale = trial_lx / trial_l2;
            best = scale * trial_lx;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn blocks_have_the_sizes_of_their_types() {
        let values = sample(512, 1);
        assert_eq!(quantize_q4_k(&values).len(), 2 * Q4_K_BYTES);
        assert_eq!(quantize_q5_k(&values).len(), 2 * Q5_K_BYTES);
        assert_eq!(quantize_q6_k(&values).len(), 2 * Q6_K_BYTES);
        assert!(quantize_q6_k(&[0.0; 256]).iter().all(|byte| *byte == 0));
    }

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999].map(nearest_int), [0, 2, 2, 0, -2, 2]);
    }
}
