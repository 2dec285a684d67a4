#!/usr/bin/env python3
"""Holds many TCP connections open, for the NAT lab's full conntrack table.

Opens --count connections to --dst:--port one after the other, each sending one
request line ("REQ <tag> <local port> 0 ...") and reading its response line, so
that every connection is established both ways (conntrack marks its entry
ASSURED, which early drop never evicts). Creates --ready once all are open, then
holds them until --release FILE exists (polled, bounded by --hold-max) and closes
them all with FIN, reading each until the peer closes.

Exit status: 0 when every connection opened and exchanged; 1 otherwise.
"""
import argparse
import os
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--src", default="")
    ap.add_argument("--tag", default="fill")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--hold-max", type=float, default=30.0)
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.dst else socket.AF_INET
    socks = []
    for _ in range(args.count):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        if args.src:
            s.bind((args.src, 0))
        try:
            s.connect((args.dst, args.port))
            port = s.getsockname()[1]
            s.sendall(f"REQ {args.tag} {port} 0 xxxxxxxx\n".encode())
            buf = b""
            while b"\n" not in buf:
                data = s.recv(4096)
                if not data:
                    raise ConnectionError("peer closed before a full response")
                buf += data
        except (OSError, ConnectionError) as e:
            print(f"connection {len(socks) + 1} of {args.count} failed: {e}", flush=True)
            return 1
        socks.append(s)
    print(f"holding {len(socks)} connections to [{args.dst}]:{args.port}", flush=True)
    with open(args.ready, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + args.hold_max
    while not os.path.exists(args.release) and time.monotonic() < deadline:
        time.sleep(0.01)
    for s in socks:
        s.shutdown(socket.SHUT_WR)
    for s in socks:
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
