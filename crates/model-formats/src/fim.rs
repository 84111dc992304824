//! Fill-in-the-middle prompts per code-model family, recognised by the special tokens in the
//! vocabulary.

/// A family of FIM-trained models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimFamily {
    /// StarCoder, StarCoder2, StableCode, CodeQwen 1.5: `<fim_prefix>`.
    StarCoder,
    /// Qwen2.5-Coder and Qwen models sharing its `<|fim_prefix|>` tokens.
    QwenCoder,
    /// CodeGemma: Qwen's markers with Gemma's end tokens.
    CodeGemma,
    /// Granite 3 and 4 code models: Qwen's markers, `<|end_of_text|>`.
    Granite,
    /// CodeLlama and derivatives: `<PRE> P <SUF>S <MID>`.
    CodeLlama,
    /// DeepSeek-Coder: `<｜fim▁begin｜>`.
    DeepSeekCoder,
    /// Codestral: suffix first, `[SUFFIX]S[PREFIX]P`.
    Codestral,
    /// Seed-Coder: `<[fim-prefix]>`.
    SeedCoder,
}

/// How one family is prompted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimTemplate {
    /// The family.
    pub family: FimFamily,
    /// Stop sequences beyond the model's end token, limited to tokens the vocabulary has.
    pub stops: Vec<String>,
}

impl FimTemplate {
    /// The family whose FIM tokens `has_token` knows, if any.
    pub fn detect(has_token: impl Fn(&str) -> bool) -> Option<FimTemplate> {
        let family = if has_token("<｜fim▁begin｜>") && has_token("<｜fim▁hole｜>") {
            FimFamily::DeepSeekCoder
        } else if has_token("[SUFFIX]") && has_token("[PREFIX]") {
            FimFamily::Codestral
        } else if has_token("<[fim-prefix]>") {
            FimFamily::SeedCoder
        } else if has_token("<|fim_prefix|>") && has_token("<|fim_suffix|>") && has_token("<|fim_middle|>") {
            if has_token("<|file_separator|>") || has_token("<end_of_turn>") {
                FimFamily::CodeGemma
            } else if has_token("<|end_of_text|>") {
                FimFamily::Granite
            } else {
                FimFamily::QwenCoder
            }
        } else if has_token("<fim_prefix>") && has_token("<fim_suffix>") && has_token("<fim_middle>") {
            FimFamily::StarCoder
        } else if (has_token("▁<PRE>") || has_token("<PRE>")) && (has_token("▁<MID>") || has_token("<MID>")) {
            FimFamily::CodeLlama
        } else {
            return None;
        };
        let candidates: &[&str] = match family {
            FimFamily::StarCoder => &["<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
            FimFamily::QwenCoder => {
                &["<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>"]
            }
            FimFamily::CodeGemma => &["<|file_separator|>", "<end_of_turn>", "<eos>"],
            FimFamily::Granite => &["<|end_of_text|>", "<|fim_pad|>"],
            FimFamily::CodeLlama => &["<EOT>", "▁<EOT>", "<PRE>", "<SUF>", "<MID>"],
            FimFamily::DeepSeekCoder => &["<｜end▁of▁sentence｜>", "<|EOT|>"],
            FimFamily::Codestral => &["[PREFIX]", "[SUFFIX]"],
            FimFamily::SeedCoder => &["<[end▁of▁sentence]>"],
        };
        let stops = candidates
            .iter()
            .filter(|token| has_token(token))
            .map(|token| token.trim_start_matches('▁').to_owned())
            .collect();
        Some(FimTemplate { family, stops })
    }

    /// The prompt asking for the code between `prefix` and `suffix`.
    pub fn prompt(&self, prefix: &str, suffix: &str) -> String {
        match self.family {
            FimFamily::StarCoder => format!("<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"),
            FimFamily::QwenCoder | FimFamily::CodeGemma | FimFamily::Granite => {
                format!("<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>")
            }
            FimFamily::CodeLlama => format!("<PRE> {prefix} <SUF>{suffix} <MID>"),
            FimFamily::DeepSeekCoder => format!("<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>"),
            FimFamily::Codestral => format!("[SUFFIX]{suffix}[PREFIX]{prefix}"),
            FimFamily::SeedCoder => format!("<[fim-prefix]>{prefix}<[fim-suffix]>{suffix}<[fim-middle]>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(tokens: &[&str]) -> Option<FimTemplate> {
        FimTemplate::detect(|token| tokens.contains(&token))
    }

    #[test]
    fn families_are_told_apart_by_their_tokens() {
        let qwen = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>", "<|im_end|>", "<|fim_pad|>"];
        let template = detect(&qwen).unwrap();
        assert_eq!(template.family, FimFamily::QwenCoder);
        assert_eq!(template.stops, ["<|endoftext|>", "<|fim_pad|>", "<|im_end|>"]);
        assert_eq!(template.prompt("a", "b"), "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>");

        let gemma = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>", "<eos>"];
        assert_eq!(detect(&gemma).unwrap().family, FimFamily::CodeGemma);
        let granite = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|end_of_text|>"];
        assert_eq!(detect(&granite).unwrap().family, FimFamily::Granite);

        let starcoder = detect(&["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"]).unwrap();
        assert_eq!(starcoder.prompt("def f(", "):"), "<fim_prefix>def f(<fim_suffix>):<fim_middle>");

        let codellama = detect(&["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]).unwrap();
        assert_eq!(codellama.family, FimFamily::CodeLlama);
        assert_eq!(codellama.stops, ["<EOT>"]);
        assert_eq!(codellama.prompt("x = ", "\n"), "<PRE> x =  <SUF>\n <MID>");

        let deepseek =
            detect(&["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"]).unwrap();
        assert_eq!(deepseek.prompt("p", "s"), "<｜fim▁begin｜>p<｜fim▁hole｜>s<｜fim▁end｜>");

        let codestral = detect(&["[PREFIX]", "[SUFFIX]", "</s>"]).unwrap();
        assert_eq!(codestral.prompt("p", "s"), "[SUFFIX]s[PREFIX]p");

        assert_eq!(detect(&["<|im_start|>", "<|im_end|>"]), None);
    }
}
