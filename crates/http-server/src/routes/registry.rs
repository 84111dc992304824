//! `POST /api/pull` and `POST /api/push`: models to and from a registry, with Ollama's progress
//! stream (or, with `stream: false`, its last status).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use model_store::ModelName;
use ollama_api::{ProgressResponse, RegistryRequest};
use registry::{Progress, RegistryOptions};

use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, StreamItem};
use crate::{ApiError, AppState};

#[derive(Clone, Copy)]
enum Direction {
    Pull,
    Push,
}

pub(crate) async fn pull(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<RegistryRequest>,
) -> Result<Response, ApiError> {
    let requested = crate::wire::requested_model(&request.model, &request.name);
    let name = ModelName::parse(requested).map_err(|_| ApiError::bad_request("invalid model name"))?;
    Ok(transfer(state, name, &request, Direction::Pull).await)
}

pub(crate) async fn push(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<RegistryRequest>,
) -> Result<Response, ApiError> {
    let requested = crate::wire::requested_model(&request.model, &request.name);
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let name = ModelName::parse(requested).map_err(|_| ApiError::bad_request("invalid model name"))?;
    Ok(transfer(state, name, &request, Direction::Push).await)
}

/// Runs the transfer on its own task, so a client that goes away does not leave a download
/// half-done, and streams what it reports.
async fn transfer(state: AppState, name: ModelName, request: &RegistryRequest, direction: Direction) -> Response {
    crate::layers::record_model(&name.display_shortest());
    let options =
        RegistryOptions { insecure: request.insecure.unwrap_or(false), part_bytes: state.config().pull_part_bytes };
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let store = state.store().clone();
    let task = tokio::spawn(async move {
        let report = |progress: Progress| {
            let _ = sender.send(StreamItem::Chunk(wire_progress(progress)));
        };
        let result = match direction {
            Direction::Pull => registry::pull(&store, &name, options, &report).await,
            Direction::Push => registry::push(&store, &name, options, &report).await,
        };
        if let Err(error) = &result {
            tracing::warn!(model = %name, %error, "registry transfer failed");
            let _ = sender.send(StreamItem::Error(error.to_string()));
        }
        result
    });
    if request.stream.unwrap_or(true) {
        let items = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        return ndjson_response(items);
    }
    drop(receiver);
    match task.await {
        Ok(Ok(())) => json_response(&ProgressResponse { status: "success".into(), ..Default::default() }),
        Ok(Err(error)) => axum::response::IntoResponse::into_response(ApiError {
            status: StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: error.to_string(),
        }),
        Err(join_error) => axum::response::IntoResponse::into_response(ApiError::internal(join_error.to_string())),
    }
}

fn wire_progress(progress: Progress) -> ProgressResponse {
    ProgressResponse {
        status: progress.status,
        digest: progress.digest,
        total: progress.total,
        completed: progress.completed,
    }
}
