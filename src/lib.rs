//! Test harness for the end-to-end tests in `tests/`: runs the real `wsgate`
//! binary on a free loopback port (embedded store in a temp dir, or a real
//! etcd from `storage::testing`), waits for `/readyz`, and kills it on drop.
//! Also finds kubectl, and speaks minimal raw HTTP for wire-level checks.
//!
//! [`Server::start`] runs with `--insecure-http` (plain HTTP; token-less
//! requests are the local superuser), which the older tests use.
//! [`Server::start_tls`] runs the default: HTTPS with the generated CA and
//! `admin.kubeconfig`; [`Server::https`] is its raw client (rustls, trusting
//! that CA), and [`Server::kubeconfig`] writes a kubeconfig for a workspace
//! and token for kubectl, kube-rs or helm.

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
    /// Set for HTTPS servers.
    tls: Option<TlsInfo>,
    /// The arguments it was started with (for [`Server::restart`]).
    args: Vec<String>,
}

/// What a client needs to reach an HTTPS server.
#[derive(Clone)]
pub struct TlsInfo {
    /// The generated CA (`<data>/pki/ca.crt`).
    pub ca_pem: String,
    /// The admin token from `<data>/admin.kubeconfig`.
    pub admin_token: String,
    config: std::sync::Arc<rustls::ClientConfig>,
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
    /// Starts a plain-HTTP server (`--insecure-http`) on `engine`.
    pub fn start(engine: Engine) -> Result<Server> {
        Self::start_with(engine, &[])
    }

    /// Starts a plain-HTTP server (`--insecure-http`) on `engine` with
    /// extra `serve` flags.
    pub fn start_with(engine: Engine, extra_args: &[&str]) -> Result<Server> {
        Self::launch(engine, false, extra_args)
    }

    /// Starts an HTTPS server (the default mode) on `engine`.
    pub fn start_tls(engine: Engine) -> Result<Server> {
        Self::launch(engine, true, &[])
    }

    /// Starts an HTTPS server on `engine` with extra `serve` flags.
    pub fn start_tls_with(engine: Engine, extra_args: &[&str]) -> Result<Server> {
        Self::launch(engine, true, extra_args)
    }

    fn launch(engine: Engine, tls: bool, extra: &[&str]) -> Result<Server> {
        let mut etcd = match engine {
            Engine::Embedded => None,
            Engine::Etcd(etcd) => Some(etcd),
        };
        // The key root stays the same across attempts (one etcd, one test).
        let root = storage::testing::unique_root("e2e")
            .trim_end_matches('/')
            .to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let data = tempfile::tempdir()?;
            let port = storage::testing::free_port()?;
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                data.path().display().to_string(),
            ];
            if !tls {
                args.push("--insecure-http".into());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            if let Some(etcd) = &etcd {
                args.extend([
                    "--etcd-endpoints".into(),
                    etcd.endpoint().to_string(),
                    "--storage-root".into(),
                    root.clone(),
                ]);
            }
            let child = spawn_wsgate(&args)?;
            let mut server = Server {
                child,
                port,
                _data: data,
                _etcd: etcd.take(),
                tls: None,
                args,
            };
            match server.wait_ready(Duration::from_secs(30), tls) {
                Ok(()) => return Ok(server),
                // The free port was taken by another test's process before
                // wsgate bound it (it exited, and something else answers
                // there): start again on a fresh port.
                Err(e)
                    if attempt < 4
                        && server.child.try_wait()?.is_some()
                        && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() =>
                {
                    eprintln!("wsgate could not bind 127.0.0.1:{port} ({e}); retrying");
                    etcd = server._etcd.take();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The data directory (`pki/`, `admin.kubeconfig`, the embedded store).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// CA and admin token of an HTTPS server.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("wsgate did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again with the same arguments, data and port
    /// (after [`Server::terminate`]).
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_wsgate(&self.args)?;
        let tls = self.tls.take().is_some();
        self.wait_ready(Duration::from_secs(30), tls)
    }

    fn load_tls(&self) -> Result<TlsInfo> {
        let ca_pem = std::fs::read_to_string(self.data_dir().join("pki").join("ca.crt"))?;
        let kubeconfig = std::fs::read_to_string(self.data_dir().join("admin.kubeconfig"))?;
        // `token: <value>`, or a folded scalar (`token: >-` and the value
        // on the next line).
        let lines: Vec<&str> = kubeconfig.lines().collect();
        let admin_token = lines
            .iter()
            .position(|l| l.trim().starts_with("token:"))
            .and_then(|i| {
                let v = lines[i].trim().trim_start_matches("token:").trim();
                if v.is_empty() || v.starts_with('>') || v.starts_with('|') {
                    lines.get(i + 1).map(|n| n.trim().to_owned())
                } else {
                    Some(v.trim_matches('"').trim_matches('\'').to_owned())
                }
            })
            .context("admin.kubeconfig has no token")?;
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(TlsInfo {
            ca_pem,
            admin_token,
            config: std::sync::Arc::new(config),
        })
    }

    fn wait_ready(&mut self, timeout: Duration, tls: bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if tls && self.tls.is_none() {
                self.tls = self.load_tls().ok();
            }
            let ready = if tls {
                self.tls.is_some()
                    && self
                        .https("GET", "/readyz", &[], None, None)
                        .is_ok_and(|r| r.status == 200)
            } else {
                self.request("GET", "/readyz", &[], None)
                    .is_ok_and(|r| r.status == 200)
            };
            if ready {
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

    /// `http://127.0.0.1:PORT` (`https://` for an HTTPS server)
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// One HTTPS request (HTTP/1.1, `Connection: close`), with `token` as
    /// the bearer token when given.
    pub fn https(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        token: Option<&str>,
    ) -> Result<RawResponse> {
        let tls = self.tls.as_ref().context("not an HTTPS server")?;
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
        let conn = rustls::ClientConnection::new(tls.config.clone(), name)?;
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut stream, self.port, method, path, &all, body)
    }

    /// Writes a kubeconfig for `workspace` with `token` (the admin token
    /// when `None`) and the CA, and returns its path.
    pub fn kubeconfig(&self, workspace: &str, token: Option<&str>) -> Result<PathBuf> {
        let tls = self.tls.as_ref().context("not an HTTPS server")?;
        let token = token.unwrap_or(&tls.admin_token);
        let name = format!("wsgate-{workspace}");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {
                "server": self.workspace_url(workspace),
                "certificate-authority-data": base64_encode(tls.ca_pem.as_bytes()),
            }}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "user"}}],
            "current-context": name,
        });
        let n = KUBECONFIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.data_dir().join(format!("test-{n}.kubeconfig"));
        std::fs::write(&path, config.to_string())?;
        Ok(path)
    }

    /// Runs `wsgate <args>` against this server's data directory and
    /// returns its standard output (e.g. `token create`).
    pub fn wsgate(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(wsgate_binary()?)
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()?;
        if !out.status.success() {
            bail!(
                "wsgate {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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

static KUBECONFIGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn spawn_wsgate(args: &[String]) -> Result<Child> {
    Command::new(wsgate_binary()?)
        .args(args)
        .env(
            "WSGATE_LOG_LEVEL",
            std::env::var("WSGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("spawning wsgate")
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
    exchange(&mut s, port, method, path, headers, body)
}

fn exchange(
    s: &mut (impl Read + Write),
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<RawResponse> {
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
    kubeconfig: Option<PathBuf>,
    home: tempfile::TempDir,
}

/// The output of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    /// The exit code (`auth can-i`: 0 yes, 1 no).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(bin: PathBuf, server: String) -> Result<Self> {
        Ok(Kubectl {
            bin,
            server,
            kubeconfig: None,
            home: tempfile::tempdir()?,
        })
    }

    /// kubectl with `--kubeconfig <path>` (server, CA and token from it).
    pub fn with_kubeconfig(bin: PathBuf, kubeconfig: PathBuf) -> Result<Self> {
        Ok(Kubectl {
            bin,
            server: String::new(),
            kubeconfig: Some(kubeconfig),
            home: tempfile::tempdir()?,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        match &self.kubeconfig {
            Some(k) => c.arg("--kubeconfig").arg(k),
            None => c.arg("--server").arg(&self.server),
        };
        c.args(args)
            .env("HOME", self.home.path())
            .env("KUBECACHEDIR", self.home.path().join("cache"))
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<KubectlOutput> {
        let out = self.command(args).output()?;
        Ok(KubectlOutput {
            code: out.status.code(),
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
