//! Reading requests: extractors whose rejections speak our error format instead of axum's plain
//! text, and the helpers for headers and upload bodies that the API and the pages share.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::BytesMut;
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

/// Reads the `file` (or `avatar`) part of a multipart body, stopping as soon as it exceeds
/// `max` bytes instead of buffering the whole upload.
pub async fn read_image_part(mut mp: Multipart, max: usize) -> Result<bytes::Bytes, ApiError> {
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        if !matches!(field.name(), Some("file") | Some("avatar")) {
            continue;
        }
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if buf.len() + chunk.len() > max {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the image must be at most {} MB",
                    max / (1024 * 1024)
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        return Ok(buf.freeze());
    }
    Err(ApiError::field("file", "is required"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the upload is too large".into())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Reject oversized uploads from the announced length, before reading a byte.
pub fn check_content_length(headers: &HeaderMap, max: usize) -> Result<(), ApiError> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match len {
        Some(n) if n > max + 64 * 1024 => {
            Err(ApiError::PayloadTooLarge("the upload is too large".into()))
        }
        _ => Ok(()),
    }
}
