//! The one Origin and Host policy of every listener: Ollama's CORS rules (`OLLAMA_ORIGINS` plus
//! its built-in origins) and its DNS-rebinding guard for loopback binds.
//!
//! A web page in the user's browser can send requests to `127.0.0.1:11434`, and a `no-cors`
//! POST with a text body reaches the server without a preflight. Browsers always name the
//! page's origin in `Origin` on such requests, so a request from an origin not on the list is
//! refused before any handler runs. A page on a rebound DNS name (`evil.example` resolving to
//! 127.0.0.1) is same-origin with itself and sends no foreign `Origin`, so while the daemon is
//! bound to loopback the `Host` it names must be a local one. [`AccessPolicy::decide`] is pure:
//! it takes the request's method and headers and returns what to do.

use std::net::IpAddr;

/// Origins Ollama always allows, after those in `OLLAMA_ORIGINS`.
fn builtin_origins() -> Vec<String> {
    let mut origins = Vec::new();
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for scheme in ["http", "https"] {
            origins.push(format!("{scheme}://{host}"));
            origins.push(format!("{scheme}://{host}:*"));
        }
    }
    for scheme in ["app", "file", "tauri", "vscode-webview", "vscode-file"] {
        origins.push(format!("{scheme}://*"));
    }
    origins
}

/// Methods named in preflight answers (gin-contrib/cors defaults, as Ollama uses them).
pub(crate) const ALLOWED_METHODS: &str = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS";

/// Request headers named in preflight answers, as Ollama lists them.
pub(crate) const ALLOWED_HEADERS: &str = "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,OpenAI-Beta,\
x-stainless-arch,x-stainless-async,x-stainless-custom-poll-interval,x-stainless-helper-method,x-stainless-lang,\
x-stainless-os,x-stainless-package-version,x-stainless-poll-helper,x-stainless-retry-count,x-stainless-runtime,\
x-stainless-runtime-version,x-stainless-timeout";

/// How long browsers may cache a preflight answer, in seconds (12 hours).
pub(crate) const PREFLIGHT_MAX_AGE: &str = "43200";

/// One allowed origin: exact, or with one `*` standing for any text (`http://localhost:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    Any,
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl OriginPattern {
    fn parse(text: &str) -> Option<OriginPattern> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text == "*" {
            return Some(OriginPattern::Any);
        }
        match text.split_once('*') {
            Some((prefix, suffix)) if !suffix.contains('*') => {
                Some(OriginPattern::Wildcard { prefix: prefix.to_owned(), suffix: suffix.to_owned() })
            }
            // gin-contrib/cors accepts one wildcard only; more than one matches nothing.
            Some(_) => None,
            None => Some(OriginPattern::Exact(text.to_owned())),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(exact) => origin == exact,
            OriginPattern::Wildcard { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len() && origin.starts_with(prefix) && origin.ends_with(suffix)
            }
        }
    }
}

/// Which origins and hosts may use the API.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    origins: Vec<OriginPattern>,
    /// Check `Host` (the daemon is bound to a loopback address).
    guard_hosts: bool,
    /// This machine's host name, lower case: a browser on this machine may use it.
    machine_hostname: Option<String>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessDecision {
    /// Serve it; with `Some(origin)`, answer with `Access-Control-Allow-Origin: origin`.
    Allow { cors_origin: Option<String> },
    /// A CORS preflight from an allowed origin: 204 with the CORS headers.
    Preflight { origin: String },
    /// `OPTIONS` to an allowed host name without CORS headers: 204, empty (as Ollama).
    NoContent,
    /// 403 with an empty body, as Ollama answers a foreign origin or host.
    Forbidden(ForbiddenReason),
}

/// Why a request was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenReason {
    /// `Origin` is not on the list.
    Origin,
    /// `Host` is not local while bound to loopback.
    Host,
}

impl AccessPolicy {
    /// The policy for a daemon bound to `bind_address`, with `OLLAMA_ORIGINS` (comma separated)
    /// added to Ollama's built-in origins. Binding to a non-loopback address (`0.0.0.0`, a LAN
    /// address) turns the Host check off, as in Ollama: the user chose to serve other hosts.
    pub fn new(extra_origins: Option<&str>, bind_address: IpAddr, machine_hostname: Option<String>) -> AccessPolicy {
        let mut texts: Vec<String> = extra_origins.unwrap_or_default().split(',').map(str::to_owned).collect();
        texts.extend(builtin_origins());
        AccessPolicy {
            origins: texts.iter().filter_map(|text| OriginPattern::parse(text)).collect(),
            guard_hosts: bind_address.is_loopback(),
            machine_hostname: machine_hostname.map(|name| name.to_ascii_lowercase()),
        }
    }

    /// Ollama's policy for a loopback daemon without `OLLAMA_ORIGINS`.
    pub fn loopback_default() -> AccessPolicy {
        AccessPolicy::new(None, IpAddr::from([127, 0, 0, 1]), None)
    }

    /// Decides on a request from its method (`OPTIONS` or other) and its `Origin` and `Host`
    /// headers. CORS runs first, then the Host guard, in Ollama's order.
    pub fn decide(&self, is_options: bool, origin: Option<&str>, host: Option<&str>) -> AccessDecision {
        let host = host.unwrap_or_default();
        let mut cors_origin = None;
        if let Some(origin) = origin.filter(|origin| !origin.is_empty()) {
            let same_origin = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
            if !same_origin {
                if !self.origins.iter().any(|pattern| pattern.matches(origin)) {
                    return AccessDecision::Forbidden(ForbiddenReason::Origin);
                }
                if is_options {
                    return AccessDecision::Preflight { origin: origin.to_owned() };
                }
                cors_origin = Some(origin.to_owned());
            }
        }
        if !self.guard_hosts {
            return AccessDecision::Allow { cors_origin };
        }
        let host_name = host_without_port(host);
        if let Ok(address) = host_name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            if is_local_address(address) {
                return AccessDecision::Allow { cors_origin };
            }
        } else if self.is_local_host_name(host_name) {
            if is_options {
                return AccessDecision::NoContent;
            }
            return AccessDecision::Allow { cors_origin };
        }
        AccessDecision::Forbidden(ForbiddenReason::Host)
    }

    fn is_local_host_name(&self, host_name: &str) -> bool {
        let host_name = host_name.to_ascii_lowercase();
        if host_name.is_empty() || host_name == "localhost" {
            return true;
        }
        if self.machine_hostname.as_deref() == Some(host_name.as_str()) {
            return true;
        }
        [".localhost", ".local", ".internal"].iter().any(|suffix| host_name.ends_with(suffix))
    }
}

/// `host` of `host:port` and `[v6]:port`; the whole text when there is no port.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Loopback, private (RFC 1918, IPv6 unique local), link-local and unspecified addresses:
/// a name cannot be rebound to those from outside the local network in a way that matters.
fn is_local_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_hosts_as_ollama_decides_them() {
        let policy = AccessPolicy::new(
            Some("https://chat.example.com, chrome-extension://*"),
            IpAddr::from([127, 0, 0, 1]),
            Some("Workstation".into()),
        );
        let allow = |origin: Option<&str>| AccessDecision::Allow { cors_origin: origin.map(str::to_owned) };
        let cases: &[(bool, Option<&str>, Option<&str>, AccessDecision)] = &[
            // Plain clients (curl, SDKs) send no Origin.
            (false, None, Some("127.0.0.1:11434"), allow(None)),
            (false, None, Some("localhost:11434"), allow(None)),
            (false, None, None, allow(None)),
            // Built-in origins, any port.
            (false, Some("http://localhost:3000"), Some("127.0.0.1:11434"), allow(Some("http://localhost:3000"))),
            (false, Some("https://127.0.0.1"), Some("127.0.0.1:11434"), allow(Some("https://127.0.0.1"))),
            (false, Some("vscode-webview://abc123"), Some("127.0.0.1:11434"), allow(Some("vscode-webview://abc123"))),
            (false, Some("file://"), Some("127.0.0.1:11434"), allow(Some("file://"))),
            (false, Some("app://obsidian.md"), Some("127.0.0.1:11434"), allow(Some("app://obsidian.md"))),
            // OLLAMA_ORIGINS entries, exact and wildcard.
            (false, Some("https://chat.example.com"), Some("127.0.0.1:11434"), allow(Some("https://chat.example.com"))),
            (
                false,
                Some("chrome-extension://abcdef"),
                Some("127.0.0.1:11434"),
                allow(Some("chrome-extension://abcdef")),
            ),
            // Foreign origins, whatever the method.
            (
                false,
                Some("https://evil.example"),
                Some("127.0.0.1:11434"),
                AccessDecision::Forbidden(ForbiddenReason::Origin),
            ),
            (
                true,
                Some("https://evil.example"),
                Some("127.0.0.1:11434"),
                AccessDecision::Forbidden(ForbiddenReason::Origin),
            ),
            (false, Some("null"), Some("127.0.0.1:11434"), AccessDecision::Forbidden(ForbiddenReason::Origin)),
            (
                false,
                Some("http://localhost.evil.example"),
                Some("127.0.0.1:11434"),
                AccessDecision::Forbidden(ForbiddenReason::Origin),
            ),
            (
                false,
                Some("https://chat.example.com.evil"),
                Some("127.0.0.1:11434"),
                AccessDecision::Forbidden(ForbiddenReason::Origin),
            ),
            // Preflights from allowed origins.
            (
                true,
                Some("http://localhost:5173"),
                Some("127.0.0.1:11434"),
                AccessDecision::Preflight { origin: "http://localhost:5173".into() },
            ),
            // A page served by the daemon's own host is same-origin.
            (false, Some("http://127.0.0.1:11434"), Some("127.0.0.1:11434"), allow(None)),
            // DNS rebinding: a foreign name pointing at 127.0.0.1, same-origin with itself.
            (
                false,
                Some("http://evil.example:11434"),
                Some("evil.example:11434"),
                AccessDecision::Forbidden(ForbiddenReason::Host),
            ),
            (false, None, Some("evil.example:11434"), AccessDecision::Forbidden(ForbiddenReason::Host)),
            (false, None, Some("evil.example"), AccessDecision::Forbidden(ForbiddenReason::Host)),
            (false, None, Some("8.8.8.8:11434"), AccessDecision::Forbidden(ForbiddenReason::Host)),
            // Local names and addresses.
            (false, None, Some("workstation:11434"), allow(None)),
            (false, None, Some("box.local"), allow(None)),
            (false, None, Some("app.localhost:11434"), allow(None)),
            (false, None, Some("[::1]:11434"), allow(None)),
            (false, None, Some("192.168.1.20:11434"), allow(None)),
            (false, None, Some("0.0.0.0:11434"), allow(None)),
            (true, None, Some("localhost:11434"), AccessDecision::NoContent),
        ];
        for (is_options, origin, host, expected) in cases {
            assert_eq!(&policy.decide(*is_options, *origin, *host), expected, "{is_options} {origin:?} {host:?}");
        }
    }

    #[test]
    fn binding_beyond_loopback_turns_the_host_check_off_but_not_the_origin_check() {
        let policy = AccessPolicy::new(None, IpAddr::from([0, 0, 0, 0]), None);
        assert_eq!(
            policy.decide(false, None, Some("gpu-box.example:11434")),
            AccessDecision::Allow { cors_origin: None }
        );
        assert_eq!(
            policy.decide(false, Some("https://evil.example"), Some("gpu-box.example:11434")),
            AccessDecision::Forbidden(ForbiddenReason::Origin)
        );
    }

    #[test]
    fn a_star_in_ollama_origins_allows_every_origin() {
        let policy = AccessPolicy::new(Some("*"), IpAddr::from([127, 0, 0, 1]), None);
        assert_eq!(
            policy.decide(false, Some("https://anything.example"), Some("127.0.0.1:11434")),
            AccessDecision::Allow { cors_origin: Some("https://anything.example".into()) }
        );
    }

    #[test]
    fn host_ports_are_stripped() {
        assert_eq!(host_without_port("localhost:11434"), "localhost");
        assert_eq!(host_without_port("[::1]:11434"), "[::1]");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port("example"), "example");
    }
}
