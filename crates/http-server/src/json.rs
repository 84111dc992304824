//! `OllamaJson`: a JSON body extractor whose failures are Ollama's 400s, not axum's defaults.
//!
//! Ollama reads bodies whatever their `Content-Type` (curl's form default works).

use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ApiError;

/// A request body parsed as JSON.
pub(crate) struct OllamaJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OllamaJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError { status: rejection.status(), message: rejection.body_text() })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("missing request body"));
        }
        serde_json::from_slice(&bytes).map(OllamaJson).map_err(|error| ApiError::bad_request(error.to_string()))
    }
}

/// A JSON response with Go's content type.
pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}
