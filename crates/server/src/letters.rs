//! The product's letters, rendered from the templates in `templates/mail`.

use askama::Template;
use etx_core::mail::{Letter, Rendered, Templates};

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyText<'a> {
    username: &'a str,
    email: &'a str,
    link: &'a str,
    code: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyHtml<'a> {
    username: &'a str,
    email: &'a str,
    link: &'a str,
    code: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "mail/reset.txt")]
struct ResetText<'a> {
    username: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    username: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct NoticeText<'a> {
    username: &'a str,
    paragraphs: &'a [String],
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct NoticeHtml<'a> {
    username: &'a str,
    paragraphs: &'a [String],
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/alert.txt")]
struct AlertText<'a> {
    username: &'a str,
    body: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/alert.html")]
struct AlertHtml<'a> {
    username: &'a str,
    body: &'a str,
    link: &'a str,
}

/// Renders every [`Letter`] from its text and HTML template.
pub struct MailTemplates;

impl Templates for MailTemplates {
    fn render(&self, letter: &Letter<'_>) -> anyhow::Result<Rendered> {
        Ok(match *letter {
            Letter::Verify {
                username,
                email,
                link,
                code,
                hours,
            } => Rendered {
                text: VerifyText {
                    username,
                    email,
                    link,
                    code,
                    hours,
                }
                .render()?,
                html: VerifyHtml {
                    username,
                    email,
                    link,
                    code,
                    hours,
                }
                .render()?,
            },
            Letter::Reset {
                username,
                link,
                minutes,
            } => Rendered {
                text: ResetText {
                    username,
                    link,
                    minutes,
                }
                .render()?,
                html: ResetHtml {
                    username,
                    link,
                    minutes,
                }
                .render()?,
            },
            Letter::Alert {
                username,
                body,
                link,
            } => Rendered {
                text: AlertText {
                    username,
                    body,
                    link,
                }
                .render()?,
                html: AlertHtml {
                    username,
                    body,
                    link,
                }
                .render()?,
            },
            Letter::Notice {
                username,
                paragraphs,
                link,
            } => Rendered {
                text: NoticeText {
                    username,
                    paragraphs,
                    link,
                }
                .render()?,
                html: NoticeHtml {
                    username,
                    paragraphs,
                    link,
                }
                .render()?,
            },
        })
    }
}
