//! The second factor on a core without HTTP: enrolment, a login that waits for a code, codes
//! that work once, backup codes, turning it off.

use crate::support::{Refused, TestCore, client, core};
use etx_core::CoreError;
use etx_core::accounts::{self, LoginOutcome, Registration};
use etx_core::security::{self, Factor};
use etx_db::users::UserRow;

const PASSWORD: &str = "Correct1Horse";

async fn user(c: &TestCore) -> UserRow {
    accounts::register(
        c,
        Registration {
            username: "alice",
            email: "alice@example.com",
            password: PASSWORD,
            name: None,
        },
        &client("192.0.2.1"),
    )
    .await
    .unwrap()
}

/// RFC 4648 base32 without padding, as the enrolment shows the secret.
fn unbase32(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

fn code_at(secret: &[u8], step_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = etx_auth::totp::step_at(now).saturating_add_signed(step_offset);
    format!("{:06}", etx_auth::totp::hotp(secret, step))
}

#[tokio::test]
async fn enrolment_login_with_a_code_backup_codes_and_turning_it_off() {
    let c = core().await;
    let u = user(&c).await;
    assert!(!security::status(&c, &u.id).await.unwrap().enabled);
    assert!(
        matches!(
            security::confirm(&c, &u, "s", "123456").await,
            Err(CoreError::Conflict { .. })
        ),
        "nothing to confirm before set-up"
    );

    let enrol = security::setup(&c, &u).await.unwrap();
    assert!(
        enrol.otpauth_url.starts_with("otpauth://totp/"),
        "{}",
        enrol.otpauth_url
    );
    assert!(enrol.qr_svg.contains("<svg"));
    let secret = unbase32(&enrol.secret);
    let wrong = if code_at(&secret, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    let e = security::confirm(&c, &u, "s", wrong).await.refused();
    assert!(matches!(e, CoreError::Validation { fields, .. } if fields.contains_key("code")));
    // Confirmed with the code of the previous step, so the current one is still unused.
    let backup = security::confirm(&c, &u, "s", &code_at(&secret, -1))
        .await
        .unwrap();
    assert!(backup.len() >= 8, "{backup:?}");
    let status = security::status(&c, &u.id).await.unwrap();
    assert!(status.enabled && status.enabled_at.is_some());
    assert_eq!(status.backup_codes_left, backup.len() as i64);
    assert!(matches!(
        security::setup(&c, &u).await,
        Err(CoreError::Conflict { .. })
    ));

    // The password alone now opens a challenge, not a session.
    let login = accounts::login(&c, "alice", PASSWORD, false, &client("192.0.2.2"))
        .await
        .unwrap();
    let LoginOutcome::SecondFactor { challenge_token } = login else {
        panic!("a session without the second factor");
    };
    let e = security::complete_login(&c, &challenge_token, wrong, &client("192.0.2.2"))
        .await
        .refused();
    assert!(
        matches!(e, CoreError::Unauthorized(_) | CoreError::Validation { .. }),
        "{e:?}"
    );
    assert!(matches!(
        security::complete_login(&c, "", "123456", &client("192.0.2.2")).await,
        Err(CoreError::Unauthorized(_))
    ));
    let now = code_at(&secret, 0);
    let (who, issued) = security::complete_login(&c, &challenge_token, &now, &client("192.0.2.2"))
        .await
        .unwrap();
    assert_eq!(who.id, u.id);
    assert!(!issued.access_token.is_empty());
    assert!(
        security::complete_login(&c, &challenge_token, &now, &client("192.0.2.2"))
            .await
            .is_err(),
        "a challenge opens one session"
    );

    // A code works once; a backup code works once, whatever its spacing and case.
    assert_eq!(
        security::use_factor(&c, &u.id, &now, true).await.unwrap(),
        None
    );
    let spaced = format!(" {} ", backup[0].to_lowercase());
    assert_eq!(
        security::use_factor(&c, &u.id, &spaced, true)
            .await
            .unwrap(),
        Some(Factor::BackupCode)
    );
    assert_eq!(
        security::use_factor(&c, &u.id, &backup[0], true)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        security::use_factor(&c, &u.id, &backup[1], false)
            .await
            .unwrap(),
        None,
        "backup codes only where allowed"
    );
    assert_eq!(Factor::BackupCode.as_str(), "backup_code");
    assert_eq!(
        security::status(&c, &u.id).await.unwrap().backup_codes_left,
        backup.len() as i64 - 1
    );

    let e = security::disable(&c, &u, "Wrong1Horse", &backup[1])
        .await
        .refused();
    assert!(matches!(e, CoreError::Validation { fields, .. } if fields.contains_key("password")));
    let e = security::disable(&c, &u, PASSWORD, "nope").await.refused();
    assert!(matches!(e, CoreError::Validation { fields, .. } if fields.contains_key("code")));
    security::disable(&c, &u, PASSWORD, &backup[1])
        .await
        .unwrap();
    assert!(!security::status(&c, &u.id).await.unwrap().enabled);
    assert!(matches!(
        security::disable(&c, &u, PASSWORD, &backup[2]).await,
        Err(CoreError::Conflict { .. })
    ));
    assert_eq!(
        security::use_factor(&c, &u.id, &backup[2], true)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_password_reset_mail_is_sent_only_for_a_known_address() {
    let c = core().await;
    user(&c).await;
    let before = c.db.due_mail(50).await.unwrap().len();
    security::forgot_password(&c, "nobody@example.com", &client("192.0.2.3"))
        .await
        .unwrap();
    security::forgot_password(&c, "ALICE@example.com", &client("192.0.2.3"))
        .await
        .unwrap();
    // The lookup and the mail may happen after the answer.
    let mut resets = Vec::new();
    for _ in 0..100 {
        resets =
            c.db.due_mail(50)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.template == "reset_password")
                .collect();
        if !resets.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].to_addr, "alice@example.com");
    assert_eq!(c.db.due_mail(50).await.unwrap().len(), before + 1);
    assert!(!security::reset_token_live(&c, "not-a-token").await.unwrap());
    assert!(!security::reset_token_live(&c, "").await.unwrap());

    let (_, token) = resets[0]
        .body_text
        .split_once("http://localhost:8080/reset-password?token=")
        .expect("the link points at the reset page");
    assert!(security::reset_token_live(&c, token).await.unwrap());
    let e = security::reset_password(&c, token, "weak", &client("192.0.2.3"))
        .await
        .refused();
    assert!(matches!(e, CoreError::Validation { .. }), "{e:?}");
    security::reset_password(&c, token, "Brand1NewHorse", &client("192.0.2.3"))
        .await
        .unwrap();
    assert!(
        !security::reset_token_live(&c, token).await.unwrap(),
        "used up"
    );
    assert!(
        security::reset_password(&c, token, "Other1NewHorse", &client("192.0.2.3"))
            .await
            .is_err()
    );
    assert!(
        accounts::login(&c, "alice", PASSWORD, false, &client("192.0.2.4"))
            .await
            .is_err()
    );
    assert!(
        accounts::login(&c, "alice", "Brand1NewHorse", false, &client("192.0.2.4"))
            .await
            .is_ok()
    );
    assert!(matches!(
        security::forgot_password(&c, "not-an-address", &client("192.0.2.3")).await,
        Err(CoreError::Validation { .. })
    ));
}
