//! The pcapng blocks `natcheck collect` writes, by hand (they are simple, and a
//! packet block is appended straight from the kernel's ring to an output buffer
//! without an intermediate value): the section header with the host and the
//! program, one interface description block per capture point (`if_name` the
//! point's name, `if_tsresol` nanoseconds, the filter and the snap length), an
//! enhanced packet block per packet with its direction (`epb_flags`), and an
//! interface statistics block per point at the end with the kernel's counters.
//!
//! Everything is little-endian, as the section header's byte-order magic says.
//! Every block is a multiple of 4 bytes with its length at both ends.

/// LINKTYPE numbers collect writes.
pub const LINKTYPE_ETHERNET: u16 = 1;
pub const LINKTYPE_RAW: u16 = 101;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const ISB: u32 = 5;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_HARDWARE: u16 = 2;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const IF_FILTER: u16 = 11;
const EPB_FLAGS: u16 = 2;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_OSDROP: u16 = 7;
const ISB_USRDELIV: u16 = 8;

/// Bytes an enhanced packet block of `captured` bytes takes, with its flags.
pub fn packet_block_len(captured: usize) -> usize {
    // Header 28, data padded, epb_flags 8, end of options 4, trailing length 4.
    28 + pad4(captured) + 8 + 4 + 4
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Appends a block: type, length, `body`, length. The body is padded to 4 bytes.
fn block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let len = 12 + pad4(body.len());
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + pad4(body.len()) - body.len(), 0);
    out.extend_from_slice(&len32.to_le_bytes());
}

/// Appends an option: code, length, value padded to 4 bytes. Values longer than an
/// option can hold are cut (at a character boundary for text).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

fn text_option(out: &mut Vec<u8>, code: u16, text: &str) {
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end > 0 {
        option(out, code, &text.as_bytes()[..end]);
    }
}

fn end_of_options(out: &mut Vec<u8>) {
    out.extend_from_slice(&OPT_END.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// A 64-bit timestamp as pcapng stores it: high word, then low word.
fn timestamp(out: &mut Vec<u8>, ts: u64) {
    out.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
    out.extend_from_slice(&(ts as u32).to_le_bytes());
}

/// What the section header says about where the capture was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// `shb_hardware`: the host name.
    pub hardware: String,
    /// `shb_os`: the kernel.
    pub os: String,
    /// `shb_userappl`: natcheck and its version.
    pub application: String,
    pub comment: String,
}

/// Appends a section header block of unknown section length.
pub fn section_header(out: &mut Vec<u8>, s: &Section) {
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    text_option(&mut body, SHB_HARDWARE, &s.hardware);
    text_option(&mut body, SHB_OS, &s.os);
    text_option(&mut body, SHB_USERAPPL, &s.application);
    text_option(&mut body, OPT_COMMENT, &s.comment);
    end_of_options(&mut body);
    block(out, SHB, &body);
}

/// One capture point's interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub linktype: u16,
    pub snaplen: u32,
    /// `if_name`: the point's name.
    pub name: String,
    /// `if_description`.
    pub description: String,
    /// `if_filter`, as libpcap filter text.
    pub filter: Option<String>,
}

/// Appends an interface description block with nanosecond timestamps.
pub fn interface(out: &mut Vec<u8>, i: &Interface) {
    let mut body = Vec::new();
    body.extend_from_slice(&i.linktype.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&i.snaplen.to_le_bytes());
    text_option(&mut body, IF_NAME, &i.name);
    text_option(&mut body, IF_DESCRIPTION, &i.description);
    option(&mut body, IF_TSRESOL, &[9]);
    if let Some(f) = &i.filter {
        // The first byte says what follows: 0, a libpcap filter string.
        let mut v = vec![0u8];
        v.extend_from_slice(f.as_bytes());
        option(&mut body, IF_FILTER, &v);
    }
    end_of_options(&mut body);
    block(out, IDB, &body);
}

/// `epb_flags` for a packet of the kernel's packet type (`sll_pkttype`): its
/// direction and how it was received.
pub fn packet_flags(pkttype: u8) -> u32 {
    match pkttype {
        0 => 0b01 | (1 << 2), // PACKET_HOST: inbound, unicast
        1 => 0b01 | (3 << 2), // PACKET_BROADCAST
        2 => 0b01 | (2 << 2), // PACKET_MULTICAST
        3 => 0b01 | (4 << 2), // PACKET_OTHERHOST: promiscuous
        4 => 0b10,            // PACKET_OUTGOING
        _ => 0,
    }
}

/// Appends an enhanced packet block whose data is `parts` one after the other (a
/// frame with a VLAN tag put back is three parts). `original` is the length on the
/// wire; the captured length is that of the parts. Called for every packet: the
/// fixed fields are laid out in two arrays and appended with one copy each.
pub fn packet(
    out: &mut Vec<u8>,
    iface: u32,
    ts_ns: u64,
    parts: &[&[u8]],
    original: u32,
    flags: u32,
) {
    let mut captured = 0;
    for p in parts {
        captured += p.len();
    }
    let pad = (4 - captured % 4) % 4;
    let len = u32::try_from(packet_block_len(captured)).unwrap_or(u32::MAX);
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&EPB.to_le_bytes());
    head[4..8].copy_from_slice(&len.to_le_bytes());
    head[8..12].copy_from_slice(&iface.to_le_bytes());
    head[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    head[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
    head[20..24].copy_from_slice(&(captured as u32).to_le_bytes());
    head[24..28].copy_from_slice(&original.to_le_bytes());
    out.extend_from_slice(&head);
    for p in parts {
        out.extend_from_slice(p);
    }
    // Padding, epb_flags (code, length 4, value), end of options, the length again.
    let mut tail = [0u8; 3 + 16];
    tail[pad..pad + 2].copy_from_slice(&EPB_FLAGS.to_le_bytes());
    tail[pad + 2..pad + 4].copy_from_slice(&4u16.to_le_bytes());
    tail[pad + 4..pad + 8].copy_from_slice(&flags.to_le_bytes());
    tail[pad + 12..pad + 16].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&tail[..pad + 16]);
}

/// A capture point's counters at the end of the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Packets the kernel handed to the socket, drops included (`isb_ifrecv`).
    pub received: u64,
    /// Packets the kernel dropped because the ring was full (`isb_osdrop`).
    pub dropped: u64,
    /// Packets written (`isb_usrdeliv`).
    pub delivered: u64,
}

/// Appends an interface statistics block.
pub fn statistics(out: &mut Vec<u8>, iface: u32, s: &Statistics) {
    let mut body = Vec::new();
    body.extend_from_slice(&iface.to_le_bytes());
    timestamp(&mut body, s.end_ns);
    let ts = |body: &mut Vec<u8>, code, t: u64| {
        let mut v = Vec::with_capacity(8);
        timestamp(&mut v, t);
        option(body, code, &v);
    };
    ts(&mut body, ISB_STARTTIME, s.start_ns);
    ts(&mut body, ISB_ENDTIME, s.end_ns);
    option(&mut body, ISB_IFRECV, &s.received.to_le_bytes());
    option(&mut body, ISB_OSDROP, &s.dropped.to_le_bytes());
    option(&mut body, ISB_USRDELIV, &s.delivered.to_le_bytes());
    end_of_options(&mut body);
    block(out, ISB, &body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::reader::{FrameReader, Next};

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n.wrapping_add(i as u8)).collect()
    }

    /// A file of two points, with packets of every padding, read back by natcheck's
    /// own reader: names, link types, nanosecond times, lengths and bytes.
    #[test]
    fn read_back_by_natcheck() {
        let mut v = Vec::new();
        section_header(
            &mut v,
            &Section {
                hardware: "router".into(),
                os: "Linux 6.1".into(),
                application: "natcheck 0.1.0".into(),
                comment: "natcheck collect -i eth0 -i ns1:eth0".into(),
            },
        );
        interface(
            &mut v,
            &Interface {
                linktype: LINKTYPE_ETHERNET,
                snaplen: 262144,
                name: "eth0".into(),
                description: "eth0 (ifindex 2)".into(),
                filter: Some("tcp port 443".into()),
            },
        );
        interface(
            &mut v,
            &Interface {
                linktype: LINKTYPE_RAW,
                snaplen: 96,
                name: "ns1:eth0".into(),
                ..Interface::default()
            },
        );
        let ts = 1_700_000_000_123_456_789u64;
        let mut want = Vec::new();
        for (i, len) in [60usize, 61, 62, 63, 64, 1514].into_iter().enumerate() {
            let data = frame(i as u8, len);
            let iface = (i % 2) as u32;
            let t = ts + i as u64;
            if i == 1 {
                // In parts, as a frame with its VLAN tag put back is written.
                packet(
                    &mut v,
                    iface,
                    t,
                    &[&data[..12], &data[12..16], &data[16..]],
                    len as u32 + 100,
                    packet_flags(4),
                );
            } else {
                packet(
                    &mut v,
                    iface,
                    t,
                    &[&data],
                    len as u32 + 100,
                    packet_flags(0),
                );
            }
            want.push((iface as usize, t as i64, len as u32 + 100, data));
        }
        let before_stats = v.len();
        statistics(
            &mut v,
            0,
            &Statistics {
                start_ns: ts,
                end_ns: ts + 10,
                received: 3,
                dropped: 1,
                delivered: 2,
            },
        );
        assert_eq!((v.len() - before_stats) % 4, 0);
        assert_eq!(v.len() % 4, 0);

        let mut r = FrameReader::new(&v[..]).unwrap();
        let mut got = Vec::new();
        loop {
            match r.next_frame() {
                Next::Frame(f) => got.push((f.interface, f.ts_ns, f.orig_len, f.data.to_vec())),
                Next::Problem(p) => panic!("{p:?}"),
                Next::End => break,
            }
        }
        assert_eq!(got, want);
        let ifs = r.interfaces();
        assert_eq!(ifs.len(), 2);
        assert_eq!(ifs[0].name.as_deref(), Some("eth0"));
        assert_eq!(ifs[0].linktype, 1);
        assert_eq!(ifs[0].description.as_deref(), Some("eth0 (ifindex 2)"));
        assert_eq!(ifs[1].name.as_deref(), Some("ns1:eth0"));
        assert_eq!(ifs[1].linktype, 101);
    }

    #[test]
    fn lengths_and_flags() {
        for n in 0..9 {
            let mut v = Vec::new();
            packet(&mut v, 0, 0, &[&vec![1u8; n]], n as u32, 0);
            assert_eq!(v.len(), packet_block_len(n));
            let len = u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize;
            let tail = u32::from_le_bytes(v[v.len() - 4..].try_into().unwrap()) as usize;
            assert_eq!((len, tail), (v.len(), v.len()));
        }
        assert_eq!(packet_flags(0), 0b101);
        assert_eq!(packet_flags(4), 0b10);
        assert_eq!(packet_flags(200), 0);
        // A text option longer than 65535 bytes is cut at a character boundary.
        let mut v = Vec::new();
        text_option(&mut v, 1, &"é".repeat(40000));
        let len = u16::from_le_bytes([v[2], v[3]]) as usize;
        assert_eq!(len, 65534);
        assert_eq!(v.len() % 4, 0);
    }
}
