//! GGUF header reading: round trips through `write_gguf`, one hostile file per known attack
//! (each must be refused, not panic or allocate), and a few thousand seeded random mutations.

use super::*;

/// Raw GGUF bytes assembled field by field, to build files `write_gguf` would never write.
struct RawGguf(Vec<u8>);

impl RawGguf {
    /// Magic, version 3 and the two counts.
    fn new(n_tensors: u64, n_metadata: u64) -> RawGguf {
        RawGguf(b"GGUF".to_vec()).u32(3).u64(n_tensors).u64(n_metadata)
    }

    fn u32(mut self, value: u32) -> RawGguf {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn u64(mut self, value: u64) -> RawGguf {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    fn string(mut self, text: &str) -> RawGguf {
        self = self.u64(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    fn tensor(mut self, name: &str, shape: &[u64], type_id: u32, offset: u64) -> RawGguf {
        self = self.string(name).u32(shape.len() as u32);
        for dim in shape {
            self = self.u64(*dim);
        }
        self.u32(type_id).u64(offset)
    }

    /// Zero bytes up to the next multiple of `alignment`.
    fn pad(mut self, alignment: usize) -> RawGguf {
        while !self.0.len().is_multiple_of(alignment) {
            self.0.push(0);
        }
        self
    }

    fn zeros(mut self, n_bytes: usize) -> RawGguf {
        self.0.resize(self.0.len() + n_bytes, 0);
        self
    }
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    parse_header(&mut &bytes[..], bytes.len() as u64)
}

/// The message of a `Malformed` error; fails the test on success or any other error.
fn malformed_message(result: Result<GgufHeader, GgufError>) -> String {
    match result {
        Err(GgufError::Malformed(message)) => message,
        Err(other) => panic!("expected Malformed, got {other:?}"),
        Ok(header) => panic!("expected Malformed, parsed {} tensors", header.tensors.len()),
    }
}

fn small_gguf() -> Vec<u8> {
    let mut bytes = Vec::new();
    write_gguf(
        &mut bytes,
        &[
            ("general.architecture", WriteValue::String("llama".into())),
            ("llama.context_length", WriteValue::U32(2048)),
            ("general.file_type", WriteValue::U32(0)),
            ("general.size", WriteValue::U64(1 << 40)),
            ("general.flag", WriteValue::Bool(true)),
            ("general.scale", WriteValue::F32(0.5)),
            ("tokenizer.ggml.tokens", WriteValue::Strings(vec!["a".into(), "b".into(), "<s>".into()])),
            ("tokenizer.ggml.token_type", WriteValue::I32s(vec![1, 1, 3])),
            ("tokenizer.ggml.scores", WriteValue::F32s(vec![0.0, -1.0, -2.0])),
        ],
        &[
            ("token_embd.weight", vec![4, 2], vec![0.5; 8]),
            ("output_norm.weight", vec![4], vec![1.0; 4]),
            ("output.weight", vec![4, 2], vec![0.25; 8]),
        ],
    )
    .unwrap();
    bytes
}

#[test]
fn written_header_reads_back() {
    let bytes = small_gguf();
    let header = parse(&bytes).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(header.architecture(), "llama");
    assert_eq!(header.context_length(), Some(2048));
    assert_eq!(header.quantization_level(), "F32");
    assert_eq!(header.parameter_count(), 20);
    assert_eq!(header.metadata["tokenizer.ggml.tokens"], serde_json::json!(["a", "b", "<s>"]));
    assert_eq!(header.metadata["tokenizer.ggml.token_type"], serde_json::json!([1, 1, 3]));
    assert_eq!(header.metadata["general.size"], serde_json::json!(1u64 << 40));
    assert_eq!(header.tensors[0].shape, vec![4, 2]);
    assert_eq!(header.tensors[0].kind, "F32");
    assert_eq!(header.alignment, 32);
    assert_eq!(header.data_offset % 32, 0);
    // Each tensor starts on the alignment; the last one ends exactly at the end of the file.
    let offsets: Vec<(u64, u64)> = header.tensors.iter().map(|tensor| (tensor.offset, tensor.size_bytes)).collect();
    assert_eq!(offsets, vec![(0, 32), (32, 16), (64, 32)]);
    assert_eq!(header.data_offset + 96, bytes.len() as u64);
    assert!(matches!(parse(b"GGML...."), Err(GgufError::BadMagic)));
    assert!(matches!(parse(b"GG"), Err(GgufError::BadMagic)));
}

#[test]
fn header_reads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, small_gguf()).unwrap();
    assert_eq!(read_header(&path).unwrap().tensors.len(), 3);
    let bytes = small_gguf();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(read_header(&path), Err(GgufError::Malformed(_))));
    assert!(matches!(read_header(&dir.path().join("missing")), Err(GgufError::Io(_))));
}

#[test]
fn writer_refuses_tensors_whose_values_do_not_match_their_shape() {
    let error = write_gguf(&mut Vec::new(), &[], &[("t", vec![4, 2], vec![0.0; 7])]).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn quantized_blocks_are_written_as_given_and_must_fill_their_shape() {
    let q4_1 = GgmlType::from_id(3).unwrap();
    // Two rows of 64 elements: two 20-byte blocks per row.
    let blocks = TensorValues::Blocks { kind: q4_1, bytes: (0..80).collect() };
    let mut bytes = Vec::new();
    write_gguf_tensors(&mut bytes, &[], &[("w", vec![64, 2], blocks)]).unwrap();
    let header = parse(&bytes).unwrap();
    assert_eq!(header.tensors[0].kind, "Q4_1");
    assert_eq!(header.tensors[0].size_bytes, 80);
    let data = header.data_offset as usize;
    assert_eq!(bytes[data..data + 80], (0..80).collect::<Vec<u8>>()[..]);

    for (shape, n_bytes) in [(vec![64, 2], 79), (vec![48, 2], 60), (vec![64, 2], 100)] {
        let blocks = TensorValues::Blocks { kind: q4_1, bytes: vec![0; n_bytes] };
        let error = write_gguf_tensors(&mut Vec::new(), &[], &[("w", shape, blocks)]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}

#[test]
fn human_numbers_match_ollama() {
    assert_eq!(human_number(134_515_008), "134.52M");
    assert_eq!(human_number(7_000_000_000), "7B");
    assert_eq!(human_number(1_500_000_000), "1.5B");
    assert_eq!(human_number(22_000), "22K");
    assert_eq!(human_number(999), "999");
}

#[test]
fn arrays_nested_200000_deep_are_refused_without_recursing() {
    let depth = 200_000;
    let mut file = RawGguf::new(0, 1).string("evil").u32(ARRAY_TYPE);
    for _ in 0..depth {
        file = file.u32(ARRAY_TYPE).u64(1);
    }
    file = file.u32(4).u64(0);
    let message = malformed_message(parse(&file.0));
    assert!(message.contains("nests arrays more than 2 deep"), "{message}");

    // One level of nesting is still read.
    let nested = RawGguf::new(0, 1).string("pairs").u32(ARRAY_TYPE).u32(ARRAY_TYPE).u64(2);
    let nested = nested.u32(4).u64(1).u32(7).u32(4).u64(2).u32(8).u32(9);
    let header = parse(&nested.0).unwrap();
    assert_eq!(header.metadata["pairs"], serde_json::json!([[7], [8, 9]]));
}

#[test]
fn huge_tensor_in_a_header_only_file_is_refused() {
    const Q4_1: u32 = 3;
    let file = RawGguf::new(1, 0).tensor("blk.0.attn_q.weight", &[1 << 20, 1 << 20], Q4_1, 0).pad(32);
    let message = malformed_message(parse(&file.0));
    assert!(
        message.starts_with("tensor blk.0.attn_q.weight (Q4_1 [1048576, 1048576]) extends past the end of the file"),
        "{message}"
    );
    assert!(message.contains("687194767360 bytes"), "{message}");

    // Without padding the data section does not even start inside the file.
    let unpadded = RawGguf::new(1, 0).tensor("blk.0.attn_q.weight", &[1 << 20, 1 << 20], Q4_1, 0);
    assert!(malformed_message(parse(&unpadded.0)).contains("extends past the end of the file"));
}

#[test]
fn overflowing_dimensions_are_refused_and_never_panic() {
    const F32: u32 = 0;
    const F64: u32 = 28;
    let cases: &[(&[u64], u32, &str)] = &[
        (&[1 << 32, 1 << 32, 1 << 32], F32, "more than 2^63 elements"),
        (&[u64::MAX], F32, "too large"),
        (&[i64::MAX as u64, 2], F32, "more than 2^63 elements"),
        (&[1 << 62], F64, "byte size beyond 2^64"),
        (&[2, 2, 2, 2, 2], F32, "5 dimensions, more than 4"),
    ];
    for (shape, type_id, expected) in cases {
        let file = RawGguf::new(1, 0).tensor("t", shape, *type_id, 0).pad(32);
        let message = malformed_message(parse(&file.0));
        assert!(message.contains(expected), "{shape:?}: {message}");
    }

    // A header built by hand with absurd shapes still reports a count instead of panicking.
    let tensor = |shape: Vec<u64>| TensorInfo { name: "t".into(), kind: "F32".into(), shape, offset: 0, size_bytes: 0 };
    let header = GgufHeader {
        tensors: vec![tensor(vec![u64::MAX, u64::MAX]), tensor(vec![u64::MAX]), tensor(vec![3])],
        ..GgufHeader::default()
    };
    assert_eq!(header.parameter_count(), u64::MAX);
    assert_eq!(header.parameter_size(), "18446744073.7B");
}

#[test]
fn huge_tensor_count_in_a_tiny_file_is_refused() {
    for n_tensors in [1 << 20, 1 << 30, u64::MAX] {
        let file = RawGguf::new(n_tensors, 0);
        assert_eq!(file.0.len(), 24);
        let message = malformed_message(parse(&file.0));
        assert!(message.contains("tensor"), "{message}");
    }
    let many_metadata = RawGguf::new(0, 1 << 40);
    assert!(malformed_message(parse(&many_metadata.0)).contains("metadata"));
    let fits_the_cap_not_the_file = RawGguf::new(0, 1000);
    assert!(malformed_message(parse(&fits_the_cap_not_the_file.0)).contains("but the file ends at byte 24"));
}

#[test]
fn huge_string_and_array_lengths_are_refused() {
    let huge_key = RawGguf::new(0, 1).u64(1 << 40).zeros(64);
    assert!(malformed_message(parse(&huge_key.0)).contains("metadata key 0 needs 1099511627776 bytes"));

    let huge_value = RawGguf::new(0, 1).string("k").u32(STRING_TYPE).u64(u64::MAX).zeros(64);
    assert!(malformed_message(parse(&huge_value.0)).contains("value of metadata k"));

    let huge_array = RawGguf::new(0, 1).string("k").u32(ARRAY_TYPE).u32(10).u64(1 << 40).zeros(64);
    assert!(malformed_message(parse(&huge_array.0)).contains("1099511627776 items"));

    let array_past_the_file = RawGguf::new(0, 1).string("k").u32(ARRAY_TYPE).u32(STRING_TYPE).u64(100).zeros(64);
    assert!(malformed_message(parse(&array_past_the_file.0)).contains("needs 800 bytes"));

    let long_name = "x".repeat(64);
    let long_tensor_name = RawGguf::new(1, 0).tensor(&long_name, &[1], 0, 0).pad(32).zeros(32);
    assert!(malformed_message(parse(&long_tensor_name.0)).contains("more than 63"));
}

#[test]
fn string_budget_bounds_what_a_large_file_can_make_us_keep() {
    // The file claims to be 1 TiB long; the strings it declares fit in that but not in the budget.
    let file = RawGguf::new(0, 1).string("k").u32(STRING_TYPE).u64(MAX_STRING_BYTES + 1);
    let message = malformed_message(parse_header(&mut &file.0[..], 1 << 40));
    assert!(message.contains("past 268435456 bytes"), "{message}");
}

#[test]
fn truncated_files_are_malformed_and_whole_ones_parse() {
    let bytes = small_gguf();
    assert!(parse(&bytes).is_ok());

    let message = malformed_message(parse(&bytes[..bytes.len() - 1]));
    assert!(message.starts_with("tensor output.weight (F32 [4, 2]) extends past the end of the file"), "{message}");

    // Cut inside the header: every prefix is refused, none with an IO error.
    let header_length = parse(&bytes).unwrap().data_offset as usize;
    for length in 0..header_length {
        assert!(parse(&bytes[..length]).is_err(), "prefix of {length} bytes");
    }

    // The reader ends before the announced length: refused as malformed too.
    let lying = parse_header(&mut &bytes[..100], bytes.len() as u64);
    assert!(malformed_message(lying).contains("the file ends early"));
}

#[test]
fn layout_rules_follow_llama_cpp() {
    const Q4_0: u32 = 2;
    let one_tensor = |shape: &[u64], type_id: u32, offset: u64| {
        RawGguf::new(1, 0).tensor("t", shape, type_id, offset).pad(32).zeros(4096)
    };
    assert!(malformed_message(parse(&one_tensor(&[4], 0, 16).0)).contains("not a multiple of the alignment 32"));
    assert!(malformed_message(parse(&one_tensor(&[48], Q4_0, 0).0)).contains("not a multiple of the block size 32"));
    assert!(malformed_message(parse(&one_tensor(&[32], 4, 0).0)).contains("unknown GGML type 4"));
    assert!(malformed_message(parse(&one_tensor(&[32], 99, 0).0)).contains("unknown GGML type 99"));

    // Quantized tensors take their block sizes; a zero dimension makes an empty tensor.
    let file = RawGguf::new(3, 0)
        .tensor("q", &[64, 2], Q4_0, 0)
        .tensor("empty", &[0, 5], Q4_0, 96)
        .tensor("k", &[256], 12, 96)
        .pad(32)
        .zeros(96 + 144);
    let header = parse(&file.0).unwrap();
    let sizes: Vec<u64> = header.tensors.iter().map(|tensor| tensor.size_bytes).collect();
    assert_eq!(sizes, vec![4 * 18, 0, 144]);
    assert_eq!(header.tensors[2].kind, "Q4_K");

    let duplicate = RawGguf::new(2, 0).tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32).pad(32).zeros(64);
    assert!(malformed_message(parse(&duplicate.0)).contains("duplicate tensor name t"));

    let duplicate_key = RawGguf::new(0, 2).string("k").u32(4).u32(1).string("k").u32(4).u32(2);
    assert!(malformed_message(parse(&duplicate_key.0)).contains("duplicate metadata key k"));
    let empty_key = RawGguf::new(0, 1).string("").u32(4).u32(1);
    assert!(malformed_message(parse(&empty_key.0)).contains("empty"));
    let unknown_value = RawGguf::new(0, 1).string("k").u32(13).u32(1);
    assert!(malformed_message(parse(&unknown_value.0)).contains("unknown value type 13"));
}

#[test]
fn general_alignment_moves_the_data_section() {
    let aligned =
        |alignment: u32| RawGguf::new(1, 1).string("general.alignment").u32(4).u32(alignment).tensor("t", &[16], 0, 0);
    let file = aligned(64).pad(64).zeros(64);
    let header = parse(&file.0).unwrap();
    assert_eq!((header.alignment, header.data_offset % 64), (64, 0));
    // The same file read with the default alignment of 32 would put the data elsewhere; with
    // 64, a tensor at offset 32 is misaligned.
    let misplaced = RawGguf::new(1, 1).string("general.alignment").u32(4).u32(64).tensor("t", &[8], 0, 32);
    assert!(malformed_message(parse(&misplaced.pad(64).zeros(64).0)).contains("alignment 64"));
    for bad in [0, 3, 48] {
        let message = malformed_message(parse(&aligned(bad).pad(64).zeros(64).0));
        assert!(message.contains("not a non-zero power of two"), "{bad}: {message}");
    }
}

#[test]
fn block_sizes_match_ggml() {
    let expect = [
        ("F32", 1, 4),
        ("F16", 1, 2),
        ("BF16", 1, 2),
        ("Q4_0", 32, 18),
        ("Q4_1", 32, 20),
        ("Q5_0", 32, 22),
        ("Q5_1", 32, 24),
        ("Q8_0", 32, 34),
        ("Q8_1", 32, 36),
        ("Q2_K", 256, 84),
        ("Q3_K", 256, 110),
        ("Q4_K", 256, 144),
        ("Q5_K", 256, 176),
        ("Q6_K", 256, 210),
        ("Q8_K", 256, 292),
        ("IQ2_XXS", 256, 66),
        ("IQ2_XS", 256, 74),
        ("IQ2_S", 256, 82),
        ("IQ3_XXS", 256, 98),
        ("IQ3_S", 256, 110),
        ("IQ1_S", 256, 50),
        ("IQ1_M", 256, 56),
        ("IQ4_NL", 32, 18),
        ("IQ4_XS", 256, 136),
        ("TQ1_0", 256, 54),
        ("TQ2_0", 256, 66),
        ("MXFP4", 32, 17),
        ("I8", 1, 1),
        ("I16", 1, 2),
        ("I32", 1, 4),
        ("I64", 1, 8),
        ("F64", 1, 8),
    ];
    for (name, block_elements, block_bytes) in expect {
        let kind = (0..64).filter_map(GgmlType::from_id).find(|kind| kind.name == name).unwrap();
        assert_eq!((kind.block_elements, kind.block_bytes), (block_elements, block_bytes), "{name}");
    }
    let q4_k = GgmlType::from_id(12).unwrap();
    assert_eq!(q4_k.tensor_bytes(&[4096, 4096]), Some(4096 * 4096 / 256 * 144));
    assert_eq!(q4_k.tensor_bytes(&[100]), None);
    assert_eq!(GgmlType::from_id(0).unwrap().tensor_bytes(&[1 << 40, 1 << 40]), None);
}

#[test]
fn vocabulary_sized_header_parses() {
    // SmolLM2's tokenizer: 49,152 tokens and about as many merges.
    let tokens: Vec<String> = (0..49_152).map(|index| format!("token{index}")).collect();
    let merges: Vec<String> = (0..48_900).map(|index| format!("t{index} k{index}")).collect();
    let mut bytes = Vec::new();
    write_gguf(
        &mut bytes,
        &[
            ("general.architecture", WriteValue::String("llama".into())),
            ("tokenizer.ggml.tokens", WriteValue::Strings(tokens)),
            ("tokenizer.ggml.merges", WriteValue::Strings(merges)),
            ("tokenizer.ggml.token_type", WriteValue::I32s(vec![1; 49_152])),
        ],
        &[("token_embd.weight", vec![8, 4], vec![0.0; 32])],
    )
    .unwrap();
    let header = parse(&bytes).unwrap();
    assert_eq!(header.metadata["tokenizer.ggml.tokens"].as_array().unwrap().len(), 49_152);
    assert_eq!(header.metadata["tokenizer.ggml.merges"][48_899], "t48899 k48899");
}

/// A xorshift64 generator: deterministic, seeded, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic_and_accepted_headers_stay_inside_the_file() {
    let original = small_gguf();
    let extremes = [0, 1, 7, 9, 32, 63, 64, u32::MAX as u64, 1 << 20, 1 << 32, 1 << 62, i64::MAX as u64, u64::MAX];
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..5_000 {
        let mut bytes = original.clone();
        for _ in 0..=random.below(3) {
            let position = random.below(bytes.len());
            match random.below(5) {
                0 => bytes[position] ^= (random.next() as u8) | 1,
                1 => bytes.truncate(position),
                2 if position + 8 <= bytes.len() => {
                    let value = extremes[random.below(extremes.len())];
                    bytes[position..position + 8].copy_from_slice(&value.to_le_bytes());
                }
                3 if position + 4 <= bytes.len() => {
                    let value = extremes[random.below(extremes.len())] as u32;
                    bytes[position..position + 4].copy_from_slice(&value.to_le_bytes());
                }
                _ => bytes.insert(position, random.next() as u8),
            }
        }
        // Now and then the caller announces more bytes than the reader holds.
        let announced =
            if round % 8 == 0 { bytes.len() as u64 + random.below(1 << 16) as u64 } else { bytes.len() as u64 };
        match parse_header(&mut &bytes[..], announced) {
            Ok(header) => {
                accepted += 1;
                assert!(header.alignment.is_power_of_two());
                for tensor in &header.tensors {
                    let end = header.data_offset + tensor.offset + tensor.size_bytes;
                    assert!(end <= announced, "round {round}: tensor {} ends at {end}", tensor.name);
                }
            }
            Err(_) => refused += 1,
        }
    }
    // Both paths were exercised: some mutations hit values only, others broke the structure.
    assert!(accepted > 100 && refused > 100, "accepted {accepted}, refused {refused}");
}
