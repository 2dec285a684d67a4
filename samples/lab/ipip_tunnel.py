#!/usr/bin/env python3
"""IP-in-IP tunnel endpoint for the NAT lab, for kernels built without `ipip`.

Creates a layer-3 TUN device (--dev, no packet information header) and carries
what the kernel routes into it to --remote as IP in IP (outer IPv4 protocol 4,
from --local), and the IP in IP packets --remote sends to --local back into the
device, as the kernel's own `ipip` device does. The outer header is the kernel's
own (a raw IPPROTO_IPIP socket): only the encapsulation runs here; routing,
conntrack and NAT stay the kernel's. Like Calico's `tunl0` (`ttl inherit
nopmtudisc`), the outer TTL is the inner packet's and the outer header never has
DF set. The raw socket also keeps the kernel from answering the tunnel packets
with "protocol unreachable".

The device exists while the process runs; --ready names a file written once it
does. Bounded: exits after --lifetime seconds, or at SIGTERM/SIGINT.
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dev", default="tunl0")
    ap.add_argument("--local", required=True)
    ap.add_argument("--remote", required=True)
    ap.add_argument("--lifetime", type=float, default=60.0)
    ap.add_argument("--ready")
    args = ap.parse_args()

    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", args.dev.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    raw.bind((args.local, 0))
    raw.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    remote = socket.inet_aton(args.remote)

    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))

    deadline = time.monotonic() + args.lifetime
    ttl = None
    while not stopping and time.monotonic() < deadline:
        try:
            ready, _, _ = select.select([tun, raw], [], [], 0.1)
        except InterruptedError:
            continue
        if tun in ready:
            inner = os.read(tun, 65535)
            # IPv4 only (the lab's overlays are IPv4); anything else is dropped.
            if len(inner) >= 20 and inner[0] >> 4 == 4:
                if inner[8] != ttl:
                    ttl = inner[8]
                    raw.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, max(ttl, 1))
                raw.sendto(inner, (args.remote, 0))
        if raw in ready:
            outer = raw.recv(65535)
            # A raw IPv4 socket receives the whole packet, outer header first.
            if len(outer) >= 20 and outer[12:16] == remote:
                hlen = (outer[0] & 0x0F) * 4
                if len(outer) >= hlen + 20:
                    os.write(tun, outer[hlen:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
