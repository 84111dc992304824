//! `modeld`: the command line. `serve` runs the daemon; the other commands talk to it over
//! the Ollama HTTP API, as Ollama's own CLI does.

mod bench;
mod client;
mod create;
mod environment;
mod format;
mod language_server;
mod manage;
mod mcp_command;
mod run;
mod serve;
mod template_worker;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A local model daemon speaking the Ollama API.
#[derive(Parser)]
#[command(name = "modeld", version, disable_version_flag = true)]
struct Cli {
    /// Show the client and server versions.
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the daemon (Ollama API on OLLAMA_HOST, default 127.0.0.1:11434).
    #[command(alias = "start")]
    Serve,
    /// Run a model: one answer for PROMPT or piped stdin, else an interactive chat.
    Run {
        /// Model name.
        model: String,
        /// Prompt; without it (and without piped input) an interactive chat starts.
        prompt: Vec<String>,
        /// Print timings after each answer.
        #[arg(long)]
        verbose: bool,
        /// How long to keep the model loaded (e.g. 5m, 1h, -1 for ever).
        #[arg(long)]
        keepalive: Option<String>,
        /// Do not wrap words (accepted for compatibility; output is never wrapped).
        #[arg(long)]
        nowordwrap: bool,
    },
    /// List models.
    #[command(alias = "ls")]
    List,
    /// List loaded models.
    Ps,
    /// Show information about a model.
    Show {
        /// Model name.
        model: String,
        /// Show the license.
        #[arg(long)]
        license: bool,
        /// Show a Modelfile.
        #[arg(long)]
        modelfile: bool,
        /// Show parameters.
        #[arg(long)]
        parameters: bool,
        /// Show the template.
        #[arg(long)]
        template: bool,
        /// Show the system prompt.
        #[arg(long)]
        system: bool,
    },
    /// Copy a model.
    Cp {
        /// Existing model.
        source: String,
        /// New name.
        destination: String,
    },
    /// Remove models.
    Rm {
        /// Models to remove.
        #[arg(required = true)]
        models: Vec<String>,
    },
    /// Create a model from a Modelfile.
    Create {
        /// Name of the new model.
        model: String,
        /// Path to the Modelfile.
        #[arg(short = 'f', long = "file", default_value = "Modelfile")]
        file: PathBuf,
        /// Quantize the weights: q8_0, q4_0, q4_K_S or q4_K_M.
        #[arg(short = 'q', long = "quantize")]
        quantize: Option<String>,
    },
    /// Pull a model from a registry (the name's host; Ollama's registry by default).
    Pull {
        /// Model name, e.g. `registry.example:5000/team/model:tag`.
        model: String,
        /// Use plain http (for a registry without TLS).
        #[arg(long)]
        insecure: bool,
    },
    /// Push a model to the registry its name names.
    Push {
        /// Model name, e.g. `registry.example:5000/team/model:tag`.
        model: String,
        /// Use plain http (for a registry without TLS).
        #[arg(long)]
        insecure: bool,
    },
    /// Unload a running model.
    Stop {
        /// Model name.
        model: String,
    },
    /// Run the language server on stdin/stdout: inline code completion and code-aware chat
    /// from the daemon's model (started on demand when none answers at OLLAMA_HOST).
    Lsp {
        /// Print the recorded completion statistics (requests, accepts, latency) and exit.
        #[arg(long)]
        stats: bool,
        /// Accepted for editors that pass it (stdio is the only transport).
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// Run the MCP server on stdin/stdout (the daemon's models as tools for agents, through
    /// the daemon, started on demand), or list the MCP servers the daemon uses.
    Mcp {
        #[command(subcommand)]
        command: Option<McpCommand>,
    },
    /// Measure prompt and decode speed, time to first token and peak memory of the daemon.
    Bench(bench::BenchArgs),
    /// Render chat templates from stdin under a memory limit (started by `serve`).
    #[command(hide = true)]
    TemplateWorker,
}

#[derive(Subcommand)]
enum McpCommand {
    /// List the configured MCP servers with their state and tools.
    Servers,
}

fn main() -> ExitCode {
    environment::keep_backtraces_out_of_library_errors();
    let cli = Cli::parse();
    if let Some(Command::TemplateWorker) = cli.command {
        // Before any runtime or thread exists, so the memory limit counts only the worker.
        return template_worker::run();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if cli.version {
            return manage::version().await;
        }
        match cli.command {
            None => {
                use clap::CommandFactory;
                Cli::command().print_help()?;
                Ok(())
            }
            Some(Command::Serve) => serve::serve().await,
            Some(Command::Run { model, prompt, verbose, keepalive, nowordwrap: _ }) => {
                run::run(run::RunConfig { model, prompt: prompt.join(" "), verbose, keep_alive: keepalive }).await
            }
            Some(Command::List) => manage::list().await,
            Some(Command::Ps) => manage::ps().await,
            Some(Command::Show { model, license, modelfile, parameters, template, system }) => {
                let field = manage::ShowField::from_flags(license, modelfile, parameters, template, system);
                manage::show(&model, field).await
            }
            Some(Command::Cp { source, destination }) => manage::copy(&source, &destination).await,
            Some(Command::Rm { models }) => manage::remove(&models).await,
            Some(Command::Create { model, file, quantize }) => create::create(&model, &file, quantize.as_deref()).await,
            Some(Command::Stop { model }) => manage::stop(&model).await,
            Some(Command::Pull { model, insecure }) => transfer::transfer(&model, insecure, false).await,
            Some(Command::Push { model, insecure }) => transfer::transfer(&model, insecure, true).await,
            Some(Command::Bench(args)) => bench::bench(args).await,
            Some(Command::Lsp { stats, stdio: _ }) => language_server::run(stats).await,
            Some(Command::Mcp { command: None }) => mcp_command::serve_stdio().await,
            Some(Command::Mcp { command: Some(McpCommand::Servers) }) => mcp_command::list_servers().await,
            Some(Command::TemplateWorker) => unreachable!("handled before the runtime starts"),
        }
    });
    // Engine work still running on blocking threads (a load the shutdown interrupted) must not
    // hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
