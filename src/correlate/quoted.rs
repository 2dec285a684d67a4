//! ICMP errors and the connections they quote. An error answers one packet of another
//! connection and quotes it; conntrack takes it as RELATED to that connection and NAT
//! translates it with that connection's translation, so the error crosses the points
//! that connection crossed, its outer addresses rewritten as the quoted packet's were.
//! At every point an error was seen, the tuple it quotes is the quoted connection's
//! tuple there, in one direction or the other: [`attach`] names that connection in
//! the error's [`Connection::about`].

use foldhash::{HashMap, HashMapExt};

use super::Connection;
use crate::model::Tuple;

/// Sets `about` on every connection made of ICMP errors whose quoted tuple is a hop
/// of another connection at the point the error was seen there: the first such
/// connection in numbering order, the first of the error's hops that finds one.
/// `conns` are numbered (`c1`, `c2`, ... in order).
pub(super) fn attach(conns: &mut [Connection]) {
    // The tuples the errors quote, by point: few, so only they are looked for.
    let mut wanted: HashMap<(usize, Tuple), Option<u32>> = HashMap::new();
    for c in conns.iter() {
        for h in &c.hops {
            if let Some(q) = h.flow.icmp_error.as_ref().and_then(|e| e.quoted) {
                wanted.insert((h.point, q.canonical()), None);
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    for (i, c) in conns.iter().enumerate() {
        if c.icmp_error().is_some() {
            continue;
        }
        for h in c.all_hops() {
            if let Some(slot @ None) = wanted.get_mut(&(h.point, h.flow.tuple.canonical())) {
                *slot = Some(i as u32 + 1);
            }
        }
    }
    for c in conns.iter_mut() {
        c.about = (c.hops.iter())
            .filter_map(|h| Some((h.point, h.flow.icmp_error.as_ref()?.quoted?)))
            .find_map(|(p, q)| wanted.get(&(p, q.canonical())).copied().flatten());
    }
}

#[cfg(test)]
mod tests {
    use crate::capture::{InputSpec, ReadOptions};
    use crate::correlate::{run, Config, Correlation};

    fn recording(scenario: &str, points: &[&str]) -> Correlation {
        let root = env!("CARGO_MANIFEST_DIR");
        let specs: Vec<InputSpec> = (points.iter())
            .map(|p| {
                format!("{root}/samples/{scenario}/{p}.pcap")
                    .parse()
                    .unwrap()
            })
            .collect();
        run(&specs, &ReadOptions::default(), Config::default())
    }

    /// A container's port unreachable about a datagram DNATed to it, crossing three
    /// points back (IPv4); the host's own port unreachable about an answer from the
    /// wrong address and its packet too big about a masqueraded segment, each seen at
    /// one point (IPv6): each error names the connection whose tuple it quotes at a
    /// point it was seen, and no other connection names one.
    #[test]
    fn each_error_names_the_connection_it_quotes() {
        for (s, points) in [
            ("stale-udp", &["veth-c1", "docker0", "eth0"][..]),
            ("fault-wrong-source-udp6", &["docker0", "eth0"][..]),
            (
                "fault-pmtu-black-hole6",
                &["veth-c1", "docker0", "eth0"][..],
            ),
        ] {
            let c = recording(s, points);
            let mut errors = 0;
            for conn in &c.connections {
                let Some(e) = conn.icmp_error() else {
                    assert_eq!(conn.about, None, "{s}: {}", conn.id);
                    continue;
                };
                errors += 1;
                let id = conn
                    .about_id()
                    .unwrap_or_else(|| panic!("{s}: {}", conn.id));
                let quoted = c.connections.iter().find(|k| k.id == id).unwrap();
                let q = e.quoted.unwrap().canonical();
                assert!(
                    conn.hops.iter().any(|h| quoted
                        .all_hops()
                        .any(|k| k.point == h.point && k.flow.tuple.canonical() == q)),
                    "{s}: {} quotes {q:?}, not a tuple of {id} where it was seen",
                    conn.id
                );
            }
            assert!(errors > 0, "{s}");
        }
    }
}
