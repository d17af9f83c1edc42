//! `/jobs`: the user's processing jobs with live progress bars, one job's steps, and the
//! forms that start (from the files page), cancel and retry them.

use super::notice::{NoticeQuery, notice};
use super::{Layout, PageError, PageResult, Stamp, WebUser, check_form_csrf, form_expired};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::UserView;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use etx_core::error::CoreError;
use etx_core::jobs::{self, JobView, StepView};
use serde::Deserialize;

/// A job as a row of the page.
pub struct JobLine {
    pub id: String,
    pub kind: &'static str,
    pub input_name: String,
    pub status: String,
    pub progress: u8,
    pub message: String,
    pub output_id: String,
    pub created_at: Stamp,
    pub active: bool,
    pub retryable: bool,
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "bar_grouping" => "BAR grouping",
        "es_data_import" => "ES data import",
        "org_structure" => "Org structure",
        "create_tenant" => "Tenant creation",
        "scheme_generation" => "Scheme generation",
        "set_version" => "Version",
        _ => "Job",
    }
}

impl From<&JobView> for JobLine {
    fn from(j: &JobView) -> Self {
        JobLine {
            id: j.id.clone(),
            kind: kind_label(&j.kind),
            input_name: j.input_name.clone(),
            status: j.status.clone(),
            progress: j.progress,
            message: j.message.clone(),
            output_id: j.output_id.clone().unwrap_or_default(),
            created_at: Stamp::of(&j.created_at),
            active: matches!(j.status.as_str(), "queued" | "running"),
            retryable: matches!(j.status.as_str(), "failed" | "cancelled"),
        }
    }
}

/// A step as a row of the job page.
pub struct StepLine {
    pub seq: i32,
    pub attempt: i32,
    pub input: String,
    pub status: String,
    pub rows: String,
    pub groups: String,
    pub duration: String,
    pub error: String,
    pub manifest_id: String,
    pub files: Vec<(String, String)>,
}

impl From<&StepView> for StepLine {
    fn from(s: &StepView) -> Self {
        let count = |k: &str| {
            s.detail[k]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let rows = match (
            s.detail["rows_read"].as_u64(),
            s.detail["rows_dropped"].as_u64(),
        ) {
            (Some(r), Some(0)) => r.to_string(),
            (Some(r), Some(d)) => format!("{r} ({d} without a key, dropped)"),
            _ => String::new(),
        };
        let files = s.detail["files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| Some((f["id"].as_str()?.into(), f["name"].as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default();
        StepLine {
            seq: s.seq,
            attempt: s.attempt,
            input: s.input.clone(),
            status: s.status.clone(),
            rows,
            groups: count("groups"),
            duration: s
                .duration_ms
                .map(|ms| format!("{}.{:03} s", ms / 1000, ms % 1000))
                .unwrap_or_default(),
            error: s.error.clone().unwrap_or_default(),
            manifest_id: s.detail["manifest_id"].as_str().unwrap_or_default().into(),
            files,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    layout: Layout,
    jobs: Vec<JobLine>,
    error: Option<&'static str>,
    /// The user has ETX platform settings: the platform's operations can be started.
    has_platform: bool,
    is_admin: bool,
}

/// Whether the user has ETX platform settings.
pub async fn has_platform(state: &AppState, user: &etx_db::users::UserRow) -> bool {
    etx_core::processing::platform::settings::view(state, user)
        .await
        .is_ok_and(|v| v.configured)
}

pub async fn view_jobs_get(
    State(state): State<AppState>,
    u: WebUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let list = jobs::list(&state, &u.auth.user, None)
        .await
        .map_err(ApiError::from)?;
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "jobs");
    layout.notice = notice(&q);
    Ok(JobsPage {
        has_platform: has_platform(&state, &u.auth.user).await,
        is_admin: u.auth.user.role == "admin",
        layout,
        jobs: list.iter().map(JobLine::from).collect(),
        error: q.msg.as_deref().and_then(problem),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "job.html")]
pub struct JobPage {
    layout: Layout,
    job: JobLine,
    attempts: i32,
    started_at: Stamp,
    finished_at: Stamp,
    steps: Vec<StepLine>,
    error: Option<&'static str>,
}

pub async fn view_job_get(
    State(state): State<AppState>,
    u: WebUser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let detail = jobs::get(&state, &u.auth.user, &id)
        .await
        .map_err(ApiError::from)?;
    let mut layout = Layout::new(Some(UserView::from(&u.auth.user)), u.csrf.clone(), "jobs");
    layout.notice = notice(&q);
    Ok(JobPage {
        layout,
        job: JobLine::from(&detail.job),
        attempts: detail.job.attempts,
        started_at: Stamp(detail.job.started_at.clone().unwrap_or_default()),
        finished_at: Stamp(detail.job.finished_at.clone().unwrap_or_default()),
        steps: detail.steps.iter().map(StepLine::from).collect(),
        error: q.msg.as_deref().and_then(problem),
    }
    .into_response())
}

/// Fixed messages for a refused form, chosen by key so nothing from the URL reaches the page.
fn problem(key: &str) -> Option<&'static str> {
    match key {
        "not-csv" => Some(
            "That file or folder cannot be processed by this job: BAR grouping reads CSV files or folders, the platform's file jobs read one file.",
        ),
        "no-settings" => {
            Some("This job needs your ETX platform settings: save them on the Platform page first.")
        }
        "bad-params" => Some(
            "Some of the job's fields are missing or invalid (a version needs a number, a date as YYYY-MM-DD and a description; a tenant a name); nothing was started.",
        ),
        "staff-only" => Some("Only admins can start that job."),
        "too-many" => {
            Some("You have too many jobs waiting or running; wait for one to end or cancel one.")
        }
        "ended" => Some("That job has already ended."),
        "not-failed" => Some("Only a failed or cancelled job can be run again."),
        "input-gone" => Some("The file or folder that job ran on no longer exists."),
        "failed" => Some("That did not work; nothing was changed."),
        _ => None,
    }
}

fn failure_key(e: &CoreError, conflict: &'static str) -> &'static str {
    match e {
        CoreError::Validation { fields, .. } if fields.contains_key("kind") => "no-settings",
        CoreError::Validation { fields, .. } if fields.keys().any(|k| k.starts_with("params")) => {
            "bad-params"
        }
        CoreError::Validation { .. } => "not-csv",
        CoreError::Forbidden(_) => "staff-only",
        CoreError::LimitExceeded(_) => "too-many",
        CoreError::Conflict { fields, .. } if fields.contains_key("input_id") => "input-gone",
        CoreError::Conflict { .. } => conflict,
        _ => "failed",
    }
}

#[derive(Deserialize)]
pub struct StartForm {
    pub csrf_token: String,
    pub kind: String,
    #[serde(default)]
    pub input_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub etx_version: String,
    #[serde(default)]
    pub release_date: String,
    #[serde(default)]
    pub description: String,
}

impl StartForm {
    /// The job's parameters: the form's fields that were filled in.
    fn params(&self) -> serde_json::Value {
        let fields = [
            ("name", &self.name),
            ("tenant", &self.tenant),
            ("etx_version", &self.etx_version),
            ("release_date", &self.release_date),
            ("description", &self.description),
        ];
        let filled: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str())))
            .collect();
        serde_json::Value::Object(filled)
    }
}

/// Starts a job from the files page and shows it.
pub async fn view_start_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Form(f): Form<StartForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    let input = Some(f.input_id.as_str()).filter(|i| !i.is_empty());
    let started = jobs::start(&state, &u.auth.user, &f.kind, input, f.params());
    match started.await {
        Ok(job) => Ok(to_job(&job.id, "job-started")),
        Err(e) => {
            Ok(Redirect::to(&format!("/jobs?msg={}", failure_key(&e, "failed"))).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    pub csrf_token: String,
}

pub async fn view_cancel_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    match jobs::cancel(&state, &u.auth.user, &id).await {
        Ok(_) => Ok(to_job(&id, "job-cancel")),
        Err(CoreError::NotFound) => Err(PageError::from(ApiError::NotFound)),
        Err(e) => Ok(to_job(&id, failure_key(&e, "ended"))),
    }
}

pub async fn view_retry_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    u: WebUser,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> PageResult {
    if check_form_csrf(&headers, &f.csrf_token).is_err() {
        return Ok(form_expired());
    }
    match jobs::retry(&state, &u.auth.user, &id).await {
        Ok(job) => Ok(to_job(&job.id, "job-started")),
        Err(CoreError::NotFound) => Err(PageError::from(ApiError::NotFound)),
        Err(e) => Ok(to_job(&id, failure_key(&e, "not-failed"))),
    }
}

fn to_job(id: &str, msg: &str) -> Response {
    let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    Redirect::to(&format!("/jobs/{id}?msg={msg}")).into_response()
}
