//! Bounded output queues: frames and datagrams waiting for [`crate::Node::poll_transmit`], events waiting
//! for [`crate::Node::poll_event`]. When a queue is full the new item is dropped and counted
//! ([`crate::stats::Stats::tx_queue_full`], [`crate::stats::Stats::event_queue_full`]); protocols above
//! retransmit, so dropping the newest is safe and keeps memory fixed.

use core::net::SocketAddr;

use crate::event::Event;
use crate::stats::Stats;

/// Room for one output: an Ethernet frame of the largest VN MTU plus headers, or an upstream datagram.
pub const FRAME_CAP: usize = 1536;

/// What [`crate::Node::poll_transmit`] wrote into the caller's buffer, and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// An Ethernet frame of this length for the LAN side.
    Lan(usize),
    /// A UDP datagram for the overlay socket.
    Overlay {
        /// Destination endpoint.
        to: SocketAddr,
        /// Datagram length.
        len: usize,
    },
    /// A UDP datagram of the node's own (a forwarded DNS query), sent from `local_port`.
    Upstream {
        /// Destination endpoint.
        to: SocketAddr,
        /// Source port chosen by the core (random per DNS query, RFC 5452).
        local_port: u16,
        /// Datagram length.
        len: usize,
    },
    /// An IPv4 packet for the Internet egress (router mode with egress on).
    Egress(usize),
}

/// Where a queued output goes (a [`Transmit`] without its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The LAN.
    Lan,
    /// The overlay socket.
    Overlay(SocketAddr),
    /// The node's upstream socket bound to `local_port`.
    Upstream {
        /// Destination endpoint.
        to: SocketAddr,
        /// Source port.
        local_port: u16,
    },
    /// The Internet egress.
    Egress,
}

struct Slot {
    dest: Dest,
    len: u16,
    buf: [u8; FRAME_CAP],
}

/// A ring of `N` output slots; outputs leave in the order they were queued.
pub struct TxQueue<const N: usize> {
    slots: [Slot; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for TxQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxQueue<N> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| Slot { dest: Dest::Lan, len: 0, buf: [0; FRAME_CAP] }),
            head: 0,
            len: 0,
        }
    }

    /// Number of queued outputs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue an output built by `build`, which writes into a zeroed buffer of [`FRAME_CAP`] bytes and
    /// returns the length used (or `None` to abandon it). Returns `false` when the queue was full
    /// (counted in `stats`) or `build` gave up.
    pub fn push(
        &mut self,
        stats: &mut Stats,
        dest: Dest,
        build: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if self.len == N {
            stats.tx_queue_full += 1;
            return false;
        }
        let idx = (self.head + self.len) % N;
        let slot = &mut self.slots[idx];
        slot.buf.fill(0);
        match build(&mut slot.buf) {
            Some(len) if len <= FRAME_CAP => {
                slot.dest = dest;
                slot.len = len as u16;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Copy the oldest output into `buf` and remove it. Returns `None` when empty, or when `buf` is too
    /// small (the output is then dropped and counted as queue-full, since a runtime with a short buffer
    /// would never get it out).
    pub fn pop(&mut self, stats: &mut Stats, buf: &mut [u8]) -> Option<Transmit> {
        if self.len == 0 {
            return None;
        }
        let slot = &self.slots[self.head];
        let len = usize::from(slot.len);
        let dest = slot.dest;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        if buf.len() < len {
            stats.tx_queue_full += 1;
            return None;
        }
        buf[..len].copy_from_slice(&self.slots[(self.head + N - 1) % N].buf[..len]);
        Some(match dest {
            Dest::Lan => Transmit::Lan(len),
            Dest::Overlay(to) => Transmit::Overlay { to, len },
            Dest::Upstream { to, local_port } => Transmit::Upstream { to, local_port, len },
            Dest::Egress => Transmit::Egress(len),
        })
    }
}

/// The shared context a component handler gets: current time, output queues and counters.
/// Components never own queues, so all their output drains through one place.
pub struct Cx<'a> {
    /// Current monotonic time.
    pub now: smoltcp::time::Instant,
    /// Protocol randomness (never key material).
    pub rng: &'a mut crate::rand::Rng,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Output sink.
    pub out: &'a mut dyn Out,
}

/// The output side of [`Cx`], implemented by the node's queues.
pub trait Out {
    /// Queue an output built by `build` (see [`TxQueue::push`]); `held` outputs wait for persistence.
    fn push(
        &mut self,
        stats: &mut Stats,
        dest: Dest,
        held: bool,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool;
    /// Queue an event; `false` (and counted) when the event queue is full.
    fn event(&mut self, stats: &mut Stats, event: Event) -> bool;
    /// Queue `bytes` as they are (a message already built); `false` when full or too long.
    fn push_bytes(&mut self, stats: &mut Stats, dest: Dest, bytes: &[u8]) -> bool {
        self.push(stats, dest, false, &mut |b| {
            b.get_mut(..bytes.len())?.copy_from_slice(bytes);
            Some(bytes.len())
        })
    }
}

impl Cx<'_> {
    /// Queue a LAN frame.
    pub fn lan(&mut self, build: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> bool {
        self.out.push(self.stats, Dest::Lan, false, build)
    }
    /// Queue a LAN frame that must not leave before the binding table is persisted (a DHCP ACK).
    pub fn lan_held(&mut self, build: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> bool {
        self.out.push(self.stats, Dest::Lan, true, build)
    }
    /// Queue a datagram to the upstream resolver.
    pub fn upstream(
        &mut self,
        to: SocketAddr,
        local_port: u16,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.out.push(self.stats, Dest::Upstream { to, local_port }, false, build)
    }
    /// Queue an event.
    pub fn event(&mut self, event: Event) -> bool {
        self.out.event(self.stats, event)
    }
}

/// A point in the stream of held outputs: those queued before it may leave once the binding table
/// written at that point is on disk ([`Outbox::checkpoint`], [`Outbox::release`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PersistToken(u64);

/// A node's output queues: free outputs, outputs held until the binding table is persisted (DHCP
/// ACKs of new bindings), and events. A held output never blocks a free one, so an OFFER or a DNS
/// answer does not wait for the disk; each of the two output queues holds `TXQ` outputs.
pub struct Outbox<const TXQ: usize, const EVQ: usize> {
    tx: TxQueue<TXQ>,
    held: TxQueue<TXQ>,
    /// Held outputs ever queued / ever popped / allowed to leave (all counted from 0).
    held_pushed: u64,
    held_popped: u64,
    released_upto: u64,
    /// Events.
    pub events: heapless::Deque<Event, EVQ>,
}

impl<const TXQ: usize, const EVQ: usize> Default for Outbox<TXQ, EVQ> {
    fn default() -> Self {
        Self {
            tx: TxQueue::new(),
            held: TxQueue::new(),
            held_pushed: 0,
            held_popped: 0,
            released_upto: 0,
            events: heapless::Deque::new(),
        }
    }
}

impl<const TXQ: usize, const EVQ: usize> Outbox<TXQ, EVQ> {
    /// Outputs queued, held or not.
    pub fn len(&self) -> usize {
        self.tx.len() + self.held.len()
    }

    /// Whether no output is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether held outputs wait for persistence.
    pub fn has_held(&self) -> bool {
        self.held_popped + (self.held.len() as u64) > self.released_upto
    }

    /// The current point: held outputs queued so far are covered by a table written now.
    pub fn checkpoint(&self) -> PersistToken {
        PersistToken(self.held_pushed)
    }

    /// The table written at `token` is durable: the held outputs queued before it may leave.
    pub fn release(&mut self, token: PersistToken) {
        self.released_upto = self.released_upto.max(token.0);
    }

    /// Let every held output leave (a runtime without persistent storage).
    pub fn release_all(&mut self) {
        self.released_upto = self.held_pushed;
    }

    /// The next output that may leave: released held outputs first, then free ones.
    pub fn pop(&mut self, stats: &mut Stats, buf: &mut [u8]) -> Option<Transmit> {
        if !self.held.is_empty() && self.held_popped < self.released_upto {
            self.held_popped += 1;
            return self.held.pop(stats, buf);
        }
        self.tx.pop(stats, buf)
    }

    /// For tests: the next output ignoring holds (free ones first), and whether it was held.
    #[doc(hidden)]
    pub fn pop_ignoring_holds(&mut self, stats: &mut Stats, buf: &mut [u8]) -> Option<(Transmit, bool)> {
        if !self.tx.is_empty() {
            return self.tx.pop(stats, buf).map(|t| (t, false));
        }
        if self.held.is_empty() {
            return None;
        }
        self.held_popped += 1;
        self.released_upto = self.released_upto.max(self.held_popped);
        self.held.pop(stats, buf).map(|t| (t, true))
    }
}

impl<const TXQ: usize, const EVQ: usize> Out for Outbox<TXQ, EVQ> {
    fn push(
        &mut self,
        stats: &mut Stats,
        dest: Dest,
        held: bool,
        build: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> bool {
        if !held {
            return self.tx.push(stats, dest, build);
        }
        let ok = self.held.push(stats, dest, build);
        if ok {
            self.held_pushed += 1;
        }
        ok
    }
    fn event(&mut self, stats: &mut Stats, event: Event) -> bool {
        if self.events.push_back(event).is_err() {
            stats.event_queue_full += 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_newest_and_counts() {
        let mut q = TxQueue::<2>::new();
        let mut st = Stats::default();
        assert!(q.push(&mut st, Dest::Lan, |b| {
            b[0] = 1;
            Some(1)
        }));
        assert!(q.push(&mut st, Dest::Lan, |b| {
            b[0] = 2;
            Some(1)
        }));
        assert!(!q.push(&mut st, Dest::Lan, |b| {
            b[0] = 3;
            Some(1)
        }));
        assert_eq!(st.tx_queue_full, 1);
        let mut buf = [0u8; 16];
        assert_eq!(q.pop(&mut st, &mut buf), Some(Transmit::Lan(1)));
        assert_eq!(buf[0], 1);
        assert_eq!(q.pop(&mut st, &mut buf), Some(Transmit::Lan(1)));
        assert_eq!(buf[0], 2);
        assert_eq!(q.pop(&mut st, &mut buf), None);
    }

    #[test]
    fn held_output_waits_for_its_checkpoint_without_blocking_free_ones() {
        let mut o = Outbox::<4, 4>::default();
        let mut st = Stats::default();
        o.push(&mut st, Dest::Lan, true, &mut |_| Some(10));
        let first = o.checkpoint();
        o.push(&mut st, Dest::Lan, false, &mut |_| Some(20));
        o.push(&mut st, Dest::Lan, true, &mut |_| Some(30));
        let mut buf = [0u8; 64];
        assert!(o.has_held());
        // The free output leaves at once; the held ones wait.
        assert_eq!(o.pop(&mut st, &mut buf), Some(Transmit::Lan(20)));
        assert_eq!(o.pop(&mut st, &mut buf), None);
        // A table written at `first` covers the first held output only.
        o.release(first);
        assert_eq!(o.pop(&mut st, &mut buf), Some(Transmit::Lan(10)));
        assert_eq!(o.pop(&mut st, &mut buf), None);
        assert!(o.has_held());
        o.release(o.checkpoint());
        assert_eq!(o.pop(&mut st, &mut buf), Some(Transmit::Lan(30)));
        assert!(!o.has_held() && o.is_empty());
    }
}
