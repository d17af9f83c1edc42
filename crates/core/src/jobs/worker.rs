//! The workers of one instance: each claims a job, runs it while a heartbeat renews its lease
//! and publishes its progress, then ends it, and looks for the next.

use super::JobView;
use super::run::{Outcome, Run};
use crate::Core;
use etx_db::jobs::{Claim, ClaimRules, JobRow};
use etx_domain::{JobKind, JobStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a running job renews its lease, saves its progress and checks for a cancel.
const BEAT: Duration = Duration::from_millis(500);

/// This instance's worker identity and the signal that wakes an idle worker at once when a
/// job is queued here (workers of other instances find it at their next poll).
#[derive(Clone)]
pub struct Workers {
    id: Arc<str>,
    wake: Arc<Notify>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            id: format!("w-{}", uuid::Uuid::now_v7().simple()).into(),
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Workers {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Starts this instance's workers (none with `jobs.workers = 0`: an instance that only
/// serves requests). Aborting the handle stops them; their jobs are claimed again by any
/// instance once their leases end.
pub fn spawn_workers(state: Core) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let n = state.config.jobs.workers;
        let loops = (0..n).map(|_| work(state.clone()));
        futures_util::future::join_all(loops).await;
    })
}

async fn work(state: Core) {
    let cfg = &state.config.jobs;
    let poll = Duration::from_millis(cfg.poll_ms.max(10));
    let rules = ClaimRules {
        worker: state.workers.id(),
        lease_micros: i64::try_from(cfg.lease_secs.max(2) * 1_000_000).unwrap_or(i64::MAX),
        per_user: i64::from(cfg.per_user_running.max(1)),
        max_attempts: i32::try_from(cfg.max_attempts.max(1)).unwrap_or(i32::MAX),
    };
    loop {
        match state.db.claim_job(&rules).await {
            Ok(Claim { job, abandoned }) => {
                for j in &abandoned {
                    tracing::warn!(job_id = j.id, "job failed: its worker stopped too often");
                    state.events.job_update(&j.owner_id, &JobView::from(j));
                }
                if let Some(job) = job {
                    run(&state, job).await;
                    // A job of the same owner may have waited for this one's slot.
                    state.workers.wake();
                    continue;
                }
                if !abandoned.is_empty() {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "claiming a job failed; will retry"),
        }
        tokio::select! {
            _ = state.workers.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn run(state: &Core, job: JobRow) {
    let first_seq = match state.db.next_step_seq(&job.id).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, job_id = job.id, "a claimed job could not be read");
            return;
        }
    };
    let run = Run {
        state: state.clone(),
        progress: AtomicI32::new(0),
        message: Mutex::new("starting".into()),
        stop: Arc::new(AtomicBool::new(job.cancel_requested)),
        lost: AtomicBool::new(false),
        next_seq: AtomicI32::new(first_seq),
        job,
    };
    state.events.job_update(&run.job.owner_id, &run.view());
    let work = async {
        match JobKind::parse(&run.job.kind) {
            Some(JobKind::BarGrouping) => super::bar::run(&run).await,
            Some(kind) => super::etx::run(&run, kind).await,
            None => Outcome {
                status: JobStatus::Failed,
                message: format!("unknown job kind {:?}", run.job.kind),
                output_id: None,
            },
        }
    };
    let outcome = tokio::select! {
        o = work => o,
        never = heartbeat(&run) => match never {},
    };
    if run.lost.load(Ordering::Relaxed) {
        tracing::warn!(
            job_id = run.job.id,
            "lost the lease of a job; another worker has it"
        );
        return;
    }
    finish(&run, outcome).await;
}

async fn finish(run: &Run, outcome: Outcome) {
    let db = &run.state.db;
    let ended = db
        .finish_job(
            db.conn(),
            &run.job.id,
            run.state.workers.id(),
            outcome.status,
            &outcome.message,
            outcome.output_id.as_deref(),
        )
        .await;
    match ended {
        Ok(Some(row)) => {
            tracing::info!(job_id = row.id, status = row.status, "job ended");
            run.state
                .events
                .job_update(&row.owner_id, &JobView::from(&row));
        }
        Ok(None) => tracing::warn!(job_id = run.job.id, "a job ended after its lease was lost"),
        Err(e) => {
            tracing::warn!(error = %e, job_id = run.job.id, "a job's end could not be saved; it will run again")
        }
    }
}

/// Renews the lease and publishes progress until the run ends (it is dropped then).
async fn heartbeat(run: &Run) -> std::convert::Infallible {
    let cfg = &run.state.config.jobs;
    let lease = i64::try_from(cfg.lease_secs.max(2) * 1_000_000).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = (0, String::from("starting"), false);
    loop {
        tick.tick().await;
        let progress = run.progress.load(Ordering::Relaxed);
        let message = run.message();
        let db = &run.state.db;
        match db
            .renew_job(
                &run.job.id,
                run.state.workers.id(),
                lease,
                progress,
                &message,
            )
            .await
        {
            Ok(None) => run.lose(),
            Ok(Some(true)) => run.stop.store(true, Ordering::Relaxed),
            Ok(Some(false)) => {}
            Err(e) => {
                tracing::warn!(error = %e, job_id = run.job.id, "a job's lease could not be renewed")
            }
        }
        let now = (progress, message, run.stopping());
        if now != shown {
            run.state.events.job_update(&run.job.owner_id, &run.view());
            shown = now;
        }
    }
}
