//! Second factor: RFC 6238 TOTP codes (SHA-1, 30 s, 6 digits — the only profile every
//! authenticator app implements), encryption of the TOTP secret at rest, and single-use backup
//! codes that are stored only as peppered hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// 160 bits, the length RFC 4226 recommends (the SHA-1 output size).
pub const SECRET_LEN: usize = 20;
const DIGITS: usize = 6;
const MODULUS: u32 = 1_000_000;
const STEP_SECS: u64 = 30;

pub fn generate_secret() -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    rand::rng().fill(&mut secret);
    secret
}

/// RFC 4648 base32 without `=` padding, the form otpauth URIs and authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((buffer >> bits) & 0x1f)] as char);
        }
    }
    if bits > 0 {
        // The final partial group is padded with zero bits on the right.
        out.push(ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)] as char);
    }
    out
}

/// RFC 4226 HOTP value truncated to 6 digits.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset],
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]) & 0x7fff_ffff;
    bin % MODULUS
}

/// The RFC 6238 time step (T0 = 0) containing `unix_secs`.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// Checks `code` against the steps around `unix_secs` and returns the step it matched, which the
/// caller must store and pass back as `last_used_step` next time.
///
/// One step either side tolerates clock drift and a code typed just as it rolled over. Only steps
/// after `last_used_step` count, so an observed code cannot be replayed, nor can an older code
/// still inside the window once a newer one has been used.
pub fn verify(
    secret: &[u8],
    code: &str,
    unix_secs: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    // Apps and users group the digits as "123 456".
    let code: Vec<u8> = code.bytes().filter(|&b| b != b' ').collect();
    if code.len() != DIGITS || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let now = step_at(unix_secs);
    let mut matched = None;
    // No early exit, and `ct_eq` for the digits: the time taken reveals neither which step
    // matched nor how close a wrong guess was. Keeping the highest match burns every step the
    // code could stand for.
    for step in [now.checked_sub(1), Some(now), now.checked_add(1)]
        .into_iter()
        .flatten()
    {
        if last_used_step.is_some_and(|used| step <= used) {
            continue;
        }
        let expected = format!("{:06}", hotp(secret, step));
        if bool::from(expected.as_bytes().ct_eq(&code)) {
            matched = Some(step);
        }
    }
    matched
}

/// Key URI for enrolment (usually shown as a QR code), in the format Google Authenticator
/// documented and the other apps follow. The issuer is repeated as a parameter because some apps
/// read it only from there.
pub fn otpauth_url(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        account = percent_encode(account),
        secret = base32(secret),
    )
}

/// Encodes everything except RFC 3986 unreserved characters. A space becomes `%20`, not `+`,
/// because the label is a path segment and several apps show a `+` literally.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretBoxError {
    #[error("sealed value is malformed")]
    Malformed,
    /// Deliberately one variant for wrong key, wrong associated data and tampering: the AEAD
    /// cannot tell them apart and callers should not try to.
    #[error("sealed value does not authenticate")]
    Unauthentic,
}

const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Encrypts small secrets (the TOTP secret) for storage in the database with ChaCha20-Poly1305,
/// and hashes values (backup codes) with a server-side pepper. Both keys are derived from the
/// server secret, so a database dump alone reveals neither the TOTP secrets nor enough to
/// brute-force the backup codes.
#[derive(Clone)]
pub struct SecretBox {
    aead: ChaCha20Poly1305,
    pepper: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Separate labels keep the encryption key, the pepper and every other key derived from the
    /// same server secret independent of one another.
    pub fn new(server_secret: &[u8]) -> Self {
        let key = derive_key(server_secret, b"etx totp secret box v1");
        SecretBox {
            aead: ChaCha20Poly1305::new(&Key::from(key)),
            pepper: derive_key(server_secret, b"etx code pepper v1"),
        }
    }

    /// Returns `"v1." + base64url(nonce || ciphertext || tag)`. The version prefix leaves room
    /// to rotate the scheme; `aad` (the user id) binds the value to its row, so a sealed secret
    /// copied to another user does not open.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        // Random 96-bit nonces are safe here: far fewer than 2^32 values are ever sealed under one
        // key.
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let ciphertext = self
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("ChaCha20-Poly1305 only fails on inputs of hundreds of gigabytes");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SecretBoxError> {
        let blob = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter(|blob| blob.len() >= NONCE_LEN + TAG_LEN)
            .ok_or(SecretBoxError::Malformed)?;
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        self.aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SecretBoxError::Unauthentic)
    }

    /// Hex HMAC-SHA256 of `purpose || 0x00 || data` under the pepper. `purpose` separates uses
    /// (e.g. "backup-code") so a hash from one can never stand in for another; it must not
    /// contain NUL, which keeps the encoding unambiguous.
    pub fn keyed_hash(&self, purpose: &str, data: &str) -> String {
        debug_assert!(!purpose.contains('\0'), "purpose must not contain NUL");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.pepper)
            .expect("HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A key for one purpose (`label`) derived from the server secret.
pub fn derive_key(server_secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(server_secret)
        .expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// No 0/o, 1/l/i: codes are read off paper and typed by hand.
const BACKUP_ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// 31^10 ≈ 2^49.5 per code: online guessing is hopeless, and the pepper keeps offline guessing
/// from a dump impossible.
const BACKUP_LEN: usize = 10;

/// `n` distinct codes formatted for display as `xxxxx-xxxxx`; store
/// `keyed_hash(.., &normalize_backup_code(code)?)`, never the code itself.
pub fn generate_backup_codes(n: usize) -> Vec<String> {
    let mut rng = rand::rng();
    let mut codes: Vec<String> = Vec::with_capacity(n);
    while codes.len() < n {
        let mut code = String::with_capacity(BACKUP_LEN + 1);
        for i in 0..BACKUP_LEN {
            if i == BACKUP_LEN / 2 {
                code.push('-');
            }
            code.push(BACKUP_ALPHABET[rng.random_range(0..BACKUP_ALPHABET.len())] as char);
        }
        // Two equal codes would leave the user one fewer than shown.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The canonical form that is hashed: lowercase, without the spaces and dashes people type.
/// `None` unless exactly 10 characters from the backup-code alphabet remain.
pub fn normalize_backup_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|&c| c != ' ' && c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == BACKUP_LEN && code.bytes().all(|b| BACKUP_ALPHABET.contains(&b));
    valid.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64), want, "counter {counter}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        // Appendix B lists 8 digits; a 6-digit code is the same value mod 10^6.
        let vectors: [(u64, u32); 6] = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (t, want8) in vectors {
            assert_eq!(hotp(RFC_SECRET, step_at(t)), want8 % MODULUS, "time {t}");
        }
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, want) in vectors {
            assert_eq!(base32(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn generated_secrets_are_random() {
        assert_ne!(generate_secret(), generate_secret());
    }

    fn code_at(secret: &[u8], step: u64) -> String {
        format!("{:06}", hotp(secret, step))
    }

    #[test]
    fn verify_accepts_one_step_either_side_only() {
        let secret = generate_secret();
        let t = 1_700_000_015;
        let now = step_at(t);
        for step in [now - 1, now, now + 1] {
            assert_eq!(
                verify(&secret, &code_at(&secret, step), t, None),
                Some(step)
            );
        }
        for step in [now - 2, now + 2] {
            let code = code_at(&secret, step);
            // Guard against the one-in-a-million chance that the code coincides with one
            // inside the window.
            if (now - 1..=now + 1).all(|s| code_at(&secret, s) != code) {
                assert_eq!(verify(&secret, &code, t, None), None, "step {step}");
            }
        }
    }

    #[test]
    fn verify_refuses_replay_and_older_codes() {
        let secret = generate_secret();
        let t = 1_700_000_015;
        let now = step_at(t);
        let used = verify(&secret, &code_at(&secret, now), t, None);
        assert_eq!(used, Some(now));
        assert_eq!(verify(&secret, &code_at(&secret, now), t, used), None);
        assert_eq!(verify(&secret, &code_at(&secret, now - 1), t, used), None);
        assert_eq!(
            verify(&secret, &code_at(&secret, now + 1), t, used),
            Some(now + 1)
        );
    }

    #[test]
    fn verify_accepts_grouped_digits_and_refuses_malformed_codes() {
        let t = 59;
        assert_eq!(verify(RFC_SECRET, "287082", t, None), Some(1));
        assert_eq!(verify(RFC_SECRET, "287 082", t, None), Some(1));
        for bad in [
            "",
            "28708",
            "2870820",
            "94287082",
            "28708a",
            "+87082",
            "287082\n",
            "２８７０８２",
        ] {
            assert_eq!(verify(RFC_SECRET, bad, t, None), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_near_the_epoch_does_not_underflow() {
        assert_eq!(verify(RFC_SECRET, "755224", 0, None), Some(0));
        assert_eq!(verify(RFC_SECRET, "287082", 0, None), Some(1));
    }

    #[test]
    fn matches_oathtool() {
        let available = std::process::Command::new("oathtool")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !available {
            // CI must exercise the cross-check; a developer machine may lack the tool.
            if std::env::var_os("CI").is_some() {
                panic!("oathtool not found but CI is set: install the `oathtool` package");
            }
            eprintln!(
                "SKIPPED matches_oathtool: oathtool not installed (apt-get install oathtool)"
            );
            return;
        }
        let secrets = [RFC_SECRET.to_vec(), generate_secret().to_vec()];
        for secret in &secrets {
            for t in [0u64, 59, 1111111109, 1234567890, 1_700_000_029, 2000000000] {
                let out = std::process::Command::new("oathtool")
                    .args(["--totp", "-b", &base32(secret), "-N", &format!("@{t}")])
                    .output()
                    .expect("run oathtool");
                assert!(out.status.success(), "oathtool failed: {out:?}");
                let theirs = String::from_utf8(out.stdout).expect("utf-8");
                assert_eq!(theirs.trim(), code_at(secret, step_at(t)), "time {t}");
            }
        }
    }

    #[test]
    fn otpauth_url_encodes_label_and_issuer() {
        let url = otpauth_url("Acme Co", "alice@example.com", b"foobar");
        assert_eq!(
            url,
            "otpauth://totp/Acme%20Co:alice%40example.com?secret=MZXW6YTBOI&issuer=Acme%20Co\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_url("a:b&c", "é", b"x").starts_with("otpauth://totp/a%3Ab%26c:%C3%A9?"));
    }

    #[test]
    fn secret_box_round_trip() {
        let sb = SecretBox::new(b"server secret");
        let secret = generate_secret();
        let sealed = sb.seal(&secret, b"user-1");
        assert!(sealed.starts_with("v1."));
        assert_eq!(sb.open(&sealed, b"user-1").unwrap(), secret);
    }

    #[test]
    fn secret_box_refuses_wrong_aad_key_or_tampering() {
        let sb = SecretBox::new(b"server secret");
        let sealed = sb.seal(b"totp secret", b"user-1");
        assert_eq!(
            sb.open(&sealed, b"user-2"),
            Err(SecretBoxError::Unauthentic)
        );
        assert_eq!(
            SecretBox::new(b"other secret").open(&sealed, b"user-1"),
            Err(SecretBoxError::Unauthentic)
        );

        let mut blob = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, blob.len() - 1] {
            blob[i] ^= 1;
            let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&blob));
            assert_eq!(
                sb.open(&tampered, b"user-1"),
                Err(SecretBoxError::Unauthentic),
                "byte {i}"
            );
            blob[i] ^= 1;
        }
    }

    #[test]
    fn secret_box_refuses_malformed_input() {
        let sb = SecretBox::new(b"server secret");
        let sealed = sb.seal(b"", b"");
        assert_eq!(sb.open(&sealed, b""), Ok(Vec::new()));
        for bad in [
            "",
            "v1.",
            "v1.!!!",
            &sealed[3..],
            &format!("v2.{}", &sealed[3..]),
            &sealed[..sealed.len() - 1],
        ] {
            assert!(sb.open(bad, b"").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_box_seals_are_randomized() {
        let sb = SecretBox::new(b"server secret");
        assert_ne!(sb.seal(b"same", b"aad"), sb.seal(b"same", b"aad"));
    }

    #[test]
    fn keyed_hash_depends_on_key_purpose_and_data() {
        let sb = SecretBox::new(b"server secret");
        let h = sb.keyed_hash("backup-code", "abcdefghjk");
        assert_eq!(h.len(), 64);
        assert_eq!(h, sb.keyed_hash("backup-code", "abcdefghjk"));
        assert_ne!(h, sb.keyed_hash("backup-code", "abcdefghjm"));
        assert_ne!(h, sb.keyed_hash("other", "abcdefghjk"));
        assert_ne!(
            h,
            SecretBox::new(b"other secret").keyed_hash("backup-code", "abcdefghjk")
        );
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(sb.keyed_hash("ab", "c"), sb.keyed_hash("a", "bc"));
    }

    #[test]
    fn backup_codes_are_unique_and_well_formed() {
        let codes = generate_backup_codes(10);
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(&code[5..6], "-", "{code}");
            let normalized = normalize_backup_code(code).expect("generated code normalizes");
            assert_eq!(normalized, code.replace('-', ""));
        }
    }

    #[test]
    fn normalize_backup_code_accepts_typed_variants_only() {
        let want = Some("abcdefghjk".to_string());
        assert_eq!(normalize_backup_code("ABCDE-FGHJK"), want);
        assert_eq!(normalize_backup_code(" abcde fghjk "), want);
        assert_eq!(normalize_backup_code("abcdefghjk"), want);
        for bad in [
            "",
            "abcde-fghj",
            "abcde-fghjkm",
            "abcde-fghj0",
            "abcde-fghj1",
            "abcde-fghjl",
            "abcde-fghji",
            "abcde-fghjo",
            "abcde_fghjk",
            "abcde-fghjé",
        ] {
            assert_eq!(normalize_backup_code(bad), None, "{bad:?}");
        }
    }
}
