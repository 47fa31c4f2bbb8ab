use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use storage::StorageConfig;

use super::*;

const EXAMPLE: &str = include_str!("../../../../config/wsgate.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    let c = Config::parse(text, Path::new("test.toml"))?;
    c.validate().map_err(|p| ConfigError::Invalid {
        origin: Origin::File(PathBuf::from("test.toml")),
        key: p.key,
        message: p.message,
    })?;
    Ok(c)
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

#[test]
fn example_is_the_default() {
    let c = parse(EXAMPLE).expect("example parses");
    assert_eq!(c, Config::default());
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse("").expect("parses"), Config::default());
}

#[test]
fn defaults_match_the_design() {
    let c = Config::default();
    assert_eq!(c.listen.to_string(), "127.0.0.1:6443");
    assert_eq!(c.data_dir, PathBuf::from("./wsgate-data"));
    assert_eq!(c.storage.root, "/registry");
    assert_eq!(c.storage.effective_engine(), Engine::Embedded);
    assert_eq!(c.limits.max_body_bytes, 3 * 1024 * 1024);
    assert!(!c.insecure_http);
    match c.storage_config() {
        StorageConfig::Embedded(e) => assert_eq!(e.data_dir, PathBuf::from("./wsgate-data")),
        StorageConfig::Etcd(_) => panic!("embedded by default"),
    }
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let err = parse("[storage]\nroot = \"/r\"\nbogus = 1\n").expect_err("unknown key");
    assert!(err.key().is_some_and(|k| k.starts_with("storage")), "{err}");
    let text = err.to_string();
    assert!(text.contains("test.toml:3:"), "{text}");
    assert!(text.contains("bogus"), "{text}");

    let err = parse("[watch_cache]\nenable = false\n").expect_err("unknown key");
    assert!(
        err.key().is_some_and(|k| k.starts_with("watch_cache")),
        "{err}"
    );
    assert!(err.to_string().contains("enable"), "{err}");

    let err = parse("[limits.fairness]\nmax_inflight = 3\n").expect_err("unknown key");
    assert!(err.to_string().contains("max_inflight"), "{err}");

    let err = parse("[[auth.issuers]]\nissuer = \"x\"\naudiences = [\"a\"]\npublicKeyFiles = []\n")
        .expect_err("camelCase is not our key style");
    assert!(err.to_string().contains("publicKeyFiles"), "{err}");
}

#[test]
fn type_errors_name_file_line_and_key() {
    let err = parse("listen = \"not an address\"\n").expect_err("bad address");
    assert_eq!(err.key(), Some("listen"));
    assert!(err.to_string().starts_with("test.toml:1:"), "{err}");

    let err = parse("[limits]\nmax_body_bytes = \"3 parsecs\"\n").expect_err("bad size");
    assert_eq!(err.key(), Some("limits.max_body_bytes"));

    let err = parse("[storage]\nengine = \"redis\"\n").expect_err("bad engine");
    assert_eq!(err.key(), Some("storage.engine"));

    let err = parse("[storage.etcd]\ndial_timeout = \"5 minutes\"\n").expect_err("bad duration");
    assert_eq!(err.key(), Some("storage.etcd.dial_timeout"));
}

#[test]
fn syntax_errors_have_a_position() {
    let err = parse("listen = \n").expect_err("syntax");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().starts_with("test.toml:1:"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[storage.etcd]\nendpoints = [\"https://e:2379\", \"x\"]\n",
            "storage.etcd.endpoints[1]",
        ),
        (
            "[storage.etcd]\nendpoints = [\"ftp://e:2379\"]\n",
            "storage.etcd.endpoints[0]",
        ),
        ("[storage]\nengine = \"etcd\"\n", "storage.etcd.endpoints"),
        (
            "[storage]\nengine = \"embedded\"\n[storage.etcd]\nendpoints = [\"http://e:2379\"]\n",
            "storage.engine",
        ),
        ("[storage]\nroot = \"registry/\"\n", "storage.root"),
        (
            "[storage.etcd]\nca_file = \"/nonexistent/ca.crt\"\nendpoints = [\"https://e:2379\"]\n",
            "storage.etcd.ca_file",
        ),
        ("[tls]\ncert_file = \"/nonexistent\"\n", "tls.cert_file"),
        ("[limits]\nmax_body_bytes = 0\n", "limits.max_body_bytes"),
        (
            "[limits.workspaces.\"Not Valid\"]\nobject_quota = 5\n",
            "limits.workspaces.\"Not Valid\"",
        ),
        (
            "[limits.fairness]\nworkspace_max_in_flight = 10000\n",
            "limits.fairness.workspace_max_in_flight",
        ),
        (
            "[limits.fairness]\nretry_after = \"500ms\"\n",
            "limits.fairness.retry_after",
        ),
        ("[logging]\nlevel = \"info,[[[\"\n", "logging.level"),
        ("advertise_address = \"no port\"\n", "advertise_address"),
        ("[auth]\naudiences = []\n", "auth.audiences"),
        (
            "[auth]\nservice_account_token_ttl = \"1m\"\n",
            "auth.service_account_token_ttl",
        ),
        (
            "[[auth.issuers]]\nissuer = \"https://login\"\naudiences = [\"a\"]\n",
            "auth.issuers[0].public_key_files",
        ),
        (
            "[audit]\nenabled = true\npath = \"/nonexistent-dir/audit.log\"\n",
            "audit.path",
        ),
    ];
    for (text, key) in cases {
        let err = parse(text).expect_err(text);
        assert_eq!(err.key(), Some(*key), "{text}: {err}");
    }
}

#[test]
fn a_full_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("k.pem");
    std::fs::write(&pem, "x").expect("write");
    let text = format!(
        r#"
listen = "0.0.0.0:7443"
data_dir = "/var/lib/wsgate"
[storage]
root = "/registry-test/abc"
[storage.etcd]
endpoints = ["https://etcd-0:2379", "http://10.0.0.2:2379"]
username = "wsgate"
password = "hunter2"
dial_timeout = 3
[auth]
user_token_ttl = "8h"
[[auth.issuers]]
issuer = "https://login.example.com"
audiences = ["wsgate"]
public_key_files = [{pem:?}]
groups_claim = "groups"
[limits]
max_object_bytes = "1MiB"
[limits.workspaces."acme:team-a"]
object_quota = 7
[audit]
enabled = true
level = "request"
"#
    );
    let c = parse(&text).expect("parses");
    assert_eq!(c.storage.effective_engine(), Engine::Etcd);
    assert_eq!(c.auth.user_token_ttl, Duration::from_secs(8 * 3600));
    assert_eq!(c.limits.max_object_bytes, 1 << 20);
    let acme = WorkspacePath::parse("acme:team-a").expect("path");
    let other = WorkspacePath::parse("acme").expect("path");
    assert_eq!(c.limits.object_quota(&acme), 7);
    assert_eq!(c.limits.object_quota(&other), 1_000_000);
    match c.storage_config() {
        StorageConfig::Etcd(e) => {
            assert_eq!(e.endpoints.len(), 2);
            assert_eq!(e.password.as_deref(), Some("hunter2"));
            assert_eq!(e.dial_timeout, Duration::from_secs(3));
        }
        StorageConfig::Embedded(_) => panic!("etcd expected"),
    }
    let issuers = c.external_issuers();
    assert_eq!(issuers[0].groups_claim.as_deref(), Some("groups"));
    assert_eq!(issuers[0].username_claim, "sub");
    // Neither Debug nor the summary print the password.
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!c.summary().contains("hunter2"));
}

#[test]
fn overrides_win_over_the_file() {
    let f = write("listen = \"127.0.0.1:1\"\n[logging]\nlevel = \"debug\"\n");
    let o = Overrides {
        listen: Some("127.0.0.1:2".parse().expect("addr")),
        etcd_endpoints: Some(vec!["http://e:2379".to_owned()]),
        audit_log: Some("-".to_owned()),
        ..Overrides::default()
    };
    let c = Config::resolve(Some(f.path()), &o).expect("resolves");
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.logging.level, "debug", "the file still applies");
    // --etcd-endpoints selects etcd, as the design's CLI says.
    assert_eq!(c.storage.effective_engine(), Engine::Etcd);
    assert!(c.audit.enabled);

    // No file: defaults plus overrides.
    let c = Config::resolve(None, &Overrides::default()).expect("defaults");
    assert_eq!(c, Config::default());
}

#[test]
fn a_bad_override_names_the_flag() {
    let f = write("");
    let o = Overrides {
        etcd_endpoints: Some(vec!["nope".to_owned()]),
        ..Overrides::default()
    };
    let err = Config::resolve(Some(f.path()), &o).expect_err("bad endpoint");
    assert_eq!(err.key(), Some("storage.etcd.endpoints[0]"));
    assert!(
        err.to_string()
            .starts_with("--etcd-endpoints (or WSGATE_ETCD_ENDPOINTS)"),
        "{err}"
    );
}

#[test]
fn flags_parse_with_clap_and_env() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        o: Overrides,
    }
    let cli = Cli::try_parse_from([
        "wsgate",
        "--insecure-http",
        "--etcd-endpoints",
        "http://a:2379,http://b:2379",
        "--log-format",
        "json",
    ])
    .expect("parses");
    assert_eq!(cli.o.insecure_http, Some(true));
    assert_eq!(cli.o.etcd_endpoints.as_ref().map(Vec::len), Some(2));
    assert_eq!(cli.o.log_format, Some(LogFormat::Json));
    assert_eq!(cli.o.listen, None, "no clap default hides the file's value");

    // The watch cache switch: `--watch-cache=false` turns it off, over
    // the file.
    let cli = Cli::try_parse_from(["wsgate", "--watch-cache=false"]).expect("parses");
    assert_eq!(cli.o.watch_cache, Some(false));
    let f = write("[watch_cache]\nenabled = true\n");
    let c = Config::resolve(Some(f.path()), &cli.o).expect("resolves");
    assert!(!c.watch_cache.enabled);
    assert!(c.summary().contains("watch cache: off"), "{}", c.summary());
    assert!(Config::default().watch_cache.enabled, "on by default");
}

#[test]
fn check_reports_a_summary_or_the_error() {
    let good = write("[storage.etcd]\nendpoints = [\"http://e:2379\"]\n");
    let summary = check(good.path()).expect("valid");
    assert!(summary.contains("OK"), "{summary}");
    assert!(summary.contains("storage: etcd http://e:2379"), "{summary}");

    let bad = write("listen = 5\n");
    let err = check(bad.path()).expect_err("invalid");
    assert!(err.to_string().contains(&bad.path().display().to_string()));

    let err = check(Path::new("/nonexistent/wsgate.toml")).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
}
