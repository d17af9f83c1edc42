//! The ETX/CTX platform connector against a local fake of the platform (HTTP routes and a
//! WebSocket, scriptable per test), and `/api/etx/config`: settings sealed at rest, never shown.

use crate::support::*;
use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use etx_core::processing::platform::{
    EmissionSource, EsId, Platform, PlatformError, PlatformSettings, PublishOutcome, Timeouts,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EMAIL: &str = "ops@acme.example";
const SECRET_PASSWORD: &str = "pl4tform-Passw0rd-xyzzy";
const DS_KEY: &str = "DS-KEY-7f3a9c0e11";
const FID: &str = "fid-8c1e";

/// What the fake does and what it saw.
#[derive(Default)]
struct Fake {
    logins: AtomicU32,
    get_all_calls: AtomicU32,
    /// Answer this many `GetAllESs` calls with HTTP 500 first.
    get_all_failures: AtomicU32,
    /// Sleep this long before answering `GetAllESs`.
    get_all_delay: Mutex<Option<Duration>>,
    sources: Mutex<Value>,
    publish_calls: AtomicU32,
    /// (DTX-DS-KEY, body) of each PublishBARData.
    published: Mutex<Vec<(String, Value)>>,
    /// WebSocket connections opened, and the acknowledgement each sent to the handshake.
    acks: Mutex<Vec<Value>>,
    /// Requests received over the WebSocket (after the handshake), with the connection's number.
    requests: Mutex<Vec<(usize, Value)>>,
    /// Operations to answer with a failure status.
    failing: Mutex<HashSet<String>>,
    /// Close the connection instead of answering this operation.
    drop_on: Mutex<Option<String>>,
    /// Never answer this operation (the connection stays open).
    hang_on: Mutex<Option<String>>,
    /// Bytes decoded from each UploadBase64Imp.
    uploads: Mutex<Vec<Vec<u8>>>,
    /// Rows in the file the ES data import pages through.
    import_rows: AtomicU32,
}

type Shared = Arc<Fake>;

fn ds_key(h: &HeaderMap) -> String {
    h.get("DTX-DS-KEY")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn fid_auth(State(f): State<Shared>, Json(b): Json<Value>) -> Response {
    f.logins.fetch_add(1, Ordering::SeqCst);
    if b["login"]["email"] == EMAIL && b["login"]["password"] == SECRET_PASSWORD {
        Json(json!({"login": {"fid": FID}})).into_response()
    } else {
        (
            AxStatus::UNAUTHORIZED,
            Json(json!({"message": "invalid email or password"})),
        )
            .into_response()
    }
}

async fn get_all_ess(State(f): State<Shared>, h: HeaderMap) -> Response {
    f.get_all_calls.fetch_add(1, Ordering::SeqCst);
    if ds_key(&h) != DS_KEY {
        return (
            AxStatus::FORBIDDEN,
            Json(json!({"message": "unknown data source key"})),
        )
            .into_response();
    }
    let delay = *f.get_all_delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if f.get_all_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (AxStatus::INTERNAL_SERVER_ERROR, "upstream hiccup").into_response();
    }
    let sources = f.sources.lock().unwrap().clone();
    Json(json!({"GetAllESs": {"Results": {"EmissionSources": sources}}})).into_response()
}

async fn publish(State(f): State<Shared>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    f.publish_calls.fetch_add(1, Ordering::SeqCst);
    if ds_key(&h) != DS_KEY {
        return (
            AxStatus::FORBIDDEN,
            Json(json!({"message": "unknown data source key"})),
        )
            .into_response();
    }
    f.published.lock().unwrap().push((ds_key(&h), b.clone()));
    match b["bartName"].as_str() {
        Some("rejected") => (
            AxStatus::BAD_REQUEST,
            Json(
                json!({"PublishBARData": {"statusCode": 400, "message": "column Qty is missing"}}),
            ),
        )
            .into_response(),
        Some("late") => Json(json!({"PublishBARData": {
            "statusCode": 409, "message": "the reporting period is closed"}}))
        .into_response(),
        _ => Json(json!({"PublishBARData": {"statusCode": 200, "id": 991}})).into_response(),
    }
}

async fn ws_route(
    State(f): State<Shared>,
    Path(segment): Path<String>,
    up: WebSocketUpgrade,
) -> Response {
    if segment != format!("fid-{FID}") {
        return (AxStatus::UNAUTHORIZED, "unknown fid").into_response();
    }
    up.on_upgrade(move |ws| serve_ws(f, ws))
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn serve_ws(f: Shared, mut ws: WebSocket) {
    let conn = {
        let acks = f.acks.lock().unwrap();
        acks.len()
    };
    let hello =
        json!({"SetOrg": {"mid": format!("hs-{conn}"), "script": "select an organisation"}});
    if ws.send(text(hello)).await.is_err() {
        return;
    }
    let Some(Ok(Message::Text(ack))) = ws.recv().await else {
        return;
    };
    f.acks
        .lock()
        .unwrap()
        .push(serde_json::from_str(ack.as_str()).unwrap());
    while let Some(Ok(m)) = ws.recv().await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        let (op, body) = v.as_object().unwrap().iter().next().unwrap();
        let (op, body) = (op.clone(), body.clone());
        f.requests.lock().unwrap().push((conn, v.clone()));
        if f.drop_on.lock().unwrap().as_deref() == Some(op.as_str()) {
            // Gone mid-request: the request was received and will never be answered.
            return;
        }
        if f.hang_on.lock().unwrap().as_deref() == Some(op.as_str()) {
            continue;
        }
        let mid = body["mid"].clone();
        // Chatter the client must ignore: no mid, and a mid nobody asked for.
        let _ = ws
            .send(text(json!({"Notice": {"text": "working on it"}})))
            .await;
        let _ = ws
            .send(text(
                json!({"Notice": {"mid": "no-such-request", "status": "ok"}}),
            ))
            .await;
        let answer = if f.failing.lock().unwrap().contains(&op) {
            json!({&op: {"mid": mid, "status": "error", "message": format!("platform says no to {op}")}})
        } else {
            json!({&op: answer(&f, &op, &body)})
        };
        let mut answer = answer;
        answer[&op]["mid"] = mid;
        if ws.send(text(answer)).await.is_err() {
            return;
        }
    }
}

/// A successful answer's body for one request.
fn answer(f: &Fake, op: &str, body: &Value) -> Value {
    match op {
        "UploadBase64Imp" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body["content"].as_str().unwrap())
                .unwrap();
            f.uploads.lock().unwrap().push(bytes);
            json!({"status": "Success", "Message": {
                "FilePath": format!("/imports/{}", body["fileName"].as_str().unwrap())}})
        }
        "GetOrgs" => json!({"status": "success", "Message": [
            {"id": 7, "name": "Acme 2"}, {"id": 3, "name": "Acme"}, {"id": 9, "name": "Beta"}]}),
        "PyRequest" if body["app"] == "etx_batch" => {
            let input = &body["value"]["Input"];
            let total = u64::from(f.import_rows.load(Ordering::SeqCst));
            let offset = input["offset"].as_u64().unwrap();
            let rows = input["nrows"]
                .as_u64()
                .unwrap()
                .min(total.saturating_sub(offset));
            json!({"status": "ok", "Message": {"rows": rows, "total": total}})
        }
        _ => json!({"status": true, "Message": {"done": op}}),
    }
}

/// Starts the fake; its base URL (HTTP and WebSocket on one port).
async fn fake_platform() -> (String, Shared) {
    let fake: Shared = Arc::default();
    *fake.sources.lock().unwrap() = json!([
        {"EsSID": 1, "EsFullName": "Acme/Plant North/Source 1"},
        {"EsSID": 10, "EsFullName": "Acme/Plant North/Source 10"},
        {"EsSID": "es-20", "EsFullName": "Acme/Plant South/Boiler"},
        {"EsSID": "es-21", "EsFullName": "Acme / Plant South / Boiler"},
        {"EsSID": 30, "EsFullName": "Other/Plant North/Source 1"},
    ]);
    fake.import_rows.store(1200, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/fid-auth", axum::routing::post(fid_auth))
        .route("/ctx/v1/GetAllESs", axum::routing::get(get_all_ess))
        .route("/ctx/v1/PublishBARData", axum::routing::post(publish))
        .route("/ws/{segment}", axum::routing::get(ws_route))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{}", addr.port()), fake)
}

fn settings(addr: &str) -> PlatformSettings {
    PlatformSettings {
        http_uri: format!("http://{addr}"),
        ws_uri: format!("ws://{addr}/ws"),
        api_version: "ctx/v1".into(),
        email: EMAIL.into(),
        password: SECRET_PASSWORD.into(),
        ds_key: DS_KEY.into(),
    }
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(5),
        attempts: 3,
        first_backoff: Duration::from_millis(20),
    }
}

fn platform(addr: &str) -> Platform {
    Platform::new(settings(addr), quick()).unwrap()
}

#[tokio::test]
async fn platform_login_gives_a_fid_and_refused_credentials_are_not_retried() {
    let (addr, fake) = fake_platform().await;
    assert_eq!(platform(&addr).login().await.unwrap(), FID);
    let mut s = settings(&addr);
    s.password = "wrong".into();
    let e = Platform::new(s, quick())
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert_eq!(e, PlatformError::Refused);
    assert_eq!(e.to_string(), "the platform refused the credentials");
    assert!(!e.is_transient());
    // One good login, one refused: the refusal was not tried again.
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2);
    // Nothing listening: a transient error naming what failed, after every attempt.
    let s = settings(&format!("127.0.0.1:{}", closed_port()));
    let e = Platform::new(s, quick())
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert!(matches!(e, PlatformError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn platform_server_errors_are_retried_until_the_attempts_run_out() {
    let (addr, fake) = fake_platform().await;
    fake.get_all_failures.store(1, Ordering::SeqCst);
    let sources = platform(&addr).emission_sources().await.unwrap();
    assert_eq!(sources.len(), 5);
    assert_eq!(
        fake.get_all_calls.load(Ordering::SeqCst),
        2,
        "500 once, then success"
    );
    assert_eq!(sources[0].id, EsId(json!(1)));
    assert_eq!(sources[2].id.to_string(), "es-20");

    fake.get_all_calls.store(0, Ordering::SeqCst);
    fake.get_all_failures.store(10, Ordering::SeqCst);
    let e = platform(&addr).emission_sources().await.unwrap_err();
    assert_eq!(fake.get_all_calls.load(Ordering::SeqCst), 3);
    match &e {
        PlatformError::Unavailable {
            status, message, ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(message, "upstream hiccup");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_transient());

    // A wrong data source key is a 403: refused at once, not retried.
    fake.get_all_calls.store(0, Ordering::SeqCst);
    let mut s = settings(&addr);
    s.ds_key = "WRONG".into();
    let e = Platform::new(s, quick())
        .unwrap()
        .emission_sources()
        .await
        .unwrap_err();
    assert_eq!(fake.get_all_calls.load(Ordering::SeqCst), 1);
    assert!(
        e.to_string().contains("unknown data source key") && !e.is_transient(),
        "{e}"
    );
}

#[tokio::test]
async fn platform_calls_time_out_instead_of_hanging() {
    let (addr, fake) = fake_platform().await;
    *fake.get_all_delay.lock().unwrap() = Some(Duration::from_secs(3));
    let t = Timeouts {
        request: Duration::from_millis(300),
        attempts: 2,
        ..quick()
    };
    let started = Instant::now();
    let e = Platform::new(settings(&addr), t)
        .unwrap()
        .emission_sources()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, PlatformError::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the platform did not answer GetAllESs within 300 ms"
    );
    assert!(e.is_transient());
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert_eq!(
        fake.get_all_calls.load(Ordering::SeqCst),
        2,
        "timed out twice"
    );
}

#[tokio::test]
async fn platform_groups_publish_to_exactly_their_source() {
    let (addr, fake) = fake_platform().await;
    let p = platform(&addr);
    let sources = p.emission_sources().await.unwrap();
    let one = p
        .publish_group(
            "Acme : Plant North : Source 1",
            "Acme - Source 1",
            "a,b\n1,2\n",
            &sources,
        )
        .await;
    assert_eq!(
        one,
        PublishOutcome::Published {
            es_id: EsId(json!(1))
        }
    );
    let ten = p
        .publish_group(
            "Acme : Plant North : Source 10",
            "Acme - Source 10",
            "a\n007\n",
            &sources,
        )
        .await;
    assert_eq!(
        ten,
        PublishOutcome::Published {
            es_id: EsId(json!(10))
        }
    );
    assert_eq!(
        p.publish_group("Acme : Plant North : Source 2", "x", "a\n", &sources)
            .await,
        PublishOutcome::NoMatchingSource
    );
    assert_eq!(
        p.publish_group("Plant North : Source 1", "x", "a\n", &sources)
            .await,
        PublishOutcome::NoMatchingSource,
        "a suffix of a path is not a match"
    );
    match p
        .publish_group("Acme : Plant South : Boiler", "x", "a\n", &sources)
        .await
    {
        PublishOutcome::Ambiguous { candidates } => {
            let ids: Vec<String> = candidates.iter().map(|c| c.id.to_string()).collect();
            assert_eq!(ids, ["es-20", "es-21"]);
        }
        other => panic!("{other:?}"),
    }
    // Only the two matches reached the platform, each with its key, id, name and CSV as is.
    let published = fake.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].0, DS_KEY);
    assert_eq!(
        published[0].1,
        json!({"esId": 1, "bartName": "Acme - Source 1", "data": {"csv": "a,b\n1,2\n"}})
    );
    assert_eq!(
        published[1].1,
        json!({"esId": 10, "bartName": "Acme - Source 10", "data": {"csv": "a\n007\n"}})
    );
}

#[tokio::test]
async fn platform_publish_refusals_fail_the_group_with_the_platform_message() {
    let (addr, fake) = fake_platform().await;
    let p = platform(&addr);
    let sources = vec![EmissionSource {
        id: EsId(json!("es-5")),
        full_name: "Acme/Boiler".into(),
    }];
    match p
        .publish_group("Acme : Boiler", "rejected", "a\n", &sources)
        .await
    {
        PublishOutcome::Failed { message, transient } => {
            assert!(message.contains("column Qty is missing"), "{message}");
            assert!(message.contains("400"), "{message}");
            assert!(!transient);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.publish_calls.load(Ordering::SeqCst),
        1,
        "a 400 is not retried"
    );
    // HTTP 200, but the answer's statusCode says no.
    let e = p
        .publish_bar(&EsId(json!("es-5")), "late", "a\n")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the platform reported a failure for PublishBARData: status 409: the reporting period is closed"
    );
    assert!(
        p.publish_bar(&EsId(json!("es-5")), "fine", "a\n")
            .await
            .is_ok()
    );
}

fn requests_of(fake: &Fake, op: &str) -> Vec<Value> {
    fake.requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, v)| v.get(op).cloned())
        .collect()
}

#[tokio::test]
async fn platform_websocket_operations_send_their_shapes_and_read_their_answers() {
    let (addr, fake) = fake_platform().await;
    let session = platform(&addr).connect().await.unwrap();

    // Upload: the bytes decode back to the file, across several read chunks.
    let dir = std::env::temp_dir().join(format!("etx-platform-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("es data.csv");
    let bytes: Vec<u8> = (0..700_001u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let path = session.upload_file(&file, "es data.csv").await.unwrap();
    assert_eq!(path, "/imports/es data.csv");
    // The handshake came first (the fake reads in order): the SetOrg script message was
    // acknowledged echoing its mid.
    assert_eq!(
        fake.acks.lock().unwrap().clone(),
        [json!({"SetOrg": {"mid": "hs-0"}})]
    );
    assert_eq!(fake.uploads.lock().unwrap()[0], bytes);
    let up = &requests_of(&fake, "UploadBase64Imp")[0];
    assert_eq!(up["fileName"], "es data.csv");
    std::fs::remove_dir_all(&dir).unwrap();

    // The ES data import pages through the file with progress after each page.
    let mut progress = Vec::new();
    let rows = session
        .import_es_data(&path, 500, |done, total| progress.push((done, total)))
        .await
        .unwrap();
    assert_eq!(rows, 1200);
    assert_eq!(
        progress,
        [(500, Some(1200)), (1000, Some(1200)), (1200, Some(1200))]
    );
    let pages = requests_of(&fake, "PyRequest");
    assert_eq!(pages.len(), 3);
    for (page, offset) in pages.iter().zip([0, 500, 1000]) {
        assert_eq!(page["app"], "etx_batch");
        assert_eq!(
            page["value"]["Input"],
            json!({"action": "es_data_importer", "data_file_path": "/imports/es data.csv",
                   "offset": offset, "nrows": 500, "tracking": true})
        );
    }

    // The organisation is picked by its exact name ("Acme", not "Acme 2"), then set.
    assert_eq!(session.select_org("Acme").await.unwrap(), json!(3));
    let set = requests_of(&fake, "SetOrg");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["id"], 3);
    let e = session.select_org("Acm").await.unwrap_err();
    assert!(matches!(e, PlatformError::NotFound(_)), "{e:?}");
    assert_eq!(
        requests_of(&fake, "SetOrg").len(),
        1,
        "no SetOrg for a missing org"
    );

    session
        .create_org_structure("org,parent\nAcme,\nNorth,Acme\n")
        .await
        .unwrap();
    assert_eq!(
        requests_of(&fake, "CreateOrgStructureFromCsv")[0]["data"],
        "org,parent\nAcme,\nNorth,Acme\n"
    );
    session.create_tenant_account("Acme Tenant").await.unwrap();
    let t = &requests_of(&fake, "CreateTenantAccount")[0];
    assert_eq!(t["Name"], "Acme Tenant");
    assert_eq!(t["AutoCreateDatabase"], true);
    session
        .scheme_up_organization(json!({"orgName": "Acme"}))
        .await
        .unwrap();
    let py = requests_of(&fake, "PyRequest");
    let scheme = py.last().unwrap();
    assert_eq!(scheme["app"], "genie_scheme_coordinator_app");
    assert_eq!(
        scheme["value"]["Input"],
        json!({"action": "scheme_up_organization", "orgName": "Acme"})
    );
    session
        .set_version("2.4.0", "2026-12-01", "December release")
        .await
        .unwrap();
    let v = &requests_of(&fake, "SetVersion")[0];
    assert_eq!(
        (&v["etxVersion"], &v["releaseDate"], &v["description"]),
        (
            &json!("2.4.0"),
            &json!("2026-12-01"),
            &json!("December release")
        )
    );

    // Every request had its own mid.
    let all = fake.requests.lock().unwrap().clone();
    let mids: HashSet<String> = all
        .iter()
        .map(|(_, v)| {
            v.as_object().unwrap().values().next().unwrap()["mid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(mids.len(), all.len());
    assert_eq!(
        fake.acks.lock().unwrap().len(),
        1,
        "one connection for all of it"
    );
}

#[tokio::test]
async fn platform_websocket_failures_carry_the_platform_message() {
    let (addr, fake) = fake_platform().await;
    let session = platform(&addr).connect().await.unwrap();
    *fake.failing.lock().unwrap() = [
        "UploadBase64Imp",
        "PyRequest",
        "GetOrgs",
        "SetOrg",
        "CreateOrgStructureFromCsv",
        "CreateTenantAccount",
        "SetVersion",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let file = std::env::temp_dir().join(format!("etx-platform-{}.csv", uuid::Uuid::now_v7()));
    std::fs::write(&file, b"a\n1\n").unwrap();
    let results = [
        (
            "UploadBase64Imp",
            session.upload_file(&file, "a.csv").await.err(),
        ),
        (
            "PyRequest",
            session.import_es_data("/x", 10, |_, _| {}).await.err(),
        ),
        ("GetOrgs", session.select_org("Acme").await.err()),
        ("SetOrg", session.set_org(&json!(3)).await.err()),
        (
            "CreateOrgStructureFromCsv",
            session.create_org_structure("a\n").await.err(),
        ),
        (
            "CreateTenantAccount",
            session.create_tenant_account("T").await.err(),
        ),
        (
            "PyRequest",
            session.scheme_up_organization(json!({})).await.err(),
        ),
        (
            "SetVersion",
            session.set_version("1", "2026-01-01", "d").await.err(),
        ),
    ];
    std::fs::remove_file(&file).unwrap();
    for (op, e) in results {
        let e = e.unwrap_or_else(|| panic!("{op} succeeded"));
        assert!(matches!(e, PlatformError::Failed { .. }), "{op}: {e:?}");
        assert!(
            e.to_string()
                .ends_with(&format!("platform says no to {op}")),
            "{op}: {e}"
        );
        assert!(!e.is_transient());
    }
}

#[tokio::test]
async fn platform_dropped_websocket_fails_the_waiting_call_and_reconnects_once() {
    let (addr, fake) = fake_platform().await;
    let t = Timeouts {
        request: Duration::from_secs(20),
        ..quick()
    };
    let session = Platform::new(settings(&addr), t)
        .unwrap()
        .connect()
        .await
        .unwrap();
    session.select_org("Acme").await.unwrap();
    *fake.drop_on.lock().unwrap() = Some("SetVersion".into());
    let started = Instant::now();
    let e = session
        .set_version("1", "2026-01-01", "d")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed at once, not after the 20 s timeout"
    );
    assert!(matches!(e, PlatformError::Disconnected { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("SetVersion"), "{e}");

    // The next call re-makes the connection, organisation included, and works.
    session.create_tenant_account("T").await.unwrap();
    assert_eq!(fake.acks.lock().unwrap().len(), 2);
    let second: Vec<Value> = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        second[0]["SetOrg"]["id"], 3,
        "the organisation chosen again"
    );
    assert!(second[1].get("CreateTenantAccount").is_some());

    // A second drop is final for this session.
    let e = session
        .set_version("1", "2026-01-01", "d")
        .await
        .unwrap_err();
    assert!(matches!(e, PlatformError::Disconnected { .. }), "{e:?}");
    let e = session.create_tenant_account("T").await.unwrap_err();
    assert!(e.to_string().contains("re-made once"), "{e}");
    assert_eq!(fake.acks.lock().unwrap().len(), 2, "no third connection");
}

#[tokio::test]
async fn platform_websocket_request_without_an_answer_times_out() {
    let (addr, fake) = fake_platform().await;
    let t = Timeouts {
        request: Duration::from_millis(300),
        ..quick()
    };
    let session = Platform::new(settings(&addr), t)
        .unwrap()
        .connect()
        .await
        .unwrap();
    *fake.hang_on.lock().unwrap() = Some("SetVersion".into());
    let started = Instant::now();
    let e = session
        .set_version("1", "2026-01-01", "d")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        e.to_string(),
        "the platform did not answer SetVersion within 300 ms"
    );
    assert!(e.is_transient());
    // The connection is still good for the next request.
    session.create_tenant_account("T").await.unwrap();
    assert_eq!(fake.acks.lock().unwrap().len(), 1);
}

// ---- /api/etx/config ----

fn config_body(addr: &str) -> Value {
    json!({
        "http_uri": format!("http://{addr}/"),
        "ws_uri": format!("ws://{addr}/ws"),
        "email": EMAIL,
        "password": SECRET_PASSWORD,
        "ds_key": DS_KEY,
    })
}

async fn view(app: &TestApp, u: &TestUser) -> Value {
    let r = app.get("/api/etx/config", Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Audit records matching `cond`, moved into the chained log or not yet.
async fn audited(app: &TestApp, cond: &str) -> i64 {
    app.count(&format!(
        "SELECT (SELECT COUNT(*) FROM audit_outbox WHERE {cond}) + \
         (SELECT COUNT(*) FROM audit_log WHERE {cond})"
    ))
    .await
}

async fn core_settings(app: &TestApp, u: &TestUser) -> Option<PlatformSettings> {
    let user = app.state.db.user_by_id(&u.id).await.unwrap().unwrap();
    etx_core::processing::platform::settings::settings(&app.state, &user)
        .await
        .unwrap()
}

#[tokio::test]
async fn platform_settings_are_sealed_at_rest_and_never_shown() {
    use secrecy::ExposeSecret;
    let (addr, fake) = fake_platform().await;
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    assert_eq!(view(&app, &alice).await["configured"], false);

    let r = app
        .put("/api/etx/config", config_body(&addr), Some(&alice.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let shown = r.text().await.unwrap();
    let got = view(&app, &alice).await;
    for text in [shown.as_str(), &got.to_string()] {
        assert!(
            !text.contains(SECRET_PASSWORD) && !text.contains(DS_KEY),
            "{text}"
        );
    }
    assert_eq!(got["configured"], true);
    assert_eq!(got["http_uri"], format!("http://{addr}"));
    assert_eq!(got["ws_uri"], format!("ws://{addr}/ws"));
    assert_eq!(got["api_version"], "ctx/v1");
    assert_eq!(got["email"], EMAIL);
    assert_eq!(
        (&got["password_set"], &got["ds_key_set"]),
        (&json!(true), &json!(true))
    );

    // The stored row holds neither secret in the clear, in any column.
    let row = app
        .state
        .db
        .platform_settings(app.state.db.conn(), &alice.id)
        .await
        .unwrap()
        .unwrap();
    let raw = format!("{row:?}");
    assert!(row.secrets.starts_with("v1."), "{}", row.secrets);
    assert!(
        !raw.contains(SECRET_PASSWORD) && !raw.contains(DS_KEY),
        "{raw}"
    );
    // Nor the audit trail.
    let leaked = audited(
        &app,
        &format!("details LIKE '%{SECRET_PASSWORD}%' OR details LIKE '%{DS_KEY}%'"),
    )
    .await;
    assert_eq!(leaked, 0);

    // Another user sees nothing of it.
    assert_eq!(view(&app, &bob).await["configured"], false);
    assert!(core_settings(&app, &bob).await.is_none());

    // A sealed value copied to another user's row does not open.
    app.exec(&format!(
        "INSERT INTO platform_settings (user_id, http_uri, ws_uri, api_version, email, secrets, \
         created_at, updated_at) VALUES ('{}', 'http://x', 'ws://x', 'ctx/v1', 'e', '{}', 1, 1)",
        bob.id, row.secrets
    ))
    .await;
    let bob_row = app.state.db.user_by_id(&bob.id).await.unwrap().unwrap();
    assert!(
        etx_core::processing::platform::settings::settings(&app.state, &bob_row)
            .await
            .is_err()
    );

    // Decrypted for the connector, they work against the platform.
    let s = core_settings(&app, &alice).await.unwrap();
    assert_eq!(s.password.expose_secret(), SECRET_PASSWORD);
    assert_eq!(s.ds_key.expose_secret(), DS_KEY);
    let user = app.state.db.user_by_id(&alice.id).await.unwrap().unwrap();
    let p = etx_core::processing::platform::for_user(&app.state, &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.timeouts().request,
        Duration::from_secs(30),
        "from the configuration"
    );
    assert_eq!(p.emission_sources().await.unwrap().len(), 5);
    p.connect().await.unwrap();
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1);

    // Saving without the password keeps it; a new key replaces the old one.
    let r = app
        .put(
            "/api/etx/config",
            json!({"http_uri": format!("http://{addr}"), "ws_uri": format!("ws://{addr}/ws"),
                   "api_version": "ctx/v2", "email": "new@acme.example", "ds_key": "NEW-KEY"}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = core_settings(&app, &alice).await.unwrap();
    assert_eq!(s.password.expose_secret(), SECRET_PASSWORD);
    assert_eq!(s.ds_key.expose_secret(), "NEW-KEY");
    assert_eq!(
        (s.api_version.as_str(), s.email.as_str()),
        ("ctx/v2", "new@acme.example")
    );
    assert_eq!(audited(&app, "action = 'etx.config_update'").await, 2);

    let r = app.delete("/api/etx/config", Some(&alice.token)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(view(&app, &alice).await["configured"], false);
    assert!(core_settings(&app, &alice).await.is_none());
    let (s, code, _) = error_code(app.delete("/api/etx/config", Some(&alice.token)).await).await;
    assert_eq!((s, code.as_str()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    assert_eq!(audited(&app, "action = 'etx.config_delete'").await, 1);
}

#[tokio::test]
async fn platform_settings_bad_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let u = app.register("carol").await;
    let addr = "platform.example.com";
    // The first save needs the password and the key.
    let mut first = config_body(addr);
    first.as_object_mut().unwrap().remove("password");
    first.as_object_mut().unwrap().remove("ds_key");
    let (s, code, body) = error_code(app.put("/api/etx/config", first, Some(&u.token)).await).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    assert_eq!(body["error"]["fields"]["password"], "is required");
    assert_eq!(body["error"]["fields"]["ds_key"], "is required");
    assert_eq!(view(&app, &u).await["configured"], false);

    let r = app
        .put("/api/etx/config", config_body(addr), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let before = view(&app, &u).await;
    let bad = [
        ("http_uri", json!("ftp://platform.example.com")),
        ("http_uri", json!("not a url")),
        ("http_uri", json!("https://user:pw@platform.example.com")),
        ("ws_uri", json!("https://platform.example.com")),
        (
            "ws_uri",
            json!(format!("wss://platform.example.com/{}", "a".repeat(2100))),
        ),
        ("email", json!("   ")),
        ("api_version", json!("ctx/../v1")),
        ("password", json!("")),
        ("ds_key", json!("two words")),
    ];
    for (field, value) in bad {
        let mut b = config_body(addr);
        b["email"] = json!("changed@acme.example");
        b[field] = value.clone();
        let (s, code, body) = error_code(app.put("/api/etx/config", b, Some(&u.token)).await).await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            "{field} = {value}"
        );
        assert!(
            body["error"]["fields"][field].is_string(),
            "{field}: {body}"
        );
        assert_eq!(view(&app, &u).await, before, "{field} changed nothing");
    }
    // Pointing the stored secrets at another address needs them entered again.
    for (field, value) in [
        ("http_uri", "https://elsewhere.example.net"),
        ("ws_uri", "wss://elsewhere.example.net/ws"),
    ] {
        let mut b = config_body(addr);
        b[field] = json!(value);
        b.as_object_mut().unwrap().remove("password");
        let (s, _, body) = error_code(app.put("/api/etx/config", b, Some(&u.token)).await).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert_eq!(
            body["error"]["fields"]["password"],
            "is required when the platform's address changes"
        );
        assert_eq!(view(&app, &u).await, before, "{field} changed nothing");
    }
    // Unknown fields and missing ones are refused the same way.
    let mut b = config_body(addr);
    b["role"] = json!("admin");
    let (s, _, _) = error_code(app.put("/api/etx/config", b, Some(&u.token)).await).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, _) = error_code(
        app.put("/api/etx/config", json!({"email": "x"}), Some(&u.token))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(view(&app, &u).await, before);
    assert_eq!(audited(&app, "action = 'etx.config_update'").await, 1);

    // Signed out: nothing.
    let r = app.get("/api/etx/config", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A cookie session must send the CSRF token to change them.
    let cookie = format!("access_token={}; csrf_token={}", u.token, u.csrf);
    let r = app
        .client
        .delete(app.url("/api/etx/config"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "CSRF_TOKEN_MISSING");
    assert_eq!(view(&app, &u).await, before);
    let r = app
        .client
        .delete(app.url("/api/etx/config"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &u.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

// ---- BAR grouping delivered to the platform ----

#[tokio::test]
async fn a_bar_grouping_publishes_each_group_to_its_emission_source_and_reports_the_rest() {
    let (addr, fake) = fake_platform().await;
    let app = TestApp::spawn().await;
    let u = app.register("publisher").await;
    let r = app
        .put("/api/etx/config", config_body(&addr), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let good = "orgFullName,emissionSourceName,qty\n\
        Acme : Plant North,Source 10,0878036\n\
        Acme : Plant North,Source 1,1e5\n\
        Acme : Plant North,Source 1,\"a,b\"\n";
    let mixed = "orgFullName,emissionSourceName,qty\n\
        Acme : Plant South,Boiler,1\n\
        Acme : Plant West,Kiln,2\n";
    let r = app
        .upload(
            &u,
            None,
            &[
                ("bar/good.csv", good.as_bytes()),
                ("bar/mixed.csv", mixed.as_bytes()),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let folder = crate::files::id_of(&app.listing(&u, None).await, "bar");
    let job: Value = app
        .start_job(&u, "bar_grouping", &folder)
        .await
        .json()
        .await
        .unwrap();
    let done = app.ended_job(&u, job["id"].as_str().unwrap()).await;
    let j = &done["job"];
    assert_eq!(j["status"], "failed", "{done}");
    assert_eq!(
        j["message"],
        "1 of 2 files failed: mixed.csv: 2 of 2 groups were not published: 1 without a \
         matching emission source, 1 matching several emission sources"
    );
    let steps: Vec<(String, String, String)> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["input"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("group", "good.csv", "succeeded"),
        ("publish", "good.csv", "succeeded"),
        ("group", "mixed.csv", "succeeded"),
        ("publish", "mixed.csv", "failed"),
    ];
    assert_eq!(
        steps,
        expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
    let publish_good = &done["steps"][1]["detail"];
    assert_eq!(publish_good["published"], 2);
    let publish_mixed = &done["steps"][3]["detail"];
    assert_eq!(publish_mixed["no_matching_source"], 1);
    assert_eq!(publish_mixed["ambiguous"], 1);
    let outcomes = publish_mixed["outcomes"].as_array().unwrap();
    assert_eq!(outcomes[0]["key"], "Acme : Plant South : Boiler");
    assert_eq!(outcomes[0]["outcome"], "ambiguous");
    assert_eq!(outcomes[1]["outcome"], "no_matching_source");

    // Exactly the two matching groups reached the platform, each to its own source (never
    // `Source 1` for `Source 10`), with the group's CSV as written and the file's base name.
    let published = fake.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2, "{published:?}");
    for (key, body) in &published {
        assert_eq!(key, DS_KEY);
        let bart = body["bartName"].as_str().unwrap();
        assert!(!bart.ends_with(".csv"), "{bart}");
        match body["esId"].as_i64() {
            Some(1) => {
                assert!(
                    bart.contains("Source_1") && !bart.contains("Source_10"),
                    "{bart}"
                );
                assert_eq!(body["data"]["csv"], "qty\n1e5\n\"a,b\"\n");
            }
            Some(10) => {
                assert!(bart.contains("Source_10"), "{bart}");
                assert_eq!(body["data"]["csv"], "qty\n0878036\n");
            }
            other => panic!("published to {other:?}: {body}"),
        }
    }
    // The job logged in and opened the platform WebSocket once for both files.
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1);
    assert_eq!(fake.acks.lock().unwrap().len(), 1);
    // The groups stay in the workspace as files too.
    let out = crate::files::id_of(&app.listing(&u, None).await, "bar BAR groups");
    assert_eq!(
        crate::files::names(&app.listing(&u, Some(&out)).await),
        vec!["good", "mixed"]
    );
}

#[tokio::test]
async fn a_platform_that_refuses_the_login_fails_the_publish_steps_with_its_reason() {
    let (addr, _fake) = fake_platform().await;
    let app = TestApp::spawn().await;
    let u = app.register("refused").await;
    let mut body = config_body(&addr);
    body["password"] = json!("not-the-password");
    assert_eq!(
        app.put("/api/etx/config", body, Some(&u.token))
            .await
            .status(),
        StatusCode::OK
    );
    let csv = "orgFullName,emissionSourceName,qty\nAcme : Plant North,Source 1,5\n";
    app.upload(&u, None, &[("one.csv", csv.as_bytes())]).await;
    let input = crate::files::id_of(&app.listing(&u, None).await, "one.csv");
    let job: Value = app
        .start_job(&u, "bar_grouping", &input)
        .await
        .json()
        .await
        .unwrap();
    let done = app.ended_job(&u, job["id"].as_str().unwrap()).await;
    assert_eq!(done["job"]["status"], "failed", "{done}");
    let publish = &done["steps"][1];
    assert_eq!(publish["name"], "publish");
    assert_eq!(publish["status"], "failed");
    let error = publish["error"].as_str().unwrap();
    assert!(
        error.starts_with("the ETX platform could not be reached"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");
}

// ---- The platform's operations as jobs ----

fn step_names(done: &Value) -> Vec<(String, String)> {
    done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn run_job(app: &TestApp, u: &TestUser, body: Value) -> Value {
    let r = app.post("/api/jobs", body, Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    app.ended_job(u, job["id"].as_str().unwrap()).await
}

#[tokio::test]
async fn platform_jobs_upload_and_import_a_file_and_build_an_org_structure_in_a_tenant() {
    let (addr, fake) = fake_platform().await;
    let app = TestApp::spawn().await;
    let u = app.register("importer").await;
    // Without settings a platform job is refused before it is queued.
    app.upload(
        &u,
        None,
        &[
            ("data.csv", b"es,value\nA,1\n"),
            ("org.csv", b"path\nAcme/North\n"),
        ],
    )
    .await;
    let top = app.listing(&u, None).await;
    let (data, org) = (
        crate::files::id_of(&top, "data.csv"),
        crate::files::id_of(&top, "org.csv"),
    );
    let (s, _, body) = error_code(
        app.post(
            "/api/jobs",
            json!({"kind": "es_data_import", "input_id": data}),
            Some(&u.token),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["kind"]
            .as_str()
            .unwrap()
            .contains("settings"),
        "{body}"
    );
    app.put("/api/etx/config", config_body(&addr), Some(&u.token))
        .await;

    let done = run_job(
        &app,
        &u,
        json!({"kind": "es_data_import", "input_id": data, "params": {"page_rows": 500}}),
    )
    .await;
    assert_eq!(done["job"]["status"], "completed", "{done}");
    assert_eq!(done["job"]["message"], "1200 rows of data.csv imported");
    assert_eq!(
        step_names(&done),
        pairs(&[
            ("connect", "succeeded"),
            ("upload", "succeeded"),
            ("import", "succeeded")
        ])
    );
    assert_eq!(done["steps"][1]["detail"]["file_path"], "/imports/data.csv");
    assert_eq!(done["steps"][2]["detail"]["rows"], 1200);
    assert_eq!(fake.uploads.lock().unwrap()[0], b"es,value\nA,1\n");
    let offsets: Vec<u64> = requests_of(&fake, "PyRequest")
        .iter()
        .map(|r| r["value"]["Input"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![0, 500, 1000]);

    let done = run_job(
        &app,
        &u,
        json!({"kind": "org_structure", "input_id": org, "params": {"tenant": "Acme"}}),
    )
    .await;
    assert_eq!(done["job"]["status"], "completed", "{done}");
    assert_eq!(
        step_names(&done),
        pairs(&[
            ("connect", "succeeded"),
            ("select tenant", "succeeded"),
            ("create org structure", "succeeded")
        ])
    );
    // `Acme`, not `Acme 2`: the tenant whose name is exactly the one asked for.
    assert_eq!(done["steps"][1]["detail"]["org_id"], 3);
    assert_eq!(requests_of(&fake, "SetOrg")[0]["id"], 3);
    assert_eq!(
        requests_of(&fake, "CreateOrgStructureFromCsv")[0]["data"],
        "path\nAcme/North\n"
    );

    // A tenant that does not exist fails its step, and nothing is created.
    let done = run_job(
        &app,
        &u,
        json!({"kind": "org_structure", "input_id": org, "params": {"tenant": "Gamma"}}),
    )
    .await;
    assert_eq!(done["job"]["status"], "failed");
    assert_eq!(
        step_names(&done),
        pairs(&[("connect", "succeeded"), ("select tenant", "failed")])
    );
    assert_eq!(requests_of(&fake, "CreateOrgStructureFromCsv").len(), 1);
}

#[tokio::test]
async fn staff_platform_jobs_need_an_admin_and_fail_with_the_platforms_message() {
    let (addr, fake) = fake_platform().await;
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("chief", "admin").await;
    let user = app.register("plain").await;
    for u in [&admin, &user] {
        app.put("/api/etx/config", config_body(&addr), Some(&u.token))
            .await;
    }
    let tenant = json!({"kind": "create_tenant", "params": {"name": "Tenant One"}});
    let (s, _, _) = error_code(
        app.post("/api/jobs", tenant.clone(), Some(&user.token))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bad parameters are named, and nothing is queued.
    for (body, field) in [
        (
            json!({"kind": "create_tenant", "params": {}}),
            "params.name",
        ),
        (
            json!({"kind": "set_version", "params": {"etx_version": "2.1", "release_date": "31/12/2026", "description": "x"}}),
            "params.release_date",
        ),
        (
            json!({"kind": "scheme_generation", "params": [1]}),
            "params",
        ),
        (
            json!({"kind": "create_tenant", "input_id": "x", "params": {"name": "T"}}),
            "input_id",
        ),
    ] {
        let (s, _, b) = error_code(app.post("/api/jobs", body, Some(&admin.token)).await).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert!(b["error"]["fields"][field].is_string(), "{field}: {b}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);

    let done = run_job(&app, &admin, tenant.clone()).await;
    assert_eq!(done["job"]["status"], "completed", "{done}");
    assert_eq!(
        requests_of(&fake, "CreateTenantAccount")[0],
        json!({"mid": requests_of(&fake, "CreateTenantAccount")[0]["mid"], "Name": "Tenant One", "AutoCreateDatabase": true})
    );
    let done = run_job(
        &app,
        &admin,
        json!({"kind": "set_version", "params": {"etx_version": "2.1.0", "release_date": "2026-12-04", "description": "BAR delivery"}}),
    )
    .await;
    assert_eq!(done["job"]["status"], "completed", "{done}");
    let v = &requests_of(&fake, "SetVersion")[0];
    assert_eq!(
        (v["etxVersion"].as_str(), v["releaseDate"].as_str()),
        (Some("2.1.0"), Some("2026-12-04"))
    );
    let done = run_job(
        &app,
        &user,
        json!({"kind": "scheme_generation", "params": {"org": "Acme"}}),
    )
    .await;
    assert_eq!(done["job"]["status"], "completed", "{done}");

    // The platform says no: the step fails with its message, never "success".
    fake.failing
        .lock()
        .unwrap()
        .insert("CreateTenantAccount".into());
    let done = run_job(&app, &admin, tenant).await;
    assert_eq!(done["job"]["status"], "failed");
    assert_eq!(
        done["job"]["message"],
        "create tenant failed: the platform reported a failure for CreateTenantAccount: \
         platform says no to CreateTenantAccount"
    );
    assert_eq!(done["steps"][1]["status"], "failed");
    assert_eq!(
        done["steps"][1]["error"],
        "the platform reported a failure for CreateTenantAccount: platform says no to \
         CreateTenantAccount"
    );
}
