//! Recent suggestions, so that typing through a shown suggestion, or asking again at the same
//! place, is answered without asking the model.

use std::collections::VecDeque;

/// How much of the text around the cursor an entry keeps to recognise its place.
const KEPT_CONTEXT_BYTES: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    model: String,
    uri: String,
    /// Length of the text before the cursor when the suggestion was made.
    prefix_length: usize,
    /// The end of that text.
    prefix_tail: String,
    /// The start of the text after the cursor.
    suffix_head: String,
    completion: String,
}

/// A least-recently-used cache of suggestions keyed by the text around the cursor.
#[derive(Debug)]
pub struct CompletionCache {
    entries: VecDeque<Entry>,
    capacity: usize,
}

fn tail(text: &str) -> &str {
    &text[text.ceil_char_boundary(text.len().saturating_sub(KEPT_CONTEXT_BYTES))..]
}

fn head(text: &str) -> &str {
    &text[..text.floor_char_boundary(KEPT_CONTEXT_BYTES)]
}

impl CompletionCache {
    pub fn new(capacity: usize) -> CompletionCache {
        CompletionCache { entries: VecDeque::with_capacity(capacity), capacity }
    }

    /// Remembers that `completion` was suggested between `prefix` and `suffix`.
    pub fn insert(&mut self, model: &str, uri: &str, prefix: &str, suffix: &str, completion: &str) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front(Entry {
            model: model.to_owned(),
            uri: uri.to_owned(),
            prefix_length: prefix.len(),
            prefix_tail: tail(prefix).to_owned(),
            suffix_head: head(suffix).to_owned(),
            completion: completion.to_owned(),
        });
    }

    /// The suggestion still valid between `prefix` and `suffix`: one made at this place, or
    /// one made earlier on this line whose beginning the user has since typed (the rest of it
    /// is returned). An empty string means the model had nothing to suggest at this place.
    pub fn lookup(&mut self, model: &str, uri: &str, prefix: &str, suffix: &str) -> Option<String> {
        let suffix_head = head(suffix);
        let found = self.entries.iter().enumerate().find_map(|(index, entry)| {
            if entry.model != model || entry.uri != uri || entry.suffix_head != suffix_head {
                return None;
            }
            if prefix.len() < entry.prefix_length {
                return None;
            }
            let before = prefix.get(..entry.prefix_length)?;
            if !before.ends_with(entry.prefix_tail.as_str()) {
                return None;
            }
            let typed = &prefix[entry.prefix_length..];
            if entry.completion.is_empty() {
                // "Nothing here" holds only at the very place it was found.
                return typed.is_empty().then(|| (index, String::new()));
            }
            let rest = entry.completion.strip_prefix(typed)?;
            (!rest.trim().is_empty()).then(|| (index, rest.to_owned()))
        });
        let (index, rest) = found?;
        if let Some(entry) = self.entries.remove(index) {
            self.entries.push_front(entry);
        }
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_through_a_suggestion_serves_its_remainder() {
        let mut cache = CompletionCache::new(4);
        cache.insert("m", "file:///a.rs", "let total = ", ";\n", "left + right");
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = ", ";\n").as_deref(), Some("left + right"));
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = le", ";\n").as_deref(), Some("ft + right"));
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = left + righ", ";\n").as_deref(), Some("t"));
        // Typed past the end, typed something else, another suffix, model or document.
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = left + right", ";\n"), None);
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = lx", ";\n"), None);
        assert_eq!(cache.lookup("m", "file:///a.rs", "let total = le", ")\n"), None);
        assert_eq!(cache.lookup("other", "file:///a.rs", "let total = ", ";\n"), None);
        assert_eq!(cache.lookup("m", "file:///b.rs", "let total = ", ";\n"), None);
        cache.insert("m", "file:///a.rs", "x = ", "\n", "");
        assert_eq!(cache.lookup("m", "file:///a.rs", "x = ", "\n").as_deref(), Some(""));
        assert_eq!(cache.lookup("m", "file:///a.rs", "x = 1", "\n"), None);
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut cache = CompletionCache::new(2);
        cache.insert("m", "u", "a", "", "one");
        cache.insert("m", "u", "b", "", "two");
        assert!(cache.lookup("m", "u", "a", "").is_some());
        cache.insert("m", "u", "c", "", "three");
        assert!(cache.lookup("m", "u", "a", "").is_some());
        assert!(cache.lookup("m", "u", "b", "").is_none());
        assert!(cache.lookup("m", "u", "c", "").is_some());
    }
}
