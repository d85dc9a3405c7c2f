//! Counters of what the node did and dropped. Every drop has a counter: nothing is dropped silently.

/// Counters kept by a [`crate::Node`]; read them with [`crate::Node::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// LAN frames received.
    pub lan_rx: u64,
    /// LAN frames handed to the runtime.
    pub lan_tx: u64,
    /// Frames or datagrams dropped because they did not parse (bad length, checksum, field).
    pub malformed: u64,
    /// Frames dropped because the transmit queue was full.
    pub tx_queue_full: u64,
    /// Events dropped because the event queue was full.
    pub event_queue_full: u64,
    /// IPv6 frames dropped at the edge (proxy mode carries IPv4 only).
    pub ipv6_dropped: u64,
    /// Frames of other EtherTypes dropped.
    pub other_dropped: u64,
    /// IPv4 packets to the router MAC with no local or remote destination.
    pub no_route: u64,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// ARP requests not looked up because the requester exceeded its rate.
    pub arp_rate_limited: u64,
    /// DHCP messages received.
    pub dhcp_rx: u64,
    /// DHCP messages ignored (not for us, wrong type, pool exhausted, ...).
    pub dhcp_ignored: u64,
    /// DHCP DISCOVERs dropped because every address check (ARP before OFFER) slot was busy.
    pub dhcp_checks_full: u64,
    /// DNS queries received.
    pub dns_rx: u64,
    /// DNS queries forwarded upstream.
    pub dns_forwarded: u64,
    /// DNS queries dropped (malformed beyond a FORMERR, or the forward table was full).
    pub dns_dropped: u64,
    /// Upstream DNS answers dropped: no query waits on that port, or the wrong source, id or question
    /// (RFC 5452), or too short to tell.
    pub dns_upstream_dropped: u64,
    /// Forwarded DNS queries the upstream did not answer in time (the client got SERVFAIL).
    pub dns_upstream_timeouts: u64,
    /// DNS queries parked on a DHT read of `host:<name>` (a hostname of another site).
    pub dns_dht_lookups: u64,
    /// Hostname queries answered SERVFAIL because the DHT read failed, timed out or could not start.
    pub dns_dht_failures: u64,
    /// ICMP echo requests to service addresses answered.
    pub icmp_echo_replies: u64,
    /// Frames sent while serving was stopped by a service-address conflict (dropped instead).
    pub stopped_drops: u64,
    /// Overlay peers refused because the peer table was full of peers that are up.
    pub peers_full: u64,
    /// Pongs dropped: no probe in flight to that endpoint, a wrong nonce or echo, or not trusted.
    pub pongs_unmatched: u64,
    /// Overlay datagrams received.
    pub overlay_rx: u64,
    /// Hellos of another namespace, dropped.
    pub overlay_wrong_namespace: u64,
    /// Overlay messages from an endpoint that is no known peer (or DHT messages to a node whose
    /// endpoint we do not know), dropped.
    pub overlay_unknown_peer: u64,
    /// Hostnames not registered in the DHT: another node holds the name, or the table was full.
    pub overlay_names_lost: u64,
    /// Address claims not kept: the pool table was full.
    pub overlay_pool_full: u64,
    /// Address claims that failed (no quorum in time, no replicas).
    pub overlay_claims_failed: u64,
    /// Frames tunnelled to another node.
    pub overlay_tx_frames: u64,
    /// Frames from the overlay delivered to the LAN.
    pub overlay_rx_frames: u64,
    /// LAN frames not tunnelled: their source is no address this node holds.
    pub overlay_src_not_owned: u64,
    /// Overlay frames dropped: their source is not owned by the sending node (or not known yet).
    pub overlay_src_invalid: u64,
    /// Overlay frames dropped: the destination is not held here or not known on the LAN.
    pub overlay_dst_unknown: u64,
    /// LAN frames dropped at the VN MTU (too big; an ICMP error may have been sent).
    pub overlay_too_big: u64,
    /// Broadcast copies queued to other sites (one per member).
    pub bcast_tx_frames: u64,
    /// Broadcasts from other sites delivered on the LAN.
    pub bcast_rx_frames: u64,
    /// Broadcasts dropped because their source MAC exceeded its rate.
    pub bcast_rate_limited: u64,
    /// Broadcasts received again (same origin and sequence) and dropped.
    pub bcast_duplicates: u64,
    /// Broadcasts sent to only [`crate::bcast::FANOUT`] of more members.
    pub bcast_fanout_capped: u64,
    /// Broadcasts dropped because no other member is known.
    pub bcast_no_members: u64,
    /// Unicast ARP checks sent for an address of the static range seen on the LAN.
    pub static_checks: u64,
    /// Static addresses not checked: their MAC already has [`crate::statics::PER_MAC`].
    pub static_capped: u64,
    /// Static addresses not checked: their MAC's check bucket was empty (or no bucket was free).
    pub static_rate_limited: u64,
    /// Static addresses not checked: the table ([`crate::statics::STATICS`]) was full.
    pub static_table_full: u64,
    /// Checks of a static address that no reply from the same MAC confirmed in time.
    pub static_unconfirmed: u64,
    /// Static claims held by another node (refused or lost later): [`crate::Event::StaticConflict`].
    pub static_conflicts: u64,
    /// Static claims that failed otherwise (no quorum in time); the next frame checks again.
    pub static_claims_failed: u64,
    /// Static claims released because their host was silent for [`crate::statics::STATIC_IDLE`].
    pub static_released: u64,
    /// Handshake messages dropped before any DH: mac1 did not verify.
    pub handshake_mac1_invalid: u64,
    /// Initiations answered with a cookie reply instead of DH (under load, no valid mac2).
    pub handshake_cookies_sent: u64,
    /// Cookie replies dropped: they did not authenticate.
    pub handshake_cookie_invalid: u64,
    /// Initiations dropped before DH: the source IP exceeded its rate, or no bucket was free.
    pub handshake_rate_limited: u64,
    /// Initiations dropped: their (boot counter, monotonic time) was not above the last one seen from that key.
    pub handshake_replayed: u64,
    /// Handshakes refused by the credentials verifier.
    pub handshake_rejected: u64,
    /// Handshake messages dropped: Noise decryption failed or the payload did not parse.
    pub handshake_failed: u64,
    /// Responses and cookie replies dropped: no handshake of ours waits under that index.
    pub handshake_unexpected: u64,
    /// Handshakes given up after REKEY_ATTEMPT_TIME without a response.
    pub handshake_timeouts: u64,
    /// Peers refused a session slot: every slot holds a live session or a handshake.
    pub sessions_full: u64,
    /// Sessions established (both roles).
    pub sessions_established: u64,
    /// Transport messages dropped: no session has that receiver index.
    pub transport_no_session: u64,
    /// Transport messages dropped: their session is older than REJECT_AFTER_TIME.
    pub transport_expired: u64,
    /// Transport messages dropped: the AEAD tag did not verify.
    pub transport_auth_failed: u64,
    /// Transport messages dropped: counter seen before or behind the replay window.
    pub transport_replayed: u64,
    /// Outputs that waited for a session and were dropped (stash full, waited too long, or the
    /// endpoint never introduced itself).
    pub secure_stash_dropped: u64,
    /// Outputs that could not be sealed (session table full, buffer too small).
    pub secure_unsendable: u64,
    /// Endpoints not introduced because the contact table was full of live sessions.
    pub secure_contacts_full: u64,
    /// Introduction requests not answered (per-source rate limit).
    pub secure_intro_limited: u64,
    /// Introduction replies that answered no request of ours.
    pub secure_intro_unexpected: u64,
    /// Endpoints that never answered our introduction requests.
    pub secure_intro_failed: u64,
    /// Overlay datagrams that a secured node does not take outside a session (plaintext control or
    /// data, unknown types).
    pub secure_plaintext_dropped: u64,
    /// Hellos whose node id is not the one their session's certificate names.
    pub secure_identity_mismatch: u64,
    /// Sessions closed because a new revocation list names their peer's certificate.
    pub secure_revoked_closed: u64,
    /// Newer revocation lists taken (from the runtime or a peer).
    pub secure_revocations_taken: u64,
    /// Revocation lists refused (not signed by the CA, another namespace, malformed).
    pub secure_revocations_refused: u64,
    /// Packets from hosts sent out through the Internet egress.
    pub egress_tx: u64,
    /// Packets from the Internet egress delivered to hosts.
    pub egress_rx: u64,
    /// Egress packets refused (a source not served here, a VN destination, a spoofed VN source from
    /// outside, or no host here for the destination).
    pub egress_refused: u64,
    /// SNTP queries sent (wall clock for certificates).
    pub sntp_queries: u64,
    /// SNTP answers that set the clock.
    pub sntp_answers: u64,
    /// SNTP answers refused (wrong source, nonce, mode, stratum or a kiss code).
    pub sntp_refused: u64,
    /// Admin requests refused: the sender's certificate has no admin role (or no session).
    pub admin_refused: u64,
    /// Admin requests answered busy: [`crate::overlay::ADMIN_REQUESTS`] were waiting.
    pub admin_busy: u64,
    /// Admin reply parts dropped: [`crate::overlay::ADMIN_REPLIES`] were waiting to be polled.
    pub admin_replies_dropped: u64,
}

impl Stats {
    /// Every counter with its name, for status output and metrics.
    pub fn fields(&self) -> [(&'static str, u64); 85] {
        [
            ("lan_rx", self.lan_rx),
            ("lan_tx", self.lan_tx),
            ("malformed", self.malformed),
            ("tx_queue_full", self.tx_queue_full),
            ("event_queue_full", self.event_queue_full),
            ("ipv6_dropped", self.ipv6_dropped),
            ("other_dropped", self.other_dropped),
            ("no_route", self.no_route),
            ("arp_replies", self.arp_replies),
            ("arp_rate_limited", self.arp_rate_limited),
            ("dhcp_rx", self.dhcp_rx),
            ("dhcp_ignored", self.dhcp_ignored),
            ("dhcp_checks_full", self.dhcp_checks_full),
            ("dns_rx", self.dns_rx),
            ("dns_forwarded", self.dns_forwarded),
            ("dns_dropped", self.dns_dropped),
            ("dns_upstream_dropped", self.dns_upstream_dropped),
            ("dns_upstream_timeouts", self.dns_upstream_timeouts),
            ("dns_dht_lookups", self.dns_dht_lookups),
            ("dns_dht_failures", self.dns_dht_failures),
            ("icmp_echo_replies", self.icmp_echo_replies),
            ("stopped_drops", self.stopped_drops),
            ("peers_full", self.peers_full),
            ("pongs_unmatched", self.pongs_unmatched),
            ("overlay_rx", self.overlay_rx),
            ("overlay_wrong_namespace", self.overlay_wrong_namespace),
            ("overlay_unknown_peer", self.overlay_unknown_peer),
            ("overlay_names_lost", self.overlay_names_lost),
            ("overlay_pool_full", self.overlay_pool_full),
            ("overlay_claims_failed", self.overlay_claims_failed),
            ("overlay_tx_frames", self.overlay_tx_frames),
            ("overlay_rx_frames", self.overlay_rx_frames),
            ("overlay_src_not_owned", self.overlay_src_not_owned),
            ("overlay_src_invalid", self.overlay_src_invalid),
            ("overlay_dst_unknown", self.overlay_dst_unknown),
            ("overlay_too_big", self.overlay_too_big),
            ("bcast_tx_frames", self.bcast_tx_frames),
            ("bcast_rx_frames", self.bcast_rx_frames),
            ("bcast_rate_limited", self.bcast_rate_limited),
            ("bcast_duplicates", self.bcast_duplicates),
            ("bcast_fanout_capped", self.bcast_fanout_capped),
            ("bcast_no_members", self.bcast_no_members),
            ("static_checks", self.static_checks),
            ("static_capped", self.static_capped),
            ("static_rate_limited", self.static_rate_limited),
            ("static_table_full", self.static_table_full),
            ("static_unconfirmed", self.static_unconfirmed),
            ("static_conflicts", self.static_conflicts),
            ("static_claims_failed", self.static_claims_failed),
            ("static_released", self.static_released),
            ("handshake_mac1_invalid", self.handshake_mac1_invalid),
            ("handshake_cookies_sent", self.handshake_cookies_sent),
            ("handshake_cookie_invalid", self.handshake_cookie_invalid),
            ("handshake_rate_limited", self.handshake_rate_limited),
            ("handshake_replayed", self.handshake_replayed),
            ("handshake_rejected", self.handshake_rejected),
            ("handshake_failed", self.handshake_failed),
            ("handshake_unexpected", self.handshake_unexpected),
            ("handshake_timeouts", self.handshake_timeouts),
            ("sessions_full", self.sessions_full),
            ("sessions_established", self.sessions_established),
            ("transport_no_session", self.transport_no_session),
            ("transport_expired", self.transport_expired),
            ("transport_auth_failed", self.transport_auth_failed),
            ("transport_replayed", self.transport_replayed),
            ("secure_stash_dropped", self.secure_stash_dropped),
            ("secure_unsendable", self.secure_unsendable),
            ("secure_contacts_full", self.secure_contacts_full),
            ("secure_intro_limited", self.secure_intro_limited),
            ("secure_intro_unexpected", self.secure_intro_unexpected),
            ("secure_intro_failed", self.secure_intro_failed),
            ("secure_plaintext_dropped", self.secure_plaintext_dropped),
            ("secure_identity_mismatch", self.secure_identity_mismatch),
            ("secure_revoked_closed", self.secure_revoked_closed),
            ("secure_revocations_taken", self.secure_revocations_taken),
            ("secure_revocations_refused", self.secure_revocations_refused),
            ("egress_tx", self.egress_tx),
            ("egress_rx", self.egress_rx),
            ("egress_refused", self.egress_refused),
            ("sntp_queries", self.sntp_queries),
            ("sntp_answers", self.sntp_answers),
            ("sntp_refused", self.sntp_refused),
            ("admin_refused", self.admin_refused),
            ("admin_busy", self.admin_busy),
            ("admin_replies_dropped", self.admin_replies_dropped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_lists_every_counter() {
        // Debug prints every field as `name: value`; a counter missing from `fields` fails here.
        let debug = std::format!("{:?}", Stats::default());
        assert_eq!(debug.matches(": 0").count(), Stats::default().fields().len());
        let s = Stats { malformed: 7, ..Stats::default() };
        assert!(s.fields().contains(&("malformed", 7)));
    }
}
