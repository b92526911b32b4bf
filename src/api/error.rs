//! Every error the API answers: `{"error": "...", "hint": "..."}` with the
//! status that says whose fault it is.

use crate::support::error::messages_and_hints;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, with its causes.
    pub error: String,
    /// What to do about it, when devinst knows.
    pub hint: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, hint: Option<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                hint,
            },
        }
    }

    /// `err` (its causes joined, its hints apart) answered with `status`.
    pub fn from_chain(status: StatusCode, err: &anyhow::Error) -> ApiError {
        let (messages, hints) = messages_and_hints(err);
        let hint = (!hints.is_empty()).then(|| hints.join(" "));
        ApiError::new(status, messages.join(": "), hint)
    }

    pub fn not_found(what: String, hint: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what, Some(hint.to_owned()))
    }

    pub fn invalid(what: String) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, what, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// An error in an operation the request was right to ask for (the engine
/// failed, a setup step failed): not the caller's fault.
impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        ApiError::from_chain(StatusCode::INTERNAL_SERVER_ERROR, &err)
    }
}

/// Marks an operation's errors as conflicts with how things stand (consent
/// missing, a name taken, not running): the request was well formed.
pub trait Conflict<T> {
    fn conflict(self) -> Result<T, ApiError>;
}

impl<T> Conflict<T> for anyhow::Result<T> {
    fn conflict(self) -> Result<T, ApiError> {
        self.map_err(|err| ApiError::from_chain(StatusCode::CONFLICT, &err))
    }
}
