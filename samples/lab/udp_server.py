#!/usr/bin/env python3
"""UDP responder for the NAT lab (answers DNS queries, echoes anything else).

A datagram that parses as a DNS query gets a DNS response carrying one A record
in 192.0.2.0/24; any other datagram is echoed back with an "ECHO " prefix.

The socket is bound to --bind (0.0.0.0 by default; '::' for IPv6). By default each reply leaves
from the address the request was sent to: the request's destination is read with
IP_PKTINFO and handed back as the reply's ipi_spec_dst, as well-behaved
multi-homed servers do. --reply-from ADDR forces ADDR as the source of every
reply instead, like a multi-homed server that ignores where the request went.
--sink answers nothing (a metrics collector: statsd, syslog).

A reply that cannot be sent (no route back to the client) is logged and skipped.

Bounded: exits after --lifetime seconds or --max datagrams.
"""
import argparse
import os
import socket
import struct
import sys
import time

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def dns_answer(query: bytes, counter: int):
    """Build a response for a single-question DNS query, or None if it is not one."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    pos = 12
    while pos < len(query):
        n = query[pos]
        if n == 0:
            break
        if n & 0xC0:
            return None
        pos += 1 + n
    pos += 1
    if pos + 4 > len(query):
        return None
    question = query[12 : pos + 4]
    qtype = struct.unpack("!H", query[pos : pos + 2])[0]
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1 if qtype == 1 else 0, 0, 0)
    if qtype != 1:
        return header + question
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 10 + counter % 200])
    return header + question + answer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--reply-from", default="")
    ap.add_argument("--lifetime", type=float, default=20.0)
    ap.add_argument("--max", type=int, default=200)
    ap.add_argument("--ready")
    ap.add_argument("--sink", action="store_true", help="receive and answer nothing")
    args = ap.parse_args()

    v6 = ":" in args.bind
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    sock.settimeout(0.1)
    # The request's destination address arrives as a control message: struct
    # in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; } for IPv4 (addr is
    # the header's destination), struct in6_pktinfo { in6_addr addr; int ifindex; }
    # for IPv6. The same structures, sent back, choose the reply's source.
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        level, ctype, alen = socket.IPPROTO_IPV6, IPV6_PKTINFO, 16
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        level, ctype, alen = socket.IPPROTO_IP, IP_PKTINFO, 4
    forced = socket.inet_pton(sock.family, args.reply_from) if args.reply_from else None
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))

    deadline = time.monotonic() + args.lifetime
    handled = 0
    while time.monotonic() < deadline and handled < args.max:
        try:
            data, cmsgs, _flags, peer = sock.recvmsg(2048, socket.CMSG_SPACE(20))
        except socket.timeout:
            continue
        source = forced
        for clevel, cctype, cdata in cmsgs:
            if source is None and clevel == level and cctype == ctype:
                if v6 and len(cdata) >= 16:
                    source = cdata[0:16]
                elif not v6 and len(cdata) >= 12:
                    source = cdata[8:12]
        ancillary = []
        if source is not None and len(source) == alen:
            if v6:
                info = struct.pack("=16sI", source, 0)
            else:
                info = struct.pack("=I4s4s", 0, source, b"\0\0\0\0")
            ancillary = [(level, ctype, info)]
        if args.sink:
            handled += 1
            continue
        reply = dns_answer(data, handled)
        if reply is None:
            reply = b"ECHO " + data
        try:
            sock.sendmsg([reply], ancillary, 0, peer)
        except OSError as e:
            # No route back to the client (an untranslated inside address): the
            # query stays unanswered, the responder keeps serving.
            print(f"reply to {peer[0]}:{peer[1]} not sent: {e}", flush=True)
        handled += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
