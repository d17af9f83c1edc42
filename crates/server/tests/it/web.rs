//! The server-rendered pages driven over HTTP with a cookie-keeping client, as a browser would.

use crate::support::*;
use reqwest::StatusCode;

/// Cookie jars follow host names, so pages are visited as `localhost` like a person would.
fn at(app: &TestApp, path: &str) -> String {
    app.url(path).replace("127.0.0.1", "localhost")
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap()
}

/// The value of the hidden CSRF field on a page.
fn csrf_of(html: &str) -> String {
    let needle = "name=\"csrf_token\" value=\"";
    let i = html.find(needle).expect("form has a csrf field") + needle.len();
    html[i..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn register_home_profile_logout_through_pages() {
    let app = TestApp::spawn().await;
    let b = browser();
    // Anonymous visitors land on the login page.
    let r = b.get(at(&app, "/")).send().await.unwrap();
    assert!(r.url().path().ends_with("/login"));
    let page = b
        .get(at(&app, "/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    // Mismatched confirmation is shown inline and creates nothing.
    let r = b
        .post(at(&app, "/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "webby"),
            ("email", "webby@example.com"),
            ("password", PASSWORD),
            ("confirm_password", "nope"),
            ("terms", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("does not match"));
    // The field in error is marked for assistive technology and points at its message; the
    // others are not.
    assert!(
        html.contains("aria-describedby=\"confirm-err\" aria-invalid=\"true\">"),
        "{html}"
    );
    assert!(html.contains("<small id=\"confirm-err\" class=\"error\">"));
    assert_eq!(html.matches("aria-invalid=\"true\"").count(), 1);
    // A guessable password is marked as the password's error, with the reason.
    let r = b
        .post(at(&app, "/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "webby"),
            ("email", "webby@example.com"),
            ("password", "Password123!"),
            ("confirm_password", "Password123!"),
            ("terms", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<small id=\"password-err\" class=\"error\">Password is too easy to guess")
            || html.contains("<small id=\"password-err\" class=\"error\">is too easy to guess"),
        "{html}"
    );
    assert!(html.contains("data-strength-from=\"username email\" aria-invalid=\"true\">"));
    let r = b
        .post(at(&app, "/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "webby"),
            ("email", "webby@example.com"),
            ("password", PASSWORD),
            ("confirm_password", PASSWORD),
            ("terms", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let home = r.text().await.unwrap();
    assert!(
        home.contains("webby") && home.contains("Level") && home.contains("<progress"),
        "{home}"
    );
    // Profile edit.
    let page = b
        .get(at(&app, "/profile"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post(at(&app, "/profile"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "webby"),
            ("email", "webby@example.com"),
            ("name", "Web Person"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Web Person"));
    // A form without the token changes nothing.
    let r = b
        .post(at(&app, "/profile"))
        .form(&[("username", "hijacked"), ("email", "webby@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Avatar through the page form.
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(png(40, 40))
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let r = b
        .post(at(&app, "/profile/avatar"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Your avatar was updated") && html.contains("/avatar?v="),
        "{html}"
    );
    // A photo of more than a megabyte but within the 5 MB the page allows.
    let photo = {
        use image::ImageEncoder;
        let mut x = 0x2545_f491_u32;
        let pixels: Vec<u8> = (0..800 * 600 * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&pixels, 800, 600, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    };
    assert!(photo.len() > 1 << 20, "{} bytes", photo.len());
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(photo)
                .file_name("photo.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let r = b
        .post(at(&app, "/profile/avatar"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("Your avatar was updated"), "{html}");
    // List pages take any `skip` without failing.
    for page in [
        "/transactions?skip=9223372036854775807",
        "/transactions?skip=-5",
    ] {
        let r = b.get(at(&app, page)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{page}");
    }
    // Logout ends the session.
    let r = b
        .post(at(&app, "/logout"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.url().path().ends_with("/login"));
    let r = b.get(at(&app, "/profile")).send().await.unwrap();
    assert!(r.url().path().ends_with("/login"));
}

#[tokio::test]
async fn login_page_errors_inline_and_refreshes_expired_access() {
    let app = TestApp::spawn().await;
    app.register("pager").await;
    let b = browser();
    let page = b
        .get(at(&app, "/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post(at(&app, "/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("login", "pager"),
            ("password", "Wrong-Pass-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(html.contains("Invalid credentials") && html.contains("value=\"pager\""));
    let r = b
        .post(at(&app, "/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("login", "pager"),
            ("password", PASSWORD),
            ("remember_me", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("pager"));
    // With only the refresh cookie (the access cookie has lapsed), a page load signs in again.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login: serde_json::Value = app.login("pager", PASSWORD).await.json().await.unwrap();
    let r = plain
        .get(app.url("/"))
        .header(
            "cookie",
            format!("refresh_token={}", login["refresh_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("access_token=ey")),
        "{set:?}"
    );
}

#[tokio::test]
async fn static_assets_and_unknown_pages() {
    let app = TestApp::spawn().await;
    let r = app.get("/static/app.css", None).await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        app.get("/static/nope.js", None).await.status(),
        StatusCode::NOT_FOUND
    );
    let r = app.get("/no/such/page", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("Page not found"));
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let i = html.find(&needle).expect("hidden field present") + needle.len();
    html[i..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn wallet_page_sends_once_per_form_and_lists_history() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("bank", "admin").await;
    let alice = app.register("wall_alice").await;
    let bob = app.register("wall_bob").await;
    app.verify(&alice).await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "50").await;
    let b = browser();
    let login = b
        .get(at(&app, "/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&login);
    b.post(at(&app, "/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("login", "wall_alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let home = b
        .get(at(&app, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("50.00") && home.contains("adjustment"),
        "home shows balances and recent activity"
    );
    let page = b
        .get(at(&app, "/wallet"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let key = hidden(&page, "idempotency_key");
    let form = [
        ("csrf_token", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("recipient", "wall_bob"),
        ("amount", "12.34"),
        ("currency", "USD"),
        ("note", "<b>rent</b>"),
    ];
    // The form leads to a review that says whom, how much and the balance after; nothing
    // moves until it is confirmed.
    let r = b
        .post(at(&app, "/wallet/transfer"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let review = r.text().await.unwrap();
    assert!(
        review.contains("Send 12.34 USD to wall_bob?")
            && review.contains("50.00 USD → 37.66 USD")
            && review.contains("name=\"confirm\" value=\"yes\""),
        "{review}"
    );
    assert!(!review.contains("<b>rent</b>"), "notes are escaped");
    assert_ne!(
        app.balances(&bob).await.get("USD").map(String::as_str),
        Some("12.34"),
        "nothing moves before the confirmation"
    );
    // "Change" goes back to the form with the values kept.
    let mut edit = form.to_vec();
    edit.push(("edit", "1"));
    let back = b
        .post(at(&app, "/wallet/transfer"))
        .form(&edit)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(back.contains("value=\"12.34\"") && back.contains(">Review</button>"));
    let mut form = form.to_vec();
    form.push(("confirm", "yes"));
    let r = b
        .post(at(&app, "/wallet/transfer"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Money sent.") && html.contains("37.66"),
        "{html}"
    );
    assert!(
        html.contains("rent") && !html.contains("<b>rent</b>"),
        "notes are escaped"
    );
    // Submitting the same rendered form again (double click, back button) sends nothing more.
    b.post(at(&app, "/wallet/transfer"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(app.balances(&bob).await["USD"], "12.34");
    // Errors are shown on the page and move nothing.
    let page = b
        .get(at(&app, "/wallet"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = hidden(&page, "idempotency_key");
    let r = b
        .post(at(&app, "/wallet/transfer"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("idempotency_key", key.as_str()),
            ("recipient", "wall_bob"),
            ("amount", "500"),
            ("currency", "USD"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("insufficient funds"));
    let tx = b
        .get(at(&app, "/transactions?type=p2p"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tx.contains("wall_bob")
            && tx.contains("1 matching")
            && tx.contains("format=csv&amp;type=p2p"),
        "{tx}"
    );
    let csv = b
        .get(at(&app, "/api/transactions/export?format=csv&type=p2p"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.trim_end().split("\r\n").count(), 2);
}

/// Signs `login` in through the login form; returns the browser holding the session cookies.
async fn signed_in(app: &TestApp, login: &str) -> reqwest::Client {
    let b = browser();
    let page = b
        .get(at(app, "/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let r = b
        .post(at(app, "/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("login", login),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    b
}

#[tokio::test]
async fn staff_read_the_audit_log_page_and_users_cannot() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "12.00").await;
    app.state.db.chain_all_audit().await.unwrap();

    let staff = signed_in(&app, "watcher").await;
    let home = staff
        .get(at(&app, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("href=\"/admin/audit\""),
        "staff see the Audit entry"
    );
    let r = staff
        .get(at(
            &app,
            "/admin/audit?action=wallet.adjust&actor=treasurer",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("1 matching records"), "{html}");
    assert!(html.contains("wallet.adjust") && html.contains(&alice.id));
    assert!(
        html.contains("<dt>After</dt><dd>12.00</dd>"),
        "details are a readable list: {html}"
    );
    assert!(!html.contains("&#34;after&#34;"), "not raw JSON");
    assert!(!html.contains("auth.register"), "filtered by action");

    let user = signed_in(&app, "alice").await;
    let home = user
        .get(at(&app, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!home.contains("/admin/audit"));
    let r = user.get(at(&app, "/admin/audit")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sessions_page_signs_another_device_out() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let b = signed_in(&app, "alice").await;
    let page = b
        .get(at(&app, "/profile/sessions"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("(this session)"));
    // The registration session is the other one listed.
    let other = app.state.db.list_sessions(&alice.id).await.unwrap();
    assert_eq!(other.len(), 2);
    let csrf = csrf_of(&page);
    // The registration's session is the older one.
    let api_session = other.iter().min_by_key(|s| s.created_at).unwrap();
    assert!(page.contains(&format!("/profile/sessions/{}/end", api_session.id)));
    let r = b
        .post(at(
            &app,
            &format!("/profile/sessions/{}/end", api_session.id),
        ))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("That session was signed out.")
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&alice.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Without the form's token nothing happens.
    let r = b
        .post(at(&app, "/profile/sessions/whatever/end"))
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// A page that fails answers with the HTML error page and the status the API would give, never
/// with the API's JSON error body.
#[tokio::test]
async fn a_failed_page_action_answers_with_an_html_page() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let bob = app.register("bob").await;
    let b = signed_in(&app, "alice").await;
    let page = page_text(&b, at(&app, "/profile/sessions")).await;
    let csrf = csrf_of(&page);
    // Bob's session is not Alice's to end.
    let bobs = app.state.db.list_sessions(&bob.id).await.unwrap();
    let r = b
        .post(at(&app, &format!("/profile/sessions/{}/end", bobs[0].id)))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/html"), "{kind}");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Not found") && !html.contains("\"error\""),
        "{html}"
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&bob.token)).await.status(),
        StatusCode::OK,
        "Bob stays signed in"
    );
}

async fn page_text(b: &reqwest::Client, url: String) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

/// The hidden value of `name` in a page's form.
fn hidden_of(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let i = html.find(&needle).expect("form has the field") + needle.len();
    html[i..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn two_factor_is_set_up_and_used_through_pages() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let b = signed_in(&app, "alice").await;
    let page = page_text(&b, at(&app, "/security")).await;
    assert!(page.contains("id=\"tfa-status\"><strong>Off."), "{page}");
    let r = b
        .post(at(&app, "/security/2fa/setup"))
        .form(&[("csrf_token", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"tfa-qr\"><svg"), "QR drawn inline");
    let i = page.find("id=\"tfa-secret\">").unwrap() + "id=\"tfa-secret\">".len();
    let secret = page[i..].split('<').next().unwrap().to_string();
    // A wrong code keeps the QR code on screen with a message.
    let r = b
        .post(at(&app, "/security/2fa/verify"))
        .form(&[("csrf_token", csrf_of(&page).as_str()), ("code", "000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let again = r.text().await.unwrap();
    assert!(again.contains("is incorrect") && again.contains(&secret));
    let r = b
        .post(at(&app, "/security/2fa/verify"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("code", totp(&secret, 0).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("<strong>On</strong>") && page.contains("10 backup codes left"));
    assert!(page.contains("download=\"etx-backup-codes.txt\""));
    let first = page
        .split("<li><code>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(first.len(), 11, "{first}");
    // Shown once: a reload lists no codes.
    assert!(
        !page_text(&b, at(&app, "/security"))
            .await
            .contains("<li><code>")
    );

    // A new browser: the password leads to the code step, the backup code signs in.
    let b2 = browser();
    let login = page_text(&b2, at(&app, "/login")).await;
    let r = b2
        .post(at(&app, "/login"))
        .form(&[
            ("csrf_token", csrf_of(&login).as_str()),
            ("login", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let step = r.text().await.unwrap();
    assert!(step.contains("Two-factor code"), "{step}");
    assert_eq!(
        b2.get(at(&app, "/")).send().await.unwrap().url().path(),
        "/login",
        "not signed in before the code"
    );
    let r = b2
        .post(at(&app, "/login/2fa"))
        .form(&[
            ("csrf_token", csrf_of(&step).as_str()),
            (
                "challenge_token",
                hidden_of(&step, "challenge_token").as_str(),
            ),
            ("code", "999999"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("That code is not right"));
    let r = b2
        .post(at(&app, "/login/2fa"))
        .form(&[
            ("csrf_token", csrf_of(&step).as_str()),
            (
                "challenge_token",
                hidden_of(&step, "challenge_token").as_str(),
            ),
            ("code", first.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().path(), "/");
    let page = page_text(&b2, at(&app, "/security")).await;
    assert!(page.contains("9 backup codes left"), "{page}");

    // Turning it off needs the password and a code.
    let r = b2
        .post(at(&app, "/security/2fa/disable"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("password", PASSWORD),
            ("code", first.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "used backup code"
    );
    let r = b2
        .post(at(&app, "/security/2fa/disable"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("password", PASSWORD),
            ("code", totp(&secret, 1).as_str()),
        ])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Two-factor authentication is off."), "{page}");
}

#[tokio::test]
async fn forgotten_password_is_reset_through_pages_and_mail_is_readable_by_admins_in_dev() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let b = browser();
    let page = page_text(&b, at(&app, "/login")).await;
    assert!(page.contains("href=\"/forgot-password\""));
    let page = page_text(&b, at(&app, "/forgot-password")).await;
    let r = b
        .post(at(&app, "/forgot-password"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("email", "alice@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("id=\"forgot-sent\""));
    let mails = app.mail_to("alice@example.com", 2).await;
    let reset = mails.iter().find(|m| m.contains("reset-password")).unwrap();
    let token = link_param(&plain_text_part(reset), "/reset-password?", "token");

    // The dev outbox page shows the mail, decoded, link included, to an admin.
    app.user_with_role("root", "admin").await;
    let admin = signed_in(&app, "root").await;
    let outbox = page_text(&admin, at(&app, "/dev/mail")).await;
    assert!(outbox.contains("Reset your password") && outbox.contains(&token));

    let url = at(&app, &format!("/reset-password?token={token}"));
    let page = page_text(&b, url.clone()).await;
    let r = b
        .post(at(&app, "/reset-password"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("token", token.as_str()),
            ("new_password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"reset-error\""));
    let r = b
        .post(at(&app, "/reset-password"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("token", token.as_str()),
            ("new_password", "N3w-Passphrase!"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().path(), "/login");
    assert!(r.text().await.unwrap().contains("Log in with the new one"));
    assert_eq!(
        app.login("alice", "N3w-Passphrase!").await.status(),
        StatusCode::OK
    );
    let r = b.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Ask for a new one"));
}

/// Everyone's mail, reset links included, is on the dev outbox page: even in dev only admins
/// see it.
#[tokio::test]
async fn the_dev_outbox_is_for_admins_only() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    app.user_with_role("root", "admin").await;
    app.mail_to("alice@example.com", 1).await;

    let r = app.get("/dev/mail", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    let r = browser().get(at(&app, "/dev/mail")).send().await.unwrap();
    assert_eq!(r.url().path(), "/login", "a visitor is sent to log in");
    assert!(!r.text().await.unwrap().contains("alice@example.com"));

    let alice = signed_in(&app, "alice").await;
    let r = alice.get(at(&app, "/dev/mail")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!r.text().await.unwrap().contains("alice@example.com"));

    let admin = signed_in(&app, "root").await;
    let r = admin.get(at(&app, "/dev/mail")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("alice@example.com"));
}

#[tokio::test]
async fn the_dev_outbox_page_does_not_exist_in_production() {
    let app = TestApp::spawn_with(|c| {
        c.env = etx_core::config::RunEnv::Production;
        c.public_url = Some("https://etx.example.com".into());
    })
    .await;
    let r = app.get("/dev/mail", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_see_mail_that_could_not_be_delivered() {
    let app = TestApp::spawn_with(|c| {
        smtp_on(c, closed_port());
        c.email.max_attempts = 1;
    })
    .await;
    app.user_with_role("root", "admin").await;
    app.register("alice").await;
    let admin = signed_in(&app, "root").await;
    let mut page = String::new();
    for _ in 0..50 {
        page = page_text(&admin, at(&app, "/admin/mail?status=failed")).await;
        if page.contains("alice@example.com") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        page.contains("class=\"mail-failed\"") && page.contains("alice@example.com"),
        "{page}"
    );
    assert!(page.contains("href=\"/admin/mail\""), "nav link for admins");
    let user = signed_in(&app, "alice").await;
    let r = user.get(at(&app, "/admin/mail")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn markets_pages_show_labelled_prices_and_a_drawn_chart() {
    let app = TestApp::spawn_with(|c| {
        c.market.tick_ms = 50;
        c.market.backfill = true;
    })
    .await;
    app.register("alice").await;
    let b = signed_in(&app, "alice").await;
    // A fresh install: the simulated feed's past is filled in at start, a day of 5-minute
    // candles among it.
    let per_symbol: i64 = etx_core::market::BACKFILL.iter().map(|(_, n)| n).sum();
    let expected = per_symbol * app.state.market.symbols.len() as i64;
    let mut filled = 0;
    for _ in 0..400 {
        // Computed candles carry their sample count; recorded ones count ticks from one.
        filled = app
            .count("SELECT COUNT(*) FROM candles WHERE ticks = 60")
            .await;
        if filled >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        filled, expected,
        "every asset's past, {per_symbol} candles each"
    );
    assert!(
        app.count("SELECT COUNT(*) FROM candles WHERE symbol = 'BTC' AND span = '5m'")
            .await
            >= 300
    );

    let page = page_text(&b, at(&app, "/markets")).await;
    assert!(page.contains("Simulated prices"), "the source is labelled");
    assert!(page.contains("data-price=\"BTC\"") && page.contains("href=\"/markets/ETH\""));
    assert_eq!(
        page.matches("<svg class=\"spark ").count(),
        app.state.market.symbols.len(),
        "a sparkline per asset"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    etx_core::market::flush(&app.state).await.unwrap();

    // A day's chart: every slot filled from the first minute, with axes and a grid.
    let page = page_text(&b, at(&app, "/markets/btc?range=1d")).await;
    assert!(page.contains("aria-current=\"page\">1 day<"));
    let data = page
        .split("data-candles=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the candles' figures");
    let n = data.split('|').count();
    assert!((287..=289).contains(&n), "{n} candles over a day");
    assert!(
        page.matches("class=\"grid\"").count() >= 6,
        "price and time grid"
    );
    assert!(page.contains("data-fmt=\"time\""), "a time axis");
    assert!(page.contains("class=\"body up\"") || page.contains("class=\"body down\""));
    // The older interval links still land on the range they suit.
    let page = page_text(&b, at(&app, "/markets/btc?interval=1m")).await;
    assert!(page.contains("aria-current=\"page\">1 hour<"));
    let r = b.get(at(&app, "/markets/DOGE")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An unknown range falls back to a day rather than failing.
    let page = page_text(&b, at(&app, "/markets/BTC?range=7y")).await;
    assert!(page.contains("aria-current=\"page\">1 day<"));

    // Filling in again (another instance, a restart) leaves stored candles as they are.
    app.exec("UPDATE candles SET close = 1 WHERE symbol = 'BTC' AND span = '1d'")
        .await;
    etx_core::market::backfill_simulated(&app.state)
        .await
        .unwrap();
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM candles WHERE symbol = 'BTC' AND span = '1d' AND close <> 1 \
             AND start < (SELECT MAX(start) FROM candles WHERE symbol = 'BTC' AND span = '1d')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn staff_decide_reviews_and_withdrawals_through_pages() {
    let app = TestApp::spawn_with(|c| c.aml.large_amount_usd = "1000".into()).await;
    let admin = app.user_with_role("treasurer", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USDT", "2000").await;

    // Reviewing a withdrawal starts on the user's page: a bad address is explained there.
    let user = signed_in(&app, "alice").await;
    let page = page_text(&user, at(&app, "/withdraw")).await;
    let r = user
        .post(at(&app, "/withdraw/review"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("amount", "1500"),
            ("currency", "USDT"),
            ("address", "0x12"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("Ethereum-style address"));
    let w: serde_json::Value = app
        .money_post(
            "/api/wallet/withdraw",
            Some("big-one"),
            serde_json::json!({"amount": "1500", "currency": "USDT",
                "address": "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"}),
            &alice.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["withdrawal"]["status"], "held");
    let id = w["withdrawal"]["id"].as_str().unwrap().to_string();

    let staff = signed_in(&app, "watcher").await;
    let html = page_text(&staff, at(&app, "/admin/aml")).await;
    assert!(
        html.contains("large_amount") && html.contains("alice"),
        "{html}"
    );
    let flag = app
        .state
        .db
        .flag_of("withdrawal", &id)
        .await
        .unwrap()
        .unwrap();
    let r = staff
        .post(at(&app, &format!("/admin/aml/{}/release", flag.id)))
        .form(&[
            ("csrf_token", csrf_of(&html).as_str()),
            ("reason", "salary, documented"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.url().as_str().ends_with("/admin/aml?msg=decided"));
    assert!(r.text().await.unwrap().contains("Nothing to review"));

    let html = page_text(&staff, at(&app, "/admin/withdrawals")).await;
    assert!(html.contains(&id) && html.contains("pending"), "{html}");
    assert!(
        html.contains(&format!("<a href=\"/admin/users/{}\">alice</a>", alice.id)),
        "the queue names the user: {html}"
    );
    assert!(!html.contains("/complete"), "only admins record payouts");
    let r = staff
        .post(at(&app, &format!("/admin/withdrawals/{id}/approve")))
        .form(&[("csrf_token", csrf_of(&html).as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.url().as_str().ends_with("/admin/withdrawals?msg=decided"));
    assert!(r.text().await.unwrap().contains("processing"));
    // A form without its CSRF token changes nothing.
    let r = staff
        .post(at(&app, &format!("/admin/withdrawals/{id}/reject")))
        .form(&[("reason", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let mine = page_text(&user, at(&app, "/withdraw")).await;
    assert!(mine.contains("processing"));
    for path in ["/admin/aml", "/admin/withdrawals"] {
        let r = user.get(at(&app, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert!(app.state.db.verify_ledger().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_files_page_uploads_a_folder_makes_folders_and_deletes() {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::spawn().await;
    let u = app.register("filer").await;
    app.verify(&u).await;
    let b = signed_in(&app, "filer").await;
    let page = b
        .get(at(&app, "/files"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("This folder is empty."), "{page}");
    let csrf = csrf_of(&page);
    // A folder chosen with the picker arrives with relative paths; larger than the JSON body
    // limit (1 MiB), which uploads do not have.
    let big = vec![b'x'; 3 * 1024 * 1024];
    let form = Form::new()
        .text("csrf_token", csrf.clone())
        .part(
            "file",
            Part::bytes(b"a,b\n".to_vec()).file_name("batch/one.csv"),
        )
        .part("file", Part::bytes(big).file_name("batch/big.txt"));
    let r = b
        .post(at(&app, "/files/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Uploaded."), "{page}");
    assert!(page.contains(">batch/</a>"), "{page}");
    assert!(page.contains("3 MiB of 1 GiB"), "{page}");
    let folder = page
        .split("/files?folder=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let inside = b
        .get(at(&app, &format!("/files?folder={folder}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        inside.contains(">one.csv</a>") && inside.contains(">big.txt</a>"),
        "{inside}"
    );
    // A new folder inside it, and a form without its token.
    let r = b
        .post(at(&app, "/files/folder"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "sub"),
            ("parent", folder.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains(">sub/</a>"));
    let r = b
        .post(at(&app, "/files/folder"))
        .form(&[("csrf_token", "wrong"), ("name", "x"), ("parent", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A name already taken: the page says so and stores nothing.
    let r = b
        .post(at(&app, "/files/upload"))
        .multipart(Form::new().text("csrf_token", csrf.clone()).part(
            "file",
            Part::bytes(b"x".to_vec()).file_name("batch/one.csv"),
        ))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("already exists there"));
    // Deleting the folder takes everything in it.
    let r = b
        .post(at(&app, &format!("/files/{folder}/delete")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Deleted.") && page.contains("This folder is empty."),
        "{page}"
    );
    assert!(page.contains("0 B of 1 GiB"), "{page}");
    // Someone else's folder is not found.
    let other = app.register("other").await;
    app.verify(&other).await;
    let b2 = signed_in(&app, "other").await;
    let r = b2
        .get(at(&app, &format!("/files?folder={folder}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bar_grouping_starts_from_the_files_page_and_its_steps_show_on_the_job_page() {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::spawn().await;
    let u = app.register("jobber").await;
    app.verify(&u).await;
    let b = signed_in(&app, "jobber").await;
    let page = b
        .get(at(&app, "/files"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let form = Form::new()
        .text("csrf_token", csrf.clone())
        .part(
            "file",
            Part::bytes(b"orgFullName,emissionSourceName,v\nAcme,B1,007\n".to_vec())
                .file_name("bar.csv"),
        )
        .part(
            "file",
            Part::bytes(b"hello".to_vec()).file_name("notes.txt"),
        );
    let page = b
        .post(at(&app, "/files/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Only the CSV offers a grouping.
    assert!(page.contains("Group BAR data of bar.csv"), "{page}");
    assert!(!page.contains("Group BAR data of notes.txt"), "{page}");
    let input = page
        .split("name=\"input_id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    // Without the form's token nothing starts.
    let r = b
        .post(at(&app, "/jobs/start"))
        .form(&[
            ("kind", "bar_grouping"),
            ("input_id", input.as_str()),
            ("csrf_token", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
    let r = b
        .post(at(&app, "/jobs/start"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("kind", "bar_grouping"),
            ("input_id", input.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let job_url = r.url().path().to_string();
    assert!(job_url.starts_with("/jobs/"), "{job_url}");
    let page = r.text().await.unwrap();
    assert!(page.contains("Job started."), "{page}");
    assert!(page.contains("BAR grouping of bar.csv"), "{page}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let page = b
            .get(at(&app, &job_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.contains(">completed</span>") {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.contains("1 file grouped into 1 group"), "{page}");
    assert!(page.contains(">succeeded</span>"), "{page}");
    assert!(page.contains(">manifest.csv</a>"), "{page}");
    assert!(page.contains("Open the output folder"), "{page}");
    assert!(
        !page.contains(">Cancel</button>"),
        "an ended job has no cancel: {page}"
    );
    let list = b
        .get(at(&app, "/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("aria-current=\"page\">Jobs</a>"), "{list}");
    assert!(list.contains("bar.csv"), "{list}");
    assert!(list.contains("value=\"100\""), "{list}");
    // Someone else's job page does not exist.
    app.register("nosy").await;
    let other = signed_in(&app, "nosy").await;
    let r = other.get(at(&app, &job_url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

const ETX_PASSWORD: &str = "pl4tform-Page-Passw0rd";
const ETX_KEY: &str = "DS-PAGE-KEY-5e1d";

/// The platform settings the core holds for `user_id`, secrets opened.
async fn stored_platform(
    app: &TestApp,
    user_id: &str,
) -> Option<etx_core::processing::platform::settings::PlatformSettings> {
    let user = app.state.db.user_by_id(user_id).await.unwrap().unwrap();
    etx_core::processing::platform::settings::settings(&app.state, &user)
        .await
        .unwrap()
}

/// Posts the platform form; `secrets` are the password and data source key typed (empty: keep).
async fn post_platform(
    app: &TestApp,
    b: &reqwest::Client,
    csrf: &str,
    http_uri: &str,
    email: &str,
    secrets: (&str, &str),
) -> reqwest::Response {
    b.post(at(app, "/etx"))
        .form(&[
            ("csrf_token", csrf),
            ("http_uri", http_uri),
            ("ws_uri", "wss://platform.example.com/ws"),
            ("api_version", ""),
            ("email", email),
            ("password", secrets.0),
            ("ds_key", secrets.1),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_platform_page_saves_settings_and_never_shows_the_secrets() {
    use secrecy::ExposeSecret;
    let app = TestApp::spawn().await;
    let u = app.register("platformer").await;
    let b = signed_in(&app, "platformer").await;
    let page = page_text(&b, at(&app, "/etx")).await;
    assert!(page.contains("No platform settings yet."), "{page}");
    assert!(
        page.contains("aria-current=\"page\">Platform</a>"),
        "{page}"
    );
    assert!(
        page.contains("value=\"ctx/v1\""),
        "the default API version: {page}"
    );
    let csrf = csrf_of(&page);
    let https = "https://platform.example.com";

    // The first save needs the password and the key.
    let r = post_platform(&app, &b, &csrf, https, "ops@acme.example", ("", ETX_KEY)).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("Please correct the marked fields."), "{page}");
    assert!(page.contains("is required"), "{page}");
    assert!(!page.contains(ETX_KEY), "the key is not echoed: {page}");
    assert!(stored_platform(&app, &u.id).await.is_none());

    let r = post_platform(
        &app,
        &b,
        &csrf,
        "https://platform.example.com/",
        "ops@acme.example",
        (ETX_PASSWORD, ETX_KEY),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().path(), "/etx");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Your ETX platform settings were saved."),
        "{page}"
    );
    assert!(
        page.contains("<dd id=\"etx-http-uri\">https://platform.example.com</dd>"),
        "{page}"
    );
    assert!(
        page.contains("<dd id=\"etx-api-version\">ctx/v1</dd>"),
        "{page}"
    );
    assert!(
        page.contains("<dd id=\"etx-email\">ops@acme.example</dd>"),
        "{page}"
    );
    assert!(page.contains("<dd id=\"etx-password\">set</dd>"), "{page}");
    assert!(page.contains("<dd id=\"etx-ds-key\">set</dd>"), "{page}");
    let again = page_text(&b, at(&app, "/etx")).await;
    for p in [&page, &again] {
        assert!(!p.contains(ETX_PASSWORD) && !p.contains(ETX_KEY), "{p}");
    }
    let s = stored_platform(&app, &u.id).await.unwrap();
    assert_eq!(s.http_uri, https);
    assert_eq!(s.password.expose_secret(), ETX_PASSWORD);
    assert_eq!(s.ds_key.expose_secret(), ETX_KEY);

    // Empty password and key fields keep the stored ones.
    let r = post_platform(&app, &b, &csrf, https, "desk@acme.example", ("", "")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = stored_platform(&app, &u.id).await.unwrap();
    assert_eq!(s.email, "desk@acme.example");
    assert_eq!(s.password.expose_secret(), ETX_PASSWORD);
    assert_eq!(s.ds_key.expose_secret(), ETX_KEY);

    // Bad input: the field messages, nothing typed into the secret fields, nothing changed.
    let r = post_platform(
        &app,
        &b,
        &csrf,
        "ftp://platform.example.com",
        "other@acme.example",
        ("new-Secret-pw-1", "bad key with spaces"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("must be a http or https URL"), "{page}");
    assert!(
        page.contains("must be printable ASCII without spaces"),
        "{page}"
    );
    for secret in [
        "new-Secret-pw-1",
        "bad key with spaces",
        ETX_PASSWORD,
        ETX_KEY,
    ] {
        assert!(!page.contains(secret), "{secret} shown: {page}");
    }
    // Moving the settings to another address without both secrets is refused too.
    let r = post_platform(
        &app,
        &b,
        &csrf,
        "https://elsewhere.example.com",
        "desk@acme.example",
        ("", ""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("address changes"), "{page}");
    let s = stored_platform(&app, &u.id).await.unwrap();
    assert_eq!(s.http_uri, https);
    assert_eq!(s.email, "desk@acme.example");
    assert_eq!(s.password.expose_secret(), ETX_PASSWORD);

    // Forms without their token change nothing.
    let r = post_platform(&app, &b, "wrong", https, "x@acme.example", ("a", "b")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .post(at(&app, "/etx/delete"))
        .form(&[("csrf_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let s = stored_platform(&app, &u.id).await.unwrap();
    assert_eq!(s.email, "desk@acme.example");
    assert_eq!(s.password.expose_secret(), ETX_PASSWORD);

    // Removing them; a second removal finds nothing.
    let r = b
        .post(at(&app, "/etx/delete"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Your ETX platform settings were removed.")
            && page.contains("No platform settings yet."),
        "{page}"
    );
    assert!(stored_platform(&app, &u.id).await.is_none());
    let r = b
        .post(at(&app, "/etx/delete"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("There were no platform settings to remove.")
    );
    // Signed out, the page is the login page.
    let r = browser().get(at(&app, "/etx")).send().await.unwrap();
    assert!(r.url().path().ends_with("/login"));
}

#[tokio::test]
async fn platform_operations_start_from_the_pages_for_whoever_may_run_them() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("opsadmin", "admin").await;
    let b = signed_in(&app, "opsadmin").await;
    let page = b
        .get(at(&app, "/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Save your connection on the"), "{page}");
    assert!(!page.contains("Create tenant</button>"), "{page}");
    let csrf = csrf_of(&page);
    // Without settings nothing starts, and the page says why.
    let r = b
        .post(at(&app, "/jobs/start"))
        .form(&[("csrf_token", csrf.as_str()), ("kind", "scheme_generation")])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("needs your ETX platform settings"), "{page}");
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);

    // Settings pointing at a platform that is not there: the job starts, then says why it
    // could not run.
    let port = closed_port();
    let r = app
        .put(
            "/api/etx/config",
            serde_json::json!({"http_uri": format!("http://127.0.0.1:{port}/"), "ws_uri": format!("ws://127.0.0.1:{port}/ws"),
                   "email": "ops@example.com", "password": "platform-pass", "ds_key": "KEY-1"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = b
        .get(at(&app, "/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Create tenant</button>"), "{page}");
    let r = b
        .post(at(&app, "/jobs/start"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("kind", "set_version"),
            ("etx_version", "2.1"),
            ("release_date", "tomorrow"),
            ("description", "x"),
        ])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("missing or invalid"), "{page}");
    let r = b
        .post(at(&app, "/jobs/start"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("kind", "create_tenant"),
            ("name", "Tenant Two"),
        ])
        .send()
        .await
        .unwrap();
    let job_url = r.url().path().to_string();
    let page = r.text().await.unwrap();
    assert!(page.contains("Tenant creation of Tenant Two"), "{page}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let page = loop {
        let page = b
            .get(at(&app, &job_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.contains(">failed</span>") {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(page.contains("connect failed"), "{page}");

    // A user who is not an admin is told so; the files page offers the platform's file jobs.
    let user = app.register("opsuser").await;
    app.verify(&user).await;
    app.put(
        "/api/etx/config",
        serde_json::json!({"http_uri": format!("http://127.0.0.1:{port}/"), "ws_uri": format!("ws://127.0.0.1:{port}/ws"),
               "email": "u@example.com", "password": "platform-pass", "ds_key": "KEY-2"}),
        Some(&user.token),
    )
    .await;
    let ub = signed_in(&app, "opsuser").await;
    let page = ub
        .get(at(&app, "/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Create tenant</button>"), "{page}");
    let ucsrf = csrf_of(&page);
    let r = ub
        .post(at(&app, "/jobs/start"))
        .form(&[
            ("csrf_token", ucsrf.as_str()),
            ("kind", "create_tenant"),
            ("name", "Mine"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Only admins can start that job.")
    );
    app.client
        .post(app.url("/api/files"))
        .bearer_auth(&user.token)
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"a,b\n".to_vec()).file_name("org.csv"),
        ))
        .send()
        .await
        .unwrap();
    let page = ub
        .get(at(&app, "/files"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Import org.csv to the ETX platform"),
        "{page}"
    );
    assert!(
        page.contains("Create the org structure in org.csv"),
        "{page}"
    );
}

#[tokio::test]
async fn trade_portfolio_and_alerts_pages_work_without_script() {
    let app = spawn_quiet_market().await;
    set_price(&app, "BTC", 60_000);
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1000.00").await;
    let b = signed_in(&app, "alice").await;

    // A market buy is quoted first, then confirmed at exactly the quoted total.
    let page = page_text(&b, at(&app, "/trade")).await;
    assert!(page.contains("data-price=\"BTC\""), "live price cells");
    let r = b
        .post(at(&app, "/trade/quote"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("side", "buy"),
            ("base", "BTC"),
            ("quote", "USD"),
            ("amount", "0.01"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let quoted = r.text().await.unwrap();
    assert!(quoted.contains("602.11 USD"), "the quote's total");
    set_price(&app, "BTC", 61_000);
    let key = hidden(&quoted, "idempotency_key");
    let form = [
        ("csrf_token", csrf_of(&quoted)),
        ("idempotency_key", key),
        ("quote_id", hidden(&quoted, "quote_id")),
    ];
    let r = b
        .post(at(&app, "/trade/execute"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(r.url().as_str().ends_with("/trade?msg=order-filled"));
    // The same form sent twice places one order.
    b.post(at(&app, "/trade/execute"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(app.balances(&alice).await["USD"], "397.89");

    // A limit sell rests, is listed, and is cancelled from the page.
    let page = page_text(&b, at(&app, "/trade")).await;
    let r = b
        .post(at(&app, "/trade/order"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("idempotency_key", hidden(&page, "idempotency_key").as_str()),
            ("type", "limit"),
            ("side", "sell"),
            ("base", "BTC"),
            ("quote", "USD"),
            ("amount", "0.005"),
            ("price", "90000"),
        ])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Order placed"), "{page}");
    assert!(page.contains("id=\"open-orders\""));
    let id = page
        .split("data-order=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // Bad input is shown on the form and places nothing.
    let r = b
        .post(at(&app, "/trade/order"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("idempotency_key", "web-bad-1"),
            ("type", "limit"),
            ("side", "sell"),
            ("base", "BTC"),
            ("quote", "USD"),
            ("amount", "0.005"),
            ("price", "lots"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // So is a key the API would refuse in its header.
    let r = b
        .post(at(&app, "/trade/order"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("idempotency_key", "not a key\u{0}"),
            ("type", "limit"),
            ("side", "sell"),
            ("base", "BTC"),
            ("quote", "USD"),
            ("amount", "0.005"),
            ("price", "70000"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text().await.unwrap().contains("Idempotency-Key must be"),
        "the form says why"
    );
    assert_eq!(app.balances(&alice).await["BTC"], "0.00500000");
    let r = b
        .post(at(&app, &format!("/trade/orders/{id}/cancel")))
        .form(&[("csrf_token", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Order cancelled"));
    assert_eq!(app.balances(&alice).await["BTC"], "0.01000000");

    // The portfolio shows the holding at the live price with its cost and P&L.
    let page = page_text(&b, at(&app, "/portfolio")).await;
    assert!(page.contains("data-holding=\"BTC\""));
    assert!(page.contains(">602.11<"), "BTC cost basis");
    assert!(page.contains(">610.00<"), "BTC value at 61,000");
    assert!(page.contains(">7.89<"), "unrealised gain");
    assert!(page.contains("<svg class=\"chart\""));

    // An alert is created, switched off and deleted from its page.
    let page = page_text(&b, at(&app, "/alerts")).await;
    let r = b
        .post(at(&app, "/alerts"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("asset", "BTC"),
            ("kind", "move"),
            ("move_percent", "5"),
            ("window_minutes", "60"),
            ("repeat", "on"),
        ])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("moves 5.00 % within 60 min"), "{page}");
    assert!(page.contains("every 60 min at most"));
    let id = page
        .split("data-alert=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let r = b
        .post(at(&app, "/alerts"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("asset", "BTC"),
            ("kind", "above"),
            ("price", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = b
        .post(at(&app, &format!("/alerts/{id}/toggle")))
        .form(&[("csrf_token", csrf_of(&page).as_str()), ("active", "false")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Switch on"));
    let page = b
        .post(at(&app, &format!("/alerts/{id}/delete")))
        .form(&[("csrf_token", csrf_of(&page))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("No alerts yet."));

    // Home shows the achievements; someone else's order or alert is a 404 page.
    // (experience is awarded in the background: the badge appears within moments)
    let start = std::time::Instant::now();
    loop {
        let home = page_text(&b, at(&app, "/")).await;
        if home.contains("✓ First trade") {
            assert!(!home.contains("✓ First deposit"));
            break;
        }
        assert!(start.elapsed().as_secs() < 10, "{home}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bob = signed_in(&app, &app.register("bob").await.username).await;
    let page = page_text(&bob, at(&app, "/alerts")).await;
    let r = bob
        .post(at(&app, &format!("/alerts/{id}/delete")))
        .form(&[("csrf_token", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_halt_a_pair_from_the_trading_page_and_others_cannot() {
    let app = spawn_quiet_market().await;
    set_price(&app, "BTC", 60_000);
    app.user_with_role("boss", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let user = app.register("plain").await;
    let b = signed_in(&app, "boss").await;
    let page = page_text(&b, at(&app, "/admin/trading")).await;
    assert!(page.contains("data-pair=\"BTC/USD\""));
    let r = b
        .post(at(&app, "/admin/trading/pairs/BTC-USD"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("halted", "on"),
            ("fee_bps", "30"),
            ("spread_bps", ""),
        ])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Pair settings saved."), "{page}");
    let row = page.split("data-pair=\"BTC/USD\"").nth(1).unwrap();
    assert!(row.contains("halted") && row.contains("30<"), "{row}");
    // A bad value is shown and changes nothing.
    let r = b
        .post(at(&app, "/admin/trading/pairs/BTC-USD"))
        .form(&[("csrf_token", csrf_of(&page).as_str()), ("fee_bps", "lots")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/orders/quote",
            serde_json::json!({"pair": "BTC/USD", "side": "buy", "amount": "0.01"}),
            Some(&user.token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Moderators read it without the forms; users do not see it at all.
    let m = signed_in(&app, "watcher").await;
    let page = page_text(&m, at(&app, "/admin/trading")).await;
    assert!(page.contains("data-pair=\"BTC/USD\"") && !page.contains("/admin/trading/pairs/"));
    let r = m
        .post(at(&app, "/admin/trading/pairs/BTC-USD"))
        .form(&[("csrf_token", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let u = signed_in(&app, "plain").await;
    let r = u.get(at(&app, "/admin/trading")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_header_groups_pages_into_menus_and_follows_the_user_everywhere() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "12.00").await;
    let get = |b: reqwest::Client, path: &'static str| {
        let url = at(&app, path);
        async move {
            let r = b.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let user = signed_in(&app, "alice").await;
    let (_, home) = get(user.clone(), "/").await;
    // Menus for trading, the wallet, the workspace and the account; no Admin menu for a user.
    for summary in [
        "<summary>Trade</summary>",
        "<summary>Wallet</summary>",
        "<summary>Workspace</summary>",
        "<summary>alice</summary>",
    ] {
        assert!(home.contains(summary), "{summary} missing");
    }
    assert!(!home.contains("<summary>Admin</summary>"));
    assert!(home.contains("id=\"menu-toggle\""));
    // Home lists what the user holds: USD, not a row per empty asset, and the total.
    assert!(home.contains("data-holding=\"USD\""));
    assert!(
        !home.contains("data-holding=\"BTC\""),
        "zero balances are hidden"
    );
    assert!(home.contains("data-worth-total>$12.00<"), "{home}");
    // The current page's menu is marked.
    let (_, deposit) = get(user.clone(), "/withdraw").await;
    assert!(deposit.contains("<details class=\"menu current\">\n      <summary>Wallet</summary>"));
    assert!(deposit.contains("href=\"/withdraw\" aria-current=\"page\""));

    // A signed-in user's 404 keeps their header.
    let (status, missing) = get(user.clone(), "/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("<summary>alice</summary>"), "{missing}");
    let (status, anonymous) = get(browser(), "/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(anonymous.contains("href=\"/login\""));

    let staff = signed_in(&app, "treasurer").await;
    let (_, home) = get(staff, "/").await;
    assert!(home.contains("<summary>Admin</summary>"));
    assert!(home.contains("href=\"/admin/mail\""));
}

#[tokio::test]
async fn without_remember_me_the_login_cookies_last_for_the_browser_session() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    for remember in [false, true] {
        let b = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = b.get(at(&app, "/login")).send().await.unwrap();
        let csrf = csrf_of(&page.text().await.unwrap());
        let mut form = vec![
            ("csrf_token", csrf.as_str()),
            ("login", "alice"),
            ("password", PASSWORD),
        ];
        if remember {
            form.push(("remember_me", "on"));
        }
        let r = b.post(at(&app, "/login")).form(&form).send().await.unwrap();
        let cookies: Vec<String> = r
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for name in ["access_token=", "refresh_token=", "csrf_token="] {
            let c = cookies
                .iter()
                .find(|c| c.starts_with(name))
                .unwrap_or_else(|| panic!("{name} not set: {cookies:?}"));
            assert_eq!(c.contains("Max-Age="), remember, "{c}");
        }
    }
}

#[tokio::test]
async fn the_terms_of_service_are_a_page_the_register_form_links_to() {
    let app = TestApp::spawn().await;
    let b = browser();
    let register = b
        .get(at(&app, "/register"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(register.contains("href=\"/terms\""));
    let r = b.get(at(&app, "/terms")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<h1>Terms of service</h1>")
    );
}

/// Posts a form (with the page's CSRF token) to `path`; answers the status and the page.
async fn post_form(
    app: &TestApp,
    b: &reqwest::Client,
    page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let html = b
        .get(at(app, page))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);
    let mut form = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(fields);
    let r = b.post(at(app, path)).form(&form).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn staff_find_users_and_admins_change_them_with_a_reason() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("chief", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "5.00").await;
    let get = |b: &reqwest::Client, path: String| {
        let (b, url) = (b.clone(), at(&app, &path));
        async move {
            let r = b.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };

    // Users get a 404; moderators find and open users but change nothing.
    let user = signed_in(&app, "bob").await;
    assert_eq!(
        get(&user, "/admin/users".into()).await.0,
        StatusCode::NOT_FOUND
    );
    let moderator = signed_in(&app, "watcher").await;
    let (s, list) = get(&moderator, "/admin/users?q=ali&role=user".into()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("data-user=\"alice\"") && !list.contains("data-user=\"bob\""));
    assert!(list.contains("1 user<"), "{list}");
    let (s, bad) = get(&moderator, "/admin/users?role=emperor".into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role"), "{bad}");
    let page = format!("/admin/users/{}", alice.id);
    let (s, detail) = get(&moderator, page.clone()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(detail.contains("5.00") && !detail.contains("name=\"action\""));
    let (s, _) = post_form(
        &app,
        &moderator,
        &page,
        &page,
        &[("action", "suspend"), ("reason", "testing")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // An admin: a change needs a reason and a known action.
    let chief = signed_in(&app, "chief").await;
    let (s, e) = post_form(&app, &chief, &page, &page, &[("action", "suspend")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.contains("id=\"reason-error\"") && e.contains("aria-invalid=\"true\""));
    let (s, _) = post_form(
        &app,
        &chief,
        &page,
        &page,
        &[("action", "fly"), ("reason", "why not")],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Promote, then suspend: her sessions end at once.
    let (s, done) = post_form(
        &app,
        &chief,
        &page,
        &page,
        &[
            ("action", "role"),
            ("role", "moderator"),
            ("reason", "runs support"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(done.contains("The account was changed.") && done.contains(">moderator</span>"));
    assert_eq!(
        app.get("/api/auth/me", Some(&alice.token)).await.status(),
        StatusCode::OK
    );
    post_form(
        &app,
        &chief,
        &page,
        &page,
        &[("action", "suspend"), ("reason", "chargeback fraud")],
    )
    .await;
    assert_eq!(
        app.get("/api/auth/me", Some(&alice.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, suspended) = get(&chief, "/admin/users?status=suspended".into()).await;
    assert!(suspended.contains("data-user=\"alice\""));

    // Signing bob out everywhere; deleting needs the box ticked, and alice still holds funds.
    let bob_page = format!("/admin/users/{}", bob.id);
    post_form(
        &app,
        &chief,
        &bob_page,
        &bob_page,
        &[("action", "sign-out"), ("reason", "lost phone")],
    )
    .await;
    assert_eq!(
        app.get("/api/auth/me", Some(&bob.token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = post_form(
        &app,
        &chief,
        &bob_page,
        &bob_page,
        &[("action", "delete"), ("reason", "asked to")],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, e) = post_form(
        &app,
        &chief,
        &page,
        &page,
        &[
            ("action", "delete"),
            ("reason", "asked to"),
            ("confirm", "on"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(e.contains("holds funds"), "{e}");
    let (s, gone) = post_form(
        &app,
        &chief,
        &bob_page,
        &bob_page,
        &[
            ("action", "delete"),
            ("reason", "asked to"),
            ("confirm", "on"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(gone.contains("The account was deleted.") && !gone.contains("data-user=\"bob\""));

    // Every change is in the audit trail with its reason.
    app.state.db.chain_all_audit().await.unwrap();
    let (_, audit) = get(&chief, format!("/admin/audit?target={}", alice.id)).await;
    for reason in ["runs support", "chargeback fraud"] {
        assert!(
            audit.contains(reason),
            "{reason} missing from the audit trail"
        );
    }
    let (_, audit) = get(&chief, format!("/admin/audit?target={}", bob.id)).await;
    assert!(audit.contains("lost phone") && audit.contains("user.delete"));
}

#[tokio::test]
async fn notifications_have_a_page_and_admins_broadcast_from_one() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("chief", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    app.register("bob").await;
    app.fund(&admin, &alice, "USD", "7.00").await;
    let get = |b: &reqwest::Client, path: &str| {
        let (b, url) = (b.clone(), at(&app, path));
        async move {
            let r = b.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };

    // Alice's notification is on her page, not on Bob's.
    let a = signed_in(&app, "alice").await;
    let (s, inbox) = get(&a, "/notifications").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        inbox.contains("1 unread") && inbox.contains("class=\"unread\""),
        "{inbox}"
    );
    let (_, other) = get(&signed_in(&app, "bob").await, "/notifications").await;
    assert!(
        other.contains("All read") && !other.contains("id=\"inbox\""),
        "{other}"
    );
    let (s, read) = post_form(&app, &a, "/notifications", "/notifications/read", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(read.contains("All read") && !read.contains("class=\"unread\""));
    let r = app
        .get("/api/notifications", Some(&alice.token))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(r["unread"], 0);

    // Only admins broadcast; a bad message is refused with the field marked.
    for who in ["alice", "watcher"] {
        let (s, _) = get(&signed_in(&app, who).await, "/admin/broadcast").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{who}");
    }
    let chief = signed_in(&app, "chief").await;
    let (s, e) = post_form(
        &app,
        &chief,
        "/admin/broadcast",
        "/admin/broadcast",
        &[("message", "  "), ("level", "info")],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.contains("id=\"message-error\""));
    let (s, e) = post_form(
        &app,
        &chief,
        "/admin/broadcast",
        "/admin/broadcast",
        &[("message", "Maintenance at ten"), ("level", "loud")],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e.contains("id=\"level-error\"") && e.contains("Maintenance at ten"));
    let (s, sent) = post_form(
        &app,
        &chief,
        "/admin/broadcast",
        "/admin/broadcast",
        &[("message", "Maintenance at ten"), ("level", "warning")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(sent.contains("Sent to everyone connected."));
    app.state.db.chain_all_audit().await.unwrap();
    let (_, audit) = get(&chief, "/admin/audit?action=realtime.announcement").await;
    assert!(audit.contains("Maintenance at ten"), "{audit}");
}

/// The text of the first element carrying `attr` (`data-worth-total>` …`<`).
fn text_after(html: &str, attr: &str) -> String {
    let at = html.find(attr).unwrap_or_else(|| panic!("{attr} missing"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].to_string()
}

/// "$1,234.56" or "−$1,234.56 (…)" as signed cents.
fn cents_in(text: &str) -> i64 {
    let negative = text.starts_with('\u{2212}');
    let digits: String = text
        .split(" (")
        .next()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let v: i64 = digits.parse().unwrap();
    if negative { -v } else { v }
}

#[tokio::test]
async fn home_leads_with_the_total_value_and_its_24_hour_change() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    app.fund(&admin, &alice, "USD", "1500.00").await;
    app.fund(&admin, &alice, "BTC", "0.50000000").await;
    let user = signed_in(&app, "alice").await;

    // No price history yet: a total, no change.
    let home = page_text(&user, at(&app, "/")).await;
    let total = cents_in(&text_after(&home, "data-worth-total"));
    assert!(total > 150_000, "USD and BTC at the live price: {total}");
    assert!(!home.contains("data-worth-change"));
    assert!(
        home.contains("<td class=\"num\">1,500.00</td>"),
        "grouped amounts"
    );

    // A day ago BTC was at $40,000: the change is what the half bitcoin moved since.
    let day_ago = (etx_db::now_micros() - 23 * 3_600_000_000) / 300_000_000 * 300_000_000;
    app.exec(&format!(
        "INSERT INTO candles (symbol, span, start, open, high, low, close, ticks) \
         VALUES ('BTC', '5m', {day_ago}, 4000000000000, 4000000000000, 4000000000000, 4000000000000, 1)"
    ))
    .await;
    let home = page_text(&user, at(&app, "/")).await;
    let total = cents_in(&text_after(&home, "data-worth-total"));
    let change_text = text_after(&home, "data-worth-change");
    let change = cents_in(&change_text);
    assert_eq!(
        total - change,
        150_000 + 2_000_000,
        "value a day ago: $1,500 and half a bitcoin at $40,000 ({change_text})"
    );
    assert!(change_text.ends_with(" %)"), "{change_text}");
}

#[tokio::test]
async fn it_installs_as_an_app_that_keeps_only_its_look_and_an_offline_page() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let r = client
        .get(at(&app, "/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/manifest+json");
    let m: serde_json::Value = r.json().await.unwrap();
    assert_eq!(m["start_url"], "/");
    assert_eq!(m["display"], "standalone");
    assert!(!m["icons"].as_array().unwrap().is_empty());

    let r = client.get(at(&app, "/sw.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        r.headers()["cache-control"],
        "no-cache",
        "a new release is seen at once"
    );
    let sw = r.text().await.unwrap();
    assert!(sw.contains(&format!("etx-static-{}", env!("CARGO_PKG_VERSION"))));
    assert!(!sw.contains("__VERSION__"));
    // What it stores: the static files and the offline page, nothing under /api or a page.
    let shell = sw
        .lines()
        .find(|l| l.starts_with("var SHELL"))
        .expect("the cached list");
    assert!(
        shell.contains("\"/offline\"") && !shell.contains("/api"),
        "{shell}"
    );
    assert!(sw.contains("c.put(req, copy)") && sw.matches(".put(").count() == 1);

    let r = client.get(at(&app, "/offline")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "the offline page carries no session or form token"
    );
    assert!(r.text().await.unwrap().contains("You are offline"));
    let home = page_text(&client, at(&app, "/login")).await;
    assert!(home.contains("<link rel=\"manifest\" href=\"/manifest.webmanifest\">"));
}

#[tokio::test]
async fn each_transaction_has_its_own_page_and_nobody_elses_is_found() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.fund(&admin, &alice, "USD", "5000.00").await;
    app.verify(&alice).await;
    app.verify(&bob).await;
    let key = uuid::Uuid::now_v7().to_string();
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some(&key),
            serde_json::json!({"recipient": "bob", "amount": "1234.50", "currency": "USD", "note": "deposit for the flat"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a = signed_in(&app, "alice").await;
    let list = page_text(&a, at(&app, "/transactions")).await;
    let link = list
        .split("href=\"/transactions/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a row links to its page")
        .to_string();
    let page = page_text(&a, at(&app, &format!("/transactions/{link}"))).await;
    assert!(page.contains("Transfer sent"), "{page}");
    assert!(page.contains("−1,234.50 USD"));
    assert!(page.contains("deposit for the flat") && page.contains("<dd>bob</dd>"));
    assert!(page.contains(&format!("<code id=\"tx-id\">{link}</code>")));
    // Bob's side of it, and a malformed id, are not Alice's to see.
    let b = signed_in(&app, "bob").await;
    let r = b
        .get(at(&app, &format!("/transactions/{link}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.text().await.unwrap().contains("<summary>bob</summary>"),
        "with bob's header"
    );
    let r = a
        .get(at(&app, "/transactions/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn staff_see_the_platforms_health_on_one_page() {
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("treasurer", "admin").await;
    app.user_with_role("watcher", "moderator").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.verify(&alice).await;
    app.verify(&bob).await;
    app.fund(&admin, &alice, "USD", "2500.00").await;
    let key = uuid::Uuid::now_v7().to_string();
    let r = app
        .money_post(
            "/api/transfers/p2p",
            Some(&key),
            serde_json::json!({"recipient": "bob", "amount": "1000.00", "currency": "USD"}),
            &alice.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    app.state.db.chain_all_audit().await.unwrap();

    let staff = signed_in(&app, "watcher").await;
    let page = page_text(&staff, at(&app, "/admin/stats")).await;
    // Four accounts were made today: the last bar of sign-ups says so.
    let signups = page
        .split("id=\"stats-signups\"")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .unwrap();
    assert!(signups.contains("4 in 30 days"), "{signups}");
    assert_eq!(signups.matches("<rect class=\"bar\"").count(), 30);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        signups.contains(&format!("<title>{today}: 4</title>")),
        "{signups}"
    );
    // The transfer counts once, at its value; the ledger balances.
    let volume = page.split("id=\"volume\"").nth(1).unwrap();
    assert!(
        volume.contains(
            "<th scope=\"row\">USD</th><td class=\"num\">1</td><td class=\"num\">1,000.00</td>"
        ),
        "{volume}"
    );
    let totals = page.split("id=\"totals\"").nth(1).unwrap();
    assert!(
        totals.contains("<td class=\"num\">2,500.00</td>"),
        "users hold what was funded"
    );
    assert!(totals.contains("balanced") && !totals.contains("does not balance"));
    assert!(page.contains("data-queue=\"aml\">0<"));

    // Not for users.
    let user = signed_in(&app, "alice").await;
    let r = user.get(at(&app, "/admin/stats")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_statistics_are_shared_for_a_few_seconds_and_the_queues_are_live() {
    let app = TestApp::spawn_with(|c| {
        c.admin.stats_cache_ms = 400;
        c.admin.adjust_approval_from_usd = "1000".into();
    })
    .await;
    let admin = app.user_with_role("treasurer", "admin").await;
    let alice = app.register("alice").await;
    let staff = signed_in(&app, "treasurer").await;
    let signups = |page: &str| {
        page.split("id=\"stats-signups\"")
            .nth(1)
            .and_then(|s| s.split("</p>").next())
            .unwrap()
            .to_string()
    };
    let read_at = std::time::Instant::now();
    let first = page_text(&staff, at(&app, "/admin/stats")).await;
    assert!(signups(&first).contains("2 in 30 days"), "{first}");
    assert!(first.contains("data-queue=\"adjustments\">0<"));
    app.register("bob").await;
    let r = app
        .money_post(
            "/api/admin/wallets/adjust",
            Some("big-one"),
            serde_json::json!({"user_id": alice.id, "currency": "USD", "amount": "5000", "reason": "wire 77"}),
            &admin.token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again = page_text(&staff, at(&app, "/admin/stats")).await;
    // The queue counts at once; the sign-up waits for the next read unless this machine was
    // too slow to look within the cache's lifetime.
    assert!(again.contains("data-queue=\"adjustments\">1<"), "{again}");
    if read_at.elapsed() < std::time::Duration::from_millis(300) {
        assert!(signups(&again).contains("2 in 30 days"), "{again}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let later = page_text(&staff, at(&app, "/admin/stats")).await;
    assert!(signups(&later).contains("3 in 30 days"), "{later}");
    assert!(later.contains("id=\"stats-as-of\""));
}

#[tokio::test]
async fn the_leaderboard_ranks_by_experience_and_marks_the_reader() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.exec(&format!(
        "UPDATE users SET exp = 1250 WHERE id = '{}'",
        bob.id
    ))
    .await;
    app.exec(&format!(
        "UPDATE users SET exp = 40 WHERE id = '{}'",
        alice.id
    ))
    .await;
    let a = signed_in(&app, "alice").await;
    let page = page_text(&a, at(&app, "/leaderboard?period=all")).await;
    let table = page.split("id=\"leaders\"").nth(1).expect("a table");
    let (bob_at, alice_at) = (table.find("bob").unwrap(), table.find("alice").unwrap());
    assert!(bob_at < alice_at, "most experience first");
    assert!(table.contains("<td class=\"num\">1,250</td>"));
    assert!(table.contains("alice <strong>(you)</strong>"));
    assert!(page.contains("aria-current=\"page\">All time<"));
    // This week counts what was earned this week: nothing yet.
    let page = page_text(&a, at(&app, "/leaderboard")).await;
    assert!(page.contains("aria-current=\"page\">This week<"));
    assert!(page.contains("Nobody has earned experience this week yet."));
}
