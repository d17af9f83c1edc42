//! The command line: `etx serve`, `etx migrate`, `etx admin create`, `etx ledger verify`,
//! `etx audit verify`, `etx backup`, `etx config check`, `etx deposit simulate`,
//! `etx bar-group`. Running `etx` alone serves.

use crate::startup::{Application, open_db, shutdown_signal};
use clap::{Parser, Subcommand};
use etx_core::config::Config;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "etx",
    version,
    about = "ETX Processor: accounts, wallets, markets and processing"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080, or ETX_BIND).
        #[arg(long)]
        bind: Option<String>,
        /// Directory for the SQLite database, objects and the generated secret (default ./data).
        #[arg(long)]
        data_dir: Option<String>,
    },
    /// Create or update the database schema, then exit.
    Migrate,
    /// Administer users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Ledger maintenance.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Audit trail maintenance.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Copy the SQLite database to FILE while the server runs (a consistent snapshot). On
    /// PostgreSQL use pg_dump (see README, "Backup and restore").
    Backup {
        /// Where to write the copy; must not exist yet.
        file: std::path::PathBuf,
    },
    /// Sandbox deposits (dev mode).
    Deposit {
        #[command(subcommand)]
        command: DepositCommand,
    },
    /// Split a BAR-data CSV into one CSV per emission source (orgFullName : emissionSourceName)
    /// plus manifest.csv, in OUTDIR (created; must be empty). Prints rows, dropped and groups.
    BarGroup {
        /// The input CSV.
        input: std::path::PathBuf,
        /// The output directory.
        out_dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum DepositCommand {
    /// Send a running server the signed payment notification the sandbox provider would send
    /// for ORDER, over HTTP to its webhook, exactly as a real provider does.
    Simulate {
        /// The order id (DEP-…).
        order: String,
        /// waiting, confirming, confirmed, sending, partially_paid, finished, failed, refunded
        /// or expired.
        #[arg(long, default_value = "finished")]
        status: String,
        /// Amount paid in the pay currency (default: all of it when finished, half when
        /// partially paid).
        #[arg(long)]
        paid: Option<String>,
        /// The server's base URL (default: ETX_PUBLIC_URL, else http://<bind>).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (files, environment and defaults merged) as TOML
    /// with secrets masked; exits non-zero, saying why, when it is not valid.
    Check,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Link pending records, then check the whole hash chain; exits non-zero naming each break
    /// (an edited, deleted or reordered record).
    Verify,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Check every ledger invariant; exits non-zero naming each violation.
    Verify,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator. The password is prompted for, or read from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        username: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Works on files alone: no configuration, database or runtime.
    if let Some(Command::BarGroup { input, out_dir }) = &cli.command {
        return bar_group(input, out_dir);
    }
    let mut overrides = Vec::new();
    if let Some(Command::Serve { bind, data_dir }) = &cli.command {
        if let Some(b) = bind {
            overrides.push(("bind", b.clone()));
        }
        if let Some(d) = data_dir {
            overrides.push(("data_dir", d.clone()));
        }
    }
    let (config, settings) = match Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("etx: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config {
        command: ConfigCommand::Check,
    }) = &cli.command
    {
        return config_check(&config);
    }
    let files = match &config.log.dir {
        Some(dir) => match crate::telemetry::DailyFiles::new(dir, config.log.keep_days) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("etx: cannot write log files in {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    crate::telemetry::init_logging(&config.log.format, &config.log.level, files);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etx: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Serve {
            bind: None,
            data_dir: None,
        }) {
            Command::Serve { .. } => serve(config, settings).await,
            Command::Migrate => {
                open_db(&config).await?;
                println!("database is up to date");
                Ok(())
            }
            Command::Admin {
                command: AdminCommand::Create { email, username },
            } => admin_create(config, &email, &username).await,
            Command::Ledger {
                command: LedgerCommand::Verify,
            } => ledger_verify(config).await,
            Command::Audit {
                command: AuditCommand::Verify,
            } => audit_verify(config).await,
            Command::Backup { file } => backup(config, &file).await,
            Command::Config { .. } => unreachable!("handled before the runtime starts"),
            Command::Deposit {
                command:
                    DepositCommand::Simulate {
                        order,
                        status,
                        paid,
                        url,
                    },
            } => deposit_simulate(config, &order, &status, paid.as_deref(), url).await,
            Command::BarGroup { .. } => unreachable!("handled before the configuration is read"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bar_group(input: &std::path::Path, out_dir: &std::path::Path) -> ExitCode {
    use etx_core::processing::bar;
    let started = std::time::Instant::now();
    match bar::group_bar_csv(
        input,
        out_dir,
        &bar::BarOptions::default(),
        &mut |_| {},
        &|| false,
    ) {
        Ok(s) => {
            println!(
                "rows {} dropped {} groups {} seconds {:.3} manifest {}",
                s.rows_read,
                s.rows_dropped,
                s.groups,
                started.elapsed().as_secs_f64(),
                s.manifest.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("etx: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, settings: etx_core::config::Settings) -> anyhow::Result<()> {
    let app = Application::build_with(config, settings).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, "listening");
    println!("ETX Processor is running at http://{addr}/  (API docs: http://{addr}/api/docs)");
    app.run_until(shutdown_signal()).await
}

fn config_check(config: &Config) -> ExitCode {
    let mut value = match serde_json::to_value(config) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("etx: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::mask_secrets(&mut value);
    // TOML has no null: a setting left unset is simply absent.
    strip_nulls(&mut value);
    match toml::to_string_pretty(&value) {
        Ok(text) => {
            print!("{text}");
            eprintln!(
                "configuration OK ({} database, {} storage)",
                config.database_kind(),
                format!("{:?}", config.storage.backend).to_lowercase()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("etx: {e}");
            ExitCode::FAILURE
        }
    }
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, item| !item.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

async fn backup(config: Config, file: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.database_kind() == "sqlite",
        "etx backup copies the SQLite database; for PostgreSQL use pg_dump \
         (README, \"Backup and restore\")"
    );
    anyhow::ensure!(
        !file.exists(),
        "{} exists already; choose a new file",
        file.display()
    );
    let path = file
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the backup path must be UTF-8"))?;
    // No migration here: the copy is of the database as it is.
    let db = etx_db::Db::connect(&config.database_url(), 1).await?;
    let started = std::time::Instant::now();
    // One read transaction: the copy is a consistent snapshot while the server keeps writing.
    db.execute("VACUUM INTO $1", [path.into()]).await?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up to {} ({bytes} bytes, {:.2} s). Keep the server secret with it \
         (ETX_SECRET_KEY or {}): audit verification and two-factor secrets need it",
        file.display(),
        started.elapsed().as_secs_f64(),
        config.data_dir.join("secret.key").display()
    );
    Ok(())
}

async fn admin_create(config: Config, email: &str, username: &str) -> anyhow::Result<()> {
    let password = read_password()?;
    let db = open_db(&config).await?;
    let hasher = crate::startup::hasher(&config)?;
    let user = etx_core::accounts::create_admin(&db, &hasher, email, username, &password).await?;
    println!("admin {} created (id {})", user.username, user.id);
    Ok(())
}

async fn ledger_verify(config: Config) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    let problems = db.verify_ledger().await?;
    if problems.is_empty() {
        println!(
            "ledger OK: every entry balanced, every asset sums to zero, balances match postings"
        );
        return Ok(());
    }
    for p in &problems {
        println!("VIOLATION {p}");
    }
    anyhow::bail!("{} ledger invariant violation(s)", problems.len())
}

async fn audit_verify(config: Config) -> anyhow::Result<()> {
    let secret = config.load_or_create_secret()?;
    let db = open_db(&config)
        .await?
        .with_audit_key(crate::startup::audit_key(&secret));
    db.chain_all_audit().await?;
    let (problems, checked) = db.verify_audit().await?;
    if problems.is_empty() {
        println!("audit log OK: {checked} records, every link and hash intact");
        return Ok(());
    }
    for p in &problems {
        println!("TAMPERED {p}");
    }
    anyhow::bail!(
        "{} break(s) in the audit chain of {checked} records",
        problems.len()
    )
}

async fn deposit_simulate(
    config: Config,
    order: &str,
    status: &str,
    paid: Option<&str>,
    url: Option<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.is_dev() && config.deposits.provider == etx_core::rules::PaymentProvider::Sandbox,
        "simulated payments exist only with the sandbox provider in dev mode"
    );
    anyhow::ensure!(
        etx_domain::DepositStatus::parse(status).is_some(),
        "unknown status {status:?}"
    );
    let db = open_db(&config).await?;
    let d = db
        .deposit_by_order(order)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no deposit order {order}"))?;
    let assets = etx_core::ledger::Assets::from_config(&config.assets)?;
    let scale = assets.get(&d.pay_currency).map_or(8, |a| a.scale);
    let paid = match paid {
        Some(p) => {
            etx_domain::parse_amount(p.trim(), scale).map_err(|e| anyhow::anyhow!("--paid: {e}"))?
        }
        None if status == "finished" => d.pay_amount,
        None if status == "partially_paid" => d.pay_amount / 2,
        None => 0,
    };
    let body = etx_core::deposits::sandbox_notification(&d, status, paid, scale);
    let secret = config.load_or_create_secret()?;
    let signature = etx_core::providers::Payments::new(&config.deposits, &secret)?.sign(&body);
    let base = url
        .or_else(|| config.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", config.bind));
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/wallet/webhook/sandbox",
            base.trim_end_matches('/')
        ))
        .header(
            etx_core::providers::nowpayments::SIGNATURE_HEADER,
            signature,
        )
        .json(&body)
        .send()
        .await?;
    let code = r.status();
    let answer: serde_json::Value = r.json().await.unwrap_or_default();
    anyhow::ensure!(code.is_success(), "the server answered {code}: {answer}");
    println!(
        "{order}: {} (status {}, credit {})",
        answer["result"].as_str().unwrap_or("?"),
        answer["deposit"]["status"].as_str().unwrap_or("?"),
        answer["deposit"]["credit_state"].as_str().unwrap_or("?"),
    );
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        anyhow::ensure!(p == again, "the passwords do not match");
        Ok(p)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        anyhow::ensure!(!p.is_empty(), "no password on standard input");
        Ok(p)
    }
}
