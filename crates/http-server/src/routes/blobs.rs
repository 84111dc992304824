//! `HEAD` and `POST /api/blobs/:digest`: check for and upload raw blobs, verified by digest.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use model_store::Digest;

use crate::{ApiError, AppState};

/// Answers whether the blob is present. A present blob's time is refreshed, since the client
/// will name it in a create and garbage collection spares recent blobs.
pub(crate) async fn head_blob(State(state): State<AppState>, Path(digest): Path<String>) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest).map_err(|_| ApiError::bad_request("invalid digest format"))?;
    let store = state.store().clone();
    let touched = tokio::task::spawn_blocking(move || store.touch_blob(&digest).map(|present| (present, digest)))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;
    let (present, digest) = touched?;
    if present {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(format!("blob \"{digest}\" not found")))
    }
}

/// Streams the body into a temporary file, hashing as it goes; a dropped connection, a wrong
/// digest or a body past the size limit (`MODELD_MAX_BLOB_SIZE`, 413) leaves nothing behind.
pub(crate) async fn post_blob(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest).map_err(|_| ApiError::bad_request("invalid digest format"))?;
    let limit = state.config().max_blob_bytes;
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "blob is larger than the upload limit of {} (MODELD_MAX_BLOB_SIZE)",
            engine::human_binary_bytes(limit)
        ),
    };
    let declared_length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let mut frames = body.into_data_stream();
    if declared_length.is_some_and(|length| length > limit) {
        discard_rest(&mut frames, declared_length).await;
        return Err(too_large());
    }
    if state.store().has_blob(&digest) {
        return Ok(StatusCode::OK.into_response());
    }
    let mut blob = state.store().begin_blob_limited(limit)?;
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|error| ApiError::bad_request(error.to_string()))?;
        if let Err(error) = blob.write(&bytes) {
            return Err(match error {
                model_store::Error::BlobTooLarge { .. } => {
                    drop(blob);
                    discard_rest(&mut frames, None).await;
                    too_large()
                }
                other => ApiError::from(other),
            });
        }
    }
    blob.finish(Some(&digest))?;
    Ok(StatusCode::CREATED.into_response())
}

/// Most of a refused upload read and thrown away before answering: closing a connection with
/// unread bytes resets it, and the client would lose the 413 along with it. Past this, the
/// connection is closed anyway.
const MAX_DISCARDED_BYTES: u64 = 64 << 20;

/// Reads and drops the rest of a refused body, up to [`MAX_DISCARDED_BYTES`] (and not at all
/// when `declared_length` says it is longer than that).
async fn discard_rest(
    frames: &mut (impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin),
    declared_length: Option<u64>,
) {
    if declared_length.is_some_and(|length| length > MAX_DISCARDED_BYTES) {
        return;
    }
    let mut discarded = 0u64;
    while let Some(Ok(bytes)) = frames.next().await {
        discarded += bytes.len() as u64;
        if discarded > MAX_DISCARDED_BYTES {
            return;
        }
    }
}
