//! The route table: one module per resource, merged here.

mod blobs;
mod chat;
mod create;
mod embed;
mod generate;
mod models;
mod openai;
mod registry;

use axum::routing::{get, head, post};
use axum::Router;

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(models::root).head(models::root))
        .route("/api/version", get(models::version).head(models::version))
        .route("/api/tags", get(models::tags).head(models::tags))
        .route("/api/ps", get(models::ps))
        .route("/api/show", post(models::show))
        .route("/api/copy", post(models::copy))
        .route("/api/delete", axum::routing::delete(models::delete))
        .route("/api/generate", post(generate::generate))
        .route("/api/chat", post(chat::chat))
        .route("/api/create", post(create::create))
        .route("/api/blobs/{digest}", head(blobs::head_blob).post(blobs::post_blob))
        .route("/api/pull", post(registry::pull))
        .route("/api/push", post(registry::push))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{model}", get(openai::retrieve_model))
        .route("/api/mcp/servers", get(models::mcp_servers))
        .fallback(not_found)
}

/// Unknown paths answer as Go's router does.
async fn not_found() -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::NOT_FOUND, "404 page not found")
}
