//! Malware scanning of uploads through clamd's `INSTREAM` command: the bytes go to clamd as
//! they arrive (each chunk as a 4-byte big-endian length and the data, then a zero length),
//! and clamd answers `stream: OK` or `stream: <signature> FOUND`. A file becomes visible only
//! after clamd said OK; a scanner that cannot be reached refuses the upload rather than let an
//! unscanned file through.

use crate::error::CoreError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long clamd may take to accept a connection, a chunk or give its verdict.
const SCANNER_WAIT: Duration = Duration::from_secs(30);
/// clamd answers one line; longer answers are cut here.
const REPLY_LIMIT: usize = 1024;

/// One file's scan in progress.
pub struct Scan {
    conn: TcpStream,
    address: String,
}

fn unreachable(address: &str, e: impl std::fmt::Display) -> CoreError {
    tracing::warn!(error = %e, address, "the malware scanner failed");
    CoreError::Unavailable(
        "the malware scanner cannot be reached; try the upload again later".into(),
    )
}

impl Scan {
    pub async fn start(address: &str) -> Result<Scan, CoreError> {
        let connect = tokio::time::timeout(SCANNER_WAIT, TcpStream::connect(address));
        let mut conn = connect
            .await
            .map_err(|e| unreachable(address, e))?
            .map_err(|e| unreachable(address, e))?;
        conn.write_all(b"zINSTREAM\0")
            .await
            .map_err(|e| unreachable(address, e))?;
        Ok(Scan {
            conn,
            address: address.to_string(),
        })
    }

    /// Sends a chunk. A clamd that stops reading (its stream limit) is asked for its answer.
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<(), CoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(chunk.len())
            .map_err(|_| CoreError::BadRequest("chunk too large".into()))?;
        let sent = tokio::time::timeout(SCANNER_WAIT, async {
            self.conn.write_all(&len.to_be_bytes()).await?;
            self.conn.write_all(chunk).await
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => match self.reply().await {
                Ok(answer) => Err(verdict_error(&answer)),
                Err(_) => Err(unreachable(&self.address, e)),
            },
            Err(e) => Err(unreachable(&self.address, e)),
        }
    }

    /// Ends the stream and reads the verdict: `Ok` when clean.
    pub async fn finish(mut self) -> Result<(), CoreError> {
        let sent = tokio::time::timeout(SCANNER_WAIT, self.conn.write_all(&[0, 0, 0, 0])).await;
        if let Err(e) = sent {
            return Err(unreachable(&self.address, e));
        }
        let answer = self.reply().await?;
        if answer.ends_with(": OK") {
            Ok(())
        } else {
            Err(verdict_error(&answer))
        }
    }

    async fn reply(&mut self) -> Result<String, CoreError> {
        let mut buf = Vec::with_capacity(64);
        let read = tokio::time::timeout(SCANNER_WAIT, async {
            let mut byte = [0u8; 1];
            while buf.len() < REPLY_LIMIT {
                match self.conn.read(&mut byte).await? {
                    0 => break,
                    _ if byte[0] == 0 || byte[0] == b'\n' => break,
                    _ => buf.push(byte[0]),
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        match read {
            Ok(Ok(())) if !buf.is_empty() => Ok(String::from_utf8_lossy(&buf).trim().to_string()),
            Ok(Ok(())) => Err(unreachable(&self.address, "no answer")),
            Ok(Err(e)) => Err(unreachable(&self.address, e)),
            Err(e) => Err(unreachable(&self.address, e)),
        }
    }
}

/// What a non-OK answer means for the user.
fn verdict_error(answer: &str) -> CoreError {
    if let Some(found) = answer.strip_suffix(" FOUND") {
        let signature = found.rsplit(": ").next().unwrap_or(found).trim();
        return CoreError::field(
            "file",
            &format!("was refused: the malware scanner found {signature}"),
        );
    }
    if answer.contains("size limit exceeded") {
        return CoreError::PayloadTooLarge(
            "the file is larger than the malware scanner accepts".into(),
        );
    }
    tracing::warn!(answer, "the malware scanner answered with an error");
    CoreError::Unavailable("the malware scanner could not scan the file; try again later".into())
}

#[cfg(test)]
mod tests {
    use super::verdict_error;
    use crate::error::CoreError;

    #[test]
    fn answers_become_errors_a_user_can_act_on() {
        match verdict_error("stream: Eicar-Test-Signature FOUND") {
            CoreError::Validation { fields, .. } => assert_eq!(
                fields["file"],
                "was refused: the malware scanner found Eicar-Test-Signature"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict_error("INSTREAM size limit exceeded. ERROR"),
            CoreError::PayloadTooLarge(_)
        ));
        assert!(matches!(
            verdict_error("stream: lstat() failed. ERROR"),
            CoreError::Unavailable(_)
        ));
    }
}
