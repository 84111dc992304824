//! Model listing and management: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`,
//! `/api/copy`, `/api/delete`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use model_store::ModelName;
use ollama_api::{
    CopyRequest, DeleteRequest, ListModel, ListResponse, ProcessResponse, RunningModel, ShowRequest, ShowResponse,
    VersionResponse,
};
use serde_json::Value;

use crate::json::{json_response, OllamaJson};
use crate::ndjson::local_rfc3339;
use crate::resolve::details_from;
use crate::{ApiError, AppState, ResolvedModel};

pub(crate) async fn root() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Ollama is running").into_response()
}

pub(crate) async fn version(State(state): State<AppState>) -> Response {
    json_response(&VersionResponse { version: state.config().version.clone() })
}

pub(crate) async fn tags(State(state): State<AppState>) -> Response {
    let models = state
        .store()
        .list()
        .into_iter()
        .map(|entry| {
            let resolved = state.resolve(&entry.name).ok();
            let details = match &resolved {
                Some(model) => model.details(),
                None => details_from(&Default::default(), None),
            };
            let display = entry.name.display_shortest();
            ListModel {
                name: display.clone(),
                model: display,
                modified_at: local_rfc3339(entry.modified_at),
                size: entry.manifest.total_size(),
                digest: entry.manifest_digest.hex().to_owned(),
                details,
            }
        })
        .collect();
    json_response(&ListResponse { models })
}

pub(crate) async fn ps(State(state): State<AppState>) -> Response {
    let models = state
        .scheduler()
        .status()
        .into_iter()
        .filter_map(|status| {
            let name = ModelName::parse(&status.key).ok()?;
            let model = state.resolve(&name).ok()?;
            let display = name.display_shortest();
            // A model kept forever shows the far future, as Ollama's saturating add does.
            let expires_at = match status.expires_at {
                Some(time) => local_rfc3339(time),
                None => "2318-08-23T07:56:22.709551615+00:00".to_owned(),
            };
            Some(RunningModel {
                name: display.clone(),
                model: display,
                size: status.memory_bytes,
                size_vram: 0,
                digest: model.entry.manifest_digest.hex().to_owned(),
                details: model.details(),
                expires_at,
                context_length: status.context_length as u64,
            })
        })
        .collect();
    json_response(&ProcessResponse { models })
}

pub(crate) async fn show(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<ShowRequest>,
) -> Result<Response, ApiError> {
    let requested =
        if request.model.is_empty() { request.name.clone().unwrap_or_default() } else { request.model.clone() };
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let name = ModelName::parse(&requested).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let model = state.resolve(&name).map_err(|error| {
        if error.status == 404 {
            ApiError::not_found(format!("model '{}' not found", name.display_shortest()))
        } else {
            error
        }
    })?;
    let mut model_info = serde_json::Map::new();
    for (key, value) in &model.gguf.metadata {
        if key == "general.name" || key == "tokenizer.chat_template" {
            continue;
        }
        let value = match value {
            Value::Array(items) if items.len() > 5 && !request.verbose => Value::Array(Vec::new()),
            other => other.clone(),
        };
        model_info.insert(key.clone(), value);
    }
    model_info.insert("general.parameter_count".into(), Value::from(model.gguf.parameter_count()));
    let system = request.system.clone().or_else(|| model.system.clone());
    let parameters = parameters_text(&model.parameters);
    Ok(json_response(&ShowResponse {
        license: (!model.licenses.is_empty()).then(|| model.licenses.join("\n")),
        modelfile: Some(modelfile_text(&model, system.as_deref())),
        parameters: (!parameters.is_empty()).then_some(parameters),
        template: model.shown_template(),
        system,
        details: model.details(),
        messages: (!model.messages.is_empty()).then(|| model.messages.clone()),
        model_info,
        capabilities: Some(model.capabilities().into_iter().map(str::to_owned).collect()),
        modified_at: local_rfc3339(model.entry.modified_at),
    }))
}

/// One line per parameter: the key padded to 30 columns, then the value (strings quoted; list
/// values one line each), as `ollama show --parameters` prints them.
fn parameters_text(parameters: &serde_json::Map<String, Value>) -> String {
    let lines: Vec<String> = parameter_pairs(parameters).map(|(key, value)| format!("{key:<30} {value}")).collect();
    lines.join("\n")
}

/// Each parameter as (key, value), a list parameter once per item.
fn parameter_pairs(parameters: &serde_json::Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    parameters.iter().flat_map(|(key, value)| match value {
        Value::Array(items) => items.iter().map(|item| (key, item)).collect::<Vec<_>>(),
        other => vec![(key, other)],
    })
}

fn modelfile_text(model: &ResolvedModel, system: Option<&str>) -> String {
    let display = model.name.display_shortest();
    let mut text = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {display}\n\nFROM {}\n",
        model.model_path.display()
    );
    if let Some(template) = &model.template_layer {
        text.push_str(&format!("TEMPLATE \"\"\"{template}\"\"\"\n"));
    }
    if let Some(system) = system {
        text.push_str(&format!("SYSTEM \"\"\"{system}\"\"\"\n"));
    }
    for (key, value) in parameter_pairs(&model.parameters) {
        text.push_str(&format!("PARAMETER {key} {value}\n"));
    }
    for license in &model.licenses {
        text.push_str(&format!("LICENSE \"\"\"{license}\"\"\"\n"));
    }
    for message in &model.messages {
        text.push_str(&format!("MESSAGE {} \"\"\"{}\"\"\"\n", message.role, message.content));
    }
    text
}

pub(crate) async fn copy(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<CopyRequest>,
) -> Result<Response, ApiError> {
    let source = ModelName::parse(&request.source)
        .map_err(|_| ApiError::bad_request(format!("source \"{}\" is invalid", request.source)))?;
    let destination = ModelName::parse(&request.destination)
        .map_err(|_| ApiError::bad_request(format!("destination \"{}\" is invalid", request.destination)))?;
    let store = state.store().clone();
    let copied = tokio::task::spawn_blocking(move || store.copy(&source, &destination))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;
    copied.map_err(|error| match error {
        model_store::Error::ModelNotFound(_) => ApiError::not_found(format!("model \"{}\" not found", request.source)),
        other => other.into(),
    })?;
    Ok(().into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<DeleteRequest>,
) -> Result<Response, ApiError> {
    let requested =
        if request.model.is_empty() { request.name.clone().unwrap_or_default() } else { request.model.clone() };
    let name =
        ModelName::parse(&requested).map_err(|_| ApiError::bad_request(format!("name \"{requested}\" is invalid")))?;
    state.scheduler().unload(&name.display_full());
    let store = state.store().clone();
    let deleted = tokio::task::spawn_blocking(move || store.delete(&name))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?;
    deleted.map_err(|error| match error {
        model_store::Error::ModelNotFound(_) => ApiError::not_found(format!("model '{requested}' not found")),
        other => other.into(),
    })?;
    Ok(().into_response())
}
