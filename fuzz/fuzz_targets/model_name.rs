//! `ModelName::parse` on arbitrary text: never panics; an accepted name prints to forms that
//! parse back to the same name, and its manifest path can never leave the manifests directory
//! (the path-traversal guard of the store).
#![no_main]

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use model_store::ModelName;

fn hash_of(name: &ModelName) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

fn check_path_is_confined(name: &ModelName) {
    let relative = name.manifest_relative_path();
    assert!(relative.is_relative(), "{name:?}: absolute manifest path {relative:?}");
    let components: Vec<Component<'_>> = relative.components().collect();
    assert_eq!(components.len(), 4, "{name:?}: manifest path {relative:?} is not host/namespace/model/tag");
    for (component, part) in components.iter().zip([&name.host, &name.namespace, &name.model, &name.tag]) {
        let Component::Normal(text) = component else {
            panic!("{name:?}: manifest path {relative:?} has a {component:?} component")
        };
        assert_eq!(text.to_str(), Some(part.as_str()), "{name:?}: a part was split or changed in {relative:?}");
        assert!(!part.is_empty() && part != "." && part != "..", "{name:?}: part {part:?}");
        assert!(!part.contains(['/', '\\', '\0']), "{name:?}: part {part:?} holds a separator");
    }
    let base = Path::new("/models/manifests");
    let joined = base.join(&relative);
    assert!(joined.starts_with(base), "{name:?}: {joined:?} leaves {base:?}");
    assert_eq!(joined.components().count(), base.components().count() + 4);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = ModelName::parse(text);

    // Case never decides validity, and names compare ignoring case.
    let lowered = ModelName::parse(&text.to_ascii_lowercase());
    assert_eq!(parsed.is_ok(), lowered.is_ok(), "{text:?}: validity depends on case");

    let Ok(name) = parsed else { return };
    let lowered = lowered.unwrap();
    assert_eq!(name, lowered, "{text:?}");
    assert_eq!(hash_of(&name), hash_of(&lowered), "{text:?}: equal names hash differently");
    assert_eq!(name.insecure_scheme, text.starts_with("http://"), "{text:?}");

    check_path_is_confined(&name);

    // The full form reads back field for field.
    let full = name.display_full();
    let reparsed = ModelName::parse(&full).unwrap_or_else(|_| panic!("{text:?}: full form {full:?} does not parse"));
    assert_eq!(
        (&reparsed.host, &reparsed.namespace, &reparsed.model, &reparsed.tag),
        (&name.host, &name.namespace, &name.model, &name.tag),
        "{text:?}: full form {full:?}"
    );
    // The shortest form (also `Display`) names the same model.
    for shown in [name.display_shortest(), name.to_string()] {
        let reparsed =
            ModelName::parse(&shown).unwrap_or_else(|_| panic!("{text:?}: shortest form {shown:?} does not parse"));
        assert_eq!(reparsed, name, "{text:?}: shortest form {shown:?}");
        assert_eq!(hash_of(&reparsed), hash_of(&name), "{text:?}: shortest form {shown:?}");
        assert!(shown.len() <= full.len());
    }
});
