//! One run of a job as its steps see it: progress to report, a stop flag to poll, and the
//! step records of the run.

use super::JobView;
use crate::Core;
use etx_db::jobs::{JobRow, StepRow};
use etx_domain::{JobStatus, StepStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// How a run ended.
pub(super) struct Outcome {
    pub status: JobStatus,
    pub message: String,
    /// The workspace folder holding what the run wrote.
    pub output_id: Option<String>,
}

/// One run of a job: what its steps report, and what the heartbeat tells them.
pub(super) struct Run {
    pub state: Core,
    pub job: JobRow,
    /// Per mille.
    pub(super) progress: AtomicI32,
    pub(super) message: Mutex<String>,
    /// Set when the owner cancelled or the lease was lost; the steps poll it.
    pub(super) stop: Arc<AtomicBool>,
    pub(super) lost: AtomicBool,
    pub(super) next_seq: AtomicI32,
}

impl Run {
    pub fn set_progress(&self, permille: i32, message: impl Into<String>) {
        self.progress
            .store(permille.clamp(0, 1000), Ordering::Relaxed);
        *self.message.lock().unwrap_or_else(|p| p.into_inner()) = message.into();
    }

    pub fn set_permille(&self, permille: i32) {
        self.progress
            .store(permille.clamp(0, 1000), Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The flag a blocking engine polls.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Records the start of a step; `None` when the worker no longer holds the job.
    pub async fn start_step(&self, name: &str, input: &str) -> Option<i32> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let row = StepRow {
            job_id: self.job.id.clone(),
            seq,
            attempt: self.job.attempts,
            name: name.into(),
            input: input.into(),
            status: StepStatus::Running.as_str().into(),
            detail: "{}".into(),
            error: None,
            started_at: etx_db::now_micros(),
            finished_at: None,
        };
        match self
            .state
            .db
            .start_step(self.state.workers.id(), &row)
            .await
        {
            Ok(true) => Some(seq),
            Ok(false) => {
                self.lose();
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, job_id = self.job.id, "a step could not be recorded");
                None
            }
        }
    }

    pub async fn end_step(
        &self,
        seq: i32,
        status: StepStatus,
        detail: &serde_json::Value,
        error: Option<&str>,
    ) {
        let db = &self.state.db;
        let r = db
            .finish_step(
                db.conn(),
                &self.job.id,
                seq,
                status,
                &detail.to_string(),
                error,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, job_id = self.job.id, "a step's end could not be recorded");
        }
    }

    pub(super) fn lose(&self) {
        self.lost.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(super) fn view(&self) -> JobView {
        let mut row = self.job.clone();
        row.progress = self.progress.load(Ordering::Relaxed);
        row.message = self.message();
        row.cancel_requested = self.stop.load(Ordering::Relaxed);
        JobView::from(&row)
    }

    pub(super) fn message(&self) -> String {
        self.message
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
