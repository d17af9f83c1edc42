//! Argon2id hashing. Hashing is deliberately slow, so it runs on the blocking pool behind a
//! semaphore: a login storm queues instead of exhausting memory or starving other requests.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use std::sync::Arc;
use tokio::sync::Semaphore;

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

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names no known user so that
    /// unknown and known accounts take the same time.
    dummy_hash: Arc<String>,
}

impl PasswordHasher {
    pub fn new(p: HashParams, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let dummy = hash_with(&params, &crate::random_token())?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let params = self.params.clone();
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || hash_with(&params, &pw)).await?
    }

    /// Verifies `password` against a stored PHC string; `None` burns the same time and fails.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored
            .map(str::to_string)
            .unwrap_or_else(|| self.dummy_hash.as_str().to_string());
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_with(&pw, &hash))
            .await
            .unwrap_or(false);
        ok && known
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let h = a
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(h.to_string())
}

fn verify_with(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = PasswordHasher::new(
            HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap();
        let a = h.hash("Secret-Pass-1").await.unwrap();
        let b = h.hash("Secret-Pass-1").await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salts must differ");
        assert!(h.verify("Secret-Pass-1", Some(&a)).await);
        assert!(!h.verify("Secret-Pass-2", Some(&a)).await);
        assert!(!h.verify("Secret-Pass-1", None).await);
        assert!(!h.verify("x", Some("not a hash")).await);
    }
}
