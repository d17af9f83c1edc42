//! Registration, login, lock-out, profile and password changes, email verification and the
//! mail queue, on a core without HTTP.

use crate::support::{Refused, TestCore, client, core, core_with};
use etx_core::CoreError;
use etx_core::accounts::{self, LoginOutcome, ProfileChange, Registration};
use etx_core::session::{self, Auth};
use etx_db::mail::MailStatus;
use etx_db::users::UserRow;
use etx_domain::Role;

const PASSWORD: &str = "Correct1Horse";

async fn register(c: &TestCore, username: &str) -> UserRow {
    accounts::register(
        c,
        Registration {
            username,
            email: &format!("{username}@example.com"),
            password: PASSWORD,
            name: Some("  Test User "),
        },
        &client("192.0.2.1"),
    )
    .await
    .unwrap()
}

async fn login(c: &TestCore, login: &str, password: &str) -> Result<LoginOutcome, CoreError> {
    accounts::login(c, login, password, false, &client("192.0.2.2")).await
}

fn fields(e: &CoreError) -> Vec<String> {
    match e {
        CoreError::Validation { fields, .. } | CoreError::Conflict { fields, .. } => {
            fields.keys().cloned().collect()
        }
        other => panic!("not a field error: {other:?}"),
    }
}

/// The 6-digit code of the newest verification mail to `to`.
async fn verification_code(c: &TestCore, to: &str) -> String {
    let mail = c.db.due_mail(50).await.unwrap();
    let row = mail
        .iter()
        .rev()
        .find(|m| m.to_addr == to && m.template == "verify_email")
        .expect("a verification mail is queued");
    row.body_text
        .strip_prefix("verify ")
        .expect("rendered by the test templates")
        .to_string()
}

#[tokio::test]
async fn registration_reports_every_bad_field_at_once() {
    let c = core().await;
    let e = accounts::register(
        &c,
        Registration {
            username: "x",
            email: "nope",
            password: "short",
            name: Some(&"n".repeat(101)),
        },
        &client("192.0.2.1"),
    )
    .await
    .refused();
    assert_eq!(fields(&e), ["email", "name", "password", "username"]);
    // A valid form with one bad field still names just that one.
    let e = accounts::register(
        &c,
        Registration {
            username: "alice",
            email: "alice@example.com",
            password: PASSWORD,
            name: Some("tab\there"),
        },
        &client("192.0.2.1"),
    )
    .await
    .refused();
    assert_eq!(fields(&e), ["name"]);
}

#[tokio::test]
async fn a_new_account_is_a_plain_unverified_user_with_a_verification_mail() {
    let c = core().await;
    let u = register(&c, "alice").await;
    assert_eq!((u.username.as_str(), u.role.as_str()), ("alice", "user"));
    assert_eq!(u.name.as_deref(), Some("Test User"));
    assert!(u.is_active && !u.is_verified);
    assert_ne!(u.password_hash, PASSWORD, "only the hash is stored");
    let code = verification_code(&c, "alice@example.com").await;
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
}

#[tokio::test]
async fn names_and_addresses_are_unique_without_case() {
    let c = core().await;
    register(&c, "alice").await;
    let taken = |username: &'static str, email: &'static str| {
        let c = &c;
        async move {
            accounts::register(
                c,
                Registration {
                    username,
                    email,
                    password: PASSWORD,
                    name: None,
                },
                &client("192.0.2.1"),
            )
            .await
            .refused()
        }
    };
    let e = taken("ALICE", "other@example.com").await;
    assert!(matches!(e, CoreError::Conflict { .. }), "{e:?}");
    assert_eq!(fields(&e), ["username"]);
    let e = taken("bob", "Alice@Example.com").await;
    assert_eq!(fields(&e), ["email"]);
}

#[tokio::test]
async fn registrations_per_address_are_rate_limited() {
    let c = core_with(|c| c.rate_limit.register_per_ip_per_minute = 1).await;
    register(&c, "alice").await;
    let e = accounts::register(
        &c,
        Registration {
            username: "bob",
            email: "bob@example.com",
            password: PASSWORD,
            name: None,
        },
        &client("192.0.2.1"),
    )
    .await
    .refused();
    assert!(
        matches!(e, CoreError::RateLimited { limit: 1, .. }),
        "{e:?}"
    );
    // Another address has its own budget.
    accounts::register(
        &c,
        Registration {
            username: "bob",
            email: "bob@example.com",
            password: PASSWORD,
            name: None,
        },
        &client("192.0.2.99"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn login_by_name_or_address_opens_a_session_that_authenticates() {
    let c = core().await;
    let u = register(&c, "alice").await;
    for who in ["alice", "ALICE@example.com"] {
        let Ok(LoginOutcome::Session(user, issued)) = login(&c, who, PASSWORD).await else {
            panic!("{who} did not log in");
        };
        assert_eq!(user.id, u.id);
        assert_eq!(issued.expires_in, c.config.auth.access_ttl_secs);
        let auth = session::authenticate(&c, &issued.access_token)
            .await
            .unwrap();
        assert_eq!(
            (auth.user.id.as_str(), auth.role),
            (u.id.as_str(), Role::User)
        );
        assert!(matches!(auth.require_staff(), Err(CoreError::Forbidden(_))));
        assert!(matches!(auth.require_admin(), Err(CoreError::Forbidden(_))));
        // The refresh token rotates; the old one is then spent.
        let (_, again) = session::refresh(&c, &issued.refresh_token).await.unwrap();
        assert_ne!(again.refresh_token, issued.refresh_token);
        session::logout(&c, &auth).await.unwrap();
        assert!(
            session::authenticate(&c, &issued.access_token)
                .await
                .is_err()
        );
    }
    assert!(matches!(
        session::authenticate(&c, "not-a-token").await,
        Err(CoreError::Unauthorized(_))
    ));
    assert!(matches!(
        session::refresh(&c, "not-a-token").await,
        Err(CoreError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_and_all_failures_look_alike() {
    let c = core_with(|c| c.auth.lockout_threshold = 3).await;
    register(&c, "alice").await;
    let unauthorized = |r: Result<LoginOutcome, CoreError>| match r {
        Err(CoreError::Unauthorized(m)) => m,
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("logged in"),
    };
    let unknown = unauthorized(login(&c, "nobody", PASSWORD).await);
    assert_eq!(unauthorized(login(&c, "alice", "").await), unknown);
    assert_eq!(unauthorized(login(&c, "  ", PASSWORD).await), unknown);
    assert_eq!(
        unauthorized(login(&c, "alice", &"x".repeat(1025)).await),
        unknown
    );
    for _ in 0..3 {
        assert_eq!(
            unauthorized(login(&c, "alice", "Wrong1Horse").await),
            unknown
        );
    }
    let locked = c.db.user_by_login("alice").await.unwrap().unwrap();
    assert!(locked.locked_until.is_some());
    // Locked: even the right password is refused, with the same words.
    assert_eq!(unauthorized(login(&c, "alice", PASSWORD).await), unknown);
}

#[tokio::test]
async fn a_suspended_account_cannot_log_in() {
    let c = core().await;
    let u = register(&c, "alice").await;
    c.db.execute(
        "UPDATE users SET is_active = $1 WHERE id = $2",
        [false.into(), u.id.clone().into()],
    )
    .await
    .unwrap();
    assert!(matches!(
        login(&c, "alice", PASSWORD).await,
        Err(CoreError::Forbidden(m)) if m.contains("suspended")
    ));
}

async fn signed_in(c: &TestCore, u: &UserRow) -> Auth {
    let Ok(LoginOutcome::Session(_, issued)) = login(c, &u.username, PASSWORD).await else {
        panic!("no session");
    };
    session::authenticate(c, &issued.access_token)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_password_change_checks_the_current_one_and_the_policy() {
    let c = core().await;
    let u = register(&c, "alice").await;
    let auth = signed_in(&c, &u).await;
    let e = accounts::change_password(&c, &auth, "Wrong1Horse", "Another1Horse")
        .await
        .refused();
    assert_eq!(fields(&e), ["current_password"]);
    let e = accounts::change_password(&c, &auth, PASSWORD, "weak")
        .await
        .refused();
    assert_eq!(fields(&e), ["new_password"]);
    let e = accounts::change_password(&c, &auth, PASSWORD, PASSWORD)
        .await
        .refused();
    assert!(
        matches!(&e, CoreError::Validation { fields, .. } if fields["new_password"].contains("differ")),
        "{e:?}"
    );
    accounts::change_password(&c, &auth, PASSWORD, "Another1Horse")
        .await
        .unwrap();
    assert!(login(&c, "alice", PASSWORD).await.is_err());
    assert!(login(&c, "alice", "Another1Horse").await.is_ok());
}

#[tokio::test]
async fn profile_changes_are_validated_and_an_email_change_needs_the_password() {
    let c = core().await;
    let u = register(&c, "alice").await;
    register(&c, "bob").await;
    let change = |username, email, name, current_password| ProfileChange {
        username,
        email,
        name,
        current_password,
        code: None,
    };
    let long_name = "n".repeat(101);
    let e = accounts::update_profile(&c, &u, change(Some("a b"), None, Some(&long_name), None))
        .await
        .refused();
    assert_eq!(fields(&e), ["name", "username"]);
    let e = accounts::update_profile(&c, &u, change(Some("Bob"), None, None, None))
        .await
        .refused();
    assert!(matches!(e, CoreError::Conflict { .. }), "{e:?}");
    let e = accounts::update_profile(&c, &u, change(None, Some("new@example.com"), None, None))
        .await
        .refused();
    assert_eq!(fields(&e), ["current_password"]);
    let renamed = accounts::update_profile(&c, &u, change(Some("alice2"), None, Some("  "), None))
        .await
        .unwrap();
    assert_eq!(renamed.username, "alice2");
    assert_eq!(renamed.name, None, "a blank name clears it");
    let moved = accounts::update_profile(
        &c,
        &renamed,
        change(None, Some("new@example.com"), None, Some(PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(moved.email, "new@example.com");
    assert!(!moved.is_verified, "a new address is verified again");
}

#[tokio::test]
async fn avatars_refuse_empty_and_non_image_files() {
    let c = core().await;
    let u = register(&c, "alice").await;
    let e = accounts::set_avatar(&c, &u, bytes::Bytes::new())
        .await
        .refused();
    assert_eq!(fields(&e), ["file"]);
    let e = accounts::set_avatar(
        &c,
        &u,
        bytes::Bytes::from_static(b"plain text, not a picture"),
    )
    .await
    .refused();
    assert!(matches!(e, CoreError::UnsupportedMediaType(_)), "{e:?}");
    // Removing an avatar that is not there changes nothing.
    let same = accounts::remove_avatar(&c, &u).await.unwrap();
    assert_eq!((same.id, same.avatar_key), (u.id, None));
}

#[tokio::test]
async fn the_mailed_code_verifies_the_address() {
    let c = core().await;
    let u = register(&c, "alice").await;
    let code = verification_code(&c, "alice@example.com").await;
    use etx_core::security::verify_email_code;
    let e = verify_email_code(&c, &u, "12345").await.refused();
    assert_eq!(fields(&e), ["code"]);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let e = verify_email_code(&c, &u, wrong).await.refused();
    assert!(
        matches!(&e, CoreError::Validation { fields, .. } if fields["code"] == "is incorrect"),
        "{e:?}"
    );
    verify_email_code(&c, &u, &format!(" {code} "))
        .await
        .unwrap();
    let u = c.db.user_by_id(&u.id).await.unwrap().unwrap();
    assert!(u.is_verified);
    // Verified: nothing more to do, and no new mail.
    verify_email_code(&c, &u, "999999").await.unwrap();
    assert!(
        !etx_core::security::resend_verification(&c, &u)
            .await
            .unwrap()
    );
    assert!(matches!(
        etx_core::security::verify_email_token(&c, "").await,
        Err(CoreError::BadRequest(_))
    ));
    assert!(matches!(
        etx_core::security::verify_email_token(&c, "no-such-token").await,
        Err(CoreError::BadRequest(_))
    ));
}

#[tokio::test]
async fn queued_mail_is_written_to_the_outbox_once() {
    let c = core().await;
    register(&c, "alice").await;
    assert_eq!(etx_core::mail::deliver_due(&c).await.unwrap(), 1);
    assert_eq!(
        etx_core::mail::deliver_due(&c).await.unwrap(),
        0,
        "sent once"
    );
    let dir = c.mailer.outbox_dir().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        etx_core::mail::header_value(&raw, "To"),
        "alice@example.com"
    );
    assert!(etx_core::mail::plain_text_part(&raw).starts_with("verify "));
    let sent = c.db.list_mail(Some(MailStatus::Sent), 10).await.unwrap();
    assert_eq!(sent.len(), 1);
}

#[tokio::test]
async fn undeliverable_mail_is_retried_then_given_up() {
    let c = core_with(|c| {
        c.email.transport = etx_core::mail::MailTransport::Smtp;
        c.email.smtp_tls = etx_core::mail::SmtpTls::None;
        c.email.smtp_host = "127.0.0.1".into();
        // Nothing listens on the discard port of loopback in the test environment.
        c.email.smtp_port = 9;
        c.email.smtp_timeout_secs = 2;
        c.email.max_attempts = 2;
    })
    .await;
    register(&c, "alice").await;
    assert_eq!(etx_core::mail::deliver_due(&c).await.unwrap(), 0);
    let pending = c.db.list_mail(Some(MailStatus::Pending), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert!(pending[0].last_error.is_some());
    assert!(
        pending[0].next_attempt_at > etx_db::now_micros() + 20_000_000,
        "the next try waits about 30 s"
    );
    // Due again: the second failure is the last.
    c.db.execute(
        "UPDATE email_outbox SET next_attempt_at = $1",
        [0i64.into()],
    )
    .await
    .unwrap();
    assert_eq!(etx_core::mail::deliver_due(&c).await.unwrap(), 0);
    let failed = c.db.list_mail(Some(MailStatus::Failed), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 2);
}

#[tokio::test]
async fn a_suspension_ends_access_and_refresh() {
    let c = core().await;
    let u = register(&c, "alice").await;
    let Ok(LoginOutcome::Session(_, issued)) = login(&c, "alice", PASSWORD).await else {
        panic!("no session");
    };
    session::authenticate(&c, &issued.access_token)
        .await
        .unwrap();
    c.db.execute(
        "UPDATE users SET is_active = $1 WHERE id = $2",
        [false.into(), u.id.clone().into()],
    )
    .await
    .unwrap();
    assert!(matches!(
        session::authenticate(&c, &issued.access_token).await,
        Err(CoreError::Unauthorized(m)) if m.contains("suspended")
    ));
    assert!(matches!(
        session::refresh(&c, &issued.refresh_token).await,
        Err(CoreError::Unauthorized(m)) if m.contains("suspended")
    ));
}
