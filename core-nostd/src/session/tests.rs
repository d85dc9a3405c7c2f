//! Tests of the session layer: handshakes both ways, the defences, transport, timers, interop with snow.

use super::*;

/// A seeded generator for tests (never for real keys): xoshiro via [`crate::rand::Rng`].
pub(crate) struct TestRng(crate::rand::Rng);

impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(crate::rand::Rng::new(seed))
    }
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.0.next_u32()) << 32 | u64::from(self.0.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.0.next_u32() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}
