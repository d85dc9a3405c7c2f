//! A small seeded generator (SplitMix64): reproducible runs, no OS randomness.
//!
//! SplitMix64 passes BigCrush and needs one `u64` of state, which is plenty for drawing loss and jitter.

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` (53 random bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `[0, n]` (inclusive), without modulo bias.
    pub fn up_to(&mut self, n: u64) -> u64 {
        if n == u64::MAX {
            return self.next_u64();
        }
        let span = n + 1;
        // Reject the top partial bucket so every value is equally likely.
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % span;
            }
        }
    }

    /// True with probability `p` (`p <= 0` never, `p >= 1` always).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The commonly published first outputs of SplitMix64 for seed 1234567, recomputed here with an
        // independent Python transcription of Vigna's splitmix64.c.
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn up_to_stays_in_range_and_hits_both_ends() {
        let mut r = Rng::new(7);
        let mut seen = [0u32; 11];
        for _ in 0..11_000 {
            let x = r.up_to(10);
            assert!(x <= 10);
            seen[x as usize] += 1;
        }
        // Each of 11 values expects 1000; a loose 4-sigma band (sigma ~ 30).
        for (v, n) in seen.iter().enumerate() {
            assert!((880..=1120).contains(n), "value {v} drawn {n} times");
        }
        assert_eq!(r.up_to(0), 0);
    }

    #[test]
    fn chance_extremes() {
        let mut r = Rng::new(1);
        assert!((0..10_000).all(|_| !r.chance(0.0)));
        assert!((0..10_000).all(|_| r.chance(1.0)));
    }
}
