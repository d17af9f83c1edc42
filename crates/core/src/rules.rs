//! Thresholds from the `[deposits]`, `[withdrawals]`, `[aml]` and `[admin]` settings, and the AML
//! rules that decide whether an operation waits for review.

use crate::Core;
use crate::address::Network;
use crate::ledger::AssetConfig;
use crate::time::rfc3339;
use etx_db::payments::FlagRow;
use etx_db::users::UserRow;
use etx_db::{Batch, Db, DbErr, now_micros};
use etx_domain::{format_amount, parse_amount, parse_positive_amount};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) const MICROS_PER_MINUTE: i64 = 60_000_000;

pub(crate) const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

/// Thresholds from the `[deposits]`, `[withdrawals]` and `[aml]` settings, in cents.
#[derive(Debug, Clone)]
pub struct Rules {
    pub deposit_min_cents: i64,
    pub deposit_max_cents: i64,
    pub deposit_ttl_micros: i64,
    pub pay_currencies: Vec<String>,
    pub withdraw_min_cents: i64,
    pub withdraw_max_cents: i64,
    pub withdraw_daily_cap_cents: i64,
    /// Hundredths of a percent.
    pub fee_basis_points: i64,
    pub two_approvals_cents: i64,
    /// Per withdrawable asset: its address family and smallest fee in minor units.
    pub networks: HashMap<String, (Network, i64)>,
    pub aml_large_cents: i64,
    pub aml_max_operations: i64,
    pub aml_window_micros: i64,
    pub aml_young_micros: i64,
    pub aml_young_cents: i64,
    /// Admin adjustments worth this much or more need a second admin.
    pub adjust_approval_cents: i64,
}

pub(crate) fn usd_setting(v: &str, name: &str) -> anyhow::Result<i64> {
    parse_positive_amount(v, 2).map_err(|_| anyhow::anyhow!("invalid setting {name}: {v:?}"))
}

impl Rules {
    /// The rules on one operation's size: a large amount, or a young account moving more than
    /// its threshold. The rule's name and what it saw, for the review queue.
    pub fn amount_rule(
        &self,
        usd_cents: i64,
        account_age_micros: i64,
    ) -> Option<(&'static str, Value)> {
        let usd = |c: i64| format_amount(c, 2);
        if usd_cents >= self.aml_large_cents {
            return Some((
                "large_amount",
                json!({"usd_value": usd(usd_cents), "threshold_usd": usd(self.aml_large_cents)}),
            ));
        }
        if account_age_micros < self.aml_young_micros && usd_cents >= self.aml_young_cents {
            return Some((
                "young_account",
                json!({
                    "usd_value": usd(usd_cents),
                    "threshold_usd": usd(self.aml_young_cents),
                    "account_age_hours": account_age_micros / 3_600_000_000,
                }),
            ));
        }
        None
    }

    pub fn from_config(
        asset_settings: &[AssetConfig],
        d: &DepositConfig,
        w: &WithdrawalConfig,
        a: &AmlConfig,
        admin: &AdminConfig,
    ) -> anyhow::Result<Rules> {
        let assets = crate::ledger::Assets::from_config(asset_settings)?;
        if d.provider == PaymentProvider::Nowpayments
            && (d.nowpayments_api_key.as_deref().is_none_or(str::is_empty)
                || d.ipn_secret.as_deref().is_none_or(str::is_empty))
        {
            anyhow::bail!(
                "invalid setting deposits: nowpayments needs nowpayments_api_key and ipn_secret"
            );
        }
        if !(1..=1440).contains(&d.ttl_minutes) {
            anyhow::bail!("invalid setting deposits.ttl_minutes: 1..=1440");
        }
        let mut networks = HashMap::new();
        for a in asset_settings {
            let Some(n) = &a.network else { continue };
            let code = a.code.trim().to_ascii_uppercase();
            let network = Network::parse(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid setting assets.network for {code}: bitcoin, litecoin, evm or solana"
                )
            })?;
            let scale = assets.get(&code).map_or(0, |x| x.scale);
            let fee = match &a.withdrawal_min_fee {
                Some(f) => parse_amount(f, scale)
                    .ok()
                    .filter(|f| *f >= 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("invalid setting assets.withdrawal_min_fee for {code}")
                    })?,
                None => 0,
            };
            networks.insert(code, (network, fee));
        }
        let mut pay_currencies = Vec::new();
        for p in &d.pay_currencies {
            let code = p.trim().to_ascii_uppercase();
            if assets.get(&code).is_none() || code == "USD" {
                anyhow::bail!(
                    "invalid setting deposits.pay_currencies: {code} is not a configured crypto asset"
                );
            }
            if !networks.contains_key(&code) {
                anyhow::bail!("invalid setting deposits.pay_currencies: {code} has no network");
            }
            pay_currencies.push(code);
        }
        let rules = Rules {
            deposit_min_cents: usd_setting(&d.min_usd, "deposits.min_usd")?,
            deposit_max_cents: usd_setting(&d.max_usd, "deposits.max_usd")?,
            deposit_ttl_micros: i64::from(d.ttl_minutes) * MICROS_PER_MINUTE,
            pay_currencies,
            withdraw_min_cents: usd_setting(&w.min_usd, "withdrawals.min_usd")?,
            withdraw_max_cents: usd_setting(&w.max_usd, "withdrawals.max_usd")?,
            withdraw_daily_cap_cents: usd_setting(&w.daily_cap_usd, "withdrawals.daily_cap_usd")?,
            fee_basis_points: parse_amount(&w.fee_percent, 2)
                .ok()
                .filter(|p| (0..=10_000).contains(p))
                .ok_or_else(|| anyhow::anyhow!("invalid setting withdrawals.fee_percent"))?,
            two_approvals_cents: usd_setting(
                &w.two_approvals_from_usd,
                "withdrawals.two_approvals_from_usd",
            )?,
            networks,
            aml_large_cents: usd_setting(&a.large_amount_usd, "aml.large_amount_usd")?,
            aml_max_operations: i64::from(a.max_operations_in_window),
            aml_window_micros: i64::from(a.window_minutes.max(1)) * MICROS_PER_MINUTE,
            aml_young_micros: i64::from(a.young_account_days) * 86_400_000_000,
            aml_young_cents: usd_setting(&a.young_account_usd, "aml.young_account_usd")?,
            adjust_approval_cents: usd_setting(
                &admin.adjust_approval_from_usd,
                "admin.adjust_approval_from_usd",
            )?,
        };
        if rules.deposit_min_cents > rules.deposit_max_cents
            || rules.withdraw_min_cents > rules.withdraw_max_cents
        {
            anyhow::bail!("invalid setting deposits/withdrawals: min_usd above max_usd");
        }
        Ok(rules)
    }
}

/// The AML rule an operation worth `usd_cents` by `user` trips, if any, with its details.
/// The velocity rule counts committed operations, so the caller must hold a lock that
/// serialises this user's operations (the wallet and daily-total rows it is changing).
pub(crate) async fn aml_rule(
    state: &Core,
    tx: &impl etx_db::ConnectionTrait,
    user: &UserRow,
    usd_cents: i64,
) -> Result<Option<(&'static str, Value)>, DbErr> {
    if let Some(rule) = amount_rule(state, user, usd_cents) {
        return Ok(Some(rule));
    }
    let r = &state.rules;
    if r.aml_max_operations == 0 {
        return Ok(None);
    }
    let recent = state
        .db
        .operations_since(
            tx,
            &[&user.id],
            now_micros() - r.aml_window_micros,
            r.aml_max_operations,
        )
        .await?
        .first()
        .map_or(0, |(_, n)| *n);
    Ok(velocity_rule(r, recent))
}

/// The rules that look at the operation alone (its value, the account's age): decided before
/// any lock is taken.
pub(crate) fn amount_rule(
    state: &Core,
    user: &UserRow,
    usd_cents: i64,
) -> Option<(&'static str, Value)> {
    state
        .rules
        .amount_rule(usd_cents, now_micros() - user.created_at)
}

/// The velocity rule, given how many operations the user already made in the window (counted
/// up to the limit, so `operations_in_window` is at least the number shown).
pub(crate) fn velocity_rule(r: &Rules, recent: i64) -> Option<(&'static str, Value)> {
    if r.aml_max_operations == 0 || recent < r.aml_max_operations {
        return None;
    }
    Some((
        "velocity",
        json!({
            "operations_in_window": recent + 1,
            "max_operations": r.aml_max_operations,
            "window_minutes": r.aml_window_micros / MICROS_PER_MINUTE,
        }),
    ))
}

pub(crate) fn queue_flag(
    batch: &mut Batch,
    user_id: &str,
    subject_type: &str,
    subject_id: &str,
    rule: &str,
    details: &Value,
) {
    Db::queue_flag(
        batch,
        &uuid::Uuid::now_v7().to_string(),
        user_id,
        subject_type,
        subject_id,
        rule,
        &details.to_string(),
    );
}

/// Who takes deposit payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProvider {
    /// Dev: payments are completed from the UI or the CLI.
    Sandbox,
    Nowpayments,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DepositConfig {
    pub provider: PaymentProvider,
    pub ttl_minutes: u32,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub min_usd: String,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub max_usd: String,
    pub pay_currencies: Vec<String>,
    /// Deposit orders one user may open per hour (each may cost a call to the provider).
    pub orders_per_user_per_hour: u32,
    /// Shared with the provider to sign its notifications. Empty: derived from the server
    /// secret (enough for the sandbox; NOWPayments needs the one from its dashboard).
    #[serde(default)]
    pub ipn_secret: Option<String>,
    pub nowpayments_url: String,
    #[serde(default)]
    pub nowpayments_api_key: Option<String>,
}

impl std::fmt::Debug for DepositConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepositConfig")
            .field("provider", &self.provider)
            .field("nowpayments_url", &self.nowpayments_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithdrawalConfig {
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub min_usd: String,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub max_usd: String,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub daily_cap_usd: String,
    /// Percent of the amount, before the per-asset minimum applies.
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub fee_percent: String,
    /// At or above this USD value a withdrawal needs two approvals.
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub two_approvals_from_usd: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmlConfig {
    /// One operation worth this much or more is held for review.
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub large_amount_usd: String,
    /// More than this many operations within the window: the next is held (0: rule off).
    pub max_operations_in_window: u32,
    pub window_minutes: u32,
    /// An account younger than this moving at least `young_account_usd` is held.
    pub young_account_days: u32,
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub young_account_usd: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminConfig {
    /// Balance adjustments worth this much (USD, at the current price) or more wait for a
    /// second admin's approval.
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub adjust_approval_from_usd: String,
    /// How long the statistics page's charts, volume and ledger totals are reused before they
    /// are read again (0: every request).
    #[serde(default = "stats_cache_ms")]
    pub stats_cache_ms: u64,
}

fn stats_cache_ms() -> u64 {
    5000
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            adjust_approval_from_usd: "1000".into(),
            stats_cache_ms: stats_cache_ms(),
        }
    }
}

/// An operation an AML rule flagged, as the staff API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagView {
    pub id: String,
    /// Whose operation it is.
    pub user: FlagUser,
    /// `deposit`, `withdrawal` or `transfer`.
    pub subject_type: String,
    pub subject_id: String,
    /// The rule that fired.
    pub rule: String,
    /// What the rule saw (its figures), as the rule recorded them.
    pub details: Value,
    /// `open`, `released` or `rejected`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<String>,
    pub created_at: String,
}

/// The owner of a flagged operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagUser {
    pub id: String,
    pub username: Option<String>,
}

impl FlagView {
    pub fn new(f: &FlagRow) -> Self {
        FlagView {
            id: f.id.clone(),
            user: FlagUser {
                id: f.user_id.clone(),
                username: f.username.clone(),
            },
            subject_type: f.subject_type.clone(),
            subject_id: f.subject_id.clone(),
            rule: f.rule.clone(),
            details: serde_json::from_str::<Value>(&f.details).unwrap_or(Value::Null),
            status: f.status.clone(),
            decided_by: f.decided_by.clone(),
            decision_reason: f.decision_reason.clone(),
            decided_at: f.decided_at.map(rfc3339),
            created_at: rfc3339(f.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rules_with(edit: impl FnOnce(&mut Config)) -> anyhow::Result<Rules> {
        let mut c = Config::defaults();
        edit(&mut c);
        Rules::from_config(&c.assets, &c.deposits, &c.withdrawals, &c.aml, &c.admin)
    }

    fn rules() -> Rules {
        rules_with(|c| {
            c.aml.large_amount_usd = "10000".into();
            c.aml.young_account_days = 7;
            c.aml.young_account_usd = "1000".into();
            c.aml.max_operations_in_window = 3;
            c.aml.window_minutes = 10;
            c.withdrawals.fee_percent = "0.5".into();
        })
        .unwrap()
    }

    #[test]
    fn settings_become_cents_and_basis_points() {
        let r = rules();
        assert_eq!(r.aml_large_cents, 1_000_000);
        assert_eq!(r.aml_young_cents, 100_000);
        assert_eq!(r.aml_young_micros, 7 * 86_400_000_000);
        assert_eq!(r.aml_window_micros, 10 * MICROS_PER_MINUTE);
        assert_eq!(r.fee_basis_points, 50);
        assert!(r.deposit_min_cents <= r.deposit_max_cents);
    }

    #[test]
    fn bad_thresholds_are_refused_with_their_name() {
        let e = rules_with(|c| c.withdrawals.fee_percent = "101".into()).unwrap_err();
        assert!(e.to_string().contains("withdrawals.fee_percent"), "{e}");
        let e = rules_with(|c| c.deposits.min_usd = "x".into()).unwrap_err();
        assert!(e.to_string().contains("deposits.min_usd"), "{e}");
        let e = rules_with(|c| {
            c.withdrawals.min_usd = "500".into();
            c.withdrawals.max_usd = "100".into();
        })
        .unwrap_err();
        assert!(e.to_string().contains("min_usd above max_usd"), "{e}");
        let e = rules_with(|c| {
            c.deposits.provider = PaymentProvider::Nowpayments;
            c.deposits.ipn_secret = None;
        })
        .unwrap_err();
        assert!(e.to_string().contains("ipn_secret"), "{e}");
        let e = rules_with(|c| c.deposits.pay_currencies = vec!["USD".into()]).unwrap_err();
        assert!(e.to_string().contains("pay_currencies"), "{e}");
    }

    #[test]
    fn large_amounts_are_held_at_the_threshold_not_below() {
        let r = rules();
        let old = 365 * 86_400_000_000;
        assert!(r.amount_rule(999_999, old).is_none());
        let (name, seen) = r.amount_rule(1_000_000, old).unwrap();
        assert_eq!(name, "large_amount");
        assert_eq!(seen["usd_value"], "10000.00");
        assert_eq!(seen["threshold_usd"], "10000.00");
    }

    #[test]
    fn young_accounts_are_held_above_their_own_threshold() {
        let r = rules();
        let day = 86_400_000_000;
        assert!(r.amount_rule(99_999, day).is_none());
        let (name, seen) = r.amount_rule(100_000, 2 * day).unwrap();
        assert_eq!(name, "young_account");
        assert_eq!(seen["account_age_hours"], 48);
        // Past the age the same amount passes; a large one is named large, whatever the age.
        assert!(r.amount_rule(100_000, 7 * day).is_none());
        assert_eq!(r.amount_rule(1_000_000, day).unwrap().0, "large_amount");
    }

    #[test]
    fn velocity_counts_up_to_the_limit_and_can_be_off() {
        let r = rules();
        assert!(velocity_rule(&r, 2).is_none());
        let (name, seen) = velocity_rule(&r, 3).unwrap();
        assert_eq!(name, "velocity");
        assert_eq!(seen["operations_in_window"], 4);
        assert_eq!(seen["max_operations"], 3);
        assert_eq!(seen["window_minutes"], 10);
        let off = rules_with(|c| c.aml.max_operations_in_window = 0).unwrap();
        assert!(velocity_rule(&off, 1_000).is_none());
    }
}
