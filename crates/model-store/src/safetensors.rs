//! Reading safetensors files (a length, a JSON header naming each tensor's type, shape and byte
//! range, then the bytes), bounded: the header size, every range and every shape are checked
//! against the file before a byte of a tensor is read.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest JSON header read, as the reference implementation allows.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// A safetensors file that cannot be read, and why.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid safetensors file: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> SafetensorsError {
    SafetensorsError::Invalid(message.into())
}

/// The element types of the format; only the floating-point ones are read as values (the
/// others, such as BERT's I64 `position_ids`, are checked and skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl ElementType {
    fn parse(name: &str) -> Option<ElementType> {
        Some(match name {
            "F64" => ElementType::F64,
            "F32" => ElementType::F32,
            "F16" => ElementType::F16,
            "BF16" => ElementType::BF16,
            "I64" => ElementType::I64,
            "I32" => ElementType::I32,
            "I16" => ElementType::I16,
            "I8" => ElementType::I8,
            "U8" => ElementType::U8,
            "BOOL" => ElementType::Bool,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            ElementType::F64 | ElementType::I64 => 8,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F16 | ElementType::BF16 | ElementType::I16 => 2,
            ElementType::I8 | ElementType::U8 | ElementType::Bool => 1,
        }
    }
}

/// One tensor's place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub element_type: ElementType,
    /// Outermost dimension first.
    pub shape: Vec<u64>,
    /// Byte range from the start of the data section.
    pub start: u64,
    pub end: u64,
}

/// An open safetensors file with its checked header.
pub struct SafetensorsFile {
    file: std::fs::File,
    data_start: u64,
    pub tensors: BTreeMap<String, TensorEntry>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        let mut file = std::fs::File::open(path)?;
        let file_length = file.metadata()?.len();
        let mut length_bytes = [0u8; 8];
        file.read_exact(&mut length_bytes).map_err(|_| invalid("shorter than its header length"))?;
        let header_length = u64::from_le_bytes(length_bytes);
        if header_length > MAX_HEADER_BYTES || header_length > file_length.saturating_sub(8) {
            return Err(invalid(format!("header of {header_length} bytes in a file of {file_length}")));
        }
        let mut header = vec![0u8; header_length as usize];
        file.read_exact(&mut header)?;
        let data_start = 8 + header_length;
        let tensors = parse_header(&header, file_length - data_start)?;
        Ok(SafetensorsFile { file, data_start, tensors })
    }

    /// The tensor's values as F32 (F16 and BF16 widened exactly).
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, SafetensorsError> {
        let entry = self.tensors.get(name).ok_or_else(|| invalid(format!("no tensor {name}")))?.clone();
        self.file.seek(SeekFrom::Start(self.data_start + entry.start))?;
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        self.file.read_exact(&mut bytes)?;
        Ok(match entry.element_type {
            ElementType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            ElementType::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            ElementType::BF16 => {
                bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => return Err(invalid(format!("{name}: {other:?} values are not floating point"))),
        })
    }
}

/// The tensors of a header, each checked: a known type, a shape whose size is its byte range,
/// a range inside the `data_length` bytes that follow the header.
pub fn parse_header(header: &[u8], data_length: u64) -> Result<BTreeMap<String, TensorEntry>, SafetensorsError> {
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|error| invalid(format!("header is not JSON: {error}")))?;
    let object = value.as_object().ok_or_else(|| invalid("header is not a JSON object"))?;
    let mut tensors = BTreeMap::new();
    for (name, entry) in object {
        if name == "__metadata__" {
            continue;
        }
        let element_type = match entry.get("dtype").and_then(|dtype| dtype.as_str()) {
            Some(dtype) => ElementType::parse(dtype)
                .ok_or_else(|| invalid(format!("{name}: tensor type {dtype} is not supported")))?,
            None => return Err(invalid(format!("{name}: no dtype"))),
        };
        let numbers = |key: &str| -> Result<Vec<u64>, SafetensorsError> {
            entry
                .get(key)
                .and_then(|value| value.as_array())
                .ok_or_else(|| invalid(format!("{name}: no {key}")))?
                .iter()
                .map(|number| number.as_u64().ok_or_else(|| invalid(format!("{name}: {key} is not a list of sizes"))))
                .collect()
        };
        let shape = numbers("shape")?;
        let offsets = numbers("data_offsets")?;
        let [start, end] = offsets[..] else { return Err(invalid(format!("{name}: data_offsets is not a pair"))) };
        let elements = shape.iter().try_fold(1u64, |product, dim| product.checked_mul(*dim));
        let bytes = elements.and_then(|elements| elements.checked_mul(element_type.size()));
        if start > end || end > data_length || bytes != Some(end - start) {
            return Err(invalid(format!(
                "{name}: shape {shape:?} of {element_type:?} does not fill bytes {start}..{end} of {data_length}"
            )));
        }
        tensors.insert(name.clone(), TensorEntry { element_type, shape, start, end });
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_read_and_every_range_checked() {
        let header = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},
            "b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]}}"#;
        let tensors = parse_header(header, 32).unwrap();
        assert_eq!(tensors["a"].shape, [2, 3]);
        assert_eq!(tensors["b"].element_type, ElementType::F16);
        // The data section is shorter than a range.
        assert!(parse_header(header, 31).is_err());
        let wrong_size = br#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#;
        assert!(parse_header(wrong_size, 100).unwrap_err().to_string().contains("does not fill"));
        let overflow = br#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#;
        assert!(parse_header(overflow, 100).is_err());
        let unknown = br#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#;
        assert!(parse_header(unknown, 100).unwrap_err().to_string().contains("C64"));
        let integers = br#"{"ids":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]}}"#;
        assert_eq!(parse_header(integers, 16).unwrap()["ids"].element_type, ElementType::I64);
        assert!(parse_header(b"[1,2]", 100).is_err());
        assert!(parse_header(b"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8]}}", 100).is_err());
    }

    #[test]
    fn files_with_a_lying_header_length_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("bad.safetensors");
        let mut bytes = (u64::MAX).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        std::fs::write(&path, &bytes).unwrap();
        assert!(SafetensorsFile::open(&path).is_err());
        std::fs::write(&path, [1u8, 2]).unwrap();
        assert!(SafetensorsFile::open(&path).is_err());
    }

    #[test]
    fn values_widen_to_f32() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ok.safetensors");
        let header = br#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend(half::f16::from_f32(1.5).to_le_bytes());
        bytes.extend(half::f16::from_f32(-2.0).to_le_bytes());
        bytes.extend(half::bf16::from_f32(0.25).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let mut file = SafetensorsFile::open(&path).unwrap();
        assert_eq!(file.read_f32("h").unwrap(), [1.5, -2.0]);
        assert_eq!(file.read_f32("b").unwrap(), [0.25]);
    }
}
