//! Committers that take every request waiting and commit them together: a request hands its
//! job to a queue and waits for its answer; a lane takes every job waiting (up to
//! `max_group`) and commits them in one database transaction, so the database does one
//! durable commit, and a handful of multi-row statements, for the whole group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use etx_db::{DatabaseTransaction, Db, DbErr};
use tokio::sync::{Mutex, mpsc};

pub(crate) struct Lanes<J> {
    queue: mpsc::Sender<J>,
}

impl<J> Clone for Lanes<J> {
    fn clone(&self) -> Self {
        Lanes {
            queue: self.queue.clone(),
        }
    }
}

impl<J: Send + 'static> Lanes<J> {
    /// Starts `lanes` committers; each calls `commit(its index, group)` for every group it
    /// takes. They end when the last handle is dropped.
    pub(crate) fn start<F, Fut>(lanes: usize, max_group: usize, commit: F) -> Self
    where
        F: Fn(usize, Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let max_group = max_group.clamp(1, 256);
        let (queue, rx) = mpsc::channel(4096);
        let rx = Arc::new(Mutex::new(rx));
        let commit = Arc::new(commit);
        for lane in 0..lanes.max(1) {
            let (rx, commit) = (rx.clone(), commit.clone());
            tokio::spawn(async move {
                while let Some(jobs) = take_group(&rx, max_group).await {
                    commit(lane, jobs).await;
                }
            });
        }
        Lanes { queue }
    }

    /// Queues a job; false when the committers stopped.
    pub(crate) async fn send(&self, job: J) -> bool {
        self.queue.send(job).await.is_ok()
    }
}

/// Waits for one job, then takes every other one already waiting, up to `max`.
async fn take_group<J>(rx: &Mutex<mpsc::Receiver<J>>, max: usize) -> Option<Vec<J>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut jobs = vec![first];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Each id once, in order: the order accounts and cap rows are locked in.
pub(crate) fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub(crate) async fn balances_of(
    db: &Db,
    tx: &DatabaseTransaction,
    ids: &[&str],
    lock: bool,
) -> Result<HashMap<String, i64>, DbErr> {
    let rows = db.accounts(tx, ids, lock).await?;
    Ok(rows.into_iter().map(|(id, b, _)| (id, b)).collect())
}

/// The (user, key) pairs among `pairs` whose idempotency records are stored already.
pub(crate) async fn taken_keys(
    db: &Db,
    conn: &impl etx_db::ConnectionTrait,
    pairs: &[(&str, &str)],
) -> Result<HashSet<(String, String)>, DbErr> {
    let rows = db.taken_idempotency_keys(conn, pairs).await?;
    Ok(rows.into_iter().collect())
}
