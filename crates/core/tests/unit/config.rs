//! Settings: every check of `Config::validate` and of the sections it parses names the bad
//! setting; the typed values come out of the defaults as documented.

use etx_core::Config;
use etx_core::config::{DEFAULTS, RunEnv, Settings, StorageBackend};
use etx_core::ledger::{AssetConfig, Assets};
use etx_core::mail::{MailTransport, SmtpTls};
use etx_core::market::PriceFeed;
use etx_core::rules::PaymentProvider;
use etx_core::wallet::TransferLimits;

fn error_of(change: impl FnOnce(&mut Config)) -> String {
    let mut c = Config::defaults();
    change(&mut c);
    match c.validate() {
        Ok(_) => panic!("the changed settings were accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_bad_setting_is_named_on_one_line() {
    type Change = Box<dyn FnOnce(&mut Config)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|c| c.auth.access_ttl_secs = 29),
            "auth.access_ttl_secs",
        ),
        (
            Box::new(|c| c.auth.access_ttl_secs = 86_401),
            "auth.access_ttl_secs",
        ),
        (
            Box::new(|c| c.auth.refresh_ttl_days = 0),
            "auth.refresh_*_days",
        ),
        (
            Box::new(|c| c.auth.refresh_remember_days = c.auth.refresh_ttl_days - 1),
            "auth.refresh_*_days",
        ),
        (
            Box::new(|c| c.auth.session_max_days = c.auth.refresh_ttl_days - 1),
            "session_max_days",
        ),
        (
            Box::new(|c| c.auth.refresh_grace_secs = 61),
            "refresh_grace_secs",
        ),
        (
            Box::new(|c| c.auth.refresh_grace_secs = -1),
            "refresh_grace_secs",
        ),
        (
            Box::new(|c| c.idempotency.retention_hours = 23),
            "idempotency.retention_hours",
        ),
        (
            Box::new(|c| c.storage.backend = StorageBackend::S3),
            "storage.s3_bucket",
        ),
        (
            Box::new(|c| c.redis_url = Some("http://x".into())),
            "REDIS_URL",
        ),
        (
            Box::new(|c| c.http.trust_forwarded_for = Some(true)),
            "http.trusted_proxies",
        ),
        (
            Box::new(|c| c.secret_key = Some("short".into())),
            "ETX_SECRET_KEY",
        ),
        (
            Box::new(|c| c.email.from = "not an address".into()),
            "email.from",
        ),
        (Box::new(|c| c.email.max_attempts = 0), "email.max_attempts"),
        (Box::new(|c| c.two_factor.max_attempts = 0), "two_factor"),
        (
            Box::new(|c| c.two_factor.challenge_ttl_secs = 29),
            "two_factor",
        ),
        (
            Box::new(|c| c.two_factor.challenge_ttl_secs = 3601),
            "two_factor",
        ),
        (
            Box::new(|c| c.market.coinbase_url = "https://x".into()),
            "market.coinbase_url",
        ),
        (Box::new(|c| c.market.tick_ms = 49), "market: tick_ms"),
        (Box::new(|c| c.market.tick_ms = 60_001), "market: tick_ms"),
        (
            Box::new(|c| c.market.stale_after_secs = 0),
            "stale_after_secs",
        ),
        (Box::new(|c| c.env = RunEnv::Production), "ETX_PUBLIC_URL"),
        // The sections parsed into typed values.
        (Box::new(|c| c.assets.clear()), "at least one asset"),
        (
            Box::new(|c| c.assets[1].code = "B-TC".into()),
            "assets.code",
        ),
        (
            Box::new(|c| c.assets[1].code = String::new()),
            "assets.code",
        ),
        (
            Box::new(|c| c.assets[1].code = "ABCDEFGHIJK".into()),
            "assets.code",
        ),
        (Box::new(|c| c.assets[1].scale = 19), "assets.scale for BTC"),
        (
            Box::new(|c| c.assets[1].usd_price = "0".into()),
            "usd_price for BTC",
        ),
        (
            Box::new(|c| c.assets[2].code = "btc".into()),
            "BTC listed twice",
        ),
        (
            Box::new(|c| c.transfers.min_usd = "0".into()),
            "transfers.min_usd",
        ),
        (
            Box::new(|c| c.transfers.max_usd = "x".into()),
            "transfers.max_usd",
        ),
        (
            Box::new(|c| c.transfers.daily_cap_usd = "-1".into()),
            "transfers.daily_cap_usd",
        ),
        (
            Box::new(|c| c.transfers.min_usd = "60000".into()),
            "above max_usd",
        ),
        (
            Box::new(|c| c.deposits.provider = PaymentProvider::Nowpayments),
            "nowpayments_api_key and ipn_secret",
        ),
        (
            Box::new(|c| {
                c.deposits.provider = PaymentProvider::Nowpayments;
                c.deposits.nowpayments_api_key = Some("key".into());
                c.deposits.ipn_secret = Some(String::new());
            }),
            "nowpayments_api_key and ipn_secret",
        ),
        (
            Box::new(|c| c.deposits.ttl_minutes = 0),
            "deposits.ttl_minutes",
        ),
        (
            Box::new(|c| c.deposits.ttl_minutes = 1441),
            "deposits.ttl_minutes",
        ),
        (
            Box::new(|c| c.assets[1].network = Some("ripple".into())),
            "assets.network for BTC",
        ),
        (
            Box::new(|c| c.assets[1].withdrawal_min_fee = Some("-1".into())),
            "withdrawal_min_fee for BTC",
        ),
        (
            Box::new(|c| c.deposits.pay_currencies = vec!["usd".into()]),
            "USD is not a configured crypto asset",
        ),
        (
            Box::new(|c| c.deposits.pay_currencies = vec!["DOGE".into()]),
            "DOGE is not a configured crypto asset",
        ),
        (
            Box::new(|c| c.assets[1].network = None),
            "BTC has no network",
        ),
        (
            Box::new(|c| c.deposits.min_usd = "0".into()),
            "deposits.min_usd",
        ),
        (
            Box::new(|c| c.deposits.max_usd = "lots".into()),
            "deposits.max_usd",
        ),
        (
            Box::new(|c| c.withdrawals.min_usd = "0".into()),
            "withdrawals.min_usd",
        ),
        (
            Box::new(|c| c.withdrawals.max_usd = "0".into()),
            "withdrawals.max_usd",
        ),
        (
            Box::new(|c| c.withdrawals.daily_cap_usd = "0".into()),
            "withdrawals.daily_cap_usd",
        ),
        (
            Box::new(|c| c.withdrawals.fee_percent = "100.01".into()),
            "withdrawals.fee_percent",
        ),
        (
            Box::new(|c| c.withdrawals.fee_percent = "-1".into()),
            "withdrawals.fee_percent",
        ),
        (
            Box::new(|c| c.withdrawals.two_approvals_from_usd = "0".into()),
            "two_approvals_from_usd",
        ),
        (
            Box::new(|c| c.aml.large_amount_usd = "0".into()),
            "aml.large_amount_usd",
        ),
        (
            Box::new(|c| c.aml.young_account_usd = "0".into()),
            "aml.young_account_usd",
        ),
        (
            Box::new(|c| c.admin.adjust_approval_from_usd = "0".into()),
            "admin.adjust_approval_from_usd",
        ),
        (
            Box::new(|c| c.deposits.min_usd = "200000".into()),
            "min_usd above max_usd",
        ),
        (
            Box::new(|c| c.withdrawals.min_usd = "20000".into()),
            "min_usd above max_usd",
        ),
    ];
    for (i, (change, expected)) in cases.into_iter().enumerate() {
        let e = error_of(change);
        assert!(e.starts_with("invalid setting"), "case {i}: {e}");
        assert!(e.contains(expected), "case {i}: {e:?} lacks {expected:?}");
        assert!(!e.contains('\n'), "case {i}: {e}");
    }
}

#[test]
fn unknown_choices_are_refused_while_reading_naming_the_key() {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    for (extra, key, value) in [
        ("[storage]\nbackend = \"ftp\"", "backend", "ftp"),
        ("[email]\ntransport = \"pigeon\"", "transport", "pigeon"),
        ("[email]\nsmtp_tls = \"ssl3\"", "smtp_tls", "ssl3"),
        (
            "[market]\nprovider = \"bloomberg\"",
            "provider",
            "bloomberg",
        ),
        ("[deposits]\nprovider = \"paypal\"", "provider", "paypal"),
        ("env = \"staging\"", "env", "staging"),
        ("bind = \"somewhere:80\"", "bind", "localhost:PORT"),
    ] {
        let e = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::string(extra))
            .extract::<Config>()
            .err()
            .unwrap_or_else(|| panic!("{extra} was accepted"))
            .to_string();
        assert!(e.contains(key) && e.contains(value), "{extra}: {e}");
    }
}

#[test]
fn accepted_variants_validate() {
    let ok = |change: &dyn Fn(&mut Config)| {
        let mut c = Config::defaults();
        change(&mut c);
        c.validate().map(|_| ()).map_err(|e| e.to_string())
    };
    ok(&|c| c.storage.backend = StorageBackend::Memory).unwrap();
    ok(&|c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3_bucket = Some("avatars".into());
    })
    .unwrap();
    for url in ["sqlite://x.db", "postgres://h/db", "postgresql://h/db"] {
        ok(&|c| c.database_url = Some(url.into())).unwrap();
    }
    for url in ["redis://127.0.0.1", "rediss://h:6380"] {
        ok(&|c| c.redis_url = Some(url.into())).unwrap();
    }
    ok(&|c| c.http.trust_forwarded_for = Some(false)).unwrap();
    ok(&|c| c.secret_key = Some("k".repeat(32))).unwrap();
    ok(&|c| {
        c.email.transport = MailTransport::Smtp;
        c.email.smtp_tls = SmtpTls::None;
        c.market.provider = PriceFeed::Coinbase;
        c.market.coinbase_url = "ws://127.0.0.1:1".into();
    })
    .unwrap();
    ok(&|c| {
        c.deposits.provider = PaymentProvider::Nowpayments;
        c.deposits.nowpayments_api_key = Some("key".into());
        c.deposits.ipn_secret = Some("secret".into());
    })
    .unwrap();
    ok(&|c| {
        c.env = RunEnv::Production;
        c.public_url = Some("https://etx.example.com".into());
    })
    .unwrap();
}

#[test]
fn defaults_give_the_documented_thresholds() {
    let c = Config::defaults();
    let Settings {
        assets,
        transfer_limits,
        rules,
    } = c.validate().unwrap();
    assert_eq!(assets.iter().count(), c.assets.len());
    let btc = assets.get("btc").expect("codes are matched without case");
    assert_eq!((btc.scale, btc.usd_price_cents), (8, 6_500_000));
    assert!(assets.get("DOGE").is_none());
    // 0.5 BTC at 65,000 USD.
    assert_eq!(Assets::usd_cents(btc, 50_000_000), Some(3_250_000));
    assert_eq!(
        (
            transfer_limits.min_cents,
            transfer_limits.max_cents,
            transfer_limits.daily_cap_cents
        ),
        (100, 5_000_000, 10_000_000)
    );
    assert_eq!(rules.deposit_min_cents, 1_000);
    assert_eq!(rules.deposit_max_cents, 10_000_000);
    assert_eq!(rules.deposit_ttl_micros, 60 * 60_000_000);
    assert_eq!(rules.withdraw_daily_cap_cents, 2_500_000);
    assert_eq!(rules.fee_basis_points, 100);
    assert_eq!(rules.two_approvals_cents, 500_000);
    assert_eq!(rules.aml_large_cents, 1_000_000);
    assert_eq!(rules.aml_max_operations, 20);
    assert_eq!(rules.aml_window_micros, 60 * 60_000_000);
    assert_eq!(rules.aml_young_micros, 7 * 86_400_000_000);
    assert_eq!(rules.adjust_approval_cents, 100_000);
    assert_eq!(rules.pay_currencies[0], "BTC");
    // BTC's smallest fee is 0.0001 BTC in satoshis; USD has no network.
    assert_eq!(rules.networks["BTC"].1, 10_000);
    assert!(!rules.networks.contains_key("USD"));
}

#[test]
fn asset_codes_are_trimmed_and_upper_cased() {
    let a = Assets::from_config(&[AssetConfig {
        code: " doge ".into(),
        scale: 8,
        usd_price: "0.12".into(),
        network: None,
        withdrawal_min_fee: None,
    }])
    .unwrap();
    let doge = a.get("DOGE").unwrap();
    assert_eq!((doge.code.as_str(), doge.usd_price_cents), ("DOGE", 12));
}

#[test]
fn transfer_limits_reject_min_above_max() {
    let mut t = Config::defaults().transfers;
    t.min_usd = "10".into();
    t.max_usd = "10".into();
    let l = TransferLimits::from_config(&t).unwrap();
    assert_eq!((l.min_cents, l.max_cents), (1000, 1000));
    t.min_usd = "10.01".into();
    assert!(TransferLimits::from_config(&t).is_err());
}

#[test]
fn database_url_and_kind() {
    let mut c = Config::defaults();
    c.data_dir = "/srv/etx".into();
    assert_eq!(c.database_url(), "sqlite:///srv/etx/etx.db?mode=rwc");
    assert_eq!(c.database_kind(), "sqlite");
    assert!(c.is_dev());
    c.database_url = Some("postgres://u@h/db".into());
    assert_eq!(c.database_url(), "postgres://u@h/db");
    assert_eq!(c.database_kind(), "postgres");
    c.env = RunEnv::Production;
    assert!(!c.is_dev());
}

#[test]
fn debug_output_hides_secrets() {
    let mut c = Config::defaults();
    c.secret_key = Some("s".repeat(40));
    c.database_url = Some("postgres://user:hunter2@h/db".into());
    c.storage.s3_access_key_id = Some("AKIAEXAMPLE".into());
    c.storage.s3_secret_access_key = Some("wJalrEXAMPLE".into());
    c.deposits.nowpayments_api_key = Some("np-key".into());
    c.deposits.ipn_secret = Some("np-secret".into());
    let shown = format!("{c:?} {:?} {:?}", c.storage, c.deposits);
    for secret in [
        "ssssssss",
        "hunter2",
        "AKIAEXAMPLE",
        "wJalrEXAMPLE",
        "np-key",
        "np-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("postgres") && shown.contains("[REDACTED]"),
        "{shown}"
    );
}

#[test]
fn the_secret_is_created_once_and_kept_private() {
    let dir = std::env::temp_dir().join(format!("etx-core-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = Config::defaults();
    c.data_dir = dir.join("nested");
    let first = c.load_or_create_secret().unwrap();
    assert!(first.len() >= 32);
    assert_eq!(
        c.load_or_create_secret().unwrap(),
        first,
        "kept, not renewed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.data_dir.join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A file too short to be a key is replaced.
    std::fs::write(c.data_dir.join("secret.key"), "short").unwrap();
    let renewed = c.load_or_create_secret().unwrap();
    assert_ne!(renewed, b"short");
    assert!(renewed.len() >= 32);
    // A configured key wins over the file.
    c.secret_key = Some("k".repeat(32));
    assert_eq!(
        c.load_or_create_secret().unwrap(),
        "k".repeat(32).into_bytes()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
