//! A `Core` on a fresh SQLite file, built as the server builds it but without HTTP: cheap
//! password hashing, memory storage, the in-process rate limiter, no real-time events, mail to
//! files under the data dir.

use etx_core::config::Settings;
use etx_core::mail::{Letter, Rendered, Templates};
use etx_core::{ClientInfo, Config, Core, Parts};
use std::path::PathBuf;
use std::sync::Arc;

/// Letters rendered as their variant's name; enough to queue mail.
struct Bare;

impl Templates for Bare {
    fn render(&self, letter: &Letter<'_>) -> anyhow::Result<Rendered> {
        let text = match letter {
            Letter::Verify { code, .. } => format!("verify {code}"),
            Letter::Reset { link, .. } => format!("reset {link}"),
            Letter::Notice { paragraphs, .. } => paragraphs.join("\n"),
            Letter::Alert { body, .. } => body.to_string(),
        };
        Ok(Rendered {
            html: format!("<p>{text}</p>"),
            text,
        })
    }
}

/// A core and the directory it keeps its files in (removed on drop).
pub struct TestCore {
    pub core: Core,
    pub dir: PathBuf,
}

impl Drop for TestCore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::ops::Deref for TestCore {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

pub async fn core() -> TestCore {
    core_with(|_| {}).await
}

pub async fn core_with(change: impl FnOnce(&mut Config)) -> TestCore {
    let dir = std::env::temp_dir().join(format!("etx-core-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = Config::defaults();
    config.data_dir = dir.clone();
    config.secret_key = Some("test-secret-test-secret-test-secret!".into());
    config.auth.argon2_memory_kib = 256;
    config.auth.argon2_iterations = 1;
    config.storage.backend = etx_core::config::StorageBackend::Memory;
    change(&mut config);
    let Settings {
        assets,
        transfer_limits,
        rules,
    } = config.validate().unwrap();
    let secret = config.load_or_create_secret().unwrap();
    let db = etx_db::Db::connect(&config.database_url(), 4)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let db = db.with_audit_key([7; 32]);
    let a = &config.auth;
    let hasher = etx_auth::PasswordHasher::new(
        etx_auth::HashParams {
            memory_kib: a.argon2_memory_kib,
            iterations: a.argon2_iterations,
            parallelism: a.argon2_parallelism,
        },
        2,
    )
    .unwrap();
    let tokens = etx_auth::TokenKeys::new(&secret, "etx", "etx-api", a.access_ttl_secs);
    let transfers = etx_core::wallet::group::GroupCommit::start(
        db.clone(),
        1,
        config.transfers.max_group,
        transfer_limits.daily_cap_cents,
        etx_core::wallet::group::Velocity {
            max_operations: rules.aml_max_operations,
            window_micros: rules.aml_window_micros,
        },
    );
    let core = Core::new(Parts {
        db,
        hasher,
        tokens,
        storage: etx_storage::ObjectStorage::open(&etx_storage::StorageConfig::Memory).unwrap(),
        limiter: etx_core::ratelimit::RateLimiter::local(),
        assets,
        transfer_limits,
        transfers,
        payments: etx_core::providers::Payments::new(&config.deposits, &secret).unwrap(),
        mailer: etx_core::mail::Mailer::from_config(&config.email, &dir, Arc::new(Bare)).unwrap(),
        secret_box: etx_auth::totp::SecretBox::new(&secret),
        market: Arc::new(etx_core::market::Market::new(&config.market, &config.assets).unwrap()),
        events: Arc::new(etx_core::events::NoEvents),
        password_checks: etx_core::session::InFlight::default(),
        workers: etx_core::jobs::Workers::default(),
        book: Default::default(),
        orders: Default::default(),
        alerts: Default::default(),
        xp: Default::default(),
        pairs: Default::default(),
        stats: Default::default(),
        rules,
        config,
    });
    TestCore { core, dir }
}

pub fn client(ip: &str) -> ClientInfo {
    ClientInfo {
        ip: ip.parse().unwrap(),
        user_agent: Some("core-test".into()),
    }
}

/// The error of an operation expected to be refused (the answers have no `Debug`).
pub trait Refused {
    fn refused(self) -> etx_core::CoreError;
}

impl<T> Refused for Result<T, etx_core::CoreError> {
    fn refused(self) -> etx_core::CoreError {
        match self {
            Err(e) => e,
            Ok(_) => panic!("the operation was carried out"),
        }
    }
}
