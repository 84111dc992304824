//! Routes whose capability modeld does not have yet: they answer with a clear error instead
//! of pretending to succeed.

use crate::ApiError;

pub(crate) async fn pull() -> ApiError {
    ApiError::not_implemented(
        "pulling from a registry is not supported by modeld yet; use `modeld create` with a local GGUF file",
    )
}

pub(crate) async fn push() -> ApiError {
    ApiError::not_implemented("pushing to a registry is not supported by modeld yet")
}
