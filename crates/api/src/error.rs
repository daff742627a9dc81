//! The API's errors: each one a status and a JSON body `{code, message}`
//! (`code` a stable machine-readable kind, `message` one line for people).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What kind of error: `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `bad_request`, `too_large`, `unavailable`, `internal`.
    pub code: String,
    /// What is wrong, naming the thing concerned.
    pub message: String,
}

/// Everything a request can be refused or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no {kind} named {name:?} in project {project:?}")]
    NotFound {
        kind: &'static str,
        name: String,
        project: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body too large: at most {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }

    pub fn not_found(kind: &'static str, name: &str, project: &str) -> ApiError {
        ApiError::NotFound {
            kind,
            name: name.chars().take(80).collect(),
            project: project.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(message) = &self {
            tracing::error!(%message, "request failed");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

/// What a bundle operation's refusal means to a client.
impl From<vmm::VmmError> for ApiError {
    fn from(e: vmm::VmmError) -> ApiError {
        use vmm::VmmError as E;
        let message = e.to_string();
        match e {
            E::NoSuchVm { .. } | E::NoSuchSnapshot { .. } => ApiError::BadRequest(message),
            E::VmExists { .. }
            | E::SnapshotExists { .. }
            | E::Busy { .. }
            | E::Running { .. }
            | E::Suspended { .. }
            | E::NotRunning { .. }
            | E::SnapshotUsedByClones { .. }
            | E::HasLinkedClones { .. } => ApiError::Conflict(message),
            E::BadName { .. } | E::OutOfRange { .. } => ApiError::BadRequest(message),
            E::Disk(_)
            | E::Io { .. }
            | E::BadConfig { .. }
            | E::NewerFormat { .. }
            | E::ChainOutside { .. }
            | E::NoHome
            | E::Entropy(_) => ApiError::Internal(message),
        }
    }
}

impl From<net::NetworkError> for ApiError {
    fn from(e: net::NetworkError) -> ApiError {
        use net::NetworkError as E;
        let message = e.to_string();
        match e {
            E::Exists(_) | E::InUse { .. } | E::Overlap { .. } => ApiError::Conflict(message),
            E::BadName { .. }
            | E::BadSubnet { .. }
            | E::BadForward { .. }
            | E::Invalid { .. }
            | E::NotFound(_) => ApiError::BadRequest(message),
            E::BadFile { .. } | E::Io { .. } => ApiError::Internal(message),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
