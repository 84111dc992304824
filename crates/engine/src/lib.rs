//! The engine-facing domain: the `Engine` and `LoadedModel` traits, generation requests and
//! events, chat-template rendering, and the scheduler that keeps models loaded.
//!
//! Front-ends (HTTP, LSP, MCP) and the tool loop depend on these traits, never on mistral.rs.
//! `engine-mistralrs` implements them on real weights; [`scripted::ScriptedEngine`] implements
//! them deterministically for protocol tests.

mod chat_template;
mod generation;
mod quantizer;
mod scheduler;
pub mod scripted;
mod stop;
mod template_worker;

pub use chat_template::{render_chat, ChatTemplateInput, RenderError, TemplateMessage};
pub use generation::{
    DoneReason, Engine, EngineCounters, EngineError, Engines, GenerationEvent, GenerationRequest, GenerationSummary,
    KeepAlive, LoadSpec, LoadedModel, ModelDescription, ModelKind, OutputConstraint, Sampling,
};
pub use quantizer::{Quantized, Quantizer};
pub use scheduler::{
    human_binary_bytes, Lease, LoadedModelStatus, Priority, Scheduler, SchedulerConfig, SchedulerError,
};
pub use stop::{StopFilter, StopStep};
pub use template_worker::{serve_template_worker, OwnedRender, TemplateWorkers};
