//! The language server's settings, from `initializationOptions` and
//! `workspace/didChangeConfiguration`, with the defaults a new user gets.

use std::time::Duration;

use serde_json::Value;

/// The model used when the editor names none: the daemon's default model.
pub const DEFAULT_MODEL: &str = "smollm2:135m";

/// Every setting the server reads, as editors name them. `editors/settings.json` describes
/// each (type, default, range) for the editor plugins; a test keeps the two the same.
pub const SETTING_NAMES: &[&str] =
    &["model", "enabled", "disabledLanguages", "multiline", "contextTokens", "debounceMs", "maxTokens", "keepAlive"];

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The model that completes code and answers chats.
    pub model: String,
    /// Prompt budget for a completion, in tokens.
    pub context_tokens: usize,
    /// How long the server waits after a request before asking the model; a newer request
    /// for the same document in that time replaces it.
    pub debounce: Duration,
    /// Inline completion on or off.
    pub enabled: bool,
    /// Language ids with inline completion off.
    pub disabled_languages: Vec<String>,
    /// Whether block (multi-line) suggestions are offered.
    pub multiline: bool,
    /// New-token limits for one line and for a block (`maxTokens` sets both).
    pub max_tokens_single_line: u32,
    pub max_tokens_multi_line: u32,
    /// How long the model stays loaded after a completion.
    pub keep_alive: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            model: DEFAULT_MODEL.to_owned(),
            context_tokens: 1024,
            debounce: Duration::from_millis(25),
            enabled: true,
            disabled_languages: Vec::new(),
            multiline: true,
            max_tokens_single_line: 48,
            max_tokens_multi_line: 160,
            keep_alive: "30m".to_owned(),
        }
    }
}

impl Settings {
    /// These settings with the values `value` gives. Accepts `{"modeld": {...}}` or the inner
    /// object; unknown keys and values of the wrong type are ignored (and returned, so they
    /// can be logged).
    pub fn updated(&self, value: &Value) -> (Settings, Vec<String>) {
        let mut settings = self.clone();
        let mut ignored = Vec::new();
        let object = match value.get("modeld") {
            Some(inner) => inner,
            None => value,
        };
        let Some(object) = object.as_object() else { return (settings, ignored) };
        for (key, value) in object {
            let applied = match key.as_str() {
                "model" => value.as_str().filter(|model| !model.trim().is_empty()).map(|model| {
                    settings.model = model.trim().to_owned();
                }),
                "contextTokens" => value.as_u64().filter(|tokens| (64..=32768).contains(tokens)).map(|tokens| {
                    settings.context_tokens = tokens as usize;
                }),
                "debounceMs" => value.as_u64().filter(|ms| *ms <= 5000).map(|ms| {
                    settings.debounce = Duration::from_millis(ms);
                }),
                "enabled" => value.as_bool().map(|enabled| settings.enabled = enabled),
                "disabledLanguages" => value.as_array().map(|languages| {
                    settings.disabled_languages =
                        languages.iter().filter_map(Value::as_str).map(str::to_owned).collect();
                }),
                "multiline" => value.as_bool().map(|multiline| settings.multiline = multiline),
                "maxTokens" => value.as_u64().filter(|tokens| (1..=4096).contains(tokens)).map(|tokens| {
                    settings.max_tokens_multi_line = tokens as u32;
                    settings.max_tokens_single_line = tokens as u32;
                }),
                "keepAlive" => value.as_str().map(|keep_alive| settings.keep_alive = keep_alive.to_owned()),
                // Read by the client side or by later features; accepted quietly.
                "clientCapabilities" | "editorInfo" | "editorPluginInfo" => Some(()),
                _ => None,
            };
            if applied.is_none() {
                ignored.push(key.clone());
            }
        }
        (settings, ignored)
    }

    pub fn language_enabled(&self, language_id: &str) -> bool {
        self.enabled && !self.disabled_languages.iter().any(|disabled| disabled == language_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_come_wrapped_or_bare_and_bad_values_are_ignored() {
        let (settings, ignored) = Settings::default().updated(&json!({"modeld": {
            "model": "qwen2.5-coder:1.5b", "contextTokens": 2048, "debounceMs": 0,
            "disabledLanguages": ["markdown"], "multiline": false, "bogus": 1, "maxTokens": "x"
        }}));
        assert_eq!(settings.model, "qwen2.5-coder:1.5b");
        assert_eq!(settings.context_tokens, 2048);
        assert_eq!(settings.debounce, Duration::ZERO);
        assert!(!settings.multiline);
        assert!(!settings.language_enabled("markdown"));
        assert!(settings.language_enabled("rust"));
        assert_eq!(ignored, ["bogus", "maxTokens"]);
        let (bare, _) = settings.updated(&json!({"model": "other", "contextTokens": 10}));
        assert_eq!(bare.model, "other");
        assert_eq!(bare.context_tokens, 2048, "out of range: kept");
    }

    #[test]
    fn the_editors_settings_file_describes_every_setting_with_the_servers_defaults() {
        let file: Value = serde_json::from_str(include_str!("../../../editors/settings.json")).unwrap();
        let described: Vec<&str> = file.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = SETTING_NAMES.to_vec();
        let mut found = described.clone();
        expected.sort_unstable();
        found.sort_unstable();
        assert_eq!(found, expected, "editors/settings.json and SETTING_NAMES differ");
        let defaults = Settings::default();
        for name in described {
            let spec = &file[name];
            // A null default leaves the server's own; a value in range must still be read.
            let value = if spec["default"].is_null() { spec["minimum"].clone() } else { spec["default"].clone() };
            let (updated, ignored) = defaults.updated(&serde_json::json!({ name: value }));
            assert!(ignored.is_empty(), "the server ignores {name} = {value}");
            if !spec["default"].is_null() {
                assert_eq!(updated, defaults, "{name}: the file's default is not the server's");
            }
        }
    }
}
