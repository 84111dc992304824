//! One function that turns a stream of chunks into an NDJSON body (Ollama's streaming format),
//! shared by generate, chat and create.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

/// An item of an NDJSON stream: a chunk, or an error that ends the stream with an
/// `{"error": ...}` line (the status is already 200 by then).
pub(crate) enum StreamItem<T> {
    /// A chunk.
    Chunk(T),
    /// A failure after the first byte.
    Error(String),
}

/// Streams `items` as NDJSON, one JSON object a line, flushed as they come.
pub(crate) fn ndjson_response<T, S>(items: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = StreamItem<T>> + Send + 'static,
{
    let lines = items.map(|item| {
        let mut line = match item {
            StreamItem::Chunk(chunk) => serde_json::to_vec(&chunk),
            StreamItem::Error(error) => serde_json::to_vec(&ollama_api::ErrorResponse { error }),
        }
        .unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
}

/// The current time as Ollama writes `created_at`: RFC 3339, UTC, nanoseconds.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A time as Ollama writes `modified_at` and `expires_at`: local time with offset.
pub(crate) fn local_rfc3339(time: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(time).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}
