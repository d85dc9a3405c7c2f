//! The transport replay window (RFC 6479's bitmap idea, WireGuard §5.4.6): a counter is accepted once,
//! and only while it is within [`WINDOW`] of the highest accepted counter. The window is updated only
//! after the packet's tag verified ([`ReplayWindow::check`] before, [`ReplayWindow::update`] after).

/// Counters accepted behind the highest one seen: the highest minus 2047 is the oldest accepted.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// A sliding bitmap of the last [`WINDOW`] counters (bit `c % WINDOW` stands for counter `c`).
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest accepted counter plus one (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self { next: 0, bits: [0; WORDS] }
    }

    fn bit(c: u64) -> (usize, u64) {
        let i = c % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `c` would be accepted: above the highest seen, or within the window and not seen.
    // HOT PATH
    pub fn check(&self, c: u64) -> bool {
        if c == u64::MAX {
            return false;
        }
        if c >= self.next {
            return true;
        }
        if self.next - c > WINDOW {
            return false;
        }
        let (w, m) = Self::bit(c);
        self.bits.get(w).is_some_and(|word| word & m == 0)
    }

    /// Record `c` (after its tag verified); `false` if it was not acceptable (nothing changes).
    // HOT PATH
    pub fn update(&mut self, c: u64) -> bool {
        if !self.check(c) {
            return false;
        }
        if c >= self.next {
            let gap = c - self.next;
            if gap >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Clear the bits of the counters skipped over (their slots held counters WINDOW older).
                let mut k = self.next;
                while k < c {
                    if k & 63 == 0 && c - k >= 64 {
                        self.bits[((k % WINDOW) / 64) as usize] = 0;
                        k += 64;
                    } else {
                        let (w, m) = Self::bit(k);
                        self.bits[w] &= !m;
                        k += 1;
                    }
                }
            }
            self.next = c + 1;
        }
        let (w, m) = Self::bit(c);
        self.bits[w] |= m;
        true
    }

    /// The highest accepted counter, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges_of_the_window() {
        let mut w = ReplayWindow::new();
        assert!(w.update(0));
        assert!(!w.update(0), "a replayed 0");
        assert!(w.update(5000));
        assert!(w.check(5000 - 2047), "the oldest counter in the window");
        assert!(!w.check(5000 - 2048), "just outside the window");
        assert!(w.update(5000 - 2047));
        assert!(!w.update(5000 - 2047), "replayed at the edge");
        assert!(w.update(4999) && w.update(3000), "out of order inside the window");
        assert!(!w.update(5000) && !w.update(4999) && !w.update(3000));
        // Moving by one pushes the edge by one: 5000 - 2047 now falls out.
        assert!(w.update(5001));
        assert!(!w.check(5000 - 2047) && w.check(5001 - 2047));
        assert!(!w.update(u64::MAX), "never the last counter");
        assert!(w.update(u64::MAX - 1));
        assert!(!w.check(5001) && w.check(u64::MAX - 2));
        assert_eq!(w.highest(), Some(u64::MAX - 1));
    }

    /// The model: the set of accepted counters; a counter is accepted when not in the set and within
    /// WINDOW of the highest one.
    fn model_accepts(seen: &std::collections::BTreeSet<u64>, c: u64) -> bool {
        match seen.iter().next_back() {
            None => true,
            Some(&top) => !seen.contains(&c) && (c > top || top - c < WINDOW),
        }
    }

    proptest! {
        #[test]
        fn matches_a_set_model(start in 0u64..10_000, steps in proptest::collection::vec((0u8..4, 0u64..5000), 1..400)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut top = start;
            for (op, d) in steps {
                // Mostly nearby counters, sometimes far jumps and old ones.
                let c = match op {
                    0 => top + d % 3,
                    1 => top.saturating_sub(d),
                    2 => top + d,
                    _ => top.saturating_sub(2040 + d % 16),
                };
                let expect = model_accepts(&seen, c);
                prop_assert_eq!(w.check(c), expect, "check {}", c);
                prop_assert_eq!(w.update(c), expect, "update {}", c);
                if expect {
                    seen.insert(c);
                    top = top.max(c);
                }
            }
        }
    }
}
