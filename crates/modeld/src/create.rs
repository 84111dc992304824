//! `modeld create NAME -f Modelfile`: uploads local weights as blobs and asks the daemon to
//! create the model, printing progress.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ollama_api::modelfile;
use serde_json::{json, Map, Value};

use crate::client::Client;

pub(crate) async fn create(model: &str, modelfile_path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(modelfile_path).with_context(|| format!("reading {}", modelfile_path.display()))?;
    let modelfile = modelfile::parse(&text)?;
    if modelfile.adapter.is_some() {
        bail!("ADAPTER is not supported by modeld yet");
    }
    let client = Client::from_environment();
    eprintln!("gathering model components");
    let base_dir = modelfile_path.parent().unwrap_or(Path::new("."));
    let mut request = Map::new();
    request.insert("model".into(), Value::from(model));
    match local_path(base_dir, &modelfile.from) {
        Some(path) if path.is_dir() => bail!("importing a directory (safetensors) is not supported by modeld yet"),
        Some(path) => {
            let digest = file_digest(&path).await?;
            if client.head(&format!("/api/blobs/{digest}")).await? != 200 {
                let mut last_percent = u64::MAX;
                client
                    .upload_blob(&path, &digest, |sent, total| {
                        let percent = (sent * 100).checked_div(total).unwrap_or(100);
                        if percent != last_percent && (percent % 10 == 0 || percent == 100) {
                            eprintln!("copying file {digest} {percent}%");
                            last_percent = percent;
                        }
                    })
                    .await?;
            }
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
    if !modelfile.licenses.is_empty() {
        request.insert("license".into(), Value::from(modelfile.licenses));
    }
    if !modelfile.messages.is_empty() {
        let messages: Vec<Value> =
            modelfile.messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
        request.insert("messages".into(), Value::from(messages));
    }
    client
        .stream("/api/create", &Value::Object(request), |line| {
            if let Some(status) = line.get("status").and_then(Value::as_str) {
                eprintln!("{status}");
            }
            Ok(())
        })
        .await
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
