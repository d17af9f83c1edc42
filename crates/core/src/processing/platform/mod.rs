//! The connector to the external ETX/CTX platform: each user's connection settings (sealed at
//! rest), its HTTP API (login, emission sources, BAR publishing) and its WebSocket session.
//!
//! # Using it
//!
//! ```text
//! let p = platform::for_user(&core, &user).await?.ok_or(…)?;  // settings decrypted, no network yet
//!     // (or Platform::new(settings, timeouts) with settings::settings(&core, &user))
//! let sources = p.emission_sources().await?;                 // GET …/GetAllESs
//! let outcome = p.publish_group(key, bart_name, csv, &sources).await; // match, then publish
//! let session = p.connect().await?;                          // login, WebSocket, SetOrg handshake
//! let path = session.upload_file(&file, "data.csv").await?;  // UploadBase64Imp
//! session.import_es_data(&path, 500, |done, total| …).await?;
//! ```
//!
//! # Wire format
//!
//! * Login: `POST {http_uri}/fid-auth` `{"login":{"email","password"}}` → `{"login":{"fid"}}`.
//!   A 401 (or 403) is [`PlatformError::Refused`] and is not retried.
//! * HTTP API: `{http_uri}/{api_version}/{name}` with the header `DTX-DS-KEY`.
//!   `GET GetAllESs` → `{"GetAllESs":{"Results":{"EmissionSources":[{"EsSID","EsFullName"}]}}}`;
//!   `POST PublishBARData` `{"esId","bartName","data":{"csv"}}` →
//!   `{"PublishBARData":{"statusCode":200}}`; another `statusCode` fails that group with the
//!   platform's `message`.
//! * Every HTTP call has a timeout ([`Timeouts::request`]) and is tried up to
//!   [`Timeouts::attempts`] times with exponential backoff when the failure is transient
//!   (connection error, timeout, HTTP 5xx or 429); any other 4xx fails at once. WebSocket
//!   requests have the same timeout but are not retried (see [`ws`]). The values come from
//!   `[platform]` in the configuration ([`PlatformConfig`]).
//! * WebSocket: `{ws_uri}/fid-{fid}`. See [`ws`] for the session, the handshake and how answers
//!   are matched to requests; [`messages`] for each operation's request and answer.
//! * Emission source matching: see [`sources`]. Exact after normalisation, never by substring;
//!   none or several matches are reported, never guessed.
//!
//! # Settings
//!
//! [`settings`](settings::settings) reads a user's settings decrypted; `save`/`delete` change
//! them (audited). The password and the data source key are sealed with the server's
//! [`SecretBox`](etx_auth::totp::SecretBox) bound to the user (see [`settings`]).

pub mod http;
pub mod messages;
pub mod settings;
pub mod sources;
pub mod ws;

pub use http::{Platform, PublishOutcome, bart_name};
pub use settings::{PlatformSettings, SettingsInput, SettingsView};
pub use sources::{EmissionSource, EsId, Match, match_source};
pub use ws::Session;

use std::time::Duration;

/// The user's platform connection, with the configured timeouts; `None` when the user has no
/// settings. Nothing is sent yet.
pub async fn for_user(
    state: &crate::Core,
    user: &etx_db::users::UserRow,
) -> crate::CoreResult<Option<Platform>> {
    let Some(s) = settings::settings(state, user).await? else {
        return Ok(None);
    };
    Ok(Some(Platform::new(s, state.config.platform.timeouts())?))
}

/// `[platform]` in the configuration: the connector's timeouts and retries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlatformConfig {
    pub connect_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// Tries of one HTTP call in all, 1..=10.
    pub attempts: u32,
    pub first_backoff_ms: u64,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        PlatformConfig {
            connect_timeout_secs: t.connect.as_secs(),
            request_timeout_secs: t.request.as_secs(),
            attempts: t.attempts,
            first_backoff_ms: t.first_backoff.as_millis() as u64,
        }
    }
}

impl PlatformConfig {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(self.connect_timeout_secs),
            request: Duration::from_secs(self.request_timeout_secs),
            attempts: self.attempts,
            first_backoff: Duration::from_millis(self.first_backoff_ms),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if self.connect_timeout_secs == 0
            || self.request_timeout_secs == 0
            || !(1..=10).contains(&self.attempts)
        {
            return Err("invalid setting platform: timeouts >= 1 s, attempts 1..=10".into());
        }
        Ok(())
    }
}

/// How long each call may take and how often a transient failure is tried again.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Establishing a TCP/TLS/WebSocket connection.
    pub connect: Duration,
    /// One HTTP request, or one WebSocket request until its answer arrives.
    pub request: Duration,
    /// Tries of one HTTP call in all (1 = no retry).
    pub attempts: u32,
    /// Pause before the second try; doubled before each further one.
    pub first_backoff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            attempts: 3,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// What went wrong talking to the platform, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The login was refused: wrong email or password.
    #[error("the platform refused the credentials")]
    Refused,
    #[error("the platform did not answer {what} within {}", human_ms(.millis))]
    Timeout { what: String, millis: u64 },
    /// No connection could be made (DNS, refused, TLS, reset).
    #[error("could not reach the platform for {what}: {detail}")]
    Unreachable { what: String, detail: String },
    /// HTTP 5xx or 429: worth trying again later.
    #[error("the platform is unavailable for {what} (HTTP {status}): {message}")]
    Unavailable {
        what: String,
        status: u16,
        message: String,
    },
    /// HTTP 4xx other than 429: the request itself was refused.
    #[error("the platform refused {what} (HTTP {status}): {message}")]
    Rejected {
        what: String,
        status: u16,
        message: String,
    },
    /// The WebSocket closed or broke while a request was waiting, or before it was sent.
    #[error("the connection to the platform was lost during {what}: {detail}")]
    Disconnected { what: String, detail: String },
    /// The platform answered, with a status other than success.
    #[error("the platform reported a failure for {what}: {message}")]
    Failed { what: String, message: String },
    /// The answer is not shaped as the wire format says.
    #[error("the platform's answer to {what} was not understood: {detail}")]
    Protocol { what: String, detail: String },
    /// Something named does not exist on the platform (an organisation).
    #[error("{0}")]
    NotFound(String),
    /// Several things carry the name asked for; nothing is guessed.
    #[error("{0}")]
    Ambiguous(String),
    /// A local file could not be read.
    #[error("could not read {path}: {detail}")]
    File { path: String, detail: String },
    /// The settings cannot be used (a URI that does not parse).
    #[error("{0}")]
    Settings(String),
}

impl PlatformError {
    /// Failures that may pass by themselves: a retry (now, or a job's later run) can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PlatformError::Timeout { .. }
                | PlatformError::Unreachable { .. }
                | PlatformError::Unavailable { .. }
                | PlatformError::Disconnected { .. }
        )
    }
}

impl From<PlatformError> for crate::CoreError {
    /// For callers that surface a connector failure as a request's error: transient ones are
    /// `Unavailable`, the rest a bad request, both with the readable message.
    fn from(e: PlatformError) -> Self {
        if e.is_transient() {
            crate::CoreError::Unavailable(e.to_string())
        } else {
            crate::CoreError::BadRequest(e.to_string())
        }
    }
}

/// `30 s`, or `250 ms` when not whole seconds.
fn human_ms(ms: &u64) -> String {
    if *ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// Runs `call` until it succeeds, fails for good, or `attempts` are used up; waits
/// `first_backoff`, then twice that, … between tries.
pub(crate) async fn with_retries<T, F, Fut>(t: &Timeouts, mut call: F) -> Result<T, PlatformError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PlatformError>>,
{
    let mut pause = t.first_backoff;
    let mut tried = 0;
    loop {
        tried += 1;
        match call().await {
            Err(e) if e.is_transient() && tried < t.attempts.max(1) => {
                tracing::info!(error = %e, retry_in_ms = pause.as_millis() as u64, "platform call failed; trying again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(attempts: u32) -> Timeouts {
        Timeouts {
            attempts,
            first_backoff: Duration::from_millis(1),
            ..Timeouts::default()
        }
    }

    #[tokio::test]
    async fn transient_failures_are_tried_again_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(&quick(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(PlatformError::Unavailable {
                what: "x".into(),
                status: 503,
                message: "busy".into(),
            })
        })
        .await;
        assert!(matches!(r, Err(PlatformError::Unavailable { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let r = with_retries(&quick(3), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(PlatformError::Unreachable {
                    what: "x".into(),
                    detail: "reset".into(),
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_configured_defaults_are_the_documented_ones() {
        let c = crate::Config::defaults();
        c.validate().unwrap();
        let t = c.platform.timeouts();
        assert_eq!(
            (t.connect, t.request, t.attempts, t.first_backoff),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                3,
                Duration::from_millis(500)
            )
        );
        let mut bad = c.platform.clone();
        bad.attempts = 0;
        assert!(bad.check().is_err());
        let mut bad = c.platform.clone();
        bad.request_timeout_secs = 0;
        assert!(bad.check().is_err());
    }

    #[tokio::test]
    async fn refusals_are_not_tried_again() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retries(&quick(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(PlatformError::Refused)
        })
        .await;
        assert_eq!(r, Err(PlatformError::Refused));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!PlatformError::Refused.is_transient());
        assert_eq!(
            PlatformError::Refused.to_string(),
            "the platform refused the credentials"
        );
    }
}
