//! The payment provider seam: who makes deposit addresses and signs payment notifications.

pub mod nowpayments;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The payment provider seam: who makes deposit addresses and signs payment notifications.
pub enum Provider {
    /// Deterministic test addresses; payments are completed by `simulate` in dev mode.
    Sandbox,
    NowPayments {
        url: String,
        api_key: String,
        client: reqwest::Client,
    },
}

pub struct Payments {
    pub provider: Provider,
    pub(crate) ipn_secret: Vec<u8>,
    pub(crate) address_key: [u8; 32],
}

pub(crate) fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

impl Payments {
    pub fn new(c: &crate::rules::DepositConfig, server_secret: &[u8]) -> anyhow::Result<Self> {
        let ipn_secret = match c.ipn_secret.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => s.as_bytes().to_vec(),
            None => derive(server_secret, b"etx sandbox ipn v1").to_vec(),
        };
        let provider = match c.provider {
            crate::rules::PaymentProvider::Nowpayments => Provider::NowPayments {
                url: c.nowpayments_url.clone(),
                api_key: c.nowpayments_api_key.clone().unwrap_or_default(),
                client: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(20))
                    .build()?,
            },
            crate::rules::PaymentProvider::Sandbox => Provider::Sandbox,
        };
        Ok(Payments {
            provider,
            ipn_secret,
            address_key: derive(server_secret, b"etx sandbox address v1"),
        })
    }

    pub fn name(&self) -> &'static str {
        match self.provider {
            Provider::Sandbox => "sandbox",
            Provider::NowPayments { .. } => "nowpayments",
        }
    }

    /// Signs a notification as the provider would; the sandbox's simulated payments use it.
    pub fn sign(&self, body: &Value) -> String {
        nowpayments::sign(&self.ipn_secret, body)
    }
}
