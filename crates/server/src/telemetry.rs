//! Logging and metrics set-up. Both are process-wide, so they are installed once even when
//! tests start many servers in one process.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

pub fn init_logging(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}

/// The process-wide recorder. The first call also starts the upkeep thread that folds recorded
/// samples into histograms; without it samples pile up in memory until `/metrics` is scraped.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .expect("static bucket list")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("etx-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// Replaces secrets in a serialised configuration: every value under a key that names a
/// secret, password, token or key, and the password of any URL (`postgres://u:pw@host`).
pub fn mask_secrets(v: &mut serde_json::Value) {
    const SECRET: [&str; 5] = ["secret", "password", "token", "api_key", "private"];
    match v {
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if SECRET.iter().any(|s| k.contains(s)) && !item.is_null() && !item.is_boolean() {
                    *item = serde_json::Value::String("********".into());
                } else {
                    mask_secrets(item);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        serde_json::Value::String(s) => {
            if let Some(masked) = mask_url_password(s) {
                *s = masked;
            }
        }
        _ => {}
    }
}

fn mask_url_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:********@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;
    use serde_json::json;

    #[test]
    fn secrets_and_url_passwords_are_masked() {
        let mut v = json!({
            "secret_key": "abc",
            "database_url": "postgres://etx:hunter2@db:5432/etx?sslmode=disable",
            "redis_url": "redis://:pw@cache:6379",
            "metrics_token": null,
            "email": {"smtp_password": "pw", "smtp_host": "mail"},
            "deposits": [{"ipn_secret": "x", "api_key": "y", "enabled": true}],
            "public_url": "https://etx.example.com/",
        });
        mask_secrets(&mut v);
        assert_eq!(
            v,
            json!({
                "secret_key": "********",
                "database_url": "postgres://etx:********@db:5432/etx?sslmode=disable",
                "redis_url": "redis://:********@cache:6379",
                "metrics_token": null,
                "email": {"smtp_password": "********", "smtp_host": "mail"},
                "deposits": [{"ipn_secret": "********", "api_key": "********", "enabled": true}],
                "public_url": "https://etx.example.com/",
            })
        );
    }
}
