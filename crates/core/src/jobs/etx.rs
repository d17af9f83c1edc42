//! The ETX platform's operations as jobs (SPEC §7), each over the owner's platform WebSocket:
//! every request carries a message id and its answer is checked, so a step succeeds only when
//! the platform said so, and fails with the platform's own message otherwise.
//!
//! - `es_data_import` (a file): `UploadBase64Imp`, then the importer page by page.
//! - `org_structure` (a CSV file; `params.tenant` optional): `GetOrgs` + `SetOrg` to select
//!   the tenant, then `CreateOrgStructureFromCsv`.
//! - `create_tenant` (admins; `params.name`): `CreateTenantAccount`.
//! - `scheme_generation` (`params`: an object passed to the platform):
//!   `scheme_up_organization`.
//! - `set_version` (admins; `params.etx_version`, `release_date`, `description`): `SetVersion`.

use super::Plan;
use super::local::{StepError, fetch_input};
use super::run::{Outcome, Run};
use crate::Core;
use crate::error::CoreError;
use crate::processing::platform::{self, Session};
use etx_db::files::FileRow;
use etx_db::users::UserRow;
use etx_domain::{FieldErrors, JobKind, JobStatus, StepStatus};
use serde_json::{Value, json};

/// Rows per page of the ES data import unless `params.page_rows` says otherwise.
const PAGE_ROWS: u64 = 500;
/// A CSV sent whole in one message (the org structure) is at most this large.
const MESSAGE_FILE_BYTES: i64 = 16 * 1024 * 1024;
/// Bytes of `params` a job keeps.
const PARAMS_BYTES: usize = 16 * 1024;

fn text_param(params: &Value, key: &str, max: usize, errors: &mut FieldErrors) -> String {
    match params.get(key).and_then(Value::as_str).map(str::trim) {
        Some(v) if !v.is_empty() && v.chars().count() <= max => v.to_string(),
        Some(v) if !v.is_empty() => {
            errors.add(
                &format!("params.{key}"),
                format!("must be at most {max} characters"),
            );
            String::new()
        }
        _ => {
            errors.add(&format!("params.{key}"), "is required");
            String::new()
        }
    }
}

fn input_file(input: Option<&FileRow>, kind: JobKind) -> Result<&FileRow, CoreError> {
    match input {
        Some(f) if !f.is_folder => Ok(f),
        Some(_) => Err(CoreError::field("input_id", "must be a file, not a folder")),
        None => Err(CoreError::field(
            "input_id",
            &format!("is required: {kind} reads a file"),
        )),
    }
}

fn no_input(input: Option<&FileRow>, kind: JobKind) -> Result<(), CoreError> {
    match input {
        Some(_) => Err(CoreError::field(
            "input_id",
            &format!("must be left out: {kind} reads no file"),
        )),
        None => Ok(()),
    }
}

/// Checks a platform job before it is queued: the owner's settings, the role, the input and
/// the parameters. What the job will run with.
pub(super) async fn plan(
    state: &Core,
    user: &UserRow,
    kind: JobKind,
    input: Option<&FileRow>,
    params: Value,
) -> Result<Plan, CoreError> {
    if matches!(kind, JobKind::CreateTenant | JobKind::SetVersion) && !user_is_admin(user) {
        return Err(CoreError::Forbidden(format!(
            "only admins may start {kind} jobs"
        )));
    }
    if platform::settings::settings(state, user).await?.is_none() {
        return Err(CoreError::field(
            "kind",
            "needs your ETX platform settings: save them first (PUT /api/etx/config)",
        ));
    }
    let params = match params {
        Value::Null => json!({}),
        Value::Object(_) if params.to_string().len() <= PARAMS_BYTES => params,
        Value::Object(_) => {
            return Err(CoreError::field("params", "must be at most 16 KiB of JSON"));
        }
        _ => return Err(CoreError::field("params", "must be an object")),
    };
    let mut errors = FieldErrors::new();
    let (input_id, input_name, params) = match kind {
        JobKind::EsDataImport => {
            let f = input_file(input, kind)?;
            let page_rows = match params.get("page_rows") {
                None => PAGE_ROWS,
                Some(v) => match v.as_u64() {
                    Some(n @ 1..=100_000) => n,
                    _ => {
                        errors.add(
                            "params.page_rows",
                            "must be a whole number from 1 to 100000",
                        );
                        PAGE_ROWS
                    }
                },
            };
            (
                f.id.clone(),
                f.name.clone(),
                json!({"page_rows": page_rows}),
            )
        }
        JobKind::OrgStructure => {
            let f = input_file(input, kind)?;
            if f.size > MESSAGE_FILE_BYTES {
                return Err(CoreError::PayloadTooLarge(
                    "an org structure CSV is sent in one message: at most 16 MiB".into(),
                ));
            }
            let tenant = match params.get("tenant") {
                None | Some(Value::Null) => Value::Null,
                Some(_) => json!(text_param(&params, "tenant", 200, &mut errors)),
            };
            (f.id.clone(), f.name.clone(), json!({"tenant": tenant}))
        }
        JobKind::CreateTenant => {
            no_input(input, kind)?;
            let name = text_param(&params, "name", 200, &mut errors);
            (String::new(), name.clone(), json!({"name": name}))
        }
        JobKind::SchemeGeneration => {
            no_input(input, kind)?;
            (String::new(), "scheme generation".into(), params)
        }
        JobKind::SetVersion => {
            no_input(input, kind)?;
            let version = text_param(&params, "etx_version", 50, &mut errors);
            let date = text_param(&params, "release_date", 10, &mut errors);
            if !date.is_empty() && chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").is_err() {
                errors.add("params.release_date", "must be a date as YYYY-MM-DD");
            }
            let description = text_param(&params, "description", 2000, &mut errors);
            let p =
                json!({"etx_version": version, "release_date": date, "description": description});
            (String::new(), format!("version {version}"), p)
        }
        JobKind::BarGrouping => unreachable!("BAR grouping is planned in jobs::bar"),
    };
    if !errors.is_empty() {
        return Err(CoreError::validation(errors));
    }
    Ok(Plan {
        input_id,
        input_name,
        params,
    })
}

fn user_is_admin(user: &UserRow) -> bool {
    user.role
        .parse::<etx_domain::Role>()
        .is_ok_and(|r| r.is_admin())
}

fn failed(message: String) -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        message,
        output_id: None,
    }
}

pub(super) async fn run(run: &Run, kind: JobKind) -> Outcome {
    let state = &run.state;
    let user = match state.db.user_by_id(&run.job.owner_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return failed("the job's owner no longer exists".into()),
        Err(e) => return failed(format!("the job could not start: {e}")),
    };
    // Checked again when the job runs, not only when it was queued: the owner may have been
    // suspended or lost the role meanwhile.
    if !user.is_active {
        return failed("the job's owner is suspended".into());
    }
    if matches!(kind, JobKind::CreateTenant | JobKind::SetVersion) && !user_is_admin(&user) {
        return failed(format!("only admins may run {kind} jobs"));
    }
    let platform = match platform::for_user(state, &user).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return failed("no ETX platform settings: save them and run the job again".into());
        }
        Err(e) => return failed(format!("the ETX platform settings could not be read: {e}")),
    };
    let params: Value = serde_json::from_str(&run.job.params).unwrap_or_else(|_| json!({}));
    let session = match step(run, "connect", "the ETX platform", async {
        let s = platform.connect().await.map_err(platform_failure)?;
        Ok((s, json!({})))
    })
    .await
    {
        Ok(s) => s,
        Err(o) => return o,
    };
    let result = match kind {
        JobKind::EsDataImport => es_import(run, &user, &session, &params).await,
        JobKind::OrgStructure => org_structure(run, &user, &session, &params).await,
        JobKind::CreateTenant => {
            let name = params["name"].as_str().unwrap_or_default().to_string();
            one_call(
                run,
                "create tenant",
                &name,
                session.create_tenant_account(&name),
            )
            .await
        }
        JobKind::SchemeGeneration => {
            one_call(
                run,
                "scheme up organization",
                "",
                session.scheme_up_organization(params.clone()),
            )
            .await
        }
        JobKind::SetVersion => {
            let v = |k: &str| params[k].as_str().unwrap_or_default().to_string();
            let (version, date, description) =
                (v("etx_version"), v("release_date"), v("description"));
            one_call(
                run,
                "set version",
                &version,
                session.set_version(&version, &date, &description),
            )
            .await
        }
        JobKind::BarGrouping => Err(failed("not a platform job".into())),
    };
    match result {
        Ok(message) => Outcome {
            status: JobStatus::Completed,
            message,
            output_id: None,
        },
        Err(o) => o,
    }
}

fn platform_failure(e: platform::PlatformError) -> StepError {
    StepError::Failed(e.to_string())
}

/// Runs one step: records its start, its outcome and detail. The step's value, or the
/// job's outcome when it did not succeed.
async fn step<T>(
    run: &Run,
    name: &str,
    input: &str,
    work: impl std::future::Future<Output = Result<(T, Value), StepError>>,
) -> Result<T, Outcome> {
    let stopped = || Outcome {
        status: JobStatus::Cancelled,
        message: format!("cancelled before {name}"),
        output_id: None,
    };
    if run.stopping() {
        return Err(stopped());
    }
    let Some(seq) = run.start_step(name, input).await else {
        return Err(stopped());
    };
    run.set_progress(run_progress(run), format!("{name}: {input}"));
    match work.await {
        Ok((value, detail)) => {
            run.end_step(seq, StepStatus::Succeeded, &detail, None)
                .await;
            Ok(value)
        }
        Err(StepError::Cancelled) => {
            run.end_step(seq, StepStatus::Cancelled, &json!({}), Some("cancelled"))
                .await;
            Err(stopped())
        }
        Err(StepError::Failed(message)) => {
            run.end_step(seq, StepStatus::Failed, &json!({}), Some(&message))
                .await;
            Err(failed(format!("{name} failed: {message}")))
        }
    }
}

fn run_progress(run: &Run) -> i32 {
    run.progress.load(std::sync::atomic::Ordering::Relaxed)
}

/// A job of one platform request: its answer is the step's detail.
async fn one_call(
    run: &Run,
    name: &str,
    input: &str,
    call: impl std::future::Future<Output = Result<Value, platform::PlatformError>>,
) -> Result<String, Outcome> {
    step(run, name, input, async {
        let answer = call.await.map_err(platform_failure)?;
        Ok(((), json!({"answer": answer})))
    })
    .await?;
    Ok(format!("{name}: done"))
}

async fn es_import(
    run: &Run,
    user: &UserRow,
    session: &Session,
    params: &Value,
) -> Result<String, Outcome> {
    let page_rows = params["page_rows"].as_u64().unwrap_or(PAGE_ROWS);
    let name = run.job.input_name.clone();
    let path = step(run, "upload", &name, async {
        let (file, _scratch, local) = fetch_input(run, user).await?;
        let path = session
            .upload_file(&local, &file.name)
            .await
            .map_err(platform_failure)?;
        Ok((path.clone(), json!({"file_path": path, "bytes": file.size})))
    })
    .await?;
    run.set_progress(100, format!("importing {name}"));
    let rows = step(run, "import", &path, async {
        let rows = session
            .import_es_data(&path, page_rows, |done, total| {
                let permille = match total {
                    Some(t) if t > 0 => 100 + (done.min(t) * 900 / t) as i32,
                    _ => 100,
                };
                run.set_progress(permille, format!("imported {done} rows of {name}"));
            })
            .await
            .map_err(platform_failure)?;
        Ok((rows, json!({"rows": rows, "page_rows": page_rows})))
    })
    .await?;
    Ok(format!("{rows} rows of {name} imported"))
}

async fn org_structure(
    run: &Run,
    user: &UserRow,
    session: &Session,
    params: &Value,
) -> Result<String, Outcome> {
    if let Some(tenant) = params["tenant"].as_str() {
        step(run, "select tenant", tenant, async {
            let id = session.select_org(tenant).await.map_err(platform_failure)?;
            Ok(((), json!({"org_id": id})))
        })
        .await?;
    }
    let name = run.job.input_name.clone();
    step(run, "create org structure", &name, async {
        let (_file, _scratch, local) = fetch_input(run, user).await?;
        let csv = tokio::fs::read_to_string(&local)
            .await
            .map_err(|_| StepError::Failed("the file is not UTF-8 text".into()))?;
        let answer = session
            .create_org_structure(&csv)
            .await
            .map_err(platform_failure)?;
        Ok(((), json!({"answer": answer})))
    })
    .await?;
    Ok(format!("org structure created from {name}"))
}
