//! CPU kernels for the engines' own forward passes: the packed matrix product with run-time
//! SIMD dispatch, vectorised element-wise functions and row operations, and packed attention;
//! the quantized dot products that the vendored candle's GGUF matrix product calls; and the
//! one-query attention over cached keys and values that the vendored mistral.rs decodes with.

pub mod attention;
pub mod cached_attention;
pub mod k_quants;
pub mod math;
pub mod matmul;
pub mod quantized_dot;

/// Runs `work` on a thread of the pool the kernels split their work over. A forward pass run
/// this way hands halves of each product to the other threads as work they may steal, instead
/// of waiting on the pool from outside it for every product: for a short input, waking the pool
/// some thirty times per pass would cost as much as the arithmetic.
pub fn on_thread_pool<Output: Send>(work: impl FnOnce() -> Output + Send) -> Output {
    rayon::scope(|_| work())
}

/// Threads of the pool the kernels run on.
pub fn thread_count() -> usize {
    rayon::current_num_threads()
}

/// `work` on each item, the items spread over the pool's threads; the results in order.
pub fn map_in_parallel<Item: Sync, Output: Send>(
    items: &[Item],
    work: impl Fn(&Item) -> Output + Sync + Send,
) -> Vec<Output> {
    use rayon::prelude::*;
    items.par_iter().map(work).collect()
}
