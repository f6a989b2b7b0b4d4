//! Medians over repetitions of the whole benchmark (`--repeat`): on a
//! machine shared with others one run says little; the median of a few,
//! with their range, is what `docs/benchmarks.md` reports.

use serde_json::{Value, json};

use crate::ceilings::Ceilings;
use crate::load::Outcome;
use crate::report::Report;

/// A figure's median over the repetitions and its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.sort_by(f64::total_cmp);
        let (&min, &max) = (values.first()?, values.last()?);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
        Some(Self { median, min, max })
    }

    fn json(&self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

/// One run (same place in every repetition) summarised over them all.
pub struct MedianRun {
    pub name: String,
    pub per_sec: Spread,
    pub p50_ms: Spread,
    pub p99_ms: Spread,
    pub server_cpu_us_per_op: Spread,
    /// PostgreSQL's processes' CPU (SQLite's is in the server's).
    pub database_cpu_us_per_op: Option<Spread>,
    pub written_kib_per_op: Option<Spread>,
    /// Against the same repetition's ceilings (see [`Ceilings`]).
    pub commit_ratio: Spread,
    pub verify_ratio: Option<Spread>,
    /// A growth run's p99 over the empty database's, per repetition.
    pub p99_against_empty: Option<Spread>,
}

/// One run of a report, with what it is compared against.
struct RunOf<'a> {
    outcome: &'a Outcome,
    /// A growth run's p99 over the empty database's.
    p99_against_empty: Option<f64>,
    ceilings: &'a Ceilings,
}

/// The runs of each report, in order (the empty database's, then each
/// size's).
fn runs_of(report: &Report) -> Vec<RunOf<'_>> {
    let run = |outcome, p99_against_empty| RunOf { outcome, p99_against_empty, ceilings: &report.ceilings };
    let empty = report.runs.iter().map(|o| run(o, None));
    let grown = report.growth.iter().flat_map(|g| {
        g.runs.iter().map(move |o| {
            let ratio = report.p99_against_empty(g).find(|(r, _)| std::ptr::eq(*r, o)).map(|(_, ratio)| ratio);
            run(o, ratio)
        })
    });
    empty.chain(grown).collect()
}

/// A fixed-rate run's rate differs between repetitions (it is a share of
/// that repetition's closed-loop rate), so its name says "at the fixed
/// rate" instead.
fn stable_name(name: &str, target_rate: Option<f64>) -> String {
    match target_rate {
        Some(rate) => name.replace(&format!("at {rate:.0}/s"), "at the fixed rate"),
        None => name.to_owned(),
    }
}

/// Each run's medians over `reports`, which ran the same runs in the same
/// order (the same arguments).
pub fn medians(reports: &[Report]) -> Vec<MedianRun> {
    let all: Vec<_> = reports.iter().map(runs_of).collect();
    let Some(first) = all.first() else { return Vec::new() };
    (0..first.len())
        .map(|i| {
            // The same arguments make the same runs in every repetition.
            let at_i = || all.iter().filter_map(|runs| runs.get(i));
            let spread =
                |f: &dyn Fn(&RunOf) -> f64| Spread::of(at_i().map(f).collect()).expect("the first repetition has it");
            // A figure some runs do not have: none unless every repetition has it.
            let measured_spread =
                |f: &dyn Fn(&RunOf) -> Option<f64>| at_i().map(f).collect::<Option<Vec<_>>>().and_then(Spread::of);
            let first = first[i].outcome;
            MedianRun {
                name: stable_name(&first.name, first.target_rate),
                per_sec: spread(&|r| r.outcome.per_sec()),
                p50_ms: spread(&|r| r.outcome.percentile_ms(50.0)),
                p99_ms: spread(&|r| r.outcome.percentile_ms(99.0)),
                server_cpu_us_per_op: spread(&|r| r.outcome.server_cpu_us_per_op()),
                database_cpu_us_per_op: measured_spread(&|r| r.outcome.database_cpu_us_per_op()),
                written_kib_per_op: measured_spread(&|r| r.outcome.written_kib_per_op()),
                commit_ratio: spread(&|r| r.ceilings.commit_ratio(r.outcome)),
                verify_ratio: measured_spread(&|r| r.ceilings.verify_ratio(r.outcome)),
                p99_against_empty: measured_spread(&|r| r.p99_against_empty),
            }
        })
        .collect()
}

/// The table of `medians` over `repetitions` repetitions.
pub fn print(medians: &[MedianRun], repetitions: usize) {
    println!();
    println!("medians of {repetitions} repetitions (range in brackets)");
    println!(
        "{:<40} {:>22} {:>8} {:>20} {:>10} {:>9} {:>8} {:>9} {:>9} {:>18}",
        "run", "ops/s", "p50 ms", "p99 ms", "srv µs/op", "db µs/op", "KiB/op", "÷ commit", "÷ verify", "p99 ÷ empty"
    );
    for m in medians {
        let range = |s: Spread, digits: usize| format!("{:.digits$} ({:.digits$}–{:.digits$})", s.median, s.min, s.max);
        let median =
            |s: Option<Spread>, digits: usize| s.map_or("—".to_owned(), |s| format!("{:.digits$}", s.median));
        println!(
            "{:<40} {:>22} {:>8.2} {:>20} {:>10.0} {:>9} {:>8} {:>9.3} {:>9} {:>18}",
            m.name,
            range(m.per_sec, 0),
            m.p50_ms.median,
            range(m.p99_ms, 1),
            m.server_cpu_us_per_op.median,
            median(m.database_cpu_us_per_op, 0),
            median(m.written_kib_per_op, 1),
            m.commit_ratio.median,
            median(m.verify_ratio, 3),
            m.p99_against_empty.map_or(String::new(), |s| range(s, 2)),
        );
    }
}

/// Every repetition's report, and the medians over them.
pub fn json(reports: &[Report], medians: &[MedianRun]) -> Value {
    let medians: Vec<Value> = medians
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "perSec": m.per_sec.json(),
                "p50Ms": m.p50_ms.json(),
                "p99Ms": m.p99_ms.json(),
                "serverCpuUsPerOp": m.server_cpu_us_per_op.json(),
                "databaseCpuUsPerOp": m.database_cpu_us_per_op.map(|s| s.json()),
                "writtenKibPerOp": m.written_kib_per_op.map(|s| s.json()),
                "perSecOverCommitCeiling": m.commit_ratio.json(),
                "verificationsOverVerifyCeiling": m.verify_ratio.map(|s| s.json()),
                "p99AgainstEmpty": m.p99_against_empty.map(|s| s.json()),
            })
        })
        .collect();
    json!({
        "repetitions": reports.iter().map(Report::json).collect::<Vec<_>>(),
        "medians": medians,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(Spread::of(vec![]), None);
        assert_eq!(Spread::of(vec![3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of(vec![4.0, 1.0, 2.0, 10.0]), Some(Spread { median: 3.0, min: 1.0, max: 10.0 }));
    }

    /// The medians pair runs by name: every repetition must give scenario
    /// 1's fixed-rate runs the same names, each its own, whatever rate
    /// that repetition's closed loop reached.
    #[test]
    fn fixed_rate_runs_keep_their_own_names_across_repetitions() {
        let names = |closed_loop: f64| -> Vec<String> {
            let runs = crate::scenarios::fixed_rates(closed_loop, 0.5, &[0.25, 0.5, 0.9]);
            runs.iter().map(|(rate, name)| stable_name(name, Some(*rate))).collect()
        };
        let expected = [
            "1 frictionless at the fixed rate",
            "1 frictionless at the fixed rate (25 %)",
            "1 frictionless at the fixed rate (90 %)",
        ];
        assert_eq!(names(9_000.0), expected);
        assert_eq!(names(7_321.0), expected);
    }
}
