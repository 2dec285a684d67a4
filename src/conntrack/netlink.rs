//! The live conntrack table over ctnetlink: a dump of every entry of both address
//! families (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, family `AF_UNSPEC`), and a bounded
//! recording of the NEW, UPDATE and DESTROY events, optionally inside another network
//! namespace. Entries come out as the same [`Entry`] values the text reader makes
//! from `conntrack -L -o extended,id`, field for field, so every later stage treats
//! a live snapshot and a saved one alike.
//!
//! netlink-packet-netfilter 0.4 builds the request and reads the nfgenmsg header, but
//! its conntrack attributes stop at tuples with ports, status, timeout, mark and TCP
//! protocol info: it has no ICMP type/code/id, zones, id, use count, counters,
//! security context, timestamps, labels or helper, and a whole message fails when one
//! attribute is not what it expects. The attributes are therefore read here, from the
//! message bytes, with checked slicing throughout: the kernel's bytes are input like
//! any file, a malformed attribute makes its entry a located [`Warning`] (stream
//! offset and message number) and never a panic, and unknown attributes are skipped
//! so that newer kernels still read. An entry is read in steps (the attribute walk,
//! the checks between its tuples, its status flags), and its tuples and fields are
//! put together by the builder the text reader uses, so a tuple the text reader
//! would refuse (a TCP tuple without its ports) is refused here too.
//!
//! Reading follows libnetfilter_conntrack (what `conntrack` prints), so that the two
//! agree: `[UNREPLIED]` is IPS_SEEN_REPLY unset; of IPS_HW_OFFLOAD, IPS_OFFLOAD and
//! IPS_ASSURED only the first set one is a flag; `delta-time=` is the age of entries
//! the kernel timestamps (`nf_conntrack_timestamp=1`); `zone=` exists only for
//! non-default zones because the kernel sends nothing for zone 0. Labels are named
//! from `/etc/xtables/connlabel.conf` like the tool does, and bits without a name
//! keep their number (the tool leaves them out). Events that a program's request
//! caused (a `conntrack -D`, a proxy's cleanup) carry `[USERSPACE]` and `portid=`, as
//! `conntrack -E` prints them; the program's name (`progname=`) is not looked up.
//!
//! A network namespace is entered with `setns(2)` in a thread of its own that only
//! opens the socket and ends: the socket stays bound to that namespace, and no other
//! thread of the process (rayon's pool included) ever changes namespace.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

use super::build::{carries_ports, CtTuple, EntryParts, TupleError, TupleParts};
use super::text::USERSPACE;
use super::{Counters, Entry, Event, EventKind, Flags};
use crate::diag::{Location, Warning};
use crate::model::Proto;

/// The `source` of warnings about what the kernel sent.
pub const SOURCE: &str = "netlink";

/// Where `ip netns add` puts its namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Where conntrack-tools reads label names.
pub const CONNLABEL_CONF: &str = "/etc/xtables/connlabel.conf";

/// Big enough for any netlink datagram: the kernel sizes dump batches to at most
/// 32 KiB (`netlink_dump`), events are single entries.
const RECV_BUF: usize = 64 * 1024;

/// Receive buffer asked for when recording events, so bursts are not dropped while
/// the output is written (the kernel caps it at `net.core.rmem_max`).
const EVENT_RCVBUF: usize = 8 * 1024 * 1024;

// Netlink control messages (linux/netlink.h).
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLMSG_HDRLEN: usize = 16;

// nfnetlink subsystem and ctnetlink message types (nfnetlink_conntrack.h).
const NFNL_SUBSYS_CTNETLINK: u8 = 1;
const IPCTNL_MSG_CT_NEW: u8 = 0;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;
const NFGENMSG_LEN: usize = 4;

// Multicast groups of conntrack events (nfnetlink.h, enum nfnetlink_groups).
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// The attribute type bits; the top two are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// ctnetlink attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
mod cta {
    pub const TUPLE_ORIG: u16 = 1;
    pub const TUPLE_REPLY: u16 = 2;
    pub const STATUS: u16 = 3;
    pub const PROTOINFO: u16 = 4;
    pub const HELP: u16 = 5;
    pub const TIMEOUT: u16 = 7;
    pub const MARK: u16 = 8;
    pub const COUNTERS_ORIG: u16 = 9;
    pub const COUNTERS_REPLY: u16 = 10;
    pub const USE: u16 = 11;
    pub const ID: u16 = 12;
    pub const SECMARK: u16 = 17;
    pub const ZONE: u16 = 18;
    pub const SECCTX: u16 = 19;
    pub const TIMESTAMP: u16 = 20;
    pub const LABELS: u16 = 22;

    // Inside a tuple.
    pub const TUPLE_IP: u16 = 1;
    pub const TUPLE_PROTO: u16 = 2;
    pub const TUPLE_ZONE: u16 = 3;
    pub const IP_V4_SRC: u16 = 1;
    pub const IP_V4_DST: u16 = 2;
    pub const IP_V6_SRC: u16 = 3;
    pub const IP_V6_DST: u16 = 4;
    pub const PROTO_NUM: u16 = 1;
    pub const PROTO_SRC_PORT: u16 = 2;
    pub const PROTO_DST_PORT: u16 = 3;
    pub const PROTO_ICMP_ID: u16 = 4;
    pub const PROTO_ICMP_TYPE: u16 = 5;
    pub const PROTO_ICMP_CODE: u16 = 6;
    pub const PROTO_ICMPV6_ID: u16 = 7;
    pub const PROTO_ICMPV6_TYPE: u16 = 8;
    pub const PROTO_ICMPV6_CODE: u16 = 9;

    // Inside CTA_PROTOINFO: one nest per protocol, each with its state first.
    pub const PROTOINFO_TCP: u16 = 1;
    pub const PROTOINFO_DCCP: u16 = 2;
    pub const PROTOINFO_SCTP: u16 = 3;
    pub const PROTOINFO_STATE: u16 = 1;

    // Inside CTA_COUNTERS_*.
    pub const COUNTERS_PACKETS: u16 = 1;
    pub const COUNTERS_BYTES: u16 = 2;
    pub const COUNTERS32_PACKETS: u16 = 3;
    pub const COUNTERS32_BYTES: u16 = 4;

    // Inside CTA_TIMESTAMP, CTA_SECCTX, CTA_HELP.
    pub const TIMESTAMP_START: u16 = 1;
    pub const TIMESTAMP_STOP: u16 = 2;
    pub const SECCTX_NAME: u16 = 1;
    pub const HELP_NAME: u16 = 1;
}

// Status bits (linux/netfilter/nf_conntrack_common.h).
const IPS_SEEN_REPLY: u32 = 1 << 1;
const IPS_ASSURED: u32 = 1 << 2;
const IPS_OFFLOAD: u32 = 1 << 14;
const IPS_HW_OFFLOAD: u32 = 1 << 15;

/// TCP states by number, as libnetfilter_conntrack 1.0.9 names them (the kernel's
/// `tcp_conntrack_names`, except that it says SYN_SENT2 where older tools said LISTEN).
const TCP_STATES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

const SCTP_STATES: [&str; 10] = [
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED",
];

const DCCP_STATES: [&str; 10] = [
    "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE",
    "INVALID",
];

/// Why the table could not be read. Malformed entries are not errors but warnings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("natcheck snapshot needs CAP_NET_ADMIN (run as root)")]
    NeedsNetAdmin,
    #[error(
        "network namespace `{name}` not found: no {} (`ip netns list` shows the names)",
        path.display()
    )]
    NetnsNotFound { name: String, path: PathBuf },
    #[error("entering network namespace `{name}` needs CAP_SYS_ADMIN (run as root)")]
    NetnsDenied { name: String },
    #[error("{} is not a network namespace", path.display())]
    NotANetns { path: PathBuf },
    #[error(
        "the kernel does not answer conntrack requests: is nf_conntrack_netlink loaded? \
         (`modprobe nf_conntrack_netlink`; {reason})"
    )]
    NoCtnetlink { reason: String },
    #[error("netlink: {context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink: {0}")]
    Protocol(String),
    #[error("writing events")]
    Output(#[source] io::Error),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| {
        if source.raw_os_error() == Some(libc::EPERM) {
            Error::NeedsNetAdmin
        } else {
            Error::Io { context, source }
        }
    }
}

/// Bit numbers of connection labels and their names (`connlabel.conf`: `BIT NAME`
/// per line, `#` comments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelNames(BTreeMap<u32, String>);

impl LabelNames {
    pub fn parse(text: &str) -> LabelNames {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            if let (Some(bit), Some(name)) = (words.next(), words.next()) {
                if let Ok(bit) = bit.parse::<u32>() {
                    // The first name given for a bit wins, as in the library.
                    map.entry(bit).or_insert_with(|| name.to_string());
                }
            }
        }
        LabelNames(map)
    }

    /// The system's names; none when the file does not exist or cannot be read.
    pub fn system() -> LabelNames {
        std::fs::read_to_string(CONNLABEL_CONF)
            .map(|t| LabelNames::parse(&t))
            .unwrap_or_default()
    }

    /// The bit's name, or its number when it has none.
    pub fn name(&self, bit: u32) -> String {
        self.0.get(&bit).cloned().unwrap_or_else(|| bit.to_string())
    }
}

/// What reading an entry needs besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct ParseContext {
    pub labels: LabelNames,
    /// Seconds since the epoch, for the age of entries that have not ended.
    pub now_s: i64,
}

impl ParseContext {
    pub fn system() -> ParseContext {
        ParseContext {
            labels: LabelNames::system(),
            now_s: unix_now_ns().div_euclid(1_000_000_000),
        }
    }
}

/// A malformed attribute: where (bytes from the start of the nfnetlink payload,
/// i.e. the nfgenmsg header) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrError {
    pub offset: usize,
    pub message: String,
}

fn attr_err<T>(offset: usize, message: impl Into<String>) -> Result<T, AttrError> {
    Err(AttrError {
        offset,
        message: message.into(),
    })
}

/// The table: every entry read, and a warning per message that could not be.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
    pub warnings: Vec<Warning>,
}

/// What a recording of events saw besides the events themselves.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub events: u64,
    /// Times the kernel reported its queue to us full (ENOBUFS): each time, one or
    /// more events were lost.
    pub overruns: u64,
    pub warnings: Vec<Warning>,
}

/// Dumps the conntrack table of the current network namespace, or of `netns` (a name
/// under `/var/run/netns`, or a path such as `/proc/PID/ns/net`).
pub fn dump(netns: Option<&str>) -> Result<Table, Error> {
    let socket = open(netns)?;
    let seq = 1;
    let request = dump_request(seq);
    socket
        .send(&request, 0)
        .map_err(io_err("sending the dump request"))?;
    let ctx = ParseContext::system();
    let mut table = Table::default();
    let mut reader = Reader::default();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = recv(&socket, &mut buf, 0).map_err(io_err("reading the dump"))?;
        let Some(chunk) = buf.get(..n) else {
            return Err(Error::Protocol("short read".into()));
        };
        let mut done = false;
        reader.each_message(chunk, |m| match m {
            Msg::Done => done = true,
            Msg::Entry {
                offset,
                index,
                parsed,
                ..
            } => match parsed.read(&ctx) {
                Ok(e) => table.entries.push(e),
                Err(e) => table.warnings.push(entry_warning(offset, index, e)),
            },
        })?;
        if done {
            return Ok(table);
        }
    }
}

/// Sorts a table as `natcheck snapshot` prints it: by ORIGINAL tuple, zone, REPLY
/// tuple and id, so that two snapshots diff cleanly.
pub fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        (a.l3num, a.orig, a.zone_id(), a.reply, a.id).cmp(&(
            b.l3num,
            b.orig,
            b.zone_id(),
            b.reply,
            b.id,
        ))
    });
}

/// Records conntrack events for `duration`, handing each to `sink` as it arrives
/// (stamped with the time it was read). Stops early when `sink` fails.
pub fn record_events(
    netns: Option<&str>,
    duration: Duration,
    sink: impl FnMut(Event) -> io::Result<()>,
) -> Result<Recording, Error> {
    let deadline = Instant::now() + duration;
    record_events_while(
        netns,
        || {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then_some(left)
        },
        sink,
    )
}

/// Records conntrack events for as long as `go_on` says, handing each to `sink` as
/// it arrives. `go_on` is asked before every wait, first once subscribed (so the
/// first call says that every later event will be seen): `Some(d)` waits up to `d`
/// for events, `None` ends the recording.
pub fn record_events_while(
    netns: Option<&str>,
    mut go_on: impl FnMut() -> Option<Duration>,
    mut sink: impl FnMut(Event) -> io::Result<()>,
) -> Result<Recording, Error> {
    let socket = open(netns)?;
    // A larger queue only lowers the risk of losing events; refusal is not fatal.
    let _ = socket.set_rx_buf_sz(EVENT_RCVBUF);
    for group in [
        NFNLGRP_CONNTRACK_NEW,
        NFNLGRP_CONNTRACK_UPDATE,
        NFNLGRP_CONNTRACK_DESTROY,
    ] {
        socket
            .add_membership(group)
            .map_err(io_err("subscribing to conntrack events"))?;
    }
    let mut ctx = ParseContext::system();
    let mut rec = Recording::default();
    let mut reader = Reader::default();
    let mut buf = vec![0u8; RECV_BUF];
    while let Some(left) = go_on() {
        if !readable(&socket, left).map_err(io_err("waiting for events"))? {
            continue;
        }
        let n = match recv(&socket, &mut buf, libc::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                rec.overruns += 1;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_err("reading events")(e)),
        };
        let now_ns = unix_now_ns();
        ctx.now_s = now_ns.div_euclid(1_000_000_000);
        let Some(chunk) = buf.get(..n) else {
            return Err(Error::Protocol("short read".into()));
        };
        let mut out = Ok(());
        reader.each_message(chunk, |m| {
            let Msg::Entry {
                offset,
                index,
                kind,
                portid,
                parsed,
            } = m
            else {
                return;
            };
            if out.is_err() {
                return;
            }
            match parsed.read(&ctx) {
                Ok(mut entry) => {
                    rec.events += 1;
                    if portid != 0 {
                        // A program's request (`conntrack -D`, a proxy's cleanup)
                        // caused this event; conntrack -E prints it the same way.
                        entry.flags.other.push(USERSPACE.to_string());
                        entry.extra.push(("portid".to_string(), portid.to_string()));
                    }
                    out = sink(Event {
                        kind,
                        time_ns: Some(now_ns),
                        local_time: None,
                        entry,
                    });
                }
                Err(e) => rec.warnings.push(entry_warning(offset, index, e)),
            }
        })?;
        out.map_err(Error::Output)?;
    }
    if rec.overruns > 0 {
        rec.warnings.push(Warning::new(
            SOURCE,
            Location::File,
            format!(
                "the kernel dropped events {} time(s) (ENOBUFS): the recording is incomplete",
                rec.overruns
            ),
        ));
    }
    Ok(rec)
}

fn entry_warning(offset: u64, index: u64, e: AttrError) -> Warning {
    Warning::new(
        SOURCE,
        Location::Byte {
            offset: offset + e.offset as u64,
            frame: Some(index),
        },
        format!("conntrack entry not read: {}", e.message),
    )
}

/// Nanoseconds since the Unix epoch, now.
fn unix_now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The dump request: nfgenmsg for AF_UNSPEC (both families), no attributes.
fn dump_request(seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            ConntrackMessage::Get(vec![]),
        )),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

// ------------------------------------------------------------------ socket

/// A NETLINK_NETFILTER socket connected to the kernel, in `netns` when given.
fn open(netns: Option<&str>) -> Result<Socket, Error> {
    let Some(name) = netns else {
        return new_socket();
    };
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        PathBuf::from(NETNS_DIR).join(name)
    };
    let name = name.to_string();
    // The thread enters the namespace, opens the socket and ends: only it ever runs
    // in the other namespace, and the socket keeps the namespace it was made in.
    std::thread::Builder::new()
        .name("natcheck-netns".into())
        .spawn(move || {
            enter_netns(&name, path)?;
            new_socket()
        })
        .map_err(io_err("starting the namespace thread"))?
        .join()
        .unwrap_or_else(|_| Err(Error::Protocol("the namespace thread panicked".into())))
}

fn enter_netns(name: &str, path: PathBuf) -> Result<(), Error> {
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NetnsNotFound {
                name: name.to_string(),
                path,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(Error::NetnsDenied {
                name: name.to_string(),
            })
        }
        Err(source) => {
            return Err(Error::Io {
                context: format!("opening {}", path.display()),
                source,
            })
        }
    };
    // SAFETY: setns() only reads the descriptor, which `file` keeps open for the
    // duration of the call, and changes the namespace of the calling thread alone.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EPERM) => Error::NetnsDenied {
            name: name.to_string(),
        },
        Some(libc::EINVAL) => Error::NotANetns { path },
        _ => Error::Io {
            context: format!("entering {}", path.display()),
            source: e,
        },
    })
}

fn new_socket() -> Result<Socket, Error> {
    let mut socket = match Socket::new(NETLINK_NETFILTER) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
            return Err(Error::NoCtnetlink {
                reason: "the kernel has no nfnetlink".into(),
            })
        }
        Err(e) => return Err(io_err("opening a netfilter socket")(e)),
    };
    socket
        .bind_auto()
        .map_err(io_err("binding the netfilter socket"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(io_err("connecting to the kernel"))?;
    Ok(socket)
}

/// One datagram; fails rather than truncate one that does not fit.
fn recv(socket: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        match socket.recv(&mut &mut buf[..], flags | libc::MSG_TRUNC) {
            Ok(n) if n > buf.len() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a {n}-byte message does not fit the {}-byte buffer",
                        buf.len()
                    ),
                ))
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits up to `timeout` for the socket to have something to read.
fn readable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up, so that a deadline a fraction of a millisecond away does not spin.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is one valid pollfd that outlives the call; nfds is 1.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

// ------------------------------------------------------------------ messages

/// One netlink message of interest.
enum Msg<'a> {
    Done,
    /// A ctnetlink entry: the byte offset of its nfnetlink payload in the stream, its
    /// message number, the event kind it would be, the netlink port of the program
    /// whose request caused it (0 for the kernel's own events), and its reader.
    Entry {
        offset: u64,
        index: u64,
        kind: EventKind,
        portid: u32,
        parsed: EntryReader<'a>,
    },
}

/// Reads the entry on demand, so the caller decides the context.
struct EntryReader<'a> {
    /// The nfgenmsg address family, or why the header could not be read.
    family: Result<u8, String>,
    attrs: &'a [u8],
}

impl EntryReader<'_> {
    fn read(&self, ctx: &ParseContext) -> Result<Entry, AttrError> {
        let family = self.family.clone().or_else(|e| attr_err(0, e))?;
        parse_entry(family, self.attrs, ctx).map_err(|e| AttrError {
            offset: e.offset + NFGENMSG_LEN,
            message: e.message,
        })
    }
}

/// Position in the message stream, for warnings.
#[derive(Default)]
struct Reader {
    offset: u64,
    index: u64,
}

impl Reader {
    /// Walks the messages of one datagram. Kernel errors end the walk as errors;
    /// messages that are neither entries nor control messages are skipped.
    fn each_message<'a>(
        &mut self,
        chunk: &'a [u8],
        mut f: impl FnMut(Msg<'a>),
    ) -> Result<(), Error> {
        let mut pos = 0usize;
        while pos < chunk.len() {
            let rest = chunk.get(pos..).unwrap_or_default();
            let nl = NetlinkBuffer::new_checked(rest).map_err(|e| {
                Error::Protocol(format!(
                    "byte {}: malformed netlink header: {e}",
                    self.offset + pos as u64
                ))
            })?;
            let len = nl.length() as usize;
            let payload = rest.get(NLMSG_HDRLEN..len).unwrap_or_default();
            let base = self.offset + (pos + NLMSG_HDRLEN) as u64;
            self.index += 1;
            match nl.message_type() {
                NLMSG_NOOP => {}
                NLMSG_DONE => {
                    // A dump may end with its error code in the DONE message.
                    if let Some(code) = errno_of(payload).filter(|&c| c < 0) {
                        return Err(kernel_error(-code));
                    }
                    f(Msg::Done);
                }
                NLMSG_ERROR => match errno_of(payload) {
                    Some(0) => {}
                    Some(code) => return Err(kernel_error(code.saturating_neg())),
                    None => {
                        return Err(Error::Protocol(format!(
                            "byte {base}: truncated error message"
                        )))
                    }
                },
                NLMSG_OVERRUN => {
                    return Err(Error::Protocol("the kernel reported an overrun".into()))
                }
                t if (t >> 8) as u8 == NFNL_SUBSYS_CTNETLINK => {
                    let kind = match t as u8 {
                        IPCTNL_MSG_CT_DELETE => Some(EventKind::Destroy),
                        IPCTNL_MSG_CT_NEW if nl.flags() & (NLM_F_CREATE | NLM_F_EXCL) != 0 => {
                            Some(EventKind::New)
                        }
                        IPCTNL_MSG_CT_NEW | IPCTNL_MSG_CT_GET => Some(EventKind::Update),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        // The crate reads the nfgenmsg header (family, version, res_id).
                        let family = NetfilterHeader::parse(payload)
                            .map(|h| u8::from(h.family))
                            .map_err(|e| format!("nfgenmsg header: {e}"));
                        let attrs = payload.get(NFGENMSG_LEN..).unwrap_or_default();
                        f(Msg::Entry {
                            offset: base,
                            index: self.index,
                            kind,
                            portid: nl.port_number(),
                            parsed: EntryReader { family, attrs },
                        });
                    }
                }
                _ => {}
            }
            // Messages are 4-byte aligned; the last one may end the datagram early.
            pos = pos.saturating_add(align4(len));
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The errno at the start of an NLMSG_ERROR or NLMSG_DONE payload (negative).
fn errno_of(payload: &[u8]) -> Option<i32> {
    payload.first_chunk::<4>().map(|b| i32::from_ne_bytes(*b))
}

fn kernel_error(errno: i32) -> Error {
    match errno {
        libc::EPERM => Error::NeedsNetAdmin,
        libc::EINVAL | libc::EOPNOTSUPP | libc::EAFNOSUPPORT => Error::NoCtnetlink {
            reason: io::Error::from_raw_os_error(errno).to_string(),
        },
        _ => Error::Io {
            context: "the kernel refused the request".into(),
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

// ------------------------------------------------------------------ attributes

/// One attribute: its type (flags masked off), where its value starts, its value.
#[derive(Clone, Copy, Debug)]
struct Nla<'a> {
    kind: u16,
    off: usize,
    value: &'a [u8],
}

impl Nla<'_> {
    fn fixed<const N: usize>(&self, what: &str) -> Result<[u8; N], AttrError> {
        <[u8; N]>::try_from(self.value).or_else(|_| {
            attr_err(
                self.off,
                format!("{what}: {} bytes where {N} were expected", self.value.len()),
            )
        })
    }

    fn u8(&self, what: &str) -> Result<u8, AttrError> {
        self.fixed::<1>(what).map(|[b]| b)
    }

    fn be16(&self, what: &str) -> Result<u16, AttrError> {
        self.fixed(what).map(u16::from_be_bytes)
    }

    fn be32(&self, what: &str) -> Result<u32, AttrError> {
        self.fixed(what).map(u32::from_be_bytes)
    }

    fn be64(&self, what: &str) -> Result<u64, AttrError> {
        self.fixed(what).map(u64::from_be_bytes)
    }

    /// A NUL-terminated string; bytes after the first NUL are padding.
    fn string(&self) -> String {
        let s = self.value.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(s).into_owned()
    }

    fn nested(&self) -> NlaIter<'_> {
        nlas(self.value, self.off)
    }
}

/// The attributes of `buf`, whose first byte is at `base` in the message.
fn nlas(buf: &[u8], base: usize) -> NlaIter<'_> {
    NlaIter {
        buf,
        pos: 0,
        base,
        failed: false,
    }
}

struct NlaIter<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> Iterator for NlaIter<'a> {
    type Item = Result<Nla<'a>, AttrError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let at = self.base + self.pos;
        let Some(hdr) = rest.first_chunk::<4>() else {
            self.failed = true;
            return Some(attr_err(
                at,
                format!("{} stray bytes after the last attribute", rest.len()),
            ));
        };
        let len = u16::from_ne_bytes([hdr[0], hdr[1]]) as usize;
        let kind = u16::from_ne_bytes([hdr[2], hdr[3]]) & NLA_TYPE_MASK;
        let Some(value) = rest.get(4..len).filter(|_| len >= 4) else {
            self.failed = true;
            return Some(attr_err(
                at,
                format!(
                    "attribute {kind} claims {len} bytes, {} are left",
                    rest.len()
                ),
            ));
        };
        // The padding after the last attribute may be missing; the walk ends there.
        self.pos = self.pos.saturating_add(align4(len)).min(self.buf.len());
        Some(Ok(Nla {
            kind,
            off: at + 4,
            value,
        }))
    }
}

/// A tuple as read, before its protocol decides what the port fields mean.
#[derive(Default)]
struct RawTuple {
    parts: TupleParts,
    proto: Option<u8>,
    zone: Option<u16>,
    off: usize,
}

fn read_tuple(nla: &Nla<'_>) -> Result<RawTuple, AttrError> {
    let mut t = RawTuple {
        off: nla.off,
        ..RawTuple::default()
    };
    for a in nla.nested() {
        let a = a?;
        match a.kind {
            cta::TUPLE_IP => read_addresses(&a, &mut t.parts)?,
            cta::TUPLE_PROTO => read_proto(&a, &mut t)?,
            cta::TUPLE_ZONE => t.zone = Some(a.be16("tuple zone")?),
            _ => {}
        }
    }
    Ok(t)
}

/// CTA_TUPLE_IP: the source and destination, IPv4 or IPv6.
fn read_addresses(nla: &Nla<'_>, p: &mut TupleParts) -> Result<(), AttrError> {
    for b in nla.nested() {
        let b = b?;
        match b.kind {
            cta::IP_V4_SRC => p.src = Some(Ipv4Addr::from(b.fixed::<4>("IPv4 source")?).into()),
            cta::IP_V4_DST => {
                p.dst = Some(Ipv4Addr::from(b.fixed::<4>("IPv4 destination")?).into())
            }
            cta::IP_V6_SRC => p.src = Some(Ipv6Addr::from(b.fixed::<16>("IPv6 source")?).into()),
            cta::IP_V6_DST => {
                p.dst = Some(Ipv6Addr::from(b.fixed::<16>("IPv6 destination")?).into())
            }
            _ => {}
        }
    }
    Ok(())
}

/// CTA_TUPLE_PROTO: the protocol number, ports (GRE keys too) and ICMP fields.
fn read_proto(nla: &Nla<'_>, t: &mut RawTuple) -> Result<(), AttrError> {
    let p = &mut t.parts;
    for b in nla.nested() {
        let b = b?;
        match b.kind {
            cta::PROTO_NUM => t.proto = Some(b.u8("protocol number")?),
            cta::PROTO_SRC_PORT => p.sport = Some(b.be16("source port")?),
            cta::PROTO_DST_PORT => p.dport = Some(b.be16("destination port")?),
            cta::PROTO_ICMP_ID | cta::PROTO_ICMPV6_ID => {
                p.icmp_id = Some(b.be16("ICMP identifier")?)
            }
            cta::PROTO_ICMP_TYPE | cta::PROTO_ICMPV6_TYPE => p.icmp_type = Some(b.u8("ICMP type")?),
            cta::PROTO_ICMP_CODE | cta::PROTO_ICMPV6_CODE => p.icmp_code = Some(b.u8("ICMP code")?),
            _ => {}
        }
    }
    Ok(())
}

impl RawTuple {
    /// The tuple, built by the rules shared with the text reader.
    fn finish(&self, which: &str) -> Result<CtTuple, AttrError> {
        let proto = self.proto.map(Proto::from_number);
        // Without a protocol number the addresses are still checked first.
        let built = self.parts.build(proto.unwrap_or(Proto::Other(0)));
        let message = match (built, proto) {
            (Ok(t), Some(_)) => return Ok(t),
            (Err(TupleError::NoAddresses), _) => format!("{which} tuple without its addresses"),
            (Err(TupleError::MixedFamilies), _) => {
                format!("{which} tuple mixes IPv4 and IPv6 addresses")
            }
            (_, None) => format!("{which} tuple without a protocol number"),
            (Err(TupleError::MissingPort), Some(p)) if carries_ports(p) => {
                format!("{which} tuple without both of its {p} ports")
            }
            (Err(TupleError::MissingPort), Some(_)) => {
                format!("{which} tuple with one port field and not the other")
            }
        };
        attr_err(self.off, message)
    }
}

fn read_counters(nla: &Nla<'_>) -> Result<Option<Counters>, AttrError> {
    let (mut packets, mut bytes) = (None, None);
    for a in nla.nested() {
        let a = a?;
        match a.kind {
            cta::COUNTERS_PACKETS => packets = Some(a.be64("packet count")?),
            cta::COUNTERS_BYTES => bytes = Some(a.be64("byte count")?),
            cta::COUNTERS32_PACKETS => packets = Some(a.be32("packet count")?.into()),
            cta::COUNTERS32_BYTES => bytes = Some(a.be32("byte count")?.into()),
            _ => {}
        }
    }
    // conntrack prints counters only when it has both.
    Ok(packets
        .zip(bytes)
        .map(|(packets, bytes)| Counters { packets, bytes }))
}

fn state_name(table: &[&str], prefix: &str, n: u8) -> String {
    // Numbers past the table are kept as numbers (the tool would print NONE).
    table
        .get(n as usize)
        .map_or_else(|| format!("{prefix}_STATE_{n}"), |s| s.to_string())
}

fn read_state(nla: &Nla<'_>) -> Result<Option<String>, AttrError> {
    let mut state = None;
    for a in nla.nested() {
        let a = a?;
        let (table, prefix): (&[&str], &str) = match a.kind {
            cta::PROTOINFO_TCP => (&TCP_STATES, "TCP"),
            cta::PROTOINFO_SCTP => (&SCTP_STATES, "SCTP"),
            cta::PROTOINFO_DCCP => (&DCCP_STATES, "DCCP"),
            _ => continue,
        };
        for b in a.nested() {
            let b = b?;
            if b.kind == cta::PROTOINFO_STATE {
                state = Some(state_name(table, prefix, b.u8("protocol state")?));
            }
        }
    }
    Ok(state)
}

/// Set label bits, lowest first. The kernel copies its `unsigned long` array, so the
/// bits are read word by word in the machine's own order.
fn label_bits(nla: &Nla<'_>) -> Result<Vec<u32>, AttrError> {
    const WORD: usize = std::mem::size_of::<usize>();
    if nla.value.len() % WORD != 0 {
        return attr_err(
            nla.off,
            format!("labels: {} bytes, not whole words", nla.value.len()),
        );
    }
    let mut bits = Vec::new();
    for (w, chunk) in nla.value.chunks_exact(WORD).enumerate() {
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        let word = usize::from_ne_bytes(word);
        for b in 0..usize::BITS {
            if word >> b & 1 == 1 {
                bits.push(w as u32 * usize::BITS + b);
            }
        }
    }
    Ok(bits)
}

/// The attributes of one entry as read, in any order.
#[derive(Default)]
struct RawEntry {
    orig: Option<RawTuple>,
    reply: Option<RawTuple>,
    status: Option<u32>,
    parts: EntryParts,
}

/// Reads one entry from the attributes after the nfgenmsg header. `family` is the
/// header's (2 or 10) and becomes the entry's layer-3 number. Offsets in errors
/// count from the first attribute.
pub fn parse_entry(family: u8, attrs: &[u8], ctx: &ParseContext) -> Result<Entry, AttrError> {
    let raw = read_attrs(attrs, ctx)?;
    let Some(orig_raw) = &raw.orig else {
        return attr_err(0, "no ORIGINAL tuple");
    };
    let Some(reply_raw) = &raw.reply else {
        return attr_err(0, "no REPLY tuple");
    };
    let (orig, reply) = both_tuples(orig_raw, reply_raw, family)?;
    let parts = EntryParts {
        l3num: Some(family),
        flags: raw.status.map(status_flags).unwrap_or_default(),
        zone_orig: orig_raw.zone,
        zone_reply: reply_raw.zone,
        ..raw.parts
    };
    Ok(parts.into_entry(0, orig, reply))
}

/// Walks the entry's attributes; those natcheck does not know are skipped.
fn read_attrs(attrs: &[u8], ctx: &ParseContext) -> Result<RawEntry, AttrError> {
    let mut e = RawEntry::default();
    let p = &mut e.parts;
    for a in nlas(attrs, 0) {
        let a = a?;
        match a.kind {
            cta::TUPLE_ORIG => e.orig = Some(read_tuple(&a)?),
            cta::TUPLE_REPLY => e.reply = Some(read_tuple(&a)?),
            cta::STATUS => e.status = Some(a.be32("status")?),
            cta::PROTOINFO => p.state = read_state(&a)?,
            cta::TIMEOUT => p.timeout_s = Some(a.be32("timeout")?.into()),
            cta::MARK => p.mark = Some(a.be32("mark")?),
            cta::COUNTERS_ORIG => p.orig_counters = read_counters(&a)?,
            cta::COUNTERS_REPLY => p.reply_counters = read_counters(&a)?,
            cta::USE => p.use_count = Some(a.be32("use count")?),
            cta::ID => p.id = Some(a.be32("id")?),
            cta::ZONE => p.zone = Some(a.be16("zone")?),
            cta::SECMARK => {
                let secmark = a.be32("secmark")?.to_string();
                p.extra.push(("secmark".to_string(), secmark))
            }
            cta::SECCTX => {
                if let Some(name) = nested_strings(&a, cta::SECCTX_NAME)?.pop() {
                    p.secctx = Some(name);
                }
            }
            cta::HELP => {
                for name in nested_strings(&a, cta::HELP_NAME)? {
                    p.extra.push(("helper".to_string(), name));
                }
            }
            cta::TIMESTAMP => {
                if let Some(age) = read_age(&a, ctx.now_s)? {
                    p.delta_time_s = Some(age);
                }
            }
            cta::LABELS => {
                p.labels = label_bits(&a)?
                    .into_iter()
                    .map(|b| ctx.labels.name(b))
                    .collect()
            }
            _ => {}
        }
    }
    Ok(e)
}

/// The strings of the nested attributes of type `kind`, in order. They are names (a
/// helper's, a security context's) that the text form writes as one `key=value`
/// word, so a blank, a control character or a backslash in one is written as `\xNN`:
/// the entry stays readable and the name recognisable.
fn nested_strings(nla: &Nla<'_>, kind: u16) -> Result<Vec<String>, AttrError> {
    let mut out = Vec::new();
    for b in nla.nested() {
        let b = b?;
        if b.kind == kind {
            let mut name = String::new();
            for c in b.string().chars() {
                if c.is_whitespace() || c.is_control() || c == '\\' {
                    let mut buf = [0; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        name.push_str(&format!("\\x{byte:02x}"));
                    }
                } else {
                    name.push(c);
                }
            }
            out.push(name);
        }
    }
    Ok(out)
}

/// CTA_TIMESTAMP as `delta-time=`: none without a start time.
fn read_age(nla: &Nla<'_>, now_s: i64) -> Result<Option<u64>, AttrError> {
    let (mut start, mut stop) = (None, None);
    for b in nla.nested() {
        let b = b?;
        match b.kind {
            cta::TIMESTAMP_START => start = Some(b.be64("start time")?),
            cta::TIMESTAMP_STOP => stop = Some(b.be64("stop time")?),
            _ => {}
        }
    }
    Ok(start.map(|start| age_s(start, stop, now_s)))
}

/// An entry's age as libnetfilter_conntrack prints it: whole seconds of each end (in
/// nanoseconds since the epoch), the end being now while the entry lives (no stop
/// time, or 0), and never negative.
fn age_s(start_ns: u64, stop_ns: Option<u64>, now_s: i64) -> u64 {
    let end_s = match stop_ns.filter(|&s| s != 0) {
        Some(stop) => (stop / 1_000_000_000) as i64,
        None => now_s,
    };
    let start_s = (start_ns / 1_000_000_000) as i64;
    end_s.saturating_sub(start_s).max(0) as u64
}

/// Both tuples, checked against each other and against the message's address family.
fn both_tuples(
    orig_raw: &RawTuple,
    reply_raw: &RawTuple,
    family: u8,
) -> Result<(CtTuple, CtTuple), AttrError> {
    let orig = orig_raw.finish("ORIGINAL")?;
    let reply = reply_raw.finish("REPLY")?;
    if orig.tuple.proto != reply.tuple.proto {
        return attr_err(
            reply_raw.off,
            format!(
                "REPLY tuple protocol {} differs from ORIGINAL {}",
                reply.tuple.proto.number(),
                orig.tuple.proto.number()
            ),
        );
    }
    let v4 = match family {
        2 => true,
        10 => false,
        n => return attr_err(0, format!("address family {n} is neither IPv4 nor IPv6")),
    };
    if orig.tuple.src.is_ipv4() != v4 || reply.tuple.src.is_ipv4() != v4 {
        return attr_err(
            orig_raw.off,
            format!("addresses do not belong to address family {family}"),
        );
    }
    Ok((orig, reply))
}

/// The bracketed flags of a status word, as the printer chooses them: `[UNREPLIED]`
/// when no reply was seen, and only the first of HW_OFFLOAD, OFFLOAD and ASSURED.
fn status_flags(s: u32) -> Flags {
    Flags {
        unreplied: s & IPS_SEEN_REPLY == 0,
        hw_offload: s & IPS_HW_OFFLOAD != 0,
        offload: s & IPS_OFFLOAD != 0 && s & IPS_HW_OFFLOAD == 0,
        assured: s & IPS_ASSURED != 0 && s & (IPS_OFFLOAD | IPS_HW_OFFLOAD) == 0,
        other: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn entries_sort_by_tuple_then_zone_then_id() {
        let text = "\
ipv4     2 udp      17 29 src=10.0.0.2 dst=192.0.2.1 sport=5 dport=53 src=192.0.2.1 dst=10.0.0.2 sport=53 dport=5 mark=0 zone=7 use=1 id=1
ipv4     2 tcp      6 9 CLOSE src=10.0.0.9 dst=192.0.2.1 sport=1 dport=80 src=192.0.2.1 dst=10.0.0.9 sport=80 dport=1 mark=0 use=1 id=2
ipv6     10 tcp      6 9 CLOSE src=::1 dst=::1 sport=1 dport=80 src=::1 dst=::1 sport=80 dport=1 mark=0 use=1 id=3
ipv4     2 udp      17 29 src=10.0.0.2 dst=192.0.2.1 sport=5 dport=53 src=192.0.2.1 dst=10.0.0.2 sport=53 dport=5 mark=0 use=1 id=4
";
        let mut entries = crate::conntrack::parse_str("t", text).entries;
        sort_entries(&mut entries);
        let ids: Vec<_> = entries.iter().filter_map(|e| e.id).collect();
        assert_eq!(ids, vec![2, 4, 1, 3]);
    }

    /// One attribute with its header and padding, as the kernel lays it out.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = (4 + value.len()) as u16;
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// A nested attribute (NLA_F_NESTED set, as the kernel sets it).
    fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        nla(kind | 0x8000, &parts.concat())
    }

    fn tuple_v4(kind: u16, src: [u8; 4], dst: [u8; 4], proto: &[Vec<u8>]) -> Vec<u8> {
        nest(
            kind,
            &[
                nest(
                    cta::TUPLE_IP,
                    &[nla(cta::IP_V4_SRC, &src), nla(cta::IP_V4_DST, &dst)],
                ),
                nest(cta::TUPLE_PROTO, proto),
            ],
        )
    }

    fn ports(num: u8, sport: u16, dport: u16) -> Vec<Vec<u8>> {
        vec![
            nla(cta::PROTO_NUM, &[num]),
            nla(cta::PROTO_SRC_PORT, &sport.to_be_bytes()),
            nla(cta::PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
    }

    fn ctx() -> ParseContext {
        ParseContext {
            labels: LabelNames::parse("# bit name\n0 eth0-in\n3 blocked\n3 shadowed\n"),
            now_s: 1_795_427_400,
        }
    }

    /// The TCP entry of docs excerpt E7, with everything the kernel can add.
    fn tcp_attrs() -> Vec<u8> {
        let mut labels = [0u8; 16];
        // Bits 0, 3 and 70 of the kernel's unsigned long array.
        let words = [(1usize << 0) | (1 << 3), 1usize << (70 - usize::BITS)];
        if usize::BITS == 64 {
            labels[..8].copy_from_slice(&words[0].to_ne_bytes());
            labels[8..].copy_from_slice(&words[1].to_ne_bytes());
        }
        [
            tuple_v4(
                cta::TUPLE_ORIG,
                [10, 0, 1, 3],
                [192, 0, 2, 2],
                &ports(6, 40000, 8080),
            ),
            tuple_v4(
                cta::TUPLE_REPLY,
                [192, 0, 2, 2],
                [192, 0, 2, 1],
                &ports(6, 8080, 8942),
            ),
            nla(cta::ID, &675049517u32.to_be_bytes()),
            nla(
                cta::STATUS,
                &(IPS_SEEN_REPLY | IPS_ASSURED | 1 << 3).to_be_bytes(),
            ),
            nest(
                cta::PROTOINFO,
                &[nest(
                    cta::PROTOINFO_TCP,
                    &[nla(cta::PROTOINFO_STATE, &[3]), nla(2, &[7])],
                )],
            ),
            nla(cta::TIMEOUT, &431999u32.to_be_bytes()),
            nla(cta::MARK, &5u32.to_be_bytes()),
            nla(cta::ZONE, &7u16.to_be_bytes()),
            nla(cta::USE, &1u32.to_be_bytes()),
            nest(
                cta::COUNTERS_ORIG,
                &[
                    nla(cta::COUNTERS_PACKETS, &14u64.to_be_bytes()),
                    nla(cta::COUNTERS_BYTES, &4134u64.to_be_bytes()),
                ],
            ),
            nest(
                cta::COUNTERS_REPLY,
                &[
                    nla(cta::COUNTERS32_PACKETS, &17u32.to_be_bytes()),
                    nla(cta::COUNTERS32_BYTES, &13712u32.to_be_bytes()),
                ],
            ),
            nest(
                cta::SECCTX,
                &[nla(cta::SECCTX_NAME, b"system_u:object_r:unlabeled_t:s0\0")],
            ),
            nest(cta::HELP, &[nla(cta::HELP_NAME, b"ftp\0")]),
            nest(
                cta::TIMESTAMP,
                &[nla(
                    cta::TIMESTAMP_START,
                    &1_795_427_260_900_000_000u64.to_be_bytes(),
                )],
            ),
            nla(cta::LABELS, &labels),
            // An attribute natcheck does not know: skipped.
            nla(99, &[1, 2, 3]),
        ]
        .concat()
    }

    #[test]
    fn tcp_entry_has_every_field_conntrack_prints() {
        let e = parse_entry(2, &tcp_attrs(), &ctx()).unwrap();
        let mut text = String::new();
        super::super::write_entry(&e, &mut text);
        let labels = if usize::BITS == 64 {
            " labels=eth0-in,blocked,70"
        } else {
            ""
        };
        assert_eq!(
            text,
            format!(
                "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.1.3 dst=192.0.2.2 \
                 sport=40000 dport=8080 packets=14 bytes=4134 src=192.0.2.2 dst=192.0.2.1 \
                 sport=8080 dport=8942 packets=17 bytes=13712 [ASSURED] mark=5 \
                 secctx=system_u:object_r:unlabeled_t:s0 zone=7 delta-time=140 helper=ftp \
                 use=1 id=675049517{labels}"
            )
        );
        assert_eq!(e.line, 0);
        assert_eq!((e.zone_orig, e.zone_reply), (None, None));
    }

    #[test]
    fn icmp_ipv6_and_directional_zones() {
        let v6 = |kind, src: &str, dst: &str, t: u8| {
            let s: Ipv6Addr = src.parse().unwrap();
            let d: Ipv6Addr = dst.parse().unwrap();
            nest(
                kind,
                &[
                    nest(
                        cta::TUPLE_IP,
                        &[
                            nla(cta::IP_V6_SRC, &s.octets()),
                            nla(cta::IP_V6_DST, &d.octets()),
                        ],
                    ),
                    nest(
                        cta::TUPLE_PROTO,
                        &[
                            nla(cta::PROTO_NUM, &[58]),
                            nla(cta::PROTO_ICMPV6_ID, &19907u16.to_be_bytes()),
                            nla(cta::PROTO_ICMPV6_TYPE, &[t]),
                            nla(cta::PROTO_ICMPV6_CODE, &[0]),
                        ],
                    ),
                    nla(cta::TUPLE_ZONE, &[0, if t == 128 { 3 } else { 4 }]),
                ],
            )
        };
        let attrs = [
            v6(cta::TUPLE_ORIG, "2001:db8:aa::2", "2001:db8:bb::2", 128),
            v6(cta::TUPLE_REPLY, "2001:db8:bb::2", "2001:db8:aa::2", 129),
            nla(cta::STATUS, &(1u32 << 3).to_be_bytes()),
            nla(cta::TIMEOUT, &29u32.to_be_bytes()),
        ]
        .concat();
        let e = parse_entry(10, &attrs, &ctx()).unwrap();
        let mut text = String::new();
        super::super::write_entry(&e, &mut text);
        assert_eq!(
            text,
            "ipv6     10 icmpv6   58 29 src=2001:db8:aa::2 dst=2001:db8:bb::2 type=128 code=0 \
             id=19907 zone-orig=3 [UNREPLIED] src=2001:db8:bb::2 dst=2001:db8:aa::2 type=129 \
             code=0 id=19907 zone-reply=4"
        );
        assert_eq!(e.orig.sport, 19907);
        assert_eq!(e.orig.dport, 0);
        // The wrong family for these addresses is refused, not guessed.
        assert!(parse_entry(2, &attrs, &ctx()).is_err());
    }

    /// A tuple of either family; `proto` is the content of CTA_TUPLE_PROTO.
    fn tuple(kind: u16, src: &str, dst: &str, proto: &[Vec<u8>]) -> Vec<u8> {
        let ip = match (src.parse().unwrap(), dst.parse().unwrap()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => [
                nla(cta::IP_V4_SRC, &s.octets()),
                nla(cta::IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => [
                nla(cta::IP_V6_SRC, &s.octets()),
                nla(cta::IP_V6_DST, &d.octets()),
            ],
            _ => panic!("one family per tuple"),
        };
        nest(
            kind,
            &[nest(cta::TUPLE_IP, &ip), nest(cta::TUPLE_PROTO, proto)],
        )
    }

    fn icmp(id: Option<u16>, icmp_type: u8) -> Vec<Vec<u8>> {
        let mut v = vec![nla(cta::PROTO_NUM, &[1])];
        v.extend(id.map(|id| nla(cta::PROTO_ICMP_ID, &id.to_be_bytes())));
        v.push(nla(cta::PROTO_ICMP_TYPE, &[icmp_type]));
        v.push(nla(cta::PROTO_ICMP_CODE, &[0]));
        v
    }

    /// The same tuples given as text and as attributes make the same entry tuples,
    /// and both readers refuse a tuple without its ports.
    #[test]
    fn text_and_netlink_build_the_same_tuples() {
        let from_text = |line: &str| match super::super::parse_line(1, line) {
            Ok(super::super::Line::Entry(e)) => Ok(e),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.message),
        };
        let key = |e: &Entry| (e.orig, e.reply, e.orig_icmp, e.reply_icmp);
        let cases: [(&str, u8, Vec<u8>); 4] = [
            (
                "tcp      6 src=10.0.1.3 dst=192.0.2.2 sport=40000 dport=8080 \
                 src=192.0.2.2 dst=192.0.2.1 sport=8080 dport=8942",
                2,
                [
                    tuple(
                        cta::TUPLE_ORIG,
                        "10.0.1.3",
                        "192.0.2.2",
                        &ports(6, 40000, 8080),
                    ),
                    tuple(
                        cta::TUPLE_REPLY,
                        "192.0.2.2",
                        "192.0.2.1",
                        &ports(6, 8080, 8942),
                    ),
                ]
                .concat(),
            ),
            (
                "icmp     1 src=172.17.0.2 dst=203.0.113.2 type=8 code=0 id=3073 \
                 src=203.0.113.2 dst=203.0.113.1 type=0 code=0 id=3073",
                2,
                [
                    tuple(
                        cta::TUPLE_ORIG,
                        "172.17.0.2",
                        "203.0.113.2",
                        &icmp(Some(3073), 8),
                    ),
                    tuple(
                        cta::TUPLE_REPLY,
                        "203.0.113.2",
                        "203.0.113.1",
                        &icmp(Some(3073), 0),
                    ),
                ]
                .concat(),
            ),
            (
                "icmp     1 src=10.0.0.1 dst=10.0.0.2 type=13 code=0 \
                 src=10.0.0.2 dst=10.0.0.1 type=14 code=0",
                2,
                [
                    tuple(cta::TUPLE_ORIG, "10.0.0.1", "10.0.0.2", &icmp(None, 13)),
                    tuple(cta::TUPLE_REPLY, "10.0.0.2", "10.0.0.1", &icmp(None, 14)),
                ]
                .concat(),
            ),
            (
                "udp      17 src=fd00::2 dst=2001:db8::53 sport=45000 dport=53 \
                 src=2001:db8::53 dst=2001:db8::1 sport=53 dport=9000",
                10,
                [
                    tuple(
                        cta::TUPLE_ORIG,
                        "fd00::2",
                        "2001:db8::53",
                        &ports(17, 45000, 53),
                    ),
                    tuple(
                        cta::TUPLE_REPLY,
                        "2001:db8::53",
                        "2001:db8::1",
                        &ports(17, 53, 9000),
                    ),
                ]
                .concat(),
            ),
        ];
        for (line, family, attrs) in cases {
            let t = from_text(line).unwrap();
            let n = parse_entry(family, &attrs, &ctx()).unwrap();
            assert_eq!(key(&t), key(&n), "{line}");
        }
        // A UDP tuple with a source port and no destination port.
        let line = "udp      17 src=10.0.0.1 dst=10.0.0.2 sport=1 \
                    src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1";
        let lone = vec![
            nla(cta::PROTO_NUM, &[17]),
            nla(cta::PROTO_SRC_PORT, &[0, 1]),
        ];
        let attrs = [
            tuple(cta::TUPLE_ORIG, "10.0.0.1", "10.0.0.2", &lone),
            tuple(cta::TUPLE_REPLY, "10.0.0.2", "10.0.0.1", &ports(17, 2, 1)),
        ]
        .concat();
        assert_eq!(
            from_text(line).unwrap_err(),
            "ORIGINAL tuple: expected `sport=` and `dport=` for udp"
        );
        let err = parse_entry(2, &attrs, &ctx()).unwrap_err();
        assert_eq!(err.message, "ORIGINAL tuple without both of its udp ports");
        assert_eq!(err.offset, 4);
    }

    #[test]
    fn status_flags_and_ages() {
        let f = status_flags(IPS_SEEN_REPLY | IPS_ASSURED);
        assert!(f.assured && !f.unreplied && !f.offload && !f.hw_offload);
        assert!(status_flags(0).unreplied);
        // Started 140.9 s before a stop; alive entries age until now; never negative.
        let start = 1_795_427_260_900_000_000;
        assert_eq!(age_s(start, Some(1_795_427_400_100_000_000), 0), 140);
        assert_eq!(age_s(start, Some(0), 1_795_427_400), 140);
        assert_eq!(age_s(start, None, 1_795_427_000), 0);
    }

    #[test]
    fn nested_strings_in_order() {
        let a = nest(
            cta::HELP,
            &[
                nla(cta::HELP_NAME, b"ftp\0"),
                nla(2, b"x\0"),
                nla(cta::HELP_NAME, b"sip\0pad"),
                nla(cta::HELP_NAME, b"a b\x01\\\0"),
            ],
        );
        let nla = nlas(&a, 0).next().unwrap().unwrap();
        assert_eq!(
            nested_strings(&nla, cta::HELP_NAME).unwrap(),
            ["ftp", "sip", "a\\x20b\\x01\\x5c"]
        );
    }

    #[test]
    fn offload_flags_follow_the_printers_precedence() {
        let flags = |status: u32| {
            let attrs = [
                tuple_v4(
                    cta::TUPLE_ORIG,
                    [10, 0, 0, 1],
                    [10, 0, 0, 2],
                    &ports(17, 1, 2),
                ),
                tuple_v4(
                    cta::TUPLE_REPLY,
                    [10, 0, 0, 2],
                    [10, 0, 0, 1],
                    &ports(17, 2, 1),
                ),
                nla(cta::STATUS, &status.to_be_bytes()),
            ]
            .concat();
            let f = parse_entry(2, &attrs, &ctx()).unwrap().flags;
            (f.unreplied, f.assured, f.offload, f.hw_offload)
        };
        let all = IPS_SEEN_REPLY | IPS_ASSURED;
        assert_eq!(flags(all), (false, true, false, false));
        assert_eq!(flags(all | IPS_OFFLOAD), (false, false, true, false));
        assert_eq!(
            flags(all | IPS_OFFLOAD | IPS_HW_OFFLOAD),
            (false, false, false, true)
        );
        assert_eq!(flags(0), (true, false, false, false));
    }

    #[test]
    fn unknown_states_and_protocols_are_kept() {
        assert_eq!(state_name(&TCP_STATES, "TCP", 9), "SYN_SENT2");
        assert_eq!(state_name(&TCP_STATES, "TCP", 12), "TCP_STATE_12");
        assert_eq!(state_name(&SCTP_STATES, "SCTP", 9), "HEARTBEAT_ACKED");
        let attrs = [
            tuple_v4(
                cta::TUPLE_ORIG,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                &[nla(cta::PROTO_NUM, &[253])],
            ),
            tuple_v4(
                cta::TUPLE_REPLY,
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                &[nla(cta::PROTO_NUM, &[253])],
            ),
        ]
        .concat();
        let e = parse_entry(2, &attrs, &ctx()).unwrap();
        assert_eq!(e.orig.proto, Proto::Other(253));
        let mut text = String::new();
        super::super::write_entry(&e, &mut text);
        // No status attribute: no [UNREPLIED] either, as the printer does.
        assert_eq!(
            text,
            "ipv4     2 unknown  253 src=10.0.0.1 dst=10.0.0.2 src=10.0.0.2 dst=10.0.0.1"
        );
    }

    #[test]
    fn malformed_attributes_are_located_errors() {
        let good = tcp_attrs();
        // A 3-byte timeout.
        let mut bad = good.clone();
        bad.extend(nla(cta::TIMEOUT, &[0, 0, 1]));
        let err = parse_entry(2, &bad, &ctx()).unwrap_err();
        assert_eq!(err.offset, good.len() + 4);
        assert!(err.message.contains("timeout: 3 bytes where 4"), "{err:?}");
        // An attribute longer than what is left.
        let mut bad = good.clone();
        bad.extend([200, 0, 7, 0, 1, 2, 3, 4]);
        let err = parse_entry(2, &bad, &ctx()).unwrap_err();
        assert_eq!(err.offset, good.len());
        assert!(
            err.message.contains("claims 200 bytes, 8 are left"),
            "{err:?}"
        );
        // A length below the header's own.
        let mut bad = good.clone();
        bad.extend([2, 0, 7, 0]);
        assert!(parse_entry(2, &bad, &ctx()).is_err());
        // Stray bytes after the last attribute.
        let mut bad = good.clone();
        bad.extend([1, 2]);
        let err = parse_entry(2, &bad, &ctx()).unwrap_err();
        assert!(err.message.contains("2 stray bytes"), "{err:?}");
        // Missing tuples.
        let err = parse_entry(2, &nla(cta::MARK, &[0; 4]), &ctx()).unwrap_err();
        assert_eq!(err.message, "no ORIGINAL tuple");
    }

    #[test]
    fn no_prefix_or_corruption_panics() {
        let good = tcp_attrs();
        for cut in 0..good.len() {
            let _ = parse_entry(2, &good[..cut], &ctx());
        }
        // Every byte set to a few telling values, one at a time.
        for i in 0..good.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = parse_entry(2, &b, &ctx());
                let _ = parse_entry(10, &b, &ctx());
            }
        }
    }

    /// A whole datagram as the kernel sends it: header, nfgenmsg, attributes.
    fn message(msg_type: u16, flags: u16, family: u8, attrs: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len()) as u32;
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&msg_type.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[family, 0, 0, 0]);
        v.extend_from_slice(attrs);
        v
    }

    fn done() -> Vec<u8> {
        let mut v = 20u32.to_ne_bytes().to_vec();
        v.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        v.extend_from_slice(&[0; 10]);
        v.extend_from_slice(&0i32.to_ne_bytes());
        v
    }

    #[test]
    fn messages_give_entries_kinds_and_located_warnings() {
        let good = tcp_attrs();
        let mut stream = message(0x0100, NLM_F_CREATE | NLM_F_EXCL, 2, &good);
        stream.extend(message(0x0100, 0, 2, &good));
        let mut destroy = message(0x0102, 0, 2, &good);
        destroy[12..16].copy_from_slice(&4242u32.to_ne_bytes());
        stream.extend(destroy);
        let bad_at = stream.len();
        let mut bad = good.clone();
        bad.extend(nla(cta::MARK, &[1]));
        stream.extend(message(0x0101, 2, 2, &bad));
        // Another subsystem's message is not ours to read.
        stream.extend(message(0x0400, 0, 2, &good));
        // A ctnetlink message too short for its nfgenmsg header: a warning, and the
        // messages after it are still read.
        let mut short = 18u32.to_ne_bytes().to_vec();
        short.extend_from_slice(&0x0100u16.to_ne_bytes());
        short.extend_from_slice(&[0; 10]);
        short.extend_from_slice(&[2, 0, 0, 0]);
        stream.extend(short);
        stream.extend(message(0x0100, 0, 2, &good));
        stream.extend(done());
        let mut reader = Reader {
            offset: 1000,
            index: 0,
        };
        let mut kinds = Vec::new();
        let mut warnings = Vec::new();
        let mut finished = false;
        reader
            .each_message(&stream, |m| match m {
                Msg::Done => finished = true,
                Msg::Entry {
                    offset,
                    index,
                    kind,
                    portid,
                    parsed,
                } => match parsed.read(&ctx()) {
                    Ok(e) => kinds.push((kind, portid, e.id)),
                    Err(e) => warnings.push(entry_warning(offset, index, e)),
                },
            })
            .unwrap();
        assert!(finished);
        assert_eq!(
            kinds,
            vec![
                (EventKind::New, 0, Some(675049517)),
                (EventKind::Update, 0, Some(675049517)),
                (EventKind::Destroy, 4242, Some(675049517)),
                (EventKind::Update, 0, Some(675049517)),
            ]
        );
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[1]
                .to_string()
                .contains("(frame 6): conntrack entry not read: nfgenmsg header"),
            "{}",
            warnings[1]
        );
        let attr_at = bad_at + NLMSG_HDRLEN + NFGENMSG_LEN + good.len() + 4;
        assert_eq!(
            warnings[0].to_string(),
            format!(
                "netlink: byte {} (frame 4): conntrack entry not read: mark: 1 bytes where 4 \
                 were expected",
                1000 + attr_at
            )
        );
        assert_eq!(reader.offset, 1000 + stream.len() as u64);
    }

    #[test]
    fn kernel_errors_and_broken_framing_are_errors() {
        let mut err = 36u32.to_ne_bytes().to_vec();
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        let r = Reader::default().each_message(&err, |_| {});
        assert!(matches!(r, Err(Error::NeedsNetAdmin)), "{r:?}");
        assert_eq!(
            Error::NeedsNetAdmin.to_string(),
            "natcheck snapshot needs CAP_NET_ADMIN (run as root)"
        );
        err[16..20].copy_from_slice(&(-libc::EINVAL).to_ne_bytes());
        let r = Reader::default().each_message(&err, |_| {});
        assert!(matches!(r, Err(Error::NoCtnetlink { .. })), "{r:?}");
        // A header whose length runs past the datagram.
        let mut cut = done();
        cut[0] = 40;
        assert!(matches!(
            Reader::default().each_message(&cut, |_| {}),
            Err(Error::Protocol(_))
        ));
        for n in 0..cut.len() {
            let _ = Reader::default().each_message(&cut[..n], |_| {});
        }
    }

    #[test]
    fn dump_request_is_a_ctnetlink_get_of_both_families() {
        let r = dump_request(7);
        assert_eq!(r.len(), 20);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x0101);
        assert_eq!(
            u16::from_ne_bytes(r[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(&r[16..], &[0, 0, 0, 0]);
    }

    #[test]
    fn label_names_from_connlabel_conf() {
        let names = LabelNames::parse("0 a\n  # note\n\n1\tb extra\nx c\n1 again\n");
        assert_eq!(names.name(0), "a");
        assert_eq!(names.name(1), "b");
        assert_eq!(names.name(2), "2");
    }

    #[test]
    fn missing_namespace_is_named() {
        let err = dump(Some("natcheck-no-such-netns")).unwrap_err();
        assert!(matches!(err, Error::NetnsNotFound { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("network namespace `natcheck-no-such-netns` not found"));
    }
}
