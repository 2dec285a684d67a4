#!/usr/bin/env python3
"""ICMP echo client for the NAT lab (a small, bounded ping).

Sends --count echo requests (ICMP, or ICMPv6 when --dst is an IPv6 address)
with identifier --ident and sequence numbers 1..N, each carrying a 16-byte
timestamp-and-pattern payload like ping's, and waits up to --timeout for each
reply. Needs a raw socket (root). Exit status 0 when every request was answered;
with --expect-fail, 0 when none was (the echo is expected to get no reply).
"""
import argparse
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--ident", type=int, default=0x4E43)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--expect-fail", action="store_true")
    args = ap.parse_args()

    v6 = ":" in args.dst
    if v6:
        # The kernel fills in the ICMPv6 checksum (it covers a pseudo-header), and
        # raw ICMPv6 sockets deliver the message without the IPv6 header.
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    answered = 0
    for seq in range(1, args.count + 1):
        now = time.time()
        payload = struct.pack("!II", int(now), int((now % 1) * 1e6)) + bytes(range(0x10, 0x18))
        header = struct.pack("!BBHHH", req_type, 0, 0, args.ident, seq)
        csum = 0 if v6 else checksum(header + payload)
        packet = struct.pack("!BBHHH", req_type, 0, csum, args.ident, seq) + payload
        sock.sendto(packet, (args.dst, 0))
        deadline = time.monotonic() + args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"seq {seq} unanswered", flush=True)
                break
            sock.settimeout(left)
            try:
                data, peer = sock.recvfrom(2048)
            except socket.timeout:
                continue
            start = 0 if v6 else (data[0] & 0x0F) * 4
            icmp = data[start : start + 8]
            if len(icmp) < 8:
                continue
            typ, _code, _sum, ident, rseq = struct.unpack("!BBHHH", icmp)
            if typ == rep_type and ident == args.ident and rseq == seq:
                answered += 1
                print(f"seq {seq} answered by {peer[0]}", flush=True)
                break
        time.sleep(args.interval)
    if args.expect_fail:
        return 0 if answered == 0 else 1
    return 0 if answered == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
