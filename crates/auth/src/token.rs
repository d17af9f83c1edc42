//! Access tokens are short-lived HS256 JWTs naming a session (`sid`) that is checked on every
//! request; refresh and CSRF tokens are random strings of which only SHA-256 hashes are stored.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub aud: String,
    pub iss: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    pub access_ttl_secs: i64,
}

impl TokenKeys {
    /// Keys derived from the server secret; a separate derivation keeps the JWT key distinct
    /// from any other use of the same secret.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, access_ttl_secs: i64) -> Self {
        let key = Sha256::new()
            .chain_update(b"etx-jwt-v1")
            .chain_update(secret)
            .finalize();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss", "iat"]);
        validation.leeway = 5;
        TokenKeys {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            access_ttl_secs,
        }
    }

    pub fn issue_access(&self, user_id: &str, session_id: &str) -> (String, AccessClaims) {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat: now,
            exp: now + self.access_ttl_secs,
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail");
        (token, claims)
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// 256 random bits, URL-safe base64 without padding.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"test-secret", "etx", "etx-api", 900)
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let (t, c) = k.issue_access("u1", "s1");
        let back = k.verify_access(&t).unwrap();
        assert_eq!(back.sub, "u1");
        assert_eq!(back.sid, "s1");
        assert_eq!(back.jti, c.jti);
    }

    #[test]
    fn rejects_forged_alg_none_and_expired() {
        let k = keys();
        let (t, _) = k.issue_access("u1", "s1");
        // Signed with another key.
        let other = TokenKeys::new(b"other", "etx", "etx-api", 900);
        let (forged, _) = other.issue_access("u1", "s1");
        assert!(matches!(k.verify_access(&forged), Err(TokenError::Invalid)));
        // alg:none with the original payload.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = t.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            payload
        );
        assert!(matches!(k.verify_access(&none), Err(TokenError::Invalid)));
        // Expired.
        let expired = TokenKeys::new(b"test-secret", "etx", "etx-api", -60);
        let (old, _) = expired.issue_access("u1", "s1");
        assert!(matches!(k.verify_access(&old), Err(TokenError::Expired)));
        // Wrong audience.
        let aud = TokenKeys::new(b"test-secret", "etx", "other", 900);
        assert!(k.verify_access(&aud.issue_access("u1", "s1").0).is_err());
    }

    #[test]
    fn token_hash_is_stable_hex() {
        assert_eq!(hash_token("abc").len(), 64);
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(random_token(), random_token());
    }
}
