//! Two-factor authentication (codes from `oathtool`), email verification and password reset
//! (mail read from the file outbox, or received by a real SMTP server, aiosmtpd).

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn challenge(app: &TestApp, login: &str) -> String {
    let r = app.login(login, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get_all("set-cookie").iter().next().is_none(),
        "no cookie before the second factor"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["two_factor_required"], true);
    assert!(
        body.get("access_token").is_none(),
        "no token before the code"
    );
    body["challenge_token"].as_str().unwrap().to_string()
}

async fn second_step(app: &TestApp, challenge: &str, code: &str) -> reqwest::Response {
    app.post(
        "/api/auth/login/2fa",
        json!({"challenge_token": challenge, "code": code}),
        None,
    )
    .await
}

async fn backup_left(app: &TestApp, token: &str) -> i64 {
    let s: Value = app
        .get("/api/auth/2fa/status", Some(token))
        .await
        .json()
        .await
        .unwrap();
    s["backup_codes_remaining"].as_i64().unwrap()
}

#[tokio::test]
async fn enrolment_shows_a_qr_code_and_needs_a_correct_code() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let s: Value = app
        .get("/api/auth/2fa/status", Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["enabled"], false);

    let setup: Value = app
        .post("/api/auth/2fa/setup", json!({}), Some(&alice.token))
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160-bit secret in base32");
    let url = setup["otpauth_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/ETX%20Processor:alice?secret="));
    assert!(url.contains(secret));
    let svg = setup["qr_svg"].as_str().unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<path"),
        "{svg:.80}"
    );

    // A wrong code changes nothing; the stored secret is sealed, never the plain one.
    let r = app
        .post(
            "/api/auth/2fa/verify",
            json!({"code": "000000"}),
            Some(&alice.token),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
    );
    let sealed = app
        .count(
            "SELECT COUNT(*) FROM two_factor WHERE secret_sealed LIKE 'v1.%' AND enabled = FALSE",
        )
        .await;
    assert_eq!(sealed, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM two_factor WHERE secret_sealed LIKE '%{secret}%'"
        ))
        .await,
        0
    );
    // Login is still password-only while set-up is unconfirmed.
    let r: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
    assert!(r["access_token"].is_string());

    let r = app
        .post(
            "/api/auth/2fa/verify",
            json!({"code": totp(secret, 0)}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let codes = body["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert_eq!(backup_left(&app, &alice.token).await, 10);
    // Only hashes are stored.
    let plain = codes[0].as_str().unwrap().replace('-', "");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM backup_codes WHERE code_hash LIKE '%{plain}%'"
        ))
        .await,
        0
    );
    // Setting up again while on is refused; the secret in use stays.
    let r = app
        .post("/api/auth/2fa/setup", json!({}), Some(&alice.token))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn login_needs_a_fresh_code_and_each_code_works_once() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (secret, backup) = two_factor_on(&app, &alice).await;

    // The code used to enrol (this time step) is spent: it cannot sign in.
    let ch = challenge(&app, "alice").await;
    let r = second_step(&app, &ch, &totp(&secret, 0)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = second_step(&app, &ch, &totp(&secret, -1)).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "an older step neither"
    );
    // The next step's code (within the ±1 window) signs in.
    let next = totp(&secret, 1);
    let r = second_step(&app, &ch, &next).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        app.get("/api/auth/me", Some(&token)).await.status(),
        StatusCode::OK
    );
    // The challenge is used up, and the code too.
    assert_eq!(
        second_step(&app, &ch, &backup[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let ch2 = challenge(&app, "alice").await;
    assert_eq!(
        second_step(&app, &ch2, &next).await.status(),
        StatusCode::UNAUTHORIZED,
        "a code is never accepted twice"
    );
    // Two steps ahead is outside the window.
    assert_eq!(
        second_step(&app, &ch2, &totp(&secret, 3)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A backup code (any case, dashes optional) works once.
    let ch3 = challenge(&app, "alice").await;
    let typed = backup[1].to_uppercase().replace('-', " ");
    assert_eq!(
        second_step(&app, &ch3, &typed).await.status(),
        StatusCode::OK
    );
    assert_eq!(backup_left(&app, &token).await, 9);
    let ch4 = challenge(&app, "alice").await;
    assert_eq!(
        second_step(&app, &ch4, &backup[1]).await.status(),
        StatusCode::UNAUTHORIZED,
        "a backup code is single-use"
    );
    // The audit trail names the factor.
    let n = app
        .count("SELECT (SELECT COUNT(*) FROM audit_outbox WHERE action = 'auth.login' AND details LIKE '%backup_code%') + (SELECT COUNT(*) FROM audit_log WHERE action = 'auth.login' AND details LIKE '%backup_code%')")
        .await;
    assert_eq!(n, 1);
}

#[tokio::test]
async fn five_wrong_codes_void_the_challenge() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (_, backup) = two_factor_on(&app, &alice).await;
    let ch = challenge(&app, "alice").await;
    for guess in ["111111", "222222", "333333", "444444", "555555"] {
        assert_eq!(
            second_step(&app, &ch, guess).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = second_step(&app, &ch, &backup[0]).await;
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sign in again"),
        "{body}"
    );
    // Five wrong codes are five failed sign-ins: the account is locked, even with the right
    // password, and its owner is told.
    let r = app.login("alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mail = app.mail_to(&alice.email, 2).await;
    assert!(
        mail.iter().any(|m| m.contains("Failed sign-in codes")),
        "{mail:?}"
    );
    // Fifteen minutes later (the lock run out), the correct code was never tried against the
    // void challenge, so it is still usable.
    app.exec("UPDATE users SET locked_until = 1").await;
    let ch = challenge(&app, "alice").await;
    assert_eq!(
        second_step(&app, &ch, &backup[0]).await.status(),
        StatusCode::OK
    );

    // Guesses arriving at once still get five tries in all.
    let ch = challenge(&app, "alice").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (base, ch) = (app.base.clone(), ch.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/api/auth/login/2fa"))
                .json(&json!({"challenge_token": ch, "code": format!("{:06}", 900_000 + i)}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.count("SELECT CAST(MAX(attempts) AS BIGINT) FROM login_challenges")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT CAST(failed_logins AS BIGINT) FROM users WHERE username = 'alice'")
            .await,
        5,
        "each wrong code counted once, however they raced"
    );
}

#[tokio::test]
async fn expired_challenges_and_suspended_users_get_no_session() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("root", "admin").await;
    let alice = app.register("alice").await;
    let (_, backup) = two_factor_on(&app, &alice).await;

    let ch = challenge(&app, "alice").await;
    app.exec("UPDATE login_challenges SET expires_at = 0").await;
    assert_eq!(
        second_step(&app, &ch, &backup[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let ch = challenge(&app, "alice").await;
    let r = app
        .put(
            &format!("/api/users/{}", alice.id),
            json!({"is_active": false}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        second_step(&app, &ch, &backup[1]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND user_id = (SELECT id FROM users WHERE username = 'alice')")
            .await,
        0
    );
    // A made-up challenge is refused the same way as a dead one.
    assert_eq!(
        second_step(&app, "not-a-challenge", "123456")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn backup_codes_regenerate_and_disabling_needs_password_and_code() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (secret, old) = two_factor_on(&app, &alice).await;

    let r = app
        .post(
            "/api/auth/2fa/backup-codes",
            json!({"code": "123456"}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/2fa/backup-codes",
            json!({"code": totp(&secret, 1)}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let new: Value = r.json().await.unwrap();
    let new: Vec<String> = new["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(new.len(), 10);
    let ch = challenge(&app, "alice").await;
    assert_eq!(
        second_step(&app, &ch, &old[0]).await.status(),
        StatusCode::UNAUTHORIZED,
        "old backup codes stop working"
    );

    for (password, code) in [
        ("Wr0ng-Passphrase", new[0].as_str()),
        (PASSWORD, "abcde-fghjk"),
    ] {
        let r = app
            .post(
                "/api/auth/2fa/disable",
                json!({"password": password, "code": code}),
                Some(&alice.token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = app
        .post(
            "/api/auth/2fa/disable",
            json!({"password": PASSWORD, "code": new[0]}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
    assert!(r["access_token"].is_string(), "password alone again");
    assert_eq!(app.count("SELECT COUNT(*) FROM backup_codes").await, 0);
}

#[tokio::test]
async fn email_is_verified_by_link_or_by_code() {
    let app = TestApp::spawn().await;
    let bob = app.register("bob").await;
    let mail = app.mail_to("bob@example.com", 1).await;
    let raw = &mail[0];
    assert!(raw.contains("Subject: Confirm your email address"));
    assert!(raw.contains("text/html"), "plain text and HTML");
    let text = plain_text_part(raw);
    let code = six_digit_code(&text[text.find("code").unwrap()..]);
    let me: Value = app
        .get("/api/auth/me", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_verified"], false);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = app
        .post(
            "/api/auth/verify-email/code",
            json!({"code": wrong}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/verify-email/code",
            json!({"code": code}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = app
        .get("/api/auth/me", Some(&bob.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_verified"], true);
    // The link from the same mail is now used up too.
    let token = link_param(&text, "/verify-email?", "token");
    let r = app
        .post("/api/auth/verify-email", json!({"token": token}), None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Carol follows the link in her mail, as a mail client would open it.
    let carol = app.register("carol").await;
    let text = plain_text_part(&app.mail_to("carol@example.com", 1).await[0]);
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/verify-email?token="))
        .unwrap()
        .to_string();
    assert!(link.starts_with(&app.base), "{link}");
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("verified"));
    let me: Value = app
        .get("/api/auth/me", Some(&carol.token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_verified"], true);
    let again = app.client.get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "a link works once");
}

#[tokio::test]
async fn verification_codes_resist_guessing_and_links_expire() {
    let app = TestApp::spawn().await;
    let dan = app.register("dan").await;
    let text = plain_text_part(&app.mail_to("dan@example.com", 1).await[0]);
    let code = six_digit_code(&text[text.find("code").unwrap()..]);
    let mut wrong = 0;
    for g in 0..10u32 {
        let guess = format!("{:06}", 123_450 + g);
        if guess == code {
            continue;
        }
        let r = app
            .post(
                "/api/auth/verify-email/code",
                json!({"code": guess}),
                Some(&dan.token),
            )
            .await;
        if wrong < 5 {
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        } else {
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the code is used up");
        }
        wrong += 1;
    }
    let r = app
        .post(
            "/api/auth/verify-email/code",
            json!({"code": code}),
            Some(&dan.token),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "even the right code, after five wrong"
    );

    // A new mail brings a new code and link; the old link is dead.
    let old = link_param(&text, "/verify-email?", "token");
    let r = app
        .post("/api/auth/resend-verification", json!({}), Some(&dan.token))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mails = app.mail_to("dan@example.com", 2).await;
    let text = plain_text_part(&mails[1]);
    let new = link_param(&text, "/verify-email?", "token");
    assert_ne!(old, new);
    let r = app
        .post("/api/auth/verify-email", json!({"token": old}), None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Expiry: the link stops working; the account is untouched.
    app.exec("UPDATE email_tokens SET expires_at = 0").await;
    let r = app
        .post("/api/auth/verify-email", json!({"token": new}), None)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = 'dan'")
            .await,
        1
    );
    // The store holds hashes, never the token.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM email_tokens WHERE token_hash = '{new}'"
        ))
        .await,
        0
    );

    // A new address needs verifying again, and the mail goes there.
    app.verify(&dan).await;
    let r = app
        .put(
            "/api/auth/me",
            json!({"email": "dan@new.example.com", "current_password": PASSWORD}),
            Some(&dan.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["is_verified"], false);
    let text = plain_text_part(&app.mail_to("dan@new.example.com", 1).await[0]);
    let t = link_param(&text, "/verify-email?", "token");
    let r = app
        .post("/api/auth/verify-email", json!({"token": t}), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// aiosmtpd (from PyPI) listening on a free port, storing what it receives in a maildir.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let maildir = std::env::temp_dir().join(format!("etx-smtp-{}", uuid::Uuid::now_v7()));
        for attempt in 0..5 {
            let port = closed_port();
            let mut child = std::process::Command::new("python3")
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("python3 with aiosmtpd (pip install aiosmtpd)");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return SmtpServer {
                        child,
                        port,
                        maildir,
                    };
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            eprintln!("aiosmtpd did not come up on port {port} (attempt {attempt}); retrying");
        }
        panic!("aiosmtpd could not be started");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

#[tokio::test]
async fn password_reset_over_smtp() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let app = TestApp::spawn_with(|c| {
        smtp_on(c, port);
        c.rate_limit.forgot_password_per_ip_per_minute = 100;
    })
    .await;
    let admin = app.user_with_role("root", "admin").await;
    let alice = app.register("alice").await;
    let second: Value = app.login("alice", PASSWORD).await.json().await.unwrap();
    let second = second["access_token"].as_str().unwrap().to_string();
    // Lock the account with wrong passwords; a reset lifts the lock.
    for _ in 0..5 {
        app.login("alice", "Wr0ng-Passphrase").await;
    }
    assert_eq!(
        app.login("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Same answer for a registered and an unknown address, and no mail for the unknown one.
    let known = app
        .post(
            "/api/auth/forgot-password",
            json!({"email": "ALICE@example.com"}),
            None,
        )
        .await;
    let known = (known.status(), known.text().await.unwrap());
    let unknown = app
        .post(
            "/api/auth/forgot-password",
            json!({"email": "nobody@example.com"}),
            None,
        )
        .await;
    let unknown = (unknown.status(), unknown.text().await.unwrap());
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(known, unknown);

    let new_dir = smtp.maildir.join("new");
    let mails = wait_mail(&new_dir, "alice@example.com", 2).await;
    let reset = mails
        .iter()
        .find(|m| m.contains("Subject: Reset your password"))
        .expect("reset mail received over SMTP");
    assert!(
        etx_core::mail::header_value(reset, "From").contains("<no-reply@localhost>"),
        "{reset}"
    );
    let text = plain_text_part(reset);
    let token = link_param(&text, "/reset-password?", "token");
    let all = std::fs::read_dir(&new_dir).unwrap().count();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(all, std::fs::read_dir(&new_dir).unwrap().count());
    assert!(
        !std::fs::read_dir(&new_dir)
            .unwrap()
            .any(|e| std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .contains("nobody@")),
        "nothing is sent to an unregistered address"
    );

    let v: Value = app
        .get(&format!("/api/auth/validate-reset-token/{token}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], true);
    // A weak password is refused and the token survives.
    let r = app
        .post(
            "/api/auth/reset-password",
            json!({"token": token, "new_password": "weak"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/reset-password",
            json!({"token": token, "new_password": "N3w-Passphrase!"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    for t in [&alice.token, &second] {
        assert_eq!(
            app.get("/api/auth/me", Some(t)).await.status(),
            StatusCode::UNAUTHORIZED,
            "a reset signs out every session"
        );
    }
    assert_eq!(
        app.login("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("alice", "N3w-Passphrase!").await.status(),
        StatusCode::OK,
        "new password works and the lock is lifted"
    );
    // Reuse.
    let r = app
        .post(
            "/api/auth/reset-password",
            json!({"token": token, "new_password": "An0ther-Passphrase!"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = app
        .get(&format!("/api/auth/validate-reset-token/{token}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["valid"], false);

    // Expiry.
    app.post(
        "/api/auth/forgot-password",
        json!({"email": "alice@example.com"}),
        None,
    )
    .await;
    let mails = wait_mail(&new_dir, "alice@example.com", 3).await;
    let token = link_param(&plain_text_part(&mails[2]), "/reset-password?", "token");
    app.exec("UPDATE email_tokens SET expires_at = 0 WHERE purpose = 'reset'")
        .await;
    let r = app
        .post(
            "/api/auth/reset-password",
            json!({"token": token, "new_password": "An0ther-Passphrase!"}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Sent mail keeps no body (it carried the link); admins see what was sent.
    let q: Value = app
        .get("/api/admin/emails?status=sent", Some(&admin.token))
        .await
        .json()
        .await
        .unwrap();
    let items = q["items"].as_array().unwrap();
    assert!(items.iter().any(|m| m["template"] == "reset_password"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE sent_at IS NOT NULL AND (body_text <> '' OR body_html <> '')")
            .await,
        0
    );
    assert_eq!(
        app.get("/api/admin/emails", Some(&alice.token))
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "alice's old token is dead"
    );
}

#[tokio::test]
async fn forgot_password_answers_alike_in_time_for_known_and_unknown_addresses() {
    let app = TestApp::spawn_with(|c| c.rate_limit.forgot_password_per_ip_per_minute = 1000).await;
    app.register("alice").await;
    async fn median(app: &TestApp, email: &str) -> std::time::Duration {
        let mut v = Vec::new();
        for _ in 0..15 {
            let t = std::time::Instant::now();
            let r = app
                .post("/api/auth/forgot-password", json!({"email": email}), None)
                .await;
            v.push(t.elapsed());
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        v.sort();
        v[v.len() / 2]
    }
    let known = median(&app, "alice@example.com").await;
    let unknown = median(&app, "nobody@example.com").await;
    let gap = known.abs_diff(unknown);
    // The lookup and the mail happen after the answer, so the two differ by noise only.
    assert!(
        gap < std::time::Duration::from_millis(25),
        "known {known:?} vs unknown {unknown:?}"
    );
}

#[tokio::test]
async fn mail_that_cannot_be_delivered_is_retried_then_shown_to_admins_as_failed() {
    let app = TestApp::spawn_with(|c| {
        smtp_on(c, closed_port());
        c.email.max_attempts = 1;
    })
    .await;
    let admin = app.user_with_role("root", "admin").await;
    // Registration does not wait for the mail and succeeds.
    app.register("erin").await;
    let mut failed = Value::Null;
    for _ in 0..100 {
        failed = app
            .get("/api/admin/emails?status=failed", Some(&admin.token))
            .await
            .json()
            .await
            .unwrap();
        if failed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["to"] == "erin@example.com")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = failed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == "erin@example.com")
        .unwrap_or_else(|| panic!("no failed mail to erin: {failed}"));
    assert_eq!(m["attempts"], 1);
    assert!(m["last_error"].as_str().unwrap().len() > 3, "{m}");
    assert!(m.get("body_text").is_none());
    let moderator = app.user_with_role("mod", "moderator").await;
    assert_eq!(
        app.get("/api/admin/emails", Some(&moderator.token))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = app
        .get("/api/admin/emails?status=lost", Some(&admin.token))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn code_guesses_from_many_addresses_share_one_budget_per_account() {
    away_from_a_minute_edge().await;
    let app = TestApp::spawn_with(|c| {
        c.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        // The lock-out would end this long before the per-minute budget; that is tested apart.
        c.auth.lockout_threshold = 1000;
    })
    .await;
    let alice = app.register("alice").await;
    two_factor_on(&app, &alice).await;
    let limit = app.state.config.rate_limit.two_factor_per_ip_per_minute;
    let from = |ip: String, path: &str, body: Value| {
        app.client
            .post(app.url(path))
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
    };
    let mut statuses = Vec::new();
    for c in 0..6 {
        let r: Value = from(
            format!("10.0.0.{c}"),
            "/api/auth/login",
            json!({"login": "alice", "password": PASSWORD}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let ch = r["challenge_token"].as_str().unwrap().to_string();
        for g in 0..5 {
            let r = from(
                format!("10.1.{c}.{g}"),
                "/api/auth/login/2fa",
                json!({"challenge_token": ch, "code": format!("{:06}", 100_000 + c * 10 + g)}),
            )
            .await
            .unwrap();
            statuses.push(r.status());
        }
    }
    let allowed = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    // Enrolling (set-up and confirmation) spent two of the minute's budget.
    let budget = limit - 2;
    assert_eq!(allowed as u32, budget, "{statuses:?}");
    assert!(
        statuses[budget as usize..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
}
