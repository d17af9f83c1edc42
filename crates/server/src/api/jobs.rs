//! `/api/jobs`: the signed-in user's processing jobs: start one on a file or folder, follow it
//! (also live, as Socket.IO `job_update`), cancel it, run a failed one again, read its steps.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppQuery};
use crate::session::Auth;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use etx_core::jobs::{self, JobDetail, JobView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, start))
        .routes(routes!(get_job))
        .routes(routes!(cancel))
        .routes(routes!(retry))
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// A job id from the previous page: the jobs started before it.
    pub before: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// Your jobs, newest first, 50 at a time.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, description = "Your jobs", body = JobList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 422, description = "`before` is not a job of yours", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> ApiResult<Json<JobList>> {
    let jobs = jobs::list(&state, &auth.user, q.before.as_deref()).await?;
    Ok(Json(JobList { jobs }))
}

/// Body of a new job.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// `bar_grouping` (a CSV file or a folder), `es_data_import` (a file; `params.page_rows`,
    /// 500 by default), `org_structure` (a CSV file; `params.tenant` to select a tenant
    /// first), `create_tenant` (admins; `params.name`), `scheme_generation` (`params` passed to
    /// the platform) or `set_version` (admins; `params.etx_version`, `release_date` as
    /// YYYY-MM-DD, `description`). All but `bar_grouping` need your ETX platform settings.
    pub kind: String,
    /// The file or folder of your workspace to process; left out for kinds that read none.
    pub input_id: Option<String>,
    /// The kind's parameters (an object).
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

/// Start a processing job. It waits for a worker of any instance, then runs; follow it here or
/// through Socket.IO `job_update` events.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = NewJob,
    responses(
        (status = 201, description = "The queued job", body = JobView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A kind only admins may start", body = ErrorBody),
        (status = 413, description = "The input is larger than the kind takes", body = ErrorBody),
        (status = 422, description = "An unknown kind, an input that is not yours or not processable, bad parameters, no platform settings, or too many unfinished jobs", body = ErrorBody),
    ))]
async fn start(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(b): AppJson<NewJob>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let params = b.params.unwrap_or(serde_json::Value::Null);
    let job = jobs::start(&state, &auth.user, &b.kind, b.input_id.as_deref(), params).await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// One job with every step: its input, counts, output files, duration and error.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The job and its steps", body = JobDetail),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
    ))]
async fn get_job(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<JobDetail>> {
    Ok(Json(jobs::get(&state, &auth.user, &id).await?))
}

/// Cancel a job: a waiting one at once, a running one at its next check (within a second).
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
        (status = 409, description = "The job has already ended", body = ErrorBody),
    ))]
async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    Ok(Json(jobs::cancel(&state, &auth.user, &id).await?))
}

/// Run a failed or cancelled job again, as a new job on the same input.
#[utoipa::path(post, path = "/api/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 201, description = "The new job", body = JobView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such job of yours", body = ErrorBody),
        (status = 409, description = "The job has not failed, or its input is gone", body = ErrorBody),
        (status = 422, description = "Too many unfinished jobs", body = ErrorBody),
    ))]
async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    let job = jobs::retry(&state, &auth.user, &id).await?;
    Ok((StatusCode::CREATED, Json(job)))
}
