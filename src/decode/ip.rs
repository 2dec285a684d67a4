//! The IP layer: etherparse's lax slicer for the headers, plus what natcheck needs on top
//! of it (lengths as sent, fragment position, the IPv6 fragment identification).

use std::net::IpAddr;

use etherparse::err::ip::{HeaderError, LaxHeaderSliceError};
use etherparse::err::ipv6_exts::{
    HeaderError as ExtHeaderError, HeaderSliceError as ExtSliceError,
};
use etherparse::{LaxIpSlice, LaxIpv4Slice, LaxIpv6Slice};

use super::link::{Link, Net};
use super::skip::{Layer, Problem, Skip};
use super::transport::{self, Segment, Transport};
use super::{array, be16, len_u32, offset_in, Decoded, Fragment, FragmentKey};
use crate::model::{Packet, Proto, Tuple};

const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// What natcheck keeps of one IP header, plus where its transport segment lies.
pub(super) struct IpView<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub ip_id: Option<u32>,
    /// IPv4's don't-fragment flag; set for IPv6, which routers never fragment.
    pub df: bool,
    /// Length of the IP packet as sent.
    pub ip_len: usize,
    /// How many bytes of the IP packet were captured (never beyond `ip_len` unless the
    /// length field was unusable and the frame's length stood in for it).
    pub captured: usize,
    /// Protocol of the transport segment (after AH / IPv6 extension headers).
    pub proto: u8,
    /// Offset of the transport segment (or of the fragment data) in the IP packet.
    pub l4_start: usize,
    /// The captured bytes of the transport segment or fragment data.
    pub l4: &'a [u8],
    /// Offset ≠ 0: the bytes at `l4` are fragment data, not a transport header.
    pub non_first_fragment: bool,
    /// Where the pieces of a fragment lie, when this packet is one (offset ≠ 0 or
    /// more-fragments set).
    pub frag: Option<FragPos>,
}

/// The pieces of one IP fragment, as offsets in its IP packet.
#[derive(Clone, Copy)]
pub(super) struct FragPos {
    pub id: u32,
    /// Byte offset of the fragment data in the datagram's fragmentable part.
    pub offset: usize,
    pub more: bool,
    /// Length of the part every fragment repeats (IPv4 header; IPv6 header and the
    /// extension headers before the fragment header).
    pub unfrag_len: usize,
    /// IPv6: where in the unfragmentable part the byte naming the fragment header is.
    pub nh_at: Option<usize>,
    /// Protocol of the fragmentable part.
    pub next_header: u8,
    /// Offset of the fragment data in the IP packet.
    pub data_start: usize,
}

impl IpView<'_> {
    /// Length of the transport segment (or fragment data) as sent.
    pub fn l4_len(&self) -> usize {
        self.ip_len.saturating_sub(self.l4_start)
    }
}

/// Slices the IP packet at the start of `ip`. `wire_len` is what the frame's wire length
/// leaves for the IP packet; it stands in for length fields that cannot be used. The
/// extension-header error etherparse reports, if any, is handed back for the caller to
/// judge: it does not matter for non-first fragments, whose "extension headers" after
/// the fragment header are fragment data.
pub(super) fn view(
    ip: &[u8],
    wire_len: usize,
) -> Result<(IpView<'_>, Option<(ExtSliceError, etherparse::err::Layer)>), LaxHeaderSliceError> {
    let (sliced, ext_err) = LaxIpSlice::from_slice(ip)?;
    Ok((sliced_view(ip, &sliced, wire_len), ext_err))
}

/// What [`view`] keeps of the IP packet `ip` that etherparse sliced.
fn sliced_view<'a>(ip: &'a [u8], sliced: &LaxIpSlice<'a>, wire_len: usize) -> IpView<'a> {
    match sliced {
        LaxIpSlice::Ipv4(s) => v4(ip, s, wire_len),
        LaxIpSlice::Ipv6(s) => v6(ip, s, wire_len),
    }
}

fn v4<'a>(ip: &'a [u8], s: &LaxIpv4Slice<'a>, wire_len: usize) -> IpView<'a> {
    let h = s.header();
    let header_len = h.slice().len();
    let p = s.payload();
    let captured = offset_in(ip, p.payload) + p.payload.len();
    let total = usize::from(h.total_len());
    // A total length of 0 is what Linux leaves in GSO and BIG TCP packets captured
    // before segmentation when they exceed 64 KiB. Other lengths below the header
    // length never get here (see `impossible_total_length`).
    let ip_len = if total >= header_len {
        total
    } else {
        captured.max(wire_len)
    };
    let frag_offset = h.fragments_offset().value();
    let frag = (frag_offset != 0 || h.more_fragments()).then(|| FragPos {
        id: u32::from(h.identification()),
        offset: usize::from(frag_offset) * 8,
        more: h.more_fragments(),
        unfrag_len: header_len,
        nh_at: None,
        next_header: h.protocol().0,
        data_start: header_len,
    });
    let (proto, l4_start, l4, non_first_fragment) = if frag_offset != 0 {
        // Everything after the IPv4 header is fragment data, even when the protocol
        // says AH: only the first fragment carries the AH header.
        (
            h.protocol().0,
            header_len,
            ip.get(header_len..captured).unwrap_or_default(),
            true,
        )
    } else {
        (p.ip_number.0, offset_in(ip, p.payload), p.payload, false)
    };
    IpView {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        ttl: h.ttl(),
        ip_id: Some(u32::from(h.identification())),
        df: h.dont_fragment(),
        ip_len,
        captured,
        proto,
        l4_start,
        l4,
        non_first_fragment,
        frag,
    }
}

fn v6<'a>(ip: &'a [u8], s: &LaxIpv6Slice<'a>, wire_len: usize) -> IpView<'a> {
    let h = s.header();
    let p = s.payload();
    let captured = offset_in(ip, p.payload) + p.payload.len();
    let payload_length = usize::from(h.payload_length());
    // Payload length 0 with data behind it: a jumbogram (RFC 2675) or a BIG TCP / GSO
    // packet captured before segmentation.
    let ip_len = if payload_length == 0 && ip.len() > IPV6_HEADER_LEN {
        captured.max(wire_len)
    } else {
        IPV6_HEADER_LEN + payload_length
    };
    let frag = if s.extensions().is_empty() {
        None
    } else {
        find_fragment_header(ip, h.next_header().0, captured)
    };
    let mut view = IpView {
        src: IpAddr::V6(h.source_addr()),
        dst: IpAddr::V6(h.destination_addr()),
        ttl: h.hop_limit(),
        ip_id: frag.map(|f| f.id),
        df: true,
        ip_len,
        captured,
        proto: p.ip_number.0,
        l4_start: offset_in(ip, p.payload),
        l4: p.payload,
        non_first_fragment: false,
        // RFC 6946: an atomic fragment (offset 0, no more fragments) is a whole packet.
        frag: frag.filter(|f| f.offset != 0 || f.more).map(|f| FragPos {
            id: f.id,
            offset: usize::from(f.offset) * 8,
            more: f.more,
            unfrag_len: f.data_start - 8,
            nh_at: Some(f.nh_at),
            next_header: f.next_header,
            data_start: f.data_start,
        }),
    };
    if let Some(f) = frag.filter(|f| f.offset != 0) {
        // etherparse keeps parsing "extension headers" after a non-first fragment
        // header; those bytes are fragment data, so take them from right after it.
        view.proto = f.next_header;
        view.l4_start = f.data_start;
        view.l4 = ip.get(f.data_start..captured).unwrap_or_default();
        view.non_first_fragment = true;
    }
    view
}

#[derive(Clone, Copy)]
struct FragmentHeader {
    next_header: u8,
    offset: u16,
    more: bool,
    id: u32,
    /// Offset of the byte that names this header (the IPv6 header's next header field
    /// or the previous extension header's).
    nh_at: usize,
    /// Offset of the fragment data (right after this header) in the IP packet.
    data_start: usize,
}

/// Walks the IPv6 extension header chain of `ip` (up to `end`) to the first fragment
/// header. Done by hand rather than with etherparse's extension iterator, which assumes
/// a chain that parsed completely and reads out of bounds after a cut one.
fn find_fragment_header(ip: &[u8], mut next: u8, end: usize) -> Option<FragmentHeader> {
    let ip = ip.get(..end)?;
    let mut at = IPV6_HEADER_LEN;
    let mut nh_at = 6;
    loop {
        let len = match next {
            IPPROTO_FRAGMENT => {
                let h: &[u8; 8] = array(ip, at)?;
                return Some(FragmentHeader {
                    next_header: h[0],
                    offset: u16::from_be_bytes([h[2], h[3]]) >> 3,
                    more: h[3] & 1 != 0,
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    nh_at,
                    data_start: at + 8,
                });
            }
            // RFC 8200 4.3-4.6: length in 8-octet units, not counting the first 8.
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                (usize::from(*ip.get(at + 1)?) + 1) * 8
            }
            // RFC 4302 2.2: length in 4-octet units, minus 2.
            IPPROTO_AH => (usize::from(*ip.get(at + 1)?) + 2) * 4,
            _ => return None,
        };
        next = *ip.get(at)?;
        nh_at = at;
        at += len;
    }
}

/// Where an IP packet's transport segment lies in its frame, for `tunnel.rs` to open.
#[derive(Clone, Copy, Debug)]
pub(super) struct Carried {
    /// Protocol of the segment (after AH / IPv6 extension headers).
    pub proto: u8,
    /// Offset of the segment in the frame.
    pub start: usize,
    /// Where the captured part of the IP packet ends in the frame.
    pub end: usize,
    /// Where the IP packet as sent ends in the frame.
    pub sent_end: usize,
}

/// Decodes the IP packet that starts at `link.offset` in `data` into `out`'s packet and
/// fragment (where its pieces lie in `data`, when it is one); `out.ifindex` is left
/// alone. Payloads are digested when `digests` says so.
pub(super) fn decode(
    data: &[u8],
    link: &Link,
    orig_len: u32,
    digests: bool,
    out: &mut Decoded,
) -> Result<Carried, Skip> {
    let offset = link.offset;
    let ip = data.get(offset..).unwrap_or_default();
    let Some(first) = ip.first() else {
        let layer = match link.net {
            Net::V4 => Layer::Ipv4,
            Net::V6 => Layer::Ipv6,
            Net::Either => Layer::Ip,
        };
        return Err(Skip::Truncated { layer, offset });
    };
    let version = first >> 4;
    let layer = match (link.net, version) {
        (Net::V4 | Net::Either, 4) => Layer::Ipv4,
        (Net::V6 | Net::Either, 6) => Layer::Ipv6,
        (Net::Either, v) => return Err(Skip::NotIpVersion(v)),
        (Net::V4, v) => {
            return Err(Skip::Malformed {
                layer: Layer::Ipv4,
                offset,
                problem: Problem::Version(v),
            })
        }
        (Net::V6, v) => {
            return Err(Skip::Malformed {
                layer: Layer::Ipv6,
                offset,
                problem: Problem::Version(v),
            })
        }
    };
    let wire_len = usize::try_from(orig_len)
        .unwrap_or(usize::MAX)
        .saturating_sub(offset);
    // Sliced here rather than by `view`, so that the view is built where it stays.
    let (sliced, ext_err) = LaxIpSlice::from_slice(ip).map_err(|e| match e {
        LaxHeaderSliceError::Len(_) => Skip::Truncated { layer, offset },
        LaxHeaderSliceError::Content(HeaderError::Ipv4HeaderLengthSmallerThanHeader { ihl }) => {
            Skip::Malformed {
                layer,
                offset,
                problem: Problem::Ihl(ihl),
            }
        }
        LaxHeaderSliceError::Content(HeaderError::UnsupportedIpVersion { version_number }) => {
            Skip::Malformed {
                layer,
                offset,
                problem: Problem::Version(version_number),
            }
        }
    })?;
    let v = sliced_view(ip, &sliced, wire_len);
    if layer == Layer::Ipv4 && impossible_total_length(ip) {
        return Err(Skip::Malformed {
            layer,
            offset,
            problem: Problem::TotalLengthBelowHeader,
        });
    }
    if let (Some((err, err_layer)), false) = (ext_err, v.non_first_fragment) {
        // The slicer stopped at the header that starts where the segment would.
        return Err(ext_skip(err, err_layer, offset + v.l4_start));
    }

    let segment = Segment {
        proto: v.proto,
        bytes: v.l4,
        len: v.l4_len(),
        offset: offset + v.l4_start,
        digests,
    };
    let t = if v.non_first_fragment {
        transport::fragment(&segment)
    } else {
        match transport::read(&segment) {
            Ok(t) => t,
            // A first fragment too short for its transport header still carries the
            // start of the datagram: reassembly reads the header from the whole.
            Err(_) if v.frag.is_some() => transport::fragment(&segment),
            Err(e) => return Err(e),
        }
    };
    out.fragment = v.frag.map(|f| Fragment {
        key: FragmentKey {
            src: v.src,
            dst: v.dst,
            proto: f.next_header,
            id: f.id,
        },
        offset: f.offset,
        more: f.more,
        header: (offset, offset + f.unfrag_len),
        nh_at: f.nh_at,
        data: (offset + f.data_start, offset + v.captured.max(f.data_start)),
        data_len: v.ip_len.saturating_sub(f.data_start),
    });
    let carried = Carried {
        proto: v.proto,
        start: offset + v.l4_start,
        end: offset + v.captured,
        sent_end: offset.saturating_add(v.ip_len),
    };
    write_packet(&v, &t, link, &mut out.packet);
    Ok(carried)
}

/// An IPv4 total length below the length of the header itself: impossible, unless it
/// is 0, which GSO and BIG TCP packets captured before segmentation carry (tcpdump
/// reads 0 the same way and calls any other such length bad).
fn impossible_total_length(ip: &[u8]) -> bool {
    let (Some(&first), Some(total)) = (ip.first(), be16(ip, 2)) else {
        return false;
    };
    let header_len = usize::from(first & 0x0f) * 4;
    total != 0 && usize::from(total) < header_len
}

fn write_packet(v: &IpView<'_>, t: &Transport, link: &Link, out: &mut Packet) {
    *out = Packet {
        ts_ns: 0,
        point: 0,
        link_dir: link.dir,
        tuple: Tuple {
            proto: Proto::from_number(v.proto),
            src: v.src,
            sport: t.sport,
            dst: v.dst,
            dport: t.dport,
        },
        ip_id: v.ip_id,
        ttl: v.ttl,
        df: v.df,
        ip_len: len_u32(v.ip_len),
        l4: t.l4,
        payload_len: len_u32(t.payload_len),
        payload_digest: t.digest,
        payload_head: t.head,
        truncated: v.captured < v.ip_len,
        tunnel: None,
    };
}

fn ext_skip(err: ExtSliceError, layer: etherparse::err::Layer, offset: usize) -> Skip {
    use etherparse::err::Layer as L;
    let layer = match layer {
        L::Ipv6HopByHopHeader => Layer::Ipv6HopByHop,
        L::Ipv6RouteHeader => Layer::Ipv6Routing,
        L::Ipv6FragHeader => Layer::Ipv6Fragment,
        L::Ipv6DestOptionsHeader => Layer::Ipv6DestOptions,
        _ => Layer::IpAuth,
    };
    match err {
        ExtSliceError::Len(_) => Skip::Truncated { layer, offset },
        ExtSliceError::Content(ExtHeaderError::HopByHopNotAtStart) => Skip::Malformed {
            layer,
            offset,
            problem: Problem::HopByHopNotFirst,
        },
        ExtSliceError::Content(ExtHeaderError::IpAuth(_)) => Skip::Malformed {
            layer,
            offset,
            problem: Problem::AuthZeroLen,
        },
    }
}

/// Reads the ports (or ICMP echo identifier) of a segment whose start may be all that
/// was captured, as ICMP errors quote it. `None` when the bytes that hold them are
/// missing; protocols without ports give (0, 0).
pub(super) fn quoted_ports(proto: Proto, l4: &[u8]) -> Option<(u16, u16)> {
    match proto {
        Proto::Tcp | Proto::Udp | Proto::Sctp => Some((be16(l4, 0)?, be16(l4, 2)?)),
        Proto::Icmp | Proto::Icmpv6 => {
            let icmp_type = *l4.first()?;
            if super::icmp::is_echo(proto, icmp_type) {
                Some((be16(l4, 4)?, 0))
            } else {
                Some((0, 0))
            }
        }
        Proto::Gre | Proto::Other(_) => Some((0, 0)),
    }
}
