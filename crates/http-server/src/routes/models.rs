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

use serving::ResolvedModel;

use crate::json::{json_response, OllamaJson};
use crate::ndjson::local_rfc3339;
use crate::{wire, ApiError, AppState};

pub(crate) async fn root() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Ollama is running").into_response()
}

pub(crate) async fn version(State(state): State<AppState>) -> Response {
    json_response(&VersionResponse { version: state.config().version.clone() })
}

pub(crate) async fn tags(State(state): State<AppState>) -> Response {
    let models = state
        .core()
        .list_models()
        .await
        .into_iter()
        .map(|(entry, resolved)| {
            let details = match &resolved {
                Some(model) => wire::details(model),
                None => wire::details_from(&Default::default(), None),
            };
            let display = entry.name.display_shortest();
            ListModel {
                name: display.clone(),
                model: display,
                modified_at: local_rfc3339(entry.modified_at),
                size: entry.manifest.total_size(),
                digest: entry.manifest_digest.hex().to_owned(),
                remote_model: resolved.as_ref().and_then(|model| model.config.remote_model.clone()),
                remote_host: resolved.as_ref().and_then(|model| model.config.remote_host.clone()),
                details,
            }
        })
        .collect();
    json_response(&ListResponse { models })
}

/// modeld: the configured MCP servers, their state and tools (`modeld mcp servers`).
pub(crate) async fn mcp_servers(State(state): State<AppState>) -> Response {
    let servers = state.core().tool_provider().map(|provider| provider.servers()).unwrap_or_default();
    json_response(&serde_json::json!({ "servers": servers }))
}

pub(crate) async fn ps(State(state): State<AppState>) -> Response {
    let models = state
        .core()
        .running_models()
        .await
        .into_iter()
        .map(|(status, model)| {
            let display = model.name.display_shortest();
            // A model kept forever shows the far future, as Ollama's saturating add does.
            let expires_at = match status.expires_at {
                Some(time) => local_rfc3339(time),
                None => "2318-08-23T07:56:22.709551615+00:00".to_owned(),
            };
            RunningModel {
                name: display.clone(),
                model: display,
                size: status.memory_bytes,
                size_vram: 0,
                digest: model.entry.manifest_digest.hex().to_owned(),
                details: wire::details(&model),
                expires_at,
                context_length: status.context_length as u64,
            }
        })
        .collect();
    json_response(&ProcessResponse { models })
}

pub(crate) async fn show(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<ShowRequest>,
) -> Result<Response, ApiError> {
    let requested = wire::requested_model(&request.model, &request.name);
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let name = ModelName::parse(requested).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let model = state.core().resolve(&name, &name.display_shortest()).await?;
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
        requires: model.config.requires.clone(),
        parameters: (!parameters.is_empty()).then_some(parameters),
        template: model.shown_template(),
        system,
        details: wire::details(&model),
        messages: (!model.messages.is_empty()).then(|| model.messages.iter().map(wire::wire_message).collect()),
        remote_model: model.config.remote_model.clone(),
        remote_host: model.config.remote_host.clone(),
        model_info,
        capabilities: Some(model.capabilities().iter().map(|capability| capability.as_str().to_owned()).collect()),
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
    // A remote model comes back as its remote name and its endpoints (key variables' names,
    // never keys).
    let from = match model.remote_model() {
        Some(remote) => {
            let mut from = remote.remote_name;
            for endpoint in &remote.endpoints {
                from.push_str(&format!("\nENDPOINT {}", endpoint.to_line()));
            }
            from
        }
        None => model.model_path.display().to_string(),
    };
    let mut text = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM {display}\n\nFROM {from}\n"
    );
    // Every value is written so that the Modelfile parser reads it back as it is, and
    // `modeld create` from this text makes the same layers.
    let quote = ollama_api::modelfile::quote;
    if let Some(template) = &model.template_layer {
        text.push_str(&format!("TEMPLATE {}\n", quote(template)));
    }
    if let Some(system) = system {
        text.push_str(&format!("SYSTEM {}\n", quote(system)));
    }
    for (key, value) in parameter_pairs(&model.parameters) {
        let value = match value {
            Value::String(text) => quote(text),
            other => other.to_string(),
        };
        text.push_str(&format!("PARAMETER {key} {value}\n"));
    }
    for license in &model.licenses {
        text.push_str(&format!("LICENSE {}\n", quote(license)));
    }
    for message in &model.messages {
        text.push_str(&format!("MESSAGE {} {}\n", message.role, quote(&message.content)));
    }
    for (command, value) in
        [("REQUIRES", &model.config.requires), ("RENDERER", &model.config.renderer), ("PARSER", &model.config.parser)]
    {
        if let Some(value) = value {
            text.push_str(&format!("{command} {}\n", quote(value)));
        }
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
    state.core().copy_model(source, destination).await.map_err(|error| match error {
        serving::ServingError::ModelNotFound(_) => {
            ApiError::not_found(format!("model \"{}\" not found", request.source))
        }
        other => other.into(),
    })?;
    Ok(().into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<DeleteRequest>,
) -> Result<Response, ApiError> {
    let requested = wire::requested_model(&request.model, &request.name);
    let name =
        ModelName::parse(requested).map_err(|_| ApiError::bad_request(format!("name \"{requested}\" is invalid")))?;
    state.core().delete_model(name, requested).await?;
    Ok(().into_response())
}
