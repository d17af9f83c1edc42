//! The `etx` binary's command line: migrate, admin create, bad settings.

use std::io::Write;
use std::process::{Command, Stdio};

pub(crate) fn etx(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etx"));
    c.env("ETX_DATA_DIR", data_dir)
        .env("ETX__AUTH__ARGON2_MEMORY_KIB", "64")
        .env("ETX__AUTH__ARGON2_ITERATIONS", "1");
    c.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    c
}

#[test]
fn migrate_then_admin_create_from_stdin() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let out = etx(&dir).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("etx.db").exists());
    let mut child = etx(&dir)
        .args([
            "admin",
            "create",
            "--email",
            "ops@example.com",
            "--username",
            "ops",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Admin-Passw0rd\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("admin ops created"));
    assert!(
        !stdout.contains("Admin-Passw0rd"),
        "the password is never echoed"
    );
    // A weak password is refused with a reason.
    let mut child = etx(&dir)
        .args([
            "admin",
            "create",
            "--email",
            "o2@example.com",
            "--username",
            "ops2",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"weak\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
}

#[test]
fn a_bad_setting_stops_startup_with_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let out = etx(&dir)
        .env("ETX_BIND", "not-an-address")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bind"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Dev mode (the default) on an address other machines can reach is refused at start-up with
/// one line naming the setting that allows it; with that setting the server starts.
#[tokio::test]
async fn dev_mode_on_a_public_address_needs_the_unsafe_setting() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let port = crate::ports::free_ports(0);
    let out = etx(&dir)
        .env_remove("ETX_ENV")
        .env_remove("ETX_ALLOW_UNSAFE_DEV")
        .env("ETX_BIND", format!("0.0.0.0:{port}"))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_unsafe_dev_on_public_bind"), "{err}");
    assert!(err.contains("ETX_ALLOW_UNSAFE_DEV"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let mut child = etx(&dir)
        .env_remove("ETX_ENV")
        .env("ETX_ALLOW_UNSAFE_DEV", "1")
        .env("ETX_BIND", format!("0.0.0.0:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "the server started with the unsafe setting");
}

/// Runs the real binary with JSON logs, drives registration, login, refresh and a failed login,
/// then checks that no password or token ever appears in a log line.
#[tokio::test]
async fn logs_are_json_with_request_ids_and_never_contain_secrets() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let port = crate::ports::free_ports(0);
    let child = etx(&dir)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "server became ready");
    let password = "Log-Secret-Passw0rd";
    let reg: serde_json::Value = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({"username": "logger", "email": "logger@example.com", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = reg["refresh_token"].as_str().unwrap().to_string();
    let access = reg["access_token"].as_str().unwrap().to_string();
    client
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"login": "logger", "password": "Wr0ng-but-secret"}))
        .send()
        .await
        .unwrap();
    let rotated: serde_json::Value = client
        .post(format!("{base}/api/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    // Stop the server and collect everything it logged.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let mut requests = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if v["message"] == "request" {
            requests += 1;
            assert!(
                v["request_id"].as_str().is_some_and(|s| !s.is_empty()),
                "{line}"
            );
        }
    }
    assert!(requests >= 5, "one line per request: {logs}");
    for secret in [
        password,
        "Wr0ng-but-secret",
        &refresh,
        &access,
        rotated["refresh_token"].as_str().unwrap(),
        rotated["access_token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

#[tokio::test]
async fn ledger_verify_passes_then_names_a_tampered_account() {
    use crate::support::TestApp;
    let app = TestApp::spawn().await;
    let admin = app.user_with_role("auditor", "admin").await;
    let user = app.register("tampered").await;
    app.fund(&admin, &user, "USD", "10.00").await;
    let run = || {
        let mut c = etx(&app.data_dir);
        if let Some(url) = &app.state.config.database_url {
            c.env("DATABASE_URL", url);
        }
        c.args(["ledger", "verify"]).output().unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Tampers behind the ledger's back, then expects verify to fail naming the problem.
    let tamper_and_expect = |sql: &'static str, values: Vec<String>, named: String| {
        let app = &app;
        let run = &run;
        async move {
            app.state
                .db
                .execute(sql, values.into_iter().map(Into::into))
                .await
                .unwrap();
            let out = run();
            assert!(!out.status.success());
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains(&named), "{stdout}");
        }
    };
    // A cached balance edited.
    tamper_and_expect(
        "UPDATE ledger_accounts SET balance = balance + 1 WHERE owner_id = $1",
        vec![user.id.clone()],
        format!("account wallet:{}:USD", user.id),
    )
    .await;
    // An account handed to someone else.
    tamper_and_expect(
        "UPDATE ledger_accounts SET balance = balance - 1, owner_id = $1 WHERE owner_id = $2",
        vec![admin.id.clone(), user.id.clone()],
        "id does not match its owner, kind and asset".to_string(),
    )
    .await;
}

#[test]
fn config_check_prints_the_settings_with_secrets_masked_and_refuses_bad_ones() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let out = etx(&dir)
        .args(["config", "check"])
        .env(
            "DATABASE_URL",
            "postgres://etx:hunter2-pw@db.internal:5432/etx",
        )
        .env(
            "ETX_SECRET_KEY",
            "a-very-secret-key-that-is-long-enough-0123",
        )
        .env("ETX__HTTP__SHUTDOWN_DEADLINE_SECS", "7")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("configuration OK (postgres database"),
        "{stderr}"
    );
    // The effective values, merged from defaults and the environment, as TOML.
    let parsed: toml::Table = stdout.parse().expect("the output is TOML");
    assert_eq!(
        parsed["http"]["shutdown_deadline_secs"].as_integer(),
        Some(7)
    );
    assert_eq!(
        parsed["database_url"].as_str(),
        Some("postgres://etx:********@db.internal:5432/etx")
    );
    assert_eq!(parsed["secret_key"].as_str(), Some("********"));
    for secret in ["hunter2-pw", "a-very-secret-key"] {
        assert!(!stdout.contains(secret), "{secret} printed");
    }
    // A bad value: non-zero, saying which.
    let out = etx(&dir)
        .args(["config", "check"])
        .env("ETX__HTTP__SHUTDOWN_DEADLINE_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("shutdown_deadline_secs"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_and_verifies() {
    use crate::support::TestApp;
    // SQLite only is what `etx backup` copies; this test runs its own SQLite instance whatever
    // the suite's database.
    let app = TestApp::spawn_with(|c| c.database_url = None).await;
    let admin = app.user_with_role("keeper", "admin").await;
    let user = app.register("saver").await;
    app.fund(&admin, &user, "USD", "42.00").await;
    let key = app.state.config.secret_key.clone().unwrap();
    let file = app.data_dir.join("backup.db");
    // Writes keep going while the copy is taken.
    let writer = {
        let (base, token, id) = (app.base.clone(), admin.token.clone(), user.id.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..20 {
                let r = client
                    .post(format!("{base}/api/admin/wallets/adjust"))
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("during-backup-{i}"))
                    .json(&serde_json::json!({"user_id": id, "currency": "USD", "amount": "1.00", "reason": "during backup"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            }
        })
    };
    let dir = app.data_dir.clone();
    let target = file.clone();
    let out =
        tokio::task::spawn_blocking(move || etx(&dir).arg("backup").arg(&target).output().unwrap())
            .await
            .unwrap();
    writer.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backed up to"), "{stdout}");
    // A second backup never overwrites the first.
    let again = etx(&app.data_dir)
        .arg("backup")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // Restored into a fresh data directory: both verifications accept it.
    let restored = std::env::temp_dir().join(format!("etx-restore-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&file, restored.join("etx.db")).unwrap();
    for what in [["ledger", "verify"], ["audit", "verify"]] {
        let out = etx(&restored)
            .args(what)
            .env("ETX_SECRET_KEY", &key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The copy holds the funding made before it began.
    let db = etx_db::Db::connect(
        &format!("sqlite://{}?mode=ro", restored.join("etx.db").display()),
        1,
    )
    .await
    .unwrap();
    let funded = db
        .scalar_i64(
            "SELECT COUNT(*) FROM journal_entries WHERE kind = 'adjustment'",
            vec![],
        )
        .await
        .unwrap();
    assert!(funded >= 1, "{funded}");

    // PostgreSQL: pointed at pg_dump instead.
    let out = etx(&app.data_dir)
        .arg("backup")
        .arg(app.data_dir.join("pg.db"))
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}

#[test]
fn log_lines_also_go_to_daily_files_when_asked() {
    let dir = std::env::temp_dir().join(format!("etx-cli-{}", uuid::Uuid::now_v7()));
    let logs = dir.join("logs");
    let out = etx(&dir)
        .arg("migrate")
        .env("ETX__LOG__DIR", &logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("etx.20") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    // The same JSON lines as on stderr.
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["message"], "migration applied");
    assert_eq!(text, String::from_utf8_lossy(&out.stderr));
}
