//! The tools the MCP server offers, as data: names, descriptions, input and output schemas.
//! The `model` arguments list the installed models, so the tool list changes with them.

use serde_json::{json, Map, Value};

/// A tool of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolName {
    Chat,
    Generate,
    CompleteCode,
    Embed,
    ListModels,
    ShowModel,
}

impl ToolName {
    pub(crate) const ALL: [ToolName; 6] = [
        ToolName::Chat,
        ToolName::Generate,
        ToolName::CompleteCode,
        ToolName::Embed,
        ToolName::ListModels,
        ToolName::ShowModel,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ToolName::Chat => "chat",
            ToolName::Generate => "generate",
            ToolName::CompleteCode => "complete_code",
            ToolName::Embed => "embed",
            ToolName::ListModels => "list_models",
            ToolName::ShowModel => "show_model",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|tool| tool.as_str() == name)
    }
}

/// One tool's definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolDefinition {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) input_schema: Map<String, Value>,
    pub(crate) output_schema: Map<String, Value>,
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Every tool, with `models` (the installed models) as the choices of `model`.
pub(crate) fn definitions(models: &[String]) -> Vec<ToolDefinition> {
    let model = if models.is_empty() {
        json!({"type": "string", "description": "A local model; none is installed yet"})
    } else {
        json!({"type": "string", "enum": models,
               "description": "The local model to use; when left out, the first installed model"})
    };
    let embedding_model = if models.is_empty() {
        json!({"type": "string", "description": "A local embedding model; none is installed yet"})
    } else {
        json!({"type": "string", "enum": models,
               "description": "The local embedding model to use; when left out, the first installed one that embeds"})
    };
    let sampling = json!({
        "temperature": {"type": "number", "description": "Sampling temperature (0 is greedy)"},
        "max_tokens": {"type": "integer", "description": "The most tokens to generate"},
        "seed": {"type": "integer", "description": "Seed for reproducible sampling"},
        "stop": {"type": "array", "items": {"type": "string"}, "description": "Stop sequences"},
    });
    let with_sampling = |mut properties: Value| {
        for (key, value) in sampling.as_object().into_iter().flatten() {
            properties[key] = value.clone();
        }
        properties
    };
    let generated = |field: &str| {
        object(json!({
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                field: {"type": "string"},
                "done_reason": {"type": "string", "enum": ["stop", "length"]},
                "eval_count": {"type": "integer"},
            },
            "required": ["model", field, "done_reason"],
        }))
    };
    let model_summary = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "family": {"type": "string"},
            "parameter_size": {"type": "string"},
            "quantization_level": {"type": "string"},
            "capabilities": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name"],
    });
    let mut chat_output = generated("content");
    chat_output["properties"]["json"] = json!({"description": "The answer parsed, when a schema was given"});
    vec![
        ToolDefinition {
            name: ToolName::Chat.as_str(),
            description: "Ask a local language model: a prompt, or a conversation of messages, with an optional \
                          system prompt and an optional JSON schema the answer must match.",
            input_schema: object(json!({
                "type": "object",
                "properties": with_sampling(json!({
                    "model": model,
                    "prompt": {"type": "string", "description": "The user's message"},
                    "messages": {"type": "array", "description": "Earlier turns, oldest first",
                                 "items": {"type": "object", "properties": {
                                     "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                                     "content": {"type": "string"}}, "required": ["role", "content"]}},
                    "system": {"type": "string", "description": "A system prompt"},
                    "schema": {"type": "object", "description": "A JSON schema the answer must match"},
                })),
            })),
            output_schema: chat_output,
        },
        ToolDefinition {
            name: ToolName::Generate.as_str(),
            description: "Complete a prompt with a local language model (its chat template applied).",
            input_schema: object(json!({
                "type": "object",
                "properties": with_sampling(json!({
                    "model": model,
                    "prompt": {"type": "string"},
                    "system": {"type": "string"},
                })),
                "required": ["prompt"],
            })),
            output_schema: generated("response"),
        },
        ToolDefinition {
            name: ToolName::CompleteCode.as_str(),
            description: "Fill in code between a prefix and a suffix (fill-in-the-middle), with a local code \
                          model that supports it.",
            input_schema: object(json!({
                "type": "object",
                "properties": with_sampling(json!({
                    "model": model,
                    "prefix": {"type": "string", "description": "The code before the cursor"},
                    "suffix": {"type": "string", "description": "The code after the cursor"},
                })),
                "required": ["prefix"],
            })),
            output_schema: generated("completion"),
        },
        ToolDefinition {
            name: ToolName::Embed.as_str(),
            description: "Turn texts into vectors with a local embedding model (all-minilm and the like), for \
                          semantic search, retrieval and clustering. Vectors have unit length.",
            input_schema: object(json!({
                "type": "object",
                "properties": {
                    "model": embedding_model,
                    "input": {
                        "description": "A text, or a list of texts to embed in one batch",
                        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                    },
                    "dimensions": {"type": "integer", "minimum": 1,
                                   "description": "Keep this many leading dimensions (then normalised again)"},
                    "truncate": {"type": "boolean",
                                 "description": "Cut texts longer than the model's context (the default) instead of failing"},
                },
                "required": ["input"],
            })),
            output_schema: object(json!({
                "type": "object",
                "properties": {
                    "model": {"type": "string"},
                    "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                    "prompt_eval_count": {"type": "integer"},
                },
                "required": ["model", "embeddings", "prompt_eval_count"],
            })),
        },
        ToolDefinition {
            name: ToolName::ListModels.as_str(),
            description: "List the installed local models with their family, size and capabilities.",
            input_schema: object(json!({"type": "object", "properties": {}, "additionalProperties": false})),
            output_schema: object(json!({
                "type": "object",
                "properties": {"models": {"type": "array", "items": model_summary}},
                "required": ["models"],
            })),
        },
        ToolDefinition {
            name: ToolName::ShowModel.as_str(),
            description: "Show one local model: family, size, capabilities, context length, template, parameters.",
            input_schema: object(json!({
                "type": "object",
                "properties": {"model": model},
                "required": ["model"],
            })),
            output_schema: object(json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "capabilities": {"type": "array", "items": {"type": "string"}},
                    "context_length": {"type": ["integer", "null"]},
                },
                "required": ["name", "capabilities"],
            })),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_parses_back_and_lists_the_installed_models() {
        let models = vec!["smollm2:135m".to_owned(), "tiny-fim:latest".to_owned()];
        let listed = definitions(&models);
        assert_eq!(listed.len(), ToolName::ALL.len());
        for definition in &listed {
            assert_eq!(ToolName::parse(definition.name).map(ToolName::as_str), Some(definition.name));
            assert_eq!(definition.input_schema["type"], "object");
            assert_eq!(definition.output_schema["type"], "object", "{}", definition.name);
        }
        assert_eq!(listed[0].input_schema["properties"]["model"]["enum"], json!(models));
        assert_eq!(listed[0].input_schema["properties"]["max_tokens"]["type"], "integer");
        assert!(definitions(&[])[0].input_schema["properties"]["model"].get("enum").is_none());
        assert_eq!(ToolName::parse("embed"), Some(ToolName::Embed));
        assert_eq!(ToolName::parse("embeddings"), None);
    }
}
