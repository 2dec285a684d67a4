#!/usr/bin/env python3
"""UDP client for the NAT lab: DNS-style request/response exchanges.

Sends --count DNS queries (A records for q<N>.<--name>) from one socket (so one
source port, fixed with --sport or chosen by the kernel), waiting up to --timeout
for each answer and resending a query up to --retries times. With --raw it sends
plain text datagrams instead of DNS; --size N makes each N bytes, the same from
every client (its number, then padding), as identical probes are. With --pair it
asks for the A and the AAAA
record of each name at once, as glibc's resolver does: the socket connected to
the server, the two queries handed to the kernel in one sendmmsg() call, each
resent alone (same bytes) when its answer does not come.

Exit status: 0 when every query was answered; 1 otherwise, unless --expect-fail,
which inverts it (no query may be answered then), or --any (0 whatever the answers).
"""
import argparse
import ctypes
import random
import socket
import struct
import sys
import time


def dns_query(qid: int, name: str, qtype: int = 1) -> bytes:
    out = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack("!HH", qtype, 1)


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


def send_together(sock, payloads):
    """Hands every payload to the kernel in one sendmmsg() on the connected socket,
    as glibc sends the A and AAAA queries; one send() each where that is missing."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "sendmmsg"):
        for p in payloads:
            sock.send(p)
        return
    bufs = [ctypes.create_string_buffer(p, len(p)) for p in payloads]
    iovs = [IoVec(ctypes.cast(b, ctypes.c_void_p), len(p)) for b, p in zip(bufs, payloads)]
    msgs = (MMsgHdr * len(payloads))()
    for m, iov in zip(msgs, iovs):
        m.hdr.iov = ctypes.pointer(iov)
        m.hdr.iovlen = 1
    sent = libc.sendmmsg(sock.fileno(), msgs, len(payloads), 0)
    if sent != len(payloads):
        raise OSError(ctypes.get_errno(), f"sendmmsg sent {sent} of {len(payloads)}")


def ask(sock, payloads, dst, timeout, retries):
    """Sends every payload at once, then resends the unanswered ones (each with its
    own bytes again) up to `retries` times; returns the ids answered."""
    sock.connect(dst)
    answered = set()
    for _attempt in range(1 + retries):
        waiting = [p for p in payloads if p[:2] not in answered]
        if not waiting:
            break
        send_together(sock, waiting)
        deadline = time.monotonic() + timeout
        while any(p[:2] not in answered for p in waiting):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, _peer = sock.recvfrom(2048)
            except socket.timeout:
                break
            answered.add(data[:2])
    return answered


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
    ap.add_argument("--size", type=int, default=0, help="--raw datagrams of this many bytes, the same from any client")
    ap.add_argument("--pair", action="store_true", help="A and AAAA queries at once, as glibc sends them")
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
        if args.pair:
            name = f"q{i}.{args.name}"
            pair = [dns_query(qid, name, 1), dns_query(qid % 65535 + 1, name, 28)]
            got_ids = ask(sock, pair, (args.dst, args.port), args.timeout, args.retries)
            for p, qtype in zip(pair, ("A", "AAAA")):
                state = "answered" if p[:2] in got_ids else "unanswered"
                print(f"{local[1]} query {i} {qtype} {state}", flush=True)
            if all(p[:2] in got_ids for p in pair):
                answered += 1
            time.sleep(args.interval)
            continue
        if args.raw and args.size:
            payload = f"DATA {i} ".encode().ljust(args.size, b"x")
        elif args.raw:
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
