//! `lockstep net …`: named virtual networks (see `crates/net`): create,
//! list, show, delete, and the switch itself (`net serve`).

use std::error::Error;
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use net::network::{Forward, Mode, NetworkConfig, Proto, Subnet, Vxlan, VXLAN_PORT};
use net::switch::{self, RunDir, ServeOptions, SwitchError, SwitchStatus};
use net::{NetworkAccess, Networks};
use serde::Serialize;

type CmdResult = Result<ExitCode, Box<dyn Error>>;

/// How long an on-demand switch stays after its last VM left.
const IDLE_EXIT: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct NetArgs {
    #[command(subcommand)]
    command: NetCommand,
}

#[derive(Subcommand)]
enum NetCommand {
    /// Define a network: `nat` (a user-mode gateway at .2; no root), `hostonly`
    /// (a host TAP at .1; root), `bridged` (a TAP on a Linux bridge; root) or
    /// `internal` (VMs only), optionally joined to other hosts by VXLAN.
    Create(CreateArgs),
    /// The networks, their subnets and whether a switch runs for them.
    List(ListArgs),
    /// One network: its settings, and from its running switch the ports with
    /// their counters, the MAC table and the DHCP leases.
    Show(ShowArgs),
    /// Remove a network (refused while a VM uses it or a kept VM names it).
    Delete(DeleteArgs),
    /// Run a network's switch in the foreground (VMs start one on demand;
    /// this one stays until stopped).
    Serve(ServeArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// The network's name (letters, digits, '.', '_', '-'; at most 32).
    name: String,
    /// What the network connects its VMs to.
    #[arg(long, value_parser = parse_mode)]
    mode: Mode,
    /// The IPv4 subnet, e.g. 192.168.50.0/24 (nat and hostonly pick a free
    /// 192.168.x.0/24 when it is not given).
    #[arg(long, value_parser = parse_subnet)]
    subnet: Option<Subnet>,
    /// Whether the switch answers DHCP (default: on when there is a subnet and
    /// the mode is not bridged).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    dhcp: Option<bool>,
    /// The Linux bridge a bridged network's TAP joins.
    #[arg(long, value_name = "BR")]
    bridge: Option<String>,
    /// An inbound port forward (nat): PROTO:[HOSTADDR:]HOSTPORT:GUESTIP:PORT,
    /// e.g. tcp:2222:192.168.50.130:22 (the host address is 127.0.0.1 unless
    /// given).
    #[arg(long, value_name = "SPEC", value_parser = parse_forward)]
    forward: Vec<Forward>,
    /// Where the NAT gateway's DNS forwarder sends queries: ADDR[:PORT]
    /// (default: the host's first /etc/resolv.conf server).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns)]
    dns: Option<SocketAddr>,
    /// Join other hosts over VXLAN with this network identifier (0-16777215).
    #[arg(long, value_name = "VNI", requires = "local")]
    vxlan: Option<u32>,
    /// This host's VXLAN tunnel address.
    #[arg(long, value_name = "ADDR", requires = "vxlan")]
    local: Option<IpAddr>,
    /// A remote tunnel endpoint (repeat for more): broadcast and unknown
    /// frames are sent to each.
    #[arg(long, value_name = "ADDR", requires = "vxlan")]
    remote: Vec<IpAddr>,
    /// The VXLAN UDP port.
    #[arg(long, value_name = "PORT", default_value_t = VXLAN_PORT, requires = "vxlan")]
    port: u16,
    /// The MTU DHCP gives guests (default 1500; 1450 with VXLAN, its 50 bytes
    /// of headers taken off).
    #[arg(long)]
    mtu: Option<u16>,
}

#[derive(Args)]
struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShowArgs {
    /// The network.
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeleteArgs {
    /// The network.
    name: String,
}

#[derive(Args)]
struct ServeArgs {
    /// The network.
    name: String,
    /// Exit once no VM has used the network for this long (how VMs start
    /// it); without it, serve until stopped.
    #[arg(long, value_name = "DURATION", value_parser = vocab::parse_duration)]
    idle_exit: Option<humantime::Duration>,
}

fn parse_mode(s: &str) -> Result<Mode, net::network::UnknownMode> {
    s.parse()
}

/// Why a `lockstep net` flag or command is refused.
#[derive(Debug, thiserror::Error)]
pub enum NetCmdError {
    #[error("'{given}' is not on or off")]
    NotOnOff { given: String },
    #[error("'{given}' is not ADDR or ADDR:PORT")]
    NotDnsAddr { given: String },
    #[error("port forward {forward}: host port {addr} cannot be used: {source}")]
    ForwardPortTaken {
        forward: Forward,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("network {network} is named by kept VM(s) {}: change their NICs or delete them first", .vms.join(", "))]
    NamedByKeptVms { network: String, vms: Vec<String> },
}

fn parse_subnet(s: &str) -> Result<Subnet, net::NetworkError> {
    s.parse()
}

fn parse_forward(s: &str) -> Result<Forward, net::NetworkError> {
    s.parse()
}

fn parse_on_off(s: &str) -> Result<bool, NetCmdError> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(NetCmdError::NotOnOff {
            given: other.into(),
        }),
    }
}

fn parse_dns(s: &str) -> Result<SocketAddr, NetCmdError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| NetCmdError::NotDnsAddr { given: s.into() })
}

/// The store: `$LOCKSTEP_HOME/networks`.
pub fn networks() -> Result<Networks, vmm::VmmError> {
    let home = vmm::Home::from_env()?;
    Ok(Networks::at(home.root().join("networks")))
}

/// What NICs need to join named networks: the store, and a launcher that
/// starts `lockstep net serve NAME --idle-exit 3s` detached (its own
/// process group, output to the network's `switch.log`).
pub fn access() -> Result<NetworkAccess, vmm::VmmError> {
    let networks = networks()?;
    let store = networks.clone();
    let launch = move |name: &str| -> io::Result<()> {
        let exe = std::env::current_exe()?;
        let run = RunDir::of(&store, name);
        let log = File::options()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(run.log())?;
        let mut child = Command::new(exe)
            .args(["net", "serve", name, "--idle-exit"])
            .arg(format!("{}s", IDLE_EXIT.as_secs()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        // Reap it when it exits.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    };
    Ok(NetworkAccess {
        networks,
        launch: Arc::new(launch),
    })
}

pub fn run(args: NetArgs) -> CmdResult {
    let store = networks()?;
    match args.command {
        NetCommand::Create(a) => create(&store, a),
        NetCommand::List(a) => list(&store, a.json),
        NetCommand::Show(a) => show(&store, &a.name, a.json),
        NetCommand::Delete(a) => delete(&store, &a.name),
        NetCommand::Serve(a) => {
            let options = ServeOptions {
                idle_exit: a.idle_exit.map(Into::into),
            };
            switch::serve(&store, &a.name, options, || {
                tracing::info!(network = %a.name, "switch ready");
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A free 192.168.x.0/24 for a new nat or hostonly network.
fn pick_subnet(store: &Networks, name: &str) -> Result<Subnet, Box<dyn Error>> {
    store
        .free_subnet(name)?
        .ok_or_else(|| crate::exit::usage("no free 192.168.100-199.0/24 subnet: give --subnet"))
}

fn create(store: &Networks, a: CreateArgs) -> CmdResult {
    net::network::check_name(&a.name)?;
    let subnet = match (a.subnet, a.mode) {
        (Some(s), _) => Some(s),
        (None, Mode::Nat | Mode::Hostonly) => Some(pick_subnet(store, &a.name)?),
        (None, _) => None,
    };
    let vxlan = match (a.vxlan, a.local) {
        (Some(vni), Some(local)) => Some(Vxlan {
            vni,
            local,
            remotes: a.remote,
            port: a.port,
        }),
        _ => None,
    };
    let mut config = NetworkConfig::new(&a.name, a.mode, subnet);
    config.dhcp = a.dhcp.unwrap_or(config.dhcp);
    config.bridge = a.bridge;
    config.forwards = a.forward;
    config.dns = a.dns;
    config.mtu = a.mtu.unwrap_or(if vxlan.is_some() { 1450 } else { 1500 });
    config.vxlan = vxlan;
    config.validate()?;
    // A forward to a host port something else holds fails now, not when
    // the first VM starts.
    for f in &config.forwards {
        let addr = SocketAddr::from((f.host_addr, f.host_port));
        let bound = match f.proto {
            Proto::Tcp => TcpListener::bind(addr).map(drop),
            Proto::Udp => UdpSocket::bind(addr).map(drop),
        };
        if let Err(source) = bound {
            return Err(NetCmdError::ForwardPortTaken {
                forward: *f,
                addr,
                source,
            }
            .into());
        }
    }
    store.create(&config)?;
    eprintln!(
        "lockstep: created network {} ({}{})",
        config.name,
        config.mode,
        config.subnet.map_or(String::new(), |s| format!(", {s}"))
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct NetworkView {
    #[serde(flatten)]
    config: NetworkConfig,
    /// The switch's report, if one runs.
    switch: Option<SwitchStatus>,
}

#[derive(Serialize)]
struct NetworkList {
    schema: u32,
    networks: Vec<NetworkView>,
}

fn running(store: &Networks, name: &str) -> Result<Option<SwitchStatus>, Box<dyn Error>> {
    match switch::status(store, name) {
        Ok(s) => Ok(Some(s)),
        Err(SwitchError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn list(store: &Networks, json: bool) -> CmdResult {
    let mut views = Vec::new();
    for config in store.list()? {
        let switch = running(store, &config.name).unwrap_or(None);
        views.push(NetworkView { config, switch });
    }
    if json {
        let doc = NetworkList {
            schema: vmm::api::SCHEMA,
            networks: views,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<9} {:<18} {:<5} {:<14} SWITCH",
        "NAME", "MODE", "SUBNET", "DHCP", "VXLAN"
    );
    for v in views {
        let c = &v.config;
        println!(
            "{:<16} {:<9} {:<18} {:<5} {:<14} {}",
            c.name,
            c.mode.to_string(),
            c.subnet.map_or("-".into(), |s| s.to_string()),
            if c.dhcp { "on" } else { "off" },
            c.vxlan
                .as_ref()
                .map_or("-".into(), |x| format!("vni {}", x.vni)),
            match &v.switch {
                Some(s) => format!(
                    "pid {}, {} VM port(s)",
                    s.pid,
                    s.ports.iter().filter(|p| p.kind == "vm").count()
                ),
                None => "-".into(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(store: &Networks, name: &str, json: bool) -> CmdResult {
    let config = store.get(name)?;
    let switch = running(store, name)?;
    if json {
        let view = NetworkView { config, switch };
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:     {}", config.name);
    println!("mode:     {}", config.mode);
    if let Some(s) = config.subnet {
        println!("subnet:   {s}");
        match config.mode {
            Mode::Nat => println!("gateway:  {} (router and DNS)", s.gateway()),
            Mode::Hostonly => println!(
                "host:     {} on TAP {}",
                s.host_address(),
                switch::tap_name(name)
            ),
            _ => {}
        }
        if config.dhcp {
            let (first, last) = s.dhcp_range();
            println!("dhcp:     {first} - {last}, served by {}", s.gateway());
        }
    }
    if let Some(b) = &config.bridge {
        println!("bridge:   {b} (TAP {})", switch::tap_name(name));
    }
    for f in &config.forwards {
        println!("forward:  {f}");
    }
    if let Some(v) = &config.vxlan {
        let remotes: Vec<String> = v.remotes.iter().map(ToString::to_string).collect();
        println!(
            "vxlan:    vni {} local {}:{} remotes {}",
            v.vni,
            v.local,
            v.port,
            if remotes.is_empty() {
                "-".into()
            } else {
                remotes.join(", ")
            }
        );
    }
    println!("mtu:      {}", config.mtu);
    let Some(s) = switch else {
        println!("switch:   not running (no VM uses the network)");
        return Ok(ExitCode::SUCCESS);
    };
    println!("switch:   pid {}", s.pid);
    println!();
    println!(
        "{:>4} {:<8} {:<28} {:>10} {:>12} {:>10} {:>12} {:>8} {:>9}",
        "PORT",
        "KIND",
        "NAME",
        "RX FRAMES",
        "RX BYTES",
        "TX FRAMES",
        "TX BYTES",
        "DROPPED",
        "MALFORMED"
    );
    for p in &s.ports {
        let c = p.counters;
        println!(
            "{:>4} {:<8} {:<28} {:>10} {:>12} {:>10} {:>12} {:>8} {:>9}",
            p.id,
            p.kind,
            p.name,
            c.rx_frames,
            c.rx_bytes,
            c.tx_frames,
            c.tx_bytes,
            c.tx_dropped,
            c.rx_malformed
        );
    }
    println!();
    println!("{:<18} {:>4} {:>8}", "MAC", "PORT", "AGE");
    for m in &s.macs {
        println!("{:<18} {:>4} {:>7}s", m.mac, m.port, m.age_secs);
    }
    if !s.leases.is_empty() {
        println!();
        println!("{:<18} {:<16} {:>10}", "LEASE MAC", "ADDRESS", "EXPIRES");
        for l in &s.leases {
            println!("{:<18} {:<16} {:>9}s", l.mac, l.ip, l.expires_in_secs);
        }
    }
    if config.mode == Mode::Nat {
        println!();
        println!(
            "nat:      {} open flows; {} TCP out, {} TCP in, {} UDP flows, {} connects failed, {} malformed",
            s.nat_flows, s.nat.tcp_out, s.nat.tcp_in, s.nat.udp_flows, s.nat.connect_failed, s.nat.malformed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Kept VMs whose NICs name `network`.
fn kept_users(network: &str) -> Result<Vec<String>, Box<dyn Error>> {
    let home = vmm::Home::from_env()?;
    let (vms, _) = home.list()?;
    let mut users = Vec::new();
    for summary in vms {
        let Ok(vm) = home.open(&summary.name) else {
            continue;
        };
        let uses = vm.config().nics.iter().any(|nic| {
            matches!(
                net::NetSpec::parse_either(&nic.net).map(|s| s.backend),
                Ok(net::Backend::Network { name }) if name == network
            )
        });
        if uses {
            users.push(summary.name);
        }
    }
    Ok(users)
}

fn delete(store: &Networks, name: &str) -> CmdResult {
    store.get(name)?;
    if let Some(status) = running(store, name)? {
        let vms: Vec<&str> = status
            .ports
            .iter()
            .filter(|p| p.kind == "vm")
            .map(|p| p.name.as_str())
            .collect();
        if !vms.is_empty() {
            return Err(net::NetworkError::InUse {
                name: name.to_string(),
                ports: vms.len(),
                who: vms.join(", "),
            }
            .into());
        }
    }
    let users = kept_users(name)?;
    if !users.is_empty() {
        return Err(NetCmdError::NamedByKeptVms {
            network: name.into(),
            vms: users,
        }
        .into());
    }
    if running(store, name)?.is_some() {
        switch::stop(store, name)?;
    }
    store.remove(name)?;
    eprintln!("lockstep: deleted network {name}");
    Ok(ExitCode::SUCCESS)
}
