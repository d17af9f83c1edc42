//! A ledger movement as its owner sees it, in the API and on the pages.

use crate::state::AppState;
use crate::views::rfc3339;
use etx_domain::format_amount;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct TransactionView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `in` or `out`, seen from your side.
    pub direction: String,
    pub currency: String,
    pub amount: String,
    pub fee: String,
    pub status: String,
    pub counterparty: Option<Counterparty>,
    pub note: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Counterparty {
    pub id: String,
    pub username: Option<String>,
}

impl TransactionView {
    pub fn new(state: &AppState, t: &etx_db::ledger::TransactionRow) -> Self {
        let scale = state.assets.get(&t.asset).map_or(0, |a| a.scale);
        TransactionView {
            id: t.id.clone(),
            kind: t.kind.clone(),
            direction: t.direction.clone(),
            currency: t.asset.clone(),
            amount: format_amount(t.amount, scale),
            fee: format_amount(t.fee, scale),
            status: t.status.clone(),
            counterparty: t.counterparty_id.as_ref().map(|id| Counterparty {
                id: id.clone(),
                username: t.counterparty_username.clone(),
            }),
            note: t.note.clone(),
            created_at: rfc3339(t.created_at),
        }
    }
}
