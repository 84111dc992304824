//! Writes small valid GGUF files, made with `model_store::gguf::write_gguf`, as seeds of the
//! `gguf_header` fuzz target: `cargo run --manifest-path fuzz/Cargo.toml --example make_gguf_seeds`.

use model_store::gguf::{write_gguf, WriteValue};

/// File name, metadata, tensors (name, shape, values).
type Seed = (&'static str, Vec<(&'static str, WriteValue)>, Vec<(&'static str, Vec<u64>, Vec<f32>)>);

fn main() -> std::io::Result<()> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/gguf_header");
    std::fs::create_dir_all(&directory)?;
    let llama = |file_type: u32| {
        vec![
            ("general.architecture", WriteValue::String("llama".into())),
            ("general.name", WriteValue::String("tiny".into())),
            ("general.file_type", WriteValue::U32(file_type)),
            ("llama.context_length", WriteValue::U32(2048)),
            ("llama.embedding_length", WriteValue::U64(8)),
            ("llama.rope.freq_base", WriteValue::F32(10000.0)),
            ("tokenizer.ggml.add_bos_token", WriteValue::Bool(true)),
            ("tokenizer.ggml.tokens", WriteValue::Strings(vec!["<s>".into(), "</s>".into(), "a".into(), "b".into()])),
            ("tokenizer.ggml.token_type", WriteValue::I32s(vec![3, 3, 1, 1])),
            ("tokenizer.ggml.scores", WriteValue::F32s(vec![0.0, 0.0, -1.0, -2.0])),
            (
                "tokenizer.chat_template",
                WriteValue::String("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}".into()),
            ),
        ]
    };
    let seeds: [Seed; 4] = [
        ("empty.gguf", Vec::new(), Vec::new()),
        ("metadata_only.gguf", llama(0), Vec::new()),
        (
            "tiny_llama.gguf",
            llama(0),
            vec![("token_embd.weight", vec![8, 4], vec![0.25; 32]), ("output_norm.weight", vec![8], vec![1.0; 8])],
        ),
        (
            "unknown_file_type.gguf",
            llama(99),
            vec![("blk.0.attn_q.weight", vec![2, 2, 2], vec![0.5; 8]), ("scalar", Vec::new(), vec![1.0])],
        ),
    ];
    for (file_name, metadata, tensors) in seeds {
        let mut bytes = Vec::new();
        write_gguf(&mut bytes, &metadata, &tensors)?;
        std::fs::write(directory.join(file_name), &bytes)?;
        println!("{file_name}: {} bytes", bytes.len());
    }
    Ok(())
}
