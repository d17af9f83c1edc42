//! How a page answers a failed request: the HTML error page with the status the JSON API would
//! give (and the same `Retry-After`), or the login page for a visitor who is not signed in.
//! Pages never answer with the API's JSON error body.

use super::{LoginRedirect, error_page};
use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use etx_core::CoreError;

#[derive(Debug)]
pub enum PageError {
    /// Not signed in, or the session has ended: to the login page, as for `WebUser`.
    SignIn,
    /// Anything else: the error page with the error's status.
    Failed(ApiError),
}

pub type PageResult<T = Response> = Result<T, PageError>;

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized(_) => PageError::SignIn,
            other => PageError::Failed(other),
        }
    }
}

impl From<CoreError> for PageError {
    fn from(e: CoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<etx_db::DbErr> for PageError {
    fn from(e: etx_db::DbErr) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = match self {
            PageError::SignIn => return LoginRedirect.into_response(),
            PageError::Failed(e) => e,
        };
        e.log_if_internal();
        let status = e.status();
        let public = capitalised(&e.public_message());
        let (title, message) = match &e {
            ApiError::CsrfMissing | ApiError::CsrfInvalid => (
                "Form expired",
                "Please go back, reload the page and try again.".to_string(),
            ),
            ApiError::NotFound => ("Not found", "There is nothing here.".to_string()),
            ApiError::Forbidden(_) => ("Not allowed", public),
            ApiError::RateLimited { .. } => (
                "Too many requests",
                "Too many attempts. Please wait a minute and try again.".to_string(),
            ),
            ApiError::ServiceUnavailable(_) | ApiError::Busy { .. } => {
                ("Try again shortly", public)
            }
            ApiError::Internal(_) => (
                "Something went wrong",
                "Something went wrong on our side. Please try again.".to_string(),
            ),
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => ("Something went wrong", public),
            _ => ("Not done", public),
        };
        let mut resp = error_page(status, title, &message);
        e.retry_headers(resp.headers_mut());
        resp
    }
}

/// `"session not found"` as a sentence: `"Session not found."`.
fn capitalised(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(1)
        .flat_map(char::to_uppercase)
        .chain(s.chars().skip(1))
        .collect();
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn a_page_error_is_html_with_the_api_status_and_retry_after() {
        let r = PageError::from(ApiError::RateLimited {
            retry_after_secs: 7,
            limit: 5,
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let r = PageError::from(CoreError::NotFound).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = PageError::from(ApiError::Unauthorized("no".into())).into_response();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/login");
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(capitalised("session not found"), "Session not found.");
        assert_eq!(capitalised("Done."), "Done.");
        assert_eq!(capitalised(""), "");
    }
}
