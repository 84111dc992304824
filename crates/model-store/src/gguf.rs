//! A reader for GGUF headers: metadata key-values and tensor shapes, without the weights.
//!
//! The store uses it to describe models (`/api/show`, `/api/tags` details) and to validate
//! uploads; the engine reads the weights itself.

use std::io::{self, BufReader, Read};
use std::path::Path;

use serde_json::Value;

/// The parsed header of a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: serde_json::Map<String, Value>,
    /// Tensor names, dtypes and shapes.
    pub tensors: Vec<TensorInfo>,
}

/// One tensor's description.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// GGML type name, e.g. `Q4_1`.
    pub kind: String,
    /// Dimensions, innermost first.
    pub shape: Vec<u64>,
}

/// Reading failed or the file is not GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Not a GGUF file.
    #[error("invalid file magic")]
    BadMagic,
    /// A value type or length makes no sense.
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    /// IO.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = std::fs::File::open(path)?;
    parse_header(&mut BufReader::with_capacity(1 << 16, file))
}

/// Parses a GGUF header from a reader positioned at the start of the file.
pub fn parse_header(reader: &mut impl Read) -> Result<GgufHeader, GgufError> {
    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic);
    }
    let version = read_u32(reader)?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Malformed(format!("unsupported version {version}")));
    }
    let n_tensors = read_u64(reader)?;
    let n_metadata = read_u64(reader)?;
    if n_tensors > 1 << 24 || n_metadata > 1 << 24 {
        return Err(GgufError::Malformed("too many entries".into()));
    }
    let mut metadata = serde_json::Map::new();
    for _ in 0..n_metadata {
        let key = read_string(reader)?;
        let value_type = read_u32(reader)?;
        let value = read_value(reader, value_type)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = read_string(reader)?;
        let n_dims = read_u32(reader)?;
        if n_dims > 8 {
            return Err(GgufError::Malformed(format!("tensor {name} has {n_dims} dimensions")));
        }
        let shape = (0..n_dims).map(|_| read_u64(reader)).collect::<Result<Vec<_>, _>>()?;
        let kind = ggml_type_name(read_u32(reader)?);
        let _offset = read_u64(reader)?;
        tensors.push(TensorInfo { name, kind, shape });
    }
    Ok(GgufHeader { version, metadata, tensors })
}

impl GgufHeader {
    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> String {
        self.string("general.architecture").unwrap_or_default()
    }

    /// A string metadata value.
    pub fn string(&self, key: &str) -> Option<String> {
        self.metadata.get(key).and_then(Value::as_str).map(str::to_owned)
    }

    /// An integer metadata value.
    pub fn integer(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(Value::as_u64)
    }

    /// `<arch>.context_length`.
    pub fn context_length(&self) -> Option<u64> {
        self.integer(&format!("{}.context_length", self.architecture()))
    }

    /// `<arch>.embedding_length`.
    pub fn embedding_length(&self) -> Option<u64> {
        self.integer(&format!("{}.embedding_length", self.architecture()))
    }

    /// The Jinja chat template embedded by the converter, if any.
    pub fn chat_template(&self) -> Option<String> {
        self.string("tokenizer.chat_template")
    }

    /// Total number of weights.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(|tensor| tensor.shape.iter().product::<u64>()).sum()
    }

    /// Parameter count in Ollama's human form, e.g. `134.52M`.
    pub fn parameter_size(&self) -> String {
        human_number(self.parameter_count())
    }

    /// Quantization level from `general.file_type`, else the most common tensor type.
    pub fn quantization_level(&self) -> String {
        if let Some(file_type) = self.integer("general.file_type") {
            if let Some(name) = file_type_name(file_type) {
                return name.to_owned();
            }
        }
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for tensor in &self.tensors {
            *counts.entry(tensor.kind.as_str()).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, count)| *count).map(|(kind, _)| kind.to_owned()).unwrap_or_default()
    }
}

/// Ollama's `format.HumanNumber`.
pub fn human_number(number: u64) -> String {
    let as_float = number as f64;
    let scaled = |divisor: f64, suffix: &str, decimals: usize| {
        let value = as_float / divisor;
        if value == value.floor() {
            format!("{value:.0}{suffix}")
        } else {
            format!("{value:.decimals$}{suffix}")
        }
    };
    match number {
        n if n >= 1_000_000_000 => scaled(1e9, "B", 1),
        n if n >= 1_000_000 => scaled(1e6, "M", 2),
        n if n >= 1_000 => format!("{:.0}K", as_float / 1e3),
        n => n.to_string(),
    }
}

fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

fn ggml_type_name(kind: u32) -> String {
    let name = match kind {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        30 => "BF16",
        other => return format!("type{other}"),
    };
    name.to_owned()
}

fn read_value(reader: &mut impl Read, value_type: u32) -> Result<Value, GgufError> {
    Ok(match value_type {
        0 => Value::from(read_array::<1>(reader)?[0]),
        1 => Value::from(read_array::<1>(reader)?[0] as i8),
        2 => Value::from(u16::from_le_bytes(read_array(reader)?)),
        3 => Value::from(i16::from_le_bytes(read_array(reader)?)),
        4 => Value::from(read_u32(reader)?),
        5 => Value::from(i32::from_le_bytes(read_array(reader)?)),
        6 => Value::from(f32::from_le_bytes(read_array(reader)?) as f64),
        7 => Value::from(read_array::<1>(reader)?[0] != 0),
        8 => Value::from(read_string(reader)?),
        9 => {
            let item_type = read_u32(reader)?;
            let n_items = read_u64(reader)?;
            if n_items > 1 << 26 {
                return Err(GgufError::Malformed(format!("array of {n_items} items")));
            }
            let items = (0..n_items).map(|_| read_value(reader, item_type)).collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
        10 => Value::from(read_u64(reader)?),
        11 => Value::from(i64::from_le_bytes(read_array(reader)?)),
        12 => Value::from(f64::from_le_bytes(read_array(reader)?)),
        other => return Err(GgufError::Malformed(format!("unknown value type {other}"))),
    })
}

fn read_array<const N: usize>(reader: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_u32(reader: &mut impl Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_array(reader)?))
}

fn read_u64(reader: &mut impl Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_array(reader)?))
}

fn read_string(reader: &mut impl Read) -> Result<String, GgufError> {
    let len = read_u64(reader)?;
    if len > 1 << 26 {
        return Err(GgufError::Malformed(format!("string of {len} bytes")));
    }
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A metadata value to write.
#[derive(Debug, Clone)]
pub enum WriteValue {
    /// `u32`.
    U32(u32),
    /// `u64`.
    U64(u64),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string.
    String(String),
    /// An array of strings.
    Strings(Vec<String>),
    /// An array of `i32`.
    I32s(Vec<i32>),
    /// An array of `f32`.
    F32s(Vec<f32>),
}

/// Writes a GGUF v3 file with the given metadata and F32 tensors (name, shape innermost first,
/// values). Tests use it to make tiny models by code.
pub fn write_gguf(
    writer: &mut impl io::Write,
    metadata: &[(&str, WriteValue)],
    tensors: &[(&str, Vec<u64>, Vec<f32>)],
) -> io::Result<()> {
    const ALIGNMENT: u64 = 32;
    fn string(writer: &mut impl io::Write, text: &str) -> io::Result<()> {
        writer.write_all(&(text.len() as u64).to_le_bytes())?;
        writer.write_all(text.as_bytes())
    }
    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut header, key)?;
        match value {
            WriteValue::U32(number) => {
                header.extend_from_slice(&4u32.to_le_bytes());
                header.extend_from_slice(&number.to_le_bytes());
            }
            WriteValue::U64(number) => {
                header.extend_from_slice(&10u32.to_le_bytes());
                header.extend_from_slice(&number.to_le_bytes());
            }
            WriteValue::F32(number) => {
                header.extend_from_slice(&6u32.to_le_bytes());
                header.extend_from_slice(&number.to_le_bytes());
            }
            WriteValue::Bool(flag) => {
                header.extend_from_slice(&7u32.to_le_bytes());
                header.push(u8::from(*flag));
            }
            WriteValue::String(text) => {
                header.extend_from_slice(&8u32.to_le_bytes());
                string(&mut header, text)?;
            }
            WriteValue::Strings(items) => {
                header.extend_from_slice(&9u32.to_le_bytes());
                header.extend_from_slice(&8u32.to_le_bytes());
                header.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    string(&mut header, item)?;
                }
            }
            WriteValue::I32s(items) => {
                header.extend_from_slice(&9u32.to_le_bytes());
                header.extend_from_slice(&5u32.to_le_bytes());
                header.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    header.extend_from_slice(&item.to_le_bytes());
                }
            }
            WriteValue::F32s(items) => {
                header.extend_from_slice(&9u32.to_le_bytes());
                header.extend_from_slice(&6u32.to_le_bytes());
                header.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    header.extend_from_slice(&item.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, shape, values) in tensors {
        string(&mut header, name)?;
        header.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for dim in shape {
            header.extend_from_slice(&dim.to_le_bytes());
        }
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += (values.len() as u64 * 4).div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    while !(header.len() as u64).is_multiple_of(ALIGNMENT) {
        header.push(0);
    }
    writer.write_all(&header)?;
    for (_, _, values) in tensors {
        let mut bytes: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        while !(bytes.len() as u64).is_multiple_of(ALIGNMENT) {
            bytes.push(0);
        }
        writer.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_header_reads_back() {
        let mut bytes = Vec::new();
        write_gguf(
            &mut bytes,
            &[
                ("general.architecture", WriteValue::String("llama".into())),
                ("llama.context_length", WriteValue::U32(2048)),
                ("general.file_type", WriteValue::U32(0)),
                ("tokenizer.ggml.tokens", WriteValue::Strings(vec!["a".into(), "b".into()])),
            ],
            &[("token_embd.weight", vec![4, 2], vec![0.5; 8])],
        )
        .unwrap();
        let header = parse_header(&mut bytes.as_slice()).unwrap();
        assert_eq!(header.architecture(), "llama");
        assert_eq!(header.context_length(), Some(2048));
        assert_eq!(header.quantization_level(), "F32");
        assert_eq!(header.parameter_count(), 8);
        assert_eq!(header.metadata["tokenizer.ggml.tokens"], serde_json::json!(["a", "b"]));
        assert_eq!(header.tensors[0].shape, vec![4, 2]);
        assert!(matches!(parse_header(&mut &b"GGML...."[..]), Err(GgufError::BadMagic)));
    }

    #[test]
    fn human_numbers_match_ollama() {
        assert_eq!(human_number(134_515_008), "134.52M");
        assert_eq!(human_number(7_000_000_000), "7B");
        assert_eq!(human_number(1_500_000_000), "1.5B");
        assert_eq!(human_number(22_000), "22K");
        assert_eq!(human_number(999), "999");
    }
}
