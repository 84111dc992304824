//! Requantizes weights whose type has no SIMD kernel in candle (Q4_1, Q5_0, Q5_1) to Q8_0,
//! which has AVX2 kernels, once per weights file, into a cache directory.
//!
//! candle runs Q4_1 matrix products in scalar code; on SmolLM2-135M Q4_1 the Q8_0 copy is
//! faster at both prompt evaluation and decoding, for 1.5 times the memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// The file to load: `path` itself, or its cached Q8_0 copy when `path` holds tensors of a
/// type without SIMD kernels and a cache directory is configured.
pub(crate) fn weights_to_load(path: &Path, cache_dir: Option<&Path>) -> Result<PathBuf, String> {
    let Some(cache_dir) = cache_dir else { return Ok(path.to_owned()) };
    let mut reader = BufReader::new(File::open(path).map_err(|error| error.to_string())?);
    let content = gguf_file::Content::read(&mut reader).map_err(|error| error.to_string())?;
    let slow = content.tensor_infos.values().any(|info| has_no_simd_kernel(info.ggml_dtype));
    if !slow {
        return Ok(path.to_owned());
    }
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = cache_dir.join(format!("{file_name}.q8_0.gguf"));
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(cache_dir).map_err(|error| format!("creating {}: {error}", cache_dir.display()))?;
    tracing::info!(from = %path.display(), to = %target.display(), "requantizing weights to Q8_0 for SIMD kernels");
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|name| content.tensor_infos[*name].offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(&mut reader, name, &Device::Cpu).map_err(|error| error.to_string())?;
        let last_dim = tensor.shape().dims().last().copied().unwrap_or(0);
        let tensor = if has_no_simd_kernel(tensor.dtype()) && last_dim % 32 == 0 {
            let values = tensor.dequantize(&Device::Cpu).map_err(|error| error.to_string())?;
            QTensor::quantize(&values, GgmlDType::Q8_0).map_err(|error| error.to_string())?
        } else {
            tensor
        };
        tensors.push((name.clone(), tensor));
    }
    let metadata: HashMap<&str, &gguf_file::Value> =
        content.metadata.iter().map(|(key, value)| (key.as_str(), value)).collect();
    let mut metadata: Vec<(&str, &gguf_file::Value)> = metadata.into_iter().collect();
    metadata.sort_by_key(|(key, _)| *key);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect();
    let temporary = tempfile_in(cache_dir)?;
    {
        let mut writer = BufWriter::new(File::create(&temporary).map_err(|error| error.to_string())?);
        gguf_file::write(&mut writer, &metadata, &tensor_refs).map_err(|error| error.to_string())?;
        let file = writer.into_inner().map_err(|error| error.to_string())?;
        file.sync_all().map_err(|error| error.to_string())?;
    }
    std::fs::rename(&temporary, &target).map_err(|error| error.to_string())?;
    Ok(target)
}

fn has_no_simd_kernel(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

fn tempfile_in(dir: &Path) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    Ok(dir.join(format!(".partial-{}-{nanos}", std::process::id())))
}
