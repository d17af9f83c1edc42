//! Registration, login, tokens, sessions, lockout, throttling and CSRF, as a client sees them.

use crate::support::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn register_ignores_role_and_starts_at_level_one() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/auth/register",
            json!({"username": "mallory", "email": "m@example.com", "password": PASSWORD,
                   "role": "admin", "level": 99, "exp": 5000, "is_verified": true}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["user"]["role"], "user");
    assert_eq!(b["user"]["level"], 1);
    assert_eq!(b["user"]["exp"], 0);
    assert_eq!(b["user"]["is_verified"], false);
    assert_eq!(b["token_type"], "bearer");
    assert!(b["user"].get("password_hash").is_none());
    let me: Value = app
        .get("/api/auth/me", b["access_token"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "mallory");
}

#[tokio::test]
async fn signup_alias_works() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/auth/signup",
            json!({"username": "bob", "email": "bob@example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn duplicates_in_any_letter_case_conflict() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let cases = [
        json!({"username": "ALICE", "email": "other@example.com", "password": PASSWORD}),
        json!({"username": "alice2", "email": "Alice@Example.COM", "password": PASSWORD}),
    ];
    for (body, field) in cases.into_iter().zip(["username", "email"]) {
        let (status, code, b) = error_code(app.post("/api/auth/register", body, None).await).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(code, "CONFLICT");
        assert!(b["error"]["fields"][field].is_string(), "{b}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn racing_registrations_create_one_account_and_name_the_taken_field() {
    let app = TestApp::spawn_with(|c| c.rate_limit.register_per_ip_per_minute = 1000).await;
    // Requests sent together all pass the up-front check; the unique keys decide, and the
    // answer still names the field that collided.
    let body = |field: &str, i: usize| {
        if field == "username" {
            json!({"username": "racer", "email": format!("r{i}@example.com"), "password": PASSWORD})
        } else {
            json!({"username": format!("racer{i}"), "email": "race@example.com", "password": PASSWORD})
        }
    };
    for field in ["username", "email"] {
        let answers = futures_util::future::join_all(
            (0..6).map(|i| app.post("/api/auth/register", body(field, i), None)),
        )
        .await;
        let mut created = 0;
        for r in answers {
            if r.status() == StatusCode::CREATED {
                created += 1;
                continue;
            }
            let (status, code, b) = error_code(r).await;
            assert_eq!(status, StatusCode::CONFLICT, "{b}");
            assert_eq!(code, "CONFLICT");
            assert!(b["error"]["fields"][field].is_string(), "{b}");
        }
        assert_eq!(created, 1, "{field}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 2);
}

#[tokio::test]
async fn bad_registrations_are_422_and_create_nothing() {
    let app = TestApp::spawn().await;
    let bad = [
        (
            json!({"username": "ab", "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "has space", "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "carol", "email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "carol", "email": "c@example.com", "password": "short1A"}),
            "password",
        ),
        (
            json!({"username": "carol", "email": "c@example.com", "password": "nouppercase123"}),
            "password",
        ),
        (
            json!({"username": "carol", "email": "c@example.com", "password": "Password123"}),
            "password",
        ),
    ];
    for (body, field) in bad {
        let (status, code, b) = error_code(app.post("/api/auth/register", body, None).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(code, "VALIDATION_ERROR");
        assert!(b["error"]["fields"][field].is_string(), "{b}");
        assert!(!b["error"]["request_id"].as_str().unwrap().is_empty());
    }
    // Wrong types, missing fields, malformed JSON, wrong content type.
    let (s, c, _) = error_code(
        app.post("/api/auth/register", json!({"username": 5}), None)
            .await,
    )
    .await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    let r = app
        .client
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "BAD_REQUEST");
    let r = app
        .client
        .post(app.url("/api/auth/register"))
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn login_by_username_or_email_and_oauth2_form() {
    let app = TestApp::spawn().await;
    app.register("dave").await;
    for login in ["dave", "DAVE", "dave@example.com", "Dave@Example.com"] {
        let r = app.login(login, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "{login}");
    }
    let r = app
        .client
        .post(app.url("/api/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", "dave"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["token_type"], "bearer");
    assert!(b["expires_in"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = TestApp::spawn().await;
    app.register("erin").await;
    let (s1, c1, b1) = error_code(app.login("erin", "Wrong-Pass-1").await).await;
    let (s2, c2, b2) = error_code(app.login("nobody", "Wrong-Pass-1").await).await;
    assert_eq!(
        (s1, c1.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!((s1, &c1), (s2, &c2));
    assert_eq!(b1["error"]["message"], b2["error"]["message"]);
    assert_eq!(b1["error"]["message"], "Invalid credentials");
}

#[tokio::test]
async fn five_failures_lock_the_account_for_fifteen_minutes() {
    let app = TestApp::spawn().await;
    let u = app.register("frank").await;
    for _ in 0..5 {
        assert_eq!(
            app.login("frank", "Wrong-Pass-1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused, with the same generic answer.
    let (s, _, b) = error_code(app.login("frank", PASSWORD).await).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["message"], "Invalid credentials");
    let until: i64 = app
        .count(&format!(
            "SELECT locked_until FROM users WHERE id = '{}'",
            u.id
        ))
        .await;
    let minutes = (until - etx_db::now_micros()) / 60_000_000;
    assert!((14..=15).contains(&minutes), "locked for {minutes} min");
    // Once the lock has expired, the right password works and clears the counter.
    app.state
        .db
        .execute(
            "UPDATE users SET locked_until = $1 WHERE id = $2",
            [(etx_db::now_micros() - 1).into(), u.id.clone().into()],
        )
        .await
        .unwrap();
    assert_eq!(app.login("frank", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.count(&format!(
            "SELECT CAST(failed_logins AS BIGINT) FROM users WHERE id = '{}'",
            u.id
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn login_is_throttled_per_address_with_retry_after() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| c.rate_limit.login_per_ip_per_minute = 3).await;
    app.register("gina").await;
    for _ in 0..3 {
        assert_eq!(
            app.login("gina", "Wrong-Pass-1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = app.login("gina", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-limit"], "3");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(error_code(r).await.1, "RATE_LIMITED");
}

#[tokio::test]
async fn expired_forged_and_alg_none_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let u = app.register("hank").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = u.token.split('.').collect();
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("00000000-0000-7000-8000-000000000000");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    let other = etx_auth::TokenKeys::new(
        b"a-different-secret-of-enough-length!!",
        "etx",
        "etx-api",
        900,
    );
    let (forged, _) = other.issue_access(&u.id, "whatever");
    let expired_keys = etx_auth::TokenKeys::new(
        b"test-secret-key-that-is-long-enough-0123456789",
        "etx",
        "etx-api",
        -120,
    );
    let (expired, _) = expired_keys.issue_access(&u.id, "s");
    for t in [
        none.as_str(),
        tampered.as_str(),
        forged.as_str(),
        expired.as_str(),
        "garbage",
        "",
    ] {
        let r = app.get("/api/auth/me", Some(t)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {t}");
    }
    assert_eq!(
        app.get("/api/auth/me", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let app = TestApp::spawn().await;
    let u = app.register("ivy").await;
    let r = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": u.refresh}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    let new_access = b["access_token"].as_str().unwrap().to_string();
    let new_refresh = b["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, u.refresh);
    assert_eq!(
        app.get("/api/auth/me", Some(&new_access)).await.status(),
        StatusCode::OK
    );
    // The old token again, after the grace window for racing tabs: theft is assumed and the
    // whole session ends.
    app.exec("UPDATE refresh_tokens SET used_at = used_at - 60000000 WHERE used_at IS NOT NULL")
        .await;
    let r = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": u.refresh}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/auth/me", Some(&new_access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/auth/refresh",
            json!({"refresh_token": new_refresh}),
            None
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/auth/refresh",
            json!({"refresh_token": "nonsense"}),
            None
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/api/auth/refresh", json!({}), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_cuts_access_at_once() {
    let app = TestApp::spawn().await;
    let u = app.register("jack").await;
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::OK
    );
    let r = app
        .post("/api/auth/logout", json!({}), Some(&u.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("access_token=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/auth/refresh",
            json!({"refresh_token": u.refresh}),
            None
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn password_change_signs_out_other_sessions() {
    let app = TestApp::spawn().await;
    let u = app.register("kate").await;
    let other: Value = app.login("kate", PASSWORD).await.json().await.unwrap();
    let other_token = other["access_token"].as_str().unwrap();
    let (s, _, b) = error_code(
        app.post(
            "/api/auth/change-password",
            json!({"current_password": "Wrong-Pass-1", "new_password": "New-Passw0rd!"}),
            Some(&u.token),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["error"]["fields"]["current_password"].is_string());
    let r = app
        .post(
            "/api/auth/change-password",
            json!({"current_password": PASSWORD, "new_password": "New-Passw0rd!"}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/auth/me", Some(other_token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("kate", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("kate", "New-Passw0rd!").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn profile_update_refuses_level_exp_and_role() {
    let app = TestApp::spawn().await;
    let u = app.register("liam").await;
    for body in [
        json!({"level": 50}),
        json!({"exp": 1000}),
        json!({"role": "admin"}),
        json!({"name": "L", "exp": 1}),
    ] {
        let (s, c, _) = error_code(app.put("/api/auth/me", body, Some(&u.token)).await).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
        );
    }
    let me: Value = app
        .get("/api/auth/me", Some(&u.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            me["level"].as_i64(),
            me["exp"].as_i64(),
            me["role"].as_str(),
            me["name"].as_str()
        ),
        (Some(1), Some(0), Some("user"), None)
    );
    let r = app
        .put(
            "/api/auth/me",
            json!({"name": "Liam N", "username": "liam_n"}),
            Some(&u.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["name"], "Liam N");
    assert_eq!(me["username"], "liam_n");
    app.register("mia").await;
    let (s, _, _) = error_code(
        app.put(
            "/api/auth/me",
            json!({"email": "MIA@example.com"}),
            Some(&u.token),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn cookie_auth_needs_csrf_and_bearer_does_not() {
    let app = TestApp::spawn().await;
    let u = app.register("nina").await;
    let cookie = format!("access_token={}; csrf_token={}", u.token, u.csrf);
    let put = |hdr: Option<&str>| {
        let mut r = app
            .client
            .put(app.url("/api/auth/me"))
            .header("cookie", &cookie)
            .json(&json!({"name": "N"}));
        if let Some(h) = hdr {
            r = r.header("x-csrf-token", h);
        }
        r.send()
    };
    let (s, c, _) = error_code(put(None).await.unwrap()).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::FORBIDDEN, "CSRF_TOKEN_MISSING")
    );
    let (s, c, _) = error_code(put(Some("wrong-token")).await.unwrap()).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::FORBIDDEN, "CSRF_TOKEN_INVALID")
    );
    assert_eq!(put(Some(&u.csrf)).await.unwrap().status(), StatusCode::OK);
    // Safe methods with the cookie need no token.
    let r = app
        .client
        .get(app.url("/api/auth/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Refresh by cookie is an unsafe request too.
    let r = app
        .client
        .post(app.url("/api/auth/refresh"))
        .header(
            "cookie",
            format!("refresh_token={}; csrf_token={}", u.refresh, u.csrf),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "CSRF_TOKEN_MISSING");
    let r = app
        .client
        .post(app.url("/api/auth/refresh"))
        .header(
            "cookie",
            format!("refresh_token={}; csrf_token={}", u.refresh, u.csrf),
        )
        .header("x-csrf-token", &u.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The CSRF endpoint hands out a token and sets the cookie.
    let r = app.get("/api/csrf", None).await;
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("csrf_token=")
    );
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["csrf_token"].as_str().unwrap().len(), 43);
}

#[tokio::test]
async fn suspension_cuts_access_and_blocks_login() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("root_admin", "admin").await;
    let u = app.register("oscar").await;
    // Authenticated once, so the session is warm in the server's cache before it is suspended.
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::OK
    );
    let r = app
        .put(
            &format!("/api/users/{}", u.id),
            json!({"is_active": false}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/auth/me", Some(&u.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/auth/refresh",
            json!({"refresh_token": u.refresh}),
            None
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
    let (s, c, _) = error_code(app.login("oscar", PASSWORD).await).await;
    assert_eq!((s, c.as_str()), (StatusCode::FORBIDDEN, "FORBIDDEN"));
}

#[tokio::test]
async fn login_throttle_is_shared_across_instances_through_redis() {
    away_from_a_minute_edge().await;
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A unique address per run keeps parallel runs apart: each instance sees the forwarded IP.
    let ip = format!("10.{}.{}.{}", rand_octet(), rand_octet(), rand_octet());
    let cfg = |c: &mut etx_server::Config| {
        c.redis_url = Some(redis.clone());
        c.rate_limit.login_per_ip_per_minute = 4;
        c.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    };
    let a = TestApp::spawn_with(cfg).await;
    let b = TestApp::spawn_with(cfg).await;
    let attempt = |app: &TestApp| {
        app.client
            .post(app.url("/api/auth/login"))
            .header("x-forwarded-for", &ip)
            .json(&json!({"login": "nobody", "password": "Wrong-Pass-1"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            attempt(&a).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            attempt(&b).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = attempt(&a).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fifth attempt across both instances is refused"
    );
    assert!(r.headers().contains_key("retry-after"));
    let ready: Value = a.get("/health/ready", None).await.json().await.unwrap();
    assert!(
        ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "redis" && c["ok"] == true)
    );
}

fn rand_octet() -> u8 {
    (uuid::Uuid::now_v7().as_u128() % 250) as u8 + 1
}

/// A user sees their sessions with device and address, and signs one out from another; that
/// session stops working at once. Another user's session id is a 404.
#[tokio::test]
async fn sessions_are_listed_and_can_be_signed_out_individually() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let r = app
        .client
        .post(app.url("/api/auth/login"))
        .header("user-agent", "Phone/2.0")
        .json(&json!({"login": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let phone: Value = r.json().await.unwrap();
    let phone_token = phone["access_token"].as_str().unwrap().to_string();
    let list: Value = app
        .get("/api/auth/sessions", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let phone_session = sessions
        .iter()
        .find(|s| s["device"] == "Phone/2.0")
        .unwrap();
    assert_eq!(phone_session["current"], false);
    assert_eq!(
        phone_session["device_name"], "Phone",
        "an unknown client by its name"
    );
    assert_eq!(phone_session["ip"], "127.0.0.1");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let id = phone_session["id"].as_str().unwrap();
    // Not mallory's to end.
    let r = app
        .delete(&format!("/api/auth/sessions/{id}"), Some(&mallory.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/auth/me", Some(&phone_token)).await.status(),
        StatusCode::OK
    );
    let r = app
        .delete(&format!("/api/auth/sessions/{id}"), Some(&alice.token))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/auth/me", Some(&phone_token)).await.status(),
        StatusCode::UNAUTHORIZED,
        "the signed-out device is out at once"
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&alice.token)).await.status(),
        StatusCode::OK
    );
    let r = app
        .delete(&format!("/api/auth/sessions/{id}"), Some(&alice.token))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "already ended");
}

#[tokio::test]
async fn guessable_passwords_are_refused_and_the_meter_is_told_why() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| c.rate_limit.strength_checks_per_ip_per_minute = 5).await;
    let strength = |password: &str, username: &str| {
        app.post(
            "/api/auth/password-strength",
            json!({"password": password, "username": username, "email": "kim@example.com"}),
            None,
        )
    };
    // Character classes are not strength: a dressed-up common password is weak, a phrase strong.
    let r = strength("Password123!", "kim").await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert!(b["score"].as_u64().unwrap() < 2, "{b}");
    assert_eq!(b["acceptable"], false);
    assert!(b["warning"].as_str().unwrap().contains("common"), "{b}");
    let b: Value = strength("aaaaaaaaaaaa", "kim").await.json().await.unwrap();
    assert_eq!(
        (b["score"].as_u64(), b["label"].as_str()),
        (Some(0), Some("Very weak"))
    );
    let b: Value = strength("Tangerine-Glacier-Orbit-7", "kim")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (b["score"].as_u64(), b["acceptable"].as_bool()),
        (Some(4), Some(true))
    );
    // The user's own name is a known word.
    let b: Value = strength("Xylophrax1987", "Xylophrax")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["acceptable"], false, "{b}");

    // Registration refuses what the meter calls weak, naming the field, and creates nothing.
    let r = app
        .post(
            "/api/auth/register",
            json!({"username": "kim", "email": "kim@example.com", "password": "Password123!"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(
        body.to_string().contains("too easy to guess"),
        "the reason is given: {body}"
    );
    assert!(!body.to_string().contains("Password123!"), "never echoed");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = 'kim'")
            .await,
        0
    );

    // Estimates are limited per address.
    let r = strength("Another-Try-42", "kim").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = strength("Another-Try-43", "kim").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}
