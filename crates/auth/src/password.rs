//! Argon2id hashing on a small pool of dedicated threads. Each thread keeps one reusable block
//! of Argon2 working memory, so a login storm costs `concurrency × memory` and no more: memory
//! is neither re-allocated per login nor stranded in allocator arenas of short-lived threads,
//! and async workers are never blocked.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use rand::RngCore;
use std::sync::Arc;
use tokio::sync::{Semaphore, oneshot};

#[derive(Debug, Clone, Copy)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        HashParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

const OUTPUT_LEN: usize = 32;
/// PHC strings use standard base64 without padding.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

enum Job {
    Hash(String, oneshot::Sender<anyhow::Result<String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: crossbeam_channel::Sender<Job>,
    /// Bounds queued plus running jobs to the number of worker threads.
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names no known user so that
    /// unknown and known accounts take the same time.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub fn new(p: HashParams, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(OUTPUT_LEN))
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let workers = concurrency.max(1);
        // Several workers wait on one queue without a lock, each with its own idle timeout.
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..workers {
            let rx = rx.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("etx-argon2-{i}"))
                .spawn(move || worker(&rx, &params))?;
        }
        let dummy = hash_with(&params, &crate::random_token(), &mut Vec::new())?;
        Ok(PasswordHasher {
            jobs: tx,
            permits: Arc::new(Semaphore::new(workers)),
            dummy_hash: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Hash(password.to_string(), reply))
            .map_err(|_| anyhow::anyhow!("password hashing threads have stopped"))?;
        rx.await?
    }

    /// Verifies `password` against a stored PHC string; `None` burns the same time and fails.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored.unwrap_or(self.dummy_hash.as_str()).to_string();
        let (reply, rx) = oneshot::channel();
        if self
            .jobs
            .send(Job::Verify(password.to_string(), hash, reply))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false) && known
    }
}

/// How long a worker keeps its Argon2 memory after its last job: back-to-back logins reuse it,
/// a quiet server gives it back.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

fn worker(rx: &crossbeam_channel::Receiver<Job>, params: &Params) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let next = rx.recv_timeout(IDLE_RELEASE);
        match next {
            Ok(Job::Hash(pw, reply)) => {
                let _ = reply.send(hash_with(params, &pw, &mut memory));
            }
            Ok(Job::Verify(pw, stored, reply)) => {
                let _ = reply.send(verify_with(&pw, &stored, &mut memory));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if !memory.is_empty() {
                    memory = Vec::new();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn compute(
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> anyhow::Result<()> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

fn hash_with(params: &Params, password: &str, memory: &mut Vec<Block>) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; OUTPUT_LEN];
    compute(params, password, &salt, &mut out, memory)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        B64.encode(salt),
        B64.encode(out)
    ))
}

fn verify_with(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(mut params) = Params::try_from(&parsed) else {
        return false;
    };
    // The stored string carries its own cost parameters, so old hashes keep verifying after the
    // configured cost changes.
    let expected = expected.as_bytes();
    let Ok(p) = Params::new(
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        Some(expected.len()),
    ) else {
        return false;
    };
    params = p;
    let mut out = vec![0u8; expected.len()];
    if compute(&params, password, salt.as_ref(), &mut out, memory).is_err() {
        return false;
    }
    out.iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PasswordHasher {
        PasswordHasher::new(
            HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = small();
        let a = h.hash("Secret-Pass-1").await.unwrap();
        let b = h.hash("Secret-Pass-1").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_ne!(a, b, "salts must differ");
        assert!(h.verify("Secret-Pass-1", Some(&a)).await);
        assert!(!h.verify("Secret-Pass-2", Some(&a)).await);
        assert!(!h.verify("Secret-Pass-1", None).await);
        assert!(!h.verify("x", Some("not a hash")).await);
    }

    #[tokio::test]
    async fn verifies_hashes_made_by_the_reference_implementation_and_other_costs() {
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(256, 2, 1, None).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(b"Other-Cost-9", b"0123456789abcdef")
            .unwrap()
            .to_string();
        let h = small();
        assert!(h.verify("Other-Cost-9", Some(&reference)).await);
        assert!(!h.verify("Other-Cost-8", Some(&reference)).await);
        // And ours verify with the reference implementation.
        use argon2::password_hash::PasswordVerifier as _;
        let ours = h.hash("Round-Trip-7").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Round-Trip-7", &parsed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn many_concurrent_requests_all_complete() {
        let h = small();
        let stored = h.hash("Busy-Pass-1").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let (h, s) = (h.clone(), stored.clone());
            tasks.push(tokio::spawn(async move {
                h.verify(if i % 2 == 0 { "Busy-Pass-1" } else { "nope" }, Some(&s))
                    .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), i % 2 == 0);
        }
    }
}
