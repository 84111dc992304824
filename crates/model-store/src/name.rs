//! `ModelName`: a model reference parsed once with Ollama's rules.
//!
//! Forms: `[scheme://][host/][namespace/]model[:tag]`. Missing parts take the defaults
//! `registry.ollama.ai`, `library` and `latest`. Comparison ignores case, as Ollama does.

use std::fmt;
use std::path::PathBuf;

/// The registry host used when a name has none.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace used when a name has none.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag used when a name has none.
pub const DEFAULT_TAG: &str = "latest";

/// A fully qualified model name.
#[derive(Clone, Debug)]
pub struct ModelName {
    /// Registry host, possibly with a port.
    pub host: String,
    /// Namespace (user or organisation).
    pub namespace: String,
    /// Model name proper.
    pub model: String,
    /// Tag.
    pub tag: String,
    /// Whether the name was written with `http://`.
    pub insecure_scheme: bool,
}

/// The text is not a valid model name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model name")]
pub struct NameError;

impl ModelName {
    /// Parses a name, filling in default host, namespace and tag.
    pub fn parse(text: &str) -> Result<ModelName, NameError> {
        let mut rest = text;
        let mut insecure_scheme = false;
        if let Some(index) = rest.find("://") {
            insecure_scheme = &rest[..index] == "http";
            rest = &rest[index + 3..];
        }
        let mut tag = DEFAULT_TAG;
        if let Some(colon) = rest.rfind(':') {
            if rest.rfind('/').is_none_or(|slash| colon > slash) {
                tag = &rest[colon + 1..];
                rest = &rest[..colon];
                if tag.is_empty() {
                    return Err(NameError);
                }
            }
        }
        let mut segments = rest.rsplitn(3, '/');
        let model = segments.next().unwrap_or_default();
        let namespace = segments.next().unwrap_or(DEFAULT_NAMESPACE);
        let host = segments.next().unwrap_or(DEFAULT_HOST);
        let name = ModelName {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
            insecure_scheme,
        };
        let valid = part_is_valid(&name.host, 350, |c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
            && part_is_valid(&name.namespace, 80, |c| c.is_ascii_alphanumeric() || "_-".contains(c))
            && part_is_valid(&name.model, 80, |c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && part_is_valid(&name.tag, 80, |c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if valid {
            Ok(name)
        } else {
            Err(NameError)
        }
    }

    /// The shortest form that parses back to the same name: `model:tag`, `namespace/model:tag`
    /// or `host/namespace/model:tag`.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!("{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// `host/namespace/model:tag`, as Ollama prints in capability errors.
    pub fn display_full(&self) -> String {
        format!("{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
    }

    /// The manifest path relative to the `manifests` directory.
    pub fn manifest_relative_path(&self) -> PathBuf {
        [&self.host, &self.namespace, &self.model, &self.tag].iter().collect()
    }

    /// Whether two names refer to the same model, ignoring case.
    pub fn same_model(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }
}

impl PartialEq for ModelName {
    fn eq(&self, other: &ModelName) -> bool {
        self.same_model(other)
    }
}

impl Eq for ModelName {}

impl std::hash::Hash for ModelName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.display_full().to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.display_shortest())
    }
}

fn part_is_valid(part: &str, max_len: usize, allowed: impl Fn(char) -> bool) -> bool {
    let mut chars = part.chars();
    let Some(first) = chars.next() else { return false };
    part.len() <= max_len && (first.is_ascii_alphanumeric() || first == '_') && chars.all(allowed)
}

#[cfg(test)]
mod tests;
