//! Property test: random sequences of adjustments, transfers and replays are run against the
//! real ledger and against a plain in-memory model; every answer and every balance must agree.

use crate::support::TestApp;
use etx_core::wallet;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Adjust {
        user: usize,
        cents: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        cents: i64,
    },
    /// Sends the previous money request again with the same key and body.
    Replay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..3, -5_000i64..20_000).prop_map(|(user, cents)| Op::Adjust { user, cents }),
        5 => (0usize..3, 0usize..3, 0i64..8_000).prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        1 => Just(Op::Replay),
    ]
}

fn usd(cents: i64) -> String {
    etx_domain::format_amount(cents, 2)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ledger_agrees_with_a_simple_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let app = TestApp::spawn().await;
            let admin = app.user_with_role("model_admin", "admin").await;
            let admin_row = app.state.db.user_by_id(&admin.id).await.unwrap().unwrap();
            let mut users = Vec::new();
            for n in ["m_a", "m_b", "m_c"] {
                let u = app.register(n).await;
                app.verify(&u).await;
                users.push(app.state.db.user_by_id(&u.id).await.unwrap().unwrap());
            }
            let mut model: HashMap<usize, i64> = HashMap::new();
            let mut last: Option<(usize, String, serde_json::Value, u16)> = None;
            for (i, op) in ops.iter().enumerate() {
                let key = format!("op-{i}");
                match op {
                    Op::Adjust { user, cents } => {
                        let body = json!({"user_id": users[*user].id, "currency": "USD", "amount": usd(*cents), "reason": "model"});
                        let got = wallet::adjust(&app.state, &admin_row, &key, &raw(&body)).await;
                        let bal = model.entry(*user).or_default();
                        let ok = *cents != 0 && *bal + cents >= 0;
                        assert_eq!(got.is_ok(), ok, "{op:?} with balance {bal}");
                        if ok {
                            *bal += cents;
                            last = Some((usize::MAX, key, body, 201));
                        }
                    }
                    Op::Transfer { from, to, cents } => {
                        let body = json!({"recipient": users[*to].username, "amount": usd(*cents), "currency": "USD"});
                        let got = wallet::transfer_p2p(&app.state, &users[*from], &key, &raw(&body)).await;
                        let have = *model.get(from).unwrap_or(&0);
                        let ok = from != to && *cents >= 100 && have >= *cents;
                        assert_eq!(got.is_ok(), ok, "{op:?} with balance {have}: {:?}", got.err().map(|e| e.to_string()));
                        if ok {
                            *model.entry(*from).or_default() -= cents;
                            *model.entry(*to).or_default() += cents;
                            last = Some((*from, key, body, 201));
                        }
                    }
                    Op::Replay => {
                        let Some((who, key, body, status)) = last.clone() else { continue };
                        let got = if who == usize::MAX {
                            wallet::adjust(&app.state, &admin_row, &key, &raw(&body)).await
                        } else {
                            wallet::transfer_p2p(&app.state, &users[who], &key, &raw(&body)).await
                        };
                        let got = got.unwrap();
                        assert!(got.replayed);
                        assert_eq!(got.status.code(), status);
                    }
                }
            }
            for (i, u) in users.iter().enumerate() {
                let rows = app.state.db.wallet_balances(&u.id).await.unwrap();
                let have = rows.iter().find(|(a, _, _)| a == "USD").map_or(0, |r| r.1);
                assert_eq!(have, *model.get(&i).unwrap_or(&0), "balance of user {i}");
            }
            app.ledger_ok().await;
        });
    }
}

/// A request body as the JSON text a client sends.
fn raw(body: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(body).unwrap()
}
