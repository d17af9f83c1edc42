//! Extractors whose rejections speak our error format instead of axum's plain text.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// JSON body; malformed JSON is a 400, a well-formed body of the wrong shape a 422, a missing or
/// wrong content type a 415, an oversized body a 413.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

pub fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::JsonDataError(e) => ApiError::Validation {
            message: body_text(&e.body_text()),
            fields: Default::default(),
        },
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::BadRequest("request body is not valid JSON".into())
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(b)
            if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge("request body too large".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// serde's message without axum's prefix, e.g. "unknown field `role`, expected …".
fn body_text(s: &str) -> String {
    s.trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .to_string()
}

/// Query string; anything that does not parse is a 422 naming the problem.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(AppQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::Validation {
        message: e
            .body_text()
            .trim_start_matches("Failed to deserialize query string: ")
            .to_string(),
        fields: Default::default(),
    }
}

/// `Idempotency-Key`: required on money POSTs.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let v = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?;
    let s = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?;
    Ok(etx_core::ledger::idempotency_key(s)?)
}
