//! `Quantizer`: what `create --quantize` asks of the engine that owns the weights format.

use std::fs::File;
use std::path::Path;

use crate::EngineError;

/// What a quantization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantized {
    /// The target as Ollama names it (`Q4_K_M`), the new model's `file_type`.
    pub file_type: String,
}

/// Writes quantized copies of weights files. Blocking: call it off the async runtime.
pub trait Quantizer: Send + Sync + 'static {
    /// The targets it accepts, as Ollama names them (`q4_K_M`...).
    fn targets(&self) -> Vec<&'static str>;

    /// The type most of the weights in `source` have (`F16`, `Q4_1`...), before quantizing.
    fn source_type(&self, source: &Path) -> Result<String, EngineError>;

    /// Quantizes `source` to `target` (one of [`Quantizer::targets`], any case) into
    /// `destination`, calling `progress(done, total)` as it goes.
    fn quantize(
        &self,
        source: &Path,
        destination: &mut File,
        target: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Quantized, EngineError>;
}
