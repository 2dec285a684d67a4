//! Address prefixes (`172.17.0.0/16`, `fd00:172:17::/64`) for `--inside`, `net` in
//! `--filter` and the inside prefixes audit learns from the wire. A prefix is kept
//! normalised (host bits cleared), so two spellings of one prefix compare equal and
//! sort together.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The prefix of `addr` with `len` bits (clamped to the address width).
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        let len = len.min(width(addr));
        Cidr {
            addr: mask(addr, len),
            len,
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(a, self.len) == self.addr
            }
            _ => false,
        }
    }
}

fn width(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let bits = u32::from(v);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v) => {
            let bits = u128::from(v);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/LEN`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address or prefix"))?;
        let len = match l {
            None => width(addr),
            Some(l) => {
                let n: u8 = l
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}`: bad prefix length"))?;
                if n > width(addr) {
                    return Err(format!(
                        "`{s}`: prefix length {n} is longer than the address ({} bits)",
                        width(addr)
                    ));
                }
                n
            }
        };
        Ok(Cidr::new(addr, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalise_contains() {
        let c: Cidr = "172.17.3.4/16".parse().unwrap();
        assert_eq!(c.to_string(), "172.17.0.0/16");
        assert!(c.contains("172.17.200.1".parse().unwrap()));
        assert!(!c.contains("172.18.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let h: Cidr = "10.0.0.1".parse().unwrap();
        assert_eq!(h.prefix_len(), 32);
        assert!(h.contains("10.0.0.1".parse().unwrap()));
        assert!(!h.contains("10.0.0.2".parse().unwrap()));
        let z: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("203.0.113.9".parse().unwrap()));
        let v6: Cidr = "fd00:172:17::2/64".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00:172:17::/64");
        assert!(v6.contains("fd00:172:17::99".parse().unwrap()));
        assert!(!v6.contains("fd00:172:18::1".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_input() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("".parse::<Cidr>().is_err());
    }
}
