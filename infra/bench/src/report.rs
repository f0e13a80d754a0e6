//! The markdown report: one section per measurement, each a table of goal vs measured with a
//! verdict, a one-line method and free notes.

use std::fmt::Write;
use std::time::Duration;

/// Whether a measured value met its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// Reported for context; no goal applies.
    Info,
}

impl Verdict {
    pub fn of(pass: bool) -> Self {
        if pass {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "—",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub goal: String,
    pub measured: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    pub method: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: &str, method: &str) -> Self {
        Section {
            title: title.into(),
            method: method.into(),
            ..Section::default()
        }
    }

    pub fn row(
        &mut self,
        metric: impl Into<String>,
        goal: impl Into<String>,
        measured: impl Into<String>,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            metric: metric.into(),
            goal: goal.into(),
            measured: measured.into(),
            verdict,
        });
    }

    /// A row without a goal.
    pub fn info(&mut self, metric: impl Into<String>, measured: impl Into<String>) {
        self.row(metric, "—", measured, Verdict::Info);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// A section that could not be measured, saying why.
    pub fn failed(title: &str, method: &str, error: &anyhow::Error) -> Self {
        let mut s = Section::new(title, method);
        s.row(
            "run",
            "completes",
            format!("failed: {error:#}"),
            Verdict::Miss,
        );
        s
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub header: Vec<String>,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# Pipeline benchmark\n\n");
        for line in &self.header {
            let _ = writeln!(out, "- {line}");
        }
        let (pass, miss) = self
            .sections
            .iter()
            .flat_map(|s| &s.rows)
            .fold((0, 0), |(p, m), r| match r.verdict {
                Verdict::Pass => (p + 1, m),
                Verdict::Miss => (p, m + 1),
                Verdict::Info => (p, m),
            });
        let _ = writeln!(out, "- Goals: {pass} PASS, {miss} MISS\n");
        for section in &self.sections {
            let _ = writeln!(out, "## {}\n", section.title);
            if !section.method.is_empty() {
                let _ = writeln!(out, "Method: {}\n", section.method);
            }
            if !section.rows.is_empty() {
                out.push_str("| metric | goal | measured | |\n| --- | --- | --- | --- |\n");
                for r in &section.rows {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} |",
                        cell(&r.metric),
                        cell(&r.goal),
                        cell(&r.measured),
                        r.verdict.label()
                    );
                }
                out.push('\n');
            }
            for n in &section.notes {
                let _ = writeln!(out, "- {n}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }
}

/// Keeps a value inside its table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Durations in the unit that reads best.
pub fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Percentile (nearest rank) of unsorted samples; zero when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median_f64(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_each_goal_with_its_verdict_and_counts_them() {
        let mut s = Section::new("1. Verify", "timed 1000 iterations");
        s.row("Rust vs Python", ">= 10x", "42.0x", Verdict::Pass);
        s.row("p99 | handler", "< 1 ms", "1.20 ms", Verdict::Miss);
        s.info("iterations", "1000");
        s.note("measured on one core");
        let report = Report {
            header: vec!["Machine: 2 × test cpu".into()],
            sections: vec![s],
        };
        let md = report.to_markdown();
        assert!(md.contains("- Machine: 2 × test cpu"));
        assert!(md.contains("- Goals: 1 PASS, 1 MISS"));
        assert!(md.contains("## 1. Verify"));
        assert!(md.contains("Method: timed 1000 iterations"));
        assert!(md.contains("| Rust vs Python | >= 10x | 42.0x | PASS |"));
        // A pipe in a value does not break the table.
        assert!(md.contains("| p99 \\| handler | < 1 ms | 1.20 ms | MISS |"));
        assert!(md.contains("| iterations | — | 1000 | — |"));
        assert!(md.contains("- measured on one core"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
