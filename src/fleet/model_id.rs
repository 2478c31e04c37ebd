//! Model ids: a model's key ([`crate::telemetry::model_key`]) as a 64-bit hash, taken from
//! the request's name without building the key, so a call looks a model up in every
//! host's inventory, speeds and in-flight counters without allocating or hashing a
//! string per host. Maps keyed by id use the id itself as their hash.
//!
//! Two different keys that hash alike would share their entries; with 64 bits and a few
//! hundred models per fleet the chance is about 10^-15.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A model's key as an id (same key, same id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ModelId(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn step(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
}

/// Spreads FNV's bits over the whole word (murmur3's finaliser): map buckets and the
/// in-flight slot read different ends of the id.
fn finish(mut h: u64) -> ModelId {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    ModelId(h)
}

impl ModelId {
    /// The id of the model a request names: the id of `model_key(name)` (trimmed, ASCII
    /// lower case, `:latest` added when the last path segment has no tag), computed
    /// without building that string.
    pub fn of(name: &str) -> ModelId {
        let mut hash = FNV_OFFSET;
        let mut tagged = false;
        for byte in name.trim().bytes() {
            let byte = byte.to_ascii_lowercase();
            match byte {
                b'/' => tagged = false,
                b':' => tagged = true,
                _ => {}
            }
            hash = step(hash, byte);
        }
        if !tagged {
            hash = b":latest".iter().fold(hash, |h, b| step(h, *b));
        }
        finish(hash)
    }

    /// The id of a key already in [`crate::telemetry::model_key`]'s form.
    pub fn of_key(key: &str) -> ModelId {
        finish(key.bytes().fold(FNV_OFFSET, step))
    }

    /// The id's low bits, for a table of `slots` entries.
    pub(crate) fn slot(self, slots: usize) -> usize {
        (self.0 % slots as u64) as usize
    }
}

/// The hasher of id-keyed maps: the id is already a good hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only ids are hashed here (through `write_u64`); anything else still works.
        for b in bytes {
            self.0 = step(self.0 ^ FNV_OFFSET, *b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by model id.
pub type IdMap<V> = HashMap<ModelId, V, BuildHasherDefault<IdHasher>>;
/// A set of model ids.
pub type IdSet = HashSet<ModelId, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::model_key;
    use proptest::prelude::*;

    #[test]
    fn a_name_and_its_key_have_one_id() {
        for name in [
            "llama3.2",
            "Llama3.2",
            " llama3.2:latest ",
            "qwen3:8B",
            "hf.co/Org/Model:Q4_K_M",
            "registry:5000/ns/model",
            "registry:5000/ns/model:tag",
            "",
        ] {
            assert_eq!(
                ModelId::of(name),
                ModelId::of_key(&model_key(name)),
                "{name:?}"
            );
        }
        assert_eq!(ModelId::of("m"), ModelId::of("M:LATEST"));
        assert_ne!(ModelId::of("m"), ModelId::of("m:8b"));
        assert_ne!(
            ModelId::of("registry:5000/ns/model"),
            ModelId::of("registry:5000/ns/model:5000")
        );
    }

    proptest! {
        #[test]
        fn the_id_of_a_name_is_the_id_of_its_key(name in "[ a-zA-Z0-9:/._-]{0,40}") {
            prop_assert_eq!(ModelId::of(&name), ModelId::of_key(&model_key(&name)));
        }
    }

    #[test]
    fn id_maps_find_what_they_hold() {
        let mut map: IdMap<u32> = IdMap::default();
        for i in 0..500 {
            map.insert(ModelId::of(&format!("model{i}")), i);
        }
        assert_eq!(map.get(&ModelId::of("MODEL7:latest")), Some(&7));
        assert_eq!(map.get(&ModelId::of("model500")), None);
    }
}
