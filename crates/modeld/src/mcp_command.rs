//! `modeld mcp`: the MCP server on stdio (forwarding to the daemon, started on demand), and
//! `modeld mcp servers`: the configured MCP servers the daemon uses, with state and tools.
#![allow(clippy::print_stdout)]

use serde_json::Value;

use crate::client::Client;
use crate::environment;
use crate::format::table;
use crate::language_server::{daemon_launcher, log_to_stderr};

pub(crate) async fn serve_stdio() -> anyhow::Result<()> {
    // MCP clients keep stderr.
    log_to_stderr("info,rmcp=warn");
    let base_url = environment::base_url();
    if !environment::flag("MODELD_MCP_NO_AUTOSTART") {
        let launcher = daemon_launcher();
        if let Err(error) = lsp::daemon::Daemon::new(base_url.clone()).ensure_running(launcher.as_ref()).await {
            anyhow::bail!("the modeld daemon at {base_url} is not running and could not be started: {error}");
        }
    }
    mcp::serve_stdio_proxy(&format!("{base_url}/mcp")).await.map_err(anyhow::Error::msg)
}

pub(crate) async fn list_servers() -> anyhow::Result<()> {
    let answer = Client::from_environment().get("/api/mcp/servers").await?;
    let mut rows = vec![vec!["NAME".into(), "STATE".into(), "TOOLS".into(), "RESTARTS".into(), "TRANSPORT".into()]];
    let mut errors = Vec::new();
    for server in answer["servers"].as_array().into_iter().flatten() {
        let name = server["name"].as_str().unwrap_or_default().to_owned();
        let tools: Vec<&str> = server["tools"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        rows.push(vec![
            name.clone(),
            server["state"].as_str().unwrap_or_default().to_owned(),
            tools.len().to_string(),
            server["restarts"].as_u64().unwrap_or_default().to_string(),
            server["transport"].as_str().unwrap_or_default().to_owned(),
        ]);
        if let Some(error) = server["error"].as_str() {
            errors.push(format!("{name}: {error}"));
        }
    }
    if rows.len() == 1 {
        println!("No MCP servers are configured (see MODELD_MCP_CONFIG).");
        return Ok(());
    }
    print!("{}", table(&rows));
    for error in errors {
        println!("{error}");
    }
    Ok(())
}
