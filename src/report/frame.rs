//! The report's tables as polars `DataFrame`s, for `--format csv|ndjson|parquet` and
//! `--tables DIR` (`tables.rs`), and the connections by path and translation kind of
//! the table report. With `tables.rs`, the only module that imports polars.
//!
//! Three tables, each a contract like the JSON schema (docs/json-schema.md, "Tabular
//! output"): `connections` ([`hops`]: one row per connection and hop, return hops
//! too), `findings` (one row per finding and connection) and `points`. Times are UTC
//! datetimes with nanoseconds; what a row lacks (a port of a protocol without ports,
//! the link after the last hop, a conntrack entry) is null. Every row is dated by the
//! first packet of what it describes, for `--partition date`.

use std::io::Write;

use polars::prelude::*;

use super::explain::Words;
use super::rules::{attribution_json, AttributionJson, RuleJson};
use super::{Model, Render};
use crate::audit::ct::{CtEntry, CtMatch};
use crate::audit::Finding;
use crate::correlate::{Connection, Correlation, Hop, Latency, Link};
use crate::model::{NatChange, Tuple};

/// The tabular output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFormat {
    Csv,
    Ndjson,
    Parquet,
}

/// One table of the report, and the time that dates each row.
pub struct Dated {
    /// The table's name: `connections`, `findings`, `points`.
    pub name: &'static str,
    pub df: DataFrame,
    /// Per row, the first packet of the connection or point it describes (of the
    /// finding when it names no connection).
    pub first_ns: Vec<Option<i64>>,
}

/// The port columns: null where the protocol has none (ICMP echo: the identifier as
/// the source port).
fn port(t: &Tuple, src: bool) -> Option<u32> {
    let p = if src { t.sport } else { t.dport };
    if t.proto.has_ports() || (t.proto.is_icmp() && src) {
        Some(u32::from(p))
    } else {
        None
    }
}

/// One column: `f` of every row.
fn col<'a, R, T>(rows: &'a [R], name: &str, f: impl Fn(&'a R) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), rows.iter().map(f).collect::<Vec<T>>())
}

/// A column of times, as UTC datetimes with nanoseconds.
fn times<'a, R>(rows: &'a [R], name: &str, f: impl Fn(&'a R) -> Option<i64>) -> Column {
    let ns: Int64Chunked = rows.iter().map(f).collect();
    ns.with_name(name.into())
        .into_datetime(TimeUnit::Nanoseconds, Some(TimeZone::UTC))
        .into_column()
}

/// `PREFIXsrc, PREFIXsport, PREFIXdst, PREFIXdport` of the tuple `t` picks.
fn tuple_columns<'a, R>(
    rows: &'a [R],
    prefix: &str,
    t: impl Fn(&'a R) -> Option<Tuple>,
) -> Vec<Column> {
    vec![
        col(rows, &format!("{prefix}src"), |r| {
            t(r).map(|t| t.src.to_string())
        }),
        col(rows, &format!("{prefix}sport"), |r| {
            t(r).and_then(|t| port(&t, true))
        }),
        col(rows, &format!("{prefix}dst"), |r| {
            t(r).map(|t| t.dst.to_string())
        }),
        col(rows, &format!("{prefix}dport"), |r| {
            t(r).and_then(|t| port(&t, false))
        }),
    ]
}

/// What a connection's rows share: its finding codes, its conntrack entry, its way
/// through the rules.
struct ConnFacts<'a> {
    findings: String,
    ct: Option<&'a CtMatch>,
    rules: Option<AttributionJson<'a>>,
}

fn conn_facts(m: &Model, i: usize) -> ConnFacts<'_> {
    let mut codes: Vec<&str> = m.findings_of(i).map(|(f, _)| f.code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    ConnFacts {
        findings: codes.join(";"),
        ct: m.conntrack_entry(i),
        rules: m
            .audit
            .rules
            .as_ref()
            .zip(m.attribution(i))
            .map(|(r, a)| attribution_json(r, a)),
    }
}

/// One row of the connections table: a hop and the link to the hop after it
/// (downstream, in the initiator's direction).
struct HopRow<'a> {
    conn: &'a Connection,
    facts: &'a ConnFacts<'a>,
    /// The hops of the path from 0, then the return hops.
    index: usize,
    hop: &'a Hop,
    /// A return hop: replies beside the path.
    ret: bool,
    next: Option<&'a Hop>,
    change: Option<NatChange>,
    /// The path's link to `next` (a return hop's replies have no latency).
    link: Option<&'a Link>,
    /// Initiator packets lost from here to `next`, responder packets from `next` to here.
    lost: [Option<u64>; 2],
}

impl<'a> HopRow<'a> {
    fn ct(&self) -> Option<&'a CtEntry> {
        self.facts.ct.map(|x| &x.entry)
    }

    fn latency(&self, f: fn(&Latency) -> Option<i64>) -> Option<i64> {
        self.link.and_then(|l| l.latency.as_ref()).and_then(f)
    }
}

/// A connection's rows: the path's hops, then the return hops, whose next hop is the
/// one after the hop they stand beside (their replies came from there).
fn hop_rows<'a>(conn: &'a Connection, facts: &'a ConnFacts<'a>, rows: &mut Vec<HopRow<'a>>) {
    for (i, hop) in conn.hops.iter().enumerate() {
        let link = conn.links.get(i);
        rows.push(HopRow {
            conn,
            facts,
            index: i,
            hop,
            ret: false,
            next: conn.hops.get(i + 1),
            change: link.map(|l| l.change),
            link,
            lost: link.map_or([None, None], |l| {
                [
                    Some(l.unmatched.lost_fwd.packets),
                    Some(l.unmatched.lost_rev.packets),
                ]
            }),
        });
    }
    for (k, r) in conn.returns.iter().enumerate() {
        let from = r.from.as_ref().filter(|l| l.hop < conn.hops.len());
        let next = from.map(|l| &conn.hops[l.hop]);
        rows.push(HopRow {
            conn,
            facts,
            index: conn.hops.len() + k,
            hop: &r.hop,
            ret: true,
            next,
            change: next.map(|n| NatChange::between(&r.hop.flow.tuple, &n.flow.tuple)),
            link: None,
            lost: [None, from.map(|l| l.unmatched.packets)],
        });
    }
}

/// `PREFIX_chain, PREFIX_line, PREFIX_rule` of the rule `pick` chooses.
fn rule_columns<'a>(
    rows: &'a [HopRow<'a>],
    prefix: &str,
    pick: fn(&'a AttributionJson<'a>) -> Option<&'a RuleJson<'a>>,
) -> Vec<Column> {
    let rule = |r: &'a HopRow<'a>| r.facts.rules.as_ref().and_then(pick);
    vec![
        col(rows, &format!("{prefix}_chain"), |r| {
            rule(r).map(|j| j.chain)
        }),
        col(rows, &format!("{prefix}_line"), |r| rule(r).map(|j| j.line)),
        col(rows, &format!("{prefix}_rule"), |r| rule(r).map(|j| j.text)),
    ]
}

/// The connections table: one row per connection and hop (see the module doc).
pub fn hops(m: &Model) -> PolarsResult<Dated> {
    hops_of(m, 0..m.correlation.connections.len())
}

/// The rows of [`hops`] of connections `conns` (indices) only.
fn hops_of(m: &Model, conns: std::ops::Range<usize>) -> PolarsResult<Dated> {
    let c = &m.correlation;
    let facts: Vec<ConnFacts> = conns.clone().map(|i| conn_facts(m, i)).collect();
    let mut rows = Vec::new();
    for (conn, f) in c.connections[conns].iter().zip(&facts) {
        hop_rows(conn, f, &mut rows);
    }
    let rows = &rows[..];
    let point = |h: &Hop| c.points[h.point].name.as_str();
    let mut columns = vec![
        col(rows, "connection", |r| r.conn.id.as_str()),
        col(rows, "hop", |r| r.index as u32),
        col(rows, "point", |r| point(r.hop)),
        col(rows, "role", |r| if r.ret { "return" } else { "path" }),
        col(rows, "proto", |r| r.conn.proto.name()),
    ];
    columns.extend(tuple_columns(rows, "", |r| Some(r.hop.flow.tuple)));
    columns.extend([
        col(rows, "community_id", |r| r.hop.flow.community_id()),
        times(rows, "first_seen", |r| Some(r.hop.first_ns)),
        times(rows, "last_seen", |r| Some(r.hop.last_ns)),
        col(rows, "packets_fwd", |r| r.hop.flow.packets[0]),
        col(rows, "packets_rev", |r| r.hop.flow.packets[1]),
        col(rows, "bytes_fwd", |r| r.hop.flow.bytes[0]),
        col(rows, "bytes_rev", |r| r.hop.flow.bytes[1]),
        col(rows, "next_point", |r| r.next.map(point)),
        col(rows, "nat_kind", |r| r.change.map(|x| x.kind.as_str())),
        col(rows, "port_reallocated", |r| {
            r.change.map(|x| x.port_reallocated)
        }),
    ]);
    columns.extend(tuple_columns(rows, "next_", |r| {
        r.next.map(|h| h.flow.tuple)
    }));
    columns.extend([
        col(rows, "lost_fwd", |r| r.lost[0]),
        col(rows, "lost_rev", |r| r.lost[1]),
        col(rows, "latency_first_ns", |r| r.latency(|l| l.first_ns)),
        col(rows, "latency_p50_ns", |r| r.latency(|l| Some(l.p50_ns))),
        col(rows, "latency_p99_ns", |r| r.latency(|l| Some(l.p99_ns))),
        col(rows, "latency_max_ns", |r| r.latency(|l| Some(l.max_ns))),
        col(rows, "confidence", |r| r.link.map(|l| l.confidence)),
        col(rows, "ct_entry", |r| r.ct().map(|e| e.place())),
        col(rows, "ct_id", |r| r.ct().and_then(|e| e.id)),
        col(rows, "ct_state", |r| {
            r.ct().and_then(|e| e.state.as_deref())
        }),
        col(rows, "ct_mark", |r| r.ct().and_then(|e| e.mark)),
        col(rows, "ct_zone", |r| r.ct().map(|e| u32::from(e.zone))),
        col(rows, "rules_fate", |r| {
            r.facts.rules.as_ref().and_then(|a| a.fate)
        }),
    ]);
    columns.extend(rule_columns(rows, "dnat", |a| {
        a.dnat.as_ref()?.rule.as_ref()
    }));
    columns.extend(rule_columns(rows, "snat", |a| {
        a.snat.as_ref()?.rule.as_ref()
    }));
    columns.extend(rule_columns(rows, "decided_by", |a| a.decided_by.as_ref()));
    columns.push(col(rows, "findings", |r| r.facts.findings.as_str()));
    Ok(Dated {
        name: "connections",
        df: DataFrame::new_infer_height(columns)?,
        first_ns: rows.iter().map(|r| Some(r.conn.first_ns())).collect(),
    })
}

/// One row of the findings table: a finding and one of its connections.
struct FindingRow<'a> {
    /// The finding's place in the report's list, from 1.
    number: u32,
    f: &'a Finding,
    w: &'a Words,
    conn: Option<&'a Connection>,
}

impl<'a> FindingRow<'a> {
    /// The point the finding is mainly about.
    fn point(&self) -> Option<&'a str> {
        self.f.points.first().map(String::as_str)
    }
}

/// The findings table: one row per finding and connection it names (one row for a
/// finding that names none), in the report's order.
pub fn findings(m: &Model) -> PolarsResult<Dated> {
    let c = &m.correlation;
    let mut rows = Vec::new();
    for (k, (f, w)) in m.findings().enumerate() {
        let number = k as u32 + 1;
        let row = |conn| FindingRow { number, f, w, conn };
        if f.conns.is_empty() {
            rows.push(row(None));
        }
        rows.extend(f.conns.iter().map(|&i| row(c.connections.get(i))));
    }
    let rows = &rows[..];
    let hop = |r: &FindingRow| {
        let p = r.point()?;
        r.conn?
            .all_hops()
            .position(|h| c.points[h.point].name == p)
            .map(|i| i as u32)
    };
    let columns = vec![
        col(rows, "finding", |r| r.number),
        col(rows, "code", |r| r.f.code.as_str()),
        col(rows, "severity", |r| r.f.severity.as_str()),
        col(rows, "connection", |r| r.conn.map(|x| x.id.as_str())),
        col(rows, "hop", hop),
        col(rows, "point", |r| r.point()),
        times(rows, "first_seen", |r| r.f.first_ns),
        times(rows, "last_seen", |r| r.f.last_ns),
        col(rows, "packets", |r| r.f.packets),
        col(rows, "message", |r| r.w.message.as_str()),
    ];
    Ok(Dated {
        name: "findings",
        df: DataFrame::new_infer_height(columns)?,
        first_ns: rows
            .iter()
            .map(|r| r.conn.map(Connection::first_ns).or(r.f.first_ns))
            .collect(),
    })
}

/// The points table: one row per capture point, in the report's order.
pub fn points(c: &Correlation) -> PolarsResult<Dated> {
    let rows = &c.points[..];
    let columns = vec![
        col(rows, "point", |p| p.name.as_str()),
        col(rows, "source", |p| p.source.as_str()),
        col(rows, "linktype", |p| p.linktype.as_str()),
        col(rows, "interface", |p| p.interface.as_deref()),
        col(rows, "packets", |p| p.packets),
        col(rows, "flows", |p| p.flows as u64),
        times(rows, "first_seen", |p| p.first_ns),
        times(rows, "last_seen", |p| p.last_ns),
        col(rows, "clock_offset_ns", |p| p.clock.offset_ns),
        col(rows, "clock_reference", |p| {
            c.points[p.clock.reference].name.as_str()
        }),
        col(rows, "clock_basis", |p| p.clock.basis.as_str()),
        col(rows, "clock_samples", |p| p.clock.samples as u64),
    ];
    Ok(Dated {
        name: "points",
        df: DataFrame::new_infer_height(columns)?,
        first_ns: rows.iter().map(|p| p.first_ns).collect(),
    })
}

/// The three tables of a report.
pub fn tables(m: &Model) -> PolarsResult<[Dated; 3]> {
    Ok([hops(m)?, findings(m)?, points(&m.correlation)?])
}

/// One row per connection with what [`summary`] adds up: `path`, `kind` (end to end),
/// the first hop's packets, the packets lost over every link of the path, and
/// `findings[i]`, the number of findings of connection i.
pub fn connections(c: &Correlation, findings: &[u32]) -> PolarsResult<DataFrame> {
    let conns: &[Connection] = &c.connections;
    let lost = |x: &Connection, f: fn(&Link) -> u64| x.links.iter().map(f).sum::<u64>();
    DataFrame::new_infer_height(vec![
        col(conns, "path", |x| super::fmt::path_label(c, x, ">")),
        col(conns, "kind", Connection::kind_token),
        col(conns, "packets_fwd", |x| x.hops[0].flow.packets[0]),
        col(conns, "packets_rev", |x| x.hops[0].flow.packets[1]),
        col(conns, "lost_fwd", |x| {
            lost(x, |l| l.unmatched.lost_fwd.packets)
        }),
        col(conns, "lost_rev", |x| {
            lost(x, |l| l.unmatched.lost_rev.packets)
        }),
        Column::new(
            "findings".into(),
            (0..conns.len())
                .map(|i| findings.get(i).copied().unwrap_or(0))
                .collect::<Vec<_>>(),
        ),
    ])
}

/// Columns summed per group in [`summary`].
const SUMMED: [&str; 5] = [
    "packets_fwd",
    "packets_rev",
    "lost_fwd",
    "lost_rev",
    "findings",
];

/// Connections, packets and lost packets by path and translation kind, sorted by path
/// then kind.
pub fn summary(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut groups = df.partition_by_stable(["path", "kind"], true)?;
    groups.sort_by_cached_key(|g| {
        let key = |c: &str| {
            g.column(c)
                .ok()
                .and_then(|c| c.str().ok()?.get(0).map(str::to_string))
        };
        (key("path"), key("kind"))
    });
    let mut path = Vec::with_capacity(groups.len());
    let mut kind = Vec::with_capacity(groups.len());
    let mut connections = Vec::with_capacity(groups.len());
    let mut sums: Vec<Vec<u64>> = vec![Vec::with_capacity(groups.len()); SUMMED.len()];
    for g in &groups {
        path.push(
            g.column("path")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_string(),
        );
        kind.push(
            g.column("kind")?
                .str()?
                .get(0)
                .unwrap_or_default()
                .to_string(),
        );
        connections.push(g.height() as u64);
        for (i, c) in SUMMED.iter().enumerate() {
            let total = g
                .column(c)?
                .cast(&DataType::UInt64)?
                .u64()?
                .sum()
                .unwrap_or(0);
            sums[i].push(total);
        }
    }
    let mut cols = vec![
        Column::new("path".into(), path),
        Column::new("kind".into(), kind),
        Column::new("connections".into(), connections),
    ];
    for (name, v) in SUMMED.iter().zip(sums) {
        cols.push(Column::new((*name).into(), v));
    }
    DataFrame::new_infer_height(cols)
}

/// `--format csv|ndjson|parquet`: the connections table.
pub struct Frame(pub FrameFormat);

impl Render for Frame {
    fn render(&self, m: &Model, out: &mut dyn Write) -> anyhow::Result<()> {
        write_hops(m, self.0, FRAME_RUN, out)?;
        Ok(())
    }
}

/// Connections a CSV or NDJSON report holds in one frame at a time, Parquet four times
/// as many (a row group or more each): their rows are written before the next
/// connections' are made (a frame of a million connections' hops is gigabytes).
const FRAME_RUN: usize = 16_384;

/// The connections table in `format`, made and written `run` connections at a time
/// (CSV: its header once; NDJSON), `4 × run` for Parquet.
fn write_hops(
    m: &Model,
    format: FrameFormat,
    run: usize,
    mut out: &mut dyn Write,
) -> PolarsResult<()> {
    if format == FrameFormat::Parquet {
        return write_parquet_hops(m, run * 4, &mut out);
    }
    for (k, conns) in runs(m.correlation.connections.len(), run).enumerate() {
        let mut df = hops_of(m, conns)?.df;
        write_rows(&mut df, format, k == 0, &mut out)?;
    }
    Ok(())
}

/// `n` connections in runs of `run` (at least one run, empty when `n` is 0).
fn runs(n: usize, run: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let run = run.max(1);
    (0..n.max(1))
        .step_by(run)
        .map(move |from| from..n.min(from + run))
}

/// The connections table as one Parquet file, made `run` connections at a time, each
/// run's rows one or more row groups (at most 512 × 512 rows, as a whole frame is
/// written).
fn write_parquet_hops(m: &Model, run: usize, out: &mut impl Write) -> PolarsResult<()> {
    let mut runs = runs(m.correlation.connections.len(), run);
    let first = runs.next().expect("at least one run");
    // The first run's frame gives the file its schema, and is given back once written.
    let mut writer = {
        let mut df = hops_of(m, first)?.df;
        let rows = polars::frame::chunk_df_for_writing(&mut df, 512 * 512)?;
        let mut writer = ParquetWriter::new(out).batched(rows.schema())?;
        writer.write_batch(&rows)?;
        writer
    };
    for conns in runs {
        let mut df = hops_of(m, conns)?.df;
        let rows = polars::frame::chunk_df_for_writing(&mut df, 512 * 512)?;
        writer.write_batch(&rows)?;
    }
    writer.finish().map(|_| ())
}

pub fn write(df: &mut DataFrame, format: FrameFormat, out: &mut impl Write) -> PolarsResult<()> {
    write_rows(df, format, true, out)
}

/// [`write`], the CSV header only where `header` says.
fn write_rows(
    df: &mut DataFrame,
    format: FrameFormat,
    header: bool,
    out: &mut impl Write,
) -> PolarsResult<()> {
    match format {
        // Times as in every other report, RFC 3339 with nanoseconds, written by
        // `fmt.rs`: polars formats UTC datetimes only with its time zone database, and
        // its JSON writer drops nanoseconds.
        FrameFormat::Csv => CsvWriter::new(out)
            .include_header(header)
            .finish(&mut times_as_text(df)?),
        FrameFormat::Ndjson => JsonWriter::new(out)
            .with_json_format(JsonFormat::JsonLines)
            .finish(&mut times_as_text(df)?),
        FrameFormat::Parquet => ParquetWriter::new(out).finish(df).map(|_| ()),
    }
}

/// `df` with every datetime column replaced by RFC 3339 strings.
fn times_as_text(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut out = df.clone();
    for col in df.columns() {
        if let DataType::Datetime(TimeUnit::Nanoseconds, _) = col.dtype() {
            let text: StringChunked = col
                .datetime()?
                .physical()
                .iter()
                .map(|ns| ns.map(super::fmt::rfc3339_ns))
                .collect();
            out.with_column(text.with_name(col.name().clone()).into_column())?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::InputSpec;
    use crate::pipeline::{self, Config};

    #[test]
    fn tables_made_a_run_of_connections_at_a_time_read_as_made_whole() {
        let at = |f: &str| format!("{}/samples/masquerade/{f}", env!("CARGO_MANIFEST_DIR"));
        let cfg = Config {
            captures: ["docker0.pcap", "eth0.pcap", "veth-c1.pcap"]
                .iter()
                .map(|f| InputSpec {
                    label: None,
                    path: at(f).into(),
                    prefix: None,
                })
                .collect(),
            witnesses: vec![at("conntrack.txt")],
            rules: vec![at("iptables.txt")],
            ..Config::default()
        };
        let m = pipeline::run(&cfg).unwrap();
        let n = m.correlation.connections.len();
        assert!(n > 7, "{n} connections");
        for format in [FrameFormat::Csv, FrameFormat::Ndjson] {
            let made = |run: usize| {
                let mut out = Vec::new();
                write_hops(&m, format, run, &mut out).unwrap();
                String::from_utf8(out).unwrap()
            };
            let whole = made(n);
            assert!(whole.lines().count() >= n, "a row a connection and hop");
            for run in [1, 3, 7] {
                assert_eq!(made(run), whole, "{format:?}, {run} at a time");
            }
        }
        // Parquet: one file, a row group (or more) a run; the same rows.
        let read = |run: usize| {
            let mut out = Vec::new();
            write_hops(&m, FrameFormat::Parquet, run, &mut out).unwrap();
            ParquetReader::new(std::io::Cursor::new(out))
                .finish()
                .unwrap()
        };
        let whole = read(n);
        assert_eq!(whole.height(), hops(&m).unwrap().df.height());
        for run in [1, 2, 3] {
            assert!(read(run).equals_missing(&whole), "parquet, {run} at a time");
        }
    }

    #[test]
    fn summary_groups_by_path_and_kind() {
        let df = df!(
            "path" => ["docker0>eth0", "docker0>eth0", "eth0>docker0"],
            "kind" => ["snat", "snat", "dnat"],
            "packets_fwd" => [3u64, 4, 5],
            "packets_rev" => [1u64, 1, 1],
            "lost_fwd" => [0u64, 2, 0],
            "lost_rev" => [0u64, 0, 0],
            "findings" => [0u32, 1, 0],
        )
        .unwrap();
        let s = summary(&df).unwrap();
        assert_eq!(s.height(), 2);
        let conns = s
            .column("connections")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>();
        assert_eq!(conns, [2, 1]);
        let lost = s
            .column("lost_fwd")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>();
        assert_eq!(lost, [2, 0]);
    }
}
