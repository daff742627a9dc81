//! Network namespaces for tests that need more than one "host": each
//! `Netns` is created fresh, configured with `ip -n`, and deleted when
//! dropped (also when the test panics), taking its interfaces with it.
//! Nothing here touches the host's own namespace.
//!
//! Needs root and `ip` (iproute2).
// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;

fn run(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (install iproute2)"));
    assert!(status.success(), "{args:?} failed: {status}");
}

/// A named network namespace with its loopback up; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create namespace `name` (a stale one of that name is removed first).
    pub fn create(name: &str) -> Netns {
        assert!(
            rustix::process::geteuid().is_root(),
            "network namespaces need root"
        );
        if Path::new(&format!("/run/netns/{name}")).exists() {
            run(&["ip", "netns", "del", name]);
        }
        run(&["ip", "netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip ARGS` inside this namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// The command prefix that starts a program inside this namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(str::to_string)
            .to_vec()
    }

    /// A Linux bridge `name`, up, with STP off and no forwarding delay.
    pub fn bridge(&self, name: &str) {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// Enslave interface `port` to `bridge` and bring it up.
    pub fn attach(&self, bridge: &str, port: &str) {
        self.ip(&["link", "set", port, "master", bridge, "up"]);
    }

    /// A persistent TAP `name` (a VM attaches to it later), up.
    pub fn tap(&self, name: &str) {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// Give `dev` the address `cidr` and bring it up.
    pub fn address(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
    }

    /// A veth pair: `here` in this namespace, `there` in `peer` (both down).
    pub fn veth(&self, here: &str, peer: &Netns, there: &str) {
        self.ip(&[
            "link", "add", here, "type", "veth", "peer", "name", there, "netns", &peer.name,
        ]);
    }

    /// Run `work` on a new thread that has moved into this namespace, so
    /// the sockets it creates live here.
    pub fn spawn<T, F>(&self, work: F) -> JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("enter network namespace {path}: {e}"));
            work()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
