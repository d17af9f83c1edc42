//! The one error type of the business core. It says what went wrong in the product's terms;
//! the HTTP edge decides status codes and bodies, the web pages decide what to render.

use etx_domain::FieldErrors;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request cannot be understood at all (bad encoding, missing key).
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Validation {
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// Credentials or a session were refused.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or someone else's: the two are never told apart.
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
    /// Content of a kind the operation does not take (an image format, say).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// More bytes than the operation or the user's quota allows.
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Out of capacity for this kind of work for a moment; worth retrying after a pause.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub fn validation(fields: FieldErrors) -> Self {
        let message = fields
            .0
            .iter()
            .next()
            .map(|(k, v)| format!("{k} {v}"))
            .unwrap_or_else(|| "invalid input".into());
        CoreError::Validation {
            message,
            fields: fields.0,
        }
    }

    pub fn field(field: &str, message: &str) -> Self {
        let mut f = FieldErrors::new();
        f.add(field, message);
        Self::validation(f)
    }

    pub fn conflict_field(field: &str, message: &str) -> Self {
        let mut fields = BTreeMap::new();
        fields.insert(field.to_string(), message.to_string());
        CoreError::Conflict {
            message: format!("{field} {message}"),
            fields,
        }
    }
}

impl From<etx_db::DbErr> for CoreError {
    fn from(e: etx_db::DbErr) -> Self {
        CoreError::internal(anyhow::Error::new(e).context("database"))
    }
}

/// How long a client is asked to wait when the database cannot be reached: about what a
/// restart or a failover takes, and the pool reconnects by itself meanwhile.
pub const DATABASE_RETRY_SECS: u64 = 2;

impl CoreError {
    /// An unexpected failure, except that one caused by the database being unreachable (a
    /// restart, a failover, a full pool) is a 503 the client may retry, never a 500.
    pub fn internal(e: anyhow::Error) -> Self {
        if database_unreachable(&e) {
            tracing::warn!(
                request_id = %current_request_id(),
                error = format!("{e:#}"),
                "database unreachable"
            );
            return CoreError::Busy {
                message: "the database cannot be reached just now; try again in a few seconds \
                          (money requests with the same Idempotency-Key)"
                    .into(),
                retry_after_secs: DATABASE_RETRY_SECS,
            };
        }
        if e.chain().any(|c| {
            c.downcast_ref::<etx_db::DbErr>()
                .is_some_and(|d| etx_db::classify(d) == etx_db::DbErrorKind::UnstorableValue)
        }) {
            return CoreError::BadRequest(
                "a value in the request cannot be stored: text with a NUL character, or a \
                 value too long or too large"
                    .into(),
            );
        }
        CoreError::Internal(e)
    }
}

/// Whether `e` comes from a database that could not be reached.
pub fn database_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<etx_db::DbErr>()
            .is_some_and(|d| etx_db::classify(d) == etx_db::DbErrorKind::Unreachable)
    })
}

tokio::task_local! {
    /// The id of the request being served, for audit records and log lines.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}
