//! Deposit orders with the sandbox provider and its signed notifications, on a core without
//! HTTP: limits, signatures, statuses that never go back, crediting.

use crate::support::{Refused, TestCore, client, core, core_with};
use etx_core::CoreError;
use etx_core::accounts::{self, Registration};
use etx_core::address::Network;
use etx_core::deposits::{self, DepositRequest, SimulateRequest};
use etx_core::ledger::AmountText;
use etx_db::users::UserRow;
use serde_json::json;

async fn user(c: &TestCore) -> UserRow {
    accounts::register(
        c,
        Registration {
            username: "alice",
            email: "alice@example.com",
            password: "Correct1Horse",
            name: None,
        },
        &client("192.0.2.1"),
    )
    .await
    .unwrap()
}

async fn order(c: &TestCore, u: &UserRow, usd: &str, pay: &str) -> Result<String, CoreError> {
    deposits::create_deposit(
        c,
        u,
        DepositRequest {
            amount: AmountText(usd.into()),
            pay_currency: pay.into(),
        },
    )
    .await
    .map(|d| d.order_id)
}

async fn simulate(c: &TestCore, order_id: &str, status: &str) -> String {
    deposits::simulate(
        c,
        order_id,
        SimulateRequest {
            status: status.into(),
            actually_paid: None,
        },
    )
    .await
    .unwrap()
    .result
}

async fn btc_balance(c: &TestCore, u: &UserRow) -> String {
    let (list, _) = etx_core::wallet::balance_list(c, &u.id).await.unwrap();
    list.into_iter().find(|(code, _)| code == "BTC").unwrap().1
}

#[tokio::test]
async fn an_order_gets_a_checkable_address_and_the_price_in_the_pay_currency() {
    let c = core().await;
    let u = user(&c).await;
    let d = deposits::create_deposit(
        &c,
        &u,
        DepositRequest {
            amount: AmountText("650".into()),
            pay_currency: "btc".into(),
        },
    )
    .await
    .unwrap();
    assert!(d.order_id.starts_with("DEP-"), "{}", d.order_id);
    assert_eq!(
        (d.provider.as_str(), d.status.as_str()),
        ("sandbox", "waiting")
    );
    assert_eq!(
        (d.price_amount.as_str(), d.pay_currency.as_str()),
        ("650.00", "BTC")
    );
    // $650 at about $65,000 (the simulated price moves around it).
    let pay: f64 = d.pay_amount.parse().unwrap();
    assert!((0.008..0.0115).contains(&pay), "{}", d.pay_amount);
    assert!(
        Network::Bitcoin.valid(&d.pay_address, true),
        "{}",
        d.pay_address
    );
    assert!(
        d.payment_uri
            .starts_with(&format!("bitcoin:{}?amount=", d.pay_address))
    );
    assert_eq!(d.credit_state, "none");
}

#[tokio::test]
async fn orders_outside_the_limits_or_currencies_are_refused() {
    let c = core().await;
    let u = user(&c).await;
    let e = order(&c, &u, "9.99", "BTC").await.refused();
    assert!(matches!(e, CoreError::LimitExceeded(_)), "{e:?}");
    let e = order(&c, &u, "100000.01", "BTC").await.refused();
    assert!(matches!(e, CoreError::LimitExceeded(_)), "{e:?}");
    for bad in ["USD", "DOGE"] {
        assert!(
            matches!(
                order(&c, &u, "50", bad).await,
                Err(CoreError::Validation { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        order(&c, &u, "ten", "BTC").await,
        Err(CoreError::Validation { .. })
    ));
}

#[tokio::test]
async fn a_finished_payment_is_credited_once_and_never_goes_back() {
    let c = core().await;
    let u = user(&c).await;
    let id = order(&c, &u, "650", "BTC").await.unwrap();
    let pay =
        c.db.deposit_by_order(&id)
            .await
            .unwrap()
            .unwrap()
            .pay_amount;
    simulate(&c, &id, "confirming").await;
    assert_eq!(
        btc_balance(&c, &u).await,
        "0.00000000",
        "nothing before it finishes"
    );
    simulate(&c, &id, "finished").await;
    let credited = etx_domain::format_amount(pay, 8);
    assert_eq!(btc_balance(&c, &u).await, credited);
    let d = c.db.deposit_by_order(&id).await.unwrap().unwrap();
    assert_eq!(
        (d.status.as_str(), d.credit_state.as_str()),
        ("finished", "credited")
    );
    // A late, lower status and a repeat change nothing.
    simulate(&c, &id, "confirming").await;
    simulate(&c, &id, "finished").await;
    let d = c.db.deposit_by_order(&id).await.unwrap().unwrap();
    assert_eq!(d.status, "finished");
    assert_eq!(btc_balance(&c, &u).await, credited, "credited once");
    assert!(
        c.db.webhooks_of_order(&id).await.unwrap().len() >= 4,
        "each one is kept"
    );
}

#[tokio::test]
async fn notifications_must_be_signed_and_complete() {
    let c = core().await;
    let u = user(&c).await;
    let id = order(&c, &u, "50", "ETH").await.unwrap();
    let body = json!({"order_id": id, "payment_status": "finished"});
    let raw = serde_json::to_vec(&body).unwrap();
    let sig = c.payments.sign(&body);
    let ip = Some("198.51.100.7".parse().unwrap());
    assert!(matches!(
        deposits::receive_webhook(&c, "nowpayments", Some(&sig), &raw, ip).await,
        Err(CoreError::NotFound)
    ));
    assert!(matches!(
        deposits::receive_webhook(&c, "sandbox", None, &raw, ip).await,
        Err(CoreError::Unauthorized(_))
    ));
    let forged = c
        .payments
        .sign(&json!({"order_id": id, "payment_status": "waiting"}));
    assert!(matches!(
        deposits::receive_webhook(&c, "sandbox", Some(&forged), &raw, ip).await,
        Err(CoreError::Unauthorized(_))
    ));
    assert!(matches!(
        deposits::receive_webhook(&c, "sandbox", Some(&sig), b"not json", ip).await,
        Err(CoreError::Unauthorized(_))
    ));
    let signed = |v: serde_json::Value| {
        let sig = c.payments.sign(&v);
        (serde_json::to_vec(&v).unwrap(), sig)
    };
    let (raw, sig) = signed(json!({"order_id": id}));
    assert!(matches!(
        deposits::receive_webhook(&c, "sandbox", Some(&sig), &raw, None).await,
        Err(CoreError::Validation { .. })
    ));
    let (raw, sig) = signed(json!({"order_id": id, "payment_status": "lost_in_the_mail"}));
    assert!(matches!(
        deposits::receive_webhook(&c, "sandbox", Some(&sig), &raw, None).await,
        Err(CoreError::Validation { fields, .. }) if fields.contains_key("payment_status")
    ));
    let (raw, sig) = signed(json!({"order_id": "DEP-NOPE", "payment_status": "finished"}));
    assert!(
        deposits::receive_webhook(&c, "sandbox", Some(&sig), &raw, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unsigned_notifications_from_one_address_are_throttled() {
    let c = core().await;
    let ip = Some("198.51.100.8".parse().unwrap());
    let mut limited = false;
    for _ in 0..200 {
        match deposits::receive_webhook(&c, "sandbox", None, b"{}", ip).await {
            Err(CoreError::Unauthorized(_)) => {}
            Err(CoreError::RateLimited { .. }) => {
                limited = true;
                break;
            }
            other => panic!("{:?}", other.map(|r| r.result)),
        }
    }
    assert!(limited, "throttled within 200 tries");
}

#[tokio::test]
async fn simulated_payments_exist_only_in_dev() {
    let c = core_with(|c| {
        c.env = etx_core::config::RunEnv::Production;
        c.public_url = Some("https://etx.example.com".into());
    })
    .await;
    let u = user(&c).await;
    let id = order(&c, &u, "50", "BTC").await.unwrap();
    let r = deposits::simulate(
        &c,
        &id,
        SimulateRequest {
            status: "finished".into(),
            actually_paid: None,
        },
    )
    .await;
    assert!(matches!(r, Err(CoreError::Forbidden(_))));

    let c = core().await;
    let u = user(&c).await;
    let id = order(&c, &u, "50", "BTC").await.unwrap();
    let sim = |status: &str, paid: Option<&str>| SimulateRequest {
        status: status.into(),
        actually_paid: paid.map(|p| AmountText(p.into())),
    };
    assert!(matches!(
        deposits::simulate(&c, "DEP-NOPE", sim("finished", None)).await,
        Err(CoreError::NotFound)
    ));
    assert!(matches!(
        deposits::simulate(&c, &id, sim("teleported", None)).await,
        Err(CoreError::Validation { .. })
    ));
    assert!(matches!(
        deposits::simulate(&c, &id, sim("finished", Some("-1"))).await,
        Err(CoreError::Validation { fields, .. }) if fields.contains_key("actually_paid")
    ));
}
