//! Quantizes a GGUF file the way llama.cpp's `llama-quantize` does (`q8_0`, `q4_0`, `q4_K_S`,
//! `q4_K_M`, without an importance matrix): the same type for each tensor, chosen by the same
//! rules (which tensors are quantized, where a mixture spends more bits, the fallbacks for rows
//! that do not fill a block), and the same reference quantization of each block (candle's ports
//! of ggml's `quantize_row_*_ref`).
//!
//! [`plan_types`] is the pure part: tensor names and shapes in, types out. [`quantize_gguf`]
//! reads the source (F32, F16, BF16 or already quantized: those are dequantized first), writes
//! the new file and reports progress in source bytes.

use std::fs::File;
use std::io::{BufReader, Seek, Write};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// A target of `create --quantize`, named as Ollama and llama.cpp name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit blocks of 32.
    Q4_0,
    /// 4-bit k-quants, small mixture.
    Q4KS,
    /// 4-bit k-quants, medium mixture (Ollama's usual).
    Q4KM,
}

impl Quantization {
    /// Every target, for error messages.
    pub const ALL: [Quantization; 4] = [Quantization::Q8_0, Quantization::Q4_0, Quantization::Q4KS, Quantization::Q4KM];

    /// Parses a name in any case (`q4_K_M`, `Q4_K_M`, `q8_0`).
    pub fn parse(text: &str) -> Option<Quantization> {
        Quantization::ALL.into_iter().find(|quantization| quantization.name().eq_ignore_ascii_case(text))
    }

    /// The name as Ollama reports it (`file_type`, `quantization_level`).
    pub fn name(self) -> &'static str {
        match self {
            Quantization::Q8_0 => "Q8_0",
            Quantization::Q4_0 => "Q4_0",
            Quantization::Q4KS => "Q4_K_S",
            Quantization::Q4KM => "Q4_K_M",
        }
    }

    /// llama.cpp's `llama_ftype`, written as `general.file_type`.
    fn file_type(self) -> u32 {
        match self {
            Quantization::Q4_0 => 2,
            Quantization::Q8_0 => 7,
            Quantization::Q4KS => 14,
            Quantization::Q4KM => 15,
        }
    }

    fn default_type(self) -> GgmlDType {
        match self {
            Quantization::Q8_0 => GgmlDType::Q8_0,
            Quantization::Q4_0 => GgmlDType::Q4_0,
            Quantization::Q4KS | Quantization::Q4KM => GgmlDType::Q4K,
        }
    }
}

/// One tensor of the source, as [`plan_types`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorShape {
    /// Its GGUF name (`blk.3.attn_v.weight`).
    pub name: String,
    /// Dimensions, outermost first (the last is the row length, ggml's `ne[0]`).
    pub dims: Vec<usize>,
    /// Its type in the source.
    pub dtype: GgmlDType,
}

/// What kind of tensor a name is, as llama.cpp sorts them for the mixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbedding,
    AttentionQkv,
    AttentionV,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" {
        Category::TokenEmbedding
    } else if name.contains("attn_qkv.weight") {
        Category::AttentionQkv
    } else if name.contains("attn_v.weight") {
        Category::AttentionV
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// Whether llama.cpp quantizes this tensor at all: weights of two or more dimensions, not
/// norms, router gates, position or token-type embeddings, nor the small special tensors of
/// some architectures.
fn allows_quantization(tensor: &TensorShape) -> bool {
    const KEPT: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_",
        "attn_rel_b.weight",
        ".position_embd",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
    ];
    let name = tensor.name.as_str();
    tensor.dims.len() >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !KEPT.iter().any(|kept| name.contains(kept))
}

/// The layer of a `blk.<n>.` tensor; other tensors sort before every layer.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(-1)
}

/// The order llama.cpp walks tensors in: by layer, then by name. Indices into `tensors`.
pub fn processing_order(tensors: &[TensorShape]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        (layer_of(&tensors[a].name), &tensors[a].name).cmp(&(layer_of(&tensors[b].name), &tensors[b].name))
    });
    order
}

/// More bits for the first and last eighth of the layers and every third one between, as
/// llama.cpp's `use_more_bits`.
fn use_more_bits(layer: i64, n_layers: i64) -> bool {
    layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2
}

/// The type each tensor gets (in the order of `tensors`), llama.cpp's choices for this
/// mixture. `n_layers` is the model's block count; `is_70b` selects the rule for 70B Llama
/// models (more bits for `attn_v`).
pub fn plan_types(
    tensors: &[TensorShape],
    quantization: Quantization,
    n_layers: usize,
    is_70b: bool,
) -> Vec<GgmlDType> {
    let n_layers = n_layers as i64;
    let tied_embeddings = !tensors.iter().any(|tensor| category(&tensor.name) == Category::Output);
    let n_attention_v = tensors.iter().filter(|tensor| category(&tensor.name) == Category::AttentionV).count() as i64;
    let mut i_attention_v = 0i64;
    let mut i_ffn_down = 0i64;
    let mut types = vec![GgmlDType::F32; tensors.len()];
    for index in processing_order(tensors) {
        let tensor = &tensors[index];
        if !allows_quantization(tensor) {
            types[index] = tensor.dtype;
            continue;
        }
        let row_length = tensor.dims.last().copied().unwrap_or(0);
        let mut chosen = quantization.default_type();
        match category(&tensor.name) {
            Category::Output => chosen = output_type(chosen, row_length),
            Category::TokenEmbedding if tied_embeddings => chosen = output_type(chosen, row_length),
            Category::TokenEmbedding => {}
            Category::AttentionV => {
                if quantization == Quantization::Q4KM && use_more_bits(i_attention_v, n_attention_v) {
                    chosen = GgmlDType::Q6K;
                } else if quantization == Quantization::Q4KS && i_attention_v < 4 {
                    chosen = GgmlDType::Q5K;
                }
                if is_70b && matches!(chosen, GgmlDType::Q3K | GgmlDType::Q4K) {
                    chosen = GgmlDType::Q5K;
                }
                i_attention_v += 1;
            }
            Category::FfnDown => {
                if quantization == Quantization::Q4KM && use_more_bits(i_ffn_down, n_layers) {
                    chosen = GgmlDType::Q6K;
                } else if quantization == Quantization::Q4KS && i_ffn_down < n_layers / 8 {
                    chosen = GgmlDType::Q5K;
                }
                i_ffn_down += 1;
            }
            Category::AttentionQkv => {
                if quantization == Quantization::Q4KM {
                    chosen = GgmlDType::Q5K;
                }
            }
            Category::Other => {}
        }
        types[index] = fallback(chosen, row_length);
    }
    types
}

/// The output matrix (and tied embeddings): Q8_0 when its rows do not fill the mixture's
/// blocks, else Q6_K unless the mixture is Q8_0.
fn output_type(default: GgmlDType, row_length: usize) -> GgmlDType {
    if !row_length.is_multiple_of(default.block_size()) {
        GgmlDType::Q8_0
    } else if default != GgmlDType::Q8_0 {
        GgmlDType::Q6K
    } else {
        default
    }
}

/// A type whose blocks the rows fill: k-quants (blocks of 256) fall back to the 32-wide type
/// of about as many bits, and F16 when not even that fits.
fn fallback(chosen: GgmlDType, row_length: usize) -> GgmlDType {
    if row_length.is_multiple_of(chosen.block_size()) {
        return chosen;
    }
    let smaller = match chosen {
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        other => other,
    };
    if row_length.is_multiple_of(smaller.block_size()) {
        smaller
    } else {
        GgmlDType::F16
    }
}

/// One tensor in `dtype`: k-quant blocks written by `cpu_kernels::k_quants` (llama.cpp's
/// reference quantization), other types by candle (whose Q8_0, Q4_0, Q5_0... match it).
fn quantize_tensor(values: &candle_core::Tensor, dtype: GgmlDType) -> candle_core::Result<QTensor> {
    let k_quantize = match dtype {
        GgmlDType::Q4K => cpu_kernels::k_quants::quantize_q4_k,
        GgmlDType::Q5K => cpu_kernels::k_quants::quantize_q5_k,
        GgmlDType::Q6K => cpu_kernels::k_quants::quantize_q6_k,
        _ => return QTensor::quantize(values, dtype),
    };
    let dims = values.dims().to_vec();
    let flat: Vec<f32> = values.flatten_all()?.to_vec1()?;
    let bytes = k_quantize(&flat);
    candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &bytes, dims, &Device::Cpu)
}

/// What [`quantize_gguf`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeSummary {
    /// The source's type name, e.g. `F16` (the type most of its weights have).
    pub source_type: String,
    /// Tensors requantized (the rest were copied).
    pub n_quantized: usize,
}

/// The name, dimensions and type of every tensor of a GGUF file.
fn tensor_shapes(content: &gguf_file::Content) -> Vec<TensorShape> {
    content
        .tensor_infos
        .iter()
        .map(|(name, info)| TensorShape {
            name: name.clone(),
            dims: info.shape.dims().to_vec(),
            dtype: info.ggml_dtype,
        })
        .collect()
}

/// The type name of most of a file's weights (by elements), e.g. `F16` or `Q4_1`.
fn dominant_type(tensors: &[TensorShape]) -> String {
    let mut counts: Vec<(GgmlDType, usize)> = Vec::new();
    for tensor in tensors.iter().filter(|tensor| tensor.dims.len() >= 2) {
        let elements: usize = tensor.dims.iter().product();
        match counts.iter_mut().find(|(dtype, _)| *dtype == tensor.dtype) {
            Some((_, count)) => *count += elements,
            None => counts.push((tensor.dtype, elements)),
        }
    }
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts.first().map(|(dtype, _)| dtype_name(*dtype)).unwrap_or_else(|| "F32".to_owned())
}

fn dtype_name(dtype: GgmlDType) -> String {
    match dtype {
        GgmlDType::Q2K => "Q2_K".into(),
        GgmlDType::Q3K => "Q3_K".into(),
        GgmlDType::Q4K => "Q4_K".into(),
        GgmlDType::Q5K => "Q5_K".into(),
        GgmlDType::Q6K => "Q6_K".into(),
        GgmlDType::Q8K => "Q8_K".into(),
        other => format!("{other:?}"),
    }
}

/// Reads the GGUF at `source`, quantizes its tensors to `quantization` and writes the new
/// file to `destination`. `progress(done, total)` counts source tensor bytes. Every tensor of
/// the result is held in memory until it is written (about the size of the new file).
pub fn quantize_gguf<W: Write + Seek>(
    source: &Path,
    destination: &mut W,
    quantization: Quantization,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<QuantizeSummary, String> {
    let mut reader =
        BufReader::new(File::open(source).map_err(|error| format!("opening {}: {error}", source.display()))?);
    let content = gguf_file::Content::read(&mut reader).map_err(|error| format!("reading the GGUF header: {error}"))?;
    let shapes = tensor_shapes(&content);
    let architecture = match content.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(architecture)) => architecture.clone(),
        _ => return Err("the GGUF file names no general.architecture".into()),
    };
    let n_layers = content
        .metadata
        .get(&format!("{architecture}.block_count"))
        .and_then(|value| value.to_u32().ok())
        .ok_or_else(|| format!("the GGUF file has no {architecture}.block_count"))? as usize;
    let is_70b = architecture == "llama" && n_layers == 80;
    let types = plan_types(&shapes, quantization, n_layers, is_70b);
    let source_type = dominant_type(&shapes);

    let total: u64 = shapes
        .iter()
        .map(|shape| {
            let elements = shape.dims.iter().product::<usize>();
            (elements / shape.dtype.block_size() * shape.dtype.type_size()) as u64
        })
        .sum();
    let mut done = 0u64;
    progress(done, total);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(shapes.len());
    let mut n_quantized = 0;
    for index in processing_order(&shapes) {
        let shape = &shapes[index];
        let tensor = content
            .tensor(&mut reader, &shape.name, &Device::Cpu)
            .map_err(|error| format!("reading tensor {}: {error}", shape.name))?;
        let source_bytes = tensor.storage_size_in_bytes() as u64;
        let tensor = if types[index] == shape.dtype {
            tensor
        } else {
            let values =
                tensor.dequantize(&Device::Cpu).map_err(|error| format!("reading tensor {}: {error}", shape.name))?;
            n_quantized += 1;
            quantize_tensor(&values, types[index])
                .map_err(|error| format!("quantizing tensor {}: {error}", shape.name))?
        };
        tensors.push((shape.name.clone(), tensor));
        done += source_bytes;
        progress(done, total);
    }

    let file_type = gguf_file::Value::U32(quantization.file_type());
    let quantization_version = gguf_file::Value::U32(2);
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != "general.file_type" && key.as_str() != "general.quantization_version")
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    metadata.push(("general.file_type", &file_type));
    metadata.push(("general.quantization_version", &quantization_version));
    // The same input makes the same bytes (and so the same blob digest) every time.
    metadata.sort_by_key(|(key, _)| *key);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect();
    gguf_file::write(destination, &metadata, &tensor_refs)
        .map_err(|error| format!("writing the GGUF file: {error}"))?;
    Ok(QuantizeSummary { source_type, n_quantized })
}

/// [`engine::Quantizer`] for GGUF weights, with this module's llama.cpp-compatible quantizer.
#[derive(Debug, Clone, Copy, Default)]
pub struct GgufQuantizer;

impl engine::Quantizer for GgufQuantizer {
    fn targets(&self) -> Vec<&'static str> {
        vec!["q8_0", "q4_0", "q4_K_S", "q4_K_M"]
    }

    fn source_type(&self, source: &Path) -> Result<String, engine::EngineError> {
        let mut reader =
            BufReader::new(File::open(source).map_err(|error| engine::EngineError::Request(error.to_string()))?);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|error| engine::EngineError::Request(error.to_string()))?;
        Ok(dominant_type(&tensor_shapes(&content)))
    }

    fn quantize(
        &self,
        source: &Path,
        destination: &mut File,
        target: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<engine::Quantized, engine::EngineError> {
        let quantization = Quantization::parse(target)
            .ok_or_else(|| engine::EngineError::Unsupported(format!("unsupported quantization type {target}")))?;
        let mut writer = std::io::BufWriter::new(destination);
        quantize_gguf(source, &mut writer, quantization, progress).map_err(engine::EngineError::Request)?;
        writer.flush().map_err(|error| engine::EngineError::Request(format!("writing the GGUF file: {error}")))?;
        Ok(engine::Quantized { file_type: quantization.name().to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, dims: &[usize]) -> TensorShape {
        TensorShape { name: name.to_owned(), dims: dims.to_vec(), dtype: GgmlDType::F16 }
    }

    /// A llama-shaped model: `width` wide, `n_layers` blocks, tied embeddings unless `output`.
    fn llama(width: usize, ffn: usize, n_layers: usize, output: bool) -> Vec<TensorShape> {
        let mut tensors = vec![shape("token_embd.weight", &[1000, width]), shape("output_norm.weight", &[width])];
        if output {
            tensors.push(shape("output.weight", &[1000, width]));
        }
        for layer in 0..n_layers {
            for (name, dims) in [
                ("attn_norm.weight", vec![width]),
                ("attn_q.weight", vec![width, width]),
                ("attn_k.weight", vec![width / 4, width]),
                ("attn_v.weight", vec![width / 4, width]),
                ("attn_output.weight", vec![width, width]),
                ("ffn_norm.weight", vec![width]),
                ("ffn_gate.weight", vec![ffn, width]),
                ("ffn_up.weight", vec![ffn, width]),
                ("ffn_down.weight", vec![width, ffn]),
            ] {
                tensors.push(shape(&format!("blk.{layer}.{name}"), &dims));
            }
        }
        tensors
    }

    fn type_of(tensors: &[TensorShape], types: &[GgmlDType], name: &str) -> GgmlDType {
        types[tensors.iter().position(|tensor| tensor.name == name).unwrap()]
    }

    #[test]
    fn q4_k_m_spends_more_bits_where_llama_cpp_does() {
        let tensors = llama(512, 1024, 16, true);
        let types = plan_types(&tensors, Quantization::Q4KM, 16, false);
        let more_bits: Vec<usize> =
            (0..16).filter(|&layer| use_more_bits(layer, 16)).map(|layer| layer as usize).collect();
        assert_eq!(more_bits, vec![0, 1, 4, 7, 10, 13, 14, 15]);
        for layer in 0..16 {
            let expected = if more_bits.contains(&layer) { GgmlDType::Q6K } else { GgmlDType::Q4K };
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.attn_v.weight")), expected, "layer {layer}");
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.ffn_down.weight")), expected, "layer {layer}");
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.attn_q.weight")), GgmlDType::Q4K);
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.attn_norm.weight")), GgmlDType::F16);
        }
        assert_eq!(type_of(&tensors, &types, "output.weight"), GgmlDType::Q6K);
        assert_eq!(type_of(&tensors, &types, "token_embd.weight"), GgmlDType::Q4K);
    }

    #[test]
    fn q4_k_s_raises_the_first_layers() {
        let tensors = llama(512, 1024, 16, true);
        let types = plan_types(&tensors, Quantization::Q4KS, 16, false);
        for layer in 0..16 {
            let attention_v = if layer < 4 { GgmlDType::Q5K } else { GgmlDType::Q4K };
            let ffn_down = if layer < 2 { GgmlDType::Q5K } else { GgmlDType::Q4K };
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.attn_v.weight")), attention_v);
            assert_eq!(type_of(&tensors, &types, &format!("blk.{layer}.ffn_down.weight")), ffn_down);
        }
    }

    #[test]
    fn rows_that_do_not_fill_k_blocks_fall_back_and_tied_embeddings_count_as_output() {
        // SmolLM2-135M: 576 wide (not a multiple of 256), 1536 in the feed-forward, tied.
        let tensors = llama(576, 1536, 30, false);
        let types = plan_types(&tensors, Quantization::Q4KM, 30, false);
        assert_eq!(type_of(&tensors, &types, "token_embd.weight"), GgmlDType::Q8_0);
        assert_eq!(type_of(&tensors, &types, "blk.5.attn_q.weight"), GgmlDType::Q5_0);
        assert_eq!(type_of(&tensors, &types, "blk.0.attn_v.weight"), GgmlDType::Q8_0);
        assert_eq!(type_of(&tensors, &types, "blk.5.attn_v.weight"), GgmlDType::Q8_0, "more bits: Q6_K, then Q8_0");
        assert_eq!(type_of(&tensors, &types, "blk.6.attn_v.weight"), GgmlDType::Q5_0);
        // ffn_down rows are 1536 long: k-quants fit.
        assert_eq!(type_of(&tensors, &types, "blk.0.ffn_down.weight"), GgmlDType::Q6K);
        assert_eq!(type_of(&tensors, &types, "blk.6.ffn_down.weight"), GgmlDType::Q4K);
        let q4_0 = plan_types(&tensors, Quantization::Q4_0, 30, false);
        assert_eq!(type_of(&tensors, &q4_0, "token_embd.weight"), GgmlDType::Q8_0);
        assert_eq!(type_of(&tensors, &q4_0, "blk.5.attn_q.weight"), GgmlDType::Q4_0);
        let q8_0 = plan_types(&tensors, Quantization::Q8_0, 30, false);
        assert!(q8_0.iter().zip(&tensors).all(|(dtype, tensor)| *dtype == GgmlDType::Q8_0 || tensor.dims.len() == 1));
        // Rows of 40: nothing but F16 fits.
        assert_eq!(fallback(GgmlDType::Q4K, 40), GgmlDType::F16);
        assert_eq!(fallback(GgmlDType::Q6K, 96), GgmlDType::Q8_0);
    }

    #[test]
    fn order_is_by_layer_then_name() {
        let tensors = vec![
            shape("blk.10.attn_v.weight", &[8, 8]),
            shape("blk.2.attn_v.weight", &[8, 8]),
            shape("token_embd.weight", &[8, 8]),
            shape("blk.2.attn_k.weight", &[8, 8]),
        ];
        let names: Vec<&str> =
            processing_order(&tensors).into_iter().map(|index| tensors[index].name.as_str()).collect();
        assert_eq!(names, ["token_embd.weight", "blk.2.attn_k.weight", "blk.2.attn_v.weight", "blk.10.attn_v.weight"]);
    }

    #[test]
    fn names_parse_in_any_case() {
        assert_eq!(Quantization::parse("q4_K_M"), Some(Quantization::Q4KM));
        assert_eq!(Quantization::parse("Q8_0"), Some(Quantization::Q8_0));
        assert_eq!(Quantization::parse("q4_k_s"), Some(Quantization::Q4KS));
        assert_eq!(Quantization::parse("q5_K_M"), None);
    }
}
