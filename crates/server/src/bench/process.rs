//! Child processes of a run (a `wsgate serve`, an etcd, the bare hyper
//! handler), each killed when dropped, and what `/proc` says about them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::client::{Conn, Endpoint, Req};

/// A child process, killed (SIGKILL) and reaped on drop, with the temp
/// directory it uses removed after it.
pub struct Child {
    pub name: &'static str,
    child: std::process::Child,
    log: Option<PathBuf>,
    // Dropped after the process is gone (field order).
    _dir: Option<tempfile::TempDir>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited, with the end of its log.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let tail = self
                .log
                .as_deref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|s| {
                    let lines: Vec<&str> = s.lines().collect();
                    lines[lines.len().saturating_sub(20)..].join("\n")
                })
                .unwrap_or_default();
            bail!(
                "{} exited ({status}); its log ends with:\n{tail}",
                self.name
            );
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Is the `etcd` binary on PATH?
pub fn etcd_available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a single-member etcd on free loopback ports with a temp data
/// directory (like `storage::testing`, which normal builds do not carry).
pub async fn start_etcd() -> anyhow::Result<(Child, String)> {
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let name = format!("wsgate-bench-{client}");
    let log = dir.path().join("etcd.log");
    let child = Command::new("etcd")
        .args(["--name", &name])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("{name}={peer_url}")])
        .args(["--initial-cluster-token", &name])
        .args(["--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting etcd")?;
    let mut child = Child {
        name: "etcd",
        child,
        log: Some(log),
        _dir: Some(dir),
    };
    // Listening is not serving: wait for a real answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        child.check_running()?;
        let ok = async {
            let mut c = etcd_client::Client::connect([client_url.as_str()], None).await?;
            c.get("/", None).await?;
            Ok::<_, etcd_client::Error>(())
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), ok).await {
            return Ok((child, client_url));
        }
        if Instant::now() > deadline {
            bail!("etcd did not answer on {client_url} within 20s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `wsgate serve` from this executable on a free loopback port with
/// a temp data dir (and `etcd` as its store when given); waits for
/// `/readyz`.
pub async fn start_server(
    exe: &Path,
    etcd: Option<&str>,
    run_id: &str,
) -> anyhow::Result<(Child, Endpoint)> {
    let dir = tempfile::tempdir()?;
    let (mut child, endpoint) = start_server_in(exe, etcd, run_id, dir.path(), None).await?;
    child._dir = Some(dir);
    Ok((child, endpoint))
}

/// [`start_server`] in a given directory (data in `<dir>/data`, log in
/// `<dir>/wsgate.log`), so a second server can restart on the same data;
/// `log_filter` overrides the server's RUST_LOG.
pub async fn start_server_in(
    exe: &Path,
    etcd: Option<&str>,
    run_id: &str,
    dir: &Path,
    log_filter: Option<&str>,
) -> anyhow::Result<(Child, Endpoint)> {
    let port = free_port()?;
    let log = dir.join("wsgate.log");
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(loopback(port).to_string())
        .arg("--data-dir")
        .arg(dir.join("data"));
    // The listener is plain HTTP today; once TLS is the default the flag
    // that turns it off is used if the server has it.
    let help = serve_help(exe);
    if help.contains("--insecure-http") {
        cmd.arg("--insecure-http");
    }
    if help.contains("--config") {
        // The load generator is one user opening 10,000 watches and filling
        // single workspaces (root holds a million Workspaces in the scale
        // scenario): lift the watch limits and the object quota. Its 64
        // connections into one workspace measure the request path, not
        // fair admission (the fairness scenario does): one workspace may use
        // the whole read and write pools and queue behind them instead of
        // getting 429s.
        let config = dir.join("bench.toml");
        let seats = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        std::fs::write(
            &config,
            format!(
                "[limits]\nmax_watches_per_user = 1000000\nmax_watches_per_workspace = 1000000\ndefault_object_quota = 0\n\
                 [limits.fairness]\nread_max_in_flight = {seats}\nread_workspace_max_in_flight = {seats}\nworkspace_max_in_flight = 600\nqueue_length = 4096\n"
            ),
        )?;
        cmd.arg("--config").arg(config);
    }
    if let Some(endpoint) = etcd {
        cmd.args(["--etcd-endpoints", endpoint])
            .args(["--storage-root", &format!("/wsgate-bench/{run_id}")]);
    }
    if let Some(f) = log_filter {
        cmd.env("WSGATE_LOG_LEVEL", f);
    }
    let filter = match log_filter {
        Some(f) => f.to_owned(),
        None => std::env::var("WSGATE_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    };
    let child = cmd
        .env("RUST_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("spawning {} serve", exe.display()))?;
    let mut child = Child {
        name: "wsgate serve",
        child,
        log: Some(log),
        _dir: None,
    };
    let endpoint = Endpoint::from_addr(loopback(port));
    wait_ready(&mut child, &endpoint, "/readyz", Duration::from_secs(60)).await?;
    Ok((child, endpoint))
}

fn serve_help(exe: &Path) -> String {
    Command::new(exe)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Starts the bare hyper handler (this executable, hidden flag) on a free
/// loopback port: a separate process like the server, so both limits see
/// the same process layout.
pub async fn start_bare_hyper(exe: &Path) -> anyhow::Result<(Child, Endpoint)> {
    let port = free_port()?;
    let child = Command::new(exe)
        .args(["bench", "--internal-bare-hyper"])
        .arg(loopback(port).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning the bare hyper handler")?;
    let mut child = Child {
        name: "bare hyper handler",
        child,
        log: None,
        _dir: None,
    };
    let endpoint = Endpoint::from_addr(loopback(port));
    wait_ready(&mut child, &endpoint, "/", Duration::from_secs(10)).await?;
    Ok((child, endpoint))
}

async fn wait_ready(
    child: &mut Child,
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        child.check_running()?;
        if let Ok(mut c) = Conn::connect(endpoint).await
            && let Ok(r) = c.send(&Req::get(path)).await
            && r.status.is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} was not ready within {timeout:?}", child.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) of `pid` so far; clock ticks of 10 ms.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Processes whose CPU use a phase reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pids {
    pub server: Option<u32>,
    pub etcd: Option<u32>,
}

/// CPU time of this process, the server and etcd at one instant.
pub struct CpuSnapshot {
    at: Instant,
    client: Option<Duration>,
    server: Option<Duration>,
    etcd: Option<Duration>,
}

impl CpuSnapshot {
    pub fn take(pids: Pids) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            client: cpu_time(std::process::id()),
            server: pids.server.and_then(cpu_time),
            etcd: pids.etcd.and_then(cpu_time),
        }
    }

    /// Cores used by (client, server, etcd) between `self` and `later`.
    pub fn cores_until(&self, later: &CpuSnapshot) -> [Option<f64>; 3] {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let used = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => Some(b.saturating_sub(a).as_secs_f64() / wall),
            _ => None,
        };
        [
            used(self.client, later.client),
            used(self.server, later.server),
            used(self.etcd, later.etcd),
        ]
    }
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
