#!/usr/bin/env python3
"""TCP request/response client for the NAT lab.

Connects (optionally from a fixed source address and port), sends --requests
request lines of about --size bytes, waiting for each response line, then holds
the connection open: until --release FILE exists (polled, bounded by --hold-max)
or for --hold seconds. It then closes with FIN (default) or RST (--close rst).

--ready FILE is created after the last response, so the recorder can take a
conntrack snapshot while the connection is still established.

--last-size N: the last request line is about N bytes instead (a bulk upload).
--expect-stall: the last exchange is expected to stall: its request or response
not getting through within --io-timeout is then success, and a response in time
is a failure. The connection is then closed (--close decides how) without waiting.

--phase2 FILE: after the hold, wait for FILE to appear, send one more request and
wait up to --phase2-timeout for its response (used to send data after the
recorder deleted the conntrack entry). No response is not an error then.

--close-after FILE: after all that, wait for FILE to appear (bounded by
--hold-max) before closing, so that the connection stays established.

Exit status: 0 on success; 1 when the connection failed, unless --expect-fail
is given, which inverts it (a connect timeout is then the expected result).
"""
import argparse
import os
import socket
import struct
import sys
import time


def wait_file(path: str, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def touch(path: str) -> None:
    with open(path, "w") as f:
        f.write(str(os.getpid()))


def read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("peer closed before a full response")
        buf.extend(data)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", default="")
    ap.add_argument("--sport", type=int, default=0)
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--last-size", type=int, default=0)
    ap.add_argument("--expect-stall", action="store_true")
    ap.add_argument("--tag", default="c", help="text put in every request, to tell clients apart")
    ap.add_argument("--connect-timeout", type=float, default=3.0)
    ap.add_argument("--io-timeout", type=float, default=3.0)
    ap.add_argument("--hold", type=float, default=0.0)
    ap.add_argument("--ready")
    ap.add_argument("--release")
    ap.add_argument("--hold-max", type=float, default=10.0)
    ap.add_argument("--phase2")
    ap.add_argument("--phase2-timeout", type=float, default=1.5)
    ap.add_argument("--close-after")
    ap.add_argument("--close", choices=["fin", "rst"], default="fin")
    ap.add_argument("--expect-fail", action="store_true")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.dst else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if args.src or args.sport:
        sock.bind((args.src, args.sport))
    sock.settimeout(args.connect_timeout)
    try:
        sock.connect((args.dst, args.port))
    except OSError as e:
        print(f"connect {args.dst}:{args.port} failed: {e}", flush=True)
        return 0 if args.expect_fail else 1
    if args.expect_fail:
        print(f"connect {args.dst}:{args.port} unexpectedly succeeded", flush=True)
        sock.close()
        return 1
    local = sock.getsockname()
    print(f"connected [{local[0]}]:{local[1]} -> [{args.dst}]:{args.port}", flush=True)
    sock.settimeout(args.io_timeout)
    buf = bytearray()
    for i in range(args.requests):
        size = args.last_size if args.last_size and i == args.requests - 1 else args.size
        body = f"REQ {args.tag} {local[1]} {i} "
        body += "x" * max(0, size - len(body))
        if args.expect_stall and i == args.requests - 1:
            try:
                sock.sendall(body.encode() + b"\n")
                read_line(sock, buf)
            except (OSError, ConnectionError) as e:
                print(f"exchange {i} stalled as expected: {e}", flush=True)
                return close(sock, args)
            print(f"exchange {i} unexpectedly completed", flush=True)
            close(sock, args)
            return 1
        sock.sendall(body.encode() + b"\n")
        read_line(sock, buf)
    print(f"done {args.requests} exchanges", flush=True)
    if args.ready:
        touch(args.ready)
    if args.release:
        wait_file(args.release, args.hold_max)
    elif args.hold > 0:
        time.sleep(args.hold)
    if args.phase2:
        if wait_file(args.phase2, args.hold_max):
            sock.sendall(f"REQ {args.tag} {local[1]} late ".encode() + b"z" * 16 + b"\n")
            sock.settimeout(args.phase2_timeout)
            try:
                read_line(sock, buf)
                print("late request answered", flush=True)
            except (OSError, ConnectionError) as e:
                print(f"late request not answered: {e}", flush=True)
    if args.close_after:
        wait_file(args.close_after, args.hold_max)
    return close(sock, args)


def close(sock: socket.socket, args: argparse.Namespace) -> int:
    """Closes with RST (--close rst) or FIN, then reads until the peer closes."""
    if args.close == "rst":
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return 0
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(args.io_timeout)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
