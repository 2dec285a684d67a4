#!/usr/bin/env python3
"""UDP client for the NAT lab: DNS-style request/response exchanges.

Sends --count DNS queries (A records for q<N>.<--name>) from one socket (so one
source port, fixed with --sport or chosen by the kernel), waiting up to --timeout
for each answer and resending a query up to --retries times. With --raw it sends
plain text datagrams instead of DNS.

Exit status: 0 when every query was answered; 1 otherwise, unless --expect-fail,
which inverts it (no query may be answered then), or --any (0 whatever the answers).
"""
import argparse
import random
import socket
import struct
import sys
import time


def dns_query(qid: int, name: str) -> bytes:
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack("!HH", 1, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--src", default="")
    ap.add_argument("--sport", type=int, default=0)
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--name", default="example")
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--expect-fail", action="store_true")
    ap.add_argument("--any", action="store_true", help="exit 0 however many queries were answered")
    ap.add_argument("--seed", type=int, default=0, help="seed for the DNS ids (0: from the source port)")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.dst else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.src, args.sport))
    local = sock.getsockname()
    rng = random.Random(args.seed or local[1])
    answered = 0
    for i in range(args.count):
        qid = rng.randrange(1, 65536)
        if args.raw:
            payload = f"PING {local[1]} {i}".encode()
        else:
            payload = dns_query(qid, f"q{i}.{args.name}")
        got = False
        for _attempt in range(1 + args.retries):
            sock.sendto(payload, (args.dst, args.port))
            deadline = time.monotonic() + args.timeout
            while not got:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    data, peer = sock.recvfrom(2048)
                except socket.timeout:
                    break
                if args.raw or data[:2] == payload[:2]:
                    got = True
                    print(f"{local[1]} query {i} answered by {peer[0]}:{peer[1]}", flush=True)
            if got:
                break
        if got:
            answered += 1
        else:
            print(f"{local[1]} query {i} unanswered", flush=True)
        time.sleep(args.interval)
    sock.close()
    if args.any:
        return 0
    if args.expect_fail:
        return 0 if answered == 0 else 1
    return 0 if answered == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
