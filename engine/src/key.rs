//! Keys (asset, flight, repository): short strings stored inline so the hot path does not allocate,
//! hashed the same way in every process so an exchange sends a key to the same worker everywhere.

use std::hash::{Hash, Hasher};

/// A record's key; up to 24 bytes live inline without a heap allocation.
pub type Key = compact_str::CompactString;

/// A hash of the key that is identical across processes and runs (FxHash has no random seed),
/// used to pick the worker that owns a key.
pub fn key_hash(key: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_spread_evenly_over_workers() {
        let on_first = (0..1000).filter(|i| super::key_hash(&format!("ASSET{i}/USD")) % 2 == 0).count();
        assert!((400..=600).contains(&on_first), "{on_first} of 1000 keys on worker 0");
    }
}
