//! The file workspace through the API: folder uploads keeping their tree, sniffed types,
//! ranged downloads, privacy, the quota, names, moves and recursive deletes, on whichever
//! database the suite runs against.

use crate::support::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn form(files: &[(&str, &[u8])]) -> Form {
    files.iter().fold(Form::new(), |f, (name, data)| {
        f.part(
            "file",
            Part::bytes(data.to_vec()).file_name(name.to_string()),
        )
    })
}

impl TestApp {
    pub(crate) async fn upload(
        &self,
        u: &TestUser,
        folder: Option<&str>,
        files: &[(&str, &[u8])],
    ) -> reqwest::Response {
        let path = match folder {
            Some(f) => format!("/api/files?folder_id={f}"),
            None => "/api/files".into(),
        };
        self.client
            .post(self.url(&path))
            .bearer_auth(&u.token)
            .multipart(form(files))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn listing(&self, u: &TestUser, folder: Option<&str>) -> Value {
        let path = match folder {
            Some(f) => format!("/api/files?folder_id={f}"),
            None => "/api/files".into(),
        };
        let r = self.get(&path, Some(&u.token)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn files_json(
        &self,
        method: reqwest::Method,
        path: &str,
        u: &TestUser,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&u.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Objects stored under the local backend's `files/` prefix.
    fn stored_objects(&self) -> usize {
        fn count(p: &std::path::Path) -> usize {
            std::fs::read_dir(p)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                count(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        count(&self.data_dir.join("objects").join("files"))
    }
}

pub(crate) fn names(listing: &Value) -> Vec<String> {
    listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn id_of(listing: &Value, name: &str) -> String {
    listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {listing}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_folder_upload_keeps_its_tree_and_files_come_back_byte_for_byte() {
    let app = TestApp::spawn().await;
    let u = app.register("alice").await;
    let csv = b"orgFullName,emissionSourceName,v\nA,S1,0878036\n";
    let r = app
        .upload(
            &u,
            None,
            &[
                ("reports/2024/bar.csv", csv),
                ("reports/logo.png", PNG),
                ("reports/page.svg", b"<svg onload=alert(1)></svg>"),
                ("notes.txt", "caf\u{e9}".as_bytes()),
            ],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let up: Value = r.json().await.unwrap();
    let types: Vec<&str> = up["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text/csv", "image/png", "text/plain", "text/plain"]);

    let top = app.listing(&u, None).await;
    assert_eq!(names(&top), ["reports", "notes.txt"], "folders first");
    assert_eq!(top["folder"], Value::Null);
    let reports = id_of(&top, "reports");
    let inside = app.listing(&u, Some(&reports)).await;
    assert_eq!(names(&inside), ["2024", "logo.png", "page.svg"]);
    let y2024 = id_of(&inside, "2024");
    let deep = app.listing(&u, Some(&y2024)).await;
    assert_eq!(deep["path"][0]["name"], "reports");
    assert_eq!(deep["folder"]["name"], "2024");
    let bar = id_of(&deep, "bar.csv");

    // The bytes, unchanged, as an attachment.
    let r = app
        .get(&format!("/api/files/{bar}/download"), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv");
    assert_eq!(
        r.headers()["content-length"],
        csv.len().to_string().as_str()
    );
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), csv);
    // A range of them.
    let r = app
        .client
        .get(app.url(&format!("/api/files/{bar}/download")))
        .bearer_auth(&u.token)
        .header("range", "bytes=0-11")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-11/{}", csv.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &csv[..12]);
    let r = app
        .client
        .get(app.url(&format!("/api/files/{bar}/download")))
        .bearer_auth(&u.token)
        .header("range", "bytes=9999-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // Images may show in place; markup never does.
    let png = id_of(&inside, "logo.png");
    let r = app
        .get(&format!("/api/files/{png}/download"), Some(&u.token))
        .await;
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );
    let svg = id_of(&inside, "page.svg");
    let r = app
        .get(&format!("/api/files/{svg}/download"), Some(&u.token))
        .await;
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );

    // Search and storage use.
    let found: Value = app
        .get("/api/files/search?q=BAR", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["entries"][0]["name"], "bar.csv");
    let usage: Value = app
        .get("/api/files/usage", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    let total = csv.len() + PNG.len() + 27 + "caf\u{e9}".len();
    assert_eq!(usage["used_bytes"], total);
    assert_eq!(usage["files"], 4);
    assert_eq!(usage["quota_bytes"], 1_073_741_824_i64);
    assert_eq!(app.stored_objects(), 4);
}

#[tokio::test]
async fn another_users_files_do_not_exist_for_you() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let r = app.upload(&alice, None, &[("secret/plan.txt", b"x")]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let top = app.listing(&alice, None).await;
    let folder = id_of(&top, "secret");
    let file = id_of(&app.listing(&alice, Some(&folder)).await, "plan.txt");
    for path in [
        format!("/api/files/{file}"),
        format!("/api/files/{file}/download"),
        format!("/api/files?folder_id={folder}"),
    ] {
        let r = app.get(&path, Some(&mallory.token)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = app
        .upload(&mallory, Some(&folder), &[("x.txt", b"x")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .files_json(
            reqwest::Method::PATCH,
            &format!("/api/files/{file}"),
            &mallory,
            json!({"name": "mine.txt"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .files_json(
            reqwest::Method::DELETE,
            &format!("/api/files/{folder}"),
            &mallory,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(names(&app.listing(&mallory, None).await).is_empty());
    let found: Value = app
        .get("/api/files/search?q=plan", Some(&mallory.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["entries"], json!([]));
    // Untouched for its owner.
    assert_eq!(
        names(&app.listing(&alice, Some(&folder)).await),
        ["plan.txt"]
    );
    let r = app.get("/api/files", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    let app = TestApp::spawn_with(|c| c.files.quota_bytes = 1000).await;
    let u = app.register("alice").await;
    // Past the quota: 413 with a message that says why, and nothing kept.
    let big = vec![b'a'; 1500];
    let r = app.upload(&u, None, &[("big.txt", &big)]).await;
    let (s, code, body) = error_code(r).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("quota of 1000 B"), "{msg}");
    // Within the quota one by one, past it together: none of them is kept.
    let part = vec![b'b'; 600];
    let r = app
        .upload(&u, None, &[("one.txt", &part), ("two.txt", &part)])
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A bad name or a name taken twice in one upload: nothing kept either.
    for files in [
        vec![("ok.txt", &b"1"[..]), ("../escape.txt", &b"2"[..])],
        vec![("ok.txt", &b"1"[..]), ("CON", &b"2"[..])],
        vec![("same.txt", &b"1"[..]), ("same.txt", &b"2"[..])],
    ] {
        let r = app.upload(&u, None, &files).await;
        assert!(
            matches!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT
            ),
            "{files:?}: {}",
            r.status()
        );
    }
    // No file part at all.
    let r = app
        .client
        .post(app.url("/api/files"))
        .bearer_auth(&u.token)
        .multipart(Form::new().text("note", "no file"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A body that breaks off in the middle of a file.
    let body = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.txt\"\r\n\r\npartial data";
    let r = app
        .client
        .post(app.url("/api/files"))
        .bearer_auth(&u.token)
        .header("content-type", "multipart/form-data; boundary=XX")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    assert!(names(&app.listing(&u, None).await).is_empty());
    let usage: Value = app
        .get("/api/files/usage", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_bytes"], 0);
    assert_eq!(app.stored_objects(), 0, "no bytes left behind");
    // What fits is taken, and then the quota is full.
    let r = app.upload(&u, None, &[("fits.txt", &part)]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.upload(&u, None, &[("more.txt", &part)]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A name taken by an earlier upload.
    let r = app.upload(&u, None, &[("fits.txt", b"x")]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(app.stored_objects(), 1);
}

#[tokio::test]
async fn folders_are_made_renamed_moved_and_deleted_with_everything_in_them() {
    let app = TestApp::spawn().await;
    let u = app.register("alice").await;
    let post = |body: Value| app.files_json(reqwest::Method::POST, "/api/files/folders", &u, body);
    let r = post(json!({"name": "inbox"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let inbox: Value = r.json().await.unwrap();
    let inbox = inbox["id"].as_str().unwrap().to_string();
    let r = post(json!({"name": "inbox"})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = post(json!({"name": "../up"})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = post(json!({"name": "2024", "parent_id": inbox})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let y: Value = r.json().await.unwrap();
    let y = y["id"].as_str().unwrap().to_string();
    let r = app
        .upload(
            &u,
            Some(&y),
            &[("a.csv", b"a,b\n"), ("deep/b.csv", b"c,d\n")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // A folder cannot move into itself or below itself.
    let patch = |id: String, body: Value| {
        let path = format!("/api/files/{id}");
        let (app, u) = (&app, &u);
        async move { app.files_json(reqwest::Method::PATCH, &path, u, body).await }
    };
    let r = patch(inbox.clone(), json!({"parent_id": y})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = patch(inbox.clone(), json!({"parent_id": inbox})).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Rename, then move to the top and back.
    let r = patch(y.clone(), json!({"name": "year-2024"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = patch(y.clone(), json!({"parent_id": null})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(names(&app.listing(&u, None).await), ["inbox", "year-2024"]);
    assert!(names(&app.listing(&u, Some(&inbox)).await).is_empty());
    let r = patch(y.clone(), json!({"parent_id": inbox, "name": "2024"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(names(&app.listing(&u, None).await), ["inbox"]);

    // Deleting the top folder removes everything, bytes included.
    assert_eq!(app.stored_objects(), 2);
    let r = app
        .files_json(
            reqwest::Method::DELETE,
            &format!("/api/files/{inbox}"),
            &u,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d, json!({"files": 2, "folders": 3, "bytes": 8}));
    assert!(names(&app.listing(&u, None).await).is_empty());
    assert_eq!(app.stored_objects(), 0);
    let usage: Value = app
        .get("/api/files/usage", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_bytes"], 0);
    let r = app.get(&format!("/api/files/{y}"), Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_uploads_never_pass_the_quota_together() {
    let app = TestApp::spawn_with(|c| c.files.quota_bytes = 1000).await;
    let u = app.register("alice").await;
    let part = vec![b'c'; 300];
    let files: Vec<String> = (0..8).map(|i| format!("f{i}.txt")).collect();
    let uploads = files.iter().map(|n| {
        let (app, u, part) = (&app, &u, &part);
        async move { app.upload(u, None, &[(n.as_str(), part)]).await }
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(uploads)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 3, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| matches!(*s, StatusCode::CREATED | StatusCode::PAYLOAD_TOO_LARGE)),
        "{statuses:?}"
    );
    let usage: Value = app
        .get("/api/files/usage", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_bytes"], 900);
    assert_eq!(names(&app.listing(&u, None).await).len(), 3);
    assert_eq!(app.stored_objects(), 3);
}

#[tokio::test]
async fn uploads_into_the_same_new_folder_at_once_share_it() {
    let app = TestApp::spawn().await;
    let u = app.register("alice").await;
    let files: Vec<String> = (0..6).map(|i| format!("shared/sub/f{i}.csv")).collect();
    let uploads = files.iter().map(|n| {
        let (app, u) = (&app, &u);
        async move { app.upload(u, None, &[(n.as_str(), b"a,b\n")]).await }
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(uploads)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    let top = app.listing(&u, None).await;
    assert_eq!(names(&top), ["shared"]);
    let sub = id_of(&app.listing(&u, Some(&id_of(&top, "shared"))).await, "sub");
    assert_eq!(names(&app.listing(&u, Some(&sub)).await).len(), 6);
}

#[tokio::test]
async fn files_preview_without_downloading() {
    let app = TestApp::spawn().await;
    let u = app.register("alice").await;
    let r = app
        .upload(
            &u,
            None,
            &[
                ("d/bar.csv", b"org,v\nA,0878036\nB,\"1, 2\"\n"),
                ("d/doc.json", b"{\"a\":[1,2]}"),
                ("d/notes.txt", b"hello"),
                ("d/logo.png", PNG),
                ("d/blob.bin", b"\x00\x01\x02"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let up: Value = r.json().await.unwrap();
    let id = |i: usize| up["files"][i]["id"].as_str().unwrap().to_string();
    let preview = |id: String| {
        let app = &app;
        let token = u.token.clone();
        async move {
            let r = app
                .get(&format!("/api/files/{id}/preview"), Some(&token))
                .await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, p) = preview(id(0)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        p,
        json!({"kind": "csv", "columns": ["org", "v"], "rows": [["A", "0878036"], ["B", "1, 2"]], "truncated": false})
    );
    let (_, p) = preview(id(1)).await;
    assert_eq!(
        p,
        json!({"kind": "json", "text": "{\n  \"a\": [\n    1,\n    2\n  ]\n}"})
    );
    let (_, p) = preview(id(2)).await;
    assert_eq!(
        p,
        json!({"kind": "text", "text": "hello", "truncated": false})
    );
    let (_, p) = preview(id(3)).await;
    assert_eq!(
        p,
        json!({"kind": "image", "url": format!("/api/files/{}/download", id(3))})
    );
    let (_, p) = preview(id(4)).await;
    assert_eq!(p, json!({"kind": "none"}));
    let folder = id_of(&app.listing(&u, None).await, "d");
    let (s, _) = preview(folder).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let other = app.register("mallory").await;
    let r = app
        .get(&format!("/api/files/{}/preview", id(0)), Some(&other.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The EICAR test file: every scanner reports it, and it harms nothing.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A server speaking clamd's INSTREAM protocol (`zINSTREAM\0`, then chunks each prefixed with
/// a 4-byte big-endian length, then a zero length) that reports the EICAR test string, like
/// clamd does. Returns its address and how many streams it scanned.
async fn fake_clamd() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let scanned = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = scanned.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut command = [0u8; 10];
                if s.read_exact(&mut command).await.is_err() || &command != b"zINSTREAM\0" {
                    let _ = s.write_all(b"UNKNOWN COMMAND\0").await;
                    return;
                }
                let mut data = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 {
                        break;
                    }
                    let start = data.len();
                    data.resize(start + len, 0);
                    if s.read_exact(&mut data[start..]).await.is_err() {
                        return;
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let infected = data.windows(EICAR.len()).any(|w| w == EICAR);
                let answer: &[u8] = if infected {
                    b"stream: Eicar-Test-Signature FOUND\0"
                } else {
                    b"stream: OK\0"
                };
                let _ = s.write_all(answer).await;
            });
        }
    });
    (addr, scanned)
}

#[tokio::test]
async fn with_a_scanner_configured_an_infected_upload_is_refused_and_nothing_is_kept() {
    let (clamd, scanned) = fake_clamd().await;
    let app = TestApp::spawn_with(|c| c.files.clamd = Some(clamd)).await;
    let u = app.register("scanned").await;
    let r = app.upload(&u, None, &[("clean.csv", b"a,b\n1,2\n")]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(scanned.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stored = app.stored_objects();

    // One infected file refuses the whole upload, and says what was found.
    let mut infected = b"header\n".to_vec();
    infected.extend_from_slice(EICAR);
    let r = app
        .upload(&u, None, &[("ok.txt", b"fine"), ("bad.txt", &infected)])
        .await;
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["fields"]["file"],
        "was refused: the malware scanner found Eicar-Test-Signature"
    );
    assert_eq!(names(&app.listing(&u, None).await), vec!["clean.csv"]);
    assert_eq!(app.stored_objects(), stored, "the refused bytes are gone");
    assert_eq!(
        app.count(
            "SELECT (SELECT COUNT(*) FROM audit_outbox WHERE action = 'files.infected') \
             + (SELECT COUNT(*) FROM audit_log WHERE action = 'files.infected')"
        )
        .await,
        1
    );

    // A scanner that cannot be reached lets nothing through unscanned.
    let down =
        TestApp::spawn_with(|c| c.files.clamd = Some(format!("127.0.0.1:{}", closed_port()))).await;
    let v = down.register("unscanned").await;
    let (status, code, _) = error_code(down.upload(&v, None, &[("a.txt", b"x")]).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
    );
    assert_eq!(down.count("SELECT COUNT(*) FROM files").await, 0);
    assert_eq!(down.stored_objects(), 0);
}

#[tokio::test]
async fn images_get_a_small_thumbnail_that_goes_with_the_file() {
    let app = TestApp::spawn().await;
    let u = app.register("painter").await;
    let other = app.register("peeker").await;
    let r = app
        .upload(
            &u,
            None,
            &[("photo.png", &png(1200, 800)), ("notes.txt", b"hi")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let top = app.listing(&u, None).await;
    let (photo, notes) = (id_of(&top, "photo.png"), id_of(&top, "notes.txt"));
    let stored = app.stored_objects();
    let r = app
        .get(&format!("/api/files/{photo}/thumbnail"), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (512, 341));
    // Kept once drawn, and served again the same.
    let again = app
        .get(&format!("/api/files/{photo}/thumbnail"), Some(&u.token))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let thumbs = app.data_dir.join("objects").join("thumbs").join(&u.id);
    assert_eq!(std::fs::read_dir(&thumbs).unwrap().count(), 1);
    assert_eq!(
        app.stored_objects(),
        stored,
        "thumbnails live apart from files"
    );

    let r = app
        .get(&format!("/api/files/{notes}/thumbnail"), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .get(&format!("/api/files/{photo}/thumbnail"), Some(&other.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Deleting the image removes its thumbnail too.
    assert_eq!(
        app.delete(&format!("/api/files/{photo}"), Some(&u.token))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(std::fs::read_dir(&thumbs).unwrap().count(), 0);
}

#[tokio::test]
async fn admins_read_a_users_files_only_through_audited_routes() {
    let app = TestApp::spawn().await;
    let owner = app.register("keeper").await;
    let admin = app.user_with_role("auditor", "admin").await;
    let moderator = app.user_with_role("watcher", "moderator").await;
    let other = app.register("stranger").await;
    app.upload(&owner, None, &[("docs/report.pdf", b"%PDF-1.4 report")])
        .await;
    let docs = id_of(&app.listing(&owner, None).await, "docs");
    let report = id_of(&app.listing(&owner, Some(&docs)).await, "report.pdf");
    let audited = |action: &'static str| {
        format!(
            "SELECT (SELECT COUNT(*) FROM audit_outbox WHERE action = '{action}') \
             + (SELECT COUNT(*) FROM audit_log WHERE action = '{action}')"
        )
    };

    let list = format!("/api/admin/users/{}/files?folder_id={docs}", owner.id);
    let r = app.get(&list, Some(&admin.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let listing: Value = r.json().await.unwrap();
    assert_eq!(names(&listing), vec!["report.pdf"]);
    assert_eq!(app.count(&audited("files.staff_read")).await, 1);

    let download = format!("/api/admin/users/{}/files/{report}/download", owner.id);
    let r = app.get(&download, Some(&admin.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Never shown in place to staff, even a PDF its owner may view inline.
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"%PDF-1.4 report");
    assert_eq!(app.count(&audited("files.staff_download")).await, 1);

    // Moderators are refused; users are told nothing exists; nothing of that is recorded as a look.
    assert_eq!(
        app.get(&list, Some(&moderator.token)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&download, Some(&other.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&list, Some(&owner.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .get(
            &format!("/api/admin/users/{}/files", uuid::Uuid::now_v7()),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count(&audited("files.staff_read")).await, 1);
    assert_eq!(app.count(&audited("files.staff_download")).await, 1);
}

#[tokio::test]
async fn moves_keep_the_folders_a_tree_at_most_32_deep() {
    let app = TestApp::spawn().await;
    let u = app.register("alice").await;
    let folder = |name: String, parent: Option<String>| {
        let (app, u) = (&app, &u);
        async move {
            let r = app
                .files_json(
                    reqwest::Method::POST,
                    "/api/files/folders",
                    u,
                    json!({"name": name, "parent_id": parent}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let patch = |id: String, body: Value| {
        let path = format!("/api/files/{id}");
        let (app, u) = (&app, &u);
        async move {
            app.files_json(reqwest::Method::PATCH, &path, u, body)
                .await
                .status()
        }
    };
    // a1/a2/…/a32, the deepest a folder may be; b1/b2 beside it.
    let mut chain = vec![folder("a1".into(), None).await];
    for n in 2..=32 {
        let parent = chain.last().cloned();
        chain.push(folder(format!("a{n}"), parent).await);
    }
    let b1 = folder("b1".into(), None).await;
    let b2 = folder("b2".into(), Some(b1.clone())).await;
    // b1 with b2 inside it does not fit below a32, nor below a31; below a30 it does.
    for at in [31, 30] {
        let s = patch(b1.clone(), json!({"parent_id": chain[at]})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "below a{}", at + 1);
    }
    assert_eq!(
        patch(b1.clone(), json!({"parent_id": chain[29]})).await,
        StatusCode::OK
    );
    // The top folder cannot then go below b2: that would be a loop.
    assert_eq!(
        patch(chain[0].clone(), json!({"parent_id": b2})).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Two folders moved into each other at once: one wins, the tree stays a tree and the top
    // one deletes with everything in it.
    let x = folder("x".into(), None).await;
    let y = folder("y".into(), None).await;
    let (sx, sy) = tokio::join!(
        patch(x.clone(), json!({"parent_id": y})),
        patch(y.clone(), json!({"parent_id": x}))
    );
    assert_eq!(
        [sx, sy].iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{sx} {sy}"
    );
    let top = if sx == StatusCode::OK { &y } else { &x };
    let r = app
        .files_json(
            reqwest::Method::DELETE,
            &format!("/api/files/{top}"),
            &u,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["folders"], 2);
}
