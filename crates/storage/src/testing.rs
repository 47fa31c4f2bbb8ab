//! Test support: real etcd processes on loopback ports.
//!
//! Tests that need etcd call [`etcd_or_skip`]: when the `etcd` binary is not
//! on PATH it prints a loud notice and returns `None`, unless the `CI`
//! environment variable is set, in which case it panics so CI cannot pass
//! without having run them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Server-side TLS for a test etcd: it serves `https://` with this
/// certificate, and requires client certificates signed by `client_ca_file`
/// when one is given.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// One etcd member started for a test, killed when dropped.
pub struct EtcdProcess {
    child: Option<Child>,
    client_url: String,
    // Boxed: fixed at creation, and keeps this handle small for the enums
    // that hold it.
    member: Box<Member>,
    // Kept so a restart reuses the same data.
    data_dir: tempfile::TempDir,
}

/// How a member is launched.
struct Member {
    name: String,
    peer_url: String,
    /// `name=peer-url,...` of every member of its cluster.
    initial_cluster: String,
    cluster_token: String,
    tls: Option<ServerTls>,
}

impl EtcdProcess {
    /// Starts a single-member etcd on free loopback ports and waits until it
    /// answers.
    pub fn start() -> std::io::Result<Self> {
        Self::start_single(None)
    }

    /// Starts a single-member etcd serving clients over TLS.
    pub fn start_tls(tls: ServerTls) -> std::io::Result<Self> {
        Self::start_single(Some(tls))
    }

    /// A port found free can be taken by another test (a server, another
    /// etcd) before etcd binds it; etcd then exits at once. Such a start is
    /// retried on fresh ports.
    fn start_single(tls: Option<ServerTls>) -> std::io::Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut p = EtcdProcess::unstarted()?;
            if tls.is_some() {
                p.client_url = p.client_url.replace("http://", "https://");
            }
            p.member.tls = tls.clone();
            p.member.initial_cluster = format!("{}={}", p.member.name, p.member.peer_url);
            p.member.cluster_token = p.member.name.clone();
            match p.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 4 => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(p),
            }
        }
    }

    /// A member on free ports, not yet running.
    fn unstarted() -> std::io::Result<Self> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        Ok(EtcdProcess {
            child: None,
            client_url: format!("http://127.0.0.1:{client_port}"),
            member: Box::new(Member {
                name: format!("wsgate-test-{client_port}"),
                peer_url: format!("http://127.0.0.1:{peer_port}"),
                initial_cluster: String::new(),
                cluster_token: String::new(),
                tls: None,
            }),
            data_dir: tempfile::tempdir()?,
        })
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        self.launch()?;
        self.wait_listening(Duration::from_secs(60))
    }

    /// Waits until the client port answers while the process runs; a
    /// process that exited first most likely found its port taken
    /// (`AddrInUse`, which [`EtcdProcess::start`] retries).
    fn wait_listening(&mut self, timeout: Duration) -> std::io::Result<()> {
        let url = self.client_url.clone();
        wait_for_port(&url, timeout, || {
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            match exited {
                Some(status) => {
                    self.child = None;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!(
                            "etcd exited ({status}) before listening on {url}: a port was taken"
                        ),
                    ))
                }
                None => Ok(()),
            }
        })
    }

    /// Starts the process without waiting for it: cluster members must all
    /// be running before any of them can elect a leader.
    fn launch(&mut self) -> std::io::Result<()> {
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.member.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert_file)
                .arg("--key-file")
                .arg(&tls.key_file);
            if let Some(ca) = &tls.client_ca_file {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(ca);
            }
        }
        let child = command
            .arg("--name")
            .arg(&self.member.name)
            .arg("--data-dir")
            .arg(self.data_dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.member.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.member.peer_url)
            .arg("--initial-cluster")
            .arg(&self.member.initial_cluster)
            // Distinct per cluster, so members of two test clusters that
            // reuse each other's freed ports can never join up.
            .arg("--initial-cluster-token")
            .arg(&self.member.cluster_token)
            // Tests exercise idle-watch progress; etcd's default is 10 minutes.
            .arg("--experimental-watch-progress-notify-interval")
            .arg("1s")
            .arg("--log-level")
            .arg("error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
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

    /// Restarts on the same data but serving clients on `client_port`, so
    /// clients of the old endpoint cannot reach it until it is restarted on
    /// its old port (tests use this to change data behind a watch's back).
    pub fn restart_on(&mut self, client_port: u16) -> std::io::Result<()> {
        self.kill();
        let scheme = if self.member.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.client_url = format!("{scheme}://127.0.0.1:{client_port}");
        self.spawn()
    }

    /// Is the process running (not killed)?
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of etcd members on loopback ports, each killed when dropped.
/// Three members keep a quorum when one is killed; a new leader is elected
/// in about 3 s with etcd's default timings.
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each listens.
    pub fn start(size: usize) -> std::io::Result<Self> {
        let mut members = (0..size)
            .map(|_| EtcdProcess::unstarted())
            .collect::<std::io::Result<Vec<_>>>()?;
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.member.name, m.member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let token = members
            .first()
            .map(|m| format!("{}-cluster", m.member.name))
            .unwrap_or_default();
        for m in &mut members {
            m.member.initial_cluster = initial_cluster.clone();
            m.member.cluster_token = token.clone();
            m.launch()?;
        }
        for m in &members {
            wait_for_port(&m.client_url, Duration::from_secs(60), || Ok(()))?;
        }
        Ok(EtcdCluster { members })
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn members(&self) -> &[EtcdProcess] {
        &self.members
    }

    pub fn member_mut(&mut self, index: usize) -> Option<&mut EtcdProcess> {
        self.members.get_mut(index)
    }

    /// The index of the member that is leader, asking each live member until
    /// one knows; waits up to `timeout` for an election to finish.
    pub async fn leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                let status = async {
                    let mut c = etcd_client::Client::connect([m.endpoint()], None)
                        .await
                        .ok()?;
                    c.status().await.ok()
                };
                let Ok(Some(status)) = tokio::time::timeout(Duration::from_secs(1), status).await
                else {
                    continue;
                };
                let leader = status.leader();
                let self_id = status.header().map(|h| h.member_id());
                if leader != 0 && self_id == Some(leader) {
                    return self
                        .members
                        .iter()
                        .position(|x| x.client_url == m.client_url);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts a cluster, or skips loudly when etcd is not installed (fails
/// under `CI`).
pub fn etcd_cluster_or_skip(test: &str, size: usize) -> Option<EtcdCluster> {
    if !etcd_available() {
        skip_or_fail(
            test,
            "the `etcd` binary is not on PATH (apt-get install -y etcd-server)",
        );
        return None;
    }
    match EtcdCluster::start(size) {
        Ok(c) => Some(c),
        Err(e) => {
            panic!("{test}: etcd is installed but a {size}-member cluster did not start: {e}")
        }
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
        skip_or_fail(
            test,
            "the `etcd` binary is not on PATH (apt-get install -y etcd-server)",
        );
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

/// Waits until `url`'s port accepts connections; `running` is asked first
/// on every round and ends the wait with its error (a process that exited).
fn wait_for_port(
    url: &str,
    timeout: Duration,
    mut running: impl FnMut() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let addr = url
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let deadline = Instant::now() + timeout;
    loop {
        running()?;
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

/// One engine opened for a test: the embedded engine in a temporary
/// directory, or a private etcd process. Dropping it removes both.
pub struct TestEngine {
    /// `"embedded"` or `"etcd"`, for assertion messages.
    pub name: &'static str,
    pub store: std::sync::Arc<dyn crate::Store>,
    /// The key root to use: `/registry` on the embedded engine, a root
    /// unique to this run on etcd.
    pub root: String,
    /// The etcd process, for tests that restart it or connect again.
    pub etcd: Option<EtcdProcess>,
    _dir: Option<tempfile::TempDir>,
}

impl TestEngine {
    /// A second, independent connection to the same data (a second
    /// replica): a new client on etcd, the same store on the embedded
    /// engine (one process owns its files).
    pub async fn connect_again(&self) -> std::sync::Arc<dyn crate::Store> {
        match &self.etcd {
            Some(etcd) => crate::open(&crate::StorageConfig::Etcd(crate::EtcdConfig::new(vec![
                etcd.endpoint().to_owned(),
            ])))
            .await
            .expect("second etcd connection"),
            None => self.store.clone(),
        }
    }
}

/// Every engine a conformance-style test runs against: the embedded engine
/// always, etcd when installed (a loud skip otherwise, a failure under `CI`).
pub async fn engines(test: &str) -> Vec<TestEngine> {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = crate::open(&crate::StorageConfig::Embedded(crate::EmbeddedConfig::new(
        dir.path(),
    )))
    .await
    .expect("embedded store");
    let mut out = vec![TestEngine {
        name: "embedded",
        store: embedded,
        root: "/registry".into(),
        etcd: None,
        _dir: Some(dir),
    }];
    if let Some(etcd) = etcd_or_skip(test) {
        let store = crate::open(&crate::StorageConfig::Etcd(crate::EtcdConfig::new(vec![
            etcd.endpoint().to_owned(),
        ])))
        .await
        .expect("etcd store");
        out.push(TestEngine {
            name: "etcd",
            store,
            root: unique_root(test),
            etcd: Some(etcd),
            _dir: None,
        });
    }
    out
}
