//! The one error type of the HTTP edge. Every failure becomes the SPEC error shape
//! `{"error":{code,message,request_id,fields}}`; internal causes are logged, never shown.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use etx_core::CoreError;
use etx_domain::FieldErrors;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub use etx_core::error::{REQUEST_ID, current_request_id};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation {
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict {
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("CSRF token missing")]
    CsrfMissing,
    #[error("CSRF token invalid")]
    CsrfInvalid,
    #[error("{0}")]
    ServiceUnavailable(String),
    /// Out of capacity for this kind of work for a moment; answered 503 with `Retry-After`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        CoreError::internal(e).into()
    }
}

/// The error envelope, as documented in OpenAPI.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `VALIDATION_ERROR`.
    pub code: &'static str,
    pub message: String,
    pub request_id: String,
    /// Per-field messages for validation errors.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl ApiError {
    // The field-error shapes are the core's; the edge only adds HTTP.
    pub fn validation(fields: FieldErrors) -> Self {
        CoreError::validation(fields).into()
    }

    pub fn field(field: &str, message: &str) -> Self {
        CoreError::field(field, message).into()
    }

    pub fn conflict_field(field: &str, message: &str) -> Self {
        CoreError::conflict_field(field, message).into()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::CsrfMissing | ApiError::CsrfInvalid => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InsufficientFunds | ApiError::LimitExceeded(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ServiceUnavailable(_) | ApiError::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Validation { .. } => "VALIDATION_ERROR",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::Conflict { .. } => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ApiError::LimitExceeded(_) => "LIMIT_EXCEEDED",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::CsrfMissing => "CSRF_TOKEN_MISSING",
            ApiError::CsrfInvalid => "CSRF_TOKEN_INVALID",
            ApiError::ServiceUnavailable(_) | ApiError::Busy { .. } => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// What the user is told; internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "an internal error occurred".into(),
            ApiError::NotFound => "not found".into(),
            other => other.to_string(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::BadRequest(m) => ApiError::BadRequest(m),
            CoreError::Validation { message, fields } => ApiError::Validation { message, fields },
            CoreError::Unauthorized(m) => ApiError::Unauthorized(m),
            CoreError::Forbidden(m) => ApiError::Forbidden(m),
            CoreError::NotFound => ApiError::NotFound,
            CoreError::Conflict { message, fields } => ApiError::Conflict { message, fields },
            CoreError::RateLimited {
                retry_after_secs,
                limit,
            } => ApiError::RateLimited {
                retry_after_secs,
                limit,
            },
            CoreError::InsufficientFunds => ApiError::InsufficientFunds,
            CoreError::LimitExceeded(m) => ApiError::LimitExceeded(m),
            CoreError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(m),
            CoreError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(m),
            CoreError::Unavailable(m) => ApiError::ServiceUnavailable(m),
            CoreError::Busy {
                message,
                retry_after_secs,
            } => ApiError::Busy {
                message,
                retry_after_secs,
            },
            CoreError::Internal(e) => match CoreError::internal(e) {
                CoreError::Internal(e) => ApiError::Internal(e),
                other => other.into(),
            },
        }
    }
}

impl From<etx_db::DbErr> for ApiError {
    fn from(e: etx_db::DbErr) -> Self {
        CoreError::from(e).into()
    }
}

impl ApiError {
    /// Logs the cause of an internal error with the request id; the response never shows it.
    pub fn log_if_internal(&self) {
        if let ApiError::Internal(e) = self {
            let request_id = current_request_id();
            let cause = format!("{e:#}");
            tracing::error!(request_id = %request_id, error = %cause, "internal error");
            crate::observe::note_internal_error(&cause);
        }
    }

    /// The headers that tell a client when to try again: `Retry-After` (with the
    /// `X-RateLimit-*` set when a rate limit was hit) for 429 and a busy 503. JSON and page
    /// answers carry the same.
    pub fn retry_headers(&self, h: &mut HeaderMap) {
        match self {
            ApiError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                let secs = (*retry_after_secs).max(1);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                h.insert("x-ratelimit-limit", HeaderValue::from(*limit));
                h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
                h.insert("x-ratelimit-reset", HeaderValue::from(secs));
            }
            ApiError::Busy {
                retry_after_secs, ..
            } => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from((*retry_after_secs).max(1)),
                );
            }
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_if_internal();
        let status = self.status();
        let fields = match &self {
            ApiError::Validation { fields, .. } | ApiError::Conflict { fields, .. } => {
                fields.clone()
            }
            _ => BTreeMap::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                request_id: current_request_id(),
                fields,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        self.retry_headers(resp.headers_mut());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
