//! Capture filters: tcpdump syntax compiled to classic BPF by tcpdump itself
//! (`tcpdump -ddd -y LINKTYPE -s SNAPLEN 'FILTER'`, which prints the program as
//! decimal numbers), so that natcheck needs no libpcap to link against and a filter
//! means exactly what it means to tcpdump. The program's accept value is the snap
//! length: the kernel keeps that many bytes of each packet. Without a filter, a
//! one-instruction program (`ret #SNAPLEN`) cuts packets to the snap length.

use std::io;
use std::process::Command;

/// The most instructions the kernel accepts in a classic BPF program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// One classic BPF instruction, as `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// BPF_RET | BPF_K.
const RET_K: u16 = 0x06;
/// Instruction classes, modes and the ancillary data of the kernel's classic BPF.
const CLASS_LD: u16 = 0x00;
const CLASS_LDX: u16 = 0x01;
const MODE_ABS: u16 = 0x20;
const MODE_IND: u16 = 0x40;
const MODE_MSH: u16 = 0xa0;
const LD_W_ABS: u16 = CLASS_LD | MODE_ABS;
const JEQ_K: u16 = 0x15;
/// `SKF_AD_OFF`: loads at and above it read ancillary data, not the packet.
const SKF_AD_OFF: u32 = 0xffff_f000;
const SKF_AD_PROTOCOL_PKTTYPE: u32 = SKF_AD_OFF + 4;
const SKF_AD_HATYPE: u32 = SKF_AD_OFF + 28;
/// `SKF_NET_OFF`: loads at offsets from it read from the network header.
const SKF_NET_OFF: u32 = 0xfff0_0000;
const PACKET_OUTGOING: u32 = 4;
const ARPHRD_LOOPBACK: u32 = 772;

/// `program` made to read the packet from its network header, whatever link header
/// comes before it (`SKF_NET_OFF`): a program compiled for raw IP then filters the
/// packets of every kind of interface a socket bound to all of them (`-i any`)
/// receives. Loads of ancillary data are left as they are.
pub fn network_relative(program: Vec<Insn>) -> Vec<Insn> {
    program
        .into_iter()
        .map(|mut i| {
            let (class, mode) = (i.code & 0x07, i.code & 0xe0);
            let packet_load = (class == CLASS_LD && (mode == MODE_ABS || mode == MODE_IND))
                || (class == CLASS_LDX && mode == MODE_MSH);
            if packet_load && i.k < SKF_NET_OFF {
                i.k = SKF_NET_OFF.wrapping_add(i.k);
            }
            i
        })
        .collect()
}

/// `program` behind a test that refuses what a loopback interface sends: the kernel
/// hands every loopback packet to packet sockets twice, as it leaves and as it comes
/// back in; like libpcap, only the second is kept.
pub fn skip_loopback_outgoing(program: Vec<Insn>) -> Vec<Insn> {
    let insn = |code, jt, jf, k| Insn { code, jt, jf, k };
    let mut out = vec![
        insn(LD_W_ABS, 0, 0, SKF_AD_PROTOCOL_PKTTYPE),
        // Outgoing: look at the interface type; else on to the program.
        insn(JEQ_K, 0, 3, PACKET_OUTGOING),
        insn(LD_W_ABS, 0, 0, SKF_AD_HATYPE),
        insn(JEQ_K, 0, 1, ARPHRD_LOOPBACK),
        insn(RET_K, 0, 0, 0),
    ];
    out.extend(program);
    out
}

/// The program that accepts every packet, cut to `snaplen` bytes.
pub fn accept_all(snaplen: u32) -> Vec<Insn> {
    vec![Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: snaplen,
    }]
}

/// tcpdump's name for a link type (`-y`).
pub fn dlt_name(linktype: u16) -> &'static str {
    match linktype {
        super::pcapng::LINKTYPE_RAW => "RAW",
        _ => "EN10MB",
    }
}

/// Why a filter could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--filter needs tcpdump, which compiles the filter to BPF (`tcpdump -ddd`), and it is not on PATH: install tcpdump or leave out --filter"
    )]
    NoTcpdump,
    #[error("running tcpdump to compile the filter: {0}")]
    Run(#[source] io::Error),
    #[error("tcpdump refused the filter `{filter}`: {message}")]
    Refused { filter: String, message: String },
    #[error("tcpdump -ddd printed something else than a BPF program: {0}")]
    Output(String),
}

/// Compiles `filter` for packets of `linktype`, accepting `snaplen` bytes.
pub fn compile(filter: &str, linktype: u16, snaplen: u32) -> Result<Vec<Insn>, Error> {
    let out = Command::new("tcpdump")
        .args(["-ddd", "-y", dlt_name(linktype), "-s", &snaplen.to_string()])
        .arg("--")
        .arg(filter)
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NoTcpdump
            } else {
                Error::Run(e)
            }
        })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', "; ");
        return Err(Error::Refused {
            filter: filter.to_string(),
            message: if message.is_empty() {
                format!("tcpdump exited with {}", out.status)
            } else {
                message
            },
        });
    }
    parse_ddd(&String::from_utf8_lossy(&out.stdout)).map_err(Error::Output)
}

/// Reads `tcpdump -ddd` output: the number of instructions on the first line, then
/// one instruction per line as four decimal numbers, `code jt jf k`.
pub fn parse_ddd(text: &str) -> Result<Vec<Insn>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or("no output")?;
    let count: usize = first
        .trim()
        .parse()
        .map_err(|_| format!("line 1: `{}` is not an instruction count", first.trim()))?;
    if count == 0 || count > MAX_INSNS {
        return Err(format!(
            "line 1: {count} instructions, the kernel takes 1 to {MAX_INSNS}"
        ));
    }
    let mut prog = Vec::with_capacity(count);
    for (i, line) in lines {
        let n = i + 1;
        if prog.len() == count {
            return Err(format!(
                "line {n}: more than the {count} instructions announced"
            ));
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [code, jt, jf, k] = fields.as_slice() else {
            return Err(format!(
                "line {n}: expected `code jt jf k`, got `{}`",
                line.trim()
            ));
        };
        let bad = |what: &str, v: &str| format!("line {n}: {what} `{v}` out of range");
        prog.push(Insn {
            code: code.parse().map_err(|_| bad("code", code))?,
            jt: jt.parse().map_err(|_| bad("jt", jt))?,
            jf: jf.parse().map_err(|_| bad("jf", jf))?,
            k: k.parse().map_err(|_| bad("k", k))?,
        });
    }
    if prog.len() != count {
        return Err(format!(
            "{count} instructions announced, {} given",
            prog.len()
        ));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
        Insn { code, jt, jf, k }
    }

    #[test]
    fn packet_loads_read_from_the_network_header() {
        // `udp` for raw IP as tcpdump compiles it, with an indirect load, a header
        // length load (MSH), an ancillary load and a jump that must not change.
        let prog = vec![
            i(0x30, 0, 0, 0),             // ldb [0]
            i(0x54, 0, 0, 0xf0),          // and #0xf0
            i(0x15, 0, 4, 0x40),          // jeq #0x40
            i(0xb1, 0, 0, 0),             // ldxb 4*([0]&0xf)
            i(0x48, 0, 0, 2),             // ldh [x + 2]
            i(0x28, 0, 0, SKF_AD_HATYPE), // ld hatype (ancillary)
            i(0x06, 0, 0, 262144),        // ret #262144
            i(0x06, 0, 0, 0),             // ret #0
        ];
        let got = network_relative(prog.clone());
        let ks: Vec<u32> = got.iter().map(|i| i.k).collect();
        assert_eq!(
            ks,
            [
                SKF_NET_OFF,
                0xf0,
                0x40,
                SKF_NET_OFF,
                SKF_NET_OFF + 2,
                SKF_AD_HATYPE,
                262144,
                0
            ]
        );
        for (a, b) in got.iter().zip(&prog) {
            assert_eq!((a.code, a.jt, a.jf), (b.code, b.jt, b.jf));
        }
    }

    #[test]
    fn loopback_outgoing_is_refused_before_the_program() {
        let prog = skip_loopback_outgoing(accept_all(96));
        assert_eq!(prog.len(), 6);
        // Both tests fall through to the program, five instructions on: each jump
        // lands on the program's first instruction or on `ret #0`.
        assert_eq!(1 + 1 + usize::from(prog[1].jf), 5);
        assert_eq!(3 + 1 + usize::from(prog[3].jf), 5);
        assert_eq!(3 + 1 + usize::from(prog[3].jt), 4);
        assert_eq!((prog[4].code, prog[4].k), (RET_K, 0));
        assert_eq!(prog[5], accept_all(96)[0]);
    }

    /// `tcpdump -ddd -y EN10MB -s 96 udp` (tcpdump 4.99, libpcap 1.10).
    const UDP: &str = "12\n40 0 0 12\n21 0 2 2048\n48 0 0 23\n21 6 7 17\n21 0 6 34525\n48 0 0 20\n21 3 0 17\n21 0 3 44\n48 0 0 54\n21 0 1 17\n6 0 0 96\n6 0 0 0\n";

    #[test]
    fn reads_tcpdump_output() {
        let p = parse_ddd(UDP).unwrap();
        assert_eq!(p.len(), 12);
        assert_eq!(
            p[0],
            Insn {
                code: 40,
                jt: 0,
                jf: 0,
                k: 12
            }
        );
        assert_eq!(
            p[3],
            Insn {
                code: 21,
                jt: 6,
                jf: 7,
                k: 17
            }
        );
        assert_eq!(
            p[10],
            Insn {
                code: 6,
                jt: 0,
                jf: 0,
                k: 96
            }
        );
        // Trailing white space and a final blank line are fine; k takes all 32 bits.
        let p = parse_ddd("1\n  6 0 0 4294967295  \n\n").unwrap();
        assert_eq!(
            p,
            [Insn {
                code: 6,
                jt: 0,
                jf: 0,
                k: u32::MAX
            }]
        );
        assert_eq!(
            accept_all(96),
            [Insn {
                code: 6,
                jt: 0,
                jf: 0,
                k: 96
            }]
        );
    }

    #[test]
    fn refuses_what_is_not_a_program() {
        for (text, msg) in [
            ("", "no output"),
            ("tcpdump: syntax error\n", "is not an instruction count"),
            ("0\n", "0 instructions"),
            ("5000\n", "5000 instructions"),
            ("2\n6 0 0 0\n", "2 instructions announced, 1 given"),
            ("1\n6 0 0 0\n6 0 0 0\n", "line 3: more than the 1"),
            ("1\n6 0 0\n", "line 2: expected `code jt jf k`"),
            ("1\n70000 0 0 0\n", "line 2: code `70000` out of range"),
            ("1\n6 256 0 0\n", "jt `256` out of range"),
            ("1\n6 0 -1 0\n", "jf `-1` out of range"),
            ("1\n6 0 0 4294967296\n", "k `4294967296` out of range"),
            ("1\n{ 0x6, 0, 0, 0 },\n", "expected `code jt jf k`"),
        ] {
            let e = parse_ddd(text).unwrap_err();
            assert!(e.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn compiles_with_tcpdump_when_there_is_one() {
        match compile("udp", super::super::pcapng::LINKTYPE_ETHERNET, 96) {
            // Versions of libpcap differ in the code they make; the accept value is
            // the snap length whatever the version.
            Ok(p) => {
                assert!(p.len() > 2, "{p:?}");
                assert!(
                    p.contains(&Insn {
                        code: 6,
                        jt: 0,
                        jf: 0,
                        k: 96
                    }),
                    "{p:?}"
                );
            }
            Err(Error::NoTcpdump) => eprintln!("skipped: tcpdump is not installed"),
            Err(e) => panic!("{e}"),
        }
        match compile("tcp port", super::super::pcapng::LINKTYPE_ETHERNET, 96) {
            Err(Error::Refused { message, .. }) => assert!(!message.is_empty()),
            Err(Error::NoTcpdump) => {}
            other => panic!("{other:?}"),
        }
    }
}
