//! Requantizes weights whose type has no SIMD kernel in candle (Q5_0, Q5_1) to Q8_0, which has
//! AVX2 kernels, once per weights file, into a cache directory.
//!
//! candle runs Q5_0 and Q5_1 matrix products in scalar code; a Q8_0 copy is faster at both
//! prompt evaluation and decoding, for about 1.5 times the memory. Q4_1 has kernels of its own
//! (`cpu_kernels::quantized_dot`, called by the vendored candle) and loads as stored.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// The file to load: `path` itself, or its cached Q8_0 copy when `path` holds tensors of a
/// type without SIMD kernels and a cache directory is configured.
pub(crate) fn weights_to_load(
    path: &Path,
    cache_dir: Option<&Path>,
    requantize_type: RequantizeType,
) -> Result<PathBuf, String> {
    let Some(cache_dir) = cache_dir else { return Ok(path.to_owned()) };
    let mut reader = BufReader::new(File::open(path).map_err(|error| error.to_string())?);
    let content = gguf_file::Content::read(&mut reader).map_err(|error| error.to_string())?;
    if !holds_tensors_without_simd_kernels(&content) {
        return Ok(path.to_owned());
    }
    let target_type = requantize_type.ggml_dtype();
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = cache_dir.join(format!("{file_name}.{target_type:?}.gguf").to_lowercase());
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
            // Rows that do not fill the target's blocks take Q8_0's 32-wide blocks.
            let dtype = if last_dim % target_type.block_size() == 0 { target_type } else { GgmlDType::Q8_0 };
            QTensor::quantize(&values, dtype).map_err(|error| error.to_string())?
        } else {
            tensor
        };
        tensors.push((name.clone(), tensor));
    }
    let mut metadata: Vec<(&str, &gguf_file::Value)> =
        content.metadata.iter().map(|(key, value)| (key.as_str(), value)).collect();
    metadata.sort_by_key(|(key, _)| *key);
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect();
    let temporary = temporary_path_in(cache_dir);
    {
        let mut writer = BufWriter::new(File::create(&temporary).map_err(|error| error.to_string())?);
        gguf_file::write(&mut writer, &metadata, &tensor_refs).map_err(|error| error.to_string())?;
        let file = writer.into_inner().map_err(|error| error.to_string())?;
        file.sync_all().map_err(|error| error.to_string())?;
    }
    std::fs::rename(&temporary, &target).map_err(|error| error.to_string())?;
    Ok(target)
}

/// The type requantized copies take: Q8_0 (the default), or another for measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequantizeType {
    /// Q8_0, which has AVX2 kernels.
    Q8_0,
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// Q4_K.
    Q4K,
    /// Q6_K.
    Q6K,
}

impl RequantizeType {
    /// `q8_0`, `f32`, `f16`, `q4k` or `q6k`.
    pub fn from_name(name: &str) -> Option<RequantizeType> {
        match name.to_ascii_lowercase().as_str() {
            "q8_0" | "q80" => Some(RequantizeType::Q8_0),
            "f32" => Some(RequantizeType::F32),
            "f16" => Some(RequantizeType::F16),
            "q4k" | "q4_k" => Some(RequantizeType::Q4K),
            "q6k" | "q6_k" => Some(RequantizeType::Q6K),
            _ => None,
        }
    }

    fn ggml_dtype(self) -> GgmlDType {
        match self {
            RequantizeType::Q8_0 => GgmlDType::Q8_0,
            RequantizeType::F32 => GgmlDType::F32,
            RequantizeType::F16 => GgmlDType::F16,
            RequantizeType::Q4K => GgmlDType::Q4K,
            RequantizeType::Q6K => GgmlDType::Q6K,
        }
    }
}

fn has_no_simd_kernel(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Whether a weights file with this header needs a copy: it holds tensors without SIMD kernels.
fn holds_tensors_without_simd_kernels(content: &gguf_file::Content) -> bool {
    content.tensor_infos.values().any(|info| has_no_simd_kernel(info.ggml_dtype))
}

fn temporary_path_in(dir: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    dir.join(format!(".partial-{}-{nanos}", std::process::id()))
}

/// Removes what a crash, a deleted model or an older modeld left in the cache directory:
/// `.partial-*` files of processes that are gone, copies of weights files that `source_path`
/// no longer finds (copies are named after the store's blob, `sha256-<hex>.<type>.gguf`), and
/// copies of weights files that need none any more (Q4_1 weights were copied to Q8_0 before
/// they had kernels of their own). A source whose header cannot be read keeps its copy. Returns
/// the number of files removed.
pub fn remove_stale_copies(cache_dir: &Path, source_path: impl Fn(&str) -> Option<PathBuf>) -> usize {
    let Ok(entries) = std::fs::read_dir(cache_dir) else { return 0 };
    let mut n_removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = if let Some(rest) = name.strip_prefix(".partial-") {
            let pid = rest.split('-').next().unwrap_or_default();
            pid != std::process::id().to_string() && !Path::new("/proc").join(pid).exists()
        } else if name.starts_with("sha256-") && name.ends_with(".gguf") {
            let source = name.split('.').next().unwrap_or_default();
            match source_path(source) {
                None => true,
                Some(path) => needs_copy(&path) == Some(false),
            }
        } else {
            false
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            n_removed += 1;
        }
    }
    n_removed
}

/// Whether the weights file at `path` holds tensors without SIMD kernels; `None` when its
/// header cannot be read.
fn needs_copy(path: &Path) -> Option<bool> {
    let mut reader = BufReader::new(File::open(path).ok()?);
    let content = gguf_file::Content::read(&mut reader).ok()?;
    Some(holds_tensors_without_simd_kernels(&content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn stale_copies_and_dead_partial_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sources = tempfile::tempdir().unwrap();
        // A Q5_0 source still needs its copy; a Q4_1 source (copied by an older modeld) does
        // not; an unreadable source keeps its copy; a missing source loses it.
        write_model(&sources.path().join("sha256-aaaa"), GgmlDType::Q5_0);
        write_model(&sources.path().join("sha256-cccc"), GgmlDType::Q4_1);
        std::fs::write(sources.path().join("sha256-dddd"), b"not a gguf file").unwrap();
        let names = [
            "sha256-aaaa.q8_0.gguf",
            "sha256-bbbb.q8_0.gguf",
            "sha256-cccc.q8_0.gguf",
            "sha256-dddd.q8_0.gguf",
            ".partial-999999999-1",
            &format!(".partial-{}-2", std::process::id()),
            "notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed =
            remove_stale_copies(dir.path(), |source| Some(sources.path().join(source)).filter(|path| path.is_file()));
        assert_eq!(removed, 3);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                format!(".partial-{}-2", std::process::id()),
                "notes.txt".into(),
                "sha256-aaaa.q8_0.gguf".into(),
                "sha256-dddd.q8_0.gguf".into()
            ]
        );
    }

    fn write_model(path: &Path, dtype: GgmlDType) -> Vec<f32> {
        let values: Vec<f32> = (0..128).map(|index| (index as f32 * 0.37).sin()).collect();
        let tensor = Tensor::from_vec(values.clone(), (2, 64), &Device::Cpu).unwrap();
        let weight = QTensor::quantize(&tensor, dtype).unwrap();
        let norm = QTensor::quantize(&Tensor::ones(64, candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32)
            .unwrap();
        let architecture = gguf_file::Value::String("llama".into());
        let mut file = File::create(path).unwrap();
        gguf_file::write(
            &mut file,
            &[("general.architecture", &architecture)],
            &[("weight", &weight), ("norm", &norm)],
        )
        .unwrap();
        values
    }

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct TemporaryDir(PathBuf);

    impl TemporaryDir {
        fn new(name: &str) -> TemporaryDir {
            let path = std::env::temp_dir().join(format!("modeld-requantize-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TemporaryDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TemporaryDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(path: &Path) -> (gguf_file::Content, BufReader<File>) {
        let mut reader = BufReader::new(File::open(path).unwrap());
        (gguf_file::Content::read(&mut reader).unwrap(), reader)
    }

    #[test]
    fn slow_types_become_q8_0_once() {
        let dir = TemporaryDir::new("slow");
        let original = dir.path().join("model.gguf");
        let values = write_model(&original, GgmlDType::Q5_0);
        let cache = dir.path().join("cache");

        let converted = weights_to_load(&original, Some(&cache), RequantizeType::Q8_0).unwrap();
        assert_ne!(converted, original);
        let (content, mut reader) = read(&converted);
        assert_eq!(content.tensor_infos["weight"].ggml_dtype, GgmlDType::Q8_0);
        assert_eq!(content.tensor_infos["norm"].ggml_dtype, GgmlDType::F32);
        assert_eq!(content.metadata["general.architecture"].to_string().unwrap(), "llama");
        let weight = content.tensor(&mut reader, "weight", &Device::Cpu).unwrap();
        let restored: Vec<f32> = weight.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let worst = values.iter().zip(&restored).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 0.1, "requantized weights drifted by {worst}");

        // The second load reuses the copy.
        let modified = std::fs::metadata(&converted).unwrap().modified().unwrap();
        assert_eq!(weights_to_load(&original, Some(&cache), RequantizeType::Q8_0).unwrap(), converted);
        assert_eq!(std::fs::metadata(&converted).unwrap().modified().unwrap(), modified);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1, "no temporary files left");
    }

    #[test]
    fn fast_types_and_no_cache_load_as_they_are() {
        let dir = TemporaryDir::new("fast");
        let original = dir.path().join("model.gguf");
        write_model(&original, GgmlDType::Q8_0);
        assert_eq!(
            weights_to_load(&original, Some(&dir.path().join("cache")), RequantizeType::Q8_0).unwrap(),
            original
        );
        // Q4_1 has SIMD kernels of its own.
        let q4_1 = dir.path().join("q4_1.gguf");
        write_model(&q4_1, GgmlDType::Q4_1);
        assert_eq!(weights_to_load(&q4_1, Some(&dir.path().join("cache")), RequantizeType::Q8_0).unwrap(), q4_1);
        let slow = dir.path().join("slow.gguf");
        write_model(&slow, GgmlDType::Q5_0);
        assert_eq!(weights_to_load(&slow, None, RequantizeType::Q8_0).unwrap(), slow);
    }
}
