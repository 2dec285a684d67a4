//! Transport headers: the fixed fields natcheck keeps, read by hand from length-checked
//! slices, and the payload digest.

use twox_hash::XxHash3_64;

use super::skip::{Layer, Problem, Skip};
use super::{array, icmp};
use crate::model::L4;

pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPPROTO_GRE: u8 = 47;
pub(super) const IPPROTO_ICMPV6: u8 = 58;
pub(super) const IPPROTO_SCTP: u8 = 132;

const TCP_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
const SCTP_COMMON_HEADER_LEN: usize = 12;
/// TCP option kinds (RFC 9293 3.2, RFC 7323 3).
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
const TCPOLEN_MSS: u8 = 4;
const TCPOPT_TIMESTAMP: u8 = 8;
const TCPOLEN_TIMESTAMP: u8 = 10;

/// The transport segment of one IP packet (or the data of a non-first fragment).
pub(super) struct Segment<'a> {
    pub proto: u8,
    /// The captured bytes.
    pub bytes: &'a [u8],
    /// Its length as sent, from the IP length fields.
    pub len: usize,
    /// Where it starts in the frame, for skip reasons.
    pub offset: usize,
    /// Whether payloads are digested ([`super::Options::digests`]).
    pub digests: bool,
}

/// What the transport layer adds to a packet summary.
pub(super) struct Transport {
    pub sport: u16,
    pub dport: u16,
    pub l4: L4,
    /// Transport payload length as sent.
    pub payload_len: usize,
    pub digest: u64,
    /// TCP only: see [`payload_head`].
    pub head: Option<u32>,
}

/// How many payload bytes [`payload_head`] digests.
pub(super) const HEAD_LEN: usize = 16;

/// A 32-bit digest of the first [`HEAD_LEN`] bytes of a TCP payload, when the capture
/// has them: two segments that start at the same sequence number but were cut to
/// different lengths (segmentation offloads) carry the same first bytes.
fn payload_head(payload: &[u8]) -> Option<u32> {
    payload
        .get(..HEAD_LEN)
        .map(|b| XxHash3_64::oneshot(b) as u32)
}

impl Segment<'_> {
    /// The first `N` bytes, or why they cannot be had: cut by the capture
    /// ([`Skip::Truncated`]) or not there in the packet either ([`Skip::Malformed`]).
    pub fn header<const N: usize>(&self, layer: Layer) -> Result<&[u8; N], Skip> {
        match array::<N>(self.bytes, 0) {
            Some(h) => Ok(h),
            None if self.len < N => Err(Skip::Malformed {
                layer,
                offset: self.offset,
                problem: Problem::SegmentShorterThanHeader,
            }),
            None => Err(Skip::Truncated {
                layer,
                offset: self.offset,
            }),
        }
    }

    /// The captured bytes after a header of `header_len` bytes.
    pub fn after(&self, header_len: usize) -> &[u8] {
        self.bytes.get(header_len..).unwrap_or_default()
    }

    /// The digest of `payload`; 0 when payloads are not digested.
    pub fn digest(&self, payload: &[u8]) -> u64 {
        if self.digests {
            XxHash3_64::oneshot(payload)
        } else {
            0
        }
    }
}

/// Reads the transport header of a whole packet or first fragment.
pub(super) fn read(seg: &Segment<'_>) -> Result<Transport, Skip> {
    match seg.proto {
        IPPROTO_TCP => tcp(seg),
        IPPROTO_UDP => udp(seg),
        IPPROTO_SCTP => sctp(seg),
        IPPROTO_ICMP => icmp::read(seg, false),
        IPPROTO_ICMPV6 => icmp::read(seg, true),
        IPPROTO_GRE => Ok(other(seg, gre_header_len(seg.bytes))),
        _ => Ok(other(seg, 0)),
    }
}

/// A non-first fragment: no transport header, so no ports; the data is the payload.
pub(super) fn fragment(seg: &Segment<'_>) -> Transport {
    other(seg, 0)
}

fn other(seg: &Segment<'_>, header_len: usize) -> Transport {
    Transport {
        sport: 0,
        dport: 0,
        l4: L4::Other,
        payload_len: seg.len.saturating_sub(header_len),
        digest: seg.digest(seg.after(header_len)),
        head: None,
    }
}

fn tcp(seg: &Segment<'_>) -> Result<Transport, Skip> {
    let h: &[u8; TCP_HEADER_LEN] = seg.header(Layer::Tcp)?;
    let data_offset = h[12] >> 4;
    if data_offset < 5 {
        return Err(Skip::Malformed {
            layer: Layer::Tcp,
            offset: seg.offset,
            problem: Problem::DataOffset(data_offset),
        });
    }
    let header_len = usize::from(data_offset) * 4;
    if header_len > seg.len {
        return Err(Skip::Malformed {
            layer: Layer::Tcp,
            offset: seg.offset,
            problem: Problem::DataOffsetBeyondSegment,
        });
    }
    // Options the snaplen cut are simply not there: the timestamp is read only when
    // all 10 of its bytes were captured.
    let options = super::clip(seg.bytes, TCP_HEADER_LEN, header_len);
    let (ts, mss) = tcp_options(options);
    Ok(Transport {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        l4: L4::Tcp {
            seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            flags: h[13],
            window: u16::from_be_bytes([h[14], h[15]]),
            ts,
            mss,
        },
        payload_len: seg.len - header_len,
        digest: seg.digest(seg.after(header_len)),
        head: seg
            .digests
            .then(|| payload_head(seg.after(header_len)))
            .flatten(),
    })
}

/// The TSval/TSecr of the first TCP timestamp option (RFC 7323 3.2) in `options` and
/// the value of the first maximum segment size option (RFC 9293 3.2), in one walk.
/// Stops at the end-of-options kind, at an impossible option length and at the end
/// of the bytes; an option of either kind with another length is passed over.
fn tcp_options(mut options: &[u8]) -> (Option<(u32, u32)>, Option<u16>) {
    let (mut ts, mut mss) = (None, None);
    while ts.is_none() || mss.is_none() {
        match options {
            [] | [TCPOPT_EOL, ..] => break,
            [TCPOPT_NOP, rest @ ..] => options = rest,
            [TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP, rest @ ..] if ts.is_none() => {
                let Some(v) = array::<8>(rest, 0) else { break };
                ts = Some((
                    u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                    u32::from_be_bytes([v[4], v[5], v[6], v[7]]),
                ));
                options = &rest[8..];
            }
            [TCPOPT_MSS, TCPOLEN_MSS, rest @ ..] if mss.is_none() => {
                let Some(v) = array::<2>(rest, 0) else { break };
                mss = Some(u16::from_be_bytes(*v));
                options = &rest[2..];
            }
            [_, l, ..] if *l >= 2 => match options.get(usize::from(*l)..) {
                Some(rest) => options = rest,
                None => break,
            },
            _ => break,
        }
    }
    (ts, mss)
}

fn udp(seg: &Segment<'_>) -> Result<Transport, Skip> {
    let h: &[u8; UDP_HEADER_LEN] = seg.header(Layer::Udp)?;
    // The payload is bounded by the IP length, not the UDP length field: both are the
    // same on a sane packet, and NAT changes neither.
    Ok(Transport {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        l4: L4::Udp,
        payload_len: seg.len.saturating_sub(UDP_HEADER_LEN),
        digest: seg.digest(seg.after(UDP_HEADER_LEN)),
        head: None,
    })
}

/// SCTP common header (RFC 9260 3.1): ports, verification tag, CRC32c. natcheck keeps
/// the ports (conntrack keys SCTP by them) and treats the chunks as payload.
fn sctp(seg: &Segment<'_>) -> Result<Transport, Skip> {
    let h: &[u8; SCTP_COMMON_HEADER_LEN] = seg.header(Layer::Sctp)?;
    Ok(Transport {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        l4: L4::Other,
        payload_len: seg.len.saturating_sub(SCTP_COMMON_HEADER_LEN),
        digest: seg.digest(seg.after(SCTP_COMMON_HEADER_LEN)),
        head: None,
    })
}

/// Length of a GRE header (RFC 2784 with the RFC 2890 key and sequence fields; version
/// 1 is PPTP's enhanced GRE, RFC 2637 4.1, with an optional acknowledgment number).
/// Only as much as the first two bytes tell: a cut header counts as 4 bytes.
pub(super) fn gre_header_len(gre: &[u8]) -> usize {
    const CHECKSUM: u16 = 0x8000;
    const KEY: u16 = 0x2000;
    const SEQUENCE: u16 = 0x1000;
    const ACK: u16 = 0x0080;
    let Some(flags) = super::be16(gre, 0) else {
        return 4;
    };
    let present = |bit: u16| usize::from(flags & bit != 0) * 4;
    let ack = if flags & 0x7 == 1 { present(ACK) } else { 0 };
    4 + present(CHECKSUM) + present(KEY) + present(SEQUENCE) + ack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_options_in_one_walk() {
        let ts = [8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let mss = [2, 4, 0x05, 0xb4];
        let cat = |parts: &[&[u8]]| parts.concat();
        assert_eq!(
            tcp_options(&cat(&[&[1, 1], &ts, &mss])),
            (Some((7, 9)), Some(1460))
        );
        assert_eq!(
            tcp_options(&cat(&[&mss, &[1], &ts])),
            (Some((7, 9)), Some(1460))
        );
        // The timestamp cut by the snaplen: the MSS before it is kept.
        assert_eq!(tcp_options(&cat(&[&mss, &ts[..6]])), (None, Some(1460)));
        // Options of the right kind but another length are passed over.
        assert_eq!(
            tcp_options(&cat(&[&[8, 6, 0, 0, 0, 1], &mss])),
            (None, Some(1460))
        );
        assert_eq!(tcp_options(&cat(&[&[2, 3, 0], &ts])), (Some((7, 9)), None));
        // End of options, an impossible length, nothing.
        assert_eq!(tcp_options(&cat(&[&[0], &mss])), (None, None));
        assert_eq!(tcp_options(&cat(&[&[99, 1], &mss])), (None, None));
        assert_eq!(tcp_options(&[]), (None, None));
        // The first of two of a kind.
        assert_eq!(
            tcp_options(&cat(&[&mss, &[2, 4, 0, 1]])),
            (None, Some(1460))
        );
    }
}
