//! Kubeconfigs pointing at one workspace, and `admin.kubeconfig`.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use registry::cluster::WorkspacePath;
use serde_json::{Value, json};

use crate::tls::files;

pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";

/// What a kubeconfig says.
#[derive(Clone, Debug)]
pub struct KubeconfigParams<'a> {
    /// Scheme, host and port, e.g. `https://127.0.0.1:6443`.
    pub server: &'a str,
    pub workspace: &'a WorkspacePath,
    /// PEM of the CA to trust; `None` uses the client's system roots.
    pub ca_pem: Option<&'a str>,
    /// Bearer token; ignored when `client_cert` is given.
    pub token: &'a str,
    pub user: &'a str,
    /// PEM certificate and key (`client-certificate-data`/`client-key-data`).
    pub client_cert: Option<(&'a str, &'a str)>,
}

/// `<server>/clusters/<path>`: clients append API paths to it.
pub fn server_url(server: &str, workspace: &WorkspacePath) -> String {
    format!("{}/clusters/{workspace}", server.trim_end_matches('/'))
}

/// The kubeconfig as JSON (which kubectl, client-go, kube-rs and python
/// all read as well as YAML).
pub fn render(p: &KubeconfigParams<'_>) -> Value {
    let name = format!("wsgate-{}", p.workspace);
    let mut cluster = json!({ "server": server_url(p.server, p.workspace) });
    if let Some(ca) = p.ca_pem {
        cluster["certificate-authority-data"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let b64 = |s: &str| Value::String(base64::engine::general_purpose::STANDARD.encode(s));
    let user = match p.client_cert {
        Some((cert, key)) => json!({
            "client-certificate-data": b64(cert),
            "client-key-data": b64(key),
        }),
        None => json!({ "token": p.token }),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": p.user, "user": user }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": p.user } }],
        "current-context": name,
        "preferences": {},
    })
}

/// The kubeconfig as YAML.
pub fn render_yaml(p: &KubeconfigParams<'_>) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&render(p))
}

/// Writes `<data_dir>/admin.kubeconfig` (mode 0600: it holds an admin
/// token). Unless `overwrite`, an existing file is kept and `None` returned.
pub fn write_admin_kubeconfig(
    data_dir: &Path,
    contents: &str,
    overwrite: bool,
) -> io::Result<Option<PathBuf>> {
    let path = data_dir.join(ADMIN_KUBECONFIG);
    if path.exists() && !overwrite {
        return Ok(None);
    }
    files::create_private_dir(data_dir)?;
    files::write_atomic(&path, contents.as_bytes(), 0o600)?;
    Ok(Some(path))
}
