//! Logging and metrics set-up. Both are process-wide, so they are installed once even when
//! tests start many servers in one process.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use tracing_subscriber::EnvFilter;

/// JSON lines (or `pretty` ones) on stderr, and in daily files when `files` is given.
pub fn init_logging(format: &str, level: &str, files: Option<Arc<DailyFiles>>) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let sink: Arc<dyn LineSink> = match files {
        Some(f) => f,
        None => Arc::new(NoFiles),
    };
    let writer = std::io::stderr.and(Sink(sink));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
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

/// Where log lines may go besides stderr.
pub trait LineSink: Send + Sync {
    fn write_line(&self, line: &[u8]) -> std::io::Result<()>;
}

struct NoFiles;

impl LineSink for NoFiles {
    fn write_line(&self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// One writer per event, handing the formatted line to the sink.
pub struct SinkWriter(Arc<dyn LineSink>);

impl std::io::Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Sink(Arc<dyn LineSink>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter(self.0.clone())
    }
}

/// Log files by UTC day: `dir/etx.YYYY-MM-DD.log`, appended to; when a day's file is first
/// opened, all but the newest `keep` are removed.
pub struct DailyFiles {
    dir: std::path::PathBuf,
    keep: usize,
    open: std::sync::Mutex<Option<(String, std::fs::File)>>,
}

impl DailyFiles {
    pub fn new(dir: &std::path::Path, keep: usize) -> std::io::Result<Arc<DailyFiles>> {
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(DailyFiles {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
            open: std::sync::Mutex::new(None),
        }))
    }

    /// Writes `line` to the file of `day` (`YYYY-MM-DD`).
    pub fn write_on(&self, day: &str, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_none_or(|(d, _)| d != day) {
            let path = self.dir.join(format!("etx.{day}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            *open = Some((day.to_string(), file));
            self.prune();
        }
        let (_, file) = open.as_mut().expect("opened above");
        file.write_all(line)
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        // The names sort by date.
        let mut days: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("etx.") && n.ends_with(".log") && n.len() == 18)
            })
            .collect();
        days.sort();
        let extra = days.len().saturating_sub(self.keep);
        for old in &days[..extra] {
            let _ = std::fs::remove_file(old);
        }
    }
}

impl LineSink for DailyFiles {
    fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let today = etx_core::time::rfc3339(etx_db::now_micros());
        self.write_on(&today[..10], line)
    }
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
                // Group commits are counted in requests per commit, not seconds.
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_group_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
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
    const SECRET: [&str; 6] = ["secret", "password", "token", "api_key", "private", "dsn"];
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
    use super::{DailyFiles, mask_secrets};
    use serde_json::json;

    /// Every metric the Grafana dashboard in deploy/ queries is one the code records.
    #[test]
    fn the_dashboard_asks_only_for_recorded_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dash: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("deploy/grafana/etx-dashboard.json")).unwrap(),
        )
        .unwrap();
        let mut sources = String::new();
        let mut dirs = vec![root.join("crates")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    sources.push_str(&std::fs::read_to_string(p).unwrap());
                }
            }
        }
        let mut asked = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    let is_metric = word.starts_with("etx_") || word.starts_with("http_");
                    if !is_metric {
                        continue;
                    }
                    let name = word.trim_end_matches("_bucket");
                    asked += 1;
                    assert!(
                        sources.contains(&format!("\"{name}\"")),
                        "{name} ({}) is not recorded anywhere",
                        panel["title"]
                    );
                }
            }
        }
        assert!(asked >= 15, "{asked}");
    }

    #[test]
    fn log_files_start_each_day_and_keep_the_newest() {
        let dir = std::env::temp_dir().join(format!("etx-logs-{}", uuid::Uuid::now_v7()));
        let files = DailyFiles::new(&dir, 2).unwrap();
        for (day, line) in [
            ("2026-12-01", "a\n"),
            ("2026-12-01", "b\n"),
            ("2026-12-02", "c\n"),
            ("2026-12-03", "d\n"),
        ] {
            files.write_on(day, line.as_bytes()).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["etx.2026-12-02.log", "etx.2026-12-03.log"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("etx.2026-12-03.log")).unwrap(),
            "d\n"
        );
        // A restart the same day appends.
        let again = DailyFiles::new(&dir, 2).unwrap();
        again.write_on("2026-12-03", b"e\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("etx.2026-12-03.log")).unwrap(),
            "d\ne\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
