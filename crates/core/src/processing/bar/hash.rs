//! The hash of the grouping's key tables.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hash for the key tables (in the manner of foldhash: one 64 × 64 → 128-bit multiply,
/// folded, per 16 bytes): keys are short, and a file crafted to make its keys collide only slows
/// its own grouping down.
#[derive(Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

const SEED: [u64; 2] = [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344];

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, lo: u64, hi: u64) {
        self.0 = fold_mul(self.0 ^ lo ^ SEED[0], hi ^ SEED[1]);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Whole words only, overlapping at the end: copying a short tail into a zeroed buffer
        // and reading it back stalls the load behind the stores.
        let len = bytes.len();
        let tag = (len as u64) << 56;
        if len <= 16 {
            let (lo, hi) = if len >= 8 {
                (word(bytes, 0), word(bytes, len - 8))
            } else if len >= 4 {
                (half(bytes, 0), half(bytes, len - 4))
            } else if len > 0 {
                let b = |i: usize| u64::from(bytes[i]);
                (b(0) | b(len / 2) << 8 | b(len - 1) << 16, 0)
            } else {
                (0, 0)
            };
            self.mix(lo, hi ^ tag);
            return;
        }
        let mut at = 0;
        while len - at > 16 {
            self.mix(word(bytes, at), word(bytes, at + 8));
            at += 16;
        }
        self.mix(word(bytes, len - 16), word(bytes, len - 8) ^ tag);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // Mixed in by the bytes that follow (a slice's length comes before its bytes).
        self.0 ^= (n as u64).rotate_left(32);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[inline]
fn half(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        b[at..at + 4].try_into().expect("4 bytes"),
    ))
}

pub(super) type KeyMap<V> = HashMap<Vec<u8>, V, BuildHasherDefault<KeyHasher>>;

#[cfg(test)]
mod tests {
    use super::KeyHasher;
    use std::collections::HashSet;
    use std::hash::Hasher;

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = KeyHasher::default();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn keys_of_every_length_and_near_misses_hash_apart() {
        let mut seen = HashSet::new();
        let mut count = 0;
        for len in 0..70 {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            seen.insert(hash(&base));
            count += 1;
            for at in 0..len {
                let mut k = base.clone();
                k[at] ^= 1;
                seen.insert(hash(&k));
                count += 1;
            }
        }
        assert_eq!(seen.len(), count);
        // The top bits (the table's tags) vary too.
        let tops: HashSet<u64> = (0..1000u32)
            .map(|i| hash(format!("Org : Source {i}").as_bytes()) >> 57)
            .collect();
        assert!(tops.len() > 100, "{}", tops.len());
    }
}
