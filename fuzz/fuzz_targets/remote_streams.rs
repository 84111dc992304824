//! Remote servers' streams (Ollama's NDJSON, OpenAI's SSE, llama-server's `/infill`) cut into
//! chunks anywhere never panic the decoders, give at most one final event, and a stream the
//! decoder accepts as ended has had its final event; embedding answers parse or are refused,
//! and a structured answer is checked against a schema without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remote::decode::{LineSplitter, StreamDecoder, Timing};
use serving::Event;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let timing = Timing::new(std::time::Instant::now(), "http://fuzz:1");
    let mut decoder: Box<dyn StreamDecoder> = if selector & 1 == 0 {
        Box::new(remote::ollama::OllamaDecoder::new(timing))
    } else {
        Box::new(remote::openai::OpenAiDecoder::new(timing))
    };
    let chunk_size = usize::from(selector >> 1).max(1);
    let mut n_done = 0;
    let mut count = |events: Vec<Event>| n_done += events.iter().filter(|event| matches!(event, Event::Done(_))).count();
    let mut splitter = LineSplitter::default();
    let mut failed = false;
    'chunks: for chunk in body.chunks(chunk_size) {
        let Ok(lines) = splitter.push(chunk) else {
            failed = true;
            break;
        };
        for line in lines {
            match decoder.line(&line) {
                Ok(events) => count(events),
                Err(_) => {
                    failed = true;
                    break 'chunks;
                }
            }
        }
    }
    if !failed {
        let last_failed = match splitter.finish().map(|line| decoder.line(&line)) {
            Some(Ok(events)) => {
                count(events);
                false
            }
            Some(Err(_)) => true,
            None => false,
        };
        if !last_failed {
            if let Ok(events) = decoder.end() {
                count(events);
                assert!(decoder.is_done(), "a stream accepted as ended without its final event");
            }
        }
    }
    assert!(n_done <= 1, "{n_done} final events");
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Ok((vectors, _)) = remote::openai::embeddings(&value, usize::from(selector)) {
            assert_eq!(vectors.len(), usize::from(selector));
        }
        // A structured answer against a schema, both crafted: an answer or a reason, no panic.
        if let Some([answer, schema]) = value.as_array().map(Vec::as_slice) {
            let _ = remote::schema::check(answer, schema);
            assert_eq!(remote::schema::check(answer, &serde_json::Value::Bool(true)), Ok(()));
        }
    }
});
