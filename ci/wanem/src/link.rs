//! One direction of the emulated link: loss, then rate, then delay and jitter, in a bounded queue ordered by
//! release time.
//!
//! The model is sans-IO: time comes in as a [`Duration`] since an origin the caller chooses, randomness from a
//! seeded [`Rng`]. Per frame, in this order (as netem does):
//! 1. loss: dropped with probability `loss` (counted in `dropped_loss`), before it takes any room;
//! 2. queue: dropped when `capacity` frames are already held (counted in `dropped_queue`);
//! 3. rate: with a rate, the frame waits for the frames before it to be serialised and then for its own
//!    serialisation time (`bits / rate`);
//! 4. delay: then it is held for `delay` plus a jitter drawn uniformly in `[-jitter, +jitter]` (never below
//!    zero). Without `reorder`, a frame is never released before the frame ahead of it (its release time is
//!    raised to the previous one), so jitter never reorders; with `reorder`, each frame keeps its own draw.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::rng::Rng;

/// Buffers kept for reuse after a frame is released; beyond this they are freed.
const POOL_MAX: usize = 256;

/// The parameters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params {
    /// Base one-way delay.
    pub delay: Duration,
    /// Half-width of the uniform jitter added to `delay`.
    pub jitter: Duration,
    /// Probability that a frame is lost, in `[0, 1]`.
    pub loss: f64,
    /// Serialisation rate in bits per second; `None` is unlimited.
    pub rate: Option<u64>,
    /// Whether jitter may reorder frames (off: release times never go backwards).
    pub reorder: bool,
}

/// What happened to frames in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames offered to the link.
    pub received: u64,
    /// Frames released and sent.
    pub forwarded: u64,
    /// Bytes of the frames forwarded (without per-frame metadata).
    pub bytes_forwarded: u64,
    /// Frames dropped by the loss draw.
    pub dropped_loss: u64,
    /// Frames dropped because the queue held `capacity` frames.
    pub dropped_queue: u64,
    /// Frames released whose send failed.
    pub tx_errors: u64,
}

/// What [`Link::push`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Held until `release`.
    Queued {
        /// When the frame will be due.
        release: Duration,
    },
    /// Dropped by the loss draw.
    Lost,
    /// Dropped: the queue was full.
    QueueFull,
}

/// A frame held in the queue.
struct Held {
    release: Duration,
    /// Arrival order: frames due at the same time leave in the order they came.
    seq: u64,
    frame: Vec<u8>,
}

impl Held {
    fn key(&self) -> (Duration, u64) {
        (self.release, self.seq)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// One direction of the link: a min-heap of frames keyed by release time.
pub struct Link {
    params: Params,
    rng: Rng,
    capacity: usize,
    meta_len: usize,
    heap: BinaryHeap<Reverse<Held>>,
    pool: Vec<Vec<u8>>,
    seq: u64,
    /// When the (rate-limited) serialiser is free again.
    busy_until: Duration,
    /// The latest release time given so far (for FIFO order without `reorder`).
    last_release: Duration,
    counters: Counters,
}

impl Link {
    /// The default queue bound, in frames.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A link with `params` holding at most `capacity` frames (more are dropped and counted), whose loss and
    /// jitter draws are fixed by `seed`.
    pub fn new(params: Params, capacity: usize, seed: u64) -> Self {
        Link {
            params,
            rng: Rng::new(seed),
            capacity,
            meta_len: 0,
            heap: BinaryHeap::new(),
            pool: Vec::new(),
            seq: 0,
            busy_until: Duration::ZERO,
            last_release: Duration::ZERO,
            counters: Counters::default(),
        }
    }

    /// Frames start with `n` bytes of metadata that are not on the wire (e.g. a virtio-net header): the rate and
    /// the byte counter leave them out.
    pub fn with_meta_len(mut self, n: usize) -> Self {
        self.meta_len = n;
        self
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Frames held now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers a frame that arrived at `now`; it is copied if kept.
    pub fn push(&mut self, now: Duration, frame: &[u8]) -> Verdict {
        self.counters.received += 1;
        if self.params.loss > 0.0 && self.rng.chance(self.params.loss) {
            self.counters.dropped_loss += 1;
            return Verdict::Lost;
        }
        if self.heap.len() >= self.capacity {
            self.counters.dropped_queue += 1;
            return Verdict::QueueFull;
        }
        let mut sent = now;
        if let Some(bps) = self.params.rate.filter(|&r| r > 0) {
            let start = now.max(self.busy_until);
            self.busy_until = start + serialisation(frame.len().saturating_sub(self.meta_len), bps);
            sent = self.busy_until;
        }
        let mut release = sent.saturating_add(self.draw_delay());
        if !self.params.reorder {
            release = release.max(self.last_release);
        }
        self.last_release = self.last_release.max(release);
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.heap.push(Reverse(Held { release, seq: self.seq, frame: buf }));
        self.seq += 1;
        Verdict::Queued { release }
    }

    /// When the next frame is due, if any is held.
    pub fn poll_at(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(h)| h.release)
    }

    /// Hands every frame due at `now` to `send`, in release order; `send` returns whether it was sent. Returns
    /// how many frames were handed out.
    pub fn pop_due(&mut self, now: Duration, mut send: impl FnMut(&[u8]) -> bool) -> usize {
        let mut n = 0;
        loop {
            match self.heap.peek() {
                Some(Reverse(h)) if h.release <= now => {}
                _ => return n,
            }
            let Some(Reverse(held)) = self.heap.pop() else { return n };
            if send(&held.frame) {
                self.counters.forwarded += 1;
                self.counters.bytes_forwarded += held.frame.len().saturating_sub(self.meta_len) as u64;
            } else {
                self.counters.tx_errors += 1;
            }
            if self.pool.len() < POOL_MAX {
                self.pool.push(held.frame);
            }
            n += 1;
        }
    }

    /// `delay` plus a uniform draw in `[-jitter, +jitter]`, never below zero.
    fn draw_delay(&mut self) -> Duration {
        let j = u64::try_from(self.params.jitter.as_nanos()).unwrap_or(u64::MAX / 2).min(u64::MAX / 2);
        if j == 0 {
            return self.params.delay;
        }
        let offset = i128::from(self.rng.up_to(2 * j)) - i128::from(j);
        let d = (self.params.delay.as_nanos() as i128 + offset).max(0);
        Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
    }
}

/// The time to put `bytes` on a link of `bps` bits per second, rounded up to the nanosecond.
fn serialisation(bytes: usize, bps: u64) -> Duration {
    let ns = (bytes as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    /// A frame whose first 8 bytes are its index, so order and identity can be checked after release.
    fn frame(i: u64, len: usize) -> Vec<u8> {
        let mut f = vec![0xa5; len.max(8)];
        f[..8].copy_from_slice(&i.to_be_bytes());
        f
    }

    fn index(f: &[u8]) -> u64 {
        u64::from_be_bytes(f[..8].try_into().unwrap())
    }

    /// Pushes `n` frames of `len` bytes arriving `gap` apart from t=0, then releases everything, stepping the
    /// clock to each deadline as the I/O loop does. Returns (index, arrival, release) in release order.
    fn run(link: &mut Link, n: u64, gap: Duration, len: usize) -> Vec<(u64, Duration, Duration)> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut now = Duration::ZERO;
        while i < n || !link.is_empty() {
            let next_arrival = if i < n { Some(gap * i as u32) } else { None };
            let next = match (next_arrival, link.poll_at()) {
                (Some(a), Some(r)) => a.min(r),
                (Some(a), None) => a,
                (None, Some(r)) => r,
                (None, None) => break,
            };
            assert!(next >= now, "time went backwards");
            now = next;
            link.pop_due(now, |f| {
                let k = index(f);
                out.push((k, gap * k as u32, now));
                true
            });
            if next_arrival == Some(now) {
                link.push(now, &frame(i, len));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn zero_parameters_forward_at_once_in_order() {
        let mut link = Link::new(Params::default(), 16, 1);
        let out = run(&mut link, 100, 10 * US, 64);
        assert_eq!(out.len(), 100);
        for (k, (i, arrival, release)) in out.iter().enumerate() {
            assert_eq!(*i, k as u64);
            assert_eq!(arrival, release);
        }
        let c = link.counters();
        assert_eq!((c.received, c.forwarded, c.dropped_loss, c.dropped_queue), (100, 100, 0, 0));
        assert_eq!(c.bytes_forwarded, 6400);
    }

    #[test]
    fn delay_holds_exactly_that_long() {
        let mut link = Link::new(Params { delay: 50 * MS, ..Params::default() }, 16, 1);
        assert_eq!(link.push(3 * MS, &frame(0, 60)), Verdict::Queued { release: 53 * MS });
        assert_eq!(link.poll_at(), Some(53 * MS));
        assert_eq!(link.pop_due(53 * MS - Duration::from_nanos(1), |_| panic!("released early")), 0);
        let mut got = Vec::new();
        assert_eq!(
            link.pop_due(53 * MS, |f| {
                got.extend_from_slice(f);
                true
            }),
            1
        );
        assert_eq!(got, frame(0, 60));
        assert_eq!(link.poll_at(), None);
    }

    #[test]
    fn jitter_without_reorder_stays_in_band_and_in_order() {
        let p = Params { delay: 20 * MS, jitter: 5 * MS, ..Params::default() };
        let mut link = Link::new(p, 4096, 7);
        let out = run(&mut link, 10_000, 100 * US, 100);
        assert_eq!(out.len(), 10_000);
        for (k, (i, arrival, release)) in out.iter().enumerate() {
            assert_eq!(*i, k as u64, "reordered without --reorder");
            let d = *release - *arrival;
            assert!((15 * MS..=25 * MS).contains(&d), "frame {i} held {d:?}");
        }
    }

    #[test]
    fn jitter_with_reorder_is_uniform_around_the_delay() {
        let p = Params { delay: 20 * MS, jitter: 5 * MS, reorder: true, ..Params::default() };
        let mut link = Link::new(p, 4096, 7);
        let out = run(&mut link, 10_000, 100 * US, 100);
        assert_eq!(out.len(), 10_000);
        let delays: Vec<f64> = out.iter().map(|(_, a, r)| (*r - *a).as_secs_f64() * 1e3).collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let min = delays.iter().cloned().fold(f64::MAX, f64::min);
        let max = delays.iter().cloned().fold(f64::MIN, f64::max);
        // Uniform on [15, 25] ms: sd 2.89 ms, so the mean of 10 000 draws has sd 0.029 ms.
        assert!((mean - 20.0).abs() < 0.15, "mean {mean}");
        assert!((15.0..15.1).contains(&min), "min {min}");
        assert!(max <= 25.0 && max > 24.9, "max {max}");
        let overtaken = out.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(overtaken > 1000, "only {overtaken} reorderings");
    }

    #[test]
    fn jitter_larger_than_delay_never_goes_negative() {
        let p = Params { delay: MS, jitter: 5 * MS, reorder: true, ..Params::default() };
        let mut link = Link::new(p, 4096, 3);
        let out = run(&mut link, 2000, 100 * US, 100);
        assert!(out.iter().all(|(_, a, r)| r >= a));
        assert!(out.iter().filter(|(_, a, r)| r == a).count() > 500, "clamping to zero not exercised");
    }

    #[test]
    fn loss_lands_in_the_binomial_band() {
        let mut link = Link::new(Params { loss: 0.1, ..Params::default() }, 16, 2024);
        let n = 100_000u64;
        for i in 0..n {
            link.push(Duration::ZERO, &frame(i, 60));
            link.pop_due(Duration::ZERO, |_| true);
        }
        let c = link.counters();
        // Binomial(100 000, 0.1): mean 10 000, sd 94.9; the band is +-5 sd.
        assert!((9525..=10475).contains(&c.dropped_loss), "lost {}", c.dropped_loss);
        assert_eq!(c.forwarded + c.dropped_loss, n);
    }

    #[test]
    fn loss_is_reproducible_from_the_seed() {
        let pattern = |seed| {
            let mut link = Link::new(Params { loss: 0.3, ..Params::default() }, 16, seed);
            (0..1000).map(|i| link.push(Duration::ZERO, &frame(i, 60)) == Verdict::Lost).collect::<Vec<_>>()
        };
        assert_eq!(pattern(5), pattern(5));
        assert_ne!(pattern(5), pattern(6));
    }

    #[test]
    fn loss_extremes() {
        let mut none = Link::new(Params { loss: 0.0, ..Params::default() }, 100_000, 1);
        let mut all = Link::new(Params { loss: 1.0, ..Params::default() }, 100_000, 1);
        for i in 0..10_000 {
            assert!(matches!(none.push(Duration::ZERO, &frame(i, 60)), Verdict::Queued { .. }));
            assert_eq!(all.push(Duration::ZERO, &frame(i, 60)), Verdict::Lost);
        }
        assert!(all.is_empty());
    }

    #[test]
    fn rate_spaces_back_to_back_frames() {
        // 1500 bytes at 12 Mbit/s take exactly 1 ms; 10 bytes of metadata are not counted.
        let p = Params { rate: Some(12_000_000), delay: 5 * MS, ..Params::default() };
        let mut link = Link::new(p, 64, 1).with_meta_len(10);
        for i in 0..10 {
            assert_eq!(
                link.push(Duration::ZERO, &frame(i, 1510)),
                Verdict::Queued { release: (i as u32 + 1) * MS + 5 * MS }
            );
        }
        // Once the serialiser is idle again, a new frame waits only for itself.
        assert_eq!(link.push(100 * MS, &frame(10, 1510)), Verdict::Queued { release: 106 * MS });
        link.pop_due(200 * MS, |_| true);
        assert_eq!(link.counters().bytes_forwarded, 11 * 1500);
    }

    #[test]
    fn rate_bounds_throughput() {
        // 10 Mbit/s offered 20 Mbit/s for a second: 1000-byte frames every 400 us, 10 000-frame queue.
        let p = Params { rate: Some(10_000_000), ..Params::default() };
        let mut link = Link::new(p, 10_000, 1);
        let out = run(&mut link, 2500, 400 * US, 1000);
        let last = out.last().unwrap().2;
        // 2500 frames of 8000 bits at 10 Mbit/s: the last leaves at exactly 2 s.
        assert_eq!(last, Duration::from_secs(2));
    }

    #[test]
    fn queue_bound_drops_and_counts_then_recovers() {
        let mut link = Link::new(Params { delay: 10 * MS, ..Params::default() }, 4, 1);
        for i in 0..6 {
            let v = link.push(Duration::ZERO, &frame(i, 60));
            assert_eq!(matches!(v, Verdict::Queued { .. }), i < 4, "frame {i}: {v:?}");
        }
        assert_eq!(link.counters().dropped_queue, 2);
        assert_eq!(link.len(), 4);
        let mut order = Vec::new();
        link.pop_due(10 * MS, |f| {
            order.push(index(f));
            true
        });
        assert_eq!(order, [0, 1, 2, 3]);
        assert!(matches!(link.push(10 * MS, &frame(9, 60)), Verdict::Queued { .. }));
    }

    #[test]
    fn send_failures_are_counted_not_forwarded() {
        let mut link = Link::new(Params::default(), 4, 1);
        link.push(Duration::ZERO, &frame(0, 60));
        link.push(Duration::ZERO, &frame(1, 60));
        let mut first = true;
        link.pop_due(Duration::ZERO, |_| std::mem::replace(&mut first, false));
        let c = link.counters();
        assert_eq!((c.forwarded, c.tx_errors), (1, 1));
    }

    #[test]
    fn serialisation_rounds_up() {
        assert_eq!(serialisation(1, 3), Duration::from_nanos(2_666_666_667));
        assert_eq!(serialisation(125, 1_000_000), MS);
        assert_eq!(serialisation(0, 1), Duration::ZERO);
    }
}
