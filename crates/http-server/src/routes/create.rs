//! `POST /api/create`: a model from uploaded GGUF blobs or from an existing model, with
//! template, system, parameters, messages and license layers.

use axum::extract::State;
use axum::response::Response;
use futures_util::StreamExt;
use model_store::{gguf, media_type, ConfigV2, Digest, Layer, Manifest, ModelName, RemoteApi, RemoteEndpoint};
use ollama_api::{CreateRequest, Options, ProgressResponse};
use serde_json::Value;

use crate::json::{json_response, OllamaJson};
use crate::ndjson::{ndjson_response, StreamItem};
use crate::{ApiError, AppState};

pub(crate) async fn create(
    State(state): State<AppState>,
    OllamaJson(request): OllamaJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let stream = request.stream.unwrap_or(true);
    crate::layers::record_model(crate::wire::requested_model(&request.model, &request.name));
    // A remote model's capabilities are asked of the remote before anything is written.
    let remote = remote_capabilities(&state, &request).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let job = tokio::task::spawn_blocking(move || {
        let result = create_model(&state, &request, remote, &|progress| {
            let _ = sender.send(StreamItem::Chunk(progress));
        });
        if let Err(error) = &result {
            let _ = sender.send(StreamItem::Error(error.message.clone()));
        }
        result
    });
    let finished = |joined: Result<Result<(), ApiError>, tokio::task::JoinError>| {
        joined.map_err(|error| ApiError::internal(error.to_string()))?
    };
    if !stream {
        drop(receiver);
        finished(job.await)?;
        return Ok(json_response(&status("success")));
    }
    // Progress streams as it happens. A request refused before its first status (a bad name, a
    // missing base, a template that does not parse) keeps its status code; a failure after
    // that ends the stream with an error line, as in Ollama.
    match receiver.recv().await {
        Some(StreamItem::Chunk(first)) => {
            let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|item| (item, receiver))
            });
            let items = futures_util::stream::once(async move { StreamItem::Chunk(first) }).chain(rest);
            Ok(ndjson_response(items))
        }
        _ => {
            finished(job.await)?;
            Err(ApiError::internal("create ended without reporting"))
        }
    }
}

fn status(text: impl Into<String>) -> ProgressResponse {
    ProgressResponse { status: text.into(), ..Default::default() }
}

/// The most endpoints one remote model may have.
const MAX_ENDPOINTS: usize = 64;

/// The replicas a create names: Ollama's `remote_host` (an Ollama server) and modeld's
/// `endpoints`; `None` for a local model.
fn remote_endpoints(request: &CreateRequest) -> Result<Option<Vec<RemoteEndpoint>>, ApiError> {
    let mut endpoints = Vec::new();
    if let Some(host) = request.remote_host.as_deref().filter(|host| !host.is_empty()) {
        let url = if host.contains("://") { host.to_owned() } else { format!("http://{host}") };
        endpoints.push(
            RemoteEndpoint::new(&url, RemoteApi::Ollama, None)
                .map_err(|error| ApiError::bad_request(error.to_string()))?,
        );
    }
    for value in request.endpoints.iter().flatten() {
        let endpoint: RemoteEndpoint = serde_json::from_value(value.clone())
            .map_err(|error| ApiError::bad_request(format!("invalid endpoint: {error}")))?;
        endpoints.push(endpoint);
    }
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(ApiError::bad_request(format!("a remote model has at most {MAX_ENDPOINTS} endpoints")));
    }
    Ok((!endpoints.is_empty()).then_some(endpoints))
}

/// What a remote model can do, asked of its replicas (the first that answers): `None` for
/// a local model; an empty list, with the reason, when no replica could tell now.
async fn remote_capabilities(state: &AppState, request: &CreateRequest) -> Result<Option<RemoteFacts>, ApiError> {
    let Some(endpoints) = remote_endpoints(request)? else { return Ok(None) };
    let from = request.from.clone().unwrap_or_default();
    if from.is_empty() {
        return Err(ApiError::bad_request("a remote model needs 'from': the model's name on the remote side"));
    }
    let Some(remote_models) = state.core().remote_models() else {
        return Err(ApiError::not_implemented("remote models are not enabled in this modeld"));
    };
    let model = serving::RemoteModel { local_name: String::new(), remote_name: from, endpoints };
    match remote_models.capabilities(model).await {
        Ok(capabilities) => Ok(Some(RemoteFacts {
            capabilities: capabilities.iter().map(|capability| capability.as_str().to_owned()).collect(),
            unreachable: None,
        })),
        // The remote answered that it has no such model: nothing is created.
        Err(serving::ServingError::Remote { status: 404, message }) => Err(ApiError::not_found(message)),
        Err(error) => Ok(Some(RemoteFacts { capabilities: Vec::new(), unreachable: Some(error.to_string()) })),
    }
}

/// Whether a template prompts fill-in-the-middle (an Ollama Go template that names `.Suffix`).
fn template_names_suffix(text: &str) -> bool {
    matches!(serving::PromptTemplate::from_text(text), serving::PromptTemplate::Go(template) if template.uses("suffix"))
}

/// What `create` learned of a remote model.
struct RemoteFacts {
    capabilities: Vec<String>,
    /// Why no replica could tell, when none could.
    unreachable: Option<String>,
}

fn create_model(
    state: &AppState,
    request: &CreateRequest,
    remote: Option<RemoteFacts>,
    report: &dyn Fn(ProgressResponse),
) -> Result<(), ApiError> {
    let store = state.store();
    let requested = crate::wire::requested_model(&request.model, &request.name);
    if requested.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let name = ModelName::parse(requested).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let quantize = request.quantize.as_deref().or(request.quantization.as_deref()).filter(|target| !target.is_empty());
    let quantizer = match quantize {
        Some(target) => {
            let quantizer = state
                .core()
                .quantizer()
                .ok_or_else(|| ApiError::not_implemented("quantization is not supported by this modeld"))?;
            let Some(canonical) = quantizer.targets().into_iter().find(|known| known.eq_ignore_ascii_case(target))
            else {
                return Err(ApiError::bad_request(format!("unsupported quantization type {target}")));
            };
            Some((quantizer, canonical))
        }
        None => None,
    };
    if request.adapters.as_ref().is_some_and(|adapters| !adapters.is_empty()) {
        return Err(ApiError::not_implemented("adapters are not supported by modeld yet"));
    }
    if let Some(template) = &request.template {
        serving::PromptTemplate::check(template)
            .map_err(|error| ApiError::bad_request(format!("template error: {error}")))?;
    }
    let endpoints = remote_endpoints(request)?;
    let (mut config, mut layers) = match (&request.from, &request.files) {
        _ if endpoints.is_some() => {
            if request.files.as_ref().is_some_and(|files| !files.is_empty()) || quantizer.is_some() {
                return Err(ApiError::bad_request("a remote model has no weights here: no files, no quantize"));
            }
            // The server prompts chats; a template here only prompts fill-in-the-middle.
            if request.template.as_deref().is_some_and(|template| !template_names_suffix(template)) {
                return Err(ApiError::bad_request(
                    "a remote model is prompted by its server: a template is only for fill-in-the-middle (it must use .Suffix)",
                ));
            }
            let facts = remote.unwrap_or(RemoteFacts { capabilities: Vec::new(), unreachable: None });
            if let Some(reason) = &facts.unreachable {
                report(status(format!("no endpoint could tell the model's capabilities now ({reason})")));
            }
            let endpoints = endpoints.unwrap_or_default();
            let config = ConfigV2 {
                model_format: "remote".into(),
                remote_model: request.from.clone(),
                remote_host: endpoints.first().map(|endpoint| endpoint.url.clone()),
                remote_endpoints: Some(endpoints),
                capabilities: (!facts.capabilities.is_empty()).then_some(facts.capabilities),
                ..Default::default()
            };
            (config, Vec::new())
        }
        (_, Some(files)) if !files.is_empty() => layers_from_files(state, files, report)?,
        (Some(from), _) if !from.is_empty() => {
            let base = ModelName::parse(from).map_err(|_| ApiError::bad_request("invalid model name"))?;
            let base_entry = store.get(&base).map_err(|error| match error {
                model_store::Error::ModelNotFound(_) => ApiError::not_found(format!("model \"{from}\" not found")),
                other => other.into(),
            })?;
            let base_config: ConfigV2 = store
                .read_blob_string(&base_entry.manifest.config.digest)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            let mut layers = base_entry.manifest.layers.clone();
            for layer in &mut layers {
                layer.from.get_or_insert_with(|| base.display_shortest());
            }
            (base_config, layers)
        }
        _ => return Err(ApiError::bad_request("neither 'from' or 'files' was specified")),
    };

    // Quantizing takes long: it writes a temporary file without holding the store's lock.
    let quantized = match &quantizer {
        Some((quantizer, target)) => Some(quantize_model_layer(state, quantizer.as_ref(), target, &layers, report)?),
        None => None,
    };
    // Writing the layers, the manifest and collecting what it replaced is one unit under the
    // store's write lock, so a concurrent delete or collection never removes a blob between its
    // write and the manifest that names it.
    let guard = store.write_lock()?;
    if let Some(quantized) = quantized {
        adopt_quantized(state, quantized, &mut config, &mut layers, report)?;
    }
    if let Some(template) = &request.template {
        replace_layer(state, &mut layers, media_type::TEMPLATE, Some(template.clone().into_bytes()), report)?;
    }
    if let Some(system) = &request.system {
        replace_layer(state, &mut layers, media_type::SYSTEM, Some(system.clone().into_bytes()), report)?;
    }
    if let Some(parameters) = request.parameters.as_ref().filter(|parameters| !parameters.is_empty()) {
        Options::from_map(parameters).map_err(|error| ApiError::bad_request(error.to_string()))?;
        let mut merged = inherited_parameters(state, &layers);
        for (key, value) in parameters {
            merged.insert(key.clone(), value.clone());
        }
        replace_layer(
            state,
            &mut layers,
            media_type::PARAMS,
            Some(serde_json::to_vec(&merged).unwrap_or_default()),
            report,
        )?;
    }
    if let Some(messages) = request.messages.as_ref().filter(|messages| !messages.is_empty()) {
        replace_layer(
            state,
            &mut layers,
            media_type::MESSAGES,
            Some(serde_json::to_vec(messages).unwrap_or_default()),
            report,
        )?;
    }
    if let Some(license) = &request.license {
        let licenses: Vec<String> = match license {
            Value::String(text) => vec![text.clone()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        replace_layer(state, &mut layers, media_type::LICENSE, None, report)?;
        for license in licenses {
            layers.push(write_layer(state, media_type::LICENSE, license.as_bytes(), report)?);
        }
    }

    if let Some(requires) = request.requires.as_ref().filter(|requires| !requires.is_empty()) {
        if !ollama_api::modelfile::is_semver(requires) {
            return Err(ApiError::bad_request(ollama_api::modelfile::REQUIRES_ERROR));
        }
        config.requires = Some(requires.clone());
    }
    if let Some(renderer) = request.renderer.as_ref().filter(|renderer| !renderer.is_empty()) {
        config.renderer = Some(renderer.clone());
    }
    if let Some(parser) = request.parser.as_ref().filter(|parser| !parser.is_empty()) {
        config.parser = Some(parser.clone());
    }
    if config.remote_endpoints.is_none() {
        config.model_format = "gguf".into();
    }
    if config.architecture.is_empty() {
        config.architecture = "amd64".into();
        config.os = "linux".into();
    }
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let (config_digest, config_size) = store.write_blob_bytes(&config_bytes)?;
    let manifest = Manifest::new(
        Layer { media_type: media_type::CONFIG.into(), digest: config_digest, size: config_size, from: None },
        layers,
    );
    // A base model removed while this create ran took blobs with it that no manifest may name.
    if let Some(missing) = manifest.all_digests().find(|digest| !store.has_blob(digest)) {
        return Err(ApiError::bad_request(format!("blob \"{missing}\" not found")));
    }
    report(status("writing manifest"));
    let previous = store.get(&name).ok();
    guard.put(&name, &manifest)?;
    if let Some(previous) = previous {
        let candidates: Vec<Digest> = previous.manifest.all_digests().cloned().collect();
        guard.remove_unreferenced(candidates)?;
    }
    // Uploads nobody created a model from, once older than the grace period.
    match guard.collect_garbage(model_store::GcPolicy::with_grace(state.config().blob_grace)) {
        Ok(report) if !report.removed.is_empty() => {
            tracing::info!(n_blobs = report.removed.len(), bytes = report.bytes_freed, "removed unreferenced blobs")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "garbage collection after create failed"),
    }
    drop(guard);
    report(status("success"));
    Ok(())
}

fn layers_from_files(
    state: &AppState,
    files: &serde_json::Map<String, Value>,
    report: &dyn Fn(ProgressResponse),
) -> Result<(ConfigV2, Vec<Layer>), ApiError> {
    let store = state.store();
    let mut paths = std::collections::BTreeMap::new();
    for (file_name, digest) in files {
        if file_name.starts_with('/') || file_name.split(['/', '\\']).any(|part| part == "..") {
            return Err(ApiError::bad_request("file path must be relative"));
        }
        let digest = digest
            .as_str()
            .and_then(|text| Digest::parse(text).ok())
            .ok_or_else(|| ApiError::bad_request("invalid digest format"))?;
        if !store.has_blob(&digest) {
            return Err(ApiError::bad_request(format!("blob \"{digest}\" not found")));
        }
        let path = store.blob_path(&digest);
        paths.insert(file_name.clone(), (digest, path));
    }
    report(status("parsing GGUF"));
    // GGUF files by their magic; one with the magic but a broken header is refused as it is.
    let mut gguf_files = Vec::new();
    for (name, (_, path)) in &paths {
        match gguf::read_header(path) {
            Ok(_) => gguf_files.push(name),
            Err(gguf::GgufError::BadMagic) => {}
            Err(error) => return Err(ApiError::bad_request(format!("{name}: {error}"))),
        }
    }
    let (file_name, digest) = match gguf_files[..] {
        [name] => (name.clone(), paths[name].0.clone()),
        [_, _, ..] => {
            return Err(ApiError::not_implemented("split or multiple GGUF files are not supported by modeld yet"))
        }
        [] => {
            let folder: std::collections::BTreeMap<String, std::path::PathBuf> =
                paths.iter().map(|(name, (_, path))| (name.clone(), path.clone())).collect();
            if folder.is_empty() {
                return Err(ApiError::bad_request("no GGUF model file given"));
            }
            if !model_store::convert_bert::is_bert_folder(&folder) {
                return Err(ApiError::not_implemented(
                    "only GGUF files and BERT embedding models (safetensors) can be imported by modeld",
                ));
            }
            let bytes = model_store::convert_bert::convert_bert(&folder)
                .map_err(|error| ApiError::bad_request(format!("converting the model: {error}")))?;
            let (digest, _) = store.write_blob_bytes(&bytes)?;
            ("model.gguf".to_owned(), digest)
        }
    };
    let path = store.blob_path(&digest);
    let header = gguf::read_header(&path).map_err(|error| ApiError::bad_request(format!("{file_name}: {error}")))?;
    // Weights no engine can run are refused now, not at the first request.
    state.core().check_loadable(&header)?;
    let architecture = header.architecture();
    let config = ConfigV2 {
        model_format: "gguf".into(),
        model_family: architecture.clone(),
        model_families: Some(vec![architecture]),
        model_type: header.parameter_size(),
        file_type: header.quantization_level(),
        context_length: header.context_length(),
        embedding_length: header.embedding_length(),
        ..Default::default()
    };
    let size = std::fs::metadata(&path).map(|metadata| metadata.len()).unwrap_or_default();
    Ok((config, vec![Layer { media_type: media_type::MODEL.into(), digest, size, from: None }]))
}

fn inherited_parameters(state: &AppState, layers: &[Layer]) -> serde_json::Map<String, Value> {
    layers
        .iter()
        .find(|layer| layer.media_type == media_type::PARAMS)
        .and_then(|layer| state.store().read_blob_string(&layer.digest).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// The model layer quantized into a temporary file, not yet a blob.
struct QuantizedLayer {
    file: model_store::TemporaryBlobFile,
    /// The new `file_type` of the config.
    file_type: String,
}

/// Quantizes the model layer into a temporary file, reporting progress as Ollama does.
fn quantize_model_layer(
    state: &AppState,
    quantizer: &dyn engine::Quantizer,
    target: &str,
    layers: &[Layer],
    report: &dyn Fn(ProgressResponse),
) -> Result<QuantizedLayer, ApiError> {
    let store = state.store();
    let Some(model_layer) = layers.iter().find(|layer| layer.media_type == media_type::MODEL) else {
        return Err(ApiError::bad_request("quantization needs a model with GGUF weights"));
    };
    let source = store.blob_path(&model_layer.digest);
    let engine_error = |error: engine::EngineError| match error {
        engine::EngineError::Unsupported(message) => ApiError::bad_request(message),
        other => ApiError::internal(other.to_string()),
    };
    let source_type = quantizer.source_type(&source).map_err(engine_error)?;
    let status_text = format!("quantizing {source_type} model to {}", target.to_ascii_uppercase());
    let mut file = store.temporary_blob_file()?;
    let mut last_reported = 0u64;
    let quantized = quantizer
        .quantize(&source, file.as_file_mut(), target, &mut |done, total| {
            // Ollama's progress for this step: a made-up digest, bytes of the source done.
            if done == 0 || done == total || done - last_reported >= total / 20 {
                last_reported = done;
                report(ProgressResponse {
                    status: status_text.clone(),
                    digest: Some("0000000000000000000".into()),
                    total: Some(total),
                    completed: Some(done),
                });
            }
        })
        .map_err(engine_error)?;
    Ok(QuantizedLayer { file, file_type: quantized.file_type })
}

/// Makes the quantized file a blob (under the store's write lock) and the model layer.
fn adopt_quantized(
    state: &AppState,
    quantized: QuantizedLayer,
    config: &mut ConfigV2,
    layers: &mut [Layer],
    report: &dyn Fn(ProgressResponse),
) -> Result<(), ApiError> {
    let store = state.store();
    let (digest, size) = store.adopt_blob(quantized.file)?;
    // What was written must read back as GGUF before any manifest names it.
    gguf::read_header(&store.blob_path(&digest))
        .map_err(|error| ApiError::internal(format!("the quantized file does not read back: {error}")))?;
    report(status(format!("creating new layer {digest}")));
    if let Some(model_layer) = layers.iter_mut().find(|layer| layer.media_type == media_type::MODEL) {
        *model_layer = Layer { media_type: media_type::MODEL.into(), digest, size, from: None };
    }
    config.file_type = quantized.file_type;
    Ok(())
}

fn write_layer(
    state: &AppState,
    media: &str,
    bytes: &[u8],
    report: &dyn Fn(ProgressResponse),
) -> Result<Layer, ApiError> {
    let existed = state.store().has_blob(&Digest::of_bytes(bytes));
    let (digest, size) = state.store().write_blob_bytes(bytes)?;
    let verb = if existed { "using existing layer" } else { "creating new layer" };
    report(status(format!("{verb} {digest}")));
    Ok(Layer { media_type: media.into(), digest, size, from: None })
}

/// Drops the layers of `media` (and the legacy template type with it) and adds `bytes` as the
/// new layer of that type.
fn replace_layer(
    state: &AppState,
    layers: &mut Vec<Layer>,
    media: &str,
    bytes: Option<Vec<u8>>,
    report: &dyn Fn(ProgressResponse),
) -> Result<(), ApiError> {
    layers.retain(|layer| {
        layer.media_type != media && !(media == media_type::TEMPLATE && layer.media_type == media_type::PROMPT)
    });
    if let Some(bytes) = bytes {
        layers.push(write_layer(state, media, &bytes, report)?);
    }
    Ok(())
}
