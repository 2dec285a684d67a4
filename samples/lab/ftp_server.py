#!/usr/bin/env python3
"""A small FTP server (RFC 959) for the NAT lab: enough of it for a client to log
in, list a directory and fetch one file in active (PORT, EPRT) or passive (PASV,
EPSV) mode, so that the kernel's FTP helper (nf_conntrack_ftp, nf_nat_ftp) has a
real control connection to rewrite and data connections to expect.

Every session serves the same fixed listing and file (no file system is read).
The server is bounded: it exits after --lifetime seconds or once --max-conns
control connections have all finished.
"""
import argparse
import os
import socket
import threading
import time

LISTING = b"-rw-r--r-- 1 ftp ftp 1200 Jan 10 00:00 report.txt\r\n"
FILE = b"".join(b"line %04d of the lab's report\r\n" % i for i in range(40))


def session(conn: socket.socket, data_port: int, lock: threading.Lock) -> None:
    f = conn.makefile("rwb", buffering=0)
    here = conn.getsockname()[0]
    family = conn.family
    active = None  # (address, port) the client asked to be connected to
    passive = None  # listening socket for the client's data connection

    def reply(line: str) -> None:
        f.write(line.encode() + b"\r\n")

    def data_conn() -> socket.socket:
        nonlocal active, passive
        if passive is not None:
            passive.settimeout(5)
            d, _ = passive.accept()
            passive.close()
            passive = None
            return d
        if active is None:
            raise OSError("no PORT or PASV")
        d = socket.socket(family, socket.SOCK_STREAM)
        d.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Active mode connects from port 20 (ftp-data), as servers do.
        with lock:
            d.bind((here, data_port))
            d.settimeout(5)
            d.connect(active)
        active = None
        return d

    reply("220 natcheck lab FTP")
    while True:
        line = f.readline()
        if not line:
            break
        cmd, _, arg = line.decode(errors="replace").strip().partition(" ")
        cmd = cmd.upper()
        if cmd == "USER":
            reply("331 Password required")
        elif cmd == "PASS":
            reply("230 Logged in")
        elif cmd == "SYST":
            reply("215 UNIX Type: L8")
        elif cmd == "TYPE":
            reply("200 Type set")
        elif cmd == "PWD":
            reply('257 "/" is the current directory')
        elif cmd == "PORT":
            n = [int(x) for x in arg.split(",")]
            active = (".".join(map(str, n[:4])), n[4] * 256 + n[5])
            reply("200 PORT command successful")
        elif cmd == "EPRT":
            d = arg[0]
            _, _, addr, port, _ = arg.split(d)
            active = (addr, int(port))
            reply("200 EPRT command successful")
        elif cmd in ("PASV", "EPSV"):
            passive = socket.socket(family, socket.SOCK_STREAM)
            passive.bind((here, 0))
            passive.listen(1)
            port = passive.getsockname()[1]
            if cmd == "PASV":
                a = here.replace(".", ",")
                reply(f"227 Entering Passive Mode ({a},{port >> 8},{port & 255})")
            else:
                reply(f"229 Entering Extended Passive Mode (|||{port}|)")
        elif cmd in ("LIST", "NLST", "RETR"):
            body = LISTING if cmd != "RETR" else FILE
            reply("150 Opening data connection")
            d = data_conn()
            d.sendall(body)
            d.close()
            reply("226 Transfer complete")
        elif cmd == "QUIT":
            reply("221 Goodbye")
            break
        else:
            reply("502 Command not implemented")
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=21)
    ap.add_argument("--data-port", type=int, default=20)
    ap.add_argument("--lifetime", type=float, default=20.0)
    ap.add_argument("--max-conns", type=int, default=8)
    ap.add_argument("--ready", help="file to create once listening")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((args.bind, args.port))
    ls.listen(8)
    ls.settimeout(0.1)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))
    lock = threading.Lock()
    threads = []
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline and len(threads) < args.max_conns:
        try:
            conn, _ = ls.accept()
        except socket.timeout:
            continue
        t = threading.Thread(target=session, args=(conn, args.data_port, lock), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
