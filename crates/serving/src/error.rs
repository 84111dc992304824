//! `ServingError`: every way a request can fail in the core, named by what went wrong; each
//! front end renders it in its protocol (`ApiError` for HTTP).

/// A failure of a request, before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// No model has that name; the text names it as the client spelled it.
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    /// The request is malformed or asks for something the model cannot do.
    #[error("{0}")]
    InvalidRequest(String),
    /// Too many requests wait already.
    #[error("{0}")]
    Busy(String),
    /// The daemon is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// Something modeld does not do yet.
    #[error("{0}")]
    NotImplemented(String),
    /// The model store failed (its own error says how; the front end maps it).
    #[error(transparent)]
    Store(#[from] model_store::Error),
    /// A remote model's server refused or failed the request: its status and its text.
    #[error("{message}")]
    Remote {
        /// The HTTP status to answer with (the remote's, or 502 when it could not be reached).
        status: u16,
        /// What went wrong, in the remote's words where it said.
        message: String,
    },
    /// Anything else: template errors, engine failures, a model that does not fit in memory.
    #[error("{0}")]
    Internal(String),
}

impl ServingError {
    /// A client error with `message`.
    pub fn invalid(message: impl Into<String>) -> ServingError {
        ServingError::InvalidRequest(message.into())
    }

    /// A server error with `message`.
    pub fn internal(message: impl Into<String>) -> ServingError {
        ServingError::Internal(message.into())
    }
}

impl From<engine::SchedulerError> for ServingError {
    fn from(error: engine::SchedulerError) -> ServingError {
        match error {
            engine::SchedulerError::Busy => ServingError::Busy(error.to_string()),
            engine::SchedulerError::Engine(engine::EngineError::Unsupported(message)) => {
                ServingError::InvalidRequest(message)
            }
            engine::SchedulerError::Engine(_) | engine::SchedulerError::InsufficientMemory { .. } => {
                ServingError::Internal(error.to_string())
            }
        }
    }
}

impl From<engine::EngineError> for ServingError {
    fn from(error: engine::EngineError) -> ServingError {
        match error {
            engine::EngineError::Unsupported(message) => ServingError::InvalidRequest(message),
            other => ServingError::Internal(other.to_string()),
        }
    }
}
