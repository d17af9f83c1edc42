//! Withdrawal addresses checked per network, checksums included where the format has one, so a
//! mistyped address is refused before any money is held for it. Sandbox deposit addresses are
//! made here too, in the same formats (testnet prefixes), so they look and check like real ones.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Bitcoin,
    Litecoin,
    Evm,
    Solana,
}

impl Network {
    pub fn parse(s: &str) -> Option<Network> {
        match s {
            "bitcoin" => Some(Network::Bitcoin),
            "litecoin" => Some(Network::Litecoin),
            "evm" => Some(Network::Evm),
            "solana" => Some(Network::Solana),
            _ => None,
        }
    }

    /// What a valid address looks like, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Network::Bitcoin => "a Bitcoin address (bc1…, 1… or 3…)",
            Network::Litecoin => "a Litecoin address (ltc1…, L… or M…)",
            Network::Evm => "an Ethereum-style address (0x and 40 hex digits)",
            Network::Solana => "a Solana address (32 bytes in base58)",
        }
    }

    /// Whether `addr` is an address of this network; test networks' addresses only when
    /// `testnet` (dev mode, where sandbox deposits use them).
    pub fn valid(self, addr: &str, testnet: bool) -> bool {
        match self {
            Network::Bitcoin => {
                segwit(addr, if testnet { &["bc", "tb"] } else { &["bc"] })
                    || base58check(
                        addr,
                        if testnet {
                            &[0x00, 0x05, 0x6f, 0xc4]
                        } else {
                            &[0x00, 0x05]
                        },
                    )
            }
            Network::Litecoin => {
                segwit(addr, if testnet { &["ltc", "tltc"] } else { &["ltc"] })
                    || base58check(
                        addr,
                        if testnet {
                            &[0x30, 0x32, 0x05, 0x6f, 0x3a, 0xc4]
                        } else {
                            &[0x30, 0x32, 0x05]
                        },
                    )
            }
            Network::Evm => evm(addr),
            Network::Solana => {
                (32..=44).contains(&addr.len())
                    && base58_decode(addr).is_some_and(|b| b.len() == 32)
            }
        }
    }

    /// A deterministic testnet-style address for a sandbox payment, from 32 seed bytes.
    pub fn sandbox_address(self, seed: &[u8; 32]) -> String {
        match self {
            Network::Bitcoin => segwit_encode("tb", &seed[..20]),
            Network::Litecoin => segwit_encode("tltc", &seed[..20]),
            Network::Evm => format!("0x{}", hex::encode(&seed[..20])),
            Network::Solana => base58_encode(seed),
        }
    }
}

/// `0x` and 40 hex digits; in mixed case the capitals must spell its EIP-55 checksum (one
/// case throughout carries no checksum and is accepted as such).
fn evm(addr: &str) -> bool {
    use sha3::{Digest, Keccak256};
    let Some(hex) = addr.strip_prefix("0x") else {
        return false;
    };
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let lower = hex.to_ascii_lowercase();
    if hex == lower || hex == hex.to_ascii_uppercase() {
        return true;
    }
    let hash = Keccak256::digest(lower.as_bytes());
    hex.bytes().enumerate().all(|(i, c)| {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        !c.is_ascii_alphabetic() || c.is_ascii_uppercase() == (nibble >= 8)
    })
}

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BECH32M: u32 = 0x2bc8_30a3;

fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &str) -> Vec<u8> {
    let mut v: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    v.push(0);
    v.extend(hrp.bytes().map(|b| b & 31));
    v
}

/// A SegWit address (BIP 173 / BIP 350) with one of the human-readable parts `hrps`.
fn segwit(addr: &str, hrps: &[&str]) -> bool {
    if addr.len() > 90 || (addr.to_lowercase() != addr && addr.to_uppercase() != addr) {
        return false;
    }
    let addr = addr.to_lowercase();
    let Some((hrp, data)) = addr.rsplit_once('1') else {
        return false;
    };
    // A witness version, then the 6-character checksum.
    if !hrps.contains(&hrp) || data.len() < 7 {
        return false;
    }
    let Some(values) = data
        .bytes()
        .map(|c| CHARSET.iter().position(|x| *x == c).map(|p| p as u8))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut all = hrp_expand(hrp);
    all.extend(&values);
    let version = values[0];
    let check = polymod(&all);
    // Version 0 uses bech32, later versions bech32m.
    let ok = match version {
        0 => check == 1,
        1..=16 => check == BECH32M,
        _ => false,
    };
    let Some(program) = convert_bits(&values[1..values.len() - 6], 5, 8, false) else {
        return false;
    };
    ok && (2..=40).contains(&program.len()) && (version != 0 || matches!(program.len(), 20 | 32))
}

fn segwit_encode(hrp: &str, program: &[u8]) -> String {
    let mut values = vec![0u8];
    values.extend(convert_bits(program, 8, 5, true).unwrap_or_default());
    let mut all = hrp_expand(hrp);
    all.extend(&values);
    all.extend([0u8; 6]);
    let m = polymod(&all) ^ 1;
    values.extend((0..6).map(|i| ((m >> (5 * (5 - i))) & 31) as u8));
    let data: String = values
        .iter()
        .map(|v| CHARSET[*v as usize] as char)
        .collect();
    format!("{hrp}1{data}")
}

fn convert_bits(data: &[u8], from: u32, to: u32, pad: bool) -> Option<Vec<u8>> {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    let max = (1u32 << to) - 1;
    for v in data {
        let v = u32::from(*v);
        if v >> from != 0 {
            return None;
        }
        acc = (acc << from) | v;
        bits += from;
        while bits >= to {
            bits -= to;
            out.push(((acc >> bits) & max) as u8);
        }
    }
    if pad {
        if bits > 0 {
            out.push(((acc << (to - bits)) & max) as u8);
        }
    } else if bits >= from || ((acc << (to - bits)) & max) != 0 {
        return None;
    }
    Some(out)
}

const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    for c in s.bytes() {
        let mut carry = B58.iter().position(|x| *x == c)? as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|c| *c == b'1').count();
    let mut out = vec![0u8; zeros];
    out.extend(bytes);
    Some(out)
}

fn base58_encode(data: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new();
    for b in data {
        let mut carry = u32::from(*b);
        for d in digits.iter_mut().rev() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.insert(0, (carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = data.iter().take_while(|b| **b == 0).count();
    let mut s = "1".repeat(zeros);
    s.extend(digits.iter().map(|d| B58[*d as usize] as char));
    s
}

/// A legacy address: version byte, 20-byte hash, 4-byte double-SHA-256 checksum.
fn base58check(addr: &str, versions: &[u8]) -> bool {
    if !(25..=35).contains(&addr.len()) {
        return false;
    }
    let Some(raw) = base58_decode(addr) else {
        return false;
    };
    if raw.len() != 25 || !versions.contains(&raw[0]) {
        return false;
    }
    let sum = Sha256::digest(Sha256::digest(&raw[..21]));
    sum[..4] == raw[21..]
}

#[cfg(test)]
mod tests {
    use super::Network::*;

    #[test]
    fn known_good_addresses_pass() {
        for (n, a) in [
            (Bitcoin, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            (Bitcoin, "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),
            (
                Bitcoin,
                "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
            ),
            (Bitcoin, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            (Bitcoin, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
            (Litecoin, "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9"),
            (Evm, "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"),
            (Solana, "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"),
        ] {
            assert!(n.valid(a, false), "{n:?} {a}");
        }
    }

    #[test]
    fn typos_and_other_networks_fail() {
        for (n, a) in [
            (Bitcoin, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp"),
            (Bitcoin, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"),
            (Bitcoin, "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"),
            (Bitcoin, "bc1qAr0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            (Litecoin, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            (Evm, "0x742d35Cc6634C0532925a3b844Bc454e4438f44"),
            (Evm, "0x742d35Cc6634C0532925a3b844Bc454e4438f44g"),
            // One letter's case changed: the EIP-55 checksum no longer holds.
            (Evm, "0x742d35cc6634C0532925a3b844Bc454e4438f44e"),
            (Solana, "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWW0"),
            (Solana, "abc"),
            (Bitcoin, ""),
            (Bitcoin, "bc1qqqqqq"),
            (Bitcoin, "bc1"),
            (Litecoin, "ltc1qqqqqqq"),
        ] {
            assert!(!n.valid(a, true), "{n:?} {a}");
        }
    }

    #[test]
    fn test_networks_only_in_dev() {
        for (n, a) in [
            (Bitcoin, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"),
            (Bitcoin, "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"),
            (Litecoin, Litecoin.sandbox_address(&[3u8; 32]).leak()),
        ] {
            assert!(n.valid(a, true), "{n:?} {a}");
            assert!(!n.valid(a, false), "{n:?} {a} is a test network's");
        }
        for a in [
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            "0xde709f2102306220921060314715629080e2fb77",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        ] {
            assert!(Evm.valid(a, false), "EIP-55 example {a}");
        }
    }

    #[test]
    fn sandbox_addresses_are_valid_for_their_network() {
        let seed = [7u8; 32];
        for n in [Bitcoin, Litecoin, Evm, Solana] {
            let a = n.sandbox_address(&seed);
            assert!(n.valid(&a, true), "{n:?} {a}");
        }
    }
}
