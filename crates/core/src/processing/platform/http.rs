//! The platform's HTTP side: login for a WebSocket `fid`, the emission sources, and BAR
//! publishing, each call with a timeout and retried while its failure is transient.

use super::messages::{body, platform_message};
use super::sources::{EmissionSource, EsId, Match, match_source, parse_emission_sources};
use super::{PlatformError, PlatformSettings, Timeouts, with_retries};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::sync::Arc;

/// The header that carries the data source key on every API call.
pub const DS_KEY_HEADER: &str = "DTX-DS-KEY";

/// A configured connection to the platform. Cheap to clone; nothing is sent until a call.
#[derive(Clone)]
pub struct Platform(Arc<Inner>);

struct Inner {
    client: reqwest::Client,
    settings: PlatformSettings,
    timeouts: Timeouts,
    /// `http_uri` without a trailing `/`.
    http_base: String,
    /// `{http_base}/{api_version}`.
    api_base: String,
}

/// What became of one BAR group; serialised as `{"outcome":"published","es_id":…}`,
/// `{"outcome":"no_matching_source"}`, `{"outcome":"ambiguous","candidates":[…]}` or
/// `{"outcome":"failed","message":…,"transient":…}` for a job's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PublishOutcome {
    Published {
        es_id: EsId,
    },
    /// No emission source has the group's name.
    NoMatchingSource,
    /// Several have it; nothing was published.
    Ambiguous {
        candidates: Vec<EmissionSource>,
    },
    /// The platform refused it or could not be reached; `transient` when a later try may work.
    Failed {
        message: String,
        transient: bool,
    },
}

/// The `bartName` of a group file: its base name without the extension (`Acme - Boiler.csv` →
/// `Acme - Boiler`).
pub fn bart_name(file_name: &str) -> String {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => base.to_string(),
    }
}

impl Platform {
    /// Checks the URIs and builds the HTTP client; no request is made.
    pub fn new(settings: PlatformSettings, timeouts: Timeouts) -> Result<Platform, PlatformError> {
        for (name, uri) in [
            ("http_uri", &settings.http_uri),
            ("ws_uri", &settings.ws_uri),
        ] {
            reqwest::Url::parse(uri)
                .map_err(|e| PlatformError::Settings(format!("{name} is not a URL: {e}")))?;
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()
            .map_err(|e| PlatformError::Settings(format!("HTTP client: {e}")))?;
        let http_base = settings.http_uri.trim_end_matches('/').to_string();
        let api_base = format!("{http_base}/{}", settings.api_version.trim_matches('/'));
        Ok(Platform(Arc::new(Inner {
            client,
            settings,
            timeouts,
            http_base,
            api_base,
        })))
    }

    pub fn settings(&self) -> &PlatformSettings {
        &self.0.settings
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.0.timeouts
    }

    /// `POST {http_uri}/fid-auth`: the `fid` that opens the WebSocket.
    pub async fn login(&self) -> Result<String, PlatformError> {
        let s = &self.0.settings;
        let body = json!({"login": {
            "email": s.email,
            "password": s.password.expose_secret(),
        }});
        let url = format!("{}/fid-auth", self.0.http_base);
        let v = with_retries(&self.0.timeouts, || async {
            let r = self
                .send("the login", self.0.client.post(&url).json(&body))
                .await;
            match r {
                Err(PlatformError::Rejected {
                    status: 401 | 403, ..
                }) => Err(PlatformError::Refused),
                other => other,
            }
        })
        .await?;
        match v.pointer("/login/fid") {
            Some(Value::String(f)) if !f.is_empty() => Ok(f.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(PlatformError::Protocol {
                what: "the login".into(),
                detail: "it has no login.fid".into(),
            }),
        }
    }

    /// `GET …/GetAllESs`: every emission source the data source key can see.
    pub async fn emission_sources(&self) -> Result<Vec<EmissionSource>, PlatformError> {
        let what = "GetAllESs";
        let url = format!("{}/GetAllESs", self.0.api_base);
        let v = with_retries(&self.0.timeouts, || {
            self.send(what, self.api(self.0.client.get(&url)))
        })
        .await?;
        parse_emission_sources(&v).map_err(|detail| PlatformError::Protocol {
            what: what.into(),
            detail,
        })
    }

    /// `POST …/PublishBARData`: one group's CSV for one emission source. Succeeds only when
    /// the answer's `PublishBARData.statusCode` is 200.
    pub async fn publish_bar(
        &self,
        es_id: &EsId,
        bart_name: &str,
        csv: &str,
    ) -> Result<(), PlatformError> {
        let what = "PublishBARData";
        let url = format!("{}/PublishBARData", self.0.api_base);
        let payload = json!({"esId": es_id, "bartName": bart_name, "data": {"csv": csv}});
        let v = with_retries(&self.0.timeouts, || {
            self.send(what, self.api(self.0.client.post(&url).json(&payload)))
        })
        .await?;
        let answer = v.get("PublishBARData").unwrap_or(&v);
        let code = match answer.get("statusCode") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        match code {
            Some(200) => Ok(()),
            Some(code) => Err(PlatformError::Failed {
                what: what.into(),
                message: format!("status {code}: {}", platform_message(answer)),
            }),
            None => Err(PlatformError::Protocol {
                what: what.into(),
                detail: "it has no PublishBARData.statusCode".into(),
            }),
        }
    }

    /// Finds the emission source the group `key` names and publishes the group's CSV to it.
    /// Never guesses: no match and several matches are outcomes, and nothing is sent.
    pub async fn publish_group(
        &self,
        key: &str,
        bart_name: &str,
        csv: &str,
        sources: &[EmissionSource],
    ) -> PublishOutcome {
        match match_source(key, sources) {
            Match::None => PublishOutcome::NoMatchingSource,
            Match::Ambiguous(candidates) => PublishOutcome::Ambiguous { candidates },
            Match::One(s) => match self.publish_bar(&s.id, bart_name, csv).await {
                Ok(()) => PublishOutcome::Published { es_id: s.id },
                Err(e) => PublishOutcome::Failed {
                    transient: e.is_transient(),
                    message: e.to_string(),
                },
            },
        }
    }

    fn api(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        r.header(DS_KEY_HEADER, self.0.settings.ds_key.expose_secret())
    }

    /// One try of one call: a 2xx answer's JSON, or the failure classified.
    async fn send(&self, what: &str, r: reqwest::RequestBuilder) -> Result<Value, PlatformError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                PlatformError::Timeout {
                    what: what.into(),
                    millis: self.0.timeouts.request.as_millis() as u64,
                }
            } else {
                PlatformError::Unreachable {
                    what: what.into(),
                    // Without the URL, which could carry more than the user should see.
                    detail: error_chain(&e.without_url()),
                }
            }
        };
        let resp = r.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| PlatformError::Protocol {
                what: what.into(),
                detail: "it is not JSON".into(),
            });
        }
        let message = match &parsed {
            Some(v) => platform_message(body(v)),
            None if text.trim().is_empty() => "no message".into(),
            None => text.trim().chars().take(300).collect(),
        };
        let (what, status) = (what.to_string(), status.as_u16());
        if status == 429 || status >= 500 {
            Err(PlatformError::Unavailable {
                what,
                status,
                message,
            })
        } else {
            Err(PlatformError::Rejected {
                what,
                status,
                message,
            })
        }
    }
}

/// An error and its causes on one line (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_serialise_for_a_job_history() {
        let v = |o: PublishOutcome| serde_json::to_value(o).unwrap();
        assert_eq!(
            v(PublishOutcome::Published {
                es_id: EsId(json!(7))
            }),
            json!({"outcome": "published", "es_id": 7})
        );
        assert_eq!(
            v(PublishOutcome::NoMatchingSource),
            json!({"outcome": "no_matching_source"})
        );
        let candidates = vec![EmissionSource {
            id: EsId(json!("a")),
            full_name: "X/Y".into(),
        }];
        assert_eq!(
            v(PublishOutcome::Ambiguous { candidates }),
            json!({"outcome": "ambiguous", "candidates": [{"id": "a", "full_name": "X/Y"}]})
        );
    }

    #[test]
    fn bart_names_are_base_names_without_the_extension() {
        assert_eq!(bart_name("Acme - Boiler.csv"), "Acme - Boiler");
        assert_eq!(bart_name("out/2026/Acme.Site.csv"), "Acme.Site");
        assert_eq!(bart_name("plain"), "plain");
        assert_eq!(bart_name(".hidden"), ".hidden");
    }
}
