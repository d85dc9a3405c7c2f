//! A small seeded generator for protocol choices: DNS transaction ids and source ports, backoff jitter.
//!
//! Never for key material or nonces: those come from the runtime's OS or hardware RNG at every boot.
//! xoshiro128++ (Blackman & Vigna), seeded through splitmix64 so any seed, even 0, is usable.

/// Seeded pseudo-random generator for protocol choices.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u32; 4],
}

impl Rng {
    /// A generator from a 64-bit seed (the runtime should give one from its OS RNG at boot).
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        let (a, b) = (next(), next());
        Self { s: [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32 | 1] }
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(7).wrapping_add(s[0]);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// A uniform value in `0..n` (`n` > 0), without modulo bias worth speaking of for n < 2^16.
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// A random ephemeral UDP port in 49152..=65535 (RFC 6335 dynamic range).
    pub fn ephemeral_port(&mut self) -> u16 {
        49152 + self.below(16384) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ports_in_range() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        for _ in 0..1000 {
            assert_eq!(a.next_u32(), b.next_u32());
            let p = a.ephemeral_port();
            assert!(p >= 49152);
            b.ephemeral_port();
        }
        let mut c = Rng::new(2);
        assert_ne!(Rng::new(1).next_u32(), c.next_u32());
    }
}
