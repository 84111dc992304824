//! The WordPiece tokenizer of a BERT GGUF: the vocabulary as Ollama and llama.cpp store it
//! (word-initial pieces with a `▁` prefix, continuations bare, `[...]` specials as they are)
//! turned back into BERT's `##` form, behind the same normaliser and pre-tokeniser as the
//! model's own `tokenizer.json`, so the ids are the ones sentence-transformers computes.

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::Tokenizer;

/// The marker of a word-initial piece in GGUF vocabularies (U+2581).
const WORD_START: char = '\u{2581}';

/// What the tokenizer needs from the GGUF: the tokens in id order and the special ids.
#[derive(Debug, Clone)]
pub(crate) struct VocabularySpec {
    pub(crate) tokens: Vec<String>,
    pub(crate) unknown: u32,
    pub(crate) cls: u32,
    pub(crate) separator: u32,
    pub(crate) lowercase: bool,
}

/// A token of the GGUF vocabulary in WordPiece's spelling: `▁word` is `word`, a bare piece
/// continues a word (`##piece`), and a bracketed special stays as it is.
pub(crate) fn wordpiece_spelling(token: &str) -> String {
    if let Some(word) = token.strip_prefix(WORD_START) {
        word.to_owned()
    } else if token.starts_with('[') && token.ends_with(']') {
        token.to_owned()
    } else {
        format!("##{token}")
    }
}

/// The tokenizer of `spec`; an error names what is wrong with the vocabulary.
pub(crate) fn tokenizer(spec: &VocabularySpec) -> Result<Tokenizer, String> {
    let name = |id: u32| {
        spec.tokens
            .get(id as usize)
            .map(|token| wordpiece_spelling(token))
            .ok_or_else(|| format!("special token id {id} is outside the vocabulary of {} tokens", spec.tokens.len()))
    };
    let unknown = name(spec.unknown)?;
    let cls = name(spec.cls)?;
    let separator = name(spec.separator)?;
    let mut vocabulary = ahash::AHashMap::with_capacity(spec.tokens.len());
    for (id, token) in spec.tokens.iter().enumerate() {
        // The first id of a spelling wins, as in a vocab.txt read top to bottom.
        vocabulary.entry(wordpiece_spelling(token)).or_insert(id as u32);
    }
    let model = WordPiece::builder()
        .vocab(vocabulary)
        .unk_token(unknown)
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|error| error.to_string())?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, spec.lowercase)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new((separator, spec.separator), (cls, spec.cls))));
    Ok(tokenizer)
}

/// `tokens` cut to `limit`, keeping the last one (the [SEP] a BERT input ends with) when the
/// sequence had the special tokens added.
pub(crate) fn fit(mut tokens: Vec<u32>, limit: usize, ends_with_separator: bool) -> Vec<u32> {
    if tokens.len() <= limit {
        return tokens;
    }
    let last = tokens.last().copied();
    tokens.truncate(limit);
    if let (true, Some(last), Some(slot)) = (ends_with_separator && limit > 0, last, tokens.last_mut()) {
        *slot = last;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tokens: &[&str]) -> VocabularySpec {
        let index = |name: &str| tokens.iter().position(|token| *token == name).unwrap() as u32;
        VocabularySpec {
            tokens: tokens.iter().map(|token| token.to_string()).collect(),
            unknown: index("[UNK]"),
            cls: index("[CLS]"),
            separator: index("[SEP]"),
            lowercase: true,
        }
    }

    #[test]
    fn gguf_spellings_turn_back_into_wordpiece() {
        assert_eq!(wordpiece_spelling("\u{2581}the"), "the");
        assert_eq!(wordpiece_spelling("ing"), "##ing");
        assert_eq!(wordpiece_spelling("[SEP]"), "[SEP]");
        assert_eq!(wordpiece_spelling("\u{2581}[unused0]"), "[unused0]");
        assert_eq!(wordpiece_spelling("\u{2581}["), "[");
    }

    #[test]
    fn text_is_lowercased_split_and_wrapped_in_cls_and_sep() {
        let tokenizer = tokenizer(&spec(&[
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "\u{2581}play",
            "ing",
            "\u{2581}café",
            "\u{2581}cafe",
            "\u{2581}!",
            "\u{2581}中",
        ]))
        .unwrap();
        let ids = tokenizer.encode("Playing CAFÉ! 中 xyz", true).unwrap().get_ids().to_vec();
        // [CLS] play ##ing cafe (accents stripped) ! 中 [UNK] [SEP]
        assert_eq!(ids, [2, 4, 5, 7, 8, 9, 1, 3]);
        assert_eq!(tokenizer.encode("", true).unwrap().get_ids(), [2, 3]);
        assert_eq!(tokenizer.encode("playing", false).unwrap().get_ids(), [4, 5]);
    }

    #[test]
    fn a_special_id_outside_the_vocabulary_is_an_error() {
        let mut bad = spec(&["[UNK]", "[CLS]", "[SEP]"]);
        bad.separator = 7;
        assert!(tokenizer(&bad).unwrap_err().contains("outside the vocabulary"));
    }

    #[test]
    fn fitting_keeps_the_separator_at_the_end() {
        assert_eq!(fit(vec![101, 1, 2, 3, 102], 4, true), [101, 1, 2, 102]);
        assert_eq!(fit(vec![101, 1, 2, 3, 102], 4, false), [101, 1, 2, 3]);
        assert_eq!(fit(vec![101, 1, 102], 4, true), [101, 1, 102]);
        assert_eq!(fit(vec![101, 1, 102], 0, true), Vec::<u32>::new());
    }
}
