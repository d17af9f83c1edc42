//! The vocabulary through the crate's public API: validation messages keyed by field, parsed
//! user input, roles, levels, statuses, amounts.

use etx_domain::money::{decimal_text, unit};
use etx_domain::{
    AccountKind, AmountError, DepositStatus, Email, FieldErrors, Level, Role, Username,
    ValidationError, format_amount, parse_amount, parse_positive_amount, validate_new_password,
    write_amount,
};

#[test]
fn field_errors_keep_the_first_message_per_field() {
    let mut f = FieldErrors::new();
    assert!(f.is_empty());
    assert_eq!(f.clone().into_result(), Ok(()));
    assert_eq!(f.check(Username::parse("alice")).unwrap().as_str(), "alice");
    assert!(f.is_empty(), "a passing check adds nothing");
    assert!(f.check(Username::parse("a")).is_none());
    f.add("username", "second message");
    f.add("email", "taken");
    let errs = f.into_result().unwrap_err();
    assert_eq!(errs.0.len(), 2);
    assert_eq!(errs.0["username"], "must be 3 to 50 characters");
    assert_eq!(errs.0["email"], "taken");
}

#[test]
fn a_validation_error_names_its_field() {
    let e = ValidationError::new("amount", "must be positive");
    assert_eq!(e.to_string(), "amount: must be positive");
    let f = FieldErrors::from(e);
    assert_eq!(
        f.0.get("amount").map(String::as_str),
        Some("must be positive")
    );
}

#[test]
fn usernames_are_trimmed_and_limited() {
    let u = Username::parse("  Alice_B.c-9 ").unwrap();
    assert_eq!(
        (u.as_str(), u.lower()),
        ("Alice_B.c-9", "alice_b.c-9".into())
    );
    assert!(Username::parse("ab").is_err());
    assert!(Username::parse(&"x".repeat(50)).is_ok());
    assert!(Username::parse(&"x".repeat(51)).is_err());
    let e = Username::parse("bob smith").unwrap_err();
    assert_eq!(e.field, "username");
    assert!(e.message.contains("only letters"), "{e}");
    assert!(Username::parse("émile").is_err(), "ASCII only");
}

#[test]
fn emails_follow_the_address_rules() {
    let e = Email::parse(" Bob@Example.COM ").unwrap();
    assert_eq!(e.as_str(), "Bob@Example.COM");
    assert_eq!(e.lower(), "bob@example.com");
    for bad in [
        "plain",
        "@example.com",
        "bob@",
        "bob@localhost",
        "bob@-ex.com",
        "bob@ex-.com",
        "bob@ex..com",
        "bob@ex_ample.com",
        "bo b@example.com",
        "bob@exa\u{7}mple.com",
    ] {
        let err = Email::parse(bad).unwrap_err();
        assert_eq!(err.field, "email", "{bad}");
    }
    let long_local = format!("{}@example.com", "a".repeat(65));
    assert!(Email::parse(&long_local).is_err());
    let long_label = format!("bob@{}.com", "a".repeat(64));
    assert!(Email::parse(&long_label).is_err());
    let too_long = format!("bob@{}.com", vec!["a".repeat(60); 5].join("."));
    assert!(too_long.len() > 254 && Email::parse(&too_long).is_err());
    assert!(Email::parse("a.b+tag@sub.exämple.de").is_ok(), "IDN labels");
}

#[test]
fn new_passwords_follow_the_policy() {
    let msg = |raw: &str, user: Option<&str>, mail: Option<&str>| {
        validate_new_password(raw, user, mail).unwrap_err().message
    };
    assert!(msg("Ab1", None, None).contains("at least 8"));
    assert!(msg(&format!("Ab1{}", "x".repeat(126)), None, None).contains("at most 128"));
    assert!(msg("alllower1", None, None).contains("upper-case"));
    assert!(msg("ALLUPPER1", None, None).contains("upper-case"));
    assert!(msg("NoDigitsHere", None, None).contains("upper-case"));
    assert!(msg("Password123", None, None).contains("too common"));
    assert!(msg("Alice12345", Some("alice12345"), None).contains("username or email"));
    assert!(msg("Bob@Example1.com", None, Some("bob@example1.com")).contains("username"));
    let p = validate_new_password("Correct1Horse", Some("alice"), Some("a@b.cd")).unwrap();
    assert_eq!(p.expose(), "Correct1Horse");
    assert_eq!(format!("{p:?}"), "Password(***)", "never printed");
    assert_eq!(
        validate_new_password(&format!("Ab1{}", "x".repeat(125)), None, None)
            .unwrap()
            .expose()
            .len(),
        128
    );
}

#[test]
fn roles_print_and_order() {
    assert_eq!(Role::Admin.to_string(), "admin");
    assert_eq!(format!("{}", Role::User), "user");
    assert!(Role::User < Role::Moderator && Role::Moderator < Role::Admin);
    assert!(Role::Admin.is_staff() && Role::Admin.is_admin());
    let e = "root".parse::<Role>().unwrap_err();
    assert_eq!(e.field, "role");
}

#[test]
fn levels_count_exp_in_hundreds() {
    let l = Level::from_exp(199);
    assert_eq!(
        (l.level, l.exp_into_level, l.exp_for_next, l.percent()),
        (2, 99, 100, 99)
    );
    assert_eq!(Level::from_exp(i64::MIN).percent(), 0);
}

#[test]
fn account_kinds_and_statuses_refuse_unknown_names() {
    assert_eq!(AccountKind::parse("Wallet"), None);
    assert_eq!(AccountKind::parse("fees"), Some(AccountKind::Fees));
    assert_eq!(AccountKind::Suspense.to_string(), "suspense");
    assert!(!AccountKind::Fees.may_go_negative());
    assert!(AccountKind::WithdrawalsClearing.may_go_negative());
    assert_eq!(
        DepositStatus::parse("partially_paid"),
        Some(DepositStatus::PartiallyPaid)
    );
    assert_eq!(DepositStatus::parse(""), None);
    assert_eq!(DepositStatus::Expired.rank(), 1);
}

#[test]
fn amounts_parse_exactly_and_refuse_the_rest() {
    assert_eq!(parse_amount("12.50", 2), Ok(1250));
    assert_eq!(parse_amount("-0.01", 2), Ok(-1));
    assert_eq!(
        parse_amount("1.500", 2),
        Ok(150),
        "trailing zeros carry nothing"
    );
    assert_eq!(parse_amount("007", 0), Ok(7));
    assert_eq!(parse_amount("0.00000001", 8), Ok(1));
    assert_eq!(
        parse_amount("1.001", 2),
        Err(AmountError::TooManyDecimals(2))
    );
    for bad in ["", "-", ".", "1.", ".5", "1e3", " 1", "+1", "1,5", "--1"] {
        assert_eq!(
            parse_amount(bad, 2),
            Err(AmountError::NotANumber),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_amount("92233720368547758.08", 2),
        Err(AmountError::Overflow)
    );
    assert_eq!(parse_amount(&"9".repeat(20), 0), Err(AmountError::Overflow));
    assert_eq!(
        parse_amount("99999999999999999999", 0),
        Err(AmountError::Overflow)
    );
    assert_eq!(
        parse_amount("1", 19),
        Err(AmountError::Overflow),
        "no such scale"
    );
    assert_eq!(parse_amount("9223372036854775807", 0), Ok(i64::MAX));
    assert_eq!(parse_positive_amount("0.01", 2), Ok(1));
    assert_eq!(parse_positive_amount("0", 2), Err(AmountError::NotPositive));
    assert_eq!(
        parse_positive_amount("-5", 2),
        Err(AmountError::NotPositive)
    );
    assert_eq!(parse_positive_amount("x", 2), Err(AmountError::NotANumber));
    assert_eq!(
        AmountError::TooManyDecimals(8).to_string(),
        "has more than 8 decimal places"
    );
    assert_eq!(
        AmountError::NotPositive.to_string(),
        "must be greater than zero"
    );
}

#[test]
fn amounts_format_with_exactly_the_scale() {
    assert_eq!(format_amount(1250, 2), "12.50");
    assert_eq!(format_amount(-1, 8), "-0.00000001");
    assert_eq!(format_amount(42, 0), "42");
    assert_eq!(format_amount(i64::MIN, 2), "-92233720368547758.08");
    let mut out = String::from("= ");
    write_amount(&mut out, 5, 3);
    assert_eq!(out, "= 0.005");
    assert_eq!(unit(18), Some(1_000_000_000_000_000_000));
    assert_eq!(unit(19), None);
}

#[test]
fn settings_take_amounts_as_text_or_integers_not_floats() {
    use serde::de::IntoDeserializer;
    use serde::de::value::Error;
    let text: Result<String, Error> = decimal_text("0.50".into_deserializer());
    assert_eq!(text.unwrap(), "0.50");
    let signed: Result<String, Error> = decimal_text((-3i64).into_deserializer());
    assert_eq!(signed.unwrap(), "-3");
    let unsigned: Result<String, Error> = decimal_text(u64::MAX.into_deserializer());
    assert_eq!(unsigned.unwrap(), "18446744073709551615");
    let float: Result<String, Error> = decimal_text(0.5f64.into_deserializer());
    let e = float.unwrap_err().to_string();
    assert!(e.contains("quoted string"), "{e}");
}

#[test]
fn stored_names_read_back_exactly_and_print_as_stored() {
    use etx_domain::{AuditAction, CreditState, EntryKind, TxKind, WithdrawalStatus};
    fn round_trip<T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + AsRef<str>>(
        all: &[T],
        parse: fn(&str) -> Option<T>,
    ) {
        let mut seen = std::collections::HashSet::new();
        for &v in all {
            let text = v.to_string();
            assert_eq!(text, v.as_ref());
            assert!(seen.insert(text.clone()), "{text} is used twice");
            assert_eq!(parse(&text), Some(v));
            assert_eq!(parse(&text.to_uppercase()), None, "exact text only");
        }
        assert_eq!(parse(""), None);
    }
    round_trip(TxKind::ALL, TxKind::parse);
    round_trip(EntryKind::ALL, EntryKind::parse);
    round_trip(WithdrawalStatus::ALL, WithdrawalStatus::parse);
    round_trip(CreditState::ALL, CreditState::parse);
    round_trip(AuditAction::ALL, AuditAction::parse);
    round_trip(DepositStatus::ALL, DepositStatus::parse);
    assert_eq!(EntryKind::P2pHold.as_str(), "p2p_hold");
    assert_eq!(CreditState::Suspense.to_string(), "suspense");
}

#[test]
fn only_completed_rejected_and_cancelled_withdrawals_are_final() {
    use etx_domain::WithdrawalStatus;
    let finals: Vec<_> = WithdrawalStatus::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(finals, ["completed", "rejected", "cancelled"]);
    assert!(
        WithdrawalStatus::AWAITING_STAFF
            .iter()
            .all(|s| !s.is_final())
    );
    assert!(!WithdrawalStatus::AWAITING_STAFF.contains(&WithdrawalStatus::Held));
}
