//! Credentials and tokens: Argon2id password hashing (always off the async executor), signed
//! access tokens, opaque refresh/CSRF tokens stored only as hashes, and role policy.

pub mod password;
pub mod token;
pub mod totp;

pub use password::{HashParams, PasswordHasher};
pub use token::{AccessClaims, TokenError, TokenKeys, hash_token, random_token};
