//! P2P transfers and admin adjustments on a core without HTTP: limits, the AML rules that hold
//! an operation for review, idempotent replays, and the review decision.

use crate::support::{Refused, TestCore, client, core_with};
use etx_core::CoreError;
use etx_core::accounts::{self, Registration};
use etx_core::config::Config;
use etx_core::ledger::Taken;
use etx_core::session::Auth;
use etx_core::wallet;
use etx_db::users::UserRow;
use etx_domain::Role;
use serde_json::value::RawValue;
use serde_json::{Value, json};

const PASSWORD: &str = "Correct1Horse";

/// A verified user.
async fn user(c: &TestCore, username: &str) -> UserRow {
    let u = accounts::register(
        c,
        Registration {
            username,
            email: &format!("{username}@example.com"),
            password: PASSWORD,
            name: None,
        },
        &client("192.0.2.1"),
    )
    .await
    .unwrap();
    c.db.execute(
        "UPDATE users SET is_verified = $1 WHERE id = $2",
        [true.into(), u.id.clone().into()],
    )
    .await
    .unwrap();
    c.db.user_by_id(&u.id).await.unwrap().unwrap()
}

/// Makes `u` look `days` old, so the young-account rule no longer applies.
async fn age(c: &TestCore, u: &UserRow, days: i64) -> UserRow {
    c.db.execute(
        "UPDATE users SET created_at = $1 WHERE id = $2",
        [
            (etx_db::now_micros() - days * 86_400_000_000).into(),
            u.id.clone().into(),
        ],
    )
    .await
    .unwrap();
    c.db.user_by_id(&u.id).await.unwrap().unwrap()
}

async fn admin(c: &TestCore, username: &str) -> UserRow {
    accounts::create_admin(
        &c.db,
        &c.hasher,
        &format!("{username}@example.com"),
        username,
        PASSWORD,
    )
    .await
    .unwrap()
}

async fn fund(c: &TestCore, admin: &UserRow, u: &UserRow, currency: &str, amount: &str) {
    let out = wallet::adjust(
        c,
        admin,
        &uuid::Uuid::now_v7().to_string(),
        &raw(json!({"user_id": u.id, "currency": currency, "amount": amount, "reason": "opening balance"})),
    )
    .await
    .unwrap();
    assert_eq!(out.status, Taken::Completed, "{}", out.body);
}

async fn send(
    c: &TestCore,
    from: &UserRow,
    to: &str,
    amount: &str,
    key: &str,
) -> Result<etx_core::ledger::Outcome, CoreError> {
    wallet::transfer_p2p(
        c,
        from,
        key,
        &raw(json!({"recipient": to, "amount": amount, "currency": "USD"})),
    )
    .await
}

async fn balance(c: &TestCore, u: &UserRow, currency: &str) -> String {
    let (list, _) = wallet::balance_list(c, &u.id).await.unwrap();
    list.into_iter()
        .find(|(code, _)| code == currency)
        .map(|(_, b)| b)
        .unwrap()
}

/// A core where adjustments up to $100,000 need no second admin.
async fn bank(change: impl FnOnce(&mut Config)) -> TestCore {
    core_with(|c| {
        c.admin.adjust_approval_from_usd = "100000".into();
        change(c);
    })
    .await
}

/// A request body as the HTTP layer hands it over: the JSON text as sent.
fn raw(v: Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&v).unwrap()
}

fn body(o: &etx_core::ledger::Outcome) -> Value {
    serde_json::from_str(&o.body).unwrap()
}

#[tokio::test]
async fn a_transfer_moves_money_and_replays_under_its_key() {
    let c = bank(|_| {}).await;
    let boss = admin(&c, "boss").await;
    let alice = age(&c, &user(&c, "alice").await, 30).await;
    let bob = user(&c, "bob").await;
    fund(&c, &boss, &alice, "USD", "100").await;

    let first = send(&c, &alice, "bob", "25.50", "k1").await.unwrap();
    assert_eq!(first.status, Taken::Completed);
    assert!(!first.replayed);
    let t = &body(&first)["transfer"];
    assert_eq!(
        (t["amount"].as_str(), t["status"].as_str()),
        (Some("25.50"), Some("completed"))
    );
    assert_eq!(balance(&c, &alice, "USD").await, "74.50");
    assert_eq!(balance(&c, &bob, "USD").await, "25.50");

    let again = send(&c, &alice, "bob", "25.50", "k1").await.unwrap();
    assert!(
        again.replayed,
        "the same request under the same key is answered again"
    );
    assert_eq!(again.body, first.body);
    assert_eq!(
        balance(&c, &alice, "USD").await,
        "74.50",
        "and not moved twice"
    );

    let e = send(&c, &alice, "bob", "1.00", "k1").await.refused();
    assert!(matches!(e, CoreError::Conflict { .. }), "{e:?}");
}

#[tokio::test]
async fn transfers_are_refused_outside_the_rules() {
    let c = bank(|_| {}).await;
    let boss = admin(&c, "boss").await;
    let alice = age(&c, &user(&c, "alice").await, 30).await;
    user(&c, "bob").await;
    fund(&c, &boss, &alice, "USD", "100").await;
    let field = |e: CoreError| match e {
        CoreError::Validation { fields, .. } => fields.into_keys().collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(send(&c, &alice, "alice", "5", "a").await.refused()),
        ["recipient"]
    );
    assert_eq!(
        field(send(&c, &alice, "nobody", "5", "b").await.refused()),
        ["recipient"]
    );
    assert_eq!(
        field(send(&c, &alice, "bob", "0", "c").await.refused()),
        ["amount"]
    );
    assert_eq!(
        field(send(&c, &alice, "bob", "1.001", "d").await.refused()),
        ["amount"]
    );
    let e = wallet::transfer_p2p(
        &c,
        &alice,
        "e",
        &raw(json!({"recipient": "bob", "amount": "5", "currency": "DOGE"})),
    )
    .await
    .refused();
    assert_eq!(field(e), ["currency"]);
    let e = wallet::transfer_p2p(
        &c,
        &alice,
        "f",
        &raw(
            json!({"recipient": "bob", "amount": "5", "currency": "USD", "note": "x".repeat(281)}),
        ),
    )
    .await
    .refused();
    assert_eq!(field(e), ["note"]);
    assert!(matches!(
        send(&c, &alice, "bob", "0.99", "g").await,
        Err(CoreError::LimitExceeded(m)) if m.contains("between $1.00 and $50000.00")
    ));
    assert!(matches!(
        send(&c, &alice, "bob", "100.01", "h").await,
        Err(CoreError::InsufficientFunds)
    ));
    assert!(matches!(
        wallet::transfer_p2p(&c, &alice, "i", &raw(json!({"amount": "5"}))).await,
        Err(CoreError::Validation { .. })
    ));
    assert_eq!(balance(&c, &alice, "USD").await, "100.00", "nothing moved");
}

/// The open review of the newest flag of `u`.
async fn flags_of(c: &TestCore, u: &UserRow) -> Vec<(String, String)> {
    let (_, rows) = c.db.list_flags(None, 0, 50).await.unwrap();
    rows.into_iter()
        .filter(|f| f.user_id == u.id)
        .map(|f| (f.rule, f.id))
        .collect()
}

#[tokio::test]
async fn a_young_account_moving_much_is_held_for_review_and_released_by_staff() {
    let c = bank(|_| {}).await;
    let boss = admin(&c, "boss").await;
    let young = user(&c, "young").await;
    let bob = user(&c, "bob").await;
    fund(&c, &boss, &young, "USD", "10000").await;

    // Below the young-account threshold ($3,000): carried out.
    assert_eq!(
        send(&c, &young, "bob", "2999.99", "small")
            .await
            .unwrap()
            .status,
        Taken::Completed
    );
    let held = send(&c, &young, "bob", "3000", "big").await.unwrap();
    // A held transfer is still answered as created (201); its status says it waits.
    assert_eq!(held.status, Taken::Completed);
    assert_eq!(body(&held)["transfer"]["status"], "held");
    assert!(body(&held)["transfer"]["review"].is_string());
    assert_eq!(
        balance(&c, &bob, "USD").await,
        "2999.99",
        "the recipient waits"
    );
    let flags = flags_of(&c, &young).await;
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].0, "young_account");

    let staff = Auth {
        user: boss.clone(),
        role: Role::Admin,
        session_id: "s".into(),
    };
    let as_user = Auth {
        user: bob.clone(),
        role: Role::User,
        session_id: "s".into(),
    };
    assert!(matches!(
        etx_core::review::decide_flag(&c, &as_user, &flags[0].1, true, "looks fine").await,
        Err(CoreError::Forbidden(_))
    ));
    assert!(matches!(
        etx_core::review::decide_flag(&c, &staff, &flags[0].1, true, "ok").await,
        Err(CoreError::Validation { .. })
    ));
    assert!(matches!(
        etx_core::review::decide_flag(&c, &staff, "no-such-flag", true, "looks fine").await,
        Err(CoreError::NotFound)
    ));
    let own = Auth {
        user: young.clone(),
        role: Role::Moderator,
        session_id: "s".into(),
    };
    assert!(matches!(
        etx_core::review::decide_flag(&c, &own, &flags[0].1, true, "looks fine").await,
        Err(CoreError::Forbidden(m)) if m.contains("your own")
    ));
    let released = etx_core::review::decide_flag(&c, &staff, &flags[0].1, true, "known customer")
        .await
        .unwrap();
    assert_eq!(released.status, "released");
    assert_eq!(
        balance(&c, &bob, "USD").await,
        "5999.99",
        "delivered on release"
    );
    assert!(matches!(
        etx_core::review::decide_flag(&c, &staff, &flags[0].1, false, "changed my mind").await,
        Err(CoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn a_large_amount_is_held_and_a_rejection_returns_it() {
    let c = bank(|_| {}).await;
    let boss = admin(&c, "boss").await;
    let alice = age(&c, &user(&c, "alice").await, 30).await;
    user(&c, "bob").await;
    fund(&c, &boss, &alice, "USD", "20000").await;
    let held = send(&c, &alice, "bob", "10000", "large").await.unwrap();
    assert_eq!(body(&held)["transfer"]["status"], "held");
    assert_eq!(body(&held)["balance"], "10000.00");
    assert_eq!(
        balance(&c, &alice, "USD").await,
        "10000.00",
        "held apart from the wallet"
    );
    let flags = flags_of(&c, &alice).await;
    assert_eq!(flags[0].0, "large_amount");
    let staff = Auth {
        user: boss,
        role: Role::Admin,
        session_id: "s".into(),
    };
    let rejected =
        etx_core::review::decide_flag(&c, &staff, &flags[0].1, false, "no source of funds")
            .await
            .unwrap();
    assert_eq!(rejected.status, "rejected");
    assert_eq!(
        balance(&c, &alice, "USD").await,
        "20000.00",
        "returned to the sender"
    );
}

#[tokio::test]
async fn too_many_operations_in_the_window_are_held() {
    let c = bank(|c| c.aml.max_operations_in_window = 2).await;
    let boss = admin(&c, "boss").await;
    let alice = age(&c, &user(&c, "alice").await, 30).await;
    user(&c, "bob").await;
    fund(&c, &boss, &alice, "USD", "100").await;
    for key in ["v1", "v2"] {
        let done = send(&c, &alice, "bob", "1", key).await.unwrap();
        assert_eq!(body(&done)["transfer"]["status"], "completed");
    }
    let third = send(&c, &alice, "bob", "1", "v3").await.unwrap();
    assert_eq!(body(&third)["transfer"]["status"], "held");
    assert_eq!(flags_of(&c, &alice).await[0].0, "velocity");
}

#[tokio::test]
async fn the_daily_cap_counts_every_transfer_of_the_day() {
    let c = bank(|c| {
        c.transfers.daily_cap_usd = "10".into();
        c.transfers.max_usd = "10".into();
    })
    .await;
    let boss = admin(&c, "boss").await;
    let alice = age(&c, &user(&c, "alice").await, 30).await;
    user(&c, "bob").await;
    fund(&c, &boss, &alice, "USD", "100").await;
    send(&c, &alice, "bob", "6", "d1").await.unwrap();
    let e = send(&c, &alice, "bob", "5", "d2").await.refused();
    assert!(
        matches!(&e, CoreError::LimitExceeded(m) if m.contains("daily")),
        "{e:?}"
    );
    send(&c, &alice, "bob", "4", "d3").await.unwrap();
}

#[tokio::test]
async fn adjustments_need_another_admin_and_a_second_one_above_the_threshold() {
    let c = core_with(|_| {}).await;
    let boss = admin(&c, "boss").await;
    let other = admin(&c, "other").await;
    let alice = user(&c, "alice").await;
    let adjust = |who: &UserRow, user_id: &str, amount: &str, key: &str| {
        let (c, who) = (&c, who.clone());
        let body = json!({"user_id": user_id, "currency": "USD", "amount": amount, "reason": "correction"});
        let key = key.to_string();
        async move { wallet::adjust(c, &who, &key, &raw(body)).await }
    };
    assert!(matches!(
        adjust(&boss, &boss.id, "5", "own").await,
        Err(CoreError::Forbidden(_))
    ));
    assert!(matches!(
        adjust(&boss, &alice.id, "0", "zero").await,
        Err(CoreError::Validation { .. })
    ));
    // $1,000 or more waits for a second admin.
    let pending = adjust(&boss, &alice.id, "1000", "big").await.unwrap();
    assert_eq!(pending.status, Taken::Held);
    assert_eq!(balance(&c, &alice, "USD").await, "0.00");
    let id = body(&pending)["adjustment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(matches!(
        wallet::decide_adjustment(&c, &boss, &id, true, None).await,
        Err(CoreError::Forbidden(_))
    ));
    assert!(matches!(
        wallet::decide_adjustment(&c, &other, "not-a-uuid", true, None).await,
        Err(CoreError::NotFound)
    ));
    assert!(matches!(
        wallet::decide_adjustment(&c, &other, &id, false, Some("no")).await,
        Err(CoreError::Validation { .. })
    ));
    let applied = wallet::decide_adjustment(&c, &other, &id, true, None)
        .await
        .unwrap();
    assert_eq!(applied.status, "applied");
    assert_eq!(balance(&c, &alice, "USD").await, "1000.00");
    // A debit below the threshold applies at once, and cannot overdraw.
    adjust(&other, &alice.id, "-10", "debit").await.unwrap();
    assert_eq!(balance(&c, &alice, "USD").await, "990.00");
    assert!(matches!(
        adjust(&other, &alice.id, "-990.01", "overdraw").await,
        Err(CoreError::InsufficientFunds)
    ));
}
