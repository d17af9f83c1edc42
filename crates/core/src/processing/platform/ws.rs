//! The platform's WebSocket session: `{ws_uri}/fid-{fid}` after a login, a `SetOrg` handshake,
//! then requests matched to their answers by message id.
//!
//! * Handshake: the first message the platform sends is a `SetOrg` script message; the session
//!   acknowledges it with `{"SetOrg":{"mid":…}}` echoing its `mid` (see
//!   [`set_org_ack`](super::messages::set_org_ack)) and is then ready. No other first message
//!   is accepted.
//! * Requests: each carries a fresh `mid` (a decimal counter as text, unique in the session);
//!   the answer whose `mid` equals it is the request's answer, whatever order answers come in.
//!   Messages with an unknown or no `mid` are logged and ignored. Each request waits at most
//!   [`Timeouts::request`](super::Timeouts::request) for its answer.
//! * A dropped connection fails every request waiting on it at once with
//!   [`PlatformError::Disconnected`] (transient). WebSocket requests are not retried by the
//!   session (an upload or a tenant creation may have happened before the drop); the next
//!   request re-makes the connection (new handshake, and the organisation chosen with
//!   [`Session::set_org`] chosen again), once per session; after a second drop requests fail
//!   until a new session is made.

use super::messages::{self, answer_mid, check_answer};
use super::{Platform, PlatformError};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A request for the connection's task: the text to send and where its answer goes (`Err`:
/// why the connection ended first).
struct Outgoing {
    mid: String,
    text: String,
    answer: oneshot::Sender<Result<Value, String>>,
}

/// An open connection, served by its own task.
struct Link {
    requests: mpsc::Sender<Outgoing>,
}

struct LinkState {
    link: Link,
    /// The login's WebSocket id; a new login replaces it when the platform refuses it.
    fid: String,
    /// The connection was made again once already.
    reconnected: bool,
    /// The organisation chosen with `SetOrg`, chosen again after a reconnect.
    org: Option<Value>,
}

/// A logged-in WebSocket session with the platform. Requests may run concurrently; dropping
/// the session closes the connection.
pub struct Session {
    platform: Platform,
    next_mid: AtomicU64,
    state: Mutex<LinkState>,
}

fn disconnected(what: &str, detail: impl Into<String>) -> PlatformError {
    PlatformError::Disconnected {
        what: what.into(),
        detail: detail.into(),
    }
}

/// `fid` as one path segment: everything but unreserved characters percent-encoded.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Platform {
    /// Logs in, opens the WebSocket and answers the platform's `SetOrg` handshake.
    pub async fn connect(&self) -> Result<Session, PlatformError> {
        let fid = self.login().await?;
        let session = Session {
            platform: self.clone(),
            next_mid: AtomicU64::new(1),
            state: Mutex::new(LinkState {
                link: open(self, &fid, "1").await?,
                fid,
                reconnected: false,
                org: None,
            }),
        };
        // The handshake used mid 1 when the platform gave none.
        session.next_mid.store(2, Ordering::Relaxed);
        Ok(session)
    }
}

/// Connects to `{ws_uri}/fid-{fid}`, answers the first message, and starts the task that
/// serves the connection.
async fn open(platform: &Platform, fid: &str, fallback_mid: &str) -> Result<Link, PlatformError> {
    let what = "the WebSocket connection";
    let t = platform.timeouts();
    let url = format!(
        "{}/fid-{}",
        platform.settings().ws_uri.trim_end_matches('/'),
        path_segment(fid)
    );
    let (mut ws, _) = tokio::time::timeout(t.connect, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| PlatformError::Timeout {
            what: what.into(),
            millis: t.connect.as_millis() as u64,
        })?
        .map_err(|e| connect_error(what, e))?;
    let first = tokio::time::timeout(t.request, first_text(&mut ws))
        .await
        .map_err(|_| PlatformError::Timeout {
            what: "the SetOrg handshake".into(),
            millis: t.request.as_millis() as u64,
        })??;
    let first: Value = serde_json::from_str(&first).map_err(|_| PlatformError::Protocol {
        what: "the SetOrg handshake".into(),
        detail: "the first message is not JSON".into(),
    })?;
    let ack =
        messages::set_org_ack(&first, fallback_mid).map_err(|detail| PlatformError::Protocol {
            what: "the SetOrg handshake".into(),
            detail,
        })?;
    ws.send(Message::text(ack))
        .await
        .map_err(|e| disconnected("the SetOrg handshake", e.to_string()))?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(serve(ws, rx));
    Ok(Link { requests: tx })
}

fn connect_error(what: &str, e: tokio_tungstenite::tungstenite::Error) -> PlatformError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status().as_u16();
            let message = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).chars().take(300).collect())
                .unwrap_or_else(|| "no message".into());
            if status == 429 || status >= 500 {
                PlatformError::Unavailable {
                    what: what.into(),
                    status,
                    message,
                }
            } else {
                PlatformError::Rejected {
                    what: what.into(),
                    status,
                    message,
                }
            }
        }
        other => PlatformError::Unreachable {
            what: what.into(),
            detail: other.to_string(),
        },
    }
}

/// The first text message, skipping pings.
async fn first_text(ws: &mut Socket) -> Result<String, PlatformError> {
    let what = "the SetOrg handshake";
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(_))) | None => {
                return Err(disconnected(what, "the platform closed the connection"));
            }
            Some(Err(e)) => return Err(disconnected(what, e.to_string())),
            Some(Ok(_)) => {}
        }
    }
}

/// Serves one connection: sends requests, routes answers by `mid`, and when the connection
/// ends fails whatever is still waiting.
async fn serve(mut ws: Socket, mut requests: mpsc::Receiver<Outgoing>) {
    let mut waiting: HashMap<String, oneshot::Sender<Result<Value, String>>> = HashMap::new();
    let ended = loop {
        tokio::select! {
            r = requests.recv() => match r {
                // The session was dropped.
                None => {
                    let _ = ws.close(None).await;
                    return;
                }
                Some(o) => {
                    // Requests whose caller gave up (timed out) are forgotten.
                    waiting.retain(|_, s| !s.is_closed());
                    waiting.insert(o.mid, o.answer);
                    if let Err(e) = ws.send(Message::text(o.text)).await {
                        break format!("sending failed: {e}");
                    }
                }
            },
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                        tracing::warn!("the platform sent a message that is not JSON");
                        continue;
                    };
                    match answer_mid(&v).and_then(|mid| waiting.remove(&mid)) {
                        Some(s) => {
                            let _ = s.send(Ok(v));
                        }
                        None => tracing::debug!("platform message for no waiting request"),
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(f) if !f.reason.is_empty() => {
                            format!("the platform closed the connection ({})", f.reason)
                        }
                        _ => "the platform closed the connection".into(),
                    };
                }
                None => break "the platform closed the connection".into(),
                Some(Err(e)) => break e.to_string(),
                Some(Ok(_)) => {}
            },
        }
    };
    tracing::warn!(reason = %ended, "platform WebSocket ended");
    // Closed before anyone hears of the end, so a caller told of it finds the link closed and
    // re-makes it rather than queueing on this one.
    requests.close();
    for (_, s) in waiting.drain() {
        let _ = s.send(Err(ended.clone()));
    }
    // Requests queued but not yet sent fail the same way.
    while let Some(o) = requests.recv().await {
        let _ = o.answer.send(Err(ended.clone()));
    }
}

impl Session {
    fn mid(&self) -> String {
        self.next_mid.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The connection's request queue, re-made once if the connection has ended.
    async fn link(&self, what: &str) -> Result<mpsc::Sender<Outgoing>, PlatformError> {
        let mut st = self.state.lock().await;
        if !st.link.requests.is_closed() {
            return Ok(st.link.requests.clone());
        }
        if st.reconnected {
            return Err(disconnected(
                what,
                "the connection was lost again after it had been re-made once",
            ));
        }
        st.reconnected = true;
        tracing::info!("re-making the platform WebSocket connection");
        st.link = match open(&self.platform, &st.fid, &self.mid()).await {
            // The login may have expired with the connection: log in again.
            Err(PlatformError::Rejected {
                status: 401 | 403, ..
            }) => {
                st.fid = self.platform.login().await?;
                open(&self.platform, &st.fid, &self.mid()).await?
            }
            other => other?,
        };
        if let Some(org) = st.org.clone() {
            let tx = st.link.requests.clone();
            drop(st);
            self.request_on(&tx, "SetOrg", self.mid(), |mid| {
                messages::request("SetOrg", mid, json!({"id": org}))
            })
            .await?;
            return Ok(tx);
        }
        Ok(st.link.requests.clone())
    }

    /// Sends one request and waits for its answer; the answer's status must be success.
    async fn call(
        &self,
        what: &str,
        build: impl FnOnce(&str) -> String,
    ) -> Result<Value, PlatformError> {
        let tx = self.link(what).await?;
        self.request_on(&tx, what, self.mid(), build).await
    }

    async fn request_on(
        &self,
        tx: &mpsc::Sender<Outgoing>,
        what: &str,
        mid: String,
        build: impl FnOnce(&str) -> String,
    ) -> Result<Value, PlatformError> {
        let text = build(&mid);
        self.exchange(tx, what, mid, text).await
    }

    async fn exchange(
        &self,
        tx: &mpsc::Sender<Outgoing>,
        what: &str,
        mid: String,
        text: String,
    ) -> Result<Value, PlatformError> {
        let (answer, waiting) = oneshot::channel();
        tx.send(Outgoing { mid, text, answer })
            .await
            .map_err(|_| disconnected(what, "the connection had closed"))?;
        let limit = self.platform.timeouts().request;
        let v = match tokio::time::timeout(limit, waiting).await {
            Err(_) => {
                return Err(PlatformError::Timeout {
                    what: what.into(),
                    millis: limit.as_millis() as u64,
                });
            }
            Ok(Err(_)) => return Err(disconnected(what, "the connection closed")),
            Ok(Ok(Err(detail))) => return Err(disconnected(what, detail)),
            Ok(Ok(Ok(v))) => v,
        };
        check_answer(what, &v)
    }

    /// `UploadBase64Imp`: uploads the file at `path` as `file_name`; the platform's path of
    /// the stored file (`Message.FilePath`).
    pub async fn upload_file(
        &self,
        path: &std::path::Path,
        file_name: &str,
    ) -> Result<String, PlatformError> {
        let what = "UploadBase64Imp";
        let tx = self.link(what).await?;
        let mid = self.mid();
        let (m, p, n) = (mid.clone(), path.to_path_buf(), file_name.to_string());
        let text = tokio::task::spawn_blocking(move || messages::upload_message(&m, &n, &p))
            .await
            .map_err(|e| PlatformError::File {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?
            .map_err(|e| PlatformError::File {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        let body = self.exchange(&tx, what, mid, text).await?;
        messages::uploaded_path(&body)
    }

    /// The ES data import of an uploaded file (`PyRequest` to `etx_batch`,
    /// `es_data_importer`), `page_rows` rows per request from offset 0 until a page says it is
    /// the last (see [`import_page`](messages::import_page)). `progress(done, total)` is called
    /// after each page. Returns the rows imported.
    pub async fn import_es_data(
        &self,
        data_file_path: &str,
        page_rows: u64,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, PlatformError> {
        let page_rows = page_rows.max(1);
        let mut offset = 0u64;
        loop {
            let body = self
                .call("the ES data import", |mid| {
                    messages::py_request(
                        mid,
                        "etx_batch",
                        messages::es_import_input(data_file_path, offset, page_rows),
                    )
                })
                .await?;
            let page = messages::import_page(&body)?;
            offset += page.rows;
            progress(offset, page.total);
            let past_end = page.total.is_some_and(|t| offset >= t);
            if page.done || page.rows < page_rows || past_end {
                return Ok(offset);
            }
        }
    }

    /// `GetOrgs`, then `SetOrg` to the organisation called `name`; its id.
    pub async fn select_org(&self, name: &str) -> Result<Value, PlatformError> {
        let body = self
            .call("GetOrgs", |mid| {
                messages::request("GetOrgs", mid, json!({}))
            })
            .await?;
        let id = messages::org_id(&body, name)?;
        self.set_org(&id).await?;
        Ok(id)
    }

    /// `SetOrg {mid, id}`: the organisation later requests work in.
    pub async fn set_org(&self, id: &Value) -> Result<(), PlatformError> {
        self.call("SetOrg", |mid| {
            messages::request("SetOrg", mid, json!({"id": id}))
        })
        .await?;
        self.state.lock().await.org = Some(id.clone());
        Ok(())
    }

    /// `CreateOrgStructureFromCsv {mid, data}`; the answer's body.
    pub async fn create_org_structure(&self, csv: &str) -> Result<Value, PlatformError> {
        self.call("CreateOrgStructureFromCsv", |mid| {
            messages::request("CreateOrgStructureFromCsv", mid, json!({"data": csv}))
        })
        .await
    }

    /// `CreateTenantAccount {mid, Name, AutoCreateDatabase: true}`; the answer's body.
    pub async fn create_tenant_account(&self, name: &str) -> Result<Value, PlatformError> {
        self.call("CreateTenantAccount", |mid| {
            messages::request(
                "CreateTenantAccount",
                mid,
                json!({"Name": name, "AutoCreateDatabase": true}),
            )
        })
        .await
    }

    /// `PyRequest` to `genie_scheme_coordinator_app`, action `scheme_up_organization`, with
    /// `params` (an object) added to its `Input`; the answer's body.
    pub async fn scheme_up_organization(&self, params: Value) -> Result<Value, PlatformError> {
        self.call("scheme_up_organization", |mid| {
            messages::py_request(
                mid,
                "genie_scheme_coordinator_app",
                messages::scheme_up_input(params),
            )
        })
        .await
    }

    /// `SetVersion {mid, etxVersion, releaseDate, description}`; the answer's body.
    pub async fn set_version(
        &self,
        etx_version: &str,
        release_date: &str,
        description: &str,
    ) -> Result<Value, PlatformError> {
        self.call("SetVersion", |mid| {
            messages::request(
                "SetVersion",
                mid,
                json!({
                    "etxVersion": etx_version,
                    "releaseDate": release_date,
                    "description": description,
                }),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fids_are_one_path_segment() {
        assert_eq!(super::path_segment("ab-9_Z.~"), "ab-9_Z.~");
        assert_eq!(super::path_segment("a/b c"), "a%2Fb%20c");
    }
}
