//! The product's vocabulary: roles, usernames, emails, password rules and levels.
//! Nothing here performs IO, so every rule can be tested in isolation.

pub mod error;
pub mod level;
pub mod money;
pub mod role;
pub mod user;

pub use error::{FieldErrors, ValidationError};
pub use level::Level;
pub use money::{
    AmountError, Money, format_amount, parse_amount, parse_positive_amount, write_amount,
};
pub use role::Role;
pub use user::{Email, Password, Username, validate_new_password};
