//! `modeld create NAME -f Modelfile`: uploads local weights as blobs and asks the daemon to
//! create the model, printing progress.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ollama_api::modelfile;
use serde_json::{json, Map, Value};

use crate::client::Client;

pub(crate) async fn create(model: &str, modelfile_path: &Path, quantize: Option<&str>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(modelfile_path).with_context(|| format!("reading {}", modelfile_path.display()))?;
    let modelfile = modelfile::parse(&text)?;
    if modelfile.adapter.is_some() {
        bail!("ADAPTER is not supported by modeld yet");
    }
    if modelfile.draft.is_some() {
        bail!("DRAFT (speculative decoding) is not supported by modeld yet");
    }
    let client = Client::from_environment();
    eprintln!("gathering model components");
    let base_dir = modelfile_path.parent().unwrap_or(Path::new("."));
    let mut request = Map::new();
    request.insert("model".into(), Value::from(model));
    // A remote model: `FROM` names it on the remote side, the endpoints say where.
    let local = if modelfile.endpoints.is_empty() { local_path(base_dir, &modelfile.from) } else { None };
    if !modelfile.endpoints.is_empty() {
        request.insert("endpoints".into(), serde_json::to_value(&modelfile.endpoints)?);
    }
    match local {
        // A folder of safetensors weights with its JSON configs (or its .safetensors file,
        // which stands for the folder): every such file is uploaded and the daemon converts.
        Some(path) if path.is_dir() || path.extension().is_some_and(|extension| extension == "safetensors") => {
            let folder = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")).to_owned() };
            let mut files = Map::new();
            for (relative, file) in model_folder_files(&folder)? {
                let digest = upload(&client, &file).await?;
                files.insert(relative, Value::from(digest));
            }
            request.insert("files".into(), Value::Object(files));
        }
        Some(path) => {
            let digest = upload(&client, &path).await?;
            let file_name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            request.insert("files".into(), json!({ file_name: digest }));
        }
        None => {
            request.insert("from".into(), Value::from(modelfile.from.clone()));
        }
    }
    if let Some(template) = modelfile.template {
        request.insert("template".into(), Value::from(template));
    }
    if let Some(system) = modelfile.system {
        request.insert("system".into(), Value::from(system));
    }
    if !modelfile.parameters.is_empty() {
        request.insert("parameters".into(), Value::Object(modelfile.parameters));
    }
    for (field, value) in
        [("requires", &modelfile.requires), ("renderer", &modelfile.renderer), ("parser", &modelfile.parser)]
    {
        if let Some(value) = value {
            request.insert(field.into(), Value::from(value.clone()));
        }
    }
    if let Some(quantize) = quantize {
        request.insert("quantize".into(), Value::from(quantize));
    }
    if !modelfile.licenses.is_empty() {
        request.insert("license".into(), Value::from(modelfile.licenses));
    }
    if !modelfile.messages.is_empty() {
        let messages: Vec<Value> =
            modelfile.messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
        request.insert("messages".into(), Value::from(messages));
    }
    let mut last_status = String::new();
    let mut last_percent = 0u64;
    client
        .stream("/api/create", &Value::Object(request), |line| {
            let Some(status) = line.get("status").and_then(Value::as_str) else { return Ok(()) };
            if status != last_status {
                last_percent = 0;
            }
            // A step with a size (quantizing) shows its percentage every tenth, as it runs.
            let total = line.get("total").and_then(Value::as_u64).filter(|total| *total > 0);
            let completed = line.get("completed").and_then(Value::as_u64).unwrap_or(0);
            match total {
                Some(total) => {
                    let percent = (completed.min(total) * 100) / total;
                    if percent == 100 && last_percent != 100 || percent >= last_percent + 10 {
                        eprintln!("{status} {percent}%");
                        last_percent = percent;
                    }
                }
                None if status != last_status => eprintln!("{status}"),
                None => {}
            }
            last_status = status.to_owned();
            Ok(())
        })
        .await
}

/// Uploads `path` as a blob unless the daemon has it, printing progress; its digest.
async fn upload(client: &Client, path: &Path) -> anyhow::Result<String> {
    let digest = file_digest(path).await?;
    if client.head(&format!("/api/blobs/{digest}")).await? != 200 {
        let mut last_percent = u64::MAX;
        client
            .upload_blob(path, &digest, |sent, total| {
                let percent = (sent * 100).checked_div(total).unwrap_or(100);
                if percent != last_percent && (percent % 10 == 0 || percent == 100) {
                    eprintln!("copying file {digest} {percent}%");
                    last_percent = percent;
                }
            })
            .await?;
    }
    Ok(digest)
}

/// The files of a safetensors model folder the daemon reads (`*.json`, `*.safetensors`), by
/// their path relative to the folder, two levels deep at most (`1_Pooling/config.json`).
fn model_folder_files(folder: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(folder.to_owned(), String::new(), 0)];
    while let Some((directory, prefix, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&directory).with_context(|| format!("reading {}", directory.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() && depth < 1 && !name.starts_with('.') {
                pending.push((path, format!("{prefix}{name}/"), depth + 1));
            } else if file_type.is_file() && (name.ends_with(".json") || name.ends_with(".safetensors")) {
                found.push((format!("{prefix}{name}"), path));
            }
        }
    }
    found.sort();
    if !found.iter().any(|(name, _)| name.ends_with(".safetensors")) {
        bail!("{} holds no .safetensors weights", folder.display());
    }
    Ok(found)
}

/// `FROM` as a local path, when it names an existing file or directory (relative to the
/// Modelfile, `~` expanded).
fn local_path(base_dir: &Path, from: &str) -> Option<PathBuf> {
    let expanded = match from.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var_os("HOME")?).join(rest),
        None => PathBuf::from(from),
    };
    let path = if expanded.is_absolute() { expanded } else { base_dir.join(expanded) };
    path.exists().then_some(path)
}

/// The blob digest of a local file, streamed on a blocking thread.
pub(crate) async fn file_digest(path: &Path) -> anyhow::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        model_store::Digest::of_file(&path)
            .map(|digest| digest.to_string())
            .with_context(|| format!("reading {}", path.display()))
    })
    .await?
}
