//! The `etx` binary's command line: migrate, admin create, bad settings.

use std::io::Write;
use std::process::{Command, Stdio};

fn etx(data_dir: &std::path::Path) -> Command {
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
