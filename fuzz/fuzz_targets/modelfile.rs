//! `ollama_api::modelfile::parse` on arbitrary text never panics, and what it accepts is
//! consistent: `FROM` was given, `stop` collects a list of strings, message roles are known.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ollama_api::modelfile;
use ollama_api::Options;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match modelfile::parse(text) {
        Ok(parsed) => {
            assert!(text.to_ascii_lowercase().contains("from"), "{text:?}: accepted without FROM");
            for (key, value) in &parsed.parameters {
                assert!(Options::is_known_key(key), "{text:?}: unknown parameter {key:?} accepted");
                if key == "stop" {
                    let Value::Array(items) = value else { panic!("{text:?}: stop is {value:?}") };
                    assert!(items.iter().all(Value::is_string), "{text:?}: stop is {value:?}");
                }
            }
            // What the Modelfile sets must be valid options for the daemon too.
            if let Err(error) = Options::from_map(&parsed.parameters) {
                panic!("{text:?}: parameters {:?} rejected by Options: {error}", parsed.parameters);
            }
            for (role, _) in &parsed.messages {
                assert!(["system", "user", "assistant"].contains(&role.as_str()), "{text:?}: role {role:?}");
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
        }
    }
});
