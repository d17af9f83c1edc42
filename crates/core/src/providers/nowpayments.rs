//! The NOWPayments wire format: the create-payment call and the IPN signature. An IPN is
//! signed with HMAC-SHA512 over the notification's JSON with its keys sorted (at every depth,
//! compact, as `JSON.stringify` of a key-sorted object prints it), hex in `x-nowpayments-sig`.
//! The sandbox provider signs its notifications the same way, so both take one path.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;

pub const SIGNATURE_HEADER: &str = "x-nowpayments-sig";

/// The body as the provider signs it: keys sorted at every depth, no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&js_number(n)),
        other => out.push_str(&other.to_string()),
    }
}

/// A number as JavaScript's `Number.prototype.toString` prints it (what `JSON.stringify`
/// writes), which is what the provider signs: `0.000001`, `1e-7`, `100` for `100.0`, `1e+21`.
fn js_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let text = n.to_string();
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.as_str()),
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    if digits.is_empty() {
        return "0".into();
    }
    // The value is 0.DIGITS × 10^point (ECMAScript's k digits and n).
    let point = int.len() as i32 - lead as i32 + exp;
    let k = digits.len() as i32;
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    if neg { format!("-{body}") } else { body }
}

fn mac(secret: &[u8], body: &Value) -> Hmac<Sha512> {
    let mut m = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(canonical_json(body).as_bytes());
    m
}

pub fn sign(secret: &[u8], body: &Value) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Constant-time check of a hex signature.
pub fn verify(secret: &[u8], body: &Value, signature: &str) -> bool {
    let Ok(raw) = hex::decode(signature.trim()) else {
        return false;
    };
    mac(secret, body).verify_slice(&raw).is_ok()
}

/// A decimal amount as the provider writes it (a JSON number or string, maybe in exponent
/// form, maybe with more decimals than the asset has) in minor units, rounded down.
pub fn amount_minor(v: &Value, scale: u8) -> Option<i64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    if mantissa.starts_with('-') {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    // The value is digits × 10^(exp − len(frac)); in minor units, × 10^scale more.
    let shift = exp - frac.len() as i32 + i32::from(scale);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if shift >= 0 {
        let n: i128 = digits.parse().ok()?;
        let p = 10i128.checked_pow(u32::try_from(shift).ok()?)?;
        i64::try_from(n.checked_mul(p)?).ok()
    } else {
        let cut = usize::try_from(-shift).ok()?;
        if cut >= digits.len() {
            return Some(0);
        }
        digits[..digits.len() - cut].parse().ok()
    }
}

/// What `POST /v1/payment` answered, in our units.
pub struct CreatedPayment {
    pub payment_id: String,
    pub pay_address: String,
    pub pay_amount: i64,
}

/// Creates a payment with NOWPayments (`POST {base}/v1/payment`, `x-api-key`).
pub async fn create_payment(
    client: &reqwest::Client,
    base: &str,
    api_key: &str,
    body: &Value,
    scale: u8,
) -> anyhow::Result<CreatedPayment> {
    let r = client
        .post(format!("{}/v1/payment", base.trim_end_matches('/')))
        .header("x-api-key", api_key)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        anyhow::bail!(
            "the payment provider answered {status}: {}",
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        );
    }
    let payment_id = match &v["payment_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => anyhow::bail!("the payment provider's answer lacks payment_id"),
    };
    let pay_address = v["pay_address"]
        .as_str()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the payment provider's answer lacks pay_address"))?
        .to_string();
    let pay_amount = amount_minor(&v["pay_amount"], scale)
        .filter(|a| *a > 0)
        .ok_or_else(|| anyhow::anyhow!("the payment provider's answer lacks pay_amount"))?;
    Ok(CreatedPayment {
        payment_id,
        pay_address,
        pay_amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v =
            json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "c": "é\""}, "actually_paid": 0.0015});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é\"","z":[{"x":1,"y":2}]},"actually_paid":0.0015,"b":1}"#
        );
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        let cases = [
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("100.0", "100"),
            ("100.25", "100.25"),
            ("0.00153846", "0.00153846"),
            ("123456789012345000000.0", "123456789012345000000"),
            ("1e21", "1e+21"),
            ("1.5e300", "1.5e+300"),
            ("-0.5", "-0.5"),
            ("0.0", "0"),
            ("42", "42"),
            ("-7", "-7"),
        ];
        for (input, js) in cases {
            let v: Value = serde_json::from_str(input).unwrap();
            assert_eq!(canonical_json(&v), js, "{input}");
        }
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let v = json!({"order_id": "DEP-1", "payment_status": "finished"});
        let sig = sign(b"secret", &v);
        assert_eq!(sig.len(), 128);
        assert!(verify(b"secret", &v, &sig));
        assert!(!verify(b"other", &v, &sig));
        assert!(!verify(b"secret", &json!({"order_id": "DEP-2"}), &sig));
        assert!(!verify(b"secret", &v, "zz"));
    }

    #[test]
    fn provider_amounts_become_minor_units() {
        assert_eq!(amount_minor(&json!(0.00153846), 8), Some(153_846));
        assert_eq!(amount_minor(&json!("12.5"), 2), Some(1250));
        assert_eq!(amount_minor(&json!(1e-7), 8), Some(10));
        assert_eq!(amount_minor(&json!(0.123456789), 8), Some(12_345_678));
        assert_eq!(amount_minor(&json!(3), 6), Some(3_000_000));
        assert_eq!(amount_minor(&json!("-1"), 2), None);
        assert_eq!(amount_minor(&json!("x"), 2), None);
        assert_eq!(amount_minor(&json!(1e300), 8), None);
        assert_eq!(amount_minor(&json!(null), 8), None);
    }
}
