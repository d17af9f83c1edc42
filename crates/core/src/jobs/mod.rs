//! Processing jobs: a user starts one on a file or folder of the workspace; it waits in the
//! database until a worker of any instance claims it, runs its steps off the async executor,
//! reports progress to the owner's live connections and keeps every step's outcome as history.
//!
//! Durability: a claim gives the worker a lease it renews while it runs. A job whose worker
//! died is claimed again once the lease ends and run from the start (what the interrupted run
//! wrote is removed first); after `max_attempts` runs it fails instead. Every write of a
//! worker is conditional on still holding the lease, so a job never runs twice at once.

mod bar;
mod etx;
mod local;
mod run;
mod worker;

pub use worker::{Workers, spawn_workers};

use crate::Core;
use crate::error::CoreError;
use crate::time::rfc3339;
use etx_db::files::FileRow;
use etx_db::jobs::{JobRow, StepRow};
use etx_db::users::UserRow;
use etx_domain::{AuditAction, JobKind, JobStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsConfig {
    /// Jobs one instance runs at once; 0: none (an instance that only serves requests).
    pub workers: usize,
    /// Jobs one user has running at once, over every instance.
    pub per_user_running: u32,
    /// Jobs one user may have waiting or running; more are refused.
    pub per_user_unfinished: u32,
    /// How long a claim holds a job without renewal; a dead worker's job waits this long.
    pub lease_secs: u64,
    /// Runs a job may start before a job that keeps losing its worker is failed.
    pub max_attempts: u32,
    /// How often an idle worker looks for jobs started on other instances.
    pub poll_ms: u64,
    /// Memory of the BAR grouping's buffers (direct groups and sort), per running job.
    pub bar_sort_bytes: usize,
}

/// A job as the API and pages show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub id: String,
    /// `bar_grouping`, `es_data_import`, `org_structure`, `create_tenant`,
    /// `scheme_generation` or `set_version`.
    pub kind: String,
    /// The file or folder it was started on; empty for kinds that read none.
    pub input_id: String,
    /// The input's name when the job was started.
    pub input_name: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Percent of the work done, 0 to 100.
    pub progress: u8,
    /// What it is doing, or how it ended.
    pub message: String,
    /// A cancel was asked for and the worker has not stopped yet.
    pub cancel_requested: bool,
    /// Runs started (more than one when a worker stopped and another took over).
    pub attempts: i32,
    /// The workspace folder holding its output.
    pub output_id: Option<String>,
    /// The job this one runs again.
    pub retry_of: Option<String>,
    /// What it was asked to do besides its input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: serde_json::Value,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> Self {
        JobView {
            id: j.id.clone(),
            kind: j.kind.clone(),
            input_id: j.input_id.clone(),
            input_name: j.input_name.clone(),
            status: j.status.clone(),
            progress: u8::try_from((j.progress / 10).clamp(0, 100)).unwrap_or(0),
            message: j.message.clone(),
            cancel_requested: j.cancel_requested,
            attempts: j.attempts,
            output_id: j.output_id.clone(),
            retry_of: j.retry_of.clone(),
            params: serde_json::from_str(&j.params).unwrap_or_default(),
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
        }
    }
}

/// One step of a job: what it read, what it wrote, how long it took, how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    pub seq: i32,
    /// The run of the job it belongs to.
    pub attempt: i32,
    pub name: String,
    /// What it read (a file's path in the workspace).
    pub input: String,
    /// `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    pub status: String,
    /// Counts and output files.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

impl From<&StepRow> for StepView {
    fn from(s: &StepRow) -> Self {
        StepView {
            seq: s.seq,
            attempt: s.attempt,
            name: s.name.clone(),
            input: s.input.clone(),
            status: s.status.clone(),
            detail: serde_json::from_str(&s.detail).unwrap_or(serde_json::Value::Null),
            error: s.error.clone(),
            started_at: rfc3339(s.started_at),
            finished_at: s.finished_at.map(rfc3339),
            duration_ms: s.finished_at.map(|f| (f - s.started_at) / 1000),
        }
    }
}

/// A job with its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    pub job: JobView,
    pub steps: Vec<StepView>,
}

fn kind_of(text: &str) -> Result<JobKind, CoreError> {
    JobKind::parse(text).ok_or_else(|| {
        let known: Vec<_> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        CoreError::field("kind", &format!("must be one of: {}", known.join(", ")))
    })
}

/// What a job will run with, once checked.
pub(super) struct Plan {
    /// Empty for kinds that read no file.
    pub input_id: String,
    pub input_name: String,
    pub params: serde_json::Value,
}

/// The user's file or folder a job reads.
async fn input_of(
    state: &Core,
    user: &UserRow,
    input_id: &str,
    gone: impl FnOnce() -> CoreError,
) -> Result<FileRow, CoreError> {
    crate::files::get(state, user, input_id)
        .await
        .map_err(|e| match e {
            CoreError::NotFound => gone(),
            other => other,
        })
}

async fn plan(
    state: &Core,
    user: &UserRow,
    kind: JobKind,
    input: Option<&FileRow>,
    params: serde_json::Value,
) -> Result<Plan, CoreError> {
    match kind {
        JobKind::BarGrouping => {
            let input = input.ok_or_else(|| {
                CoreError::field(
                    "input_id",
                    "is required: BAR grouping reads a file or folder",
                )
            })?;
            if !matches!(&params, serde_json::Value::Null)
                && params.as_object().is_none_or(|o| !o.is_empty())
            {
                return Err(CoreError::field(
                    "params",
                    "BAR grouping takes no parameters",
                ));
            }
            bar::check_input(input)?;
            Ok(Plan {
                input_id: input.id.clone(),
                input_name: input.name.clone(),
                params: json!({}),
            })
        }
        _ => etx::plan(state, user, kind, input, params).await,
    }
}

/// Starts a job of `kind` on the user's file or folder `input_id` (kinds that read no file
/// take none), with the kind's `params`.
pub async fn start(
    state: &Core,
    user: &UserRow,
    kind: &str,
    input_id: Option<&str>,
    params: serde_json::Value,
) -> Result<JobView, CoreError> {
    let kind = kind_of(kind)?;
    let input = match input_id {
        Some(id) => Some(
            input_of(state, user, id, || {
                CoreError::field("input_id", "is not a file or folder of yours")
            })
            .await?,
        ),
        None => None,
    };
    let plan = plan(state, user, kind, input.as_ref(), params).await?;
    queue(state, user, kind, &plan, None).await
}

async fn queue(
    state: &Core,
    user: &UserRow,
    kind: JobKind,
    plan: &Plan,
    retry_of: Option<&str>,
) -> Result<JobView, CoreError> {
    let (input_id, input_name) = (plan.input_id.as_str(), plan.input_name.as_str());
    let db = &state.db;
    let limit = i64::from(state.config.jobs.per_user_unfinished);
    let now = etx_db::now_micros();
    let row = JobRow {
        id: uuid::Uuid::now_v7().to_string(),
        owner_id: user.id.clone(),
        kind: kind.as_str().into(),
        input_id: input_id.into(),
        input_name: input_name.into(),
        status: JobStatus::Queued.as_str().into(),
        progress: 0,
        message: "waiting for a worker".into(),
        cancel_requested: false,
        attempts: 0,
        worker: None,
        lease_until: None,
        output_id: None,
        retry_of: retry_of.map(str::to_string),
        params: plan.params.to_string(),
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
    };
    let tx = db.begin_write().await?;
    // The user's jobs are counted and a retry looked for with the user's row locked, so that
    // concurrent requests are decided one after the other.
    db.lock_user(&tx, &user.id).await?;
    if let Some(earlier) = retry_of
        && db.retries_of(&tx, &user.id, earlier).await? > 0
    {
        return Err(CoreError::conflict_field(
            "status",
            "this job was retried already: see the newer job",
        ));
    }
    if db.unfinished_jobs(&tx, &user.id).await? >= limit {
        return Err(CoreError::LimitExceeded(format!(
            "you have {limit} jobs waiting or running; wait for one to end or cancel one"
        )));
    }
    db.insert_job(&tx, &row).await?;
    let action = if retry_of.is_some() {
        AuditAction::JobRetry
    } else {
        AuditAction::JobStart
    };
    let details = json!({"kind": kind.as_str(), "input_id": input_id, "input_name": input_name, "retry_of": retry_of});
    crate::audit::Event::new(Some(&user.id), action)
        .target("job", &row.id)
        .details(details)
        .write(db, &tx)
        .await?;
    tx.commit().await?;
    let view = JobView::from(&row);
    state.events.job_update(&user.id, &view);
    state.workers.wake();
    Ok(view)
}

/// The user's jobs, newest first, 50 at a time (`before`: a job id from the last page).
pub async fn list(
    state: &Core,
    user: &UserRow,
    before: Option<&str>,
) -> Result<Vec<JobView>, CoreError> {
    let before = match before {
        Some(id) => Some(
            state
                .db
                .job(&user.id, id)
                .await?
                .ok_or_else(|| CoreError::field("before", "is not a job of yours"))?
                .created_at,
        ),
        None => None,
    };
    let rows = state.db.jobs_of(&user.id, before, 50).await?;
    Ok(rows.iter().map(JobView::from).collect())
}

/// The user's job with its steps.
pub async fn get(state: &Core, user: &UserRow, id: &str) -> Result<JobDetail, CoreError> {
    let job = state
        .db
        .job(&user.id, id)
        .await?
        .ok_or(CoreError::NotFound)?;
    let steps = state.db.job_steps(&job.id).await?;
    Ok(JobDetail {
        job: JobView::from(&job),
        steps: steps.iter().map(StepView::from).collect(),
    })
}

/// Cancels a waiting job at once, or asks a running one to stop (it stops within a second or
/// so, at its next check). A job that has ended is a conflict.
pub async fn cancel(state: &Core, user: &UserRow, id: &str) -> Result<JobView, CoreError> {
    let before = state
        .db
        .job(&user.id, id)
        .await?
        .ok_or(CoreError::NotFound)?;
    if status_of(&before).is_final() {
        return Err(CoreError::conflict_field(
            "status",
            &format!("is {}: the job has already ended", before.status),
        ));
    }
    let row = state
        .db
        .cancel_job(&user.id, id)
        .await?
        .ok_or(CoreError::NotFound)?;
    crate::audit::Event::new(Some(&user.id), AuditAction::JobCancel)
        .target("job", &row.id)
        .details(json!({"status_before": before.status, "status": row.status}))
        .record(state)
        .await;
    let view = JobView::from(&row);
    state.events.job_update(&user.id, &view);
    Ok(view)
}

/// Runs a failed or cancelled job again, as a new job on the same input.
pub async fn retry(state: &Core, user: &UserRow, id: &str) -> Result<JobView, CoreError> {
    let job = state
        .db
        .job(&user.id, id)
        .await?
        .ok_or(CoreError::NotFound)?;
    if !matches!(status_of(&job), JobStatus::Failed | JobStatus::Cancelled) {
        return Err(CoreError::conflict_field(
            "status",
            &format!(
                "is {}: only a failed or cancelled job can be retried",
                job.status
            ),
        ));
    }
    let kind = kind_of(&job.kind)?;
    let input = match job.input_id.as_str() {
        "" => None,
        id => Some(
            input_of(state, user, id, || {
                CoreError::conflict_field(
                    "input_id",
                    "the file or folder the job ran on no longer exists",
                )
            })
            .await?,
        ),
    };
    let params = serde_json::from_str(&job.params).unwrap_or(serde_json::Value::Null);
    let plan = plan(state, user, kind, input.as_ref(), params).await?;
    queue(state, user, kind, &plan, Some(&job.id)).await
}

fn status_of(j: &JobRow) -> JobStatus {
    JobStatus::parse(&j.status).unwrap_or(JobStatus::Failed)
}
