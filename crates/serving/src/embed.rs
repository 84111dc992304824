//! Embeddings: inputs (text or token ids) become vectors on an embedding model, truncated to
//! its context as Ollama truncates them, run as one batch, then normalised and cut to the
//! requested dimensions.

use std::time::{Duration, Instant};

use engine::KeepAlive;
use model_store::Options;

use crate::model::Capability;
use crate::pipeline::{acquire_model, context_size};
use crate::{Core, ServingError};

/// One input of an embedding request.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedText {
    /// Text, tokenized with the model's special tokens.
    Text(String),
    /// Token ids, used as they are (OpenAI's clients may send them).
    Tokens(Vec<u32>),
}

/// An embedding request, from any face.
#[derive(Debug, Clone)]
pub struct EmbedInput {
    /// The model, as the client spelled it.
    pub model: String,
    /// The inputs; none loads (or, with a zero keep-alive, unloads) the model.
    pub inputs: Vec<EmbedText>,
    /// Whether an input longer than the context is cut (Ollama's default) or refused.
    pub truncate: bool,
    /// Keep the first this many dimensions (then normalise again, when normalising).
    pub dimensions: Option<usize>,
    /// Scale each vector to unit length (`/api/embed`, `/v1/embeddings`; not the legacy
    /// `/api/embeddings`).
    pub normalize: bool,
    /// The request's options, overlaid on the model's parameters (`num_ctx`).
    pub options: Options,
    /// How long the model stays loaded; `None` keeps its setting.
    pub keep_alive: Option<KeepAlive>,
}

/// The vectors, in input order, with Ollama's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens embedded, over every input.
    pub prompt_tokens: usize,
    pub load_duration: Duration,
    pub total_duration: Duration,
}

pub(crate) async fn embed(core: &Core, input: EmbedInput) -> Result<Embeddings, ServingError> {
    let started = Instant::now();
    let model = core.resolve_spelled(&input.model).await?;
    if model.remote_model().is_some() {
        if input.inputs.is_empty() {
            return Ok(Embeddings::default());
        }
        return crate::remote::embed(core, &model, input).await;
    }
    if !model.can(Capability::Embedding) {
        return Err(ServingError::invalid(format!("\"{}\" does not support embeddings", input.model)));
    }
    if input.inputs.is_empty() && input.keep_alive.is_some_and(KeepAlive::is_zero) {
        core.unload(&model.name);
        return Ok(Embeddings::default());
    }
    let options = model.options.merged_with(&input.options);
    let num_ctx = context_size(core, &model, &options);
    let lease = acquire_model(core, &model, num_ctx, input.keep_alive, engine::Priority::Chat).await?;
    let loaded = lease.model().clone();
    let mut batch = Vec::with_capacity(input.inputs.len());
    for text in input.inputs {
        let tokens = match text {
            EmbedText::Text(text) => loaded.tokenize(&text, true).await?,
            EmbedText::Tokens(tokens) => tokens,
        };
        if tokens.len() > num_ctx && !input.truncate {
            return Err(ServingError::invalid("the input length exceeds the context length"));
        }
        batch.push(loaded.fit_to_context(tokens, num_ctx));
    }
    let prompt_tokens = batch.iter().map(Vec::len).sum();
    let vectors = if batch.is_empty() { Vec::new() } else { loaded.embed(batch).await? };
    let vectors = vectors
        .into_iter()
        .map(|vector| finish_vector(vector, input.dimensions, input.normalize))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Embeddings { vectors, prompt_tokens, load_duration: lease.load_duration(), total_duration: started.elapsed() })
}

/// A pooled vector as the client gets it: checked for NaN and infinity, normalised, cut to
/// `dimensions` (and normalised again), as Ollama does.
pub(crate) fn finish_vector(
    vector: Vec<f32>,
    dimensions: Option<usize>,
    normalize: bool,
) -> Result<Vec<f32>, ServingError> {
    if vector.iter().any(|value| !value.is_finite()) {
        return Err(ServingError::internal("embedding contains NaN or Inf values"));
    }
    let mut vector = if normalize { normalized(vector) } else { vector };
    if let Some(dimensions) = dimensions.filter(|dimensions| *dimensions > 0 && *dimensions < vector.len()) {
        vector.truncate(dimensions);
        if normalize {
            vector = normalized(vector);
        }
    }
    Ok(vector)
}

/// `vector` scaled to unit length; a zero vector stays zero.
fn normalized(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|value| f64::from(*value).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for value in &mut vector {
            *value = (f64::from(*value) / norm) as f32;
        }
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_normalised_then_cut_and_normalised_again() {
        let vector = finish_vector(vec![3.0, 4.0, 12.0], None, true).unwrap();
        let norm: f32 = vector.iter().map(|value| value * value).sum();
        assert!((norm - 1.0).abs() < 1e-6);
        let cut = finish_vector(vec![3.0, 4.0, 12.0], Some(2), true).unwrap();
        assert_eq!(cut.len(), 2);
        assert!((cut[0] - 0.6).abs() < 1e-6 && (cut[1] - 0.8).abs() < 1e-6, "{cut:?}");
        // The legacy route keeps the raw vector; dimensions beyond the length change nothing.
        assert_eq!(finish_vector(vec![3.0, 4.0], Some(9), false).unwrap(), [3.0, 4.0]);
        assert_eq!(finish_vector(vec![0.0, 0.0], None, true).unwrap(), [0.0, 0.0]);
        let error = finish_vector(vec![f32::NAN, 1.0], None, true).unwrap_err();
        assert_eq!(error.to_string(), "embedding contains NaN or Inf values");
    }
}
