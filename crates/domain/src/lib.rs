//! The product's vocabulary: roles, usernames, emails, password rules, levels, amounts and
//! ledger account kinds.
//! Nothing here performs IO, so every rule can be tested in isolation.

pub mod account;
pub mod audit;
pub mod error;
pub mod job;
pub mod level;
pub mod money;
#[macro_use]
pub mod names;
pub mod payment;
pub mod role;
pub mod trading;
pub mod user;

pub use account::{AccountKind, EntryKind, TxKind};
pub use audit::AuditAction;
pub use error::{FieldErrors, ValidationError};
pub use job::{JobKind, JobStatus, StepStatus};
pub use level::{Level, XpKind};
pub use money::{AmountError, format_amount, parse_amount, parse_positive_amount, write_amount};
pub use payment::{CreditState, DepositStatus, WithdrawalStatus};
pub use role::Role;
pub use trading::Side;
pub use user::{
    Email, MIN_PASSWORD_SCORE, Password, Strength, Username, password_strength,
    validate_new_password,
};
