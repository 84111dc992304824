//! `POST /api/embed`, the legacy `POST /api/embeddings` and OpenAI's `POST /v1/embeddings`:
//! each parses its inputs into the core's [`EmbedInput`] and renders the vectors its way.

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use serving::{EmbedInput, EmbedText};

use super::openai::OpenAiError;
use crate::json::{json_response, OllamaJson};
use crate::{wire, ApiError, AppState};

/// `/api/embed`'s body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EmbedRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    truncate: Option<bool>,
    dimensions: Option<usize>,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

/// `/api/embeddings`'s body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

/// `/v1/embeddings`'s body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OpenAiEmbeddingsRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    dimensions: Option<usize>,
    encoding_format: Option<String>,
}

/// `/api/embed`'s inputs: a string or a list of strings; an empty string, `null` or `[]`
/// only loads the model.
fn ollama_inputs(input: &Value) -> Result<Vec<EmbedText>, ApiError> {
    match input {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![EmbedText::Text(text.clone())]),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(|text| EmbedText::Text(text.to_owned())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad_request("invalid input type")),
        _ => Err(ApiError::bad_request("invalid input type")),
    }
}

/// OpenAI's inputs: a string, a list of strings, a list of token ids, or a list of such lists.
fn openai_inputs(input: &Value) -> Result<Vec<EmbedText>, ApiError> {
    let tokens = |items: &[Value]| -> Option<Vec<u32>> {
        items.iter().map(|item| item.as_u64().and_then(|id| u32::try_from(id).ok())).collect()
    };
    match input {
        Value::String(text) => Ok(vec![EmbedText::Text(text.clone())]),
        Value::Array(items) if !items.is_empty() => {
            if items.iter().all(Value::is_number) {
                return tokens(items).map(|ids| vec![EmbedText::Tokens(ids)]).ok_or_else(invalid_input);
            }
            items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Some(EmbedText::Text(text.clone())),
                    Value::Array(ids) => tokens(ids).map(EmbedText::Tokens),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(invalid_input)
        }
        _ => Err(invalid_input()),
    }
}

fn invalid_input() -> ApiError {
    ApiError::bad_request("invalid input")
}

/// The core's error as the embedding routes give it: a model that is not there is
/// `model "NAME" not found, try pulling it first`, NAME as requested (an empty name keeps the
/// short text).
fn embed_error(model: &str) -> impl Fn(serving::ServingError) -> ApiError + '_ {
    move |error| {
        let not_found = matches!(
            error,
            serving::ServingError::ModelNotFound(_)
                | serving::ServingError::Store(model_store::Error::ModelNotFound(_))
        );
        if not_found && !model.is_empty() {
            ApiError::not_found(format!("model \"{model}\" not found, try pulling it first"))
        } else {
            error.into()
        }
    }
}

pub(crate) async fn embed(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<EmbedRequest>,
) -> Result<Response, ApiError> {
    crate::layers::record_model(&request.model);
    let input = EmbedInput {
        model: request.model.clone(),
        inputs: ollama_inputs(&request.input)?,
        truncate: request.truncate != Some(false),
        dimensions: request.dimensions,
        normalize: true,
        options: wire::options(&request.options)?,
        keep_alive: wire::keep_alive(&request.keep_alive)?,
    };
    let embeddings = state.core().embed(input).await.map_err(embed_error(&request.model))?;
    let mut body = json!({"model": request.model, "embeddings": embeddings.vectors});
    if !embeddings.vectors.is_empty() {
        body["total_duration"] = json!(embeddings.total_duration.as_nanos() as u64);
        body["load_duration"] = json!(embeddings.load_duration.as_nanos() as u64);
        body["prompt_eval_count"] = json!(embeddings.prompt_tokens);
    }
    Ok(json_response(&body))
}

pub(crate) async fn embeddings(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    crate::layers::record_model(&request.model);
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let inputs = if request.prompt.is_empty() { Vec::new() } else { vec![EmbedText::Text(request.prompt.clone())] };
    let input = EmbedInput {
        model: request.model.clone(),
        inputs,
        truncate: true,
        dimensions: None,
        normalize: false,
        options: wire::options(&request.options)?,
        keep_alive: wire::keep_alive(&request.keep_alive)?,
    };
    let embeddings = state.core().embed(input).await.map_err(embed_error(&request.model))?;
    let embedding: Vec<f64> =
        embeddings.vectors.into_iter().next().unwrap_or_default().into_iter().map(f64::from).collect();
    Ok(json_response(&json!({ "embedding": embedding })))
}

pub(crate) async fn openai_embeddings(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<OpenAiEmbeddingsRequest>,
) -> Result<Response, OpenAiError> {
    crate::layers::record_model(&request.model);
    let base64 = match request.encoding_format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            let format = request.encoding_format.unwrap_or_default();
            return Err(ApiError::bad_request(format!(
                "Invalid value for 'encoding_format' = {format}. Supported values: ['float', 'base64']."
            ))
            .into());
        }
    };
    let input = EmbedInput {
        model: request.model.clone(),
        inputs: openai_inputs(&request.input)?,
        truncate: true,
        dimensions: request.dimensions,
        normalize: true,
        options: Default::default(),
        keep_alive: None,
    };
    let embeddings = state.core().embed(input).await.map_err(embed_error(&request.model))?;
    let data: Vec<Value> = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|value| value.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "embedding": embedding, "index": index})
        })
        .collect();
    let tokens = embeddings.prompt_tokens;
    Ok(json_response(&json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_inputs_are_a_string_or_strings() {
        assert_eq!(ollama_inputs(&json!("hi")).unwrap(), [EmbedText::Text("hi".into())]);
        assert!(ollama_inputs(&json!("")).unwrap().is_empty());
        assert!(ollama_inputs(&json!(null)).unwrap().is_empty());
        assert!(ollama_inputs(&json!([])).unwrap().is_empty());
        assert_eq!(ollama_inputs(&json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(ollama_inputs(&json!(["a", 1])).unwrap_err().message, "invalid input type");
        assert_eq!(ollama_inputs(&json!(7)).unwrap_err().message, "invalid input type");
    }

    #[test]
    fn openai_inputs_take_token_arrays_too() {
        assert_eq!(openai_inputs(&json!("")).unwrap(), [EmbedText::Text(String::new())]);
        assert_eq!(openai_inputs(&json!([1, 2])).unwrap(), [EmbedText::Tokens(vec![1, 2])]);
        assert_eq!(
            openai_inputs(&json!([[1, 2], "x"])).unwrap(),
            [EmbedText::Tokens(vec![1, 2]), EmbedText::Text("x".into())]
        );
        assert_eq!(openai_inputs(&json!([])).unwrap_err().message, "invalid input");
        assert_eq!(openai_inputs(&json!(null)).unwrap_err().message, "invalid input");
        assert!(openai_inputs(&json!([-1])).is_err());
    }
}
