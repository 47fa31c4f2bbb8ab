//! Progress on stderr: one bar per phase (time-based for measured phases,
//! count-based for set-up), hidden with `--no-progress` or when stderr is
//! not a terminal (indicatif's own check).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress { enabled }
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    }

    /// A phase that lasts `total`; `ops` is shown as it grows.
    pub fn timed(&self, label: &str, total: Duration) -> TimedBar {
        let pb = self.bar(
            total.as_millis() as u64,
            "{prefix:<34} [{bar:30}] {elapsed:>4} {msg}",
        );
        pb.set_prefix(label.to_string());
        let ops = Arc::new(AtomicU64::new(0));
        let ticker = {
            let (pb, ops) = (pb.clone(), ops.clone());
            let started = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    pb.set_position(started.elapsed().as_millis() as u64);
                    pb.set_message(format!("{} ops", ops.load(Ordering::Relaxed)));
                }
            })
        };
        TimedBar { pb, ops, ticker }
    }

    /// Set-up work of `total` steps.
    pub fn counted(&self, label: &str, total: u64) -> ProgressBar {
        let pb = self.bar(total, "{prefix:<34} [{bar:30}] {pos}/{len} {elapsed}");
        pb.set_prefix(label.to_string());
        pb
    }

    /// A line that stays above the bars.
    pub fn println(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }
}

pub struct TimedBar {
    pb: ProgressBar,
    pub ops: Arc<AtomicU64>,
    ticker: tokio::task::JoinHandle<()>,
}

impl TimedBar {
    pub fn finish(self) {
        self.ticker.abort();
        self.pb.finish_and_clear();
    }
}
