//! `modeld template-worker`: the process `serve` renders chat templates in, under an address
//! space limit, so a template that allocates without bound ends this process and not the
//! daemon (see `engine::TemplateWorkers`).

use std::process::ExitCode;

use crate::environment;

/// Address space a worker may use by default: the binary's own mappings take a few hundred
/// MiB, rendering real chat templates a few MiB more.
pub(crate) const DEFAULT_TEMPLATE_MEMORY: u64 = 2 << 30;

/// The limit of `MODELD_TEMPLATE_MEMORY`, or the default.
pub(crate) fn memory_limit() -> anyhow::Result<u64> {
    Ok(environment::byte_size("MODELD_TEMPLATE_MEMORY")?.unwrap_or(DEFAULT_TEMPLATE_MEMORY))
}

pub(crate) fn run() -> ExitCode {
    let limit = match memory_limit() {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("Error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    use nix::sys::resource::{setrlimit, Resource};
    if let Err(error) = setrlimit(Resource::RLIMIT_AS, limit, limit) {
        eprintln!("Error: cannot limit the template worker's memory: {error}");
        return ExitCode::FAILURE;
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match engine::serve_template_worker(stdin, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
