//! Retries of movements, idempotency keys and the small helpers every money operation uses.

use super::*;
use std::cell::{Cell, RefCell};

/// Runs `with_retries` over attempts that fail with `failures` in turn, then succeed with 7;
/// returns the result and how many attempts were made.
async fn retried(failures: Vec<Failure>) -> (Result<u32, CoreError>, u32) {
    let tries = Cell::new(0u32);
    let failures = RefCell::new(failures.into_iter());
    let r = with_retries(|| {
        tries.set(tries.get() + 1);
        let next = failures.borrow_mut().next();
        async move {
            match next {
                Some(f) => Err(f),
                None => Ok(7),
            }
        }
    })
    .await;
    (r, tries.get())
}

fn conflicts(n: usize) -> Vec<Failure> {
    (0..n).map(|_| Failure::Conflict("moved")).collect()
}

#[tokio::test(start_paused = true)]
async fn concurrent_writes_are_retried_up_to_five_times() {
    let (r, tries) = retried(conflicts(4)).await;
    assert_eq!(r.unwrap(), 7);
    assert_eq!(tries, 5, "four conflicts, then the fifth try succeeds");

    let (r, tries) = retried(conflicts(5)).await;
    let e = r.unwrap_err();
    assert_eq!(tries, 5, "no sixth try");
    assert!(
        matches!(&e, CoreError::Internal(a) if format!("{a:#}").contains("could not serialize: moved")),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_and_other_errors_are_not_retried() {
    let (r, tries) = retried(vec![Failure::Api(CoreError::InsufficientFunds)]).await;
    assert!(matches!(r, Err(CoreError::InsufficientFunds)));
    assert_eq!(tries, 1);

    let (r, tries) = retried(vec![Failure::Db(DbErr::Custom("disk on fire".into()))]).await;
    assert_eq!(tries, 1, "not a transient conflict");
    let e = r.unwrap_err();
    assert!(
        matches!(&e, CoreError::Internal(a) if format!("{a:#}").contains("disk on fire")),
        "{e:?}"
    );

    let (r, tries) = retried(vec![Failure::KeyTaken]).await;
    assert_eq!(tries, 1);
    assert!(matches!(r, Err(CoreError::Internal(_))));
}

#[test]
fn ledger_refusals_become_core_errors() {
    assert!(matches!(
        Failure::from(PostError::InsufficientFunds),
        Failure::Api(CoreError::InsufficientFunds)
    ));
    assert!(matches!(
        Failure::from(PostError::Unbalanced),
        Failure::Api(CoreError::Internal(e)) if e.to_string() == "unbalanced entry"
    ));
    assert!(matches!(
        Failure::from(PostError::Db(DbErr::Custom("x".into()))),
        Failure::Db(_)
    ));
    assert!(matches!(
        Failure::from(CoreError::NotFound),
        Failure::Api(CoreError::NotFound)
    ));
    assert!(!is_transient(&DbErr::Custom("x".into())));
}

#[test]
fn idempotency_keys_are_visible_ascii_up_to_255() {
    assert_eq!(idempotency_key("order-42_A~").unwrap(), "order-42_A~");
    assert!(idempotency_key(&"k".repeat(255)).is_ok());
    for bad in [
        String::new(),
        "k".repeat(256),
        "has space".into(),
        "tab\t".into(),
        "é".into(),
    ] {
        assert!(
            matches!(idempotency_key(&bad), Err(CoreError::BadRequest(m)) if m.contains("Idempotency-Key")),
            "{bad:?}"
        );
    }
}

#[test]
fn taken_round_trips_through_its_stored_code() {
    for t in [Taken::Completed, Taken::Held] {
        assert_eq!(Taken::from_code(t.code()), t);
    }
    assert_eq!((Taken::Completed.code(), Taken::Held.code()), (201, 202));
    assert_eq!(Taken::from_code(200), Taken::Completed);
}

fn amount(json: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<AmountText>(json).map(|a| a.0)
}

#[test]
fn amounts_come_as_strings_or_numbers_and_keep_every_digit() {
    assert_eq!(amount(r#""12.50""#).unwrap(), "12.50");
    assert_eq!(amount("12.5").unwrap(), "12.5");
    assert_eq!(amount("-3").unwrap(), "-3");
    // Read from the text, never through a float.
    assert_eq!(amount("90071992547409.93").unwrap(), "90071992547409.93");
    assert_eq!(
        amount("0.123456789012345678").unwrap(),
        "0.123456789012345678"
    );
    // An exponent is kept as written, for the amount parser to refuse.
    assert_eq!(amount("1e3").unwrap(), "1e3");
    assert!(parse_amount(&amount("1e3").unwrap(), 2).is_err());
    for bad in ["true", "null", "[1]", r#"{"v": 1}"#] {
        let e = amount(bad).unwrap_err();
        assert!(
            e.to_string().contains("decimal string or a number"),
            "{bad}: {e}"
        );
    }
    assert!(matches!(
        amount_field(AmountError::NotPositive),
        CoreError::Validation { fields, .. } if fields["amount"] == "must be greater than zero"
    ));
}

fn raw(text: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(text.to_string()).unwrap()
}

#[test]
fn a_request_is_fingerprinted_by_its_json_not_its_spacing() {
    #[derive(serde::Deserialize)]
    struct Req {
        n: i64,
    }
    let (hash, req) = parse_request::<Req>(&raw(r#"{"n": 5, "m": [1, 2]}"#)).unwrap();
    assert_eq!(req.n, 5);
    assert_eq!(hash, request_hash(&json!({"m": [1, 2], "n": 5})));
    let (same, _) = parse_request::<Req>(&raw(r#"{ "m":[1,2],"n":5 }"#)).unwrap();
    assert_eq!(same, hash, "whitespace and key order do not matter");
    assert_eq!(hash.len(), 64);
    assert_ne!(hash, request_hash(&json!({"n": 6})));
    for bad in [r#"{"n": "five"}"#, "[1]", "5"] {
        let e = parse_request::<Req>(&raw(bad)).err().unwrap();
        assert!(
            matches!(e, CoreError::Validation { fields, .. } if fields.is_empty()),
            "{bad}"
        );
    }
    let (m, req) = Movement::start::<Req>("u1", "key", "transfer", &raw(r#"{"n": 1}"#)).unwrap();
    assert_eq!(
        (m.user_id, m.key, m.scope, req.n),
        ("u1", "key", "transfer", 1)
    );
    assert!(Movement::start::<Req>("u1", "key", "transfer", &raw("[]")).is_err());
}

#[test]
fn balances_and_reasons() {
    let balances = vec![("a".to_string(), 5), ("b".to_string(), -2)];
    assert_eq!(balance_of(&balances, "b").ok(), Some(-2));
    assert!(matches!(
        balance_of(&balances, "c"),
        Err(Failure::Api(CoreError::Internal(e))) if e.to_string().contains("lacks c")
    ));
    assert_eq!(
        reason_text("  fraud suspected ", "reason").unwrap(),
        "fraud suspected"
    );
    for bad in ["ab", &"x".repeat(501), "new\nline"] {
        assert!(
            matches!(reason_text(bad, "note"), Err(CoreError::Validation { fields, .. }) if fields.contains_key("note")),
            "{bad:?}"
        );
    }
    assert!(matches!(conflict("taken"), CoreError::Conflict { message, .. } if message == "taken"));
}

#[test]
fn a_notice_is_viewed_unread() {
    let n = notice(
        "deposit",
        "Deposit".into(),
        "1 BTC arrived".into(),
        json!({"x": 1}),
    );
    let v = n.view();
    assert_eq!(v["kind"], "deposit");
    assert_eq!(v["title"], "Deposit");
    assert_eq!(v["data"]["x"], 1);
    assert_eq!(v["read"], false);
    assert_eq!(v["id"], n.id);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
}
