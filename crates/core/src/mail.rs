//! Outgoing mail: the letters, the two transports (SMTP, or `.eml` files in the data dir for
//! development) and the sender that drains the outbox. A request only queues a row and wakes
//! the sender; delivery, retries and backoff happen here, never on a request's time.

use crate::Core;
use serde::{Deserialize, Serialize};

use etx_db::mail::{MailRow, NewMail};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

const POLL_EVERY: Duration = Duration::from_secs(5);
const BATCH: u64 = 20;
const FIRST_RETRY_SECS: i64 = 30;
const MAX_RETRY_SECS: i64 = 3600;

pub enum Transport {
    File(PathBuf),
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

pub struct Mailer {
    from: Mailbox,
    pub templates: std::sync::Arc<dyn Templates>,
    transport: Transport,
    /// Wakes the sender as soon as something is queued.
    pub wake: tokio::sync::Notify,
}

impl Mailer {
    pub fn from_config(
        cfg: &EmailConfig,
        data_dir: &std::path::Path,
        templates: std::sync::Arc<dyn Templates>,
    ) -> anyhow::Result<Mailer> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid setting email.from: {e}"))?;
        let transport = match cfg.transport {
            MailTransport::Smtp => {
                let host = cfg.smtp_host.as_str();
                let mut b = match cfg.smtp_tls {
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpTls::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?
                    }
                }
                .port(cfg.smtp_port)
                .timeout(Some(Duration::from_secs(cfg.smtp_timeout_secs)));
                if let (Some(u), Some(p)) = (&cfg.smtp_username, &cfg.smtp_password) {
                    b = b.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Transport::Smtp(Box::new(b.build()))
            }
            MailTransport::File => Transport::File(data_dir.join("mail")),
        };
        Ok(Mailer {
            from,
            templates,
            transport,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The directory `.eml` files go to, when mail is kept locally.
    pub fn outbox_dir(&self) -> Option<&std::path::Path> {
        match &self.transport {
            Transport::File(d) => Some(d),
            Transport::Smtp(_) => None,
        }
    }

    async fn deliver(&self, row: &MailRow) -> anyhow::Result<()> {
        let to: Mailbox = row.to_addr.parse()?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(row.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                row.body_html.clone(),
            ))?;
        match &self.transport {
            Transport::Smtp(t) => {
                t.send(msg).await?;
            }
            Transport::File(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                // Named by queue time and id so a directory listing reads oldest to newest; the
                // rename makes a half-written file impossible to see.
                let name = format!("{}-{}.eml", row.created_at, row.id);
                let tmp = dir.join(format!(".{name}.tmp"));
                tokio::fs::write(&tmp, msg.formatted()).await?;
                tokio::fs::rename(&tmp, dir.join(name)).await?;
            }
        }
        Ok(())
    }
}

/// One of the product's letters, with what its templates need. The wording lives in the
/// server's templates; the core decides when a letter goes out and to whom.
pub enum Letter<'a> {
    Verify {
        username: &'a str,
        email: &'a str,
        link: &'a str,
        code: &'a str,
        hours: i64,
    },
    Reset {
        username: &'a str,
        link: &'a str,
        minutes: i64,
    },
    Notice {
        username: &'a str,
        paragraphs: &'a [String],
        link: &'a str,
    },
    /// A price alert that fired, for an owner who asked for mail.
    Alert {
        username: &'a str,
        body: &'a str,
        link: &'a str,
    },
}

/// A rendered letter: plain text and HTML alternatives.
pub struct Rendered {
    pub text: String,
    pub html: String,
}

pub trait Templates: Send + Sync + 'static {
    fn render(&self, letter: &Letter<'_>) -> anyhow::Result<Rendered>;
}

/// A security notice to an account's owner (an address change, a lock after failed codes).
pub fn notice_mail(
    state: &Core,
    username: &str,
    to: &str,
    subject: &str,
    paragraphs: &[String],
) -> anyhow::Result<NewMail> {
    let link = format!("{}/forgot-password", base_url(state));
    let r = state.mailer.templates.render(&Letter::Notice {
        username,
        paragraphs,
        link: &link,
    })?;
    Ok(NewMail {
        to: to.to_string(),
        subject: subject.to_string(),
        template: "security_notice",
        text: r.text,
        html: r.html,
    })
}

/// Queues a notice and wakes the sender. A notice that cannot be queued is logged, never fatal:
/// the change it reports has already happened.
pub async fn send_notice(
    state: &Core,
    username: &str,
    to: &str,
    subject: &str,
    paragraphs: &[String],
) {
    let queued = match notice_mail(state, username, to, subject, paragraphs) {
        Ok(m) => state.db.queue_mail(m).await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    match queued {
        Ok(_) => state.mailer.wake.notify_one(),
        Err(e) => tracing::error!(error = %e, subject, "security notice not queued"),
    }
}

/// A fired price alert's mail.
pub fn alert_mail(
    state: &Core,
    username: &str,
    to: &str,
    subject: &str,
    body: &str,
) -> anyhow::Result<NewMail> {
    let link = format!("{}/alerts", base_url(state));
    let r = state.mailer.templates.render(&Letter::Alert {
        username,
        body,
        link: &link,
    })?;
    Ok(NewMail {
        to: to.to_string(),
        subject: subject.to_string(),
        template: "price_alert",
        text: r.text,
        html: r.html,
    })
}

pub fn base_url(state: &Core) -> &str {
    state
        .config
        .public_url
        .as_deref()
        .unwrap_or("http://localhost:8080")
        .trim_end_matches('/')
}

pub fn verification_mail(
    state: &Core,
    username: &str,
    email: &str,
    token: &str,
    code: &str,
) -> anyhow::Result<NewMail> {
    let link = format!("{}/verify-email?token={token}", base_url(state));
    let hours = state.config.email.verify_ttl_hours;
    let r = state.mailer.templates.render(&Letter::Verify {
        username,
        email,
        link: &link,
        code,
        hours,
    })?;
    Ok(NewMail {
        to: email.to_string(),
        subject: "Confirm your email address".into(),
        template: "verify_email",
        text: r.text,
        html: r.html,
    })
}

pub fn reset_mail(
    state: &Core,
    username: &str,
    email: &str,
    token: &str,
) -> anyhow::Result<NewMail> {
    let link = format!("{}/reset-password?token={token}", base_url(state));
    let minutes = state.config.email.reset_ttl_minutes;
    let r = state.mailer.templates.render(&Letter::Reset {
        username,
        link: &link,
        minutes,
    })?;
    Ok(NewMail {
        to: email.to_string(),
        subject: "Reset your password".into(),
        template: "reset_password",
        text: r.text,
        html: r.html,
    })
}

/// The wait before attempt `n + 1` after `n` failures: 30 s, doubling, at most an hour.
fn backoff_secs(failures: i32) -> i64 {
    let shift = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    (FIRST_RETRY_SECS << shift).min(MAX_RETRY_SECS)
}

/// Sends what is due: each message is claimed first, so instances sharing the database never
/// send the same one twice at the same time.
pub async fn deliver_due(state: &Core) -> anyhow::Result<usize> {
    let rows = state.db.due_mail(BATCH).await?;
    let cfg = &state.config.email;
    let lease = (cfg.smtp_timeout_secs as i64 + 60) * 1_000_000;
    let mut sent = 0;
    for row in rows {
        let now = etx_db::now_micros();
        if !state
            .db
            .claim_mail(&row.id, row.next_attempt_at, now + lease)
            .await?
        {
            continue;
        }
        match state.mailer.deliver(&row).await {
            Ok(()) => {
                state.db.mail_sent(&row.id).await?;
                metrics::counter!("etx_mail_sent_total").increment(1);
                tracing::info!(mail_id = %row.id, template = %row.template, "mail sent");
                sent += 1;
            }
            Err(e) => {
                let failures = row.attempts + 1;
                let retry = (failures < cfg.max_attempts)
                    .then(|| etx_db::now_micros() + backoff_secs(failures) * 1_000_000);
                state.db.mail_failed(&row.id, &e.to_string(), retry).await?;
                metrics::counter!("etx_mail_failures_total").increment(1);
                if retry.is_some() {
                    tracing::warn!(mail_id = %row.id, attempt = failures, error = %e, "mail not sent; will retry");
                } else {
                    tracing::error!(mail_id = %row.id, attempts = failures, error = %e, "mail given up");
                }
            }
        }
    }
    Ok(sent)
}

/// Runs the sender until the task is aborted: woken by every enqueue, and polling anyway so
/// retries and mail queued by other instances go out.
pub fn spawn_sender(state: Core) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            loop {
                match deliver_due(&state).await {
                    Ok(n) if n as u64 >= BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "mail sender failed; will retry");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = state.mailer.wake.notified() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    })
}

/// A header of a raw message (first occurrence, unfolded lines only).
pub fn header_value(raw: &str, name: &str) -> String {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or(raw)
        .split("\n\n")
        .next()
        .unwrap_or(raw);
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The decoded `text/plain` part of a raw message (for the dev outbox page).
pub fn plain_text_part(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let Some(start) = raw.find("Content-Type: text/plain") else {
        return String::new();
    };
    let Some((headers, rest)) = raw[start..].split_once("\n\n") else {
        return String::new();
    };
    let body = rest.split("\n--").next().unwrap_or("");
    let headers = headers.to_ascii_lowercase();
    if headers.contains("content-transfer-encoding: quoted-printable") {
        decode_quoted_printable(body)
    } else if headers.contains("content-transfer-encoding: base64") {
        use base64::Engine;
        let clean: String = body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        body.to_string()
    }
}

fn decode_quoted_printable(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_escapes() {
        assert_eq!(
            decode_quoted_printable("a=3Db and a very=\nlong line =C3=A9"),
            "a=b and a verylong line é"
        );
        assert_eq!(decode_quoted_printable("ends with ="), "ends with =");
    }

    #[test]
    fn a_formatted_message_reads_back() {
        let long = format!(
            "http://localhost:8080/reset-password?token={}",
            "x".repeat(60)
        );
        let msg = Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .subject("Hi")
            .multipart(MultiPart::alternative_plain_html(
                format!("Open {long} now"),
                "<p>x</p>".to_string(),
            ))
            .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert_eq!(header_value(&raw, "subject"), "Hi");
        assert!(plain_text_part(&raw).contains(&long));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), 30);
        assert_eq!(backoff_secs(2), 60);
        assert_eq!(backoff_secs(3), 120);
        assert_eq!(backoff_secs(20), 3600);
        assert_eq!(backoff_secs(i32::MAX), 3600);
    }
}

/// Where letters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// `.eml` files under `data_dir/mail` (the dev outbox).
    File,
    Smtp,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on the same host or a test server.
    None,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct EmailConfig {
    pub transport: MailTransport,
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<String>,
    pub smtp_timeout_secs: u64,
    pub max_attempts: i32,
    pub verify_ttl_hours: i64,
    pub reset_ttl_minutes: i64,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("transport", &self.transport)
            .field("from", &self.from)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &self.smtp_password.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}
