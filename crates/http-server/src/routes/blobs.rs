//! `HEAD` and `POST /api/blobs/:digest`: check for and upload raw blobs, verified by digest.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use model_store::Digest;

use crate::{ApiError, AppState};

pub(crate) async fn head_blob(State(state): State<AppState>, Path(digest): Path<String>) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest).map_err(|_| ApiError::bad_request("invalid digest format"))?;
    if state.store().has_blob(&digest) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::not_found(format!("blob \"{digest}\" not found")))
    }
}

/// Streams the body into a temporary file, hashing as it goes; a dropped connection or a wrong
/// digest leaves nothing behind.
pub(crate) async fn post_blob(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest).map_err(|_| ApiError::bad_request("invalid digest format"))?;
    if state.store().has_blob(&digest) {
        return Ok(StatusCode::OK.into_response());
    }
    let mut blob = state.store().begin_blob()?;
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|error| ApiError::bad_request(error.to_string()))?;
        blob.write(&bytes)?;
    }
    blob.finish(Some(&digest))?;
    Ok(StatusCode::CREATED.into_response())
}
