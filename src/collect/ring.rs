//! One capture point's kernel packet socket: AF_PACKET with a TPACKET_V3 receive
//! ring mapped into memory, a classic BPF filter, and the kernel's counters
//! (PACKET_STATISTICS). Everything `unsafe` in collect's capture lives here: the
//! system calls, the mapping, and reading the ring's blocks, which the kernel
//! hands over by a status word in each block's header.
//!
//! Opening follows libpcap's order so that no packet escapes the filter: the socket
//! is made with protocol 0 (it receives nothing), given TPACKET_V3, the filter and
//! the ring, and only then bound to the interface with ETH_P_ALL. An Ethernet (or
//! loopback) interface is read with its link header (SOCK_RAW, LINKTYPE_ETHERNET);
//! any other kind from its network header (SOCK_DGRAM, LINKTYPE_RAW).
//!
//! A block is read only while its status says it belongs to user space, and given
//! back by writing the kernel's status after the last read: [`Ring::take`] lends the
//! block's bytes to a closure and gives the block back when it returns. The bytes
//! are parsed with checked slicing ([`packets`]): a header the kernel wrote wrongly
//! ends the block, it never reads out of it.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::filter::Insn;
use super::pcapng::{LINKTYPE_ETHERNET, LINKTYPE_RAW};

const TPACKET_V3: libc::c_int = 2;
const SO_ATTACH_FILTER: libc::c_int = 26;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// Offsets in a block descriptor (`struct tpacket_block_desc`, header v1).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
/// The size of `struct tpacket3_hdr`, aligned (TPACKET_ALIGN): `struct sockaddr_ll`
/// follows it.
const PKT_HDR: usize = 48;
/// `sll_ifindex`, `sll_hatype` and `sll_pkttype` inside the `sockaddr_ll` after the
/// packet header.
const PKT_IFINDEX: usize = PKT_HDR + 4;
const PKT_HATYPE: usize = PKT_HDR + 8;
const PKT_TYPE: usize = PKT_HDR + 10;

/// The interface name that binds a socket to every interface of its namespace.
pub const ANY: &str = "any";

/// The size and shape of a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size, larger than any packet.
    pub block_size: usize,
    pub blocks: usize,
    /// How long the kernel fills a block before handing it over anyway.
    pub retire: Duration,
}

impl RingConfig {
    /// A ring of about `bytes` in 1 MiB blocks (at least 4 of them).
    pub fn of_size(bytes: u64) -> RingConfig {
        const BLOCK: usize = 1 << 20;
        let blocks = usize::try_from(bytes / BLOCK as u64).unwrap_or(usize::MAX);
        RingConfig {
            block_size: BLOCK,
            blocks: blocks.clamp(4, 4096),
            retire: Duration::from_millis(50),
        }
    }
}

/// Why a packet socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("natcheck collect needs CAP_NET_RAW (run as root)")]
    NeedsNetRaw,
    #[error("no interface `{0}`{1}")]
    NoInterface(String, String),
    #[error("the filter cannot be used: {0}")]
    Filter(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn os_err(context: &str) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => OpenError::NeedsNetRaw,
        _ => OpenError::Io {
            context: context.to_string(),
            source,
        },
    }
}

/// The kernel's counters for one socket, since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets handed to the socket after the filter, drops included.
    pub packets: u64,
    /// Packets dropped because the ring was full.
    pub drops: u64,
}

/// An open packet socket with its ring, bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    pub ring: Ring,
    pub ifindex: u32,
    pub linktype: u16,
    counters: Counters,
}

/// The memory the kernel writes packets into: `blocks` blocks of `block_size`.
pub struct Ring {
    base: *mut u8,
    len: usize,
    block_size: usize,
    blocks: usize,
}

// SAFETY: the mapping belongs to the ring alone (it is unmapped only on drop), and
// the kernel synchronises with whoever reads it through the block status words, not
// through a thread: moving the ring to another thread changes nothing.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are those mmap returned, mapped once and
        // unmapped only here; no slice of it outlives `take`'s closure.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

impl Ring {
    fn status(&self, block: usize) -> Option<&AtomicU32> {
        if block >= self.blocks {
            return None;
        }
        let offset = block * self.block_size + BLOCK_STATUS;
        // SAFETY: the offset is inside the mapping (block < blocks) and 4-aligned
        // (blocks are page-aligned, BLOCK_STATUS is 8); the kernel writes the word
        // concurrently, which is why it is only accessed atomically.
        Some(unsafe { AtomicU32::from_ptr(self.base.add(offset).cast::<u32>()) })
    }

    /// Lends block `block` to `f` if the kernel has handed it over, then gives it
    /// back. `None` when the block is still the kernel's.
    pub fn take<R>(&mut self, block: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let status = self.status(block)?;
        if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block is inside the mapping, and while its status says
        // TP_STATUS_USER the kernel does not write to it; it is given back below,
        // after `f` (which cannot keep the slice) has returned.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.base.add(block * self.block_size), self.block_size)
        };
        let r = f(bytes);
        status.store(TP_STATUS_KERNEL, Ordering::Release);
        Some(r)
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

/// One packet in a block.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts_ns: u64,
    /// The length on the wire.
    pub len: u32,
    pub data: &'a [u8],
    /// `sll_pkttype`: PACKET_HOST, PACKET_OUTGOING, ...
    pub pkttype: u8,
    /// `sll_ifindex`: the interface it was seen on.
    pub ifindex: u32,
    /// `sll_hatype`: that interface's ARPHRD type.
    pub hatype: u16,
    /// Where its network header starts in `data` (0 for a packet without a link
    /// header).
    pub net: usize,
    /// The VLAN tag the kernel took off the frame (TPID, TCI), to put back.
    pub vlan: Option<(u16, u16)>,
}

impl<'a> Packet<'a> {
    /// The packet from its network header on, as a raw-IP packet.
    pub fn from_network_header(self) -> Packet<'a> {
        let cut = self.net.min(self.data.len());
        Packet {
            data: &self.data[cut..],
            len: self.len.saturating_sub(cut as u32),
            net: 0,
            vlan: None,
            ..self
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(*b.get(at..at + 4)?.first_chunk::<4>()?))
}

/// The packets of a block, in order. A header that points outside the block ends
/// the walk.
pub fn packets(block: &[u8]) -> impl Iterator<Item = Packet<'_>> {
    let count = u32_at(block, BLOCK_NUM_PKTS).unwrap_or(0);
    let mut at = u32_at(block, BLOCK_FIRST_PKT).unwrap_or(0) as usize;
    let mut left = count;
    std::iter::from_fn(move || {
        if left == 0 || at == 0 {
            return None;
        }
        left -= 1;
        // The fixed header, up to the packet type: checked once, then read by index.
        let h = block.get(at..)?;
        let fixed = h.get(..=PKT_TYPE)?;
        let word =
            |i: usize| u32::from_ne_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let next = word(0) as usize;
        let (sec, nsec, snaplen, len, status) = (word(4), word(8), word(12), word(16), word(20));
        let mac = usize::from(u16::from_ne_bytes([fixed[24], fixed[25]]));
        let net = usize::from(u16::from_ne_bytes([fixed[26], fixed[27]]));
        let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            // tpacket_hdr_variant1: tp_rxhash, tp_vlan_tci, tp_vlan_tpid.
            let tci = word(32) as u16;
            let tpid = match status & TP_STATUS_VLAN_TPID_VALID {
                0 => 0x8100,
                _ => u16::from_ne_bytes([fixed[36], fixed[37]]),
            };
            (tpid, tci)
        });
        let packet = Packet {
            ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
            len,
            data: h.get(mac..mac.checked_add(snaplen as usize)?)?,
            pkttype: fixed[PKT_TYPE],
            ifindex: word(PKT_IFINDEX),
            hatype: u16::from_ne_bytes([fixed[PKT_HATYPE], fixed[PKT_HATYPE + 1]]),
            net: net.saturating_sub(mac),
            vlan,
        };
        at = if next == 0 { 0 } else { at.checked_add(next)? };
        Some(packet)
    })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T whose size is passed with it; the kernel
    // only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn new_socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; a non-negative result is a descriptor we
    // now own.
    let fd = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SIOCGIFINDEX` and `SIOCGIFHWADDR` on `fd`'s namespace: the interface's index
/// and ARPHRD type.
fn interface_info(fd: &OwnedFd, name: &str) -> io::Result<(u32, u16)> {
    // SAFETY: an all-zero ifreq is valid (an empty name, a zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let ioctl = |request, req: &mut libc::ifreq| {
        // SAFETY: `req` is a valid ifreq with a NUL-terminated name (the name is
        // shorter than the array, which was zeroed); the kernel writes the union.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    ioctl(libc::SIOCGIFINDEX, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hwtype = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((u32::try_from(index).unwrap_or(0), hwtype))
}

/// Names interfaces by index in the network namespace of a socket (SIOCGIFNAME
/// asks the socket's namespace, whichever the calling thread is in).
pub struct Names(OwnedFd);

impl Names {
    /// The name of interface `ifindex`, if it still exists.
    pub fn name(&self, ifindex: u32) -> Option<String> {
        // SAFETY: an all-zero ifreq is valid (an empty name, a zero union).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_ifru.ifru_ifindex = libc::c_int::try_from(ifindex).ok()?;
        // SAFETY: `req` is a valid ifreq; the kernel writes a NUL-terminated name of
        // at most IFNAMSIZ bytes into `ifr_name`.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFNAME, &mut req) };
        if rc != 0 {
            return None;
        }
        let bytes: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8(bytes).ok()
    }
}

/// The link type a packet of an interface of ARPHRD type `hatype` is written with,
/// on a socket bound to every interface: its link header for Ethernet and
/// loopback, else from its network header.
pub fn linktype_of(hatype: u16) -> u16 {
    if matches!(hatype, ARPHRD_ETHER | ARPHRD_LOOPBACK) {
        LINKTYPE_ETHERNET
    } else {
        LINKTYPE_RAW
    }
}

fn attach_filter(fd: &OwnedFd, program: &[Insn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len()).unwrap_or(u16::MAX),
        filter: insns.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `insns` outlives it.
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &prog)
}

fn map_ring(fd: &OwnedFd, cfg: RingConfig) -> Result<Ring, OpenError> {
    let frame_size = 2048usize;
    let req = libc::tpacket_req3 {
        tp_block_size: cfg.block_size as libc::c_uint,
        tp_block_nr: cfg.blocks as libc::c_uint,
        tp_frame_size: frame_size as libc::c_uint,
        tp_frame_nr: (cfg.block_size / frame_size * cfg.blocks) as libc::c_uint,
        tp_retire_blk_tov: cfg.retire.as_millis().clamp(1, 10_000) as libc::c_uint,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
        .map_err(os_err("setting up the packet ring (PACKET_RX_RING)"))?;
    let len = cfg.block_size * cfg.blocks;
    // SAFETY: mapping a packet socket's ring: no address hint, the length the ring
    // was made with, shared so that the kernel's writes are seen.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(os_err("mapping the packet ring")(io::Error::last_os_error()));
    }
    Ok(Ring {
        base: base.cast(),
        len,
        block_size: cfg.block_size,
        blocks: cfg.blocks,
    })
}

impl PacketSocket {
    /// Opens a socket on interface `iface` of the calling thread's network
    /// namespace, or on all of them (`any`: ifindex 0, each packet read with its own
    /// link header). `program` gives the filter for a link type (LINKTYPE_ETHERNET or
    /// LINKTYPE_RAW), known once the interface is; on `any`, the raw-IP program reads
    /// every packet from its network header. What a loopback interface sends is
    /// refused (it comes back in).
    pub fn open(
        iface: &str,
        where_: &str,
        cfg: RingConfig,
        program: impl FnOnce(u16) -> Result<Vec<Insn>, String>,
    ) -> Result<PacketSocket, OpenError> {
        let probe = new_socket(libc::SOCK_RAW).map_err(os_err("opening a packet socket"))?;
        let any = iface == ANY;
        let (ifindex, hwtype) = match interface_info(&probe, iface) {
            _ if any => (0, 0),
            Ok(info) => info,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return Err(OpenError::NoInterface(iface.into(), where_.into()))
            }
            Err(e) => return Err(os_err("looking up the interface")(e)),
        };
        let (fd, linktype) = if any || matches!(hwtype, ARPHRD_ETHER | ARPHRD_LOOPBACK) {
            (probe, LINKTYPE_ETHERNET)
        } else {
            drop(probe);
            let fd = new_socket(libc::SOCK_DGRAM).map_err(os_err("opening a packet socket"))?;
            (fd, LINKTYPE_RAW)
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)
            .map_err(os_err("asking for TPACKET_V3"))?;
        let mut program = if any {
            super::filter::network_relative(program(LINKTYPE_RAW).map_err(OpenError::Filter)?)
        } else {
            program(linktype).map_err(OpenError::Filter)?
        };
        if any || hwtype == ARPHRD_LOOPBACK {
            program = super::filter::skip_loopback_outgoing(program);
        }
        attach_filter(&fd, &program).map_err(|e| OpenError::Filter(e.to_string()))?;
        let ring = map_ring(&fd, cfg)?;
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
            sll_ifindex: ifindex as libc::c_int,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_ll whose size is passed with it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("binding the packet socket")(
                io::Error::last_os_error(),
            ));
        }
        Ok(PacketSocket {
            fd,
            ring,
            ifindex,
            linktype,
            counters: Counters::default(),
        })
    }

    /// Whether the socket captures every interface (`any`).
    pub fn is_any(&self) -> bool {
        self.ifindex == 0
    }

    /// A handle that names the interfaces of the socket's namespace by index.
    pub fn names(&self) -> io::Result<Names> {
        Ok(Names(self.fd.try_clone()?))
    }

    /// Stops the kernel from putting more packets in the ring (a filter that takes
    /// none replaces the capture filter): what is in it can then be drained whole,
    /// and the counters read after agree with what was taken out.
    pub fn stop_receiving(&self) -> io::Result<()> {
        attach_filter(&self.fd, &super::filter::accept_all(0))
    }

    /// Waits up to `timeout` for the kernel to hand over a block. Interrupted by a
    /// signal, it returns early.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        let mut fds = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is one valid pollfd that outlives the call; nfds is 1.
        let rc = unsafe { libc::poll(&mut fds, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The kernel's counters so far. Reading them resets the kernel's, so they are
    /// added up here.
    pub fn counters(&mut self) -> io::Result<Counters> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writing; `len` says how large `st` is.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.counters.packets += u64::from(st.tp_packets);
        self.counters.drops += u64::from(st.tp_drops);
        Ok(self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// seconds, nanoseconds, data, packet type, VLAN TCI.
    type Spec<'a> = (u32, u32, &'a [u8], u8, Option<u16>);

    /// A block as the kernel lays it out, with packets of the given lengths.
    fn block(packets: &[Spec]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4]
            .copy_from_slice(&(packets.len() as u32).to_ne_bytes());
        let first = 48usize;
        b[BLOCK_FIRST_PKT..BLOCK_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        let mut at = first;
        for (i, (sec, nsec, data, pkttype, vlan)) in packets.iter().enumerate() {
            let mac = 80usize;
            let size = (mac + data.len()).div_ceil(16) * 16;
            let next = if i + 1 == packets.len() {
                0
            } else {
                size as u32
            };
            let put = |b: &mut Vec<u8>, off: usize, v: u32| {
                b[at + off..at + off + 4].copy_from_slice(&v.to_ne_bytes())
            };
            put(&mut b, 0, next);
            put(&mut b, 4, *sec);
            put(&mut b, 8, *nsec);
            put(&mut b, 12, data.len() as u32);
            put(&mut b, 16, data.len() as u32 + 10);
            put(
                &mut b,
                20,
                if vlan.is_some() {
                    TP_STATUS_VLAN_VALID
                } else {
                    0
                },
            );
            b[at + 24..at + 26].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + 26..at + 28].copy_from_slice(&(mac as u16 + 14).to_ne_bytes());
            put(&mut b, PKT_IFINDEX, 7 + i as u32);
            b[at + PKT_HATYPE..at + PKT_HATYPE + 2].copy_from_slice(&ARPHRD_ETHER.to_ne_bytes());
            if let Some(tci) = vlan {
                put(&mut b, 32, u32::from(*tci));
            }
            b[at + PKT_TYPE] = *pkttype;
            b[at + mac..at + mac + data.len()].copy_from_slice(data);
            at += size;
        }
        b
    }

    #[test]
    fn packets_of_a_block() {
        let b = block(&[
            (1, 2, b"first", 4, None),
            (3, 999_999_999, b"second!", 0, Some(42)),
        ]);
        let got: Vec<Packet> = packets(&b).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ts_ns, 1_000_000_002);
        assert_eq!(got[0].data, b"first");
        assert_eq!(got[0].len, 15);
        assert_eq!(got[0].pkttype, 4);
        assert_eq!(got[0].vlan, None);
        assert_eq!(got[1].ts_ns, 3_999_999_999);
        assert_eq!(got[1].data, b"second!");
        assert_eq!(got[1].vlan, Some((0x8100, 42)));
        assert_eq!((got[0].ifindex, got[1].ifindex), (7, 8));
        assert_eq!((got[0].hatype, got[0].net), (ARPHRD_ETHER, 14));
        assert_eq!(linktype_of(ARPHRD_LOOPBACK), LINKTYPE_ETHERNET);
        assert_eq!(linktype_of(65534), LINKTYPE_RAW);
    }

    #[test]
    fn a_header_pointing_out_of_the_block_ends_it() {
        let mut b = block(&[(1, 2, b"first", 4, None), (3, 4, b"second", 0, None)]);
        // The first packet's data says it is longer than the block.
        b[48 + 12..48 + 16].copy_from_slice(&100_000u32.to_ne_bytes());
        assert_eq!(packets(&b).count(), 0);
        let mut b = block(&[(1, 2, b"first", 4, None), (3, 4, b"second", 0, None)]);
        // The next offset jumps out of the block.
        b[48..52].copy_from_slice(&1_000_000u32.to_ne_bytes());
        assert_eq!(packets(&b).count(), 1);
        // More packets announced than there are: the chain ends at next = 0.
        let mut b = block(&[(1, 2, b"only", 0, None)]);
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(packets(&b).count(), 1);
        assert_eq!(packets(&[0u8; 10]).count(), 0);
        assert_eq!(packets(&[]).count(), 0);
    }

    #[test]
    fn ring_sizes() {
        let c = RingConfig::of_size(32 << 20);
        assert_eq!((c.block_size, c.blocks), (1 << 20, 32));
        assert_eq!(RingConfig::of_size(0).blocks, 4);
    }
}
