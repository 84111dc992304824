//! Settings from Ollama's environment variables, parsed as Ollama parses them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ollama_api::KeepAlive;

/// An environment variable, trimmed of spaces and quotes; `None` when unset or empty.
pub(crate) fn variable(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim().to_owned();
    (!value.is_empty()).then_some(value)
}

/// `OLLAMA_HOST` as `host:port` (default `127.0.0.1:11434`). With an explicit `http://` or
/// `https://` scheme the default port is 80 or 443, as in Ollama; a path is dropped.
pub(crate) fn host_and_port() -> String {
    parse_host(&variable("OLLAMA_HOST").unwrap_or_default())
}

fn parse_host(raw: &str) -> String {
    let (default_port, rest) = match raw.split_once("://") {
        Some(("https", rest)) => ("443", rest),
        Some((_, rest)) => ("80", rest),
        None => ("11434", raw),
    };
    let rest = rest.split('/').next().unwrap_or_default();
    let (host, port) = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains(']') => (&rest[..colon], &rest[colon + 1..]),
        _ => (rest, default_port),
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port = if port.is_empty() { default_port } else { port };
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ollama_host_forms() {
        let cases = [
            ("", "127.0.0.1:11434"),
            ("0.0.0.0", "0.0.0.0:11434"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            (":9000", "127.0.0.1:9000"),
            ("http://example.com", "example.com:80"),
            ("https://example.com/path", "example.com:443"),
            ("http://[::1]:8080", "[::1]:8080"),
        ];
        for (raw, expected) in cases {
            assert_eq!(super::parse_host(raw), expected, "{raw}");
        }
    }
}

/// The address `serve` binds.
pub(crate) fn bind_address() -> anyhow::Result<SocketAddr> {
    let host_port = host_and_port();
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .with_context(|| format!("invalid OLLAMA_HOST {host_port}"))?
        .next()
        .with_context(|| format!("invalid OLLAMA_HOST {host_port}"))
}

/// The base URL clients use.
pub(crate) fn base_url() -> String {
    let host_port = host_and_port();
    let host_port = host_port.replace("0.0.0.0", "127.0.0.1");
    format!("http://{host_port}")
}

/// `OLLAMA_MODELS`, else `~/.ollama/models`.
pub(crate) fn models_dir() -> PathBuf {
    if let Some(dir) = variable("OLLAMA_MODELS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".ollama").join("models")
}

/// `OLLAMA_KEEP_ALIVE` (default 5m); `None` is forever.
pub(crate) fn default_keep_alive() -> anyhow::Result<Option<Duration>> {
    let Some(text) = variable("OLLAMA_KEEP_ALIVE") else { return Ok(Some(Duration::from_secs(300))) };
    match KeepAlive::parse(&text).with_context(|| format!("invalid OLLAMA_KEEP_ALIVE {text:?}"))? {
        KeepAlive::Forever => Ok(None),
        KeepAlive::For(duration) => Ok(Some(duration)),
    }
}

/// An unsigned integer variable, or its default when unset or zero.
pub(crate) fn unsigned(name: &str, default: usize) -> anyhow::Result<usize> {
    match variable(name) {
        None => Ok(default),
        Some(text) => {
            let value: usize = text.parse().with_context(|| format!("invalid {name} {text:?}"))?;
            Ok(if value == 0 { default } else { value })
        }
    }
}

/// Where Q8_0 copies of weights without SIMD kernels go: `MODELD_REQUANTIZE_DIR`, else
/// `$XDG_CACHE_HOME/modeld/requantized` or `~/.cache/modeld/requantized`. `MODELD_REQUANTIZE=0`
/// turns requantizing off.
pub(crate) fn requantized_weights_dir() -> Option<PathBuf> {
    if variable("MODELD_REQUANTIZE").as_deref() == Some("0") {
        return None;
    }
    if let Some(dir) = variable("MODELD_REQUANTIZE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let cache = variable("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("modeld").join("requantized"))
}

/// The mistral.rs engine's settings: where requantized copies go (and their type,
/// `MODELD_REQUANTIZE_TYPE`, for measurements), the activation type (`MODELD_ACTIVATION_DTYPE`),
/// the prefix cache budget (`MODELD_PREFIX_CACHE_MIB`, default 256).
pub(crate) fn mistralrs_config(max_running_sequences: usize) -> anyhow::Result<engine_mistralrs::MistralRsConfig> {
    use engine_mistralrs::{ActivationDtype, MistralRsConfig, RequantizeType};
    let defaults = MistralRsConfig::default();
    let requantize_type = match variable("MODELD_REQUANTIZE_TYPE") {
        None => defaults.requantize_type,
        Some(name) => RequantizeType::from_name(&name)
            .with_context(|| format!("invalid MODELD_REQUANTIZE_TYPE {name:?} (q8_0, f32, f16, q4k, q6k)"))?,
    };
    let activation_dtype = match variable("MODELD_ACTIVATION_DTYPE") {
        None => defaults.activation_dtype,
        Some(name) => ActivationDtype::from_name(&name)
            .with_context(|| format!("invalid MODELD_ACTIVATION_DTYPE {name:?} (f32, f16, bf16, auto)"))?,
    };
    // Zero is a setting here (keep nothing), not "the default".
    let prefix_cache_mib: usize = match variable("MODELD_PREFIX_CACHE_MIB") {
        None => defaults.prefix_cache_bytes >> 20,
        Some(text) => text.parse().with_context(|| format!("invalid MODELD_PREFIX_CACHE_MIB {text:?}"))?,
    };
    Ok(MistralRsConfig {
        requantized_weights_dir: requantized_weights_dir(),
        requantize_type,
        max_running_sequences,
        activation_dtype,
        prefix_cache_bytes: prefix_cache_mib.saturating_mul(1 << 20),
    })
}

/// A byte size variable (`MODELD_MAX_BLOB_SIZE=64GiB`); `None` when unset.
pub(crate) fn byte_size(name: &str) -> anyhow::Result<Option<u64>> {
    let Some(text) = variable(name) else { return Ok(None) };
    let bytes = parse_byte_size(&text).with_context(|| format!("invalid {name} {text:?} (e.g. 500MB, 64GiB)"))?;
    Ok(Some(bytes))
}

/// `123`, `500MB`, `64GiB`, `1.5G`: decimal units for `kB/MB/GB/TB`, binary for `KiB/MiB/GiB/TiB`
/// and for bare `K/M/G/T`.
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A duration variable in Go's syntax or seconds (`30m`, `3600`), or `default` when unset.
pub(crate) fn duration(name: &str, default: Duration) -> anyhow::Result<Duration> {
    let Some(text) = variable(name) else { return Ok(default) };
    match KeepAlive::parse(&text).with_context(|| format!("invalid {name} {text:?}"))? {
        KeepAlive::Forever => Ok(Duration::MAX),
        KeepAlive::For(duration) => Ok(duration),
    }
}

/// A boolean variable as Go's `strconv.ParseBool` reads it; unparsable text is true, as in
/// Ollama.
pub(crate) fn flag(name: &str) -> bool {
    match variable(name) {
        None => false,
        Some(text) => !matches!(text.as_str(), "0" | "f" | "F" | "false" | "FALSE" | "False"),
    }
}

/// This machine's host name, for the DNS-rebinding guard.
pub(crate) fn machine_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Turns off the backtraces that library errors capture (`RUST_LIB_BACKTRACE=0`) unless the
/// user set `RUST_LIB_BACKTRACE` itself; `RUST_BACKTRACE` still governs panics.
///
/// With `RUST_BACKTRACE=1` in the environment (common on a Rust developer's machine), every
/// candle error captured a backtrace and printed it with its message: an API error's text
/// carried a whole stack with source paths, and the first such error formatted while a model
/// loaded (an optional GGUF key of another type) read the binary's debug information into
/// memory for good, 116 MB of peak RSS and about 0.2 s of each load on Qwen2.5-0.5B's shape.
/// Called before any thread exists, so nothing reads the environment meanwhile.
pub(crate) fn keep_backtraces_out_of_library_errors() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn byte_sizes() {
        let cases = [
            ("123", Some(123)),
            ("500MB", Some(500_000_000)),
            ("64GiB", Some(64 << 30)),
            ("2G", Some(2 << 30)),
            ("1.5 KiB", Some(1536)),
            ("lots", None),
            ("-1", None),
            ("5XB", None),
        ];
        for (text, expected) in cases {
            assert_eq!(super::parse_byte_size(text), expected, "{text}");
        }
    }
}
