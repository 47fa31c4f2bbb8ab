//! The result of a run: one table on stdout (rows grouped by scenario,
//! one row per target), the target checks, notes, and the same as JSON.

use std::time::Duration;

use serde::Serialize;

use super::histogram::Latencies;

/// One measured row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured, e.g. "GET 1 object".
    pub scenario: String,
    /// Where: "embedded", "etcd", "target", "limit".
    pub target: String,
    /// Concurrent connections (or watches) during the measurement.
    pub concurrency: usize,
    /// Successful operations in the measured window.
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Failed operations (wrong status, transport error, lost event),
    /// warm-up included.
    pub errors: u64,
    /// The first few distinct errors.
    pub error_samples: Vec<String>,
    /// CPU cores used during the window by this process, the server, and
    /// etcd (when there is one we can see).
    pub client_cpu: Option<f64>,
    pub server_cpu: Option<f64>,
    pub etcd_cpu: Option<f64>,
}

impl Row {
    pub fn new(scenario: impl Into<String>, target: impl Into<String>, concurrency: usize) -> Row {
        Row {
            scenario: scenario.into(),
            target: target.into(),
            concurrency,
            ops: 0,
            ops_per_sec: 0.0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            errors: 0,
            error_samples: Vec::new(),
            client_cpu: None,
            server_cpu: None,
            etcd_cpu: None,
        }
    }

    pub fn latencies(&mut self, h: &Latencies) {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        self.p50_ms = ms(h.p50());
        self.p99_ms = ms(h.p99());
        self.max_ms = ms(h.max());
    }
}

/// Memory of the server around the watch scenario.
#[derive(Clone, Debug, Serialize)]
pub struct WatchMemory {
    pub target: String,
    pub watches: usize,
    /// `HTTP/1.1` (a connection per watch) or `HTTP/2, N per connection`.
    pub transport: String,
    pub rss_before_mib: f64,
    /// After one LIST in each workspace, before the watches.
    pub rss_workspaces_listed_mib: f64,
    pub rss_with_watches_mib: f64,
    pub rss_after_writes_mib: f64,
}

/// A figure compared with the target.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub value: f64,
    pub unit: String,
    pub target: String,
    pub ok: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub command: String,
    pub cores: usize,
    pub duration_per_phase_s: f64,
    pub warmup_s: f64,
    pub rows: Vec<Row>,
    pub memory: Vec<WatchMemory>,
    /// The `workspaces` scenario's figures.
    pub workspaces: Vec<super::workspaces::WorkspaceFigures>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub total_s: f64,
}

impl Report {
    pub fn row(&self, scenario: &str, target: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.target == target)
    }

    pub fn check(&mut self, what: String, value: f64, unit: &str, target: &str, ok: bool) {
        self.checks.push(Check {
            what,
            value,
            unit: unit.into(),
            target: target.into(),
            ok,
        });
    }

    /// The table, for a terminal or a Markdown code block.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3} ms"));
        let cpu = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "{:<34}{:>10}{:>6}{:>11}{:>12}{:>12}{:>8}{:>6}{:>6}{:>6}",
            "", "target", "conns", "ops/s", "p50", "p99", "errors", "cli", "srv", "etcd"
        );
        // Rows of one scenario together, in first-seen order.
        let mut order: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !order.contains(&r.scenario.as_str()) {
                order.push(&r.scenario);
            }
        }
        for s in order {
            for r in self.rows.iter().filter(|r| r.scenario == s) {
                let _ = writeln!(
                    out,
                    "{:<34}{:>10}{:>6}{:>11}{:>12}{:>12}{:>8}{:>6}{:>6}{:>6}",
                    r.scenario,
                    r.target,
                    r.concurrency,
                    format!("{:.0}/s", r.ops_per_sec),
                    ms(r.p50_ms),
                    ms(r.p99_ms),
                    r.errors,
                    cpu(r.client_cpu),
                    cpu(r.server_cpu),
                    cpu(r.etcd_cpu),
                );
            }
        }
        for m in &self.memory {
            let _ = writeln!(
                out,
                "server RSS ({}, {} watches over {}): {:.0} MiB before, {:.0} MiB after one LIST per workspace (+{:.0} MiB), {:.0} MiB with the watches (+{:.0} MiB), {:.0} MiB after the writes",
                m.target,
                m.watches,
                m.transport,
                m.rss_before_mib,
                m.rss_workspaces_listed_mib,
                m.rss_workspaces_listed_mib - m.rss_before_mib,
                m.rss_with_watches_mib,
                m.rss_with_watches_mib - m.rss_workspaces_listed_mib,
                m.rss_after_writes_mib
            );
        }
        for c in &self.checks {
            if c.target == "-" {
                let _ = writeln!(
                    out,
                    "{:<58} {:>10.2} {:<5} (same etcd request: no target)",
                    c.what, c.value, c.unit
                );
                continue;
            }
            let _ = writeln!(
                out,
                "{:<58} {:>10.2} {:<5} (target {}: {})",
                c.what,
                c.value,
                c.unit,
                c.target,
                if c.ok { "ok" } else { "BELOW TARGET" }
            );
        }
        out
    }

    pub fn print(&self) {
        println!();
        print!("{}", self.render());
        let mut errors: Vec<String> = Vec::new();
        for r in &self.rows {
            for e in &r.error_samples {
                errors.push(format!("  [{} / {}] {e}", r.scenario, r.target));
            }
        }
        if !errors.is_empty() {
            println!("ERRORS (first of each row):");
            for e in errors {
                println!("{e}");
            }
        }
        for n in &self.notes {
            println!("NOTE: {n}");
        }
        println!(
            "cli/srv/etcd = CPU cores used by the load generator, the server and etcd during the window; {} cores in all; {:.1}s per phase after {:.1}s warm-up; total {:.0}s",
            self.cores, self.duration_per_phase_s, self.warmup_s, self.total_s
        );
    }
}
