//! Shapes built from database rows that both the JSON API and the pages show: users here,
//! the rest in the submodules. Secrets (password hash, lockout counters) are not fields here,
//! so no handler can leak them by accident.

pub mod audit;
pub mod mail;
pub mod market;
pub mod wallet;

use etx_db::users::UserRow;
use etx_domain::Level;
use serde::Serialize;
use utoipa::ToSchema;

pub use etx_core::time::{rfc3339, write_rfc3339};

pub fn avatar_url(u: &UserRow) -> Option<String> {
    u.avatar_key
        .as_ref()
        .map(|_| format!("/api/users/{}/avatar?v={}", u.id, u.updated_at))
}

/// The full record: for the user themself and for staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    #[schema(example = "user")]
    pub role: String,
    pub avatar_url: Option<String>,
    pub level: i64,
    pub exp: i64,
    /// Experience inside the current level and the amount that completes it.
    pub exp_into_level: i64,
    pub exp_for_next_level: i64,
    pub is_active: bool,
    pub is_verified: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UserRow> for UserView {
    fn from(u: &UserRow) -> Self {
        let l = Level::from_exp(u.exp);
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            avatar_url: avatar_url(u),
            level: l.level,
            exp: u.exp,
            exp_into_level: l.exp_into_level,
            exp_for_next_level: l.exp_for_next,
            is_active: u.is_active,
            is_verified: u.is_verified,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// What any signed-in user may see of another.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicUserView {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub role: String,
    pub avatar_url: Option<String>,
    pub level: i64,
    pub exp: i64,
}

impl From<&UserRow> for PublicUserView {
    fn from(u: &UserRow) -> Self {
        PublicUserView {
            id: u.id.clone(),
            username: u.username.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            avatar_url: avatar_url(u),
            level: Level::from_exp(u.exp).level,
            exp: u.exp,
        }
    }
}
