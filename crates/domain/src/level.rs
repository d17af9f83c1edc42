//! Gamification: experience points earned by real events decide the level.

use serde::Serialize;

pub const EXP_PER_LEVEL: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Level {
    pub level: i64,
    /// Experience gathered inside the current level.
    pub exp_into_level: i64,
    pub exp_for_next: i64,
}

impl Level {
    /// level = floor(exp / 100) + 1; negative experience cannot exist, so it counts as zero.
    pub fn from_exp(exp: i64) -> Self {
        let exp = exp.max(0);
        Level {
            level: exp / EXP_PER_LEVEL + 1,
            exp_into_level: exp % EXP_PER_LEVEL,
            exp_for_next: EXP_PER_LEVEL,
        }
    }

    /// Progress through the current level in whole percent, for the progress bar.
    pub fn percent(&self) -> i64 {
        self.exp_into_level * 100 / self.exp_for_next
    }
}

crate::names! {
    /// What earned experience points. The first four are paid once per user; the others once
    /// per transfer or trade, up to a daily cap.
    pub enum XpKind {
        EmailVerified = "email_verified",
        TwoFactorEnabled = "two_factor_enabled",
        FirstDeposit = "first_deposit",
        FirstTrade = "first_trade",
        Transfer = "transfer",
        TradeVolume = "trade_volume",
    }
}

impl XpKind {
    /// Paid once per user: these are the achievements shown on the home page.
    pub fn is_achievement(self) -> bool {
        matches!(
            self,
            XpKind::EmailVerified
                | XpKind::TwoFactorEnabled
                | XpKind::FirstDeposit
                | XpKind::FirstTrade
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_follows_floor_formula() {
        assert_eq!(Level::from_exp(0).level, 1);
        assert_eq!(Level::from_exp(99).level, 1);
        assert_eq!(Level::from_exp(100).level, 2);
        assert_eq!(Level::from_exp(250).level, 3);
        assert_eq!(Level::from_exp(250).percent(), 50);
        assert_eq!(Level::from_exp(-5).level, 1);
    }
}
