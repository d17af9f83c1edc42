//! The mail transport as configured, and reading stored messages back for the dev outbox.

use etx_core::Config;
use etx_core::mail::{
    Letter, MailTransport, Mailer, Rendered, SmtpTls, Templates, header_value, plain_text_part,
};
use std::path::Path;
use std::sync::Arc;

struct Plain;

impl Templates for Plain {
    fn render(&self, _letter: &Letter<'_>) -> anyhow::Result<Rendered> {
        Ok(Rendered {
            text: "text".into(),
            html: "<p>html</p>".into(),
        })
    }
}

fn mailer(change: impl FnOnce(&mut etx_core::mail::EmailConfig)) -> anyhow::Result<Mailer> {
    let mut c = Config::defaults().email;
    change(&mut c);
    Mailer::from_config(&c, Path::new("/srv/etx"), Arc::new(Plain))
}

#[test]
fn file_transport_writes_under_the_data_dir() {
    let m = mailer(|_| {}).unwrap();
    assert_eq!(m.outbox_dir(), Some(Path::new("/srv/etx/mail")));
}

#[tokio::test]
async fn smtp_transports_keep_no_outbox() {
    for tls in [SmtpTls::Starttls, SmtpTls::Tls, SmtpTls::None] {
        let m = mailer(|c| {
            c.transport = MailTransport::Smtp;
            c.smtp_tls = tls;
            c.smtp_host = "smtp.example.com".into();
            c.smtp_username = Some("user".into());
            c.smtp_password = Some("pass".into());
        })
        .unwrap();
        assert_eq!(m.outbox_dir(), None, "{tls:?}");
    }
}

#[test]
fn a_bad_sender_address_is_named() {
    let e = mailer(|c| c.from = "nobody".into())
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("invalid setting email.from"), "{e}");
}

#[test]
fn the_smtp_password_stays_out_of_debug_output() {
    let mut c = Config::defaults().email;
    c.smtp_username = Some("mailer".into());
    c.smtp_password = Some("hunter2".into());
    let shown = format!("{c:?}");
    assert!(
        shown.contains("mailer") && shown.contains("[REDACTED]"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn headers_are_read_from_the_head_only() {
    let raw = "Subject: Welcome\r\nTo: a@b.cd\r\n\r\nSubject: not a header\r\n";
    assert_eq!(header_value(raw, "subject"), "Welcome");
    assert_eq!(header_value(raw, "TO"), "a@b.cd");
    assert_eq!(header_value(raw, "from"), "");
    let lf_only = "Subject: one\n\nSubject: two\n";
    assert_eq!(header_value(lf_only, "Subject"), "one");
}

#[test]
fn the_plain_part_is_decoded_by_its_transfer_encoding() {
    let b64 = "Content-Type: multipart/alternative; boundary=\"B\"\r\n\r\n--B\r\n\
               Content-Type: text/plain; charset=utf-8\r\n\
               Content-Transfer-Encoding: base64\r\n\r\n\
               SGVsbG8sIHdv\r\ncmxkIQ==\r\n--B\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--B--\r\n";
    assert_eq!(plain_text_part(b64), "Hello, world!");
    let qp = "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n\
              caf=C3=A9 and a soft=\nbreak\n--B--\n";
    assert_eq!(plain_text_part(qp), "café and a softbreak");
    let seven_bit = "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\nas is\n--B\n";
    assert_eq!(plain_text_part(seven_bit), "as is");
    let broken_b64 = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!\n";
    assert_eq!(plain_text_part(broken_b64), "");
    assert_eq!(
        plain_text_part("Content-Type: text/html\n\n<p>only html</p>"),
        ""
    );
    assert_eq!(plain_text_part("Content-Type: text/plain; no body"), "");
}
