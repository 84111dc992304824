//! The engine on real weights (SmolLM2-135M-Instruct at `SMOLLM2_GGUF`, which
//! `scripts/test.sh` sets): what only the real engine can show, read from its own counters.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{Engine, GenerationEvent, GenerationRequest, LoadSpec, LoadedModel, ModelKind, Sampling};
use engine_mistralrs::{MistralRsConfig, MistralRsEngine};

fn smollm2() -> PathBuf {
    let path = std::env::var_os("SMOLLM2_GGUF")
        .expect("set SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/test.sh fetches it and sets it)");
    PathBuf::from(path)
}

async fn load_smollm2() -> Arc<dyn LoadedModel> {
    // The stored Q4_1 weights, loaded as they are: no requantized copy to write first.
    let engine = MistralRsEngine::new(MistralRsConfig { max_running_sequences: 2, ..MistralRsConfig::default() });
    let spec = LoadSpec { model_path: smollm2(), num_ctx: 2048, kind: ModelKind::Generation };
    engine.load(&spec).await.expect("loading SmolLM2")
}

async fn story_request(model: &dyn LoadedModel, max_new_tokens: usize) -> GenerationRequest {
    let prompt = "<|im_start|>user\nWrite a long story about a dragon who learns to bake bread.<|im_end|>\n<|im_start|>assistant\n";
    GenerationRequest {
        prompt_tokens: model.tokenize(prompt, false).await.unwrap(),
        sampling: Sampling { temperature: 0.0, repeat_penalty: 1.0, top_p: 1.0, ..Sampling::default() },
        max_new_tokens,
        stop: Vec::new(),
        constraint: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_receiver_stops_decoding_in_the_engine() {
    let model = load_smollm2().await;
    let mut receiver = model.generate(story_request(model.as_ref(), 1000).await).await.unwrap();
    let mut n_pieces = 0;
    while n_pieces < 5 {
        match receiver.recv().await {
            Some(GenerationEvent::Text(_)) => n_pieces += 1,
            other => panic!("the story ended before it was cancelled: {other:?}"),
        }
    }
    drop(receiver);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sampled_after_cancel = model.counters().tokens_sampled;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sampled_later = model.counters().tokens_sampled;
    assert_eq!(sampled_after_cancel, sampled_later, "the engine went on sampling after the receiver was dropped");

    // Uncancelled, the same greedy story runs on well past where the cancelled one stopped.
    let before = model.counters().tokens_sampled;
    let mut receiver = model.generate(story_request(model.as_ref(), 300).await).await.unwrap();
    let summary = loop {
        match receiver.recv().await {
            Some(GenerationEvent::Text(_)) => {}
            Some(GenerationEvent::Done(summary)) => break summary,
            other => panic!("{other:?}"),
        }
    };
    // Every generated token was sampled, and the end token too when the story ended itself.
    let sampled = model.counters().tokens_sampled - before;
    let generated = summary.n_generated_tokens as u64;
    assert!((generated..=generated + 1).contains(&sampled), "sampled {sampled} for {generated} generated tokens");
    assert!(
        summary.n_generated_tokens as u64 > sampled_after_cancel + 50,
        "the cancelled story sampled {sampled_after_cancel} tokens; uncancelled it ran {}",
        summary.n_generated_tokens
    );
    assert_eq!(model.counters().generations_started, 2);
}

/// Runs `prompt` for one token and returns the engine's own prompt time.
async fn prompt_time(model: &dyn LoadedModel, prompt: &str) -> Duration {
    let request = GenerationRequest {
        prompt_tokens: model.tokenize(prompt, false).await.unwrap(),
        sampling: Sampling { temperature: 0.0, repeat_penalty: 1.0, top_p: 1.0, ..Sampling::default() },
        max_new_tokens: 1,
        stop: Vec::new(),
        constraint: None,
    };
    let mut receiver = model.generate(request).await.unwrap();
    loop {
        match receiver.recv().await {
            Some(GenerationEvent::Text(_)) => {}
            Some(GenerationEvent::Done(summary)) => return summary.prompt_duration,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_prompt_is_served_from_the_prefix_cache() {
    let model = load_smollm2().await;
    let story = |subject: &str| {
        let days: String =
            (1..=40).map(|day| format!("On day {day} the {subject} counted {} sacks. ", day * 7)).collect();
        format!("<|im_start|>user\n{days}How many sacks on day 3?<|im_end|>\n<|im_start|>assistant\n")
    };
    // The first pass over any prompt pays one-time costs (buffers, thread start-up).
    prompt_time(model.as_ref(), &story("baker")).await;
    let cold = prompt_time(model.as_ref(), &story("miller")).await;
    let repeated = prompt_time(model.as_ref(), &story("miller")).await;
    // Cold, every one of the prompt's ~600 tokens is evaluated; repeated, only the last one is
    // (the rest is the cached KV of the first request), which takes a fraction of the time.
    assert!(repeated * 4 < cold, "a repeated prompt took {repeated:?}, the same prompt cold {cold:?}");
}
