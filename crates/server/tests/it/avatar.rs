//! Avatar upload: content sniffing, size limit, re-encoding, serving and cleanup.

use crate::support::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

async fn upload(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    name: &str,
    mime: &str,
) -> reqwest::Response {
    let form = Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str(mime)
            .unwrap(),
    );
    app.client
        .post(app.url("/api/users/avatar"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_serve_replace_and_delete() {
    let app = TestApp::spawn().await;
    let u = app.register("pic").await;
    let other = app.register("viewer").await;
    let r = upload(&app, &u.token, png(800, 400), "me.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    let url = user["avatar_url"].as_str().unwrap().to_string();
    let first_key: String = app
        .state
        .db
        .user_by_id(&u.id)
        .await
        .unwrap()
        .unwrap()
        .avatar_key
        .unwrap();
    // Served to signed-in users only, with the right type and cache headers.
    assert_eq!(app.get(&url, None).await.status(), StatusCode::UNAUTHORIZED);
    let r = app.get(&url, Some(&other.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (512, 256),
        "scaled to fit 512x512"
    );
    let r = app
        .client
        .get(app.url(&url))
        .bearer_auth(&other.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Replacing removes the previous object.
    let r = upload(&app, &u.token, png(64, 64), "b.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(app.state.storage.get(&first_key).await.unwrap().is_none());
    let second_key = app
        .state
        .db
        .user_by_id(&u.id)
        .await
        .unwrap()
        .unwrap()
        .avatar_key
        .unwrap();
    assert!(app.state.storage.get(&second_key).await.unwrap().is_some());
    let r = app.delete("/api/users/avatar", Some(&u.token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    assert!(user["avatar_url"].is_null());
    assert!(app.state.storage.get(&second_key).await.unwrap().is_none());
}

#[tokio::test]
async fn fake_oversize_and_corrupt_images_are_refused() {
    let app = TestApp::spawn().await;
    let u = app.register("faker").await;
    // A script named .png and declared image/png: the bytes decide.
    let (s, c, _) = error_code(
        upload(
            &app,
            &u.token,
            b"<script>alert(1)</script>".to_vec(),
            "x.png",
            "image/png",
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    // PNG magic followed by garbage.
    let mut corrupt = png(32, 32);
    corrupt.truncate(60);
    let (s, c, _) = error_code(upload(&app, &u.token, corrupt, "c.png", "image/png").await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    // Over 5 MB.
    let mut big = png(16, 16);
    big.resize(5 * 1024 * 1024 + 10, 0);
    let (s, c, _) = error_code(upload(&app, &u.token, big, "big.png", "image/png").await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    // No file part at all.
    let form = Form::new().text("other", "x");
    let r = app
        .client
        .post(app.url("/api/users/avatar"))
        .bearer_auth(&u.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let me: Value = app
        .get("/api/auth/me", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert!(me["avatar_url"].is_null(), "nothing changed");
}

/// Uploads are budgeted per account and per address: the one over budget is refused with 429
/// and `Retry-After` before anything is decoded, and the avatar stays as it was.
#[tokio::test]
async fn uploads_are_throttled_per_account_and_per_address() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| {
        c.rate_limit.avatar_uploads_per_user_per_hour = 2;
        c.rate_limit.avatar_uploads_per_ip_per_hour = 4;
    })
    .await;
    let a = app.register("often").await;
    for _ in 0..2 {
        let r = upload(&app, &a.token, png(32, 32), "a.png", "image/png").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let before = app
        .state
        .db
        .user_by_id(&a.id)
        .await
        .unwrap()
        .unwrap()
        .avatar_key;
    let r = upload(&app, &a.token, png(48, 48), "b.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let (_, code, _) = error_code(r).await;
    assert_eq!(code, "RATE_LIMITED");
    let after = app
        .state
        .db
        .user_by_id(&a.id)
        .await
        .unwrap()
        .unwrap()
        .avatar_key;
    assert_eq!(before, after, "the refused upload changed nothing");

    // Another account from the same address has its own budget, but the address's (refused
    // attempts included) is spent after one more upload.
    let b = app.register("neighbour").await;
    let r = upload(&app, &b.token, png(32, 32), "c.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = upload(&app, &b.token, png(32, 32), "d.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

/// Canvases beyond 4096×4096 are refused from their header with a 422, however small the file.
#[tokio::test]
async fn huge_canvases_are_refused_before_decoding() {
    let app = TestApp::spawn().await;
    let u = app.register("bomber").await;
    let bomb = flat_png(8192, 8192);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
    let (s, c, body) = error_code(upload(&app, &u.token, bomb, "b.png", "image/png").await).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    assert!(
        body["error"]["fields"]["file"]
            .as_str()
            .unwrap()
            .contains("4096x4096"),
        "{body}"
    );
    let r = upload(&app, &u.token, flat_png(4096, 1024), "ok.png", "image/png").await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A one-colour image: a few hundred kilobytes for a canvas of any size.
fn flat_png(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let pixels = vec![0x5Au8; usize::try_from(w * h * 3).unwrap()];
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::NoFilter)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The decompression bomb: 100 uploads at once, half of them an 8192×8192 canvas, half a
/// 4096×4096 one that is really decoded, against the real binary in its own process so its
/// peak RSS is its own. Peak RSS stays under 300 MB, `/health` keeps answering within a
/// second, and every answer is a 4xx, a 503 with `Retry-After`, or a 200 with the avatar set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_parallel_bombs_keep_memory_bounded() {
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let dir = std::env::temp_dir().join(format!("etx-bomb-{}", uuid::Uuid::now_v7()));
    let db_url = fresh_database_url().await;
    let port = crate::ports::free_ports(0);
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etx"));
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("ETX_DATA_DIR", &dir)
        .env("ETX__AUTH__ARGON2_MEMORY_KIB", "64")
        .env("ETX__AUTH__ARGON2_ITERATIONS", "1")
        .env("ETX__RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE", "1000")
        // Enough budget that every upload reaches the decoder: the bound under test is the
        // decoder's, not the throttle's.
        .env("ETX__RATE_LIMIT__AVATAR_UPLOADS_PER_USER_PER_HOUR", "1000")
        .env("ETX__RATE_LIMIT__AVATAR_UPLOADS_PER_IP_PER_HOUR", "1000")
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match &db_url {
        Some(u) => cmd.env("DATABASE_URL", u),
        None => cmd.env_remove("DATABASE_URL"),
    };
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..400 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let child = Kill(child);
    assert!(ready, "server never became ready");

    let mut tokens = Vec::new();
    for i in 0..10 {
        let name = format!("bomber{i}");
        let r: Value = client
            .post(format!("{base}/api/auth/register"))
            .json(&serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(r["access_token"].as_str().unwrap().to_string());
    }
    let huge = bytes::Bytes::from(flat_png(8192, 8192));
    let just_under = bytes::Bytes::from(flat_png(4096, 4096));
    let start_rss_kib = status_kib(pid, "VmHWM:");

    let stop = Arc::new(AtomicBool::new(false));
    let worst_health_ms = Arc::new(AtomicU64::new(0));
    let health = {
        let (client, base, stop, worst) = (
            reqwest::Client::new(),
            base.clone(),
            stop.clone(),
            worst_health_ms.clone(),
        );
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .get(format!("{base}/health"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let ms = u64::try_from(t.elapsed().as_millis()).unwrap();
                assert!(
                    r.is_ok_and(|r| r.status() == StatusCode::OK),
                    "/health failed"
                );
                worst.fetch_max(ms, Ordering::Relaxed);
                checks += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            checks
        })
    };

    let mut uploads = Vec::new();
    for i in 0..100usize {
        let (client, base) = (client.clone(), base.clone());
        let token = tokens[i % tokens.len()].clone();
        let body = if i % 2 == 0 {
            huge.clone()
        } else {
            just_under.clone()
        };
        uploads.push(tokio::spawn(async move {
            let form = Form::new().part(
                "file",
                Part::stream(body)
                    .file_name("bomb.png")
                    .mime_str("image/png")
                    .unwrap(),
            );
            let r = client
                .post(format!("{base}/api/users/avatar"))
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let retry = r.headers().contains_key("retry-after");
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (i, status, retry, body)
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for u in uploads {
        let (i, status, retry, body) = u.await.unwrap();
        *counts.entry(status.as_u16()).or_insert(0u32) += 1;
        match status {
            StatusCode::OK => {
                assert!(i % 2 == 1, "the 8192x8192 canvas was accepted");
                assert!(body["avatar_url"].is_string(), "{body}");
            }
            StatusCode::SERVICE_UNAVAILABLE => assert!(retry, "503 without Retry-After"),
            s => assert!(s.is_client_error(), "upload {i} answered {s}: {body}"),
        }
        if i % 2 == 0 {
            assert_ne!(status, StatusCode::OK);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let checks = health.await.unwrap();
    let peak_kib = status_kib(pid, "VmHWM:");
    let worst_ms = worst_health_ms.load(Ordering::Relaxed);
    eprintln!(
        "bomb uploads: answers {counts:?}; peak RSS {:.1} MiB (at start {:.1} MiB); \
         /health worst {worst_ms} ms over {checks} checks",
        peak_kib as f64 / 1024.0,
        start_rss_kib as f64 / 1024.0
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        counts.get(&200).copied().unwrap_or(0) >= 1,
        "no upload was decoded: {counts:?}"
    );
    assert!(
        peak_kib * 1024 <= 300 * 1000 * 1000,
        "peak RSS {peak_kib} KiB"
    );
    assert!(worst_ms < 1000, "/health took {worst_ms} ms");
    assert!(checks >= 5, "/health was checked {checks} times");
}
