//! `lockstepd`: see the `api` crate's documentation and the README.

use api::daemon::{default_host_name, default_vm_binary};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Lockstep's per-host control plane: a REST API over a Unix socket (and
/// optionally HTTPS) that makes, runs and watches VMs.
#[derive(Parser, Debug)]
#[command(name = "lockstepd", version)]
struct Args {
    /// The daemon's home: identity, inventory, each project's VMs
    /// [default: $LOCKSTEP_HOME, else ~/.local/share/lockstep].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// The Unix socket to serve on [default: HOME/lockstepd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Also serve HTTPS on this address (needs --tls-dir).
    #[arg(long, value_name = "ADDR", requires = "tls_dir")]
    listen: Option<std::net::SocketAddr>,
    /// Directory holding node.pem and node.key for --listen
    /// (`lockstep ft tls-init DIR --node-name HOST`); clients trust its ca.pem.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Join the cluster whose etcd answers at URL (repeat for each
    /// endpoint, e.g. http://10.0.0.1:2379). Needs --listen and --tls-dir:
    /// the hosts talk HTTPS to each other, trusting the CA in TLS-DIR/ca.pem.
    #[arg(long, value_name = "URL", requires = "listen")]
    etcd: Vec<String>,
    /// This host's name in the control plane [default: the host name].
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,
    /// The lockstep binary that runs VMs [default: next to lockstepd, else on PATH].
    #[arg(long, value_name = "PATH")]
    vm_binary: Option<PathBuf>,
    /// How long tokens last.
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = humantime::parse_duration)]
    token_ttl: std::time::Duration,
    /// The largest image upload, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 30)]
    max_image_size: u64,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.openapi {
        println!("{}", api::routes::openapi_json());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCKSTEP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockstepd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(not(feature = "etcd"))]
    if !args.etcd.is_empty() {
        return Err(
            "--etcd: this lockstepd was built without etcd support (cargo feature `etcd`)".into(),
        );
    }
    for url in &args.etcd {
        if url.starts_with("https://") {
            return Err(format!(
                "--etcd {url:?}: etcd over TLS is not supported yet; reach etcd over a trusted network (http://)"
            )
            .into());
        }
        if !url.starts_with("http://") || url.len() > 512 {
            return Err(format!(
                "--etcd {url:?}: give an endpoint URL such as http://127.0.0.1:2379"
            )
            .into());
        }
    }
    let home = match args.home {
        Some(h) => h,
        None => vmm::Home::from_env()?.root().to_path_buf(),
    };
    let home = std::path::absolute(&home)?;
    let socket = args.socket.unwrap_or_else(|| home.join("lockstepd.sock"));
    let host_name = args.host_name.unwrap_or_else(default_host_name);
    vmm::check_name("host name", &host_name)?;
    let config = api::Config {
        home: home.clone(),
        socket: socket.clone(),
        listen: args.listen,
        tls_dir: args.tls_dir.clone(),
        host_name,
        vm_binary: args.vm_binary.unwrap_or_else(default_vm_binary),
        token_ttl: args.token_ttl.as_secs().max(1),
        max_image_bytes: args.max_image_size,
    };
    let tls = match &args.tls_dir {
        Some(dir) if args.listen.is_some() => Some(api::listen::tls_config(dir)?),
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let daemon = api::Daemon::open(config)?;
        let app = api::listen::app(daemon.clone());
        if let (Some(addr), Some(tls)) = (args.listen, tls) {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--listen {addr}: {e}"))?;
            let bound = tcp.local_addr()?;
            tracing::info!("serving HTTPS on {bound}");
            tokio::spawn(api::listen::serve_tls(tcp, tls, app.clone()));
            #[cfg(feature = "etcd")]
            if !args.etcd.is_empty() {
                let ca = args.tls_dir.as_deref().unwrap_or(&home).join("ca.pem");
                daemon.join(args.etcd.clone(), bound, &ca).await?;
                tracing::info!("joined the cluster at {}", args.etcd.join(", "));
            }
        }
        // The socket last: once it answers, the daemon is in its cluster.
        let unix = api::listen::bind_unix(&socket)
            .map_err(|e| format!("{}: {e}", socket.display()))?;
        tracing::info!("serving on {}", socket.display());
        tokio::spawn(daemon.clone().supervise());
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            tracing::info!("stopping; running VMs keep running");
        };
        axum::serve(unix, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = std::fs::remove_file(&socket);
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
