//! Money movement primitives shared by every operation: the asset table, amounts, ledger
//! postings, idempotent movements with their retries, and the events a movement announces.

use crate::Core;
use crate::error::CoreError;
use crate::time::rfc3339;
use etx_db::ledger::{Leg, NewEntry, NewTransaction, PostError};
use etx_db::{Batch, DatabaseTransaction, Db, DbErr, now_micros};
use etx_domain::{AccountKind, EntryKind, TxKind};
use etx_domain::{AmountError, format_amount, parse_amount};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Asset {
    pub code: String,
    pub scale: u8,
    /// USD cents per whole unit.
    pub usd_price_cents: i64,
}

#[derive(Debug, Clone)]
pub struct Assets(Vec<Asset>);

impl Assets {
    pub fn from_config(list: &[AssetConfig]) -> anyhow::Result<Self> {
        let mut out: Vec<Asset> = Vec::new();
        for a in list {
            let code = a.code.trim().to_ascii_uppercase();
            if code.is_empty()
                || code.len() > 10
                || !code.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                anyhow::bail!("invalid setting assets.code: {:?}", a.code);
            }
            if a.scale > 18 {
                anyhow::bail!("invalid setting assets.scale for {code}: at most 18");
            }
            let price = parse_amount(&a.usd_price, 2)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| anyhow::anyhow!("invalid setting assets.usd_price for {code}"))?;
            if out.iter().any(|x| x.code == code) {
                anyhow::bail!("invalid setting assets: {code} listed twice");
            }
            out.push(Asset {
                code,
                scale: a.scale,
                usd_price_cents: price,
            });
        }
        if out.is_empty() {
            anyhow::bail!("invalid setting assets: at least one asset is required");
        }
        Ok(Assets(out))
    }

    pub fn get(&self, code: &str) -> Option<&Asset> {
        self.0
            .iter()
            .find(|a| a.code.eq_ignore_ascii_case(code.trim()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Asset> {
        self.0.iter()
    }

    /// USD-equivalent in cents at the reference price, rounded down; `None` on overflow.
    pub fn usd_cents(asset: &Asset, minor: i64) -> Option<i64> {
        let v = i128::from(minor) * i128::from(asset.usd_price_cents)
            / 10i128.pow(u32::from(asset.scale));
        i64::try_from(v).ok()
    }
}

/// USD-equivalent in cents at the server's current price (the reference price for USD and
/// for an asset the feed has not quoted), rounded down; `None` on overflow.
pub fn usd_value(state: &Core, asset: &Asset, minor: i64) -> Option<i64> {
    match state.market.quote(&asset.code) {
        Some(q) if asset.code != "USD" => {
            // Prices are USD × 10^8; cents are USD × 10^2.
            let v =
                i128::from(minor) * i128::from(q.price) / 10i128.pow(u32::from(asset.scale) + 6);
            i64::try_from(v).ok()
        }
        _ => Assets::usd_cents(asset, minor),
    }
}

/// An amount given as a JSON string (`"12.50"`) or number (`12.5`), kept as its decimal text:
/// a number is read from the request's own text, never through a float, so
/// `0.123456789012345678` stays exact and `1e3` is refused by the amount parser rather than
/// rounded. It reads only from JSON text (`serde_json::from_str`/`from_slice`).
#[derive(Debug, Clone)]
pub struct AmountText(pub String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str(text)
                .map(AmountText)
                .map_err(D::Error::custom),
            Some(b'-' | b'0'..=b'9') => Ok(AmountText(text.to_string())),
            _ => Err(D::Error::custom(
                "amount must be a decimal string or a number",
            )),
        }
    }
}

pub fn amount_field(e: AmountError) -> CoreError {
    CoreError::field("amount", &e.to_string())
}

/// An idempotency key, as money POSTs require: 1–255 visible ASCII characters.
pub fn idempotency_key(s: &str) -> Result<String, CoreError> {
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CoreError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(s.to_string())
}

pub fn request_hash(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// The request's fingerprint for idempotency and its typed form, from the body as sent. The
/// fingerprint is taken over the parsed JSON, so whitespace and key order do not matter.
pub fn parse_request<T: serde::de::DeserializeOwned>(
    body: &RawValue,
) -> Result<(String, T), CoreError> {
    let invalid = |message: String| CoreError::Validation {
        message,
        fields: Default::default(),
    };
    let value: Value = serde_json::from_str(body.get()).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("the body must be a JSON object".into()));
    }
    let req = serde_json::from_str(body.get()).map_err(|e| invalid(e.to_string()))?;
    Ok((request_hash(&value), req))
}

pub(crate) fn asset_of<'a>(state: &'a Core, code: &str) -> Result<&'a Asset, CoreError> {
    state
        .assets
        .get(code)
        .ok_or_else(|| CoreError::field("currency", "is not a supported asset"))
}

/// How a money POST was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Carried out now.
    Completed,
    /// Accepted, but waiting for a review or an approval.
    Held,
}

impl Taken {
    /// The code stored with a replayable answer (the HTTP status it was first given).
    pub fn code(self) -> u16 {
        match self {
            Taken::Completed => 201,
            Taken::Held => 202,
        }
    }

    pub fn from_code(code: u16) -> Taken {
        if code == 202 {
            Taken::Held
        } else {
            Taken::Completed
        }
    }
}

/// The answer to a money POST: how it was taken and the JSON body, exactly as stored for
/// replays.
pub struct Outcome {
    pub status: Taken,
    pub body: String,
    pub replayed: bool,
}

/// The JSON text of a money POST's answer, as stored for replays.
pub(crate) fn stored_answer<T: Serialize>(view: &T) -> Result<String, CoreError> {
    serde_json::to_string(view).map_err(|e| CoreError::Internal(e.into()))
}

pub(crate) enum Failure {
    Api(CoreError),
    Db(DbErr),
    /// Nothing was committed because a concurrent write got in between, found by the
    /// application rather than reported by the database; the movement goes again.
    Conflict(&'static str),
    /// The idempotency key was taken by another request that committed first.
    KeyTaken,
}

impl From<DbErr> for Failure {
    fn from(e: DbErr) -> Self {
        Failure::Db(e)
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Failure::Api(e)
    }
}

impl From<PostError> for Failure {
    fn from(e: PostError) -> Self {
        match e {
            PostError::InsufficientFunds => Failure::Api(CoreError::InsufficientFunds),
            PostError::Unbalanced => {
                Failure::Api(CoreError::Internal(anyhow::anyhow!("unbalanced entry")))
            }
            PostError::Db(d) => Failure::Db(d),
        }
    }
}

/// A conflict with a concurrent transaction (serialisation failure, deadlock, SQLite busy):
/// nothing was committed and the movement may go again.
pub(crate) fn is_transient(e: &DbErr) -> bool {
    etx_db::classify(e).is_transient()
}

/// The answer when a movement still conflicts after its last try.
pub(crate) fn conflict_exhausted(why: &'static str) -> CoreError {
    CoreError::Internal(anyhow::anyhow!("could not serialize: {why}").context("database"))
}

/// Who asks for a movement and under which idempotency key.
pub(crate) struct Movement<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) scope: &'static str,
    pub(crate) hash: String,
}

impl<'a> Movement<'a> {
    /// The movement a request asks for, and the request in its typed form.
    pub(crate) fn start<T: serde::de::DeserializeOwned>(
        user_id: &'a str,
        key: &'a str,
        scope: &'static str,
        body: &RawValue,
    ) -> Result<(Self, T), CoreError> {
        let (hash, req) = parse_request(body)?;
        Ok((
            Movement {
                user_id,
                key,
                scope,
                hash,
            },
            req,
        ))
    }

    /// Runs the movement's queued inserts, stores the answer under the key and commits. If the key was taken meanwhile, nothing is
    /// committed and the caller answers as the first request did.
    pub(crate) async fn commit(
        &self,
        state: &Core,
        tx: etx_db::DatabaseTransaction,
        batch: Batch,
        status: Taken,
        body: String,
    ) -> Result<Outcome, Failure> {
        let stored = state
            .db
            .finish_with_idempotency(
                &tx,
                batch,
                etx_db::ledger::NewIdempotency {
                    user_id: self.user_id,
                    key: self.key,
                    scope: self.scope,
                    request_hash: &self.hash,
                    status: status.code(),
                    response: &body,
                },
            )
            .await?;
        if !stored {
            tx.rollback().await?;
            return Err(Failure::KeyTaken);
        }
        tx.commit().await?;
        Ok(Outcome {
            status,
            body,
            replayed: false,
        })
    }

    /// The stored answer of an earlier request with this key: a replay for the same request, a
    /// 409 for a different one; `None` if the key is unused.
    pub(crate) async fn earlier(&self, state: &Core) -> Result<Option<Outcome>, CoreError> {
        let Some(r) = state.db.idempotency_record(self.user_id, self.key).await? else {
            return Ok(None);
        };
        if r.scope != self.scope || r.request_hash != self.hash {
            return Err(CoreError::Conflict {
                message: "this Idempotency-Key was already used with a different request".into(),
                fields: Default::default(),
            });
        }
        Ok(Some(Outcome {
            status: Taken::from_code(r.status),
            body: r.response,
            replayed: true,
        }))
    }

    /// Runs attempts of the movement: transient conflicts are retried a few times with a short
    /// pause. When an attempt fails or finds its key taken, an earlier request with the same
    /// key decides the answer (a replay, or a 409 for a different body), so a replay is answered
    /// the same even if it could no longer be carried out.
    pub(crate) async fn run<F, Fut>(
        &self,
        state: &Core,
        mut attempt: F,
    ) -> Result<Outcome, CoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Outcome, Failure>>,
    {
        let mut tries = 0u32;
        loop {
            tries += 1;
            let err = match attempt().await {
                Ok(o) => return Ok(o),
                Err(Failure::Db(e)) if is_transient(&e) && tries < 5 => {
                    tracing::warn!(tries, error = %e, "transient conflict; retrying the movement");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries)))
                        .await;
                    continue;
                }
                Err(Failure::Conflict(why)) if tries < 5 => {
                    tracing::warn!(tries, why, "concurrent write; retrying the movement");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries)))
                        .await;
                    continue;
                }
                Err(Failure::Db(e)) => CoreError::from(e),
                Err(Failure::Conflict(why)) => conflict_exhausted(why),
                Err(Failure::Api(e)) => e,
                Err(Failure::KeyTaken) => {
                    if let Some(o) = self.earlier(state).await? {
                        return Ok(o);
                    }
                    // Taken and gone again cannot happen while keys outlive requests; retry.
                    if tries < 5 {
                        continue;
                    }
                    CoreError::Internal(anyhow::anyhow!("idempotency key vanished"))
                }
            };
            return match self.earlier(state).await? {
                Some(o) => Ok(o),
                None => Err(err),
            };
        }
    }
}

/// A notification written with a movement (same transaction) and pushed after it commits.
pub struct Notice {
    pub id: String,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub data: Value,
}

impl Notice {
    pub(crate) fn queue(&self, batch: &mut Batch, user_id: &str) {
        Db::queue_notification(
            batch,
            etx_db::notifications::NewNotification {
                id: &self.id,
                user_id,
                kind: self.kind,
                title: &self.title,
                body: &self.body,
                data: &self.data.to_string(),
            },
        );
    }

    /// As listed by `GET /api/notifications` and sent as the `notification` event.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "created_at": rfc3339(etx_db::now_micros()),
            "read": false,
        })
    }
}

/// What the owner of one side of a movement is told in real time.
pub struct MovementEvent {
    pub notice: Option<Notice>,
    pub user_id: String,
    /// The history row, shaped as in `GET /api/transactions`.
    pub transaction: Value,
    pub currency: String,
    pub balance: String,
}

pub(crate) fn balance_of(balances: &[(String, i64)], account: &str) -> Result<i64, Failure> {
    balances
        .iter()
        .find(|(id, _)| id == account)
        .map(|(_, b)| *b)
        .ok_or_else(|| CoreError::Internal(anyhow::anyhow!("posted entry lacks {account}")).into())
}

pub(crate) fn leg(owner: &str, kind: AccountKind, amount: i64) -> Leg<'_> {
    Leg {
        owner,
        kind,
        amount,
    }
}

/// Posts one entry and returns the new balances by account id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn post(
    db: &Db,
    tx: &DatabaseTransaction,
    batch: &mut Batch,
    kind: EntryKind,
    asset: &str,
    memo: Option<&str>,
    actor: Option<&str>,
    legs: Vec<Leg<'_>>,
) -> Result<Vec<(String, i64)>, Failure> {
    let id = uuid::Uuid::now_v7().to_string();
    Ok(db
        .post_entry(
            tx,
            batch,
            NewEntry {
                id: &id,
                kind,
                asset,
                memo,
                created_by: actor,
                legs,
            },
        )
        .await?)
}

/// Runs a step that has no idempotency key of its own (its conditional UPDATEs make it
/// happen once), retrying transient database conflicts.
pub(crate) async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, CoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Db(e)) if is_transient(&e) && tries < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(Failure::Conflict(_)) if tries < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(Failure::Db(e)) => return Err(e.into()),
            Err(Failure::Conflict(why)) => return Err(conflict_exhausted(why)),
            Err(Failure::Api(e)) => return Err(e),
            Err(Failure::KeyTaken) => {
                return Err(CoreError::Internal(anyhow::anyhow!(
                    "unexpected idempotency conflict"
                )));
            }
        }
    }
}

pub(crate) fn conflict(message: &str) -> CoreError {
    CoreError::Conflict {
        message: message.into(),
        fields: Default::default(),
    }
}

pub(crate) fn scale_of(state: &Core, code: &str) -> u8 {
    state.assets.get(code).map_or(0, |a| a.scale)
}

/// A history row as `GET /api/transactions` shows it, for the real-time event.
pub(crate) fn txn_view(state: &Core, t: &NewTransaction<'_>) -> Value {
    let scale = scale_of(state, t.asset);
    json!({
        "id": t.id,
        "type": t.kind.as_str(),
        "direction": t.direction,
        "currency": t.asset,
        "amount": format_amount(t.amount, scale),
        "fee": format_amount(t.fee, scale),
        "status": t.status,
        "counterparty": null,
        "note": t.note,
        "created_at": rfc3339(now_micros()),
    })
}

/// Queues a history row; answers its view for the real-time event.
pub(crate) fn queue_history(state: &Core, batch: &mut Batch, mut t: NewTransaction<'_>) -> Value {
    if t.usd_value.is_none() {
        t.usd_value = usd_value_now(state, t.asset, t.amount);
    }
    let view = txn_view(state, &t);
    Db::insert_transactions(batch, &mut [t]);
    view
}

/// Feed prices are USD × 10^8.
pub(crate) const PRICE_ONE: i128 = 100_000_000;

/// US cents of `minor` units of an asset of `scale` at `usd` (× 10^8) per unit, rounded down.
pub(crate) fn cents_of(minor: i128, usd: i128, scale: u8) -> i128 {
    // Saturates: an amount this large is refused by the caller's limits, never wrapped.
    minor.saturating_mul(usd) / (PRICE_ONE / 100) / 10i128.pow(u32::from(scale))
}

/// What `amount` of `asset` is worth now in US cents, rounded down; none without a live price.
pub(crate) fn usd_value_now(state: &Core, asset: &str, amount: i64) -> Option<i64> {
    let scale = state.assets.get(asset)?.scale;
    let price = if asset == "USD" {
        PRICE_ONE
    } else {
        i128::from(state.market.quote(asset).filter(|q| q.price > 0)?.price)
    };
    i64::try_from(cents_of(i128::from(amount), price, scale)).ok()
}

/// An incoming, completed history row without counterparty or fee: credits, refunds.
pub(crate) fn incoming<'a>(
    id: &'a str,
    user_id: &'a str,
    kind: TxKind,
    asset: &'a str,
    amount: i64,
    note: Option<&'a str>,
) -> NewTransaction<'a> {
    NewTransaction {
        id,
        user_id,
        kind,
        direction: "in",
        asset,
        amount,
        fee: 0,
        status: "completed",
        counterparty_id: None,
        note,
        entry_id: None,
        usd_value: None,
    }
}

/// Tells the owners of committed movements (real-time events) and queues the experience
/// points the movements earn.
pub(crate) fn publish(state: &Core, events: Vec<MovementEvent>) {
    for e in &events {
        state.xp.note_movement(state, &e.user_id, &e.transaction);
    }
    state.events.movements(events);
}

pub(crate) fn movement_event(
    state: &Core,
    user_id: &str,
    asset: &str,
    balance: i64,
    transaction: Value,
    notice: Option<Notice>,
) -> MovementEvent {
    MovementEvent {
        notice,
        user_id: user_id.to_string(),
        transaction,
        currency: asset.to_string(),
        balance: format_amount(balance, scale_of(state, asset)),
    }
}

pub(crate) fn notice(kind: &'static str, title: String, body: String, data: Value) -> Notice {
    Notice {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        title,
        body,
        data,
    }
}

pub(crate) fn reason_text(r: &str, field: &str) -> Result<String, CoreError> {
    let r = r.trim();
    if r.chars().count() < 3 || r.chars().count() > 500 || r.chars().any(char::is_control) {
        return Err(CoreError::field(
            field,
            "must be 3 to 500 printable characters",
        ));
    }
    Ok(r.to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssetConfig {
    pub code: String,
    pub scale: u8,
    /// Decimal USD price of one whole unit.
    #[serde(deserialize_with = "etx_domain::money::decimal_text")]
    pub usd_price: String,
    /// Address family for withdrawals: "bitcoin", "litecoin", "evm" or "solana". An asset
    /// without one cannot be withdrawn to an address.
    #[serde(default)]
    pub network: Option<String>,
    /// The smallest withdrawal fee, in the asset (decimal text).
    #[serde(default)]
    pub withdrawal_min_fee: Option<String>,
}

pub(crate) mod lanes;

#[cfg(test)]
mod tests;
