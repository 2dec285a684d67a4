//! What `-i` names: an interface of the namespace collect runs in (`eth0`), or one
//! in another network namespace (`NETNS:IFACE`), NETNS being a name under
//! /run/netns (`ip netns add`), a process id (its /proc/PID/ns/net: a container's
//! namespace) or a path to a namespace file. The point is named as given.
//!
//! Linux interface names cannot hold `:`, `/` or white space and have at most 15
//! bytes, so the last `:` separates the namespace from the interface.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::str::FromStr;

/// Where named network namespaces live (`ip netns add NAME`).
pub const NETNS_DIR: &str = "/run/netns";

/// The longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// A network namespace as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// `ip netns` name: /run/netns/NAME.
    Name(String),
    /// A process's namespace: /proc/PID/ns/net.
    Pid(u32),
    /// A namespace file.
    Path(PathBuf),
}

impl Netns {
    /// The file to open and `setns(2)` into.
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Name(n) => PathBuf::from(NETNS_DIR).join(n),
            Netns::Pid(p) => PathBuf::from(format!("/proc/{p}/ns/net")),
            Netns::Path(p) => p.clone(),
        }
    }
}

impl Netns {
    /// Runs `f` in a thread of its own that entered the namespace first, and returns
    /// what it returns. Only that thread ever changes namespace; what it opens
    /// (sockets) stays in the namespace it was made in and can be used anywhere.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = self.path();
        let name = self.to_string();
        std::thread::Builder::new()
            .name("natcheck-netns".into())
            .spawn(move || {
                enter(&name, &path)?;
                f()
            })?
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the namespace thread panicked")))
    }
}

/// Moves the calling thread into the network namespace of `path`.
fn enter(name: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!(
            "network namespace `{name}` not found: no {} (`ip netns list` shows the names)",
            path.display()
        ),
        io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("entering network namespace `{name}` needs CAP_SYS_ADMIN (run as root)")
        }
        _ => anyhow::anyhow!("opening {}: {e}", path.display()),
    })?;
    // SAFETY: setns() only reads the descriptor, which `file` keeps open for the
    // duration of the call, and changes the namespace of the calling thread alone.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EPERM) => {
            anyhow::anyhow!("entering network namespace `{name}` needs CAP_SYS_ADMIN (run as root)")
        }
        Some(libc::EINVAL) => anyhow::anyhow!("{} is not a network namespace", path.display()),
        _ => anyhow::anyhow!("entering {}: {e}", path.display()),
    })
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netns::Name(n) => f.write_str(n),
            Netns::Pid(p) => write!(f, "{p}"),
            Netns::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One capture point to open: an interface, maybe in another namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub netns: Option<Netns>,
    pub iface: String,
}

impl Target {
    /// Whether the point is every interface of its namespace (`any`).
    pub fn is_any(&self) -> bool {
        self.iface == super::ring::ANY
    }

    /// The point's name: `IFACE` or `NETNS:IFACE`, as given.
    pub fn name(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{ns}:{}", self.iface),
            None => self.iface.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

fn check_ifname(s: &str, whole: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("`{whole}`: no interface name"));
    }
    if s.len() > MAX_IFNAME {
        return Err(format!(
            "`{whole}`: interface name `{s}` is longer than {MAX_IFNAME} bytes"
        ));
    }
    if s == "." || s == ".." || s.chars().any(|c| c == '/' || c.is_whitespace()) {
        return Err(format!("`{whole}`: `{s}` is not an interface name"));
    }
    Ok(())
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let Some((ns, iface)) = s.rsplit_once(':') else {
            check_ifname(s, s)?;
            return Ok(Target {
                netns: None,
                iface: s.to_string(),
            });
        };
        check_ifname(iface, s)?;
        let netns = if ns.is_empty() {
            return Err(format!("`{s}`: no network namespace before `:`"));
        } else if ns.contains('/') {
            Netns::Path(PathBuf::from(ns))
        } else if ns.bytes().all(|b| b.is_ascii_digit()) {
            let pid = ns
                .parse::<u32>()
                .map_err(|_| format!("`{s}`: `{ns}` is not a process id"))?;
            Netns::Pid(pid)
        } else if ns == "." || ns == ".." {
            return Err(format!("`{s}`: `{ns}` is not a namespace name"));
        } else {
            Netns::Name(ns.to_string())
        };
        Ok(Target {
            netns: Some(netns),
            iface: iface.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, String> {
        s.parse()
    }

    #[test]
    fn interfaces_here_and_in_other_namespaces() {
        let here = t("docker0").unwrap();
        assert_eq!(here.netns, None);
        assert_eq!(here.name(), "docker0");
        let named = t("client:eth0").unwrap();
        assert_eq!(named.netns, Some(Netns::Name("client".into())));
        assert_eq!(named.iface, "eth0");
        assert_eq!(named.name(), "client:eth0");
        assert_eq!(
            named.netns.unwrap().path(),
            PathBuf::from("/run/netns/client")
        );
        let pid = t("4242:eth0").unwrap();
        assert_eq!(pid.netns, Some(Netns::Pid(4242)));
        assert_eq!(
            pid.netns.as_ref().unwrap().path(),
            PathBuf::from("/proc/4242/ns/net")
        );
        assert_eq!(pid.name(), "4242:eth0");
        let path = t("/var/run/docker/netns/abc:eth0").unwrap();
        assert_eq!(
            path.netns,
            Some(Netns::Path("/var/run/docker/netns/abc".into()))
        );
        // A path may hold a colon; the interface name cannot.
        let colon = t("/tmp/a:b/ns:veth1").unwrap();
        assert_eq!(colon.netns, Some(Netns::Path("/tmp/a:b/ns".into())));
        assert_eq!(colon.iface, "veth1");
        assert_eq!(t("cni-1234-abcd:eth0").unwrap().iface, "eth0");
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (s, msg) in [
            ("", "no interface name"),
            ("ns:", "no interface name"),
            (":eth0", "no network namespace"),
            ("a-very-long-interface-name", "longer than 15 bytes"),
            ("ns:a-very-long-interface-name", "longer than 15 bytes"),
            ("eth 0", "is not an interface name"),
            ("..", "is not an interface name"),
            ("..:eth0", "is not a namespace name"),
            ("99999999999:eth0", "is not a process id"),
        ] {
            let e = t(s).unwrap_err();
            assert!(e.contains(msg), "{s}: {e}");
        }
    }
}
