//! Encapsulation of Ethernet frames in overlay data messages; TCP MSS clamping; ICMP fragmentation-needed.
//! STUB: the helper replaces this.
