#!/usr/bin/env python3
"""An FTP client (Python's ftplib) for the NAT lab: logs in, lists the directory and
fetches one file, in active mode (the client sends PORT, or EPRT over IPv6, and the
server connects back) or passive mode (PASV, or EPSV over IPv6, and the client
connects to the address the server names), then quits. Exits non-zero if any step
fails or the file does not arrive whole.
"""
import argparse
import ftplib
import sys

EXPECTED = b"".join(b"line %04d of the lab's report\r\n" % i for i in range(40))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, default=21)
    ap.add_argument("--src", help="source address of the control connection")
    ap.add_argument("--mode", choices=("active", "passive"), default="passive")
    args = ap.parse_args()

    ftp = ftplib.FTP(source_address=(args.src, 0) if args.src else None, timeout=5)
    ftp.connect(args.dst, args.port)
    ftp.login("lab", "lab")
    ftp.set_pasv(args.mode == "passive")
    lines = []
    ftp.retrlines("LIST", lines.append)
    got = bytearray()
    ftp.retrbinary("RETR report.txt", got.extend)
    ftp.quit()
    if len(lines) != 1 or bytes(got) != EXPECTED:
        print(f"listing {lines!r}, {len(got)} bytes of {len(EXPECTED)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
