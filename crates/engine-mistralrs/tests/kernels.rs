//! Proves on random data that modeld's CPU kernel changes to candle-core 0.10.2
//! (`vendor/candle-core.patch`, lines marked `modeld:`) give results bit-identical to the released
//! kernels, as `vendor/README.md` claims. The released reference is what the released
//! `k_quants::matmul` did: quantize each activation row on its own with
//! `<T::VecDotType as GgmlType>::from_float`, then call `GgmlType::vec_dot` for every
//! (row, column) pair. The patch leaves `from_float` and `vec_dot` untouched except for Q4_1 and
//! Q8_1, so for the other types calling them here is calling the released code. Q4_1's `vec_dot`
//! and Q8_1's `from_float` are `cpu_kernels::quantized_dot`'s (SIMD, chosen at run time): here
//! the cases show that the tiled product and the four-row and many-row forms give the same bits
//! as that `vec_dot`; `crates/cpu-kernels/tests/quantized_dot.rs` compares it with the released
//! scalar kernel (equal up to the order of additions). Every comparison is on `f32::to_bits`; a failure names the first
//! differing index and both values.
//!
//! Which vendored change each case covers:
//! - `matmul_*` (one per weight type): the tiled `k_quants::matmul` (tiles of 16 activation rows
//!   by 32 weight rows, run in parallel), the activation rows quantized in parallel (and a single
//!   row quantized directly), tiles of one to three rows going through `GgmlType::vec_dot_four`
//!   and tiles of four or more through `GgmlType::vec_dot_rows` with `vec_dot_row_scales`, and
//!   the new `dst` length check; with m in {1, 2, 3, 4, 5, 15, 16, 17, 19, 33, 64} (whole, partial
//!   and one-row tiles, groups of four and their remainders), n in {3, 32, 37, 48, 96} (whole and
//!   partial column tiles, column counts that are not a multiple of four) and several k per type.
//!   For Q8_0 on an AVX2 build this runs the AVX `vec_dot_q8_0_q8_0_rows` and
//!   `vec_dot_q8_0_q8_0_four`; for the other types the trait's default `vec_dot_rows` and
//!   `vec_dot_four`. Output elements past `m * n` must stay untouched.
//! - `rows_*`: `GgmlType::vec_dot_rows` (for Q8_0 on AVX2: `avx::vec_dot_q8_0_q8_0_rows`, fed by
//!   `GgmlType::vec_dot_row_scales`) for 0 to 17 activation rows against `vec_dot` row by row.
//! - `four_*`: `GgmlType::vec_dot_four` (for Q8_0 on AVX2: `avx::vec_dot_q8_0_q8_0_four`) against
//!   four `vec_dot` calls.
//! - `qmatmul_forward_*`: the same tiled `matmul` reached the way models reach it, through
//!   `QTensor::quantize` and `QMatMul::forward` on the CPU, with 2-D and 3-D activations.
//! - `dequantized_rows_*`: `QTensor::dequantize_rows` (the CPU token-embedding lookup that keeps
//!   the table quantized) against `dequantize` then `index_select`, for repeated, reordered,
//!   first and last rows, and out-of-range rows refused with an error.
//! - `sole_owner_of_storage_*`: `Tensor::is_sole_owner_of_storage`, which lets a sequence write
//!   into its KV cache in place: false while another handle, a view or a reshape shares the
//!   storage, true again once they are dropped.
//! - `tensors_read_from_a_gguf_*`: the GGUF loader's direct read of a tensor into its storage
//!   (`ggml_file::qtensor_from_reader`) against the released buffer-then-copy path, for seven
//!   types, and a file cut short refused with an error.
//! - `avx2_kernels_are_compiled_in`: on x86-64 Q8_0 takes the patched AVX path (the build has
//!   AVX2, from `.cargo/config.toml`), so the Q8_0 cases above test the AVX kernels and not only
//!   the trait's defaults.
//!
//! The reference is `vec_dot`, not the scalar `vec_dot_unopt`: no claim covers the latter, and
//! the released SIMD kernels (Q8_0, Q4_0, Q2K to Q8K on AVX2) already differ from it in the last
//! bits because they sum in another order. Where the released `vec_dot` is `vec_dot_unopt` (Q5_0,
//! Q5_1, Q8_1 and F32 here; every type on a build without SIMD kernels) the cases compare
//! with the scalar kernel. F16 and BF16 weights are not covered: `QMatMul` dequantizes them
//! instead of calling `matmul`, and naming `half`'s types here would need another dependency.

use candle_core::quantized::k_quants::{
    self, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K,
    BlockQ8_0, BlockQ8_1, GgmlType,
};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

/// Activation rows: one to three (decoding), the row kernel's groups of four and their
/// remainders, whole, partial and one-row tiles of 16.
const ROWS: [usize; 11] = [1, 2, 3, 4, 5, 15, 16, 17, 19, 33, 64];
/// Weight rows (output columns): a partial column tile, whole tiles of 32, and counts that are
/// not a multiple of four (the tail after `vec_dot_four`).
const COLS: [usize; 5] = [3, 32, 37, 48, 96];
/// Row lengths for 32-element blocks (even block counts, as Q4_1 and Q5_1 require).
const K_32: [usize; 4] = [64, 256, 576, 1536];
/// Row lengths for 256-element (k-quant) blocks.
const K_256: [usize; 3] = [256, 768, 1536];
/// A NaN that no kernel produces, to see which output elements were written.
const UNWRITTEN: f32 = f32::from_bits(0x7fc0_dead);

/// xorshift64*: small, fast and deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    }

    /// `len` values in runs of 32 with different magnitudes (some runs all zero, a few outliers),
    /// so that block scales vary within and across rows as in real weights and activations.
    fn values(&mut self, len: usize) -> Vec<f32> {
        const SCALES: [f32; 6] = [0.0, 1e-3, 0.05, 1.0, 7.5, 300.0];
        let mut values = Vec::with_capacity(len);
        while values.len() < len {
            let scale = SCALES[(self.next_u64() % SCALES.len() as u64) as usize];
            for _ in 0..32.min(len - values.len()) {
                let outlier = if self.next_u64().is_multiple_of(64) { 12.0 } else { 1.0 };
                values.push(self.unit() * scale * outlier);
            }
        }
        values
    }
}

/// Each `row_len`-long row of `values` quantized on its own, as the released `matmul` did.
fn quantize_rows<T: GgmlType>(values: &[f32], row_len: usize) -> Vec<T> {
    let blocks = row_len / T::BLCK_SIZE;
    let mut quantized = vec![T::zeros(); values.len() / row_len * blocks];
    for (row, blocks) in values.chunks_exact(row_len).zip(quantized.chunks_exact_mut(blocks)) {
        T::from_float(row, blocks);
    }
    quantized
}

/// The released `k_quants::matmul`: activation rows quantized one by one, then one `vec_dot` per
/// (row, column) pair.
fn released_matmul<T: GgmlType>((m, k, n): (usize, usize, usize), lhs: &[f32], rhs_t: &[T]) -> Vec<f32> {
    let lhs_q = quantize_rows::<T::VecDotType>(lhs, k);
    let blocks = k / T::BLCK_SIZE;
    let mut dst = vec![0f32; m * n];
    for row in 0..m {
        let lhs_row = &lhs_q[row * blocks..(row + 1) * blocks];
        for col in 0..n {
            dst[row * n + col] = T::vec_dot(k, &rhs_t[col * blocks..(col + 1) * blocks], lhs_row);
        }
    }
    dst
}

/// Panics unless `patched` and `released` hold the same bits, naming the first difference as
/// (row, column) of a `cols`-wide matrix.
fn assert_bits_eq(what: &str, patched: &[f32], released: &[f32], cols: usize) {
    assert_eq!(patched.len(), released.len(), "{what}: lengths differ");
    let differs = |(p, r): (&f32, &f32)| p.to_bits() != r.to_bits();
    if let Some(index) = patched.iter().zip(released).position(differs) {
        let count = patched.iter().zip(released).filter(|&pair| differs(pair)).count();
        let (p, r) = (patched[index], released[index]);
        panic!(
            "{what}: {count} of {} values differ; first at index {index} (row {}, column {}): \
             patched {p:e} ({:#010x}), released {r:e} ({:#010x}), difference {:e}",
            patched.len(),
            index / cols,
            index % cols,
            p.to_bits(),
            r.to_bits(),
            p - r,
        );
    }
}

fn check_matmul<T: GgmlType>(ks: &[usize]) {
    let name = format!("{:?}", T::DTYPE);
    let mut rng = Rng::new(T::DTYPE as u64 + 1);
    for &k in ks {
        for &n in &COLS {
            let rhs_t = quantize_rows::<T>(&rng.values(n * k), k);
            for &m in &ROWS {
                let lhs = rng.values(m * k);
                let released = released_matmul::<T>((m, k, n), &lhs, &rhs_t);
                let mut dst = vec![UNWRITTEN; m * n + 5];
                k_quants::matmul::<T>((m, k, n), &lhs, &rhs_t, &mut dst).unwrap();
                let what = format!("{name} matmul (m, k, n) = ({m}, {k}, {n})");
                assert_bits_eq(&what, &dst[..m * n], &released, n);
                assert!(dst[m * n..].iter().all(|x| x.to_bits() == UNWRITTEN.to_bits()), "{what}: wrote past m * n");
            }
        }
    }
    // The patched matmul checks `dst`'s length instead of indexing out of bounds.
    let (m, k, n) = (2, ks[0], 3);
    let rhs_t = quantize_rows::<T>(&rng.values(n * k), k);
    assert!(k_quants::matmul::<T>((m, k, n), &rng.values(m * k), &rhs_t, &mut [0f32; 5]).is_err());
}

fn check_rows<T: GgmlType>(ks: &[usize]) {
    let name = format!("{:?}", T::DTYPE);
    let mut rng = Rng::new(T::DTYPE as u64 + 101);
    for &k in ks {
        let weights = quantize_rows::<T>(&rng.values(k), k);
        for rows in 0..=17 {
            let activations = quantize_rows::<T::VecDotType>(&rng.values(rows * k), k);
            let scales = T::vec_dot_row_scales(&activations);
            // One scale per block (Q8_0's `d`) or two (Q8_1's `d` and `s`, for Q4_1), or none.
            let allowed_scale_counts = [0, activations.len(), 2 * activations.len()];
            assert!(allowed_scale_counts.contains(&scales.len()), "{name}: {} scales", scales.len());
            let mut sums = vec![UNWRITTEN; rows];
            T::vec_dot_rows(k, &weights, &activations, &scales, &mut sums);
            let blocks = k / T::BLCK_SIZE;
            let released: Vec<f32> =
                activations.chunks_exact(blocks.max(1)).map(|row| T::vec_dot(k, &weights, row)).collect();
            assert_bits_eq(&format!("{name} vec_dot_rows (rows, k) = ({rows}, {k})"), &sums, &released, 1);
        }
    }
}

fn check_four<T: GgmlType>(ks: &[usize]) {
    let name = format!("{:?}", T::DTYPE);
    let mut rng = Rng::new(T::DTYPE as u64 + 201);
    for &k in ks {
        for _ in 0..8 {
            let weights = quantize_rows::<T>(&rng.values(4 * k), k);
            let activations = quantize_rows::<T::VecDotType>(&rng.values(k), k);
            let blocks = k / T::BLCK_SIZE;
            let row = |i: usize| &weights[i * blocks..(i + 1) * blocks];
            let four = T::vec_dot_four(k, [row(0), row(1), row(2), row(3)], &activations);
            let released: Vec<f32> = (0..4).map(|i| T::vec_dot(k, row(i), &activations)).collect();
            assert_bits_eq(&format!("{name} vec_dot_four (k = {k})"), &four, &released, 4);
        }
    }
}

fn check_qmatmul_forward<T: GgmlType>(k: usize) {
    let name = format!("{:?}", T::DTYPE);
    let mut rng = Rng::new(T::DTYPE as u64 + 301);
    let n = 80;
    let weights = rng.values(n * k);
    let qtensor = QTensor::quantize(&Tensor::from_slice(&weights, (n, k), &Device::Cpu).unwrap(), T::DTYPE).unwrap();
    let qmatmul = QMatMul::from_qtensor(qtensor).unwrap();
    assert!(matches!(qmatmul, QMatMul::QTensor(_)), "{name}: QMatMul dequantized the weights");
    let rhs_t = quantize_rows::<T>(&weights, k);
    for dims in [vec![1, k], vec![3, k], vec![21, k], vec![2, 9, k], vec![4, 1, k]] {
        let m: usize = dims[..dims.len() - 1].iter().product();
        let lhs = rng.values(m * k);
        let xs = Tensor::from_slice(&lhs, dims.as_slice(), &Device::Cpu).unwrap();
        let ys = qmatmul.forward(&xs).unwrap();
        let mut expected_dims = dims.clone();
        *expected_dims.last_mut().unwrap() = n;
        assert_eq!(ys.dims(), expected_dims.as_slice());
        let patched = ys.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let released = released_matmul::<T>((m, k, n), &lhs, &rhs_t);
        assert_bits_eq(&format!("{name} QMatMul::forward {dims:?} by ({n}, {k})"), &patched, &released, n);
    }
}

macro_rules! kernel_tests {
    ($($matmul:ident, $rows:ident, $four:ident: $t:ty, $ks:expr;)*) => {$(
        #[test]
        fn $matmul() {
            check_matmul::<$t>(&$ks);
        }

        #[test]
        fn $rows() {
            check_rows::<$t>(&$ks);
        }

        #[test]
        fn $four() {
            check_four::<$t>(&$ks);
        }
    )*};
}

kernel_tests! {
    matmul_q8_0, rows_q8_0, four_q8_0: BlockQ8_0, K_32;
    matmul_q4_0, rows_q4_0, four_q4_0: BlockQ4_0, K_32;
    matmul_q4_1, rows_q4_1, four_q4_1: BlockQ4_1, K_32;
    matmul_q5_0, rows_q5_0, four_q5_0: BlockQ5_0, K_32;
    matmul_q5_1, rows_q5_1, four_q5_1: BlockQ5_1, K_32;
    matmul_q8_1, rows_q8_1, four_q8_1: BlockQ8_1, K_32;
    matmul_q2k, rows_q2k, four_q2k: BlockQ2K, K_256;
    matmul_q3k, rows_q3k, four_q3k: BlockQ3K, K_256;
    matmul_q4k, rows_q4k, four_q4k: BlockQ4K, K_256;
    matmul_q5k, rows_q5k, four_q5k: BlockQ5K, K_256;
    matmul_q6k, rows_q6k, four_q6k: BlockQ6K, K_256;
    matmul_q8k, rows_q8k, four_q8k: BlockQ8K, K_256;
    matmul_f32, rows_f32, four_f32: f32, [1, 7, 64, 576];
}

#[test]
fn qmatmul_forward_q8_0() {
    check_qmatmul_forward::<BlockQ8_0>(576);
}

#[test]
fn qmatmul_forward_q4_0() {
    check_qmatmul_forward::<BlockQ4_0>(576);
}

#[test]
fn qmatmul_forward_q4_1() {
    check_qmatmul_forward::<BlockQ4_1>(576);
}

#[test]
fn qmatmul_forward_q4k() {
    check_qmatmul_forward::<BlockQ4K>(1536);
}

#[test]
fn qmatmul_forward_q6k() {
    check_qmatmul_forward::<BlockQ6K>(1536);
}

fn check_dequantized_rows(dtype: GgmlDType, k: usize) {
    let mut rng = Rng::new(dtype as u64 + 577);
    let n = 40;
    let weights = Tensor::from_vec(rng.values(n * k), (n, k), &Device::Cpu).unwrap();
    let qtensor = QTensor::quantize(&weights, dtype).unwrap();
    let whole = qtensor.dequantize(&Device::Cpu).unwrap();
    for ids in [vec![0u32], vec![39], vec![5, 5, 0, 39, 17, 2], vec![]] {
        let rows = qtensor.dequantize_rows(&ids).unwrap();
        assert_eq!(rows.dims(), [ids.len(), k]);
        let expected = whole.index_select(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
        let (rows, expected) = (
            rows.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            expected.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_bits_eq(&format!("{dtype:?} dequantize_rows {ids:?}"), &rows, &expected, k);
    }
    let error = qtensor.dequantize_rows(&[3, 40]).unwrap_err().to_string();
    assert!(error.contains("row 40 is out of range"), "{dtype:?}: {error}");
}

#[test]
fn dequantized_rows_equal_rows_of_the_dequantized_matrix() {
    for (dtype, k) in [
        (GgmlDType::Q8_0, 576),
        (GgmlDType::Q4_0, 576),
        (GgmlDType::Q4_1, 896),
        (GgmlDType::Q4K, 768),
        (GgmlDType::Q6K, 1536),
        (GgmlDType::F16, 64),
        (GgmlDType::F32, 64),
    ] {
        check_dequantized_rows(dtype, k);
    }
}

/// The GGUF loader reads each tensor straight into its storage (`ggml_file::qtensor_from_reader`);
/// released, it read the bytes into a buffer and built the tensor from that buffer
/// (`qtensor_from_ggml`). Both must give the same bytes, shape and type, and a file cut short
/// must be an error.
#[test]
fn tensors_read_from_a_gguf_equal_tensors_built_from_their_bytes() {
    use candle_core::quantized::{ggml_file, gguf_file};
    let mut rng = Rng::new(4242);
    let shapes = [
        (GgmlDType::Q4_1, (12, 896)),
        (GgmlDType::Q8_0, (7, 576)),
        (GgmlDType::Q4_0, (3, 64)),
        (GgmlDType::Q4K, (5, 768)),
        (GgmlDType::Q6K, (2, 1536)),
        (GgmlDType::F16, (9, 64)),
        (GgmlDType::F32, (1, 33)),
    ];
    let tensors: Vec<(String, QTensor)> = shapes
        .iter()
        .map(|&(dtype, (rows, cols))| {
            let values = Tensor::from_vec(rng.values(rows * cols), (rows, cols), &Device::Cpu).unwrap();
            (format!("{dtype:?}.weight"), QTensor::quantize(&values, dtype).unwrap())
        })
        .collect();
    let named: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect();
    let mut file = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut file, &[], &named).unwrap();
    let bytes = file.into_inner();

    let mut reader = std::io::Cursor::new(bytes.as_slice());
    let content = gguf_file::Content::read(&mut reader).unwrap();
    for (name, written) in &tensors {
        let read = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
        let info = &content.tensor_infos[name];
        let start = (content.tensor_data_offset + info.offset) as usize;
        let length = written.data().unwrap().len();
        let released = ggml_file::qtensor_from_ggml(
            info.ggml_dtype,
            &bytes[start..start + length],
            info.shape.dims().to_vec(),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(read.dtype(), written.dtype(), "{name}");
        assert_eq!(read.shape(), released.shape(), "{name}");
        assert_eq!(read.shape().dims(), written.shape().dims(), "{name}");
        assert!(read.data().unwrap() == released.data().unwrap(), "{name}: bytes differ from the released path");
        assert!(read.data().unwrap() == written.data().unwrap(), "{name}: bytes differ from what was written");
    }

    let (last_name, last) = tensors.last().unwrap();
    let last_end =
        (content.tensor_data_offset + content.tensor_infos[last_name].offset) as usize + last.data().unwrap().len();
    let mut reader = std::io::Cursor::new(&bytes[..last_end - 1]);
    let content = gguf_file::Content::read(&mut reader).unwrap();
    assert!(content.tensor(&mut reader, last_name, &Device::Cpu).is_err(), "a tensor cut short must be an error");
}

/// On x86-64 the build has AVX2 (`.cargo/config.toml`), so Q8_0 takes the patched AVX kernels;
/// without it the Q8_0 cases would test only the trait's defaults.
#[test]
#[cfg(target_arch = "x86_64")]
fn avx2_kernels_are_compiled_in() {
    let activations = quantize_rows::<BlockQ8_0>(&Rng::new(7).values(64), 32);
    assert_eq!(
        BlockQ8_0::vec_dot_row_scales(&activations).len(),
        2,
        "Q8_0 does not take the patched AVX kernels: built without AVX2 (see .cargo/config.toml)?"
    );
}

#[test]
fn sole_owner_of_storage_is_false_while_anything_shares_it() {
    let tensor = Tensor::zeros((1, 3, 8, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(tensor.is_sole_owner_of_storage(), "a fresh tensor");
    let handle = tensor.clone();
    assert!(!tensor.is_sole_owner_of_storage() && !handle.is_sole_owner_of_storage(), "a second handle");
    drop(handle);
    assert!(tensor.is_sole_owner_of_storage(), "the second handle dropped");
    let view = tensor.narrow(2, 0, 5).unwrap();
    assert!(!tensor.is_sole_owner_of_storage() && !view.is_sole_owner_of_storage(), "a view");
    drop(view);
    let reshaped = tensor.reshape((3, 8, 4)).unwrap();
    assert!(!tensor.is_sole_owner_of_storage(), "a reshape shares the storage");
    drop(reshaped);
    assert!(tensor.is_sole_owner_of_storage(), "everything else dropped");
    // A copy has storage of its own.
    let copy = tensor.force_contiguous().unwrap();
    assert!(tensor.is_sole_owner_of_storage() && copy.is_sole_owner_of_storage(), "a copy");
}

/// What the prefix cache asks before keeping a finished sequence's KV cache: a sequence's slice
/// of a batched buffer (what `clone_out_cache` hands each sequence) is a view of more memory than
/// its own elements, the whole buffer and a copy of the slice are not.
#[test]
fn a_slice_of_a_batched_cache_does_not_span_its_storage() -> candle_core::Result<()> {
    let batch = Tensor::zeros((4, 3, 512, 64), candle_core::DType::F32, &Device::Cpu)?;
    assert!(batch.spans_whole_storage());
    let slices = batch.chunk(4, 0)?;
    assert!(slices.iter().all(|slice| !slice.spans_whole_storage()));
    assert!(slices[0].force_contiguous()?.spans_whole_storage());
    // A batch of one hands its sequence the whole buffer, which is kept as it is.
    let alone = Tensor::zeros((1, 3, 512, 64), candle_core::DType::F16, &Device::Cpu)?;
    assert!(alone.chunk(1, 0)?.iter().all(Tensor::spans_whole_storage));
    Ok(())
}
