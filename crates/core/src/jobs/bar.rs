//! The BAR grouping job: every CSV of the input (a file, or a folder and the folders inside
//! it) is one step that groups it (`processing::bar`) and stores the groups and manifest in a
//! new folder of the workspace next to the input. When the owner has ETX platform settings,
//! a second step per file publishes each group to the emission source its key names (see
//! `processing::platform`), recording every group's outcome. A file that fails (a missing
//! column, a malformed line, the quota, a group not published) fails its own step only; the
//! job is completed only when every step succeeded.

use super::local::{Scratch, StepError, fetch};
use super::run::{Outcome, Run};
use crate::error::CoreError;
use crate::files::{self, Upload};
use crate::processing::bar::{self, BarError, BarOptions, MANIFEST, ManifestEntry, Progress};
use crate::processing::platform::{self, EmissionSource, Platform, PublishOutcome, Session};
use bytes::Bytes;
use etx_db::files::FileRow;
use etx_db::users::UserRow;
use etx_domain::{JobStatus, StepStatus};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;

/// Group files listed by name in a step's detail; the manifest lists them all.
const LISTED: usize = 20;
/// Failed files named in the job's message; the steps have every one.
const NAMED: usize = 3;

fn is_csv(f: &FileRow) -> bool {
    !f.is_folder
        && (f.content_type == "text/csv"
            || f.name
                .rsplit_once('.')
                .is_some_and(|(_, e)| e.eq_ignore_ascii_case("csv")))
}

/// A BAR grouping reads a CSV file, or the CSV files of a folder.
pub(super) fn check_input(f: &FileRow) -> Result<(), CoreError> {
    if f.is_folder || is_csv(f) {
        Ok(())
    } else {
        Err(CoreError::field(
            "input_id",
            "BAR grouping reads CSV files: choose a .csv file or a folder holding some",
        ))
    }
}

/// `name` without its last extension.
fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => name,
    }
}

/// The CSV files to group with their paths below the input, in path order.
async fn inputs(run: &Run, input: &FileRow) -> Result<Vec<(FileRow, String)>, CoreError> {
    if !input.is_folder {
        return Ok(vec![(input.clone(), input.name.clone())]);
    }
    let all = run.state.db.all_files(&input.owner_id).await?;
    let by_id: std::collections::HashMap<&str, &FileRow> =
        all.iter().map(|f| (f.id.as_str(), f)).collect();
    let mut found = Vec::new();
    for f in all.iter().filter(|f| is_csv(f)) {
        // Walk up to the input; a file outside it never reaches it.
        let mut path = vec![f.name.as_str()];
        let mut at = f.parent_id.as_deref();
        let mut inside = false;
        for _ in 0..=etx_db::files::MAX_DEPTH {
            match at {
                Some(id) if id == input.id => {
                    inside = true;
                    break;
                }
                Some(id) => match by_id.get(id) {
                    Some(p) => {
                        path.push(p.name.as_str());
                        at = p.parent_id.as_deref();
                    }
                    None => break,
                },
                None => break,
            }
        }
        if inside {
            path.reverse();
            found.push(((*f).clone(), path.join("/")));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(found)
}

/// A new folder next to the input for the output, named after it (`… BAR groups`, then
/// `… BAR groups (2)`, … when taken).
async fn output_folder(run: &Run, user: &UserRow, input: &FileRow) -> Result<String, CoreError> {
    let base = format!("{} BAR groups", stem(&input.name));
    for n in 1..=100 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base} ({n})")
        };
        match files::create_folder(&run.state, user, input.parent_id.as_deref(), &name).await {
            Ok(f) => return Ok(f.id),
            Err(CoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CoreError::conflict_field(
        "name",
        &format!("too many folders named {base:?}; rename or delete some"),
    ))
}

pub(super) async fn run(run: &Run) -> Outcome {
    let mut output_id = None;
    match prepare(run, &mut output_id).await {
        Ok((user, inputs, out)) => {
            let delivery = match platform::for_user(&run.state, &user).await {
                Ok(p) => p.map(Delivery::new),
                Err(e) => {
                    return Outcome {
                        status: JobStatus::Failed,
                        message: format!("the ETX platform settings could not be read: {e}"),
                        output_id,
                    };
                }
            };
            group_all(run, &user, &inputs, out, delivery).await
        }
        Err(e) => Outcome {
            status: JobStatus::Failed,
            message: e.to_string(),
            output_id,
        },
    }
}

async fn prepare(
    run: &Run,
    output_id: &mut Option<String>,
) -> Result<(UserRow, Vec<(FileRow, String)>, String), CoreError> {
    let state = &run.state;
    let job = &run.job;
    let user = state
        .db
        .user_by_id(&job.owner_id)
        .await?
        .ok_or(CoreError::NotFound)?;
    // Checked again when the job runs, not only when it was queued.
    if !user.is_active {
        return Err(CoreError::Forbidden("the job's owner is suspended".into()));
    }
    // A run whose worker stopped is done again from the start, without what it wrote.
    if let Some(old) = &job.output_id {
        match files::delete(state, &user, old).await {
            Ok(_) | Err(CoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    let input = state
        .db
        .file(state.db.conn(), &user.id, &job.input_id)
        .await?
        .ok_or_else(|| {
            CoreError::BadRequest("the file or folder was deleted before the job ran".into())
        })?;
    let inputs = inputs(run, &input).await?;
    if inputs.is_empty() {
        return Err(CoreError::BadRequest(format!(
            "{} holds no CSV files",
            input.name
        )));
    }
    let out = output_folder(run, &user, &input).await?;
    *output_id = Some(out.clone());
    let db = &state.db;
    if !db
        .set_job_output(db.conn(), &job.id, state.workers.id(), &out)
        .await?
    {
        return Err(CoreError::Conflict {
            message: "the job was taken over by another worker".into(),
            fields: Default::default(),
        });
    }
    Ok((user, inputs, out))
}

async fn group_all(
    run: &Run,
    user: &UserRow,
    inputs: &[(FileRow, String)],
    out: String,
    mut delivery: Option<Delivery>,
) -> Outcome {
    let n = inputs.len();
    let nested = n > 1 || inputs.first().is_some_and(|(_, p)| p.contains('/'));
    let mut failed: Vec<String> = Vec::new();
    let (mut done, mut groups) = (0usize, 0u64);
    for (i, (file, path)) in inputs.iter().enumerate() {
        if run.stopping() {
            break;
        }
        let part = Part { index: i, of: n };
        run.set_progress(
            part.permille(0),
            format!("grouping {path} ({} of {n})", i + 1),
        );
        let Some(seq) = run.start_step("group", path).await else {
            break;
        };
        // In a folder's output each file's groups get a folder named after its path.
        let prefix = if nested {
            format!("{}/", stem(path))
        } else {
            String::new()
        };
        match group_one(run, user, file, &out, &prefix, part).await {
            Ok(grouped) => {
                groups += grouped.detail["groups"].as_u64().unwrap_or(0);
                run.end_step(seq, StepStatus::Succeeded, &grouped.detail, None)
                    .await;
                match &mut delivery {
                    None => done += 1,
                    Some(d) => match publish_step(run, d, path, &grouped.dir, part).await {
                        Ok(()) => done += 1,
                        Err(StepError::Cancelled) => break,
                        Err(StepError::Failed(message)) => {
                            failed.push(format!("{path}: {message}"));
                        }
                    },
                }
            }
            Err(StepError::Cancelled) => {
                run.end_step(seq, StepStatus::Cancelled, &json!({}), Some("cancelled"))
                    .await;
                break;
            }
            Err(StepError::Failed(message)) => {
                run.end_step(seq, StepStatus::Failed, &json!({}), Some(&message))
                    .await;
                failed.push(format!("{path}: {message}"));
            }
        }
    }
    let output_id = Some(out);
    let ended = done + failed.len();
    if run.stopping() && ended < n {
        return Outcome {
            status: JobStatus::Cancelled,
            message: format!("cancelled after {ended} of {n} files"),
            output_id,
        };
    }
    if failed.is_empty() {
        return Outcome {
            status: JobStatus::Completed,
            message: format!(
                "{n} file{} grouped into {groups} group{}",
                plural(n as u64),
                plural(groups)
            ),
            output_id,
        };
    }
    let mut message = format!("{} of {n} files failed: ", failed.len());
    message.push_str(&failed[..failed.len().min(NAMED)].join("; "));
    if failed.len() > NAMED {
        message.push_str(&format!("; and {} more", failed.len() - NAMED));
    }
    Outcome {
        status: JobStatus::Failed,
        message,
        output_id,
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One file's part of the job's progress: reading is the first 80 %, writing the groups the
/// next 10 %, storing them the rest.
#[derive(Clone, Copy)]
struct Part {
    index: usize,
    of: usize,
}

impl Part {
    fn permille(self, within: i64) -> i32 {
        let of = self.of.max(1) as i64;
        let whole = (self.index as i64 * 1000 + within.clamp(0, 1000)) / of;
        i32::try_from(whole).unwrap_or(1000)
    }

    fn engine(self, p: Progress) -> i32 {
        let part = |done: u64, total: u64, from: i64, span: i64| {
            from + if total == 0 {
                span
            } else {
                (done.min(total) as i64 * span) / total as i64
            }
        };
        self.permille(match p {
            Progress::Reading { bytes, total } => part(bytes, total, 0, 800),
            Progress::Writing { rows, total } => part(rows, total, 800, 100),
        })
    }
}

/// A grouped file: its step's detail and the local output, kept for publishing.
struct Grouped {
    detail: serde_json::Value,
    dir: PathBuf,
    _scratch: Scratch,
}

async fn group_one(
    run: &Run,
    user: &UserRow,
    file: &FileRow,
    out: &str,
    prefix: &str,
    part: Part,
) -> Result<Grouped, StepError> {
    let state = &run.state;
    let scratch = Scratch(state.config.data_dir.join("tmp").join(format!(
        "job-{}-{}",
        run.job.id,
        uuid::Uuid::now_v7().simple()
    )));
    tokio::fs::create_dir_all(&scratch.0)
        .await
        .map_err(|e| CoreError::Internal(e.into()))?;
    let input = scratch.0.join("input.csv");
    fetch(state, user, file, &input).await?;
    let dir = scratch.0.join("out");
    let summary = engine(run, part, &input, &dir).await?;
    let _ = tokio::fs::remove_file(&input).await;

    run.set_progress(
        part.permille(900),
        format!("storing the groups of {}", file.name),
    );
    let mut up = Upload::start(state, user, Some(out)).await?;
    let stored = store(run, &mut up, &dir, prefix).await;
    if let Err(e) = stored {
        up.discard().await;
        return Err(e);
    }
    let views = up.commit().await?;
    let manifest = views
        .iter()
        .find(|v| v.name == MANIFEST)
        .map(|v| v.id.clone());
    let files: Vec<_> = views
        .iter()
        .filter(|v| v.name != MANIFEST)
        .take(LISTED)
        .map(|v| json!({"id": v.id, "name": v.name, "size": v.size}))
        .collect();
    let detail = json!({
        "rows_read": summary.rows_read,
        "rows_dropped": summary.rows_dropped,
        "groups": summary.groups,
        "manifest_id": manifest,
        "files": files,
        "files_listed": files.len(),
    });
    Ok(Grouped {
        detail,
        dir,
        _scratch: scratch,
    })
}

/// Group outcomes kept in a publish step's detail; the counts cover them all.
const OUTCOMES_LISTED: usize = 200;

/// The owner's platform: logged in with its WebSocket open and the emission sources read at
/// the first publish, then reused for every file of the job.
pub(super) struct Delivery {
    platform: Platform,
    ready: Option<(Session, Vec<EmissionSource>)>,
}

impl Delivery {
    fn new(platform: Platform) -> Self {
        Delivery {
            platform,
            ready: None,
        }
    }

    async fn sources(&mut self) -> Result<&[EmissionSource], StepError> {
        if self.ready.is_none() {
            let session = self.platform.connect().await.map_err(|e| {
                StepError::Failed(format!("the ETX platform could not be reached: {e}"))
            })?;
            let sources = self.platform.emission_sources().await.map_err(|e| {
                StepError::Failed(format!("the emission sources could not be read: {e}"))
            })?;
            self.ready = Some((session, sources));
        }
        Ok(self
            .ready
            .as_ref()
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[]))
    }
}

/// The publish step of one grouped file: every group to its emission source.
async fn publish_step(
    run: &Run,
    delivery: &mut Delivery,
    path: &str,
    dir: &Path,
    part: Part,
) -> Result<(), StepError> {
    let Some(seq) = run.start_step("publish", path).await else {
        return Err(StepError::Cancelled);
    };
    let (detail, result) = match publish(run, delivery, path, dir, part).await {
        Ok(p) => p,
        Err(e) => (json!({}), Err(e)),
    };
    match &result {
        Ok(()) => {
            run.end_step(seq, StepStatus::Succeeded, &detail, None)
                .await
        }
        Err(StepError::Cancelled) => {
            run.end_step(seq, StepStatus::Cancelled, &detail, Some("cancelled"))
                .await
        }
        Err(StepError::Failed(m)) => {
            run.end_step(seq, StepStatus::Failed, &detail, Some(m))
                .await
        }
    }
    result
}

type Published = (serde_json::Value, Result<(), StepError>);

async fn publish(
    run: &Run,
    delivery: &mut Delivery,
    path: &str,
    dir: &Path,
    part: Part,
) -> Result<Published, StepError> {
    let manifest_dir = dir.to_owned();
    let entries: Vec<ManifestEntry> = tokio::task::spawn_blocking(move || {
        bar::read_manifest(&manifest_dir)?.collect::<std::io::Result<Vec<_>>>()
    })
    .await
    .map_err(|e| CoreError::Internal(anyhow::anyhow!("manifest thread: {e}")))?
    .map_err(|e| CoreError::Internal(e.into()))?;
    let platform = delivery.platform.clone();
    let sources = delivery.sources().await?;
    let total = entries.len();
    let (mut published, mut unmatched, mut ambiguous, mut failed) = (0usize, 0, 0, 0);
    let mut listed = Vec::new();
    let mut first_failure = None;
    for (i, entry) in entries.iter().enumerate() {
        if run.stopping() {
            return Err(StepError::Cancelled);
        }
        let within = 900 + (i as i64 * 100) / total.max(1) as i64;
        run.set_progress(
            part.permille(within),
            format!("publishing the groups of {path} ({} of {total})", i + 1),
        );
        let csv = tokio::fs::read_to_string(dir.join(&entry.file))
            .await
            .map_err(|e| CoreError::Internal(e.into()))?;
        let outcome = platform
            .publish_group(&entry.key, &platform::bart_name(&entry.file), &csv, sources)
            .await;
        match &outcome {
            PublishOutcome::Published { .. } => published += 1,
            PublishOutcome::NoMatchingSource => unmatched += 1,
            PublishOutcome::Ambiguous { .. } => ambiguous += 1,
            PublishOutcome::Failed { message, .. } => {
                failed += 1;
                first_failure.get_or_insert_with(|| format!("{}: {message}", entry.key));
            }
        }
        if listed.len() < OUTCOMES_LISTED {
            let mut o = serde_json::to_value(&outcome).unwrap_or_default();
            o["key"] = json!(entry.key);
            o["file"] = json!(entry.file);
            listed.push(o);
        }
    }
    let detail = json!({
        "groups": total,
        "published": published,
        "no_matching_source": unmatched,
        "ambiguous": ambiguous,
        "failed": failed,
        "outcomes": listed,
    });
    if published == total {
        return Ok((detail, Ok(())));
    }
    let mut why = Vec::new();
    if unmatched > 0 {
        why.push(format!("{unmatched} without a matching emission source"));
    }
    if ambiguous > 0 {
        why.push(format!("{ambiguous} matching several emission sources"));
    }
    if let Some(f) = first_failure {
        why.push(format!("{failed} refused or unreachable (first: {f})"));
    }
    let message = format!(
        "{} of {total} groups were not published: {}",
        total - published,
        why.join(", ")
    );
    Ok((detail, Err(StepError::Failed(message))))
}

/// Runs the grouping engine on a blocking thread, reporting progress and polling the stop flag.
async fn engine(
    run: &Run,
    part: Part,
    input: &Path,
    dir: &Path,
) -> Result<bar::BarSummary, StepError> {
    let options = BarOptions {
        run_bytes: run.state.config.jobs.bar_sort_bytes.max(1024 * 1024),
        ..BarOptions::default()
    };
    let stop = run.stop_flag();
    let (tx, mut rx) = tokio::sync::watch::channel(0i32);
    let (input, dir) = (input.to_owned(), dir.to_owned());
    let task = tokio::task::spawn_blocking(move || {
        let mut progress = |p: Progress| {
            let _ = tx.send(part.engine(p));
        };
        let cancelled = || stop.load(Ordering::Relaxed);
        bar::group_bar_csv(&input, &dir, &options, &mut progress, &cancelled)
    });
    tokio::pin!(task);
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            changed = rx.changed() => {
                if changed.is_ok() {
                    run.set_permille(*rx.borrow());
                }
            }
        }
    };
    match result {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(BarError::Cancelled)) => Err(StepError::Cancelled),
        Ok(Err(e @ BarError::Io { .. })) => {
            tracing::warn!(error = %e, "BAR grouping could not read or write its files");
            Err(StepError::Failed(
                "the file could not be processed for lack of local disk space or access; retry the job".into(),
            ))
        }
        Ok(Err(e)) => Err(StepError::Failed(e.to_string())),
        Err(e) => Err(CoreError::Internal(anyhow::anyhow!("grouping thread: {e}")).into()),
    }
}

/// Streams the output directory's files (groups in name order, then the manifest) into the
/// upload, under `prefix`.
async fn store(run: &Run, up: &mut Upload<'_>, dir: &Path, prefix: &str) -> Result<(), StepError> {
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| CoreError::Internal(e.into()))?;
    while let Some(e) = entries
        .next_entry()
        .await
        .map_err(|e| CoreError::Internal(e.into()))?
    {
        if e.file_type().await.is_ok_and(|t| t.is_file()) {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    // The manifest last, so a listing of a partly stored output never looks complete.
    names.sort_by_key(|n| n == MANIFEST);
    for name in names {
        if run.stopping() {
            return Err(StepError::Cancelled);
        }
        let file = tokio::fs::File::open(dir.join(&name))
            .await
            .map_err(|e| CoreError::Internal(e.into()))?;
        up.add(&format!("{prefix}{name}"), chunks(file)).await?;
    }
    Ok(())
}

/// A local file as a stream of chunks.
fn chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Bytes, CoreError>> + Unpin {
    Box::pin(futures_util::stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| CoreError::Internal(e.into()))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    }))
}
