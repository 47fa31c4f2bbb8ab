//! `wsgate`: the multi-tenant Kubernetes API gateway.

mod cli;

// jemalloc, not glibc malloc: see the note on the dependency (Cargo.toml).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use registry::cluster::WorkspacePath;
use wsgate_server::auth::kubeconfig::{self, KubeconfigParams};
use wsgate_server::auth::{UserTokenRequest, WorkspaceScope};
use wsgate_server::config::{self, Config};
use wsgate_server::{ServeOptions, request_id};

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "A multi-tenant Kubernetes API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API for every workspace (HTTPS by default).
    Serve(ServeArgs),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tokens signed with the data directory's key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a kubeconfig for one workspace (CA data and a fresh token).
    Kubeconfig(KubeconfigArgs),
    /// Load-test a server: latency and throughput per API verb, watches, limits.
    Bench(wsgate_server::bench::BenchArgs),
    /// Create, show, list and delete workspaces of a running server.
    Workspace(cli::workspace::WorkspaceArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see config/wsgate.toml).
    #[arg(long, env = "WSGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// With --insecure-http: listen on a non-loopback address anyway.
    #[arg(long, env = "WSGATE_INSECURE_ALLOW_REMOTE")]
    insecure_allow_remote: bool,
    /// After SIGTERM/SIGINT: how long in-flight requests may take to finish.
    #[arg(long, env = "WSGATE_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "10s", value_parser = config::units::parse_duration)]
    shutdown_grace: Duration,
    #[command(flatten)]
    overrides: config::Overrides,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting; prints the summary.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a user token.
    Create(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Data directory holding the signing key (pki/).
    #[arg(long, env = "WSGATE_DATA_DIR", default_value = "./wsgate-data")]
    data_dir: PathBuf,
    /// Configuration file (issuer and audiences).
    #[arg(long, env = "WSGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// User name (`sub`).
    #[arg(long)]
    user: String,
    /// Groups (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Workspaces the token is valid in: a path, `path:*` for descendants,
    /// or `*` (repeatable) [default: *].
    #[arg(long = "workspace", value_name = "PATH")]
    workspaces: Vec<String>,
    /// Lifetime, e.g. 24h or 90m [default: auth.user_token_ttl].
    #[arg(long, value_parser = config::units::parse_duration)]
    ttl: Option<Duration>,
}

#[derive(clap::Args)]
struct KubeconfigArgs {
    /// Workspace the kubeconfig points at.
    #[arg(long, default_value = "root")]
    workspace: String,
    /// User name of the token [default: the admin user, system:masters].
    #[arg(long)]
    user: Option<String>,
    /// Groups of --user (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Server URL (scheme, host, port) [default: https://<listen address>].
    #[arg(long)]
    server: Option<String>,
    /// Data directory (signing key and CA).
    #[arg(long, env = "WSGATE_DATA_DIR", default_value = "./wsgate-data")]
    data_dir: PathBuf,
    /// Configuration file (issuer, audiences, listen address, TLS files).
    #[arg(long, env = "WSGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Token lifetime [default: auth.user_token_ttl].
    #[arg(long, value_parser = config::units::parse_duration)]
    ttl: Option<Duration>,
    /// Credentials are a client certificate (CN = user, O = groups) signed
    /// by the generated CA, valid for --ttl, instead of a token.
    #[arg(long)]
    client_cert: bool,
}

/// The configuration of an offline command: the file (if any) with the data
/// directory from the command line.
fn offline_config(file: Option<&PathBuf>, data_dir: &std::path::Path) -> anyhow::Result<Config> {
    let overrides = config::Overrides {
        data_dir: Some(data_dir.to_owned()),
        ..Default::default()
    };
    Ok(Config::resolve(file.map(PathBuf::as_path), &overrides)?)
}

fn user_token(
    cfg: &Config,
    name: &str,
    groups: Vec<String>,
    workspaces: &[String],
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    let scope = if workspaces.is_empty() {
        WorkspaceScope::All
    } else {
        WorkspaceScope::parse(workspaces)?
    };
    let tokens = wsgate_server::serve::token_service(cfg)?;
    Ok(tokens.issue_user_token(&UserTokenRequest {
        name: name.to_owned(),
        uid: None,
        groups,
        workspaces: scope,
        lifetime: ttl.unwrap_or(cfg.auth.user_token_ttl),
    })?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let cfg = Config::resolve(args.config.as_deref(), &args.overrides)?;
            request_id::init_logging(cfg.logging.format, &cfg.logging.level)?;
            let opts = ServeOptions {
                config: cfg,
                allow_insecure_remote: args.insecure_allow_remote,
                shutdown_grace: args.shutdown_grace,
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                wsgate_server::serve(opts, async {
                    wsgate_server::serve::shutdown_signal().await;
                    tracing::info!("shutdown requested");
                })
                .await
            })
            .context("wsgate serve")?;
            tracing::info!("stopped");
        }
        Command::Config(ConfigCommand::Check { file }) => match config::check(&file) {
            Ok(summary) => println!("{summary}"),
            Err(e) => bail!("{e}"),
        },
        Command::Token(TokenCommand::Create(a)) => {
            let cfg = offline_config(a.config.as_ref(), &a.data_dir)?;
            println!(
                "{}",
                user_token(&cfg, &a.user, a.groups, &a.workspaces, a.ttl)?
            );
        }
        Command::Kubeconfig(a) => {
            let cfg = offline_config(a.config.as_ref(), &a.data_dir)?;
            let workspace = WorkspacePath::parse(&a.workspace)?;
            let (name, groups) = match a.user {
                Some(u) => (u, a.groups),
                None => (
                    wsgate_server::auth::token::ADMIN_USER.to_owned(),
                    vec!["system:masters".to_owned()],
                ),
            };
            // Valid in this workspace only (and, for the admin, everywhere).
            let scope = if groups.iter().any(|g| g == "system:masters") {
                vec!["*".to_owned()]
            } else {
                vec![workspace.to_string()]
            };
            let (token, cert) = if a.client_cert {
                let ttl = a.ttl.unwrap_or(cfg.auth.user_token_ttl);
                let groups: Vec<String> = groups
                    .into_iter()
                    .filter(|g| g != "system:authenticated")
                    .collect();
                let pair =
                    wsgate_server::tls::issue_client_cert(&cfg.data_dir, &name, &groups, ttl)?;
                (String::new(), Some(pair))
            } else {
                (user_token(&cfg, &name, groups, &scope, a.ttl)?, None)
            };
            let ca = match cfg.tls_files() {
                Some(_) => None,
                None => {
                    let path = cfg.data_dir.join("pki").join("ca.crt");
                    Some(std::fs::read_to_string(&path).with_context(|| {
                        format!(
                            "reading {} (start `wsgate serve` once to generate it)",
                            path.display()
                        )
                    })?)
                }
            };
            // An explicit address wins; else where the server said it runs
            // (its admin kubeconfig holds the bound port); else the config.
            let server = a
                .server
                .or_else(|| {
                    cfg.advertise_address
                        .as_ref()
                        .map(|addr| format!("https://{addr}"))
                })
                .or_else(|| cli::workspace::admin_server_url(&cfg.data_dir))
                .unwrap_or_else(|| format!("https://{}", cfg.listen));
            let yaml = kubeconfig::render_yaml(&KubeconfigParams {
                server: &server,
                workspace: &workspace,
                ca_pem: ca.as_deref(),
                token: &token,
                user: &name,
                client_cert: cert.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
            })?;
            print!("{yaml}");
        }
        Command::Workspace(args) => {
            tokio::runtime::Runtime::new()?.block_on(cli::workspace::run(args))?;
        }
        Command::Bench(args) => {
            request_id::init_logging(config::LogFormat::Text, "info")?;
            tokio::runtime::Runtime::new()?.block_on(wsgate_server::bench::run(args))?;
        }
    }
    Ok(())
}
