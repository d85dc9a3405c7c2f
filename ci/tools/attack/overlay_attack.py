#!/usr/bin/env python3
"""Packet attacks on vngate's overlay socket from a real UDP socket (ci/e2e/security.sh).

    pick PCAP --src IP --dst IP --type C0 [--len N] [--index K]
        print (hex) the UDP payload of the K-th (default first; -1: last) datagram from SRC to DST whose
        first byte is TYPE (and whose length is N); exit 1 if none. The pcap is a tcpdump capture
        (Ethernet link type) of the WAN bridge.
    count PCAP --type C0 [--src IP] [--dst IP]
        how many such datagrams the capture holds.
    send --bind IP --to IP:PORT --hex HEX [--flip BYTE:BIT] [--times N]
        send the payload (with one bit flipped) N times from a socket bound to IP.
    flood --to IP:PORT --pub NODE.PUB --sources IP,IP,... --count N --secs S [--len L]
        handshake initiations (0xC2) with random contents and a valid mac1 for the responder whose
        node.pub is given, N per source spread over S seconds; prints what was sent.

mac1 (core-nostd/src/session/cookie.rs, WireGuard §5.4.4): key = BLAKE2s-256("mac1----" || responder
X25519 public key); mac1 = BLAKE2s-128 keyed with it over every byte before mac1. The initiation layout
(core-nostd/src/wire/handshake.rs): 0xC2 | ver<<4|flags | 0 0 | sender index (4) | e (32) | enc s (48) |
enc payload | mac1 (16) | mac2 (16).
"""
import argparse
import hashlib
import os
import socket
import struct
import sys
import time

VERSION = 1


def datagrams(path):
    """(src, dst, sport, dport, payload) of every IPv4/UDP datagram of an Ethernet pcap."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file")
    link = struct.unpack(end + "I", data[20:24])[0]
    if link != 1:
        raise SystemExit(f"{path}: link type {link}, want Ethernet (1)")
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14 + 20 + 8 or pkt[12:14] != b"\x08\x00":
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        total = struct.unpack("!H", ip[2:4])[0]
        udp = ip[ihl:total]
        if len(udp) < 8:
            continue
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        yield (socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), sport, dport, udp[8:ulen])


def matching(a):
    want = int(a.type, 16)
    for src, dst, _, _, p in datagrams(a.pcap):
        if a.src and src != a.src or a.dst and dst != a.dst:
            continue
        if not p or p[0] != want or getattr(a, "len", None) and len(p) != a.len:
            continue
        yield p


def cmd_pick(a):
    found = list(matching(a))
    if not found:
        print(f"no datagram of type {a.type} from {a.src} to {a.dst} in {a.pcap}", file=sys.stderr)
        return 1
    try:
        print(found[a.index].hex())
    except IndexError:
        return 1
    return 0


def cmd_count(a):
    print(sum(1 for _ in matching(a)))
    return 0


def endpoint(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def cmd_send(a):
    msg = bytearray(bytes.fromhex(a.hex))
    if a.flip:
        byte, bit = (int(x) for x in a.flip.split(":"))
        msg[byte] ^= 1 << bit
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, 0))
    for _ in range(a.times):
        s.sendto(bytes(msg), endpoint(a.to))
        time.sleep(0.01)
    print(f"sent {a.times} x {len(msg)} bytes to {a.to} from {s.getsockname()[0]}:{s.getsockname()[1]}")
    return 0


def x25519_of(path):
    for line in open(path):
        if line.startswith("x25519 "):
            return bytes.fromhex(line.split()[1])
    raise SystemExit(f"{path}: no x25519 line")


def initiation(mac1_key, length):
    """A random initiation of LENGTH bytes with a valid mac1 and a zero mac2."""
    head = bytes([0xC2, VERSION << 4, 0, 0]) + os.urandom(4)
    body = head + os.urandom(length - 8 - 32)
    mac1 = hashlib.blake2s(body, digest_size=16, key=mac1_key).digest()
    return body + mac1 + bytes(16)


def cmd_flood(a):
    key = hashlib.blake2s(b"mac1----" + x25519_of(a.pub)).digest()
    socks = []
    for ip in a.sources.split(","):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        socks.append(s)
    to = endpoint(a.to)
    gap = a.secs / max(a.count, 1)
    start = time.monotonic()
    sent = 0
    for i in range(a.count):
        for s in socks:
            s.sendto(initiation(key, a.len), to)
            sent += 1
        # paced: the i-th round leaves at start + i * gap
        delay = start + (i + 1) * gap - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    took = time.monotonic() - start
    print(f"sent {sent} initiations ({a.len} bytes, valid mac1) from {len(socks)} sources in {took:.1f} s "
          f"({sent / took:.0f}/s)")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("pick", "count"):
        q = sub.add_parser(name)
        q.add_argument("pcap")
        q.add_argument("--src")
        q.add_argument("--dst")
        q.add_argument("--type", required=True)
        q.add_argument("--len", type=int)
        q.add_argument("--index", type=int, default=0)
    q = sub.add_parser("send")
    q.add_argument("--bind", required=True)
    q.add_argument("--to", required=True)
    q.add_argument("--hex", required=True)
    q.add_argument("--flip")
    q.add_argument("--times", type=int, default=1)
    q = sub.add_parser("flood")
    q.add_argument("--to", required=True)
    q.add_argument("--pub", required=True)
    q.add_argument("--sources", required=True)
    q.add_argument("--count", type=int, required=True)
    q.add_argument("--secs", type=float, required=True)
    q.add_argument("--len", type=int, default=461)
    a = p.parse_args()
    return {"pick": cmd_pick, "count": cmd_count, "send": cmd_send, "flood": cmd_flood}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
