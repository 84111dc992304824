//! `list`, `ps`, `show`, `cp`, `rm`, `stop` and `--version`: thin clients of the API.

// A command-line face: it prints its answers on stdout.
#![allow(clippy::print_stdout)]

use anyhow::bail;
use serde_json::{json, Value};

use crate::client::{is_not_found, Client};
use crate::format::{human_bytes, table, time_ago, time_until};

pub(crate) async fn version() -> anyhow::Result<()> {
    let client_version = env!("CARGO_PKG_VERSION");
    match Client::from_environment().get("/api/version").await {
        Ok(value) => {
            let server_version = value["version"].as_str().unwrap_or_default().to_owned();
            println!("modeld version is {server_version}");
            if server_version != client_version {
                eprintln!("Warning: client version is {client_version}");
            }
        }
        Err(_) => {
            eprintln!("Warning: could not connect to a running modeld instance");
            eprintln!("Warning: client version is {client_version}");
        }
    }
    Ok(())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

pub(crate) async fn list() -> anyhow::Result<()> {
    let tags = Client::from_environment().get("/api/tags").await?;
    let mut rows = vec![vec!["NAME".into(), "ID".into(), "SIZE".into(), "MODIFIED".into()]];
    for model in tags["models"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&model["name"]),
            text(&model["digest"]).chars().take(12).collect(),
            human_bytes(model["size"].as_u64().unwrap_or_default()),
            time_ago(&text(&model["modified_at"])),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

pub(crate) async fn ps() -> anyhow::Result<()> {
    let running = Client::from_environment().get("/api/ps").await?;
    let mut rows =
        vec![vec!["NAME".into(), "ID".into(), "SIZE".into(), "PROCESSOR".into(), "CONTEXT".into(), "UNTIL".into()]];
    for model in running["models"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&model["name"]),
            text(&model["digest"]).chars().take(12).collect(),
            human_bytes(model["size"].as_u64().unwrap_or_default()),
            "100% CPU".into(),
            model["context_length"].as_u64().unwrap_or_default().to_string(),
            time_until(&text(&model["expires_at"])),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Which single field `show` prints, if a flag asked for one.
pub(crate) enum ShowField {
    All,
    License,
    Modelfile,
    Parameters,
    Template,
    System,
}

impl ShowField {
    pub(crate) fn from_flags(
        license: bool,
        modelfile: bool,
        parameters: bool,
        template: bool,
        system: bool,
    ) -> ShowField {
        match (license, modelfile, parameters, template, system) {
            (true, ..) => ShowField::License,
            (_, true, ..) => ShowField::Modelfile,
            (_, _, true, ..) => ShowField::Parameters,
            (_, _, _, true, _) => ShowField::Template,
            (.., true) => ShowField::System,
            _ => ShowField::All,
        }
    }
}

pub(crate) async fn show(model: &str, field: ShowField) -> anyhow::Result<()> {
    let show = Client::from_environment().post("/api/show", &json!({"model": model})).await?;
    let single = |key: &str| -> anyhow::Result<()> {
        match show.get(key).and_then(Value::as_str) {
            Some(value) => println!("{value}"),
            None => println!("No {key} was specified for this model."),
        }
        Ok(())
    };
    match field {
        ShowField::License => return single("license"),
        ShowField::Modelfile => return single("modelfile"),
        ShowField::Parameters => return single("parameters"),
        ShowField::Template => return single("template"),
        ShowField::System => return single("system"),
        ShowField::All => {}
    }
    let info = &show["model_info"];
    let architecture = text(&info["general.architecture"]);
    let number = |key: &str| info.get(format!("{architecture}.{key}")).and_then(Value::as_u64);
    println!("  Model");
    let mut rows = vec![
        vec!["architecture".to_owned(), architecture.clone()],
        vec!["parameters".to_owned(), text(&show["details"]["parameter_size"])],
    ];
    if let Some(context_length) = number("context_length") {
        rows.push(vec!["context length".to_owned(), context_length.to_string()]);
    }
    if let Some(embedding_length) = number("embedding_length") {
        rows.push(vec!["embedding length".to_owned(), embedding_length.to_string()]);
    }
    rows.push(vec!["quantization".to_owned(), text(&show["details"]["quantization_level"])]);
    print_section(&rows);
    if let Some(capabilities) = show["capabilities"].as_array() {
        println!("  Capabilities");
        print_section(&capabilities.iter().map(|capability| vec![text(capability)]).collect::<Vec<_>>());
    }
    if let Some(parameters) = show["parameters"].as_str() {
        println!("  Parameters");
        let rows: Vec<Vec<String>> = parameters
            .lines()
            .map(|line| {
                let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                vec![key.to_owned(), value.trim().to_owned()]
            })
            .collect();
        print_section(&rows);
    }
    for (key, title) in [("system", "System"), ("license", "License")] {
        if let Some(value) = show[key].as_str() {
            println!("  {title}");
            let first_lines: Vec<Vec<String>> = value.lines().take(2).map(|line| vec![line.to_owned()]).collect();
            print_section(&first_lines);
        }
    }
    Ok(())
}

fn print_section(rows: &[Vec<String>]) {
    for line in table(rows).lines() {
        println!("    {line}");
    }
    println!();
}

pub(crate) async fn copy(source: &str, destination: &str) -> anyhow::Result<()> {
    Client::from_environment().post("/api/copy", &json!({"source": source, "destination": destination})).await?;
    println!("copied '{source}' to '{destination}'");
    Ok(())
}

pub(crate) async fn remove(models: &[String]) -> anyhow::Result<()> {
    let client = Client::from_environment();
    for model in models {
        // Unload first, as Ollama does; a model that is not loaded is fine.
        let _ = client.post("/api/generate", &json!({"model": model, "keep_alive": 0})).await;
        client.delete("/api/delete", &json!({"model": model})).await?;
        println!("deleted '{model}'");
    }
    Ok(())
}

pub(crate) async fn stop(model: &str) -> anyhow::Result<()> {
    let client = Client::from_environment();
    if let Err(error) = client.post("/api/show", &json!({"model": model})).await {
        if is_not_found(&error) {
            bail!("couldn't find model \"{model}\" to stop");
        }
        return Err(error);
    }
    client.post("/api/generate", &json!({"model": model, "keep_alive": 0})).await?;
    Ok(())
}
