#!/usr/bin/env python3
"""Multi-accept TCP request/response server for the NAT lab.

Listens on one or more ports of one address. For every complete request line it
receives it answers with one line "RSP <request line> <padding>", so each request
and each response is a distinct, small payload that can be matched across the NAT.
A connection ends when the peer closes (the server then closes too, FIN) or
resets. --resp-pads A,B,... gives the padding of a connection's first, second,
... response (the last repeats), in place of --resp-pad. The server itself is
bounded: it exits after --lifetime seconds or after --max-conns accepted
connections have all finished, whichever comes first.
"""
import argparse
import os
import selectors
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bind", default="0.0.0.0", help="address to listen on ('::' for IPv6)")
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--lifetime", type=float, default=20.0)
    ap.add_argument("--max-conns", type=int, default=64)
    ap.add_argument("--resp-pad", type=int, default=32, help="bytes of padding in each response")
    ap.add_argument("--resp-pads", default="", help="padding of each response of a connection in turn")
    ap.add_argument("--ready", help="file to create once listening")
    args = ap.parse_args()
    pads = [int(p) for p in args.resp_pads.split(",") if p] or [args.resp_pad]

    sel = selectors.DefaultSelector()
    for port in args.port:
        family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((args.bind, port))
        ls.listen(64)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, ("listen", None))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))

    deadline = time.monotonic() + args.lifetime
    accepted = 0
    open_conns = 0
    while time.monotonic() < deadline:
        if accepted >= args.max_conns and open_conns == 0:
            break
        for key, _ in sel.select(timeout=0.1):
            kind, state = key.data
            sock = key.fileobj
            if kind == "listen":
                if accepted >= args.max_conns:
                    continue
                conn, _peer = sock.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, ("conn", [bytearray(), 0]))
                accepted += 1
                open_conns += 1
                continue
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                open_conns -= 1
                continue
            buf = state[0]
            buf.extend(data)
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                pad = pads[min(state[1], len(pads) - 1)]
                state[1] += 1
                reply = b"RSP " + line + b" " + b"y" * pad + b"\n"
                try:
                    sock.sendall(reply)
                except OSError:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
