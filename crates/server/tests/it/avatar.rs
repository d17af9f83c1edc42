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
