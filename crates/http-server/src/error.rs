//! `ApiError`: every failure of the HTTP API, rendered as Ollama's `{"error": "..."}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error with the status code and text Ollama gives for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// 500 with `message`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }

    /// 503: too many requests wait already.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }

    /// 501 for a capability modeld does not have yet.
    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_IMPLEMENTED, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl From<model_store::Error> for ApiError {
    fn from(error: model_store::Error) -> ApiError {
        match &error {
            model_store::Error::ModelNotFound(name) => ApiError::not_found(format!("model '{name}' not found")),
            model_store::Error::BlobNotFound(_) | model_store::Error::DigestMismatch { .. } => {
                ApiError::bad_request(error.to_string())
            }
            model_store::Error::BlobTooLarge { .. } => {
                ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, message: error.to_string() }
            }
            _ => ApiError::internal(error.to_string()),
        }
    }
}

impl From<serving::ServingError> for ApiError {
    fn from(error: serving::ServingError) -> ApiError {
        use serving::ServingError;
        match error {
            ServingError::ModelNotFound(_) => ApiError::not_found(error.to_string()),
            ServingError::InvalidRequest(message) => ApiError::bad_request(message),
            ServingError::Busy(message) => ApiError::busy(message),
            ServingError::ShuttingDown => ApiError::busy(error.to_string()),
            ServingError::NotImplemented(message) => ApiError::not_implemented(message),
            ServingError::Store(store_error) => store_error.into(),
            ServingError::Internal(message) => ApiError::internal(message),
            ServingError::Remote { status, message } => ApiError {
                status: StatusCode::from_u16(status)
                    .ok()
                    .filter(|status| status.is_client_error() || status.is_server_error())
                    .unwrap_or(StatusCode::BAD_GATEWAY),
                message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let body = serde_json::to_vec(&ollama_api::ErrorResponse { error: self.message }).unwrap_or_default();
        (self.status, [(axum::http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
    }
}
