//! A reader for GGUF headers that no input can crash: metadata key-values and tensor shapes,
//! validated against the file's length, without reading the weights.
//!
//! The store uses it to describe models (`/api/show`, `/api/tags` details) and to validate
//! uploads; the engine reads the weights itself, so a header accepted here must never make it
//! allocate more than the file holds. The rules, after llama.cpp's `gguf.cpp`:
//!
//! - every count and length read from the file is checked against the bytes left in the file
//!   before anything is allocated, and against overall caps ([`MAX_STRING_BYTES`],
//!   [`MAX_METADATA_VALUES`], [`MAX_TENSORS`]);
//! - metadata arrays nest at most [`MAX_ARRAY_NESTING`] deep, so reading never recurses deeply;
//! - metadata keys are non-empty and unique; tensor names are unique and shorter than
//!   [`MAX_TENSOR_NAME_BYTES`] + 1;
//! - a tensor has at most [`MAX_DIMENSIONS`] dimensions, each at most `i64::MAX`, whose product
//!   fits in an `i64`; its GGML type is known, its first dimension a multiple of the type's block
//!   size; its byte size is computed with checked arithmetic;
//! - tensor data starts at the header end rounded up to `general.alignment` (default 32, a
//!   non-zero power of two); each tensor's offset is a multiple of the alignment and its bytes lie
//!   inside the file.
//!
//! Every violation, a truncated file included, is [`GgufError::Malformed`] with a message that
//! names the offending key or tensor.

use std::collections::HashSet;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde_json::Value;

/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMENSIONS: u32 = 4;
/// Deepest nesting of metadata arrays: an array of arrays, no deeper. llama.cpp accepts no
/// nested arrays at all; one level is kept for tools that write them.
pub const MAX_ARRAY_NESTING: usize = 2;
/// Total bytes of metadata keys, string values and tensor names kept in memory. Real tokenizers
/// hold 150k–260k token strings and as many merges: a few MiB.
pub const MAX_STRING_BYTES: u64 = 256 << 20;
/// Total metadata values (entries, scalars and array items) kept in memory. A 260k-token
/// vocabulary with scores, types and merges is about a million.
pub const MAX_METADATA_VALUES: u64 = 1 << 22;
/// Most tensors in one file.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Longest tensor name in bytes (`GGML_MAX_NAME` less its terminating NUL).
pub const MAX_TENSOR_NAME_BYTES: u64 = 63;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Smallest encoding of one metadata key-value: key length, value type, one byte of value.
const MIN_METADATA_ENTRY_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoding of one tensor description: name length, dimension count, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// Value type code of arrays.
const ARRAY_TYPE: u32 = 9;
/// Value type code of strings.
const STRING_TYPE: u32 = 8;

/// The parsed header of a GGUF file.
#[derive(Debug, Clone, Default)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: serde_json::Map<String, Value>,
    /// Tensor names, dtypes, shapes and where their bytes lie.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of tensor data in bytes (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
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
    /// Offset of its bytes from [`GgufHeader::data_offset`].
    pub offset: u64,
    /// Size of its bytes.
    pub size_bytes: u64,
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

/// A GGML tensor type: how many elements one block holds and how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    /// The `ggml_type` enum value stored in files.
    pub id: u32,
    /// Its name, e.g. `Q4_K`.
    pub name: &'static str,
    /// Elements per block (1 for plain types).
    pub block_elements: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

const fn ggml(id: u32, name: &'static str, block_elements: u64, block_bytes: u64) -> GgmlType {
    GgmlType { id, name, block_elements, block_bytes }
}

/// The GGML types a GGUF file may hold, with llama.cpp's block sizes (`ggml-common.h`). Ids 4,
/// 5 and 31–33, 36–38 were removed from the format.
const GGML_TYPES: &[GgmlType] = &[
    ggml(0, "F32", 1, 4),
    ggml(1, "F16", 1, 2),
    ggml(2, "Q4_0", 32, 18),
    ggml(3, "Q4_1", 32, 20),
    ggml(6, "Q5_0", 32, 22),
    ggml(7, "Q5_1", 32, 24),
    ggml(8, "Q8_0", 32, 34),
    ggml(9, "Q8_1", 32, 36),
    ggml(10, "Q2_K", 256, 84),
    ggml(11, "Q3_K", 256, 110),
    ggml(12, "Q4_K", 256, 144),
    ggml(13, "Q5_K", 256, 176),
    ggml(14, "Q6_K", 256, 210),
    ggml(15, "Q8_K", 256, 292),
    ggml(16, "IQ2_XXS", 256, 66),
    ggml(17, "IQ2_XS", 256, 74),
    ggml(18, "IQ3_XXS", 256, 98),
    ggml(19, "IQ1_S", 256, 50),
    ggml(20, "IQ4_NL", 32, 18),
    ggml(21, "IQ3_S", 256, 110),
    ggml(22, "IQ2_S", 256, 82),
    ggml(23, "IQ4_XS", 256, 136),
    ggml(24, "I8", 1, 1),
    ggml(25, "I16", 1, 2),
    ggml(26, "I32", 1, 4),
    ggml(27, "I64", 1, 8),
    ggml(28, "F64", 1, 8),
    ggml(29, "IQ1_M", 256, 56),
    ggml(30, "BF16", 1, 2),
    ggml(34, "TQ1_0", 256, 54),
    ggml(35, "TQ2_0", 256, 66),
    ggml(39, "MXFP4", 32, 17),
    ggml(40, "NVFP4", 64, 36),
    ggml(41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type with this `ggml_type` id, if GGUF files may hold it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GGML_TYPES.iter().copied().find(|kind| kind.id == id)
    }

    /// Bytes of a tensor of this type and shape; `None` when the first dimension is not a
    /// multiple of the block size or the size does not fit in a `u64`.
    pub fn tensor_bytes(&self, shape: &[u64]) -> Option<u64> {
        let first = shape.first().copied().unwrap_or(1);
        if !first.is_multiple_of(self.block_elements) {
            return None;
        }
        let rows = shape.iter().skip(1).try_fold(1u64, |product, dim| product.checked_mul(*dim))?;
        (first / self.block_elements).checked_mul(self.block_bytes)?.checked_mul(rows)
    }
}

/// Reads the header of the GGUF file at `path`, validated against the file's real length.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = std::fs::File::open(path)?;
    let file_length = file.metadata()?.len();
    parse_header(&mut BufReader::with_capacity(1 << 16, file), file_length)
}

/// Parses a GGUF header from a reader positioned at the start of a file of `file_length`
/// bytes. Never reads past the header; never allocates more than the remaining bytes and the
/// caps allow; never panics.
pub fn parse_header(reader: &mut impl Read, file_length: u64) -> Result<GgufHeader, GgufError> {
    HeaderReader { reader, position: 0, file_length, string_bytes: 0, metadata_values: 0 }.header()
}

/// The reading state: where we are, how long the file is, what has been kept so far.
struct HeaderReader<'reader, R> {
    reader: &'reader mut R,
    position: u64,
    file_length: u64,
    string_bytes: u64,
    metadata_values: u64,
}

fn malformed(message: impl Into<String>) -> GgufError {
    GgufError::Malformed(message.into())
}

impl<R: Read> HeaderReader<'_, R> {
    fn header(mut self) -> Result<GgufHeader, GgufError> {
        if self.file_length < 4 {
            return Err(GgufError::BadMagic);
        }
        if self.bytes::<4>(|| "file magic".into())? != *b"GGUF" {
            return Err(GgufError::BadMagic);
        }
        let version = self.u32(|| "version".into())?;
        if !(2..=3).contains(&version) {
            return Err(malformed(format!("unsupported version {version}")));
        }
        let n_tensors = self.u64(|| "tensor count".into())?;
        let n_metadata = self.u64(|| "metadata count".into())?;
        if n_tensors > MAX_TENSORS {
            return Err(malformed(format!("{n_tensors} tensors, more than the {MAX_TENSORS} allowed")));
        }
        if n_metadata > MAX_METADATA_VALUES {
            return Err(malformed(format!(
                "{n_metadata} metadata entries, more than the {MAX_METADATA_VALUES} allowed"
            )));
        }
        let least_bytes = (n_tensors * MIN_TENSOR_INFO_BYTES).saturating_add(n_metadata * MIN_METADATA_ENTRY_BYTES);
        self.need(least_bytes, || format!("{n_metadata} metadata entries and {n_tensors} tensor descriptions"))?;

        let metadata = self.metadata(n_metadata)?;
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => value
                .as_u64()
                .filter(|alignment| alignment.is_power_of_two())
                .ok_or_else(|| malformed(format!("general.alignment {value} is not a non-zero power of two")))?,
        };
        let tensors = self.tensor_infos(n_tensors)?;

        let header_end = self.position;
        let data_offset = header_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| malformed(format!("alignment {alignment} puts the tensor data past any file")))?;
        let data_length = self.file_length.saturating_sub(data_offset);
        for tensor in &tensors {
            if !tensor.offset.is_multiple_of(alignment) {
                return Err(malformed(format!(
                    "tensor {} has offset {}, not a multiple of the alignment {alignment}",
                    tensor.name, tensor.offset
                )));
            }
            let end = tensor.offset.checked_add(tensor.size_bytes);
            if end.is_none_or(|end| end > data_length) {
                return Err(malformed(format!(
                    "tensor {} ({} {:?}) extends past the end of the file: {} bytes at offset {} of a \
                     {data_length}-byte data section",
                    tensor.name, tensor.kind, tensor.shape, tensor.size_bytes, tensor.offset
                )));
            }
        }
        if !tensors.is_empty() && data_offset > self.file_length {
            return Err(malformed(format!(
                "the file ends at byte {} before its tensor data, which starts at byte {data_offset}",
                self.file_length
            )));
        }
        Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
    }

    fn metadata(&mut self, n_metadata: u64) -> Result<serde_json::Map<String, Value>, GgufError> {
        let mut metadata = serde_json::Map::new();
        for index in 0..n_metadata {
            let key = self.string(u64::MAX, || format!("metadata key {index}"))?;
            if key.is_empty() {
                return Err(malformed(format!("metadata key {index} is empty")));
            }
            if metadata.contains_key(&key) {
                return Err(malformed(format!("duplicate metadata key {key}")));
            }
            let value_type = self.u32(|| format!("type of metadata {key}"))?;
            let value = self.value(value_type, 0, &key)?;
            metadata.insert(key, value);
        }
        Ok(metadata)
    }

    /// Reads one value of `value_type`, inside `enclosing_arrays` arrays.
    fn value(&mut self, value_type: u32, enclosing_arrays: usize, key: &str) -> Result<Value, GgufError> {
        self.metadata_values += 1;
        if self.metadata_values > MAX_METADATA_VALUES {
            return Err(malformed(format!("more than {MAX_METADATA_VALUES} metadata values (at {key})")));
        }
        let what = || format!("value of metadata {key}");
        Ok(match value_type {
            0 => Value::from(self.bytes::<1>(what)?[0]),
            1 => Value::from(self.bytes::<1>(what)?[0] as i8),
            2 => Value::from(u16::from_le_bytes(self.bytes(what)?)),
            3 => Value::from(i16::from_le_bytes(self.bytes(what)?)),
            4 => Value::from(self.u32(what)?),
            5 => Value::from(i32::from_le_bytes(self.bytes(what)?)),
            6 => Value::from(f32::from_le_bytes(self.bytes(what)?) as f64),
            7 => Value::from(self.bytes::<1>(what)?[0] != 0),
            STRING_TYPE => Value::from(self.string(u64::MAX, what)?),
            ARRAY_TYPE => Value::Array(self.array(enclosing_arrays + 1, key)?),
            10 => Value::from(self.u64(what)?),
            11 => Value::from(i64::from_le_bytes(self.bytes(what)?)),
            12 => Value::from(f64::from_le_bytes(self.bytes(what)?)),
            other => return Err(malformed(format!("metadata {key} has unknown value type {other}"))),
        })
    }

    /// Reads an array's item type, count and items; `level` is 1 for a top-level array.
    fn array(&mut self, level: usize, key: &str) -> Result<Vec<Value>, GgufError> {
        if level > MAX_ARRAY_NESTING {
            return Err(malformed(format!("metadata {key} nests arrays more than {MAX_ARRAY_NESTING} deep")));
        }
        let item_type = self.u32(|| format!("item type of metadata {key}"))?;
        let n_items = self.u64(|| format!("item count of metadata {key}"))?;
        let item_bytes = match item_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            STRING_TYPE | 10..=12 => 8,
            ARRAY_TYPE => 4 + 8,
            other => return Err(malformed(format!("metadata {key} is an array of unknown value type {other}"))),
        };
        if self.metadata_values.saturating_add(n_items) > MAX_METADATA_VALUES {
            return Err(malformed(format!(
                "metadata {key} has {n_items} items, more than the {MAX_METADATA_VALUES} metadata values allowed"
            )));
        }
        // Below the cap, so this product cannot overflow.
        self.need(n_items * item_bytes, || format!("{n_items} items of metadata {key}"))?;
        // The count is now bounded by the remaining bytes and the value cap.
        let mut items = Vec::with_capacity(usize::try_from(n_items).unwrap_or(0));
        for _ in 0..n_items {
            items.push(self.value(item_type, level, key)?);
        }
        Ok(items)
    }

    fn tensor_infos(&mut self, n_tensors: u64) -> Result<Vec<TensorInfo>, GgufError> {
        // Bounded by MAX_TENSORS and by the bytes left; grows as entries actually parse.
        let mut tensors = Vec::with_capacity(usize::try_from(n_tensors.min(1 << 12)).unwrap_or(0));
        let mut names = HashSet::new();
        for index in 0..n_tensors {
            let name = self.string(MAX_TENSOR_NAME_BYTES, || format!("name of tensor {index}"))?;
            if !names.insert(name.clone()) {
                return Err(malformed(format!("duplicate tensor name {name}")));
            }
            let n_dims = self.u32(|| format!("dimension count of tensor {name}"))?;
            if n_dims > MAX_DIMENSIONS {
                return Err(malformed(format!("tensor {name} has {n_dims} dimensions, more than {MAX_DIMENSIONS}")));
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for dimension in 0..n_dims {
                let size = self.u64(|| format!("dimension {dimension} of tensor {name}"))?;
                if size > i64::MAX as u64 {
                    return Err(malformed(format!("tensor {name} dimension {dimension} is {size}, too large")));
                }
                shape.push(size);
            }
            let element_count = shape.iter().try_fold(1u64, |product, dim| product.checked_mul(*dim));
            if element_count.is_none_or(|count| count > i64::MAX as u64) {
                return Err(malformed(format!("tensor {name} {shape:?} has more than 2^63 elements")));
            }
            let type_id = self.u32(|| format!("type of tensor {name}"))?;
            let kind = GgmlType::from_id(type_id)
                .ok_or_else(|| malformed(format!("tensor {name} has unknown GGML type {type_id}")))?;
            let first = shape.first().copied().unwrap_or(1);
            if !first.is_multiple_of(kind.block_elements) {
                return Err(malformed(format!(
                    "tensor {name} ({} {shape:?}): first dimension {first} is not a multiple of the block size {}",
                    kind.name, kind.block_elements
                )));
            }
            let size_bytes = kind.tensor_bytes(&shape).ok_or_else(|| {
                malformed(format!("tensor {name} ({} {shape:?}) has a byte size beyond 2^64", kind.name))
            })?;
            let offset = self.u64(|| format!("offset of tensor {name}"))?;
            tensors.push(TensorInfo { name, kind: kind.name.to_owned(), shape, offset, size_bytes });
        }
        Ok(tensors)
    }

    fn remaining(&self) -> u64 {
        self.file_length.saturating_sub(self.position)
    }

    /// Fails unless `n_bytes` remain in the file.
    fn need(&self, n_bytes: u64, what: impl FnOnce() -> String) -> Result<(), GgufError> {
        if n_bytes > self.remaining() {
            return Err(malformed(format!(
                "{} needs {n_bytes} bytes at byte {}, but the file ends at byte {}",
                what(),
                self.position,
                self.file_length
            )));
        }
        Ok(())
    }

    /// Reads exactly `buffer.len()` bytes, already checked against the remaining length.
    fn fill(&mut self, buffer: &mut [u8]) -> Result<(), GgufError> {
        self.reader.read_exact(buffer).map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => malformed(format!(
                "the file ends early, before byte {} of the {} announced",
                self.position + buffer.len() as u64,
                self.file_length
            )),
            _ => GgufError::Io(error),
        })?;
        self.position += buffer.len() as u64;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut bytes = [0u8; N];
        self.fill(&mut bytes)?;
        Ok(bytes)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// Reads a length-prefixed string of at most `max_length` bytes, counted against
    /// [`MAX_STRING_BYTES`]. Invalid UTF-8 is replaced, as before.
    fn string(&mut self, max_length: u64, what: impl Fn() -> String) -> Result<String, GgufError> {
        let length = self.u64(&what)?;
        if length > max_length {
            return Err(malformed(format!("{} is {length} bytes long, more than {max_length}", what())));
        }
        self.need(length, &what)?;
        self.string_bytes = self.string_bytes.saturating_add(length);
        if self.string_bytes > MAX_STRING_BYTES {
            return Err(malformed(format!("{} takes the header's strings past {MAX_STRING_BYTES} bytes", what())));
        }
        // Bounded by the remaining bytes and the string budget.
        let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| malformed("string too long"))?];
        self.fill(&mut bytes)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        })
    }
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

    /// Total number of weights, saturating at `u64::MAX` (a validated header cannot get there).
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .map(|tensor| tensor.shape.iter().fold(1u64, |product, dim| product.saturating_mul(*dim)))
            .fold(0u64, u64::saturating_add)
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

/// A tensor's values to write.
#[derive(Debug, Clone)]
pub enum TensorValues {
    /// 32-bit floats (GGML type 0).
    F32(Vec<f32>),
    /// Half floats, as their bits (GGML type 1).
    F16(Vec<u16>),
    /// Blocks of a quantized type, as stored (benchmark models with random weights).
    Blocks {
        /// The blocks' type.
        kind: GgmlType,
        /// The blocks, row after row.
        bytes: Vec<u8>,
    },
}

impl TensorValues {
    fn ggml_type(&self) -> u32 {
        match self {
            TensorValues::F32(_) => 0,
            TensorValues::F16(_) => 1,
            TensorValues::Blocks { kind, .. } => kind.id,
        }
    }

    fn byte_len(&self) -> u64 {
        match self {
            TensorValues::F32(values) => values.len() as u64 * 4,
            TensorValues::F16(values) => values.len() as u64 * 2,
            TensorValues::Blocks { bytes, .. } => bytes.len() as u64,
        }
    }

    /// Whether these values fill a tensor of `shape` exactly: one value per element, or the
    /// bytes of the blocks the shape takes.
    fn fits(&self, shape: &[u64]) -> bool {
        let elements = || shape.iter().try_fold(1u64, |product, dim| product.checked_mul(*dim));
        match self {
            TensorValues::F32(values) => elements() == Some(values.len() as u64),
            TensorValues::F16(values) => elements() == Some(values.len() as u64),
            TensorValues::Blocks { kind, bytes } => kind.tensor_bytes(shape) == Some(bytes.len() as u64),
        }
    }

    fn write_to(&self, bytes: &mut Vec<u8>) {
        match self {
            TensorValues::F32(values) => bytes.extend(values.iter().flat_map(|value| value.to_le_bytes())),
            TensorValues::F16(values) => bytes.extend(values.iter().flat_map(|value| value.to_le_bytes())),
            TensorValues::Blocks { bytes: blocks, .. } => bytes.extend_from_slice(blocks),
        }
    }
}

/// Writes a GGUF v3 file with the given metadata and F32 tensors (name, shape innermost first,
/// values). Tests use it to make tiny models by code.
pub fn write_gguf(
    writer: &mut impl io::Write,
    metadata: &[(&str, WriteValue)],
    tensors: &[(&str, Vec<u64>, Vec<f32>)],
) -> io::Result<()> {
    let tensors: Vec<(&str, Vec<u64>, TensorValues)> =
        tensors.iter().map(|(name, shape, values)| (*name, shape.clone(), TensorValues::F32(values.clone()))).collect();
    write_gguf_tensors(writer, metadata, &tensors)
}

/// Writes a GGUF v3 file with the given metadata and tensors (name, shape innermost first,
/// values): what `write_gguf` does, with F16 tensors too (imported models).
///
/// The file passes [`parse_header`]: the data section starts at the header rounded up to
/// [`DEFAULT_ALIGNMENT`], and each tensor starts at a multiple of it (its data is zero-padded).
/// A tensor whose value count differs from its shape's product is refused with
/// [`io::ErrorKind::InvalidInput`], since the file would describe bytes it does not hold.
pub fn write_gguf_tensors(
    writer: &mut impl io::Write,
    metadata: &[(&str, WriteValue)],
    tensors: &[(&str, Vec<u64>, TensorValues)],
) -> io::Result<()> {
    const ALIGNMENT: u64 = DEFAULT_ALIGNMENT;
    for (name, shape, values) in tensors {
        if !values.fits(shape) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tensor {name} has shape {shape:?} but {} bytes of values", values.byte_len()),
            ));
        }
    }
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
        header.extend_from_slice(&values.ggml_type().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset += values.byte_len().div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    while !(header.len() as u64).is_multiple_of(ALIGNMENT) {
        header.push(0);
    }
    writer.write_all(&header)?;
    for (_, _, values) in tensors {
        let mut bytes = Vec::with_capacity(values.byte_len() as usize + ALIGNMENT as usize);
        values.write_to(&mut bytes);
        while !(bytes.len() as u64).is_multiple_of(ALIGNMENT) {
            bytes.push(0);
        }
        writer.write_all(&bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
