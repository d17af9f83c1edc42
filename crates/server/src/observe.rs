//! Optional exports for operators: one OpenTelemetry span per request sent over OTLP/HTTP (the
//! JSON encoding, `POST {endpoint}/v1/traces`), continuing the caller's trace when the request
//! carries a W3C `traceparent`; and every internal error (a 500) reported to Sentry through its
//! envelope endpoint. Both are off unless configured (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `SENTRY_DSN`); both send from a background task in batches and drop what they cannot send,
//! never holding up a request.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Queued spans or reports beyond this are dropped rather than grow memory while a collector
/// is away.
const QUEUE: usize = 8192;
const BATCH: usize = 512;
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The cause of the internal error the request being served ran into, for Sentry.
    pub static INTERNAL_ERROR: std::cell::RefCell<Option<String>>;
}

/// Notes the cause of an internal error for the request being served (no-op outside one).
pub fn note_internal_error(cause: &str) {
    let _ = INTERNAL_ERROR.try_with(|e| *e.borrow_mut() = Some(cause.to_string()));
}

/// One served request, as a span.
pub struct RequestSpan {
    pub traceparent: Option<String>,
    pub request_id: String,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub start: SystemTime,
    pub end: SystemTime,
}

#[derive(Clone, Default)]
pub struct Observe {
    spans: Option<mpsc::Sender<RequestSpan>>,
    errors: Option<mpsc::Sender<Value>>,
    environment: &'static str,
}

impl Observe {
    /// Starts the exporters that are configured; bad settings are refused at start-up.
    pub fn start(
        otlp_endpoint: Option<&str>,
        sentry_dsn: Option<&str>,
        environment: &'static str,
    ) -> anyhow::Result<Observe> {
        let client = reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?;
        let spans = match otlp_endpoint.filter(|e| !e.is_empty()) {
            Some(endpoint) => {
                let url = traces_url(endpoint)?;
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(export_spans(client.clone(), url, rx));
                Some(tx)
            }
            None => None,
        };
        let errors = match sentry_dsn.filter(|d| !d.is_empty()) {
            Some(dsn) => {
                let target = SentryTarget::parse(dsn)?;
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(report_errors(client, target, rx));
                Some(tx)
            }
            None => None,
        };
        Ok(Observe {
            spans,
            errors,
            environment,
        })
    }

    pub fn tracing(&self) -> bool {
        self.spans.is_some()
    }

    pub fn span(&self, s: RequestSpan) {
        if let Some(tx) = &self.spans {
            let _ = tx.try_send(s);
        }
    }

    /// Reports an internal error of a request to Sentry, when configured.
    pub fn internal_error(&self, cause: &str, request_id: &str, method: &str, route: &str) {
        let Some(tx) = &self.errors else {
            return;
        };
        let event = json!({
            "event_id": uuid::Uuid::new_v4().simple().to_string(),
            "timestamp": unix_secs(SystemTime::now()),
            "platform": "native",
            "level": "error",
            "logger": "etx",
            "release": concat!("etx@", env!("CARGO_PKG_VERSION")),
            "environment": self.environment,
            "transaction": format!("{method} {route}"),
            "exception": {"values": [{"type": "InternalError", "value": cause}]},
            "tags": {"request_id": request_id, "route": route, "method": method},
        });
        let _ = tx.try_send(event);
    }
}

fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let e = endpoint.trim_end_matches('/');
    anyhow::ensure!(
        e.starts_with("http://") || e.starts_with("https://"),
        "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL"
    );
    Ok(if e.ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{e}/v1/traces")
    })
}

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace id and parent span id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<flags>`).
fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    (version == "00" && is_hex(trace, 32) && is_hex(parent, 16) && !zero(trace) && !zero(parent))
        .then(|| (trace.to_ascii_lowercase(), parent.to_ascii_lowercase()))
}

fn attr(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn span_json(s: &RequestSpan) -> Value {
    let ids = uuid::Uuid::new_v4();
    let (trace_id, parent) = match s.traceparent.as_deref().and_then(parse_traceparent) {
        Some((t, p)) => (t, Some(p)),
        None => (hex(ids.as_bytes()), None),
    };
    let span_id = hex(&uuid::Uuid::new_v4().as_bytes()[..8]);
    let mut span = json!({
        "traceId": trace_id,
        "spanId": span_id,
        "name": format!("{} {}", s.method, s.route),
        // SPAN_KIND_SERVER
        "kind": 2,
        "startTimeUnixNano": unix_nanos(s.start),
        "endTimeUnixNano": unix_nanos(s.end),
        "attributes": [
            attr("http.request.method", json!({"stringValue": s.method})),
            attr("http.route", json!({"stringValue": s.route})),
            attr("http.response.status_code", json!({"intValue": s.status.to_string()})),
            attr("etx.request_id", json!({"stringValue": s.request_id})),
        ],
        // STATUS_CODE_ERROR for server errors, else unset.
        "status": if s.status >= 500 { json!({"code": 2}) } else { json!({}) },
    });
    if let Some(p) = parent {
        span["parentSpanId"] = json!(p);
    }
    span
}

async fn export_spans(client: reqwest::Client, url: String, mut rx: mpsc::Receiver<RequestSpan>) {
    let mut failing = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let spans: Vec<Value> = batch.drain(..).map(|s| span_json(&s)).collect();
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [
                attr("service.name", json!({"stringValue": "etx"})),
                attr("service.version", json!({"stringValue": env!("CARGO_PKG_VERSION")})),
            ]},
            "scopeSpans": [{"scope": {"name": "etx-server"}, "spans": spans}],
        }]});
        let sent = client.post(&url).json(&body).send().await;
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        if !ok && !failing {
            tracing::warn!(url = %url, "traces could not be exported; dropping them until the collector answers");
        }
        failing = !ok;
        // Batches form while the previous one is sent; a pause keeps them large under load.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where a Sentry DSN (`https://<key>@<host>/<project>`) sends events.
struct SentryTarget {
    url: String,
    key: String,
    dsn: String,
}

impl SentryTarget {
    fn parse(dsn: &str) -> anyhow::Result<SentryTarget> {
        let bad = || anyhow::anyhow!("SENTRY_DSN must look like https://<key>@<host>/<project>");
        let (scheme, rest) = dsn.split_once("://").ok_or_else(bad)?;
        anyhow::ensure!(scheme == "https" || scheme == "http", bad());
        let (key, rest) = rest.split_once('@').ok_or_else(bad)?;
        let key = key.split(':').next().unwrap_or_default();
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        let path = path.trim_end_matches('/');
        let (prefix, project) = match path.rsplit_once('/') {
            Some((p, id)) => (format!("/{p}"), id),
            None => (String::new(), path),
        };
        anyhow::ensure!(
            !key.is_empty() && !host.is_empty() && !project.is_empty(),
            bad()
        );
        Ok(SentryTarget {
            url: format!("{scheme}://{host}{prefix}/api/{project}/envelope/"),
            key: key.to_string(),
            dsn: dsn.to_string(),
        })
    }
}

async fn report_errors(
    client: reqwest::Client,
    target: SentryTarget,
    mut rx: mpsc::Receiver<Value>,
) {
    let auth = format!(
        "Sentry sentry_version=7, sentry_key={}, sentry_client=etx/{}",
        target.key,
        env!("CARGO_PKG_VERSION")
    );
    let mut failing = false;
    while let Some(event) = rx.recv().await {
        let header = json!({
            "event_id": event["event_id"],
            "dsn": target.dsn,
            "sent_at": chrono_like_now(),
        });
        let item = event.to_string();
        let body = format!(
            "{header}\n{}\n{item}\n",
            json!({"type": "event", "length": item.len(), "content_type": "application/json"})
        );
        let sent = client
            .post(&target.url)
            .header("X-Sentry-Auth", &auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
            .send()
            .await;
        let ok = matches!(&sent, Ok(r) if r.status().is_success());
        if !ok && !failing {
            tracing::warn!(
                "an error could not be reported to Sentry; dropping reports until it answers"
            );
        }
        failing = !ok;
    }
}

fn chrono_like_now() -> String {
    etx_core::time::rfc3339(etx_db::now_micros())
}

#[cfg(test)]
mod tests {
    use super::{SentryTarget, parse_traceparent, traces_url};

    #[test]
    fn a_dsn_names_the_envelope_endpoint_and_key() {
        let t = SentryTarget::parse("https://abc123@o1.ingest.sentry.io/4505").unwrap();
        assert_eq!(t.url, "https://o1.ingest.sentry.io/api/4505/envelope/");
        assert_eq!(t.key, "abc123");
        let t = SentryTarget::parse("http://k:secret@127.0.0.1:9000/sub/7").unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9000/sub/api/7/envelope/");
        assert_eq!(t.key, "k");
        for bad in [
            "",
            "sentry.io/1",
            "https://host/1",
            "ftp://k@h/1",
            "https://k@h/",
        ] {
            assert!(SentryTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn traceparents_are_read_only_when_well_formed() {
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-zz-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert!(traces_url("collector:4318").is_err());
    }
}
