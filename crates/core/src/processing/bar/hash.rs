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
        let mut pairs = bytes.chunks_exact(16);
        for p in &mut pairs {
            let (lo, hi) = p.split_at(8);
            self.mix(
                u64::from_le_bytes(lo.try_into().expect("8 bytes")),
                u64::from_le_bytes(hi.try_into().expect("8 bytes")),
            );
        }
        let rest = pairs.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 16];
            w[..rest.len()].copy_from_slice(rest);
            let (lo, hi) = w.split_at(8);
            // The length keeps "a" and "a\0" apart.
            self.mix(
                u64::from_le_bytes(lo.try_into().expect("8 bytes")),
                u64::from_le_bytes(hi.try_into().expect("8 bytes")) ^ ((rest.len() as u64) << 56),
            );
        }
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

pub(super) type KeyMap<V> = HashMap<Vec<u8>, V, BuildHasherDefault<KeyHasher>>;
