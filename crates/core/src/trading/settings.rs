//! Staff settings per pair: a halt (no new orders, no fills of resting ones; cancels still
//! work), and fee and spread overrides of the `[trading]` defaults. Every instance keeps them
//! in memory, reloaded with the matcher's sync (`[trading] sync_ms`); the instance that saves a
//! change applies it at once. Also the platform's inventory: its position and fees per asset.

use super::{Pair, TradingConfig};
use crate::ledger::{PRICE_ONE, cents_of};
use crate::session::Auth;
use crate::{Core, CoreError};
use etx_db::now_micros;
use etx_db::pairs::PairSettingRow;
use etx_domain::{AccountKind, AuditAction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairSetting {
    pub halted: bool,
    pub fee_bps: Option<u32>,
    pub spread_bps: Option<u32>,
}

/// The settings by pair name (`BTC/USD`); a pair not listed trades on the defaults.
#[derive(Default)]
pub struct PairSettings(RwLock<HashMap<String, PairSetting>>);

impl PairSettings {
    pub fn get(&self, pair: &str) -> PairSetting {
        self.0
            .read()
            .expect("pair settings lock")
            .get(pair)
            .cloned()
            .unwrap_or_default()
    }

    fn replace(&self, rows: &[PairSettingRow]) {
        let map = rows
            .iter()
            .map(|r| (r.pair.clone(), setting_of(r)))
            .collect();
        *self.0.write().expect("pair settings lock") = map;
    }

    fn set(&self, pair: &str, s: PairSetting) {
        self.0
            .write()
            .expect("pair settings lock")
            .insert(pair.to_string(), s);
    }
}

fn setting_of(r: &PairSettingRow) -> PairSetting {
    PairSetting {
        halted: r.halted,
        fee_bps: r.fee_bps.and_then(|v| u32::try_from(v).ok()),
        spread_bps: r.spread_bps.and_then(|v| u32::try_from(v).ok()),
    }
}

/// The configuration a pair trades on now: the defaults with its overrides; a halted pair is
/// a 503 that says so. Settings are kept per asset against USD, and every trade goes through
/// USD: `USD/BTC` is `BTC/USD` the other way, and `ETH/BTC` is halted when either leg is and
/// pays the higher of the two legs' fees and spreads.
pub fn config_for<'a>(
    state: &'a Core,
    pair: &Pair<'_>,
) -> Result<Cow<'a, TradingConfig>, CoreError> {
    let cfg = &state.config.trading;
    let (mut fee, mut spread) = (None::<u32>, None::<u32>);
    for asset in [pair.base, pair.quote] {
        if asset.code == "USD" {
            continue;
        }
        let leg = format!("{}/USD", asset.code);
        let s = state.pairs.get(&leg);
        if s.halted {
            return Err(CoreError::Unavailable(format!(
                "trading {leg} is halted by the platform: try again later"
            )));
        }
        let f = s.fee_bps.unwrap_or(cfg.fee_bps);
        let p = s.spread_bps.unwrap_or(cfg.spread_bps);
        fee = Some(fee.map_or(f, |x| x.max(f)));
        spread = Some(spread.map_or(p, |x| x.max(p)));
    }
    let (fee, spread) = (fee.unwrap_or(cfg.fee_bps), spread.unwrap_or(cfg.spread_bps));
    if fee == cfg.fee_bps && spread == cfg.spread_bps {
        return Ok(Cow::Borrowed(cfg));
    }
    let mut c = cfg.clone();
    c.fee_bps = fee;
    c.spread_bps = spread;
    Ok(Cow::Owned(c))
}

/// Reloads every pair's settings from the database.
pub async fn sync(state: &Core) -> Result<(), etx_db::DbErr> {
    let rows = state.db.pair_settings().await?;
    state.pairs.replace(&rows);
    Ok(())
}

/// `PUT /api/admin/trading/pairs/{pair}`: every field is set as given (`null` for the default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSettingRequest {
    pub halted: bool,
    #[serde(default)]
    pub fee_bps: Option<i64>,
    #[serde(default)]
    pub spread_bps: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairSettingView {
    pub pair: String,
    pub halted: bool,
    /// The override, or null for the default.
    pub fee_bps: Option<i64>,
    pub spread_bps: Option<i64>,
    /// What the pair trades at now.
    pub effective_fee_bps: u32,
    pub effective_spread_bps: u32,
    pub updated_at: Option<String>,
}

fn view(state: &Core, pair: &str, r: Option<&PairSettingRow>) -> PairSettingView {
    let s = r.map(setting_of).unwrap_or_default();
    PairSettingView {
        pair: pair.to_string(),
        halted: s.halted,
        fee_bps: s.fee_bps.map(i64::from),
        spread_bps: s.spread_bps.map(i64::from),
        effective_fee_bps: s.fee_bps.unwrap_or(state.config.trading.fee_bps),
        effective_spread_bps: s.spread_bps.unwrap_or(state.config.trading.spread_bps),
        updated_at: r.map(|r| crate::time::rfc3339(r.updated_at)),
    }
}

/// Every asset against USD, then any other pair that has settings.
pub async fn list(state: &Core) -> Result<Vec<PairSettingView>, CoreError> {
    let rows = state.db.pair_settings().await?;
    let mut out: Vec<PairSettingView> = state
        .assets
        .iter()
        .filter(|a| a.code != "USD")
        .map(|a| {
            let name = format!("{}/USD", a.code);
            view(state, &name, rows.iter().find(|r| r.pair == name))
        })
        .collect();
    for r in &rows {
        if !out.iter().any(|v| v.pair == r.pair) {
            out.push(view(state, &r.pair, Some(r)));
        }
    }
    Ok(out)
}

/// Saves a pair's settings (admins), with an audit record, and applies them here at once.
pub async fn save(
    state: &Core,
    auth: &Auth,
    pair: &str,
    req: &PairSettingRequest,
) -> Result<PairSettingView, CoreError> {
    auth.require_admin()?;
    let pair = Pair::parse(state, &pair.replace('-', "/"))?;
    for (field, v) in [("fee_bps", req.fee_bps), ("spread_bps", req.spread_bps)] {
        if v.is_some_and(|v| !(0..10_000).contains(&v)) {
            return Err(CoreError::field(
                field,
                "must be between 0 and 9999 (or null)",
            ));
        }
    }
    let row = PairSettingRow {
        pair: pair.name(),
        halted: req.halted,
        fee_bps: req.fee_bps,
        spread_bps: req.spread_bps,
        updated_by: Some(auth.user.id.clone()),
        updated_at: now_micros(),
    };
    let tx = state.db.begin_write().await?;
    state.db.save_pair_setting(&tx, &row).await?;
    crate::audit::Event::new(Some(&auth.user.id), AuditAction::TradingSettings)
        .target("pair", &row.pair)
        .details(json!({
            "halted": row.halted,
            "fee_bps": row.fee_bps,
            "spread_bps": row.spread_bps,
        }))
        .write(&state.db, &tx)
        .await?;
    tx.commit().await?;
    state.pairs.set(&row.pair, setting_of(&row));
    tracing::info!(pair = %row.pair, halted = row.halted, "pair settings changed");
    Ok(view(state, &row.pair, Some(&row)))
}

/// The platform's side of trading in one asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryView {
    pub asset: String,
    /// What users sold to the platform minus what they bought from it (negative: the
    /// platform is short).
    pub position: String,
    /// The position's value at the live price, USD; null without a price.
    pub position_usd: Option<String>,
    /// Trading fees earned in this asset.
    pub fees: String,
}

pub async fn inventory(state: &Core) -> Result<Vec<InventoryView>, CoreError> {
    let mut by_asset: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (kind, asset, sum) in state.db.trading_positions().await? {
        let e = by_asset.entry(asset).or_default();
        if kind == AccountKind::Fees.as_str() {
            e.1 += sum;
        } else {
            e.0 += sum;
        }
    }
    Ok(by_asset
        .into_iter()
        .map(|(asset, (position, fees))| {
            let scale = state.assets.get(&asset).map_or(2, |a| a.scale);
            let price = if asset == "USD" {
                Some(PRICE_ONE)
            } else {
                state.market.quote(&asset).map(|q| i128::from(q.price))
            };
            InventoryView {
                position: etx_domain::format_amount(position, scale),
                position_usd: price.map(|p| {
                    let cents = cents_of(i128::from(position), p, scale);
                    etx_domain::format_amount(i64::try_from(cents).unwrap_or(i64::MAX), 2)
                }),
                fees: etx_domain::format_amount(fees, scale),
                asset,
            }
        })
        .collect())
}
