//! What a run prints: the machine, markdown tables, and the target ratios.

use std::fmt::Write;

use crate::harness::{Outcome, Record};
use crate::spec::size_label;

/// The machine a run happened on.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// C library.
    pub libc: String,
    /// /proc/loadavg when the run started.
    pub load_before: String,
}

impl Machine {
    /// Reads what describes this machine.
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            libc: crate::sys::libc_version(),
            load_before: loadavg(),
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// The three load averages.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// `1234.5` as `1235`, `12.34` as `12.3`.
fn ns(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    }
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Some(v) => format!("{:.1} k", v / 1e3),
        None => "-".into(),
    }
}

fn gbps(v: Option<f64>) -> String {
    v.map(|v| format!("{:.3}", v / 1e9)).unwrap_or_else(|| "-".into())
}

/// The floor of each run, in run order ("-" when not probed).
fn floor_list(r: &Record) -> String {
    if r.floor_runs_ns.iter().all(Option::is_none) {
        return "-".into();
    }
    r.floor_runs_ns
        .iter()
        .map(|f| f.map(|f| format!("{f:.0}")).unwrap_or_else(|| "?".into()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The latency table (ping-pong records).
pub fn latency_table(records: &[Record]) -> String {
    let mut s = String::new();
    s.push_str(
        "| transport | mode | size | p50 ns | p99 ns | p99.9 ns | max ns | p50 min-max over runs | runs | floor ns |\n",
    );
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in records.iter().filter(|r| r.pattern == "pingpong") {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {}-{} | {} | {} |",
            r.transport,
            r.mode,
            size_label(r.size),
            ns(r.p50_ns),
            ns(r.p99_ns),
            ns(r.p999_ns),
            ns(r.max_ns),
            ns(r.p50_min_ns),
            ns(r.p50_max_ns),
            r.runs,
            floor_list(r)
        );
    }
    s
}

/// The throughput table (stream, fan-out and mpsc records).
pub fn throughput_table(records: &[Record]) -> String {
    let mut s = String::new();
    s.push_str("| transport | mode | pattern | size | msg/s per receiver | GB/s per receiver | msg/s min-max over runs | runs | floor ns |\n");
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    for r in records.iter().filter(|r| r.pattern != "pingpong") {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {}-{} | {} | {} |",
            r.transport,
            r.mode,
            r.pattern,
            size_label(r.size),
            rate(r.msgs_per_s),
            gbps(r.bytes_per_s),
            rate(r.msgs_per_s_min),
            rate(r.msgs_per_s_max),
            r.runs,
            floor_list(r)
        );
    }
    s
}

/// A target and how this run measured against it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ratio {
    /// What is compared.
    pub what: String,
    /// The measured ratio (of the two medians).
    pub value: Option<f64>,
    /// Ratios between runs of the two cases that ran on the same CPU-to-CPU
    /// floor: (floor ns, median ratio, pairs), one entry per floor level.
    pub by_floor: Vec<(f64, f64, usize)>,
    /// The goal, as text ("<= 1.5").
    pub goal: String,
    /// Met, missed, or not measured (None).
    pub met: Option<bool>,
}

fn find<'a>(records: &'a [Record], id: &str, pattern: &str, size: usize) -> Option<&'a Record> {
    records.iter().find(|r| r.id == id && r.pattern == pattern && r.size == size)
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Ratios a/b over every pair of runs (one of each case) whose floors are
/// within 25% of each other, grouped into floor levels (a level spans at
/// most a factor 1.5): (median floor, median ratio, pairs) per level.
pub fn same_floor_ratios(a: &Record, b: &Record, latency: bool) -> Vec<(f64, f64, usize)> {
    let values = |r: &Record| if latency { r.p50_runs_ns.clone() } else { r.msgs_per_s_runs.clone() };
    let (va, vb) = (values(a), values(b));
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    for (x, fa) in va.iter().zip(&a.floor_runs_ns) {
        for (y, fb) in vb.iter().zip(&b.floor_runs_ns) {
            if let (Some(fa), Some(fb)) = (fa, fb) {
                if (fa - fb).abs() <= 0.25 * fa.min(*fb) && *y > 0.0 {
                    pairs.push(((fa + fb) / 2.0, x / y));
                }
            }
        }
    }
    pairs.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut levels = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 <= pairs[i].0 * 1.5 {
            j += 1;
        }
        let group = &pairs[i..j];
        levels.push((
            median_of(group.iter().map(|p| p.0).collect()),
            median_of(group.iter().map(|p| p.1).collect()),
            group.len(),
        ));
        i = j;
    }
    levels
}

/// Which figure of two records a ratio compares.
#[derive(Clone, Copy)]
enum Metric {
    P50,
    P99,
    MsgsPerS,
    BytesPerS,
}

impl Metric {
    fn of(self, r: &Record) -> Option<f64> {
        match self {
            Metric::P50 => r.p50_ns,
            Metric::P99 => r.p99_ns,
            Metric::MsgsPerS => r.msgs_per_s,
            Metric::BytesPerS => r.bytes_per_s,
        }
    }
}

/// One ratio to report: `a / b` of `metric` in `pattern` at `size` (`b`
/// in `b_pattern` when set, e.g. a fan-out against a 1 -> 1 stream), and
/// its goal: (text, at most, at least).
struct Target {
    what: &'static str,
    pattern: &'static str,
    size: usize,
    a: &'static str,
    b: &'static str,
    b_pattern: Option<&'static str>,
    metric: Metric,
    goal: (&'static str, Option<f64>, Option<f64>),
}

const COMPARISON: (&str, Option<f64>, Option<f64>) = ("(comparison)", None, None);

/// The project's targets, like with like: busy-spin shmbus against
/// busy-polling sockets, park mode against blocking sockets, each against
/// the raw floor of its kind; then the old headline pairs (busy-spin against
/// blocking sockets, not like with like) for comparison with earlier runs,
/// and iceoryx2.
const TARGETS: &[Target] = &[
    Target {
        what: "latency 64 B p50: shmbus busy-spin / raw-atomic ping-pong",
        pattern: "pingpong",
        size: 64,
        a: "shmbus-spin",
        b: "raw-atomic",
        b_pattern: None,
        metric: Metric::P50,
        goal: ("<= 1.5", Some(1.5), None),
    },
    Target {
        what: "latency 64 B p50: shmbus busy-spin / raw-atomic ping-pong (issue 15)",
        pattern: "pingpong",
        size: 64,
        a: "shmbus-spin",
        b: "raw-atomic",
        b_pattern: None,
        metric: Metric::P50,
        goal: ("<= 1.1", Some(1.1), None),
    },
    Target {
        what: "latency 64 B p50: uds-stream busy-poll / shmbus busy-spin",
        pattern: "pingpong",
        size: 64,
        a: "uds-stream-poll",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P50,
        goal: (">= 50", None, Some(50.0)),
    },
    Target {
        what: "latency 64 B p50: shmbus park / raw-futex ping-pong",
        pattern: "pingpong",
        size: 64,
        a: "shmbus-park",
        b: "raw-futex",
        b_pattern: None,
        metric: Metric::P50,
        goal: ("<= 1.1", Some(1.1), None),
    },
    Target {
        what: "latency 64 B p50: uds-stream blocking / shmbus park",
        pattern: "pingpong",
        size: 64,
        a: "uds-stream",
        b: "shmbus-park",
        b_pattern: None,
        metric: Metric::P50,
        goal: COMPARISON,
    },
    Target {
        what: "latency 64 KiB p50: shmbus busy-spin / raw-atomic ping-pong",
        pattern: "pingpong",
        size: 65536,
        a: "shmbus-spin",
        b: "raw-atomic",
        b_pattern: None,
        metric: Metric::P50,
        goal: (">= 1 (raw is the floor)", None, Some(1.0)),
    },
    Target {
        what: "stream 64 B msg/s: shmbus busy-spin / raw-ring",
        pattern: "stream",
        size: 64,
        a: "shmbus-spin",
        b: "raw-ring",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 0.6", None, Some(0.6)),
    },
    Target {
        what: "stream 64 B msg/s: shmbus busy-spin / raw-ring (issue 15)",
        pattern: "stream",
        size: 64,
        a: "shmbus-spin",
        b: "raw-ring",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 0.5", None, Some(0.5)),
    },
    Target {
        what: "stream 64 B msg/s: shmbus batch / raw-ring",
        pattern: "stream",
        size: 64,
        a: "shmbus-batch",
        b: "raw-ring",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 0.8", None, Some(0.8)),
    },
    Target {
        what: "stream 64 B msg/s: shmbus busy-spin / uds-stream busy-poll",
        pattern: "stream",
        size: 64,
        a: "shmbus-spin",
        b: "uds-stream-poll",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 30", None, Some(30.0)),
    },
    Target {
        what: "stream 64 B msg/s: shmbus park / uds-stream blocking",
        pattern: "stream",
        size: 64,
        a: "shmbus-park",
        b: "uds-stream",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: COMPARISON,
    },
    Target {
        what: "stream 1 KiB msg/s: shmbus busy-spin / raw-ring",
        pattern: "stream",
        size: 1024,
        a: "shmbus-spin",
        b: "raw-ring",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 0.5", None, Some(0.5)),
    },
    Target {
        what: "stream 1 KiB msg/s: shmbus busy-spin / raw-ring (issue 15)",
        pattern: "stream",
        size: 1024,
        a: "shmbus-spin",
        b: "raw-ring",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: (">= 0.8", None, Some(0.8)),
    },
    Target {
        what: "stream 64 KiB GB/s: shmbus busy-spin / uds-stream busy-poll",
        pattern: "stream",
        size: 65536,
        a: "shmbus-spin",
        b: "uds-stream-poll",
        b_pattern: None,
        metric: Metric::BytesPerS,
        goal: (">= 4", None, Some(4.0)),
    },
    Target {
        what: "stream 64 KiB GB/s: shmbus park / uds-stream blocking",
        pattern: "stream",
        size: 65536,
        a: "shmbus-park",
        b: "uds-stream",
        b_pattern: None,
        metric: Metric::BytesPerS,
        goal: COMPARISON,
    },
    Target {
        what: "fan-out 1->4 64 B msg/s per subscriber: shmbus park / shmbus park 1->1 stream",
        pattern: "fanout-1x4",
        size: 64,
        a: "shmbus-park",
        b: "shmbus-park",
        b_pattern: Some("stream"),
        metric: Metric::MsgsPerS,
        goal: (">= 0.3", None, Some(0.3)),
    },
    Target {
        what: "fan-out 1->4 64 B msg/s per subscriber: shmbus spin-then-park / shmbus spin-then-park 1->1 stream",
        pattern: "fanout-1x4",
        size: 64,
        a: "shmbus-spin-park",
        b: "shmbus-spin-park",
        b_pattern: Some("stream"),
        metric: Metric::MsgsPerS,
        goal: COMPARISON,
    },
    Target {
        what: "old headline, unlike: latency 64 B p50: uds-stream blocking / shmbus busy-spin",
        pattern: "pingpong",
        size: 64,
        a: "uds-stream",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P50,
        goal: COMPARISON,
    },
    Target {
        what: "old headline, unlike: stream 64 B msg/s: shmbus busy-spin / uds-stream blocking",
        pattern: "stream",
        size: 64,
        a: "shmbus-spin",
        b: "uds-stream",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: COMPARISON,
    },
    Target {
        what: "old headline, unlike: stream 64 KiB GB/s: shmbus busy-spin / uds-stream blocking",
        pattern: "stream",
        size: 65536,
        a: "shmbus-spin",
        b: "uds-stream",
        b_pattern: None,
        metric: Metric::BytesPerS,
        goal: COMPARISON,
    },
    Target {
        what: "latency 64 B p50: iceoryx2 / shmbus busy-spin",
        pattern: "pingpong",
        size: 64,
        a: "iceoryx2",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P50,
        goal: COMPARISON,
    },
    Target {
        what: "latency 64 B p99: iceoryx2 / shmbus busy-spin",
        pattern: "pingpong",
        size: 64,
        a: "iceoryx2",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P99,
        goal: COMPARISON,
    },
    Target {
        what: "stream 64 B msg/s: shmbus busy-spin / iceoryx2",
        pattern: "stream",
        size: 64,
        a: "shmbus-spin",
        b: "iceoryx2",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: COMPARISON,
    },
    Target {
        what: "latency 1 KiB p50: iceoryx2 / shmbus busy-spin",
        pattern: "pingpong",
        size: 1024,
        a: "iceoryx2",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P50,
        goal: COMPARISON,
    },
    Target {
        what: "latency 1 KiB p99: iceoryx2 / shmbus busy-spin",
        pattern: "pingpong",
        size: 1024,
        a: "iceoryx2",
        b: "shmbus-spin",
        b_pattern: None,
        metric: Metric::P99,
        goal: COMPARISON,
    },
    Target {
        what: "stream 1 KiB msg/s: shmbus busy-spin / iceoryx2",
        pattern: "stream",
        size: 1024,
        a: "shmbus-spin",
        b: "iceoryx2",
        b_pattern: None,
        metric: Metric::MsgsPerS,
        goal: COMPARISON,
    },
];

/// The project's targets, each computed from this run's records.
pub fn ratios(records: &[Record]) -> Vec<Ratio> {
    TARGETS
        .iter()
        .map(|t| {
            let ra = find(records, t.a, t.pattern, t.size);
            let rb = find(records, t.b, t.b_pattern.unwrap_or(t.pattern), t.size);
            let value = match (ra.and_then(|r| t.metric.of(r)), rb.and_then(|r| t.metric.of(r))) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let (goal, at_most, at_least) = t.goal;
            let met = value.and_then(|v| match (at_most, at_least) {
                (Some(m), _) => Some(v <= m),
                (_, Some(l)) => Some(v >= l),
                _ => None,
            });
            // Same-floor ratios exist for the p50 and msg/s figures of each run.
            let by_floor = match (ra, rb, t.metric) {
                (Some(ra), Some(rb), Metric::P50 | Metric::MsgsPerS | Metric::BytesPerS) => {
                    same_floor_ratios(ra, rb, t.pattern == "pingpong")
                }
                _ => Vec::new(),
            };
            Ratio { what: t.what.to_string(), value, by_floor, goal: goal.to_string(), met }
        })
        .collect()
}

/// The ratios as a markdown table.
pub fn ratio_table(ratios: &[Ratio]) -> String {
    let mut s = String::from(
        "| target | measured (ratio of medians) | goal | result | between runs on the same CPU-to-CPU floor |\n|---|---:|---:|---|---|\n",
    );
    for r in ratios {
        let value = r.value.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "not measured".into());
        let floors = r
            .by_floor
            .iter()
            .map(|(f, v, n)| format!("{v:.2}x at {f:.0} ns ({n} pairs)"))
            .collect::<Vec<_>>()
            .join("; ");
        let result = match r.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None if r.value.is_some() => "-",
            None => "n/a",
        };
        let _ = writeln!(s, "| {} | {value} | {} | {result} | {floors} |", r.what, r.goal);
    }
    s
}

/// The whole report.
pub fn markdown(machine: &Machine, outcome: &Outcome, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# shmbus benchmark\n");
    let _ = writeln!(s, "- command: `{command}`");
    let _ = writeln!(s, "- CPU: {} ({} online CPUs)", machine.cpu, machine.cores);
    let _ = writeln!(s, "- kernel {}, {}", machine.kernel, machine.libc);
    let _ = writeln!(s, "- load average before: {}, after: {}", machine.load_before, loadavg());
    if outcome.pinned_cpus.len() >= 2 {
        let _ = writeln!(
            s,
            "- ping-pong and 1->1 streams: each process pinned to its own CPU (sender/pinger on CPU {}, receiver/ponger on CPU {}); fan-out and mpsc unpinned",
            outcome.pinned_cpus[0], outcome.pinned_cpus[1]
        );
    } else {
        let _ =
            writeln!(s, "- fewer than 2 CPUs allowed: nothing pinned (busy-spin figures are meaningless on one CPU)");
    }
    let _ = writeln!(
        s,
        "- runs repeated because other processes used more than {:.0}% of a CPU during them: {}; disturbed runs kept: {}",
        crate::harness::FOREIGN_CPU_LIMIT * 100.0,
        outcome.retried,
        outcome.disturbed
    );
    let _ = writeln!(s, "- wall time: {:.0} s\n", outcome.elapsed.as_secs_f64());
    let _ = writeln!(s, "## Latency (ping-pong, one-way = round trip / 2)\n");
    s.push_str(&latency_table(&outcome.records));
    let _ = writeln!(s, "\n## Throughput\n");
    s.push_str(&throughput_table(&outcome.records));
    if outcome.records.iter().any(|r| r.id == "shmbus-loan") {
        let _ = writeln!(
            s,
            "\nshmbus-loan moves messages by reference: the publisher writes only the 9-byte header in place \
             (`loan` + `commit`) and the subscriber reads it in place (`recv_ref`); the payload is never copied. \
             Its latency is that of a message nobody copies and its GB/s counts payload bytes nobody copied: \
             it is left out of the charts."
        );
    }
    let _ = writeln!(s, "\n## Targets\n");
    s.push_str(&ratio_table(&ratios(&outcome.records)));
    if !outcome.failures.is_empty() {
        let _ = writeln!(s, "\n## Failures\n");
        for f in &outcome.failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{reduce, Sample};
    use crate::spec::{Case, Pattern, Transport};

    fn record(transport: Transport, pattern: Pattern, size: usize, msgs_per_s: f64) -> Record {
        let sample = Sample { msgs_per_s: Some(msgs_per_s), ..Sample::default() };
        reduce(Case { pattern, size, transport }, &[sample], false)
    }

    fn row<'a>(ratios: &'a [Ratio], what: &str) -> &'a Ratio {
        ratios.iter().find(|r| r.what == what).unwrap_or_else(|| panic!("no row {what:?}"))
    }

    #[test]
    fn issue_15_rows_compare_what_they_name() {
        let records = [
            record(Transport::ShmbusPark, Pattern::Fanout, 64, 1e6),
            record(Transport::ShmbusPark, Pattern::Stream, 64, 4e6),
            record(Transport::ShmbusSpinPark, Pattern::Fanout, 64, 1e6),
            record(Transport::ShmbusSpinPark, Pattern::Stream, 64, 2e6),
            record(Transport::ShmbusBatch, Pattern::Stream, 64, 9e6),
            record(Transport::ShmbusSpin, Pattern::Stream, 64, 5.5e6),
            record(Transport::RawRing, Pattern::Stream, 64, 10e6),
        ];
        let ratios = ratios(&records);
        let park = row(&ratios, "fan-out 1->4 64 B msg/s per subscriber: shmbus park / shmbus park 1->1 stream");
        assert_eq!((park.value, park.met, park.goal.as_str()), (Some(0.25), Some(false), ">= 0.3"));
        let spin_park = row(
            &ratios,
            "fan-out 1->4 64 B msg/s per subscriber: shmbus spin-then-park / shmbus spin-then-park 1->1 stream",
        );
        assert_eq!((spin_park.value, spin_park.met), (Some(0.5), None));
        let batch = row(&ratios, "stream 64 B msg/s: shmbus batch / raw-ring");
        assert_eq!((batch.value, batch.met), (Some(0.9), Some(true)));
        // The older goal and issue 15's, side by side on the same figures.
        let old = row(&ratios, "stream 64 B msg/s: shmbus busy-spin / raw-ring");
        let new = row(&ratios, "stream 64 B msg/s: shmbus busy-spin / raw-ring (issue 15)");
        assert_eq!((old.value, old.met, new.value, new.met), (Some(0.55), Some(false), Some(0.55), Some(true)));
        // Rows without both records are not measured.
        let one_k = row(&ratios, "stream 1 KiB msg/s: shmbus busy-spin / raw-ring (issue 15)");
        assert_eq!((one_k.value, one_k.met), (None, None));
    }
}
