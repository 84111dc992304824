//! `model_store::safetensors::parse_header` on arbitrary bytes never panics, and every tensor
//! of a header it accepts fills exactly its byte range, inside the data that follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model_store::safetensors::parse_header;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes say how long the data section is (a file's length less its header).
    let (length, header) = data.split_at(data.len().min(8));
    let mut length_bytes = [0u8; 8];
    length_bytes[..length.len()].copy_from_slice(length);
    let data_length = u64::from_le_bytes(length_bytes) % (1 << 40);
    let Ok(tensors) = parse_header(header, data_length) else { return };
    for (name, tensor) in &tensors {
        assert!(tensor.start <= tensor.end && tensor.end <= data_length, "{name}: {tensor:?} outside {data_length}");
        let elements = tensor.shape.iter().try_fold(1u64, |product, &dim| product.checked_mul(dim));
        assert!(elements.is_some(), "{name}: element count overflows");
    }
});
