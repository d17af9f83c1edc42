//! The S3 path against a real S3-compatible server: moto's server, started here on loopback.

use crate::support::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct MotoServer {
    child: Child,
    endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto on a free port. The port is free when picked but may be taken before moto binds
/// it (tests start servers in parallel), so the probe asks for a moto-only page and a moto that
/// exited is started again on another port.
async fn start_moto() -> MotoServer {
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let port = crate::ports::free_ports(0);
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server must be installed (pip install 'moto[server]'); scripts/test.sh does it",
            );
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = MotoServer { child, endpoint };
        for _ in 0..100 {
            if server.child.try_wait().ok().flatten().is_some() {
                break; // lost the port: try another
            }
            let ok = client
                .get(format!("{}/moto-api/data.json", server.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("moto_server did not start");
}

/// Object keys currently in the bucket, straight from the S3 server's ListObjectsV2 answer.
async fn list_keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let xml = reqwest::get(format!("{endpoint}/{bucket}?list-type=2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml.split("<Key>")
        .skip(1)
        .map(|s| s.split("</Key>").next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn avatars_live_in_s3_and_replaced_ones_are_removed() {
    let moto = start_moto().await;
    let bucket = "etx-avatars";
    let r = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "bucket created");
    let endpoint = moto.endpoint.clone();
    let app = TestApp::spawn_with(|c| {
        c.storage.backend = etx_core::config::StorageBackend::S3;
        c.storage.s3_bucket = Some(bucket.into());
        c.storage.s3_endpoint = Some(endpoint);
        c.storage.s3_access_key_id = Some("testing".into());
        c.storage.s3_secret_access_key = Some("testing".into());
    })
    .await;
    assert_eq!(app.state.storage.backend(), "s3");
    let u = app.register("cloudy").await;
    let upload = |bytes: Vec<u8>| {
        let form = Form::new().part(
            "file",
            Part::bytes(bytes)
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        );
        app.client
            .post(app.url("/api/users/avatar"))
            .bearer_auth(&u.token)
            .multipart(form)
            .send()
    };
    let r = upload(png(100, 100)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let first = list_keys(&moto.endpoint, bucket).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with(&format!("avatars/{}/", u.id)));
    let user: Value = r.json().await.unwrap();
    let img = app
        .get(user["avatar_url"].as_str().unwrap(), Some(&u.token))
        .await;
    assert_eq!(img.status(), StatusCode::OK);
    assert!(image::load_from_memory(&img.bytes().await.unwrap()).is_ok());
    assert_eq!(upload(png(50, 50)).await.unwrap().status(), StatusCode::OK);
    let second = list_keys(&moto.endpoint, bucket).await;
    assert_eq!(
        second.len(),
        1,
        "the replaced avatar is deleted: {second:?}"
    );
    assert_ne!(second, first);
    assert_eq!(
        app.delete("/api/users/avatar", Some(&u.token))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(list_keys(&moto.endpoint, bucket).await.is_empty());
}
