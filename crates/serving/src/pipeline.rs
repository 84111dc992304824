//! The two pipelines, completion and chat: from a validated request to a running generation.
//! Both take the same steps, in the order whose errors Ollama's clients see: resolve the model,
//! check what the request asks of it, load or unload, render and fit the prompt, start.

use std::sync::Arc;
use std::time::Instant;

use engine::{Lease, LoadSpec, LoadedModel, OutputConstraint, TemplateMessage};
use model_formats::{OutputParser, ParserConfig, ThinkingMode, ToolCallFormat};
use model_store::Options;

use crate::events::{self, Prepared};
use crate::prompt::{self, PromptRenderer};
use crate::tools::{self, ToolChoice, ToolsWithoutTemplate};
use crate::{
    Capability, ChatInput, Core, GenerateInput, KeepAlive, PromptTemplate, ResolvedModel, ServingError, Started,
};

pub(crate) async fn generate(core: &Core, input: GenerateInput) -> Result<Started, ServingError> {
    let started = Instant::now();
    if input.raw && (input.template.is_some() || input.system.is_some() || input.context.is_some()) {
        return Err(ServingError::invalid("raw mode does not support template, system, or context"));
    }
    // As in Ollama, an empty suffix is a plain prompt.
    let suffix = input.suffix.as_deref().filter(|suffix| !suffix.is_empty());
    let request = Admission {
        spelled: &input.model,
        verb: "generate",
        think: &input.think,
        n_images: input.n_images,
        wants_tools: false,
        wants_insert: suffix.is_some(),
        is_empty: input.prompt.is_empty(),
        options: &input.options,
        keep_alive: input.keep_alive,
        priority: input.priority,
    };
    let Admitted { model, think, mut options, num_ctx, lease } = match admit(core, request).await? {
        AdmitOutcome::Ready(admitted) => *admitted,
        AdmitOutcome::Finished(started) => return Ok(started),
        AdmitOutcome::Remote(model) => return crate::remote::generate(core, &model, input).await,
    };
    let description = lease.model().description();
    let template = match &input.template {
        Some(text) => match PromptTemplate::from_text(text) {
            // As in Ollama, a request's template that does not parse is a server error.
            PromptTemplate::Broken { error, .. } => return Err(ServingError::internal(error)),
            template => Some(template),
        },
        None => model.prompt_template.clone(),
    };
    // A Go template that names `.Suffix` prompts for the middle itself, as under Ollama; other
    // models fill in the middle with the FIM tokens of their vocabulary.
    let go_fill_in_the_middle = match (&template, suffix) {
        (Some(PromptTemplate::Go(template)), Some(suffix)) if template.uses("suffix") && !input.raw => {
            Some((template.clone(), suffix))
        }
        _ => None,
    };
    let fill_in_the_middle = suffix
        .filter(|_| go_fill_in_the_middle.is_none())
        .zip(model.fim.clone())
        .map(|(suffix, template)| (template, suffix));
    let prompt_text = if let Some((template, suffix)) = go_fill_in_the_middle {
        prompt::render_go_fill_in_the_middle(template, input.prompt.clone(), suffix.to_owned(), &think).await?
    } else if let Some((template, suffix)) = &fill_in_the_middle {
        options.stop.get_or_insert_with(Vec::new).extend(template.stops.iter().cloned());
        template.prompt(&input.prompt, suffix)
    } else if input.raw {
        input.prompt.clone()
    } else {
        let mut messages = Vec::new();
        if let Some(system) = input.system.clone().or_else(|| model.system.clone()) {
            messages.push(TemplateMessage { role: "system".into(), content: system, ..Default::default() });
        }
        if input.context.is_none() {
            messages.extend(model.messages.iter().map(prompt::template_message));
        }
        messages.push(TemplateMessage { role: "user".into(), content: input.prompt.clone(), ..Default::default() });
        let renderer = PromptRenderer {
            template,
            tools: None,
            bos_token: description.bos_token.clone(),
            eos_token: description.eos_token.clone(),
            think: think.clone(),
            workers: core.config().template_workers.clone(),
        };
        Arc::new(renderer).render(messages).await?
    };
    let sent_as_is = input.raw || fill_in_the_middle.is_some();
    let mut prompt_tokens = input.context.clone().unwrap_or_default();
    prompt_tokens.extend(lease.model().tokenize(&prompt_text, sent_as_is).await?);
    let prompt_tokens = if input.truncate {
        events::fit_prompt(prompt_tokens, num_ctx, events::num_keep(&options))
    } else {
        prompt_tokens
    };
    let constraint = input.output_schema.map(OutputConstraint::JsonSchema);
    let parser = OutputParser::new(ParserConfig {
        thinking: if sent_as_is { ThinkingMode::Off } else { think.mode },
        starts_in_thinking: prompt_text.trim_end().ends_with(model_formats::THINK_OPEN),
        ..ParserConfig::default()
    });
    let prepared = Prepared { lease, prompt_tokens, options, constraint, num_ctx, started, parser };
    Ok(Started::Running(events::run(prepared, Box::pin(core.shutdown_started())).await?))
}

pub(crate) async fn chat(core: &Core, input: ChatInput) -> Result<Started, ServingError> {
    let started = Instant::now();
    if input.model.is_empty() {
        return Err(ServingError::invalid("model is required"));
    }
    let tools = tools::chosen_tools(&input.tools, &input.tool_choice)?;
    let tools = (!tools.is_empty()).then_some(tools);
    let offers_tools = !input.tools.is_empty();
    let request = Admission {
        spelled: &input.model,
        verb: "chat",
        think: &input.think,
        n_images: input.messages.iter().map(|message| message.n_images).sum(),
        wants_tools: tools.is_some(),
        wants_insert: false,
        is_empty: input.messages.is_empty(),
        options: &input.options,
        keep_alive: input.keep_alive,
        priority: input.priority,
    };
    let Admitted { model, think, options, num_ctx, lease } = match admit(core, request).await? {
        AdmitOutcome::Ready(admitted) => *admitted,
        AdmitOutcome::Finished(started) => return Ok(started),
        AdmitOutcome::Remote(model) => return crate::remote::chat(core, &model, input).await,
    };
    let description = lease.model().description();

    let mut messages: Vec<TemplateMessage> = Vec::new();
    if let Some(system) = &model.system {
        if input.messages.first().is_none_or(|first| first.role != "system") {
            messages.push(TemplateMessage { role: "system".into(), content: system.clone(), ..Default::default() });
        }
    }
    messages.extend(model.messages.iter().map(prompt::template_message));
    messages.extend(input.messages.iter().map(prompt::template_message));

    let template = model.prompt_template.clone();
    // A model whose template has no tool format gets the tools in its system prompt, and its
    // answer is constrained to text or a call (unless the daemon refuses such requests, which
    // `admit` did already). With `tool_choice` `none` too, so that a tool loop's last round
    // keeps the prompt of the earlier rounds, and the prefix cache with it.
    let prompted_tools = offers_tools
        && !model.can(Capability::Tools)
        && core.config().tools_without_template == ToolsWithoutTemplate::Prompt;
    let template_format =
        ToolCallFormat::from_template(template.as_ref().map(PromptTemplate::source).unwrap_or_default());
    let tool_call_format =
        if prompted_tools || forces_a_call(&input.tool_choice) { ToolCallFormat::Json } else { template_format };
    let constraint = if prompted_tools {
        tools::add_to_system_prompt(&mut messages, &tools::tools_system_prompt(&input.tools, &input.tool_choice));
        tools::history_without_tool_format(&mut messages);
        Some(tools::prompted_tools_constraint(tools.as_deref().unwrap_or_default(), &input.tool_choice))
    } else {
        // The template renders the tools and their history; with `required` or a named
        // function, the answer is one call, written as bare JSON. Ollama's Go templates take
        // the history as Ollama gives it.
        if !matches!(template, Some(PromptTemplate::Go(_))) {
            prompt::shape_tool_history(&mut messages, template_format);
        }
        match tools.as_ref().filter(|_| forces_a_call(&input.tool_choice)) {
            Some(chosen) => Some(OutputConstraint::JsonSchema(tools::call_schema(chosen))),
            None => input.output_schema.clone().map(OutputConstraint::JsonSchema),
        }
    };
    let renderer = Arc::new(PromptRenderer {
        template,
        tools: tools.clone().filter(|_| !prompted_tools),
        bos_token: description.bos_token.clone(),
        eos_token: description.eos_token.clone(),
        think: think.clone(),
        workers: core.config().template_workers.clone(),
    });
    let (prompt_text, prompt_tokens) =
        fitted_conversation(lease.model().as_ref(), messages, &renderer, num_ctx, input.truncate).await?;
    let prompt_tokens = if input.truncate {
        events::fit_prompt(prompt_tokens, num_ctx, events::num_keep(&options))
    } else {
        prompt_tokens
    };
    let parser = OutputParser::new(ParserConfig {
        thinking: think.mode,
        starts_in_thinking: prompt_text.trim_end().ends_with(model_formats::THINK_OPEN),
        tool_calls: tools.as_ref().map(|_| tool_call_format),
        tool_names: tools.iter().flatten().filter_map(|tool| tools::tool_name(tool).map(str::to_owned)).collect(),
    });
    let prepared = Prepared { lease, prompt_tokens, options, constraint, num_ctx, started, parser };
    Ok(Started::Running(events::run(prepared, Box::pin(core.shutdown_started())).await?))
}

/// `required` and a named function are enforced by constraining the answer to one call.
fn forces_a_call(choice: &ToolChoice) -> bool {
    matches!(choice, ToolChoice::Required | ToolChoice::Function(_))
}

/// The context window to serve: the option, else the daemon's default, capped at what the
/// model was trained for, and at least 4 tokens.
pub(crate) fn context_size(core: &Core, model: &ResolvedModel, options: &Options) -> usize {
    let wanted = options.num_ctx.filter(|n| *n > 0).map(|n| n as usize).unwrap_or(core.config().default_num_ctx);
    let trained = model.trained_context_length().map(|n| n as usize).unwrap_or(usize::MAX);
    wanted.min(trained).max(4)
}

/// What both pipelines check before they render anything.
struct Admission<'a> {
    /// The model as the client spelled it.
    spelled: &'a str,
    /// `generate` or `chat`, for the error of a model that cannot.
    verb: &'static str,
    think: &'a crate::Think,
    n_images: usize,
    wants_tools: bool,
    wants_insert: bool,
    /// Nothing to generate: load the model (or unload it, with a zero keep-alive).
    is_empty: bool,
    options: &'a Options,
    keep_alive: Option<KeepAlive>,
    priority: engine::Priority,
}

/// A request that may run, holding its turn on the model.
struct Admitted {
    model: Arc<ResolvedModel>,
    think: prompt::ThinkSettings,
    /// The model's parameters overlaid with the request's options.
    options: Options,
    num_ctx: usize,
    lease: Lease,
}

enum AdmitOutcome {
    /// A load or unload, done.
    Finished(Started),
    /// A remote model: the remote checks and runs the request.
    Remote(Arc<ResolvedModel>),
    /// Ready to render and run.
    Ready(Box<Admitted>),
}

/// Resolves the model, checks what the request asks of it (in the order whose errors Ollama's
/// clients see), then loads or unloads it, or takes a turn on it.
async fn admit(core: &Core, request: Admission<'_>) -> Result<AdmitOutcome, ServingError> {
    let model = core.resolve_spelled(request.spelled).await?;
    if model.remote_model().is_some() {
        // Nothing to load for a remote model: an empty request is answered as a load is.
        if request.is_empty {
            let done =
                if request.keep_alive.is_some_and(KeepAlive::is_zero) { Started::Unloaded } else { Started::Loaded };
            return Ok(AdmitOutcome::Finished(done));
        }
        return Ok(AdmitOutcome::Remote(model));
    }
    if !model.can(Capability::Completion) {
        return Err(ServingError::invalid(format!("\"{}\" does not support {}", request.spelled, request.verb)));
    }
    let think = prompt::think_settings(request.think, &model, request.spelled)?;
    prompt::check_images(request.n_images, &model)?;
    if request.wants_tools
        && !model.can(Capability::Tools)
        && core.config().tools_without_template == ToolsWithoutTemplate::Refuse
    {
        return Err(ServingError::invalid(format!("{} does not support tools", model.name.display_full())));
    }
    if request.wants_insert && !model.can(Capability::Insert) {
        return Err(ServingError::invalid(format!("{} does not support insert", model.name.display_full())));
    }
    if request.is_empty && request.keep_alive.is_some_and(KeepAlive::is_zero) {
        core.unload(&model.name);
        return Ok(AdmitOutcome::Finished(Started::Unloaded));
    }
    let options = model.options.merged_with(request.options);
    let num_ctx = context_size(core, &model, &options);
    let lease = acquire_model(core, &model, num_ctx, request.keep_alive, request.priority).await?;
    if request.is_empty {
        return Ok(AdmitOutcome::Finished(Started::Loaded));
    }
    Ok(AdmitOutcome::Ready(Box::new(Admitted { model, think, options, num_ctx, lease })))
}

/// Takes a turn on the model from the scheduler, loading it if needed; refused once the
/// daemon is shutting down.
pub(crate) async fn acquire_model(
    core: &Core,
    model: &ResolvedModel,
    num_ctx: usize,
    keep_alive: Option<KeepAlive>,
    priority: engine::Priority,
) -> Result<Lease, ServingError> {
    let spec = LoadSpec { model_path: model.model_path.clone(), num_ctx, kind: model.kind() };
    let key = model.name.display_full();
    tokio::select! {
        biased;
        () = core.shutdown_started() => Err(ServingError::ShuttingDown),
        acquired = core.scheduler().acquire(&key, &spec, keep_alive, priority) => Ok(acquired?),
    }
}

/// Renders and tokenizes the conversation; when it does not fit the context, drops the oldest
/// messages (never system messages, never the last one) until it does, as Ollama does.
/// Returns the prompt's text and tokens.
async fn fitted_conversation(
    model: &dyn LoadedModel,
    mut messages: Vec<TemplateMessage>,
    renderer: &Arc<PromptRenderer>,
    num_ctx: usize,
    truncate: bool,
) -> Result<(String, Vec<u32>), ServingError> {
    loop {
        let text = renderer.render(messages.clone()).await?;
        let tokens = model.tokenize(&text, false).await?;
        if !truncate || tokens.len() < num_ctx {
            return Ok((text, tokens));
        }
        let last_index = messages.len().saturating_sub(1);
        let Some(oldest) = messages.iter().position(|message| message.role != "system") else {
            return Ok((text, tokens));
        };
        if oldest >= last_index {
            return Ok((text, tokens));
        }
        messages.remove(oldest);
    }
}
