#!/usr/bin/env python3
"""A small TFTP server and client (RFC 1350, octet mode, read requests only) for the
NAT lab, so that the kernel's TFTP helper (nf_conntrack_tftp, nf_nat_tftp) has a real
request to expect a transfer for: the server answers each read request from a new
port of its own, as TFTP servers do, and the client takes the file from there.

    tftp.py [--ready FILE] serve --bind ADDR [--lifetime S]
    tftp.py get --dst ADDR [--name NAME]

The file served is the same for every name (1300 bytes: two full blocks and a short
one). The client exits non-zero unless the whole file arrives.
"""
import argparse
import os
import socket
import struct
import sys
import time

BLOCK = 512
FILE = bytes((i * 7) % 251 for i in range(1300))
RRQ, DATA, ACK, ERROR = 1, 3, 4, 5


def serve(args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((args.bind, 69))
    s.settimeout(0.1)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        try:
            req, peer = s.recvfrom(1500)
        except socket.timeout:
            continue
        if len(req) < 4 or struct.unpack("!H", req[:2])[0] != RRQ:
            continue
        # The transfer from a port of its own (the transfer identifier).
        t = socket.socket(family, socket.SOCK_DGRAM)
        t.bind((args.bind, 0))
        t.settimeout(2)
        for n in range(len(FILE) // BLOCK + 1):
            chunk = FILE[n * BLOCK:(n + 1) * BLOCK]
            t.sendto(struct.pack("!HH", DATA, n + 1) + chunk, peer)
            ack, _ = t.recvfrom(1500)
            if struct.unpack("!HH", ack[:4]) != (ACK, n + 1):
                break
        t.close()
    return 0


def get(args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in args.dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(struct.pack("!H", RRQ) + args.name.encode() + b"\0octet\0", (args.dst, 69))
    got = bytearray()
    while True:
        pkt, peer = s.recvfrom(1500)
        op, block = struct.unpack("!HH", pkt[:4])
        if op != DATA:
            print(f"opcode {op}", file=sys.stderr)
            return 1
        got += pkt[4:]
        s.sendto(struct.pack("!HH", ACK, block), peer)
        if len(pkt) - 4 < BLOCK:
            break
    if bytes(got) != FILE:
        print(f"{len(got)} bytes of {len(FILE)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ready", help="serve: file to create once listening")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--lifetime", type=float, default=20.0)
    gt = sub.add_parser("get")
    gt.add_argument("--dst", required=True)
    gt.add_argument("--name", default="report.bin")
    args = ap.parse_args()
    return serve(args) if args.cmd == "serve" else get(args)


if __name__ == "__main__":
    raise SystemExit(main())
