//! Configuration: embedded defaults, then `etx.toml`, then `ETX__SECTION__KEY`, then the
//! documented top-level variables (`ETX_BIND`, `DATABASE_URL`, …), then command-line flags.
//! A bad value stops start-up with one line naming it.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::ledger::AssetConfig;
use crate::mail::EmailConfig;
use crate::market::MarketConfig;
use crate::rules::{AdminConfig, AmlConfig, DepositConfig, WithdrawalConfig};
use crate::wallet::TransferConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunEnv {
    Dev,
    Production,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Config {
    pub env: RunEnv,
    #[serde(deserialize_with = "bind_addr")]
    pub bind: SocketAddr,
    /// Dev mode shows every user's mail to admins at `/dev/mail` and lets users pay their own
    /// deposits with simulated payments: start-up refuses it on an address other machines can
    /// reach unless this is set.
    #[serde(default)]
    pub allow_unsafe_dev_on_public_bind: bool,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub public_url: Option<String>,
    pub secret_key: Option<String>,
    /// When set, `/metrics` answers only requests bearing this token.
    #[serde(default)]
    pub metrics_token: Option<String>,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub http: HttpConfig,
    pub storage: StorageSection,
    pub avatar: AvatarConfig,
    pub files: crate::files::FilesConfig,
    pub jobs: crate::jobs::JobsConfig,
    pub two_factor: TwoFactorConfig,
    pub email: EmailConfig,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    pub assets: Vec<AssetConfig>,
    pub transfers: TransferConfig,
    pub deposits: DepositConfig,
    pub withdrawals: WithdrawalConfig,
    pub aml: AmlConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    pub idempotency: IdempotencyConfig,
    pub market: MarketConfig,
    /// Spread, fee, order sizes and quotes of trading against the platform.
    pub trading: crate::trading::TradingConfig,
    /// The external ETX/CTX platform connector's timeouts and retries.
    #[serde(default)]
    pub platform: crate::processing::platform::PlatformConfig,
    pub log: LogConfig,
    /// Traces and error reports sent to the operator's services (both off by default).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP collector (`http://collector:4318`): one span per request is sent there.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Internal errors are reported to this Sentry project.
    #[serde(default)]
    pub sentry_dsn: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (database passwords, the secret key) stay out of debug output.
        f.debug_struct("Config")
            .field("env", &self.env)
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database", &self.database_kind())
            .field("redis", &self.redis_url.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseConfig {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    pub access_ttl_secs: i64,
    pub refresh_ttl_days: i64,
    pub refresh_remember_days: i64,
    /// No session outlives this many days from its sign-in, however often it is refreshed.
    pub session_max_days: i64,
    /// A refresh token presented again this soon after its rotation yields the same new token
    /// (two tabs refreshing at once) instead of ending the session as reuse. 0: never.
    pub refresh_grace_secs: i64,
    pub lockout_threshold: i32,
    pub lockout_minutes: i64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hash_concurrency: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimitConfig {
    pub login_per_ip_per_minute: u32,
    pub register_per_ip_per_minute: u32,
    pub transactions_per_user_per_minute: u32,
    pub forgot_password_per_ip_per_minute: u32,
    pub two_factor_per_ip_per_minute: u32,
    /// Password checks of signed-in changes (password, email, turning 2FA off).
    pub password_checks_per_user_per_minute: u32,
    pub password_checks_per_ip_per_minute: u32,
    /// Strength estimates for the password meter, per client address.
    pub strength_checks_per_ip_per_minute: u32,
    /// Avatar uploads (each one an image decode) per account and per client address.
    pub avatar_uploads_per_user_per_hour: u32,
    pub avatar_uploads_per_ip_per_hour: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwoFactorConfig {
    pub issuer: String,
    pub challenge_ttl_secs: i64,
    pub max_attempts: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpConfig {
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs). Empty: the socket peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::net::IpNet>,
    /// Replaced by `trusted_proxies`; kept only to refuse a setting that no longer does anything.
    #[serde(default, skip_serializing)]
    pub trust_forwarded_for: Option<bool>,
    pub request_timeout_secs: u64,
    pub json_body_limit_bytes: usize,
    pub drain_delay_ms: u64,
    pub shutdown_deadline_secs: u64,
}

/// Where uploaded objects live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Files under `data_dir/objects`.
    Local,
    /// An S3-compatible bucket (`s3_bucket` required).
    S3,
    /// Kept in memory: tests and throwaway runs.
    Memory,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct StorageSection {
    pub backend: StorageBackend,
    pub s3_bucket: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    /// Usually from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; without them the S3 client
    /// falls back to instance credentials.
    #[serde(default)]
    pub s3_access_key_id: Option<String>,
    #[serde(default)]
    pub s3_secret_access_key: Option<String>,
}

impl std::fmt::Debug for StorageSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSection")
            .field("backend", &self.backend)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field(
                "credentials",
                &self.s3_access_key_id.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyConfig {
    /// How long a money POST's answer is kept for replays (at least 24).
    pub retention_hours: u32,
}

/// `localhost:PORT` as well as an IP address and port; `localhost` is taken as 127.0.0.1 rather
/// than resolved, so it can never land on a public interface.
fn bind_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    let s = s.trim();
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .ok_or_else(|| serde::de::Error::custom("expected IP:PORT or localhost:PORT"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AvatarConfig {
    pub max_bytes: usize,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub admin_email: Option<String>,
    pub admin_username: Option<String>,
    pub admin_password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
    /// Also write the log lines to `dir/etx.YYYY-MM-DD.log`, a new file each UTC day.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Daily files kept in `dir`; older ones are removed when a new day's file starts.
    pub keep_days: usize,
}

/// Top-level environment variables documented in the README, and where each lands.
const ENV_MAP: &[(&str, &str)] = &[
    ("ETX_ENV", "env"),
    ("ETX_BIND", "bind"),
    ("ETX_DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("ETX_PUBLIC_URL", "public_url"),
    ("ETX_SECRET_KEY", "secret_key"),
    ("ETX_METRICS_TOKEN", "metrics_token"),
    ("ETX_S3_BUCKET", "storage.s3_bucket"),
    ("ETX_S3_ENDPOINT", "storage.s3_endpoint"),
    ("AWS_REGION", "storage.s3_region"),
    ("AWS_ACCESS_KEY_ID", "storage.s3_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "storage.s3_secret_access_key"),
    ("SMTP_HOST", "email.smtp_host"),
    ("SMTP_USERNAME", "email.smtp_username"),
    ("SMTP_PASSWORD", "email.smtp_password"),
    ("ETX_BOOTSTRAP_ADMIN_EMAIL", "bootstrap.admin_email"),
    ("ETX_BOOTSTRAP_ADMIN_USERNAME", "bootstrap.admin_username"),
    ("ETX_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap.admin_password"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("SENTRY_DSN", "telemetry.sentry_dsn"),
];

/// The typed values built from the settings: the asset table, the P2P limits and the money
/// thresholds.
#[derive(Debug)]
pub struct Settings {
    pub assets: crate::ledger::Assets,
    pub transfer_limits: crate::wallet::TransferLimits,
    pub rules: crate::rules::Rules,
}

impl Settings {
    /// Parses the sections the typed values come from; `Config::validate` also checks the
    /// rest of the settings.
    pub fn from_config(c: &Config) -> anyhow::Result<Settings> {
        Ok(Settings {
            assets: crate::ledger::Assets::from_config(&c.assets)?,
            transfer_limits: crate::wallet::TransferLimits::from_config(&c.transfers)?,
            rules: crate::rules::Rules::from_config(
                &c.assets,
                &c.deposits,
                &c.withdrawals,
                &c.aml,
                &c.admin,
            )?,
        })
    }
}

impl Config {
    /// The embedded defaults alone, as tests start from.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("embedded defaults must parse")
    }

    /// Full layering for the binary. `overrides` are command-line flags as `(key, value)`.
    pub fn load(overrides: &[(&str, String)]) -> anyhow::Result<(Config, Settings)> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        let file = std::env::var("ETX_CONFIG").unwrap_or_else(|_| "etx.toml".into());
        if Path::new(&file).exists() {
            fig = fig.merge(Toml::file(&file));
        }
        fig = fig.merge(Env::prefixed("ETX__").split("__"));
        for (var, key) in ENV_MAP {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                fig = fig.merge(Serialized::default(key, v));
            }
        }
        if std::env::var("ETX_S3_BUCKET").is_ok_and(|b| !b.is_empty()) {
            fig = fig.merge(Serialized::default("storage.backend", "s3"));
        }
        if std::env::var("SMTP_HOST").is_ok_and(|h| !h.is_empty()) {
            fig = fig.merge(Serialized::default("email.transport", "smtp"));
        }
        if let Ok(v) = std::env::var("ETX_ALLOW_UNSAFE_DEV")
            && !v.is_empty()
        {
            let on = matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes");
            fig = fig.merge(Serialized::default("allow_unsafe_dev_on_public_bind", on));
        }
        for (k, v) in overrides {
            fig = fig.merge(Serialized::default(k, v));
        }
        let cfg: Config = fig.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .map(|e| e.to_string())
                .unwrap_or_default();
            anyhow::anyhow!("invalid setting: {e}")
        })?;
        let settings = cfg.validate()?;
        Ok((cfg, settings))
    }

    /// Checks every setting and builds the typed values the core runs on; the one place the
    /// sections are parsed.
    pub fn validate(&self) -> anyhow::Result<Settings> {
        let a = &self.auth;
        if a.access_ttl_secs < 30 || a.access_ttl_secs > 86_400 {
            anyhow::bail!("invalid setting auth.access_ttl_secs: must be 30..=86400");
        }
        if a.refresh_ttl_days < 1 || a.refresh_remember_days < a.refresh_ttl_days {
            anyhow::bail!("invalid setting auth.refresh_*_days: must be >= 1 and remember >= ttl");
        }
        if a.session_max_days < a.refresh_ttl_days || !(0..=60).contains(&a.refresh_grace_secs) {
            anyhow::bail!(
                "invalid setting auth: session_max_days >= refresh_ttl_days, refresh_grace_secs 0..=60"
            );
        }
        if self.idempotency.retention_hours < 24 {
            anyhow::bail!("invalid setting idempotency.retention_hours: at least 24");
        }
        if self.storage.backend == StorageBackend::S3 && self.storage.s3_bucket.is_none() {
            anyhow::bail!("invalid setting storage.s3_bucket: required when storage.backend = s3");
        }
        if let Some(u) = &self.database_url
            && !(u.starts_with("sqlite:")
                || u.starts_with("postgres:")
                || u.starts_with("postgresql:"))
        {
            anyhow::bail!("invalid setting DATABASE_URL: must start with sqlite: or postgres:");
        }
        if let Some(u) = &self.redis_url
            && !(u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            anyhow::bail!("invalid setting REDIS_URL: must start with redis:// or rediss://");
        }
        if self.http.trust_forwarded_for == Some(true) {
            anyhow::bail!(
                "invalid setting http.trust_forwarded_for: replaced by http.trusted_proxies, the \
                 list of proxy networks (CIDRs) whose X-Forwarded-For is believed"
            );
        }
        if let Some(k) = &self.secret_key
            && k.len() < 32
        {
            anyhow::bail!("invalid setting ETX_SECRET_KEY: must be at least 32 characters");
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            anyhow::bail!("invalid setting email.from: not a mail address");
        }
        if self.email.max_attempts < 1 {
            anyhow::bail!("invalid setting email.max_attempts: at least 1");
        }
        let t = &self.two_factor;
        if t.max_attempts < 1 || !(30..=3600).contains(&t.challenge_ttl_secs) {
            anyhow::bail!(
                "invalid setting two_factor: max_attempts >= 1, challenge_ttl_secs 30..=3600"
            );
        }
        let settings = Settings::from_config(self)?;
        let m = &self.market;
        if !(m.coinbase_url.starts_with("wss://") || m.coinbase_url.starts_with("ws://")) {
            anyhow::bail!("invalid setting market.coinbase_url: must start with wss:// or ws://");
        }
        if !(50..=60_000).contains(&m.tick_ms) || m.stale_after_secs == 0 {
            anyhow::bail!("invalid setting market: tick_ms 50..=60000, stale_after_secs >= 1");
        }
        self.platform.check().map_err(anyhow::Error::msg)?;
        self.trading.check()?;
        if self.env == RunEnv::Production && self.public_url.is_none() {
            anyhow::bail!("invalid setting ETX_PUBLIC_URL: required when ETX_ENV=production");
        }
        if self.env == RunEnv::Dev
            && !self.bind.ip().to_canonical().is_loopback()
            && !self.allow_unsafe_dev_on_public_bind
        {
            anyhow::bail!(
                "invalid setting ETX_BIND: dev mode (ETX_ENV=dev, the default) on {} would let \
                 anyone who can reach it simulate deposit payments; bind to 127.0.0.1, set \
                 ETX_ENV=production, or set allow_unsafe_dev_on_public_bind = true \
                 (ETX_ALLOW_UNSAFE_DEV=1) to accept that",
                self.bind
            );
        }
        Ok(settings)
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("etx.db").display()
            )
        })
    }

    pub fn database_kind(&self) -> &'static str {
        if self.database_url().starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    }

    pub fn is_dev(&self) -> bool {
        self.env == RunEnv::Dev
    }

    /// The server secret: configured, or generated once and kept in the data dir.
    pub fn load_or_create_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(k) = &self.secret_key {
            return Ok(k.as_bytes().to_vec());
        }
        let path = self.data_dir.join("secret.key");
        if let Ok(s) = std::fs::read_to_string(&path) {
            let s = s.trim();
            if s.len() >= 32 {
                return Ok(s.as_bytes().to_vec());
            }
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let key = etx_auth::random_token();
        write_private(&path, &key)?;
        Ok(key.into_bytes())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let c = Config::defaults();
        c.validate().unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn money_settings_take_integers_but_not_floats() {
        let with = |extra: &str| {
            Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string(extra))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        let c = with("[transfers]\ndaily_cap_usd = 250000").unwrap();
        assert_eq!(c.transfers.daily_cap_usd, "250000");
        let c = with("[transfers]\nmin_usd = \"0.50\"").unwrap();
        assert_eq!(c.transfers.min_usd, "0.50");
        let e = with("[transfers]\nmin_usd = 0.5").unwrap_err();
        assert!(e.contains("quoted string"), "{e}");
    }

    #[test]
    fn dev_mode_stays_on_loopback_unless_allowed() {
        let parse = |extra: &str| {
            let c: Config = Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string(extra))
                .extract()
                .unwrap();
            c.validate().map(|_| c).map_err(|e| e.to_string())
        };
        for public in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
            let e = parse(&format!("bind = \"{public}\"")).unwrap_err();
            assert!(
                e.contains("allow_unsafe_dev_on_public_bind") && !e.contains('\n'),
                "{e}"
            );
        }
        for local in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            parse(&format!("bind = \"{local}\"")).unwrap();
        }
        let c = parse("bind = \"localhost:9000\"").unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9000");
        parse("bind = \"0.0.0.0:8080\"\nallow_unsafe_dev_on_public_bind = true").unwrap();
        parse(
            "env = \"production\"\nbind = \"0.0.0.0:8080\"\npublic_url = \"https://etx.example.com\"",
        )
        .unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let parse = |extra: &str| {
            Figment::from(Toml::string(DEFAULTS))
                .merge(Toml::string(extra))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        for (toml, key, choices) in [
            (
                "[storage]\nbackend = \"ftp\"",
                "storage.backend",
                &["local", "s3", "memory"][..],
            ),
            (
                "[email]\ntransport = \"pigeon\"",
                "email.transport",
                &["file", "smtp"],
            ),
            (
                "[email]\nsmtp_tls = \"ssl\"",
                "email.smtp_tls",
                &["starttls", "tls", "none"],
            ),
            (
                "[market]\nprovider = \"kraken\"",
                "market.provider",
                &["simulated", "coinbase"],
            ),
            (
                "[deposits]\nprovider = \"stripe\"",
                "deposits.provider",
                &["sandbox", "nowpayments"],
            ),
        ] {
            let e = parse(toml).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
            for c in choices {
                assert!(e.contains(&format!("`{c}`")), "{toml}: {e}");
            }
        }
        let mut c = Config::defaults();
        c.database_url = Some("mysql://x".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("DATABASE_URL")
        );
    }
}
