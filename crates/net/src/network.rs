//! Named networks: what `lockstep net create` defines and keeps in
//! `$LOCKSTEP_HOME/networks/NAME.toml`.
//!
//! A network is a virtual switch plus what hangs off it: a user-mode NAT
//! gateway (`nat`), a host TAP holding the subnet's `.1` (`hostonly`), a
//! TAP enslaved to a Linux bridge (`bridged`), or nothing (`internal`);
//! any of them may also carry a VXLAN tunnel to other hosts. Every value
//! here is checked when it is read, from the command line or from a file.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest network name (it ends up in socket paths).
pub const MAX_NAME_LEN: usize = 32;
/// VXLAN's network identifier is 24 bits (RFC 7348 §5).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// The IANA port for VXLAN.
pub const VXLAN_PORT: u16 = 4789;
/// Largest network file read back (a config is a few hundred bytes).
const MAX_CONFIG_LEN: u64 = 64 << 10;
/// At most this many port forwards and VXLAN remotes per network.
pub const MAX_FORWARDS: usize = 64;
/// At most this many static remote VTEPs.
pub const MAX_REMOTES: usize = 64;

/// What is wrong with a network definition or a request on the store.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A name that cannot be a network's.
    #[error("bad network name '{name}': {reason}")]
    BadName {
        /// The name as given (shortened).
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A subnet that does not parse or cannot be used.
    #[error("bad subnet '{given}': {reason}")]
    BadSubnet {
        /// The value as given.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// A port forward that does not parse.
    #[error("bad port forward '{given}': {reason} (expected PROTO:HOSTPORT:GUESTIP:PORT, e.g. tcp:2222:192.168.100.130:22)")]
    BadForward {
        /// The value as given.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// Options that do not go together, or one missing.
    #[error("network {name}: {reason}")]
    Invalid {
        /// The network.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The new network's subnet overlaps another's.
    #[error("network {name}: subnet {subnet} overlaps network {other}'s {other_subnet}")]
    Overlap {
        /// The new network.
        name: String,
        /// Its subnet.
        subnet: Subnet,
        /// The network it collides with.
        other: String,
        /// That network's subnet.
        other_subnet: Subnet,
    },
    /// No network of that name.
    #[error("no network named '{0}' (see `lockstep net list`)")]
    NotFound(String),
    /// A network of that name exists.
    #[error("a network named '{0}' exists already")]
    Exists(String),
    /// Deleting a network whose switch still has ports.
    #[error("network {name} is in use by {ports} port(s) ({who}); stop those VMs first")]
    InUse {
        /// The network.
        name: String,
        /// How many VM ports its switch has.
        ports: usize,
        /// Their MAC addresses.
        who: String,
    },
    /// A network file that does not read as one.
    #[error("network file {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file system failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NetworkError {
    let path = path.to_path_buf();
    move |source| NetworkError::Io { what, path, source }
}

/// Checks a network name: 1 to 32 letters, digits, `.`, `_`, `-`, not
/// starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), NetworkError> {
    let refuse = |reason| {
        Err(NetworkError::BadName {
            name: name.chars().take(40).collect(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return refuse("names are 1 to 32 characters long");
    }
    if name.starts_with(['.', '-']) {
        return refuse("names must not start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return refuse("names are letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// An IPv4 subnet: a network address with its host bits clear and a
/// prefix of 8 to 29 bits (room for the host, the gateway and guests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet `network/prefix`, checked as [`FromStr`] checks it.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Subnet, NetworkError> {
        format!("{network}/{prefix}").parse()
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as an address.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask_bits(self.prefix))
    }

    /// The address `host` within the subnet (`.1`, `.2`, …). `None` if it
    /// is past the broadcast address.
    pub fn host(&self, host: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - self.prefix);
        (u64::from(host) < size - 1).then(|| Ipv4Addr::from(u32::from(self.network) + host))
    }

    /// How many addresses the subnet has (network and broadcast included).
    pub fn size(&self) -> u32 {
        // A prefix of at least 8 keeps this within u32.
        1u32 << (32 - self.prefix)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask_bits(self.prefix) == u32::from(self.network)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = mask_bits(shorter);
        u32::from(self.network) & m == u32::from(other.network) & m
    }

    /// The host-side address (`.1`).
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The gateway and DNS address of a NAT network (`.2`; `.1` is the
    /// host's own adapter, as on VMware's VMnet8).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// The first and last address DHCP hands out: from `.128` (or the
    /// middle of a small subnet) to the last before the broadcast.
    pub fn dhcp_range(&self) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.network);
        let first = if self.size() >= 256 {
            128
        } else {
            self.size() / 2
        };
        (
            Ipv4Addr::from(base + first.max(3)),
            Ipv4Addr::from(base + self.size() - 2),
        )
    }
}

fn mask_bits(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Subnet, NetworkError> {
        let bad = |reason: String| NetworkError::BadSubnet {
            given: s.chars().take(64).collect(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 192.168.50.0/24".into()))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad(format!("'{addr}' is not an IPv4 address")))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad(format!("'{prefix}' is not a prefix length")))?;
        if !(8..=29).contains(&prefix) {
            return Err(bad(format!(
                "a /{prefix} cannot be used: the prefix must be 8 to 29"
            )));
        }
        let host_bits = u32::from(network) & !mask_bits(prefix);
        if host_bits != 0 {
            let net = Ipv4Addr::from(u32::from(network) & mask_bits(prefix));
            return Err(bad(format!(
                "host bits are set; did you mean {net}/{prefix}?"
            )));
        }
        if network.is_loopback() || network.is_multicast() || network.is_unspecified() {
            return Err(bad("not a unicast network".into()));
        }
        Ok(Subnet { network, prefix })
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a network connects its VMs to besides each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A user-mode gateway at `.2`: DHCP, DNS, connections out through
    /// ordinary host sockets, port forwards in. No root needed.
    Nat,
    /// A host TAP holding `.1`: VMs reach the host and nothing beyond.
    Hostonly,
    /// A TAP enslaved to a Linux bridge: VMs are machines on that LAN.
    Bridged,
    /// VMs reach only each other (and VXLAN peers).
    Internal,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Nat => "nat",
            Mode::Hostonly => "hostonly",
            Mode::Bridged => "bridged",
            Mode::Internal => "internal",
        })
    }
}

/// A network mode name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a network mode (nat, hostonly, bridged or internal)")]
pub struct UnknownMode {
    pub name: String,
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        match s {
            "nat" => Ok(Mode::Nat),
            "hostonly" => Ok(Mode::Hostonly),
            "bridged" => Ok(Mode::Bridged),
            "internal" => Ok(Mode::Internal),
            other => Err(UnknownMode { name: other.into() }),
        }
    }
}

/// A forwarded protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An inbound port forward: connections to the host's `host_port` (on
/// `host_addr`, loopback unless given) reach `guest:guest_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// TCP or UDP.
    pub proto: Proto,
    /// The host address listened on.
    pub host_addr: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The guest's address.
    pub guest: Ipv4Addr,
    /// The guest's port.
    pub guest_port: u16,
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.proto)?;
        if self.host_addr != Ipv4Addr::LOCALHOST {
            write!(f, "{}:", self.host_addr)?;
        }
        write!(f, "{}:{}:{}", self.host_port, self.guest, self.guest_port)
    }
}

impl FromStr for Forward {
    type Err = NetworkError;

    /// `PROTO:[HOSTADDR:]HOSTPORT:GUESTIP:PORT`.
    fn from_str(s: &str) -> Result<Forward, NetworkError> {
        let bad = |reason: String| NetworkError::BadForward {
            given: s.chars().take(80).collect(),
            reason,
        };
        let fields: Vec<&str> = s.split(':').collect();
        let (proto, host_addr, host_port, guest, guest_port) = match fields[..] {
            [p, hp, g, gp] => (p, None, hp, g, gp),
            [p, ha, hp, g, gp] => (p, Some(ha), hp, g, gp),
            _ => return Err(bad("wrong number of fields".into())),
        };
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return Err(bad(format!("protocol '{other}' is not tcp or udp"))),
        };
        let port = |p: &str, what: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(format!("{what} '{p}' is not a port from 1 to 65535"))),
            Ok(n) => Ok(n),
        };
        let host_addr = match host_addr {
            None => Ipv4Addr::LOCALHOST,
            Some(a) => a
                .parse()
                .map_err(|_| bad(format!("host address '{a}' is not an IPv4 address")))?,
        };
        Ok(Forward {
            proto,
            host_addr,
            host_port: port(host_port, "host port")?,
            guest: guest
                .parse()
                .map_err(|_| bad(format!("guest address '{guest}' is not an IPv4 address")))?,
            guest_port: port(guest_port, "guest port")?,
        })
    }
}

/// A VXLAN tunnel joining this network's switch to other hosts'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    /// The 24-bit network identifier.
    pub vni: u32,
    /// This host's tunnel address (the UDP socket binds it).
    pub local: IpAddr,
    /// Static remote tunnel endpoints; broadcast and unknown frames go to
    /// each (head-end replication).
    #[serde(default)]
    pub remotes: Vec<IpAddr>,
    /// The UDP port, local and remote.
    pub port: u16,
}

/// A named network as kept in `networks/NAME.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The network's name.
    pub name: String,
    /// What it connects to.
    pub mode: Mode,
    /// Its IPv4 subnet (needed for `nat`, `hostonly` and DHCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Subnet>,
    /// Whether the switch answers DHCP.
    pub dhcp: bool,
    /// The Linux bridge of a `bridged` network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Inbound port forwards (`nat`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<Forward>,
    /// Where the NAT gateway's DNS forwarder sends queries; the host's
    /// first `/etc/resolv.conf` server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<SocketAddr>,
    /// A VXLAN tunnel to other hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<Vxlan>,
    /// The MTU DHCP offers guests (option 26): 1500, or 1450 with VXLAN.
    pub mtu: u16,
}

impl NetworkConfig {
    /// A network with the defaults: DHCP when it has a subnet and is not
    /// bridged, MTU 1500, no bridge, forwards, DNS or VXLAN.
    pub fn new(name: &str, mode: Mode, subnet: Option<Subnet>) -> NetworkConfig {
        NetworkConfig {
            name: name.to_string(),
            mode,
            subnet,
            dhcp: subnet.is_some() && mode != Mode::Bridged,
            bridge: None,
            forwards: Vec::new(),
            dns: None,
            vxlan: None,
            mtu: 1500,
        }
    }

    /// Checks everything a file or a command line could get wrong.
    pub fn validate(&self) -> Result<(), NetworkError> {
        check_name(&self.name)?;
        let invalid = |reason: String| {
            Err(NetworkError::Invalid {
                name: self.name.clone(),
                reason,
            })
        };
        match self.mode {
            Mode::Nat | Mode::Hostonly if self.subnet.is_none() => {
                return invalid(format!("a {} network needs --subnet", self.mode))
            }
            Mode::Bridged if self.bridge.is_none() => {
                return invalid("a bridged network needs --bridge BR".into())
            }
            _ => {}
        }
        if self.bridge.is_some() && self.mode != Mode::Bridged {
            return invalid("--bridge is for --mode bridged".into());
        }
        if let Some(bridge) = &self.bridge {
            if bridge.is_empty()
                || bridge.len() > 15
                || !bridge
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return invalid(format!("'{bridge}' is not a Linux interface name"));
            }
        }
        if self.dhcp && self.subnet.is_none() {
            return invalid("DHCP needs --subnet".into());
        }
        if self.dhcp && self.mode == Mode::Bridged {
            return invalid("a bridged network's DHCP is the LAN's: use --dhcp off".into());
        }
        if !self.forwards.is_empty() && self.mode != Mode::Nat {
            return invalid("--forward is for --mode nat".into());
        }
        if self.forwards.len() > MAX_FORWARDS {
            return invalid(format!("at most {MAX_FORWARDS} port forwards"));
        }
        for (i, f) in self.forwards.iter().enumerate() {
            if let Some(subnet) = self.subnet {
                if !subnet.contains(f.guest) {
                    return invalid(format!(
                        "port forward {f}: {} is not in the subnet {subnet}",
                        f.guest
                    ));
                }
            }
            if self.forwards[..i]
                .iter()
                .any(|g| g.proto == f.proto && g.host_port == f.host_port)
            {
                return invalid(format!("port forward {f}: host port given twice"));
            }
        }
        if let Some(v) = &self.vxlan {
            if v.vni > MAX_VNI {
                return invalid(format!(
                    "VNI {} is out of range: VXLAN network identifiers are 0 to {MAX_VNI}",
                    v.vni
                ));
            }
            if v.port == 0 {
                return invalid("the VXLAN port must be 1 to 65535".into());
            }
            if v.remotes.len() > MAX_REMOTES {
                return invalid(format!("at most {MAX_REMOTES} VXLAN remotes"));
            }
            if v.local.is_unspecified() || v.local.is_multicast() {
                return invalid(format!("--local {} is not a unicast address", v.local));
            }
            for r in &v.remotes {
                if r.is_unspecified() || r.is_multicast() || *r == v.local {
                    return invalid(format!("--remote {r} is not a remote unicast address"));
                }
                if r.is_ipv4() != v.local.is_ipv4() {
                    return invalid(format!(
                        "--remote {r} and --local {} differ in family",
                        v.local
                    ));
                }
            }
        }
        if !(576..=9000).contains(&self.mtu) {
            return invalid(format!("MTU {} is not 576 to 9000", self.mtu));
        }
        Ok(())
    }

    /// The address guests use as their router and DNS server, if any:
    /// `.2` on `nat`, none elsewhere.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        match (self.mode, self.subnet) {
            (Mode::Nat, Some(s)) => Some(s.gateway()),
            _ => None,
        }
    }
}

/// The store of network definitions, `$LOCKSTEP_HOME/networks/`. Each
/// network's switch keeps its sockets in `networks/NAME.run/`.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// The store in `dir` (`$LOCKSTEP_HOME/networks`).
    pub fn at(dir: impl Into<PathBuf>) -> Networks {
        Networks { dir: dir.into() }
    }

    /// Where the definitions are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A network's runtime directory (switch and port sockets).
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.run"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    /// Creates the store with the default networks (`nat` and
    /// `hostonly`) the first time it is used, as VMware's installer
    /// creates VMnet8 and VMnet1.
    pub fn ensure(&self) -> Result<(), NetworkError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        use std::os::unix::fs::DirBuilderExt;
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err("creating", parent))?;
        // Built beside and renamed into place, so that two first uses at
        // once end with one set of defaults.
        let staging = tempfile::Builder::new()
            .prefix(".networks-new-")
            .tempdir_in(parent)
            .map_err(io_err("creating a directory in", parent))?;
        for config in defaults() {
            write_config(
                &staging.path().join(format!("{}.toml", config.name)),
                &config,
            )?;
        }
        let staged = staging.keep();
        fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(io_err("setting permissions on", &staged))?;
        match fs::rename(&staged, &self.dir) {
            Ok(()) => Ok(()),
            Err(_) if self.dir.is_dir() => {
                let _ = fs::remove_dir_all(&staged);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staged);
                Err(io_err("creating", &self.dir)(e))
            }
        }
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<NetworkConfig>, NetworkError> {
        self.ensure()?;
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("reading", &self.dir))? {
            let entry = entry.map_err(io_err("reading", &self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            if check_name(name).is_err() {
                continue;
            }
            out.push(self.get(name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The network `name`.
    pub fn get(&self, name: &str) -> Result<NetworkConfig, NetworkError> {
        check_name(name)?;
        self.ensure()?;
        let path = self.path(name);
        let file = match fs::File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(NetworkError::NotFound(name.to_string()))
            }
            other => other.map_err(io_err("opening", &path))?,
        };
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, MAX_CONFIG_LEN + 1), &mut text)
            .map_err(io_err("reading", &path))?;
        let bad = |reason: String| NetworkError::BadFile {
            path: path.clone(),
            reason,
        };
        if text.len() as u64 > MAX_CONFIG_LEN {
            return Err(bad(format!("larger than {MAX_CONFIG_LEN} bytes")));
        }
        let config: NetworkConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if config.name != name {
            return Err(bad(format!("it names network '{}'", config.name)));
        }
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }

    /// Adds `config`, refused if the name is taken or its subnet overlaps
    /// another network's.
    pub fn create(&self, config: &NetworkConfig) -> Result<(), NetworkError> {
        config.validate()?;
        self.ensure()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == config.name) {
            return Err(NetworkError::Exists(config.name.clone()));
        }
        if let Some(subnet) = config.subnet {
            for other in &existing {
                match other.subnet {
                    Some(theirs) if theirs.overlaps(&subnet) => {
                        return Err(NetworkError::Overlap {
                            name: config.name.clone(),
                            subnet,
                            other: other.name.clone(),
                            other_subnet: theirs,
                        })
                    }
                    _ => {}
                }
            }
        }
        let path = self.path(&config.name);
        let text = toml::to_string(config).map_err(|e| NetworkError::Invalid {
            name: config.name.clone(),
            reason: e.to_string(),
        })?;
        let options = durable::Options {
            replace: false,
            what: "network file",
            ..durable::Options::default()
        };
        durable::write(&path, &options, text.as_bytes()).map_err(|e| match e {
            durable::Error::Exists { .. } => NetworkError::Exists(config.name.clone()),
            other => NetworkError::Io {
                what: "writing",
                path: path.clone(),
                source: other.into_io(),
            },
        })
    }

    /// A free 192.168.x.0/24 (x from 100 to 199, starting from a hash of
    /// `name`) for a new network, or `None` if all are taken.
    pub fn free_subnet(&self, name: &str) -> Result<Option<Subnet>, NetworkError> {
        let taken: Vec<Subnet> = self.list()?.into_iter().filter_map(|n| n.subnet).collect();
        let start = blake3::hash(name.as_bytes()).as_bytes()[0] % 100;
        Ok((0..100u8)
            .map(|i| Subnet {
                network: Ipv4Addr::new(192, 168, 100 + (start + i) % 100, 0),
                prefix: 24,
            })
            .find(|s| !taken.iter().any(|t| t.overlaps(s))))
    }

    /// Removes the definition of `name`; the caller has checked that no
    /// VM uses it (see [`crate::switch::status`]).
    pub fn remove(&self, name: &str) -> Result<(), NetworkError> {
        let path = self.path(name);
        self.get(name)?;
        fs::remove_file(&path).map_err(io_err("removing", &path))?;
        let run = self.run_dir(name);
        let _ = fs::remove_dir_all(&run);
        Ok(())
    }
}

fn write_config(path: &Path, config: &NetworkConfig) -> Result<(), NetworkError> {
    let text = toml::to_string(config).map_err(|e| NetworkError::Invalid {
        name: config.name.clone(),
        reason: e.to_string(),
    })?;
    let options = durable::Options {
        what: "network file",
        ..durable::Options::default()
    };
    durable::write(path, &options, text.as_bytes()).map_err(|e| NetworkError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source: e.into_io(),
    })
}

/// The third octet of the default networks' subnets: stable for a user
/// on a host (derived from the uid), as VMware picks one at install, and
/// different between `nat` and `hostonly`.
fn default_octet(salt: &str) -> u8 {
    let uid = rustix::process::getuid().as_raw();
    let hash = blake3::hash(format!("lockstep default network {salt} {uid}").as_bytes());
    // 100..=199: clear of the 192.168.0/1.x home routers use.
    100 + hash.as_bytes()[0] % 100
}

/// The networks a fresh store holds: `nat` (192.168.x.0/24, gateway and
/// DNS at .2, DHCP from .128) and `hostonly` (192.168.y.0/24, the host at
/// .1, DHCP from .128).
pub fn defaults() -> Vec<NetworkConfig> {
    let nat = default_octet("nat");
    let mut hostonly = default_octet("hostonly");
    if hostonly == nat {
        hostonly = if nat == 199 { 100 } else { nat + 1 };
    }
    let subnet = |x: u8| Subnet {
        network: Ipv4Addr::new(192, 168, x, 0),
        prefix: 24,
    };
    vec![
        NetworkConfig::new("nat", Mode::Nat, Some(subnet(nat))),
        NetworkConfig::new("hostonly", Mode::Hostonly, Some(subnet(hostonly))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(name: &str, subnet: Option<&str>) -> NetworkConfig {
        NetworkConfig::new(name, Mode::Internal, subnet.map(|s| s.parse().unwrap()))
    }

    #[test]
    fn subnets_parse_and_refuse_with_reasons() {
        let s: Subnet = "192.168.50.0/24".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(192, 168, 50, 2));
        assert_eq!(s.host_address(), Ipv4Addr::new(192, 168, 50, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(192, 168, 50, 255));
        assert_eq!(
            s.dhcp_range(),
            (
                Ipv4Addr::new(192, 168, 50, 128),
                Ipv4Addr::new(192, 168, 50, 254)
            )
        );
        assert!(s.contains(Ipv4Addr::new(192, 168, 50, 9)));
        assert!(!s.contains(Ipv4Addr::new(192, 168, 51, 9)));
        for (bad, why) in [
            ("192.168.50.1/24", "did you mean 192.168.50.0/24"),
            ("192.168.50.0", "expected ADDRESS/PREFIX"),
            ("192.168.500.0/24", "not an IPv4 address"),
            ("10.0.0.0/31", "prefix must be 8 to 29"),
            ("10.0.0.0/x", "not a prefix length"),
            ("127.0.0.0/8", "not a unicast network"),
        ] {
            let err = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let a: Subnet = "10.1.0.0/16".parse().unwrap();
        let b: Subnet = "10.1.7.0/24".parse().unwrap();
        let c: Subnet = "10.2.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a) && !a.overlaps(&c));
    }

    #[test]
    fn forwards_parse_and_refuse() {
        let f: Forward = "tcp:2222:192.168.9.130:22".parse().unwrap();
        assert_eq!(f.host_addr, Ipv4Addr::LOCALHOST);
        assert_eq!((f.host_port, f.guest_port), (2222, 22));
        assert_eq!(f.to_string(), "tcp:2222:192.168.9.130:22");
        let g: Forward = "udp:0.0.0.0:53:192.168.9.130:53".parse().unwrap();
        assert_eq!(g.to_string(), "udp:0.0.0.0:53:192.168.9.130:53");
        for bad in [
            "icmp:1:1.2.3.4:5",
            "tcp:0:1.2.3.4:5",
            "tcp:70000:1.2.3.4:5",
            "tcp:1:1.2.3:5",
            "tcp:1",
        ] {
            assert!(bad.parse::<Forward>().is_err(), "{bad}");
        }
    }

    #[test]
    fn store_creates_defaults_refuses_overlaps_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Networks::at(dir.path().join("networks"));
        let names: Vec<String> = store.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["hostonly", "nat"]);
        let nat = store.get("nat").unwrap();
        assert_eq!(nat.gateway(), Some(nat.subnet.unwrap().gateway()));

        store.create(&internal("lab", Some("10.9.0.0/24"))).unwrap();
        let err = store.create(&internal("lab", None)).unwrap_err();
        assert!(matches!(err, NetworkError::Exists(_)), "{err}");
        let err = store
            .create(&internal("lab2", Some("10.9.0.0/16")))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("overlaps network lab's 10.9.0.0/24"),
            "{err}"
        );
        assert!(!store.dir().join("lab2.toml").exists());

        let mut vx = internal("vx", None);
        vx.vxlan = Some(Vxlan {
            vni: 1 << 24,
            local: "10.0.0.1".parse().unwrap(),
            remotes: vec![],
            port: VXLAN_PORT,
        });
        let err = store.create(&vx).unwrap_err();
        assert!(
            err.to_string().contains("VNI 16777216 is out of range"),
            "{err}"
        );

        std::fs::write(store.dir().join("junk.toml"), "name = 'other'\n").unwrap();
        let err = store.get("junk").unwrap_err();
        assert!(matches!(err, NetworkError::BadFile { .. }), "{err}");
        assert!(matches!(
            store.get("../x"),
            Err(NetworkError::BadName { .. })
        ));

        store.remove("lab").unwrap();
        assert!(matches!(store.get("lab"), Err(NetworkError::NotFound(_))));
    }
}
