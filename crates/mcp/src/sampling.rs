//! The client handler of each connection: answers a server's `sampling/createMessage` with a
//! local model (hints matched to installed models, tokens capped, allowed per server) and
//! refreshes the server's tools when it says they changed.
#![allow(deprecated)] // Sampling is deprecated in MCP 2026-07-28, and still what servers send.

use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ErrorCode, Implementation, Role,
    SamplingMessage, SamplingMessageContentBlock,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use serde_json::Value;
use serving::{ChatInput, ChatMessage, Core, DoneReason, Priority, ToolChoice};

use crate::client::ServerSlot;

/// The handler of one server's connection.
pub(crate) struct SamplingClient {
    slot: Arc<ServerSlot>,
    core: Core,
}

impl SamplingClient {
    pub(crate) fn new(slot: Arc<ServerSlot>, core: Core) -> SamplingClient {
        SamplingClient { slot, core }
    }

    async fn answer(&self, params: CreateMessageRequestParams) -> Result<CreateMessageResult, ErrorData> {
        let policy = self.slot.sampling_policy();
        if !policy.enabled {
            return Err(ErrorData::new(
                ErrorCode(-1),
                format!("modeld does not answer sampling requests from {} (see its config)", self.slot.name),
                None,
            ));
        }
        let installed: Vec<String> =
            self.core.list_models().await.into_iter().map(|(entry, _)| entry.name.display_shortest()).collect();
        let hints: Vec<String> = params
            .model_preferences
            .as_ref()
            .and_then(|preferences| preferences.hints.as_ref())
            .map(|hints| hints.iter().filter_map(|hint| hint.name.clone()).collect())
            .unwrap_or_default();
        let model = choose_model(&hints, policy.model.as_deref(), &installed).ok_or_else(|| {
            ErrorData::internal_error("no local model is installed to answer the sampling request", None)
        })?;
        let mut messages = Vec::new();
        if let Some(system) = params.system_prompt.as_deref().filter(|system| !system.is_empty()) {
            messages.push(ChatMessage::new("system", system));
        }
        for message in &params.messages {
            messages.push(chat_message(message));
        }
        let tools: Vec<Value> = params
            .tools
            .iter()
            .flatten()
            .map(|tool| {
                crate::convert::function_definition(&tool.name, tool.description.as_deref(), &tool.input_schema)
            })
            .collect();
        let tool_choice = match params.tool_choice.as_ref().and_then(|choice| choice.mode.as_ref()) {
            Some(rmcp::model::ToolChoiceMode::Required) => ToolChoice::Required,
            Some(rmcp::model::ToolChoiceMode::None) => ToolChoice::None,
            _ => ToolChoice::Auto,
        };
        let options = serving::Options {
            num_predict: Some(i64::from(params.max_tokens.clamp(1, policy.max_tokens))),
            temperature: params.temperature.map(f64::from),
            stop: params.stop_sequences.clone().filter(|stops| !stops.is_empty()),
            ..serving::Options::default()
        };
        let input = ChatInput {
            model: model.clone(),
            messages,
            tools,
            tool_choice,
            options,
            truncate: true,
            priority: Priority::Chat,
            ..ChatInput::default()
        };
        let started =
            self.core.chat(input).await.map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let reply = serving::collect(started.into_events())
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        tracing::info!(server = %self.slot.name, %model, "answered a sampling request");
        if !reply.tool_calls.is_empty() {
            let blocks: Vec<SamplingMessageContentBlock> = reply
                .tool_calls
                .iter()
                .map(|call| {
                    SamplingMessageContentBlock::tool_use(
                        call.id.clone().unwrap_or_default(),
                        call.name.clone(),
                        call.arguments.clone(),
                    )
                })
                .collect();
            return Ok(CreateMessageResult::new(SamplingMessage::new_multiple(Role::Assistant, blocks), model)
                .with_stop_reason(CreateMessageResult::STOP_REASON_TOOL_USE));
        }
        let stop_reason = match reply.finished.as_ref().map(|finished| finished.done_reason) {
            Some(DoneReason::Length) => CreateMessageResult::STOP_REASON_END_MAX_TOKEN,
            _ => CreateMessageResult::STOP_REASON_END_TURN,
        };
        Ok(CreateMessageResult::new(SamplingMessage::assistant_text(reply.content), model)
            .with_stop_reason(stop_reason))
    }
}

/// The model that answers: the first installed model a hint names (hints are substrings, in
/// order of preference), else the configured one, else the first installed model.
pub(crate) fn choose_model(hints: &[String], configured: Option<&str>, installed: &[String]) -> Option<String> {
    for hint in hints.iter().filter(|hint| !hint.is_empty()) {
        if let Some(found) = installed.iter().find(|name| name.contains(hint.as_str())) {
            return Some(found.clone());
        }
    }
    configured.map(str::to_owned).or_else(|| installed.first().cloned())
}

/// A sampling message as a chat message: text blocks joined, tool uses as calls, tool results
/// as `tool` messages.
fn chat_message(message: &SamplingMessage) -> ChatMessage {
    let role = if matches!(message.role, Role::Assistant) { "assistant" } else { "user" };
    let mut chat = ChatMessage::new(role, "");
    let mut texts = Vec::new();
    for block in message.content.iter() {
        let block = serde_json::to_value(block).unwrap_or_default();
        match block.get("type").and_then(Value::as_str) {
            Some("text") => texts.push(block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()),
            Some("tool_use") => chat.tool_calls.push(serving::ToolCall {
                id: block.get("id").and_then(Value::as_str).map(str::to_owned),
                index: chat.tool_calls.len(),
                name: block.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                arguments: block.get("input").and_then(Value::as_object).cloned().unwrap_or_default(),
            }),
            Some("tool_result") => {
                chat.role = "tool".into();
                chat.tool_call_id = block.get("toolUseId").and_then(Value::as_str).map(str::to_owned);
                let (text, _) = crate::convert::result_text(&block);
                texts.push(text);
            }
            Some(other) => texts.push(format!("[{other} content, not shown]")),
            None => {}
        }
    }
    chat.content = texts.join("\n");
    chat
}

impl ClientHandler for SamplingClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_sampling().enable_sampling_tools().build(),
            Implementation::new("modeld", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.answer(params).await
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        match context.peer.list_all_tools().await {
            Ok(tools) => {
                tracing::info!(server = %self.slot.name, tools = tools.len(), "MCP server's tools changed");
                self.slot.set_tools(tools);
            }
            Err(error) => tracing::warn!(server = %self.slot.name, "cannot list the changed tools: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_pick_installed_models_in_order() {
        let installed = vec!["smollm2:135m".to_owned(), "tiny-agent:latest".to_owned()];
        let hint = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        assert_eq!(choose_model(&hint(&["claude", "agent"]), None, &installed).as_deref(), Some("tiny-agent:latest"));
        assert_eq!(choose_model(&hint(&["claude"]), Some("smollm2:135m"), &installed).as_deref(), Some("smollm2:135m"));
        assert_eq!(choose_model(&[], None, &installed).as_deref(), Some("smollm2:135m"));
        assert_eq!(choose_model(&[], None, &[]), None);
    }
}
