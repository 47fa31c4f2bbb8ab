//! Test harness for the end-to-end tests in `tests/`: runs the real `wsgate`
//! binary on a free loopback port (embedded store in a temp dir, or a real
//! etcd from `storage::testing`), waits for `/readyz`, and kills it on drop.
//! Also finds kubectl, and speaks minimal raw HTTP for wire-level checks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
pub use storage::testing::{EtcdProcess, etcd_or_skip, skip_or_fail};

/// Which storage engine a server runs on.
pub enum Engine {
    Embedded,
    /// A real etcd; the server uses a unique key root inside it.
    Etcd(EtcdProcess),
}

/// One running `wsgate serve`.
pub struct Server {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
    _etcd: Option<EtcdProcess>,
}

/// Builds (once per test process) and locates the `wsgate` binary.
pub fn wsgate_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WSGATE_BIN") {
            return Ok(PathBuf::from(p));
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "wsgate-server", "--bin", "wsgate"])
            .current_dir(&manifest)
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p wsgate-server failed: {status}"));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target"));
        let bin = target.join("debug").join("wsgate");
        if bin.exists() {
            Ok(bin)
        } else {
            Err(format!("{} was not built", bin.display()))
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

impl Server {
    /// Starts a server on `engine`.
    pub fn start(engine: Engine) -> Result<Server> {
        Self::start_with(engine, &[])
    }

    /// Starts a server on `engine` with extra `serve` flags.
    pub fn start_with(engine: Engine, extra_args: &[&str]) -> Result<Server> {
        let bin = wsgate_binary()?;
        let data = tempfile::tempdir()?;
        let port = storage::testing::free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.path())
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("WSGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let etcd = match engine {
            Engine::Embedded => None,
            Engine::Etcd(etcd) => {
                cmd.arg("--etcd-endpoints")
                    .arg(etcd.endpoint())
                    .arg("--storage-root")
                    .arg(storage::testing::unique_root("e2e"));
                Some(etcd)
            }
        };
        let child = cmd.spawn().context("spawning wsgate")?;
        let mut server = Server {
            child,
            port,
            _data: data,
            _etcd: etcd,
        };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.request("GET", "/readyz", &[], None)
                && r.status == 200
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("wsgate exited before it was ready: {status}");
            }
            if Instant::now() > deadline {
                bail!("wsgate did not become ready within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server URL of a workspace: `http://127.0.0.1:PORT/clusters/<path>`.
    pub fn workspace_url(&self, path: &str) -> String {
        format!("{}/clusters/{path}", self.url())
    }

    /// Creates a top-level workspace (a `Workspace` in root).
    pub fn create_workspace(&self, name: &str) -> Result<()> {
        let body = serde_json::json!({
            "apiVersion": "tenancy.wsgate.io/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": name},
        });
        let r = self.request(
            "POST",
            "/apis/tenancy.wsgate.io/v1alpha1/workspaces",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )?;
        if r.status != 201 {
            bail!("creating workspace {name}: {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// One HTTP/1.1 request with `Connection: close`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<RawResponse> {
        raw_request(self.port, method, path, headers, body)
    }

    /// GET `path` and parse the JSON body.
    pub fn get_json(&self, path: &str, accept: Option<&str>) -> Result<(u16, serde_json::Value)> {
        let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
        let r = self.request("GET", path, &headers, None)?;
        let v = serde_json::from_slice(&r.body)
            .with_context(|| format!("GET {path}: body is not JSON: {}", r.text()))?;
        Ok((r.status, v))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Minimal HTTP/1.1 client (handles chunked bodies) for wire-level checks.
pub fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<RawResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer (413) and close before reading a large body:
    // a failed body write still leaves a response to read.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e.into());
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<RawResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..line_end])?
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

/// kubectl 1.32: the bundled binary if present, else `kubectl` on PATH.
/// `None` (after a loud skip notice; a failure under `CI`) when absent.
pub fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    let bundled = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    if bundled.exists() {
        return Some(bundled);
    }
    let on_path = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if on_path {
        return Some(PathBuf::from("kubectl"));
    }
    skip_or_fail(test, "kubectl is not installed");
    None
}

/// Runs kubectl against a server URL with an isolated cache and home.
pub struct Kubectl {
    bin: PathBuf,
    server: String,
    home: tempfile::TempDir,
}

/// The output of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(bin: PathBuf, server: String) -> Result<Self> {
        Ok(Kubectl {
            bin,
            server,
            home: tempfile::tempdir()?,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--server")
            .arg(&self.server)
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<KubectlOutput> {
        let out = self.command(args).output()?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and fails with its stderr unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args)?;
        if !o.success {
            bail!("kubectl {}: {}{}", args.join(" "), o.stderr, o.stdout);
        }
        Ok(o.stdout)
    }

    /// Starts kubectl in the background (e.g. `get -w`).
    pub fn spawn(&self, args: &[&str]) -> Result<Child> {
        Ok(self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }
}

/// Starts a server on each engine available: embedded always, etcd when
/// installed (a loud skip otherwise, a failure under `CI`).
pub fn servers_for(test: &str) -> Result<Vec<(&'static str, Server)>> {
    let mut out = vec![("embedded", Server::start(Engine::Embedded)?)];
    if let Some(etcd) = etcd_or_skip(test) {
        out.push(("etcd", Server::start(Engine::Etcd(etcd))?));
    }
    Ok(out)
}
