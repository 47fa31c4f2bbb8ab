//! Test support: real etcd processes on loopback ports.
//!
//! Tests that need etcd call [`etcd_or_skip`]: when the `etcd` binary is not
//! on PATH it prints a loud notice and returns `None`, unless the `CI`
//! environment variable is set, in which case it panics so CI cannot pass
//! without having run them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member started for a test, killed when dropped.
pub struct EtcdProcess {
    child: Option<Child>,
    client_url: String,
    peer_url: String,
    name: String,
    // Kept so a restart reuses the same data.
    data_dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Starts a single-member etcd on free loopback ports and waits until it
    /// answers.
    pub fn start() -> std::io::Result<Self> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let name = format!("wsgate-test-{client_port}");
        let mut p = EtcdProcess {
            child: None,
            client_url: format!("http://127.0.0.1:{client_port}"),
            peer_url: format!("http://127.0.0.1:{peer_port}"),
            name,
            data_dir: tempfile::tempdir()?,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(format!("{}={}", self.name, self.peer_url))
            // Tests exercise idle-watch progress; etcd's default is 10 minutes.
            .arg("--experimental-watch-progress-notify-interval")
            .arg("1s")
            .arg("--log-level")
            .arg("error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        wait_for_port(&self.client_url, Duration::from_secs(20))
    }

    /// The client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self) -> &str {
        &self.client_url
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Kills the process (SIGKILL), leaving its data in place.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same ports and data.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Is the `etcd` binary on PATH?
pub fn etcd_available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts etcd, or skips loudly when it is not installed (fails under `CI`).
pub fn etcd_or_skip(test: &str) -> Option<EtcdProcess> {
    if !etcd_available() {
        skip_or_fail(test, "the `etcd` binary is not on PATH (apt-get install -y etcd-server)");
        return None;
    }
    match EtcdProcess::start() {
        Ok(p) => Some(p),
        Err(e) => panic!("{test}: etcd is installed but did not start: {e}"),
    }
}

/// Prints a loud skip notice, or panics when `CI` is set.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}; CI requires this test to run");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// A key root unique to this test run, so runs sharing one etcd never collide.
pub fn unique_root(test: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "/wsgate-test/{test}-{}-{nanos}-{}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(url: &str, timeout: Duration) -> std::io::Result<()> {
    let addr = url.trim_start_matches("http://");
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("etcd did not listen on {addr} within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
