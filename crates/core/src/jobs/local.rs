//! What job steps share: a scratch directory on local disk, copying a stored file into it,
//! and how a step ends when it does not succeed.

use super::run::Run;
use crate::Core;
use crate::error::CoreError;
use crate::files;
use etx_db::files::FileRow;
use etx_db::users::UserRow;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// A step's scratch directory under `data/tmp`, removed however the step ends.
pub(super) struct Scratch(pub PathBuf);

impl Scratch {
    pub async fn create(run: &Run) -> Result<Scratch, CoreError> {
        let dir = run.state.config.data_dir.join("tmp").join(format!(
            "job-{}-{}",
            run.job.id,
            uuid::Uuid::now_v7().simple()
        ));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| CoreError::Internal(e.into()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a stored file to a local path, streaming.
pub(super) async fn fetch(
    state: &Core,
    user: &UserRow,
    file: &FileRow,
    to: &Path,
) -> Result<(), CoreError> {
    let mut body = files::download(state, user, &file.id, None).await?.body;
    let io = |e: std::io::Error| CoreError::Internal(e.into());
    let mut local = tokio::fs::File::create(to).await.map_err(io)?;
    while let Some(chunk) = body.next().await {
        local
            .write_all(&chunk.map_err(CoreError::Internal)?)
            .await
            .map_err(io)?;
    }
    local.flush().await.map_err(io)?;
    Ok(())
}

/// The job's input file copied into a fresh scratch directory (removed when the returned
/// `Scratch` is dropped): the file's row and where its bytes are.
pub(super) async fn fetch_input(
    run: &Run,
    user: &UserRow,
) -> Result<(FileRow, Scratch, PathBuf), StepError> {
    let state = &run.state;
    let file = state
        .db
        .file(state.db.conn(), &user.id, &run.job.input_id)
        .await
        .map_err(|e| CoreError::Internal(e.into()))?
        .ok_or_else(|| StepError::Failed("the file was deleted before the job ran".into()))?;
    let scratch = Scratch::create(run).await?;
    let local = scratch.0.join("input");
    fetch(state, user, &file, &local).await?;
    Ok((file, scratch, local))
}

/// How a step ended when it did not succeed.
pub(super) enum StepError {
    Cancelled,
    Failed(String),
}

impl From<CoreError> for StepError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Internal(e) => {
                tracing::warn!(error = %e, "a job step failed");
                StepError::Failed("an internal error stopped this step; retry the job".into())
            }
            other => StepError::Failed(other.to_string()),
        }
    }
}
