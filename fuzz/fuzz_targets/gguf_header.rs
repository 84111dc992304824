//! `model_store::gguf::parse_header` on arbitrary bytes never panics, and a header it accepts
//! keeps the module's promises (dimensions, alignment, tensor bytes inside the file); the
//! header's accessors work on whatever it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model_store::gguf::{parse_header, MAX_DIMENSIONS};

fuzz_target!(|data: &[u8]| {
    let file_length = data.len() as u64;
    let Ok(header) = parse_header(&mut &data[..], file_length) else { return };
    assert!((2..=3).contains(&header.version), "accepted version {}", header.version);
    assert!(header.alignment.is_power_of_two(), "alignment {}", header.alignment);
    assert!(header.data_offset.is_multiple_of(header.alignment), "data offset {}", header.data_offset);
    for tensor in &header.tensors {
        assert!(tensor.shape.len() <= MAX_DIMENSIONS as usize, "{tensor:?}: too many dimensions");
        let elements = tensor.shape.iter().try_fold(1u64, |product, &dim| product.checked_mul(dim));
        assert!(elements.is_some_and(|elements| elements <= i64::MAX as u64), "{tensor:?}: element count overflows");
        assert!(tensor.offset.is_multiple_of(header.alignment), "{tensor:?}: unaligned");
        let end = header.data_offset.checked_add(tensor.offset).and_then(|start| start.checked_add(tensor.size_bytes));
        assert!(end.is_some_and(|end| end <= file_length), "{tensor:?}: bytes beyond the {file_length}-byte file");
    }
    let _ = header.parameter_count();
    let _ = header.parameter_size();
    let _ = header.quantization_level();
    let architecture = header.architecture();
    let _ = header.context_length();
    let _ = header.embedding_length();
    let _ = header.chat_template();
    let _ = header.string(&architecture);
    let _ = header.integer("general.alignment");
});
