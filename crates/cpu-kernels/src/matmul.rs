//! Products of activations by constant weights (`output = input × weightᵀ + bias`): the weights
//! are packed once into panels of 32 output columns (F32, or F16 to halve the memory they stream
//! through), and the product runs a register-tiled AVX-512 or AVX2 kernel chosen at run time,
//! split over the thread pool by rows and panels.
#![allow(unsafe_code)]

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Output columns per packed panel: two AVX-512 registers, four AVX2 registers.
const PANEL_WIDTH: usize = 32;
/// Rows one task computes before the next task takes over: a block of activations that stays
/// in the L2 cache while every panel of the task sweeps it.
const ROWS_PER_TASK: usize = 96;
/// Below this many multiply-adds the product runs on the calling thread: a task handed to the
/// pool costs more than it saves.
const SEQUENTIAL_LIMIT: usize = 1 << 16;

/// How packed weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    /// Half the bytes: a product of few rows streams its weights from memory, so this runs it
    /// up to twice as fast. Exact only for weights that are F16 values (an F16 file's).
    F16,
}

#[derive(Debug, Clone)]
enum Panels {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// A weight matrix and its bias, packed for [`multiply`].
#[derive(Debug, Clone)]
pub struct PackedWeights {
    inputs: usize,
    outputs: usize,
    /// `panel_count` panels; panel `p` holds, for each input `k`, the 32 weights of outputs
    /// `32p..32p+32` (zero past `outputs`).
    panels: Panels,
    /// The bias, zero-padded to whole panels.
    bias: Vec<f32>,
}

impl PackedWeights {
    /// From a weight in PyTorch's layout (`outputs` rows of `inputs` values, row-major) and its
    /// bias (`outputs` values, or none), stored as F32.
    ///
    /// # Panics
    /// When the slices do not have the sizes given.
    pub fn new(weight: &[f32], bias: Option<&[f32]>, outputs: usize, inputs: usize) -> PackedWeights {
        PackedWeights::with_storage(weight, bias, outputs, inputs, Storage::F32)
    }

    /// [`PackedWeights::new`] with the weights stored as `storage` says (F16 rounds to nearest).
    ///
    /// # Panics
    /// When the slices do not have the sizes given.
    pub fn with_storage(
        weight: &[f32],
        bias: Option<&[f32]>,
        outputs: usize,
        inputs: usize,
        storage: Storage,
    ) -> PackedWeights {
        assert_eq!(weight.len(), outputs * inputs, "weight size");
        let panel_count = outputs.div_ceil(PANEL_WIDTH);
        let mut panels = vec![0f32; panel_count * inputs * PANEL_WIDTH];
        for (output, row) in weight.chunks_exact(inputs.max(1)).enumerate().take(outputs) {
            let (panel, column) = (output / PANEL_WIDTH, output % PANEL_WIDTH);
            let base = panel * inputs * PANEL_WIDTH + column;
            for (input, value) in row.iter().enumerate() {
                panels[base + input * PANEL_WIDTH] = *value;
            }
        }
        let mut padded_bias = vec![0f32; panel_count * PANEL_WIDTH];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), outputs, "bias size");
            padded_bias[..outputs].copy_from_slice(bias);
        }
        let panels = match storage {
            Storage::F32 => Panels::F32(panels),
            Storage::F16 => {
                let mut half = vec![f16::ZERO; panels.len()];
                half.convert_from_f32_slice(&panels);
                Panels::F16(half)
            }
        };
        PackedWeights { inputs, outputs, panels, bias: padded_bias }
    }

    /// Several weights over the same inputs side by side, as one wider layer (attention's
    /// query, key and value in one product). Each part is `(weight, bias, outputs)`.
    pub fn concatenated(parts: &[(&[f32], &[f32], usize)], inputs: usize, storage: Storage) -> PackedWeights {
        let mut weight = Vec::new();
        let mut bias = Vec::new();
        let mut outputs = 0;
        for (part_weight, part_bias, part_outputs) in parts {
            weight.extend_from_slice(part_weight);
            bias.extend_from_slice(part_bias);
            outputs += part_outputs;
        }
        PackedWeights::with_storage(&weight, Some(&bias), outputs, inputs, storage)
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        let panels = match &self.panels {
            Panels::F32(panels) => panels.len() * size_of::<f32>(),
            Panels::F16(panels) => panels.len() * size_of::<f16>(),
        };
        panels + self.bias.len() * size_of::<f32>()
    }

    fn panel_count(&self) -> usize {
        self.bias.len() / PANEL_WIDTH
    }
}

/// Which kernel this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

impl Kernel {
    /// Every kernel, fastest first.
    const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::Portable];

    /// Whether this CPU has the instructions the kernel uses (feature detection is cached, so
    /// this is a few loads).
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            Kernel::Portable => true,
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel the CPU supports.
    pub fn detect() -> Kernel {
        Kernel::ALL.into_iter().find(|kernel| kernel.is_supported()).unwrap_or(Kernel::Portable)
    }

    /// Every kernel this CPU can run, fastest first (for tests and benchmarks that compare them).
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|kernel| kernel.is_supported()).collect()
    }
}

/// `output[r] = input[r] × weightᵀ + bias` for `rows` rows: `input` is `rows × inputs`,
/// `output` is `rows × outputs`, both row-major.
///
/// # Panics
/// When the slices do not have those sizes.
pub fn multiply(input: &[f32], rows: usize, weights: &PackedWeights, output: &mut [f32]) {
    multiply_with(Kernel::detect(), input, rows, weights, output);
}

/// [`multiply`] with a chosen kernel.
///
/// # Panics
/// When the slices do not have the sizes given, or the CPU cannot run `kernel`.
pub fn multiply_with(kernel: Kernel, input: &[f32], rows: usize, weights: &PackedWeights, output: &mut [f32]) {
    assert_eq!(input.len(), rows * weights.inputs, "input size");
    assert_eq!(output.len(), rows * weights.outputs, "output size");
    assert!(kernel.is_supported(), "{kernel:?} is not supported by this CPU");
    if rows == 0 || weights.outputs == 0 {
        return;
    }
    let panel_count = weights.panel_count();
    let row_blocks = rows.div_ceil(ROWS_PER_TASK);
    let shared = SharedOutput(output.as_mut_ptr());
    let job = Job { kernel, input, weights, output: shared };
    if rows * weights.inputs * weights.outputs <= SEQUENTIAL_LIMIT {
        job.run(0, rows, 0, panel_count);
        return;
    }
    // Enough tasks that every thread has several, so an uneven last one costs little.
    let wanted = rayon::current_num_threads() * 3;
    let panel_groups = wanted.div_ceil(row_blocks).clamp(1, panel_count);
    let panels_per_group = panel_count.div_ceil(panel_groups);
    let panel_groups = panel_count.div_ceil(panels_per_group);
    (0..row_blocks * panel_groups).into_par_iter().for_each(|task| {
        let (row_block, group) = (task / panel_groups, task % panel_groups);
        let first_row = row_block * ROWS_PER_TASK;
        let first_panel = group * panels_per_group;
        job.run(
            first_row,
            (first_row + ROWS_PER_TASK).min(rows),
            first_panel,
            (first_panel + panels_per_group).min(panel_count),
        );
    });
}

/// The output matrix's start, written by several tasks at once, each in its own rectangle.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: tasks write disjoint rectangles of the output (see `Job::run`), and `multiply` holds
// the output's only reference until every task has finished.
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

struct Job<'a> {
    kernel: Kernel,
    input: &'a [f32],
    weights: &'a PackedWeights,
    output: SharedOutput,
}

/// One register tile: `rows` (at most the kernel's) rows of the input by one panel.
struct Tile {
    input: *const f32,
    input_stride: usize,
    panel: PanelStart,
    depth: usize,
    bias: *const f32,
    output: *mut f32,
    output_stride: usize,
    /// Output columns of the panel that exist (32 but in the last panel).
    columns: usize,
}

/// Where a panel's weights start, in their stored type.
#[derive(Clone, Copy)]
enum PanelStart {
    F32(*const f32),
    F16(*const f16),
}

/// Most rows a tile of each kernel holds: its accumulators must stay in registers (AVX-512:
/// 20 of 32 for sums; at 11 or 12 rows the compiler spills and the kernel runs at half speed).
fn most_rows(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Avx512 => 10,
        Kernel::Avx2 => 6,
        Kernel::Portable => 4,
    }
}

impl Job<'_> {
    /// Rows `first_row..end_row` by panels `first_panel..end_panel`: a rectangle of the output no
    /// other task writes.
    fn run(&self, first_row: usize, end_row: usize, first_panel: usize, end_panel: usize) {
        let (inputs, outputs) = (self.weights.inputs, self.weights.outputs);
        let panel_size = inputs * PANEL_WIDTH;
        for panel in first_panel..end_panel {
            let start = match &self.weights.panels {
                Panels::F32(panels) => PanelStart::F32(panels[panel * panel_size..][..panel_size].as_ptr()),
                Panels::F16(panels) => PanelStart::F16(panels[panel * panel_size..][..panel_size].as_ptr()),
            };
            let mut row = first_row;
            while row < end_row {
                let rows = most_rows(self.kernel).min(end_row - row);
                let tile = Tile {
                    input: self.input[row * inputs..].as_ptr(),
                    input_stride: inputs,
                    panel: start,
                    depth: inputs,
                    bias: self.weights.bias[panel * PANEL_WIDTH..].as_ptr(),
                    // SAFETY: inside the output, which `multiply_with` checked is `rows × outputs`.
                    output: unsafe { self.output.0.add(row * outputs + panel * PANEL_WIDTH) },
                    output_stride: outputs,
                    columns: PANEL_WIDTH.min(outputs - panel * PANEL_WIDTH),
                };
                // SAFETY: the tile lies inside the input, the packed panel and the output, and
                // `multiply_with` checked that the CPU runs `self.kernel`.
                unsafe { run_tile(self.kernel, rows, &tile) };
                row += rows;
            }
        }
    }
}

macro_rules! by_rows {
    ($function:ident, $rows:expr, $tile:expr, $panel:expr, [$($count:literal),*]) => {
        match $rows {
            $($count => $function::<$count>($tile, $panel),)*
            _ => unreachable!("a tile of {} rows", $rows),
        }
    };
}

/// # Safety
/// `tile` must describe memory that is valid for its rows and panel, and the CPU must run `kernel`.
unsafe fn run_tile(kernel: Kernel, rows: usize, tile: &Tile) {
    match (kernel, tile.panel) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, PanelStart::F32(panel)) => {
            by_rows!(tile_avx512_f32, rows, tile, panel, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx512, PanelStart::F16(panel)) => {
            by_rows!(tile_avx512_f16, rows, tile, panel, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        }
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, PanelStart::F32(panel)) => by_rows!(tile_avx2_f32, rows, tile, panel, [1, 2, 3, 4, 5, 6]),
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2, PanelStart::F16(panel)) => by_rows!(tile_avx2_f16, rows, tile, panel, [1, 2, 3, 4, 5, 6]),
        (_, PanelStart::F32(panel)) => by_rows!(tile_portable, rows, tile, panel, [1, 2, 3, 4]),
        (_, PanelStart::F16(panel)) => by_rows!(tile_portable, rows, tile, panel, [1, 2, 3, 4]),
    }
}

/// Writes one tile's sums plus the bias, only the columns that exist.
///
/// # Safety
/// `output` must be valid for `columns` values.
#[inline(always)]
unsafe fn store_row(sums: &[f32; PANEL_WIDTH], output: *mut f32, columns: usize) {
    std::ptr::copy_nonoverlapping(sums.as_ptr(), output, columns);
}

/// The AVX-512 tile for panels of one stored type: `$load` turns a pointer to 16 stored weights
/// into a register of 16 F32 values.
macro_rules! avx512_tile {
    ($name:ident, $stored:ty, $features:literal, $load:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const ROWS: usize>(tile: &Tile, panel: *const $stored) {
            use std::arch::x86_64::*;
            let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
            for depth in 0..tile.depth {
                let weights = panel.add(depth * PANEL_WIDTH);
                let (low, high): (__m512, __m512) = ($load(weights), $load(weights.add(16)));
                for (row, sum) in sums.iter_mut().enumerate() {
                    let value = _mm512_set1_ps(*tile.input.add(row * tile.input_stride + depth));
                    sum[0] = _mm512_fmadd_ps(value, low, sum[0]);
                    sum[1] = _mm512_fmadd_ps(value, high, sum[1]);
                }
            }
            let (bias_low, bias_high) = (_mm512_loadu_ps(tile.bias), _mm512_loadu_ps(tile.bias.add(16)));
            for (row, sum) in sums.iter().enumerate() {
                let output = tile.output.add(row * tile.output_stride);
                let (low, high) = (_mm512_add_ps(sum[0], bias_low), _mm512_add_ps(sum[1], bias_high));
                if tile.columns == PANEL_WIDTH {
                    _mm512_storeu_ps(output, low);
                    _mm512_storeu_ps(output.add(16), high);
                } else {
                    let mut row_sums = [0f32; PANEL_WIDTH];
                    _mm512_storeu_ps(row_sums.as_mut_ptr(), low);
                    _mm512_storeu_ps(row_sums.as_mut_ptr().add(16), high);
                    store_row(&row_sums, output, tile.columns);
                }
            }
        }
    };
}

avx512_tile!(tile_avx512_f32, f32, "avx512f", |pointer: *const f32| _mm512_loadu_ps(pointer));
avx512_tile!(tile_avx512_f16, f16, "avx512f", |pointer: *const f16| _mm512_cvtph_ps(_mm256_loadu_si256(
    pointer.cast::<__m256i>()
)));

/// The AVX2 tile: sixteen registers hold six rows of sixteen columns, so the panel runs in two
/// halves. `$load` turns a pointer to 8 stored weights into 8 F32 values.
macro_rules! avx2_tile {
    ($name:ident, $stored:ty, $features:literal, $load:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const ROWS: usize>(tile: &Tile, panel: *const $stored) {
            use std::arch::x86_64::*;
            for half in 0..2 {
                let mut sums = [[_mm256_setzero_ps(); 2]; ROWS];
                for depth in 0..tile.depth {
                    let weights = panel.add(depth * PANEL_WIDTH + half * 16);
                    let (low, high): (__m256, __m256) = ($load(weights), $load(weights.add(8)));
                    for (row, sum) in sums.iter_mut().enumerate() {
                        let value = _mm256_set1_ps(*tile.input.add(row * tile.input_stride + depth));
                        sum[0] = _mm256_fmadd_ps(value, low, sum[0]);
                        sum[1] = _mm256_fmadd_ps(value, high, sum[1]);
                    }
                }
                let bias = tile.bias.add(half * 16);
                let (bias_low, bias_high) = (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8)));
                let columns = tile.columns.saturating_sub(half * 16).min(16);
                for (row, sum) in sums.iter().enumerate() {
                    let output = tile.output.add(row * tile.output_stride + half * 16);
                    let (low, high) = (_mm256_add_ps(sum[0], bias_low), _mm256_add_ps(sum[1], bias_high));
                    if columns == 16 {
                        _mm256_storeu_ps(output, low);
                        _mm256_storeu_ps(output.add(8), high);
                    } else if columns > 0 {
                        let mut row_sums = [0f32; PANEL_WIDTH];
                        _mm256_storeu_ps(row_sums.as_mut_ptr(), low);
                        _mm256_storeu_ps(row_sums.as_mut_ptr().add(8), high);
                        store_row(&row_sums, output, columns);
                    }
                }
            }
        }
    };
}

avx2_tile!(tile_avx2_f32, f32, "avx2,fma", |pointer: *const f32| _mm256_loadu_ps(pointer));
avx2_tile!(tile_avx2_f16, f16, "avx2,fma,f16c", |pointer: *const f16| _mm256_cvtph_ps(_mm_loadu_si128(
    pointer.cast::<__m128i>()
)));

/// A stored weight as F32, for the portable kernel.
trait Widen: Copy {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// The kernel for CPUs without AVX2: plain loops the compiler vectorises for the baseline.
unsafe fn tile_portable<const ROWS: usize>(tile: &Tile, panel: *const impl Widen) {
    let mut sums = [[0f32; PANEL_WIDTH]; ROWS];
    for depth in 0..tile.depth {
        let weights = std::slice::from_raw_parts(panel.add(depth * PANEL_WIDTH), PANEL_WIDTH);
        for (row, sum) in sums.iter_mut().enumerate() {
            let value = *tile.input.add(row * tile.input_stride + depth);
            for (sum, weight) in sum.iter_mut().zip(weights) {
                *sum = value.mul_add(weight.widen(), *sum);
            }
        }
    }
    let bias = std::slice::from_raw_parts(tile.bias, PANEL_WIDTH);
    for (row, sum) in sums.iter_mut().enumerate() {
        for (value, bias) in sum.iter_mut().zip(bias) {
            *value += bias;
        }
        store_row(sum, tile.output.add(row * tile.output_stride), tile.columns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator: the values need no statistical quality.
    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..count)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The product in f64, one dot product at a time: the reference every kernel is held to.
    fn reference(input: &[f32], rows: usize, weight: &[f32], bias: &[f32], outputs: usize, inputs: usize) -> Vec<f32> {
        let mut output = vec![0f32; rows * outputs];
        for row in 0..rows {
            for column in 0..outputs {
                let mut sum = f64::from(bias[column]);
                for depth in 0..inputs {
                    sum += f64::from(input[row * inputs + depth]) * f64::from(weight[column * inputs + depth]);
                }
                output[row * outputs + column] = sum as f32;
            }
        }
        output
    }

    #[test]
    fn every_kernel_matches_the_reference_on_every_shape() {
        // Rows across tile and task edges, outputs across panel edges, odd depths.
        let shapes =
            [(1, 1, 1), (1, 32, 384), (5, 33, 7), (13, 64, 17), (97, 70, 384), (200, 384, 96), (12, 1152, 384)];
        for (kernel, storage) in
            Kernel::available().into_iter().flat_map(|kernel| [(kernel, Storage::F32), (kernel, Storage::F16)])
        {
            for (index, (rows, outputs, inputs)) in shapes.into_iter().enumerate() {
                let input = values(rows * inputs, index as u64);
                // F16 storage is exact for weights that are F16 values.
                let weight: Vec<f32> = values(outputs * inputs, 100 + index as u64)
                    .into_iter()
                    .map(|value| f16::from_f32(value).to_f32())
                    .collect();
                let bias = values(outputs, 200 + index as u64);
                let packed = PackedWeights::with_storage(&weight, Some(&bias), outputs, inputs, storage);
                let mut output = vec![f32::NAN; rows * outputs];
                multiply_with(kernel, &input, rows, &packed, &mut output);
                let expected = reference(&input, rows, &weight, &bias, outputs, inputs);
                for (position, (got, want)) in output.iter().zip(&expected).enumerate() {
                    // f32 sums of `inputs` terms of magnitude below 1.
                    let tolerance = 1e-6 * (inputs as f32).sqrt().max(1.0) * 4.0;
                    assert!(
                        (got - want).abs() <= tolerance,
                        "{kernel:?} {storage:?} {rows}x{outputs}x{inputs} at {position}: {got} against {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn weights_without_bias_and_concatenated_parts() {
        let (rows, inputs) = (3, 8);
        let input = values(rows * inputs, 1);
        let first = values(5 * inputs, 2);
        let second = values(4 * inputs, 3);
        let (first_bias, second_bias) = (values(5, 4), values(4, 5));
        let joined =
            PackedWeights::concatenated(&[(&first, &first_bias, 5), (&second, &second_bias, 4)], inputs, Storage::F32);
        assert_eq!((joined.inputs(), joined.outputs()), (inputs, 9));
        let mut output = vec![0f32; rows * 9];
        multiply(&input, rows, &joined, &mut output);
        let expected_first = reference(&input, rows, &first, &first_bias, 5, inputs);
        let expected_second = reference(&input, rows, &second, &second_bias, 4, inputs);
        for row in 0..rows {
            for column in 0..9 {
                let want =
                    if column < 5 { expected_first[row * 5 + column] } else { expected_second[row * 4 + column - 5] };
                assert!((output[row * 9 + column] - want).abs() < 1e-5);
            }
        }
        let unbiased = PackedWeights::new(&first, None, 5, inputs);
        let mut output = vec![0f32; rows * 5];
        multiply(&input, rows, &unbiased, &mut output);
        let expected = reference(&input, rows, &first, &[0.0; 5], 5, inputs);
        assert!(output.iter().zip(&expected).all(|(got, want)| (got - want).abs() < 1e-5));
    }

    #[test]
    fn an_empty_product_writes_nothing() {
        let packed = PackedWeights::new(&[], None, 0, 4);
        multiply(&[], 0, &packed, &mut []);
        let packed = PackedWeights::new(&[1.0; 8], None, 2, 4);
        multiply(&[], 0, &packed, &mut []);
    }
}
