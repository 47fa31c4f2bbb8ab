//! `wsgate`: the multi-tenant Kubernetes API gateway.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use storage::{EmbeddedConfig, EtcdConfig, StorageConfig};
use wsgate_server::ServerConfig;

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
    /// Serve the Kubernetes API for every workspace.
    Serve(ServeArgs),
    /// Load-test a server: latency and throughput per API verb, watches, limits.
    Bench(wsgate_server::bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "WSGATE_DATA_DIR", default_value = "./wsgate-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "WSGATE_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Use these etcd endpoints instead of the embedded store.
    #[arg(long, env = "WSGATE_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Top of the storage key space.
    #[arg(long, env = "WSGATE_STORAGE_ROOT", default_value = "/registry")]
    storage_root: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => wsgate_server::bench::run(args).await?,
        Command::Serve(args) => {
            let storage = if args.etcd_endpoints.is_empty() {
                StorageConfig::Embedded(EmbeddedConfig::new(&args.data_dir))
            } else {
                StorageConfig::Etcd(EtcdConfig::new(args.etcd_endpoints.clone()))
            };
            tracing::warn!(
                listen = %args.listen,
                "the listener is plain HTTP without authentication (TLS and authentication arrive with the security issue)"
            );
            let config = ServerConfig {
                listen: args.listen,
                storage,
                storage_root: args.storage_root,
            };
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
            };
            wsgate_server::serve(config, shutdown)
                .await
                .context("wsgate serve")?;
        }
    }
    Ok(())
}
