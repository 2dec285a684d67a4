//! LINKTYPE_NFLOG: packets an iptables/nftables `NFLOG` rule logged (`tcpdump -i
//! nflog:GROUP`). A 4-byte header (address family, version, resource id) then
//! netlink-style TLVs; the one of type NFULA_PAYLOAD holds the packet from its IP
//! header on. TLV lengths and types are in the byte order of the host that logged the
//! packets (libpcap's LINKTYPE_NFLOG description), which the file does not record: the
//! first TLV's length decides it.

use super::array;
use super::link::Net;
use super::shim::Shim;
use super::skip::{Layer, Problem, Skip};

const HEADER_LEN: usize = 4;
const TLV_HEADER_LEN: usize = 4;
const NFULA_PAYLOAD: u16 = 9;
/// The type bits of a TLV type (NLA_TYPE_MASK: without NLA_F_NESTED, NLA_F_NET_BYTEORDER).
const TYPE_MASK: u16 = 0x3fff;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where the logged packet starts in an NFLOG frame.
pub fn payload(data: &[u8]) -> Result<Shim, Skip> {
    let h: &[u8; HEADER_LEN] = array(data, 0).ok_or(Skip::Truncated {
        layer: Layer::Nflog,
        offset: 0,
    })?;
    let net = match h[0] {
        AF_INET => Net::V4,
        AF_INET6 => Net::V6,
        _ => Net::Either,
    };
    let little_endian = little_endian(data.get(HEADER_LEN..).unwrap_or_default());
    let mut at = HEADER_LEN;
    loop {
        if at == data.len() {
            return Err(Skip::NflogWithoutPayload);
        }
        let tlv: &[u8; TLV_HEADER_LEN] = array(data, at).ok_or(Skip::Truncated {
            layer: Layer::Nflog,
            offset: at,
        })?;
        let (len, kind) = if little_endian {
            (
                u16::from_le_bytes([tlv[0], tlv[1]]),
                u16::from_le_bytes([tlv[2], tlv[3]]),
            )
        } else {
            (
                u16::from_be_bytes([tlv[0], tlv[1]]),
                u16::from_be_bytes([tlv[2], tlv[3]]),
            )
        };
        let len = usize::from(len);
        if len < TLV_HEADER_LEN {
            return Err(Skip::Malformed {
                layer: Layer::Nflog,
                offset: at,
                problem: Problem::TlvShorterThanHeader,
            });
        }
        if kind & TYPE_MASK == NFULA_PAYLOAD {
            return Ok(Shim {
                offset: at + TLV_HEADER_LEN,
                net,
            });
        }
        // Each TLV is padded to 4 bytes.
        at += len.div_ceil(4) * 4;
    }
}

/// Whether the TLVs' lengths are little-endian: the first TLV's length read that way
/// is possible (at least its own header, at most what is there) and read the other way
/// is not. Ties go to little-endian, the byte order of nearly every capturing host.
fn little_endian(tlvs: &[u8]) -> bool {
    let Some(&[a, b]) = array::<2>(tlvs, 0) else {
        return true;
    };
    let fits = |len: u16| (TLV_HEADER_LEN..=tlvs.len()).contains(&usize::from(len));
    fits(u16::from_le_bytes([a, b])) || !fits(u16::from_be_bytes([a, b]))
}
