//! Processing jobs and their steps. A job is held by at most one worker at a time: claiming it
//! sets `worker` and a lease in one transaction, and every later write of the worker is
//! conditional on still holding it, so a worker that lost its lease changes nothing.

use crate::{Db, DbKind, now_micros};
use etx_domain::{JobStatus, StepStatus};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

#[derive(Debug, Clone, FromQueryResult)]
pub struct JobRow {
    pub id: String,
    pub owner_id: String,
    pub kind: String,
    pub input_id: String,
    pub input_name: String,
    pub status: String,
    /// Per mille.
    pub progress: i32,
    pub message: String,
    pub cancel_requested: bool,
    pub attempts: i32,
    pub worker: Option<String>,
    pub lease_until: Option<i64>,
    pub output_id: Option<String>,
    pub retry_of: Option<String>,
    /// JSON: what the job was asked to do besides its input.
    pub params: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct StepRow {
    pub job_id: String,
    pub seq: i32,
    /// The run of the job (its `attempts` then) the step belongs to.
    pub attempt: i32,
    pub name: String,
    pub input: String,
    pub status: String,
    /// JSON: counts and output files.
    pub detail: String,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct ClaimRules<'a> {
    pub worker: &'a str,
    pub lease_micros: i64,
    /// Jobs of one owner running at once, on every instance together.
    pub per_user: i64,
    /// Runs a job may start; a job whose worker died after the last one fails instead.
    pub max_attempts: i32,
}

/// What a claim found.
#[derive(Debug, Default)]
pub struct Claim {
    /// The job, now running under the caller's lease (`attempts` counts this run).
    pub job: Option<JobRow>,
    /// Jobs whose worker died too often, failed by this claim.
    pub abandoned: Vec<JobRow>,
}

const COLUMNS: &str = "id, owner_id, kind, input_id, input_name, status, progress, message, \
     cancel_requested, attempts, worker, lease_until, output_id, retry_of, params, created_at, \
     started_at, finished_at, updated_at";

const STEP_COLUMNS: &str =
    "job_id, seq, attempt, name, input, status, detail, error, started_at, finished_at";

/// Jobs looked at per claim: enough to pass over owners at their limit.
const CLAIM_WINDOW: i64 = 32;

impl Db {
    pub async fn insert_job(&self, conn: &impl ConnectionTrait, j: &JobRow) -> Result<(), DbErr> {
        conn.execute_raw(self.stmt(
            &format!(
                "INSERT INTO jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            ),
            [
                j.id.clone().into(),
                j.owner_id.clone().into(),
                j.kind.clone().into(),
                j.input_id.clone().into(),
                j.input_name.clone().into(),
                j.status.clone().into(),
                j.progress.into(),
                j.message.clone().into(),
                j.cancel_requested.into(),
                j.attempts.into(),
                j.worker.clone().into(),
                j.lease_until.into(),
                j.output_id.clone().into(),
                j.retry_of.clone().into(),
                j.params.clone().into(),
                j.created_at.into(),
                j.started_at.into(),
                j.finished_at.into(),
                j.updated_at.into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// The owner's job `id`; another user's is `None`, like a missing one.
    pub async fn job(&self, owner: &str, id: &str) -> Result<Option<JobRow>, DbErr> {
        JobRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 AND owner_id = $2"),
            [id.into(), owner.into()],
        ))
        .one(self.conn())
        .await
    }

    /// The owner's jobs, newest first, created before `before` (microseconds) when given.
    pub async fn jobs_of(
        &self,
        owner: &str,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<JobRow>, DbErr> {
        JobRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM jobs WHERE owner_id = $1 AND created_at < $2 \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            [
                owner.into(),
                before.unwrap_or(i64::MAX).into(),
                (limit as i64).into(),
            ],
        ))
        .all(self.conn())
        .await
    }

    /// Jobs of the owner not yet final.
    pub async fn unfinished_jobs(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
    ) -> Result<i64, DbErr> {
        count(
            conn,
            self.stmt(
                "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND status IN ('queued', 'running')",
                [owner.into()],
            ),
        )
        .await
    }

    /// How many jobs were started as retries of `job`.
    pub async fn retries_of(
        &self,
        conn: &impl ConnectionTrait,
        owner: &str,
        job: &str,
    ) -> Result<i64, DbErr> {
        count(
            conn,
            self.stmt(
                "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND retry_of = $2",
                [owner.into(), job.into()],
            ),
        )
        .await
    }

    /// Claims the oldest job that is queued, or running under a lease that has ended (its
    /// worker died), skipping owners already running `per_user` jobs. On PostgreSQL the
    /// candidates are row-locked with `SKIP LOCKED`, so instances claiming at once take
    /// different jobs, and claims for one owner are serialised by an advisory lock so the
    /// per-user count is exact; SQLite's write transaction serialises all of it.
    pub async fn claim_job(&self, rules: &ClaimRules<'_>) -> Result<Claim, DbErr> {
        let now = now_micros();
        let pg = self.kind() == DbKind::Postgres;
        let tx = self.begin_write().await?;
        // Candidates are read without locking them: claimers running at once each take the
        // first one still free (the conditional updates below decide), rather than one
        // claimer holding the whole window while the others find nothing.
        let candidates = JobRow::find_by_statement(self.stmt(
            &format!(
                "SELECT {COLUMNS} FROM jobs WHERE status = 'queued' \
                 OR (status = 'running' AND lease_until < $1) \
                 ORDER BY created_at, id LIMIT $2"
            ),
            [now.into(), CLAIM_WINDOW.into()],
        ))
        .all(&tx)
        .await?;
        let mut abandoned = Vec::new();
        for job in candidates {
            if pg {
                // One decision per owner at a time: the running count below stays true until
                // this transaction ends.
                tx.execute_raw(self.stmt(
                    "SELECT pg_advisory_xact_lock(hashtext('jobs:' || $1))",
                    [job.owner_id.clone().into()],
                ))
                .await?;
            }
            if job.status == JobStatus::Running.as_str() && job.attempts >= rules.max_attempts {
                if let Some(failed) = self
                    .finish_abandoned(&tx, &job, now, rules.max_attempts)
                    .await?
                {
                    abandoned.push(failed);
                }
                continue;
            }
            let running = count(
                &tx,
                self.stmt(
                    "SELECT COUNT(*) FROM jobs WHERE owner_id = $1 AND status = 'running' \
                     AND lease_until >= $2 AND id <> $3",
                    [
                        job.owner_id.clone().into(),
                        now.into(),
                        job.id.clone().into(),
                    ],
                ),
            )
            .await?;
            if running >= rules.per_user {
                continue;
            }
            let claimed = JobRow::find_by_statement(self.stmt(
                &format!(
                    "UPDATE jobs SET status = 'running', worker = $2, lease_until = $3, \
                     attempts = attempts + 1, started_at = COALESCE(started_at, $4), \
                     updated_at = $4 WHERE id = $1 \
                     AND (status = 'queued' OR (status = 'running' AND lease_until < $4)) \
                     RETURNING {COLUMNS}"
                ),
                [
                    job.id.clone().into(),
                    rules.worker.into(),
                    (now + rules.lease_micros).into(),
                    now.into(),
                ],
            ))
            .one(&tx)
            .await?;
            if let Some(claimed) = claimed {
                self.interrupt_steps(&tx, &job.id, now).await?;
                tx.commit().await?;
                return Ok(Claim {
                    job: Some(claimed),
                    abandoned,
                });
            }
        }
        tx.commit().await?;
        Ok(Claim {
            job: None,
            abandoned,
        })
    }

    /// Steps of a run whose worker died never ended: says so.
    async fn interrupt_steps(
        &self,
        tx: &impl ConnectionTrait,
        job_id: &str,
        now: i64,
    ) -> Result<(), DbErr> {
        tx.execute_raw(self.stmt(
            "UPDATE job_steps SET status = $2, finished_at = $3, \
             error = 'the worker running it stopped' WHERE job_id = $1 AND status = $4",
            [
                job_id.into(),
                StepStatus::Interrupted.as_str().into(),
                now.into(),
                StepStatus::Running.as_str().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    async fn finish_abandoned(
        &self,
        tx: &impl ConnectionTrait,
        job: &JobRow,
        now: i64,
        max_attempts: i32,
    ) -> Result<Option<JobRow>, DbErr> {
        let message =
            format!("the job stopped with its worker {max_attempts} times; it was not run again");
        // Only while still abandoned: another claimer may have ended it a moment ago.
        let failed = JobRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE jobs SET status = $2, message = $3, worker = NULL, lease_until = NULL, \
                 finished_at = $4, updated_at = $4 \
                 WHERE id = $1 AND status = 'running' AND lease_until < $4 RETURNING {COLUMNS}"
            ),
            [
                job.id.clone().into(),
                JobStatus::Failed.as_str().into(),
                message.into(),
                now.into(),
            ],
        ))
        .one(tx)
        .await?;
        if failed.is_some() {
            self.interrupt_steps(tx, &job.id, now).await?;
        }
        Ok(failed)
    }

    /// Renews the worker's lease and records progress. `None` when the worker no longer
    /// holds the job (it must stop); otherwise whether a cancel was asked for.
    pub async fn renew_job(
        &self,
        id: &str,
        worker: &str,
        lease_micros: i64,
        progress: i32,
        message: &str,
    ) -> Result<Option<bool>, DbErr> {
        let now = now_micros();
        let row = self
            .conn()
            .query_one_raw(self.stmt(
                "UPDATE jobs SET lease_until = $3, progress = $4, message = $5, updated_at = $6 \
                 WHERE id = $1 AND worker = $2 AND status = 'running' RETURNING cancel_requested",
                [
                    id.into(),
                    worker.into(),
                    (now + lease_micros).into(),
                    progress.into(),
                    message.into(),
                    now.into(),
                ],
            ))
            .await?;
        row.map(|r| r.try_get_by_index::<bool>(0)).transpose()
    }

    /// Ends the worker's run of a job; `None` when it no longer holds it.
    pub async fn finish_job(
        &self,
        conn: &impl ConnectionTrait,
        id: &str,
        worker: &str,
        status: JobStatus,
        message: &str,
        output_id: Option<&str>,
    ) -> Result<Option<JobRow>, DbErr> {
        let now = now_micros();
        let progress_done = if status == JobStatus::Completed {
            ", progress = 1000"
        } else {
            ""
        };
        JobRow::find_by_statement(self.stmt(
            &format!(
                "UPDATE jobs SET status = $3, message = $4, output_id = $5, \
                 worker = NULL, lease_until = NULL, finished_at = $6, updated_at = $6{progress_done} \
                 WHERE id = $1 AND worker = $2 AND status = 'running' RETURNING {COLUMNS}"
            ),
            [
                id.into(),
                worker.into(),
                status.as_str().into(),
                message.into(),
                output_id.map(str::to_string).into(),
                now.into(),
            ],
        ))
        .one(conn)
        .await
    }

    /// Records where the job writes its output, while the worker holds it.
    pub async fn set_job_output(
        &self,
        conn: &impl ConnectionTrait,
        id: &str,
        worker: &str,
        output_id: &str,
    ) -> Result<bool, DbErr> {
        let n = conn
            .execute_raw(self.stmt(
                "UPDATE jobs SET output_id = $3 WHERE id = $1 AND worker = $2 AND status = 'running'",
                [id.into(), worker.into(), output_id.into()],
            ))
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// A queued job is cancelled at once; a running one is asked to stop (its worker sees it
    /// at the next renewal). A final job is left as it is. The job after the change.
    pub async fn cancel_job(&self, owner: &str, id: &str) -> Result<Option<JobRow>, DbErr> {
        let now = now_micros();
        let tx = self.begin_write().await?;
        tx.execute_raw(self.stmt(
            "UPDATE jobs SET status = 'cancelled', message = 'cancelled before it started', \
             finished_at = $3, updated_at = $3 WHERE id = $1 AND owner_id = $2 AND status = 'queued'",
            [id.into(), owner.into(), now.into()],
        ))
        .await?;
        tx.execute_raw(self.stmt(
            "UPDATE jobs SET cancel_requested = TRUE, updated_at = $3 \
             WHERE id = $1 AND owner_id = $2 AND status = 'running'",
            [id.into(), owner.into(), now.into()],
        ))
        .await?;
        let row = JobRow::find_by_statement(self.stmt(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 AND owner_id = $2"),
            [id.into(), owner.into()],
        ))
        .one(&tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Starts a step of the worker's run; `false` when the worker no longer holds the job.
    pub async fn start_step(&self, worker: &str, step: &StepRow) -> Result<bool, DbErr> {
        let tx = self.begin_write().await?;
        let held = count(
            &tx,
            self.stmt(
                "SELECT COUNT(*) FROM jobs WHERE id = $1 AND worker = $2 AND status = 'running'",
                [step.job_id.clone().into(), worker.into()],
            ),
        )
        .await?
            == 1;
        if held {
            tx.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO job_steps ({STEP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                [
                    step.job_id.clone().into(),
                    step.seq.into(),
                    step.attempt.into(),
                    step.name.clone().into(),
                    step.input.clone().into(),
                    step.status.clone().into(),
                    step.detail.clone().into(),
                    step.error.clone().into(),
                    step.started_at.into(),
                    step.finished_at.into(),
                ],
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Ends a running step with its outcome.
    pub async fn finish_step(
        &self,
        conn: &impl ConnectionTrait,
        job_id: &str,
        seq: i32,
        status: StepStatus,
        detail: &str,
        error: Option<&str>,
    ) -> Result<(), DbErr> {
        conn.execute_raw(self.stmt(
            "UPDATE job_steps SET status = $3, detail = $4, error = $5, finished_at = $6 \
             WHERE job_id = $1 AND seq = $2 AND status = 'running'",
            [
                job_id.into(),
                seq.into(),
                status.as_str().into(),
                detail.into(),
                error.map(str::to_string).into(),
                now_micros().into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// The steps of a job in order (the caller checked the job is the user's).
    pub async fn job_steps(&self, job_id: &str) -> Result<Vec<StepRow>, DbErr> {
        StepRow::find_by_statement(self.stmt(
            &format!("SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = $1 ORDER BY seq"),
            [job_id.into()],
        ))
        .all(self.conn())
        .await
    }

    /// The next free step number of a job.
    pub async fn next_step_seq(&self, job_id: &str) -> Result<i32, DbErr> {
        let n = count(
            self.conn(),
            self.stmt(
                "SELECT COALESCE(MAX(seq), 0) FROM job_steps WHERE job_id = $1",
                [job_id.into()],
            ),
        )
        .await?;
        Ok(n as i32 + 1)
    }
}

async fn count(conn: &impl ConnectionTrait, stmt: sea_orm::Statement) -> Result<i64, DbErr> {
    let row = conn.query_one_raw(stmt).await?;
    Ok(match row {
        Some(r) => r
            .try_get_by_index::<i64>(0)
            .or_else(|_| r.try_get_by_index::<i32>(0).map(i64::from))?,
        None => 0,
    })
}
