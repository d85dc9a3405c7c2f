//! The member table (every storage node of the namespace, one hop) and replica sets: the `K` storage
//! nodes closest to a key by XOR distance.

use heapless::Vec;

use super::key::Key;
use crate::id::NodeId;

/// Replicas per key.
pub const K: usize = 5;
/// Write quorum with a full replica set.
pub const W: usize = 3;
/// Read quorum with a full replica set.
pub const R: usize = 3;

/// A key's replica set, closest first.
pub type ReplicaSet = Vec<NodeId, K>;

/// The quorum (for writes and for reads) of a replica set of `n` nodes: `W` = `R` = 3 with five
/// replicas; with fewer storage nodes, a majority, `floor(n/2) + 1`. Either way two write quorums
/// intersect (2q > n) and a read quorum meets every write quorum (R + W > n).
pub fn quorum(n: usize) -> usize {
    if n >= K {
        W
    } else {
        n / 2 + 1
    }
}

/// The storage nodes a DHT engine knows. A storage node knows all of them (one hop up to about a
/// thousand members); a client knows a bounded list of contacts.
pub trait Members {
    /// Calls `f` on every member, in any order.
    fn each(&self, f: &mut dyn FnMut(&NodeId));
    /// Whether `id` is a member.
    fn contains(&self, id: &NodeId) -> bool;
    /// Adds `id`; false when it was there already or the table is full (then nothing changes).
    fn insert(&mut self, id: NodeId) -> bool;
    /// Removes `id`; false when it was not there.
    fn remove(&mut self, id: &NodeId) -> bool;
    /// The number of members.
    fn len(&self) -> usize;
    /// Whether there is no member.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `K` members closest to `key` (all of them when there are fewer), closest first.
    fn replica_set(&self, key: &Key) -> ReplicaSet {
        let target = key.as_id();
        let mut best: Vec<([u8; 32], NodeId), K> = Vec::new();
        self.each(&mut |id| {
            let d = id.distance(&target);
            let pos = best.iter().position(|(bd, _)| d < *bd).unwrap_or(best.len());
            if pos < K {
                if best.is_full() {
                    best.pop();
                }
                // Cannot fail: there is room after the pop, and pos <= len.
                let _ = best.insert(pos, (d, *id));
            }
        });
        best.iter().map(|(_, id)| *id).collect()
    }

    /// A digest of the whole table, the same whatever the order of [`Members::each`]: copy
    /// requests carry it, and a storage node answers one only when its own table has the same
    /// digest (module doc, "Membership changes").
    fn digest(&self) -> u64 {
        let mut x = self.len() as u64;
        self.each(&mut |id| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&id.0[..8]);
            // Ids are BLAKE2s outputs: their first 8 bytes are already uniform.
            x ^= u64::from_le_bytes(b).rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        });
        x
    }
}

/// A member table with more ids: the table as it was before they were removed.
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) struct Plus<'a> {
    pub base: &'a dyn Members,
    /// Ids not in `base`, without repeats.
    pub extra: &'a [NodeId],
}

impl Members for Plus<'_> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.base.each(f);
        self.extra.iter().for_each(f);
    }
    fn contains(&self, id: &NodeId) -> bool {
        self.extra.contains(id) || self.base.contains(id)
    }
    fn insert(&mut self, _: NodeId) -> bool {
        false
    }
    fn remove(&mut self, _: &NodeId) -> bool {
        false
    }
    fn len(&self) -> usize {
        self.base.len() + self.extra.len()
    }
}

impl<const N: usize> Members for Vec<NodeId, N> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.iter().for_each(f)
    }
    fn contains(&self, id: &NodeId) -> bool {
        self.iter().any(|m| m == id)
    }
    fn insert(&mut self, id: NodeId) -> bool {
        !self.contains(&id) && self.push(id).is_ok()
    }
    fn remove(&mut self, id: &NodeId) -> bool {
        match self.iter().position(|m| m == id) {
            Some(i) => {
                self.swap_remove(i);
                true
            }
            None => false,
        }
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

#[cfg(feature = "alloc")]
impl Members for alloc::collections::BTreeSet<NodeId> {
    fn each(&self, f: &mut dyn FnMut(&NodeId)) {
        self.iter().for_each(f)
    }
    fn contains(&self, id: &NodeId) -> bool {
        alloc::collections::BTreeSet::contains(self, id)
    }
    fn insert(&mut self, id: NodeId) -> bool {
        alloc::collections::BTreeSet::insert(self, id)
    }
    fn remove(&mut self, id: &NodeId) -> bool {
        alloc::collections::BTreeSet::remove(self, id)
    }
    fn len(&self) -> usize {
        alloc::collections::BTreeSet::len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    #[test]
    fn quorums_intersect_for_every_size() {
        for n in 1..=K {
            let q = quorum(n);
            assert!(2 * q > n && q <= n, "n={n} q={q}");
        }
        assert_eq!((quorum(1), quorum(2), quorum(3), quorum(4), quorum(5)), (1, 2, 2, 3, 3));
    }

    #[test]
    fn replica_set_is_the_k_closest_by_xor() {
        let mut m: Vec<NodeId, 16> = Vec::new();
        for b in [0x00, 0x01, 0x03, 0x10, 0x80, 0xff, 0x07, 0x02] {
            assert!(Members::insert(&mut m, id(b)));
        }
        assert!(!Members::insert(&mut m, id(0x01)));
        let set = m.replica_set(&Key([0x01; 32]));
        assert_eq!(set.as_slice(), &[id(0x01), id(0x00), id(0x03), id(0x02), id(0x07)]);
        let mut small: Vec<NodeId, 4> = Vec::new();
        Members::insert(&mut small, id(9));
        Members::insert(&mut small, id(1));
        assert_eq!(small.replica_set(&Key([0; 32])).as_slice(), &[id(1), id(9)]);
    }

    #[test]
    fn digest_ignores_order_and_sees_every_change() {
        let mut a: Vec<NodeId, 8> = Vec::new();
        let mut b: Vec<NodeId, 8> = Vec::new();
        for x in [1, 2, 3] {
            Members::insert(&mut a, id(x));
        }
        for x in [3, 1, 2] {
            Members::insert(&mut b, id(x));
        }
        assert_eq!(a.digest(), b.digest());
        Members::insert(&mut b, id(4));
        assert_ne!(a.digest(), b.digest());
        let plus = Plus { base: &a, extra: &[id(4)] };
        assert_eq!((plus.len(), plus.digest()), (4, b.digest()));
        Members::remove(&mut b, &id(1));
        assert_ne!(a.digest(), b.digest());
    }
}
