//! `wsgate workspace create|get|list|delete PATH`: manages workspaces of a
//! running server through its API (a Workspace object in the parent
//! workspace), like `kubectl --server .../clusters/<parent> ... workspaces`.
//!
//! Where the server is: `--server URL`, else the current context of
//! `--kubeconfig` (or `<data-dir>/admin.kubeconfig` when it exists), else
//! `http://127.0.0.1:6443`. The kubeconfig also gives the bearer token and
//! the CA to trust for `https://` servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use registry::cluster::WorkspacePath;
use serde_json::{Value, json};

const API: &str = "apis/tenancy.wsgate.io/v1alpha1/workspaces";
const DEFAULT_SERVER: &str = "http://127.0.0.1:6443";

#[derive(clap::Args, Debug)]
pub struct WorkspaceArgs {
    #[command(subcommand)]
    pub command: WorkspaceCommand,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// The server's root URL, e.g. https://127.0.0.1:6443 (no /clusters/...).
    #[arg(long, global = true, env = "WSGATE_SERVER")]
    pub server: Option<String>,
    /// Kubeconfig for the server URL, token and CA [default: <data-dir>/admin.kubeconfig if present].
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Data directory holding admin.kubeconfig.
    #[arg(
        long,
        global = true,
        env = "WSGATE_DATA_DIR",
        default_value = "./wsgate-data"
    )]
    pub data_dir: PathBuf,
    /// Print the server's JSON instead of a table.
    #[arg(long, short = 'o', global = true, value_parser = ["json", "table"], default_value = "table")]
    pub output: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace (`acme`, or `acme:team-a` inside acme).
    Create {
        path: String,
        /// Labels, KEY=VALUE (repeatable).
        #[arg(long = "label", short = 'l')]
        labels: Vec<String>,
    },
    /// Show one workspace.
    Get { path: String },
    /// List the workspaces inside PATH [default: root].
    List { path: Option<String> },
    /// Delete a workspace and (in the background) all its content.
    Delete {
        path: String,
        /// Wait until the content is gone.
        #[arg(long)]
        wait: bool,
    },
}

/// Where and how to connect.
struct Target {
    base: String,
    token: Option<String>,
    ca_pem: Option<String>,
}

pub async fn run(args: WorkspaceArgs) -> anyhow::Result<()> {
    let target = target(&args.conn)?;
    let json_out = args.conn.output == "json";
    match args.command {
        WorkspaceCommand::Create { path, labels } => {
            let (parent, name) = split(&path)?;
            let mut label_map = serde_json::Map::new();
            for l in labels {
                let (k, v) = l
                    .split_once('=')
                    .with_context(|| format!("label {l:?}: expected KEY=VALUE"))?;
                label_map.insert(k.into(), v.into());
            }
            let body = json!({
                "apiVersion": "tenancy.wsgate.io/v1alpha1",
                "kind": "Workspace",
                "metadata": {"name": name, "labels": label_map},
            });
            let v = call(&target, Method::POST, &collection(&parent), Some(body)).await?;
            print_one(&v, &path, json_out);
        }
        WorkspaceCommand::Get { path } => {
            let (parent, name) = split(&path)?;
            let v = call(
                &target,
                Method::GET,
                &format!("{}/{name}", collection(&parent)),
                None,
            )
            .await?;
            print_one(&v, &path, json_out);
        }
        WorkspaceCommand::List { path } => {
            let parent = match path {
                Some(p) => WorkspacePath::parse(&p)?,
                None => WorkspacePath::root(),
            };
            let v = call(&target, Method::GET, &collection(&parent), None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<32} {:<12} {:<18} URL", "NAME", "PHASE", "CLUSTER");
                for item in v["items"].as_array().into_iter().flatten() {
                    row(item, &parent);
                }
            }
        }
        WorkspaceCommand::Delete { path, wait } => {
            let (parent, name) = split(&path)?;
            let url = format!("{}/{name}", collection(&parent));
            let v = call(&target, Method::DELETE, &url, None).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("workspace {path} is being deleted");
            }
            if wait {
                loop {
                    match call(&target, Method::GET, &url, None).await {
                        Err(e) if e.to_string().contains("404") => break,
                        Err(e) => return Err(e),
                        Ok(cur) if cur["spec"]["cluster"] != v["spec"]["cluster"] => break,
                        Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                    }
                }
                if !json_out {
                    println!("workspace {path} deleted");
                }
            }
        }
    }
    Ok(())
}

fn split(path: &str) -> anyhow::Result<(WorkspacePath, String)> {
    let p = WorkspacePath::parse(path)?;
    let (parent, name) = p
        .split_parent()
        .context("the root workspace cannot be created, changed or deleted")?;
    Ok((parent, name.to_owned()))
}

fn collection(parent: &WorkspacePath) -> String {
    format!("/clusters/{parent}/{API}")
}

fn row(item: &Value, parent: &WorkspacePath) {
    let name = item["metadata"]["name"].as_str().unwrap_or("");
    let path = parent.child(name);
    println!(
        "{:<32} {:<12} {:<18} {}",
        path.as_str(),
        item["status"]["phase"].as_str().unwrap_or(""),
        item["spec"]["cluster"].as_str().unwrap_or(""),
        item["status"]["url"].as_str().unwrap_or(""),
    );
}

fn print_one(v: &Value, path: &str, json_out: bool) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    println!("path:      {path}");
    println!("cluster:   {}", v["spec"]["cluster"].as_str().unwrap_or(""));
    println!("phase:     {}", v["status"]["phase"].as_str().unwrap_or(""));
    println!("url:       {}", v["status"]["url"].as_str().unwrap_or(""));
    if let Some(o) = v["spec"]["owner"].as_str() {
        println!("owner:     {o}");
    }
    println!(
        "created:   {}",
        v["metadata"]["creationTimestamp"].as_str().unwrap_or("")
    );
    if let Some(d) = v["status"]["deletedAt"].as_str() {
        println!("deleted:   {d}");
        if let Some(p) = v["status"].get("deletion") {
            println!("progress:  {p}");
        }
    }
}

/// `--server`, else the kubeconfig, else the default.
fn target(c: &ConnArgs) -> anyhow::Result<Target> {
    let kubeconfig = match &c.kubeconfig {
        Some(p) => Some(p.clone()),
        None => {
            let p = c.data_dir.join("admin.kubeconfig");
            p.exists().then_some(p)
        }
    };
    let mut t = match &kubeconfig {
        Some(p) => from_kubeconfig(p)?,
        None => Target {
            base: DEFAULT_SERVER.into(),
            token: None,
            ca_pem: None,
        },
    };
    if let Some(s) = &c.server {
        t.base = s.trim_end_matches('/').to_owned();
    }
    Ok(t)
}

/// The server root URL recorded in `<data_dir>/admin.kubeconfig` (written by
/// `wsgate serve` with the address it bound), if the file is there.
pub fn admin_server_url(data_dir: &Path) -> Option<String> {
    let path = data_dir.join("admin.kubeconfig");
    if !path.exists() {
        return None;
    }
    from_kubeconfig(&path).ok().map(|t| t.base)
}

/// The current context's server (without `/clusters/...`), token and CA.
fn from_kubeconfig(path: &Path) -> anyhow::Result<Target> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let kc: Value = serde_saphyr::from_str(&text)
        .with_context(|| format!("parsing kubeconfig {}", path.display()))?;
    let current = kc["current-context"].as_str().unwrap_or("");
    let find = |list: &str, name: &str| -> Value {
        kc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"].as_str() == Some(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ctx = find("contexts", current);
    let cluster = find("clusters", ctx["context"]["cluster"].as_str().unwrap_or(""));
    let user = find("users", ctx["context"]["user"].as_str().unwrap_or(""));
    let server = cluster["cluster"]["server"]
        .as_str()
        .with_context(|| format!("{}: no server in the current context", path.display()))?;
    let base = match server.find("/clusters/") {
        Some(i) => &server[..i],
        None => server,
    };
    let ca_pem = match cluster["cluster"]["certificate-authority-data"].as_str() {
        Some(b64) => Some(String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("certificate-authority-data is not base64")?,
        )?),
        None => None,
    };
    Ok(Target {
        base: base.trim_end_matches('/').to_owned(),
        token: user["user"]["token"].as_str().map(str::to_owned),
        ca_pem,
    })
}

/// One request; a non-2xx answer becomes an error with the Status message.
async fn call(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let uri: Uri = format!("{}{path}", t.base)
        .parse()
        .with_context(|| format!("invalid server URL {}", t.base))?;
    let host = uri.host().context("server URL without a host")?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("connecting to {}", t.base))?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "wsgate-cli");
    if let Some(tok) = &t.token {
        req = req.header(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {tok}")).context("token")?,
        );
    }
    let bytes = match &body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(b)?)
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(bytes))?;
    let resp = if https {
        let tls = tls_connector(t.ca_pem.as_deref())?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("server name {host}"))?;
        let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
        send(TokioIo::new(stream), req).await?
    } else {
        send(TokioIo::new(tcp), req).await?
    };
    let (status, body) = resp;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = v["message"].as_str().unwrap_or("");
        bail!(
            "{} {}: {msg}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    Ok(v)
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn tls_connector(ca_pem: Option<&str>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let Some(pem) = ca_pem else {
        bail!("an https server needs a CA: use a kubeconfig with certificate-authority-data");
    };
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.context("CA certificate")?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
