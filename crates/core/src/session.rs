//! Who is acting: a signed-in session, and where a request came from.

use crate::error::CoreError;
use etx_db::users::UserRow;
use etx_domain::Role;
use std::net::IpAddr;

/// A live session and its user, checked against the database on every request.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: UserRow,
    pub role: Role,
    pub session_id: String,
}

impl Auth {
    pub fn require_staff(&self) -> Result<(), CoreError> {
        if self.role.is_staff() {
            Ok(())
        } else {
            Err(CoreError::Forbidden("staff only".into()))
        }
    }

    pub fn require_admin(&self) -> Result<(), CoreError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(CoreError::Forbidden("admins only".into()))
        }
    }
}

/// Client address and user agent, for session records and audit.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
