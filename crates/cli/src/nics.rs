//! `--net` NICs for `lockstep run`: open each backend before the guest
//! starts, derive MACs, feed received frames to the runner as host events
//! (one reader thread per NIC), and send transmitted frames out.

use machine::{CreditPool, HostEvent, VirtioSpec};
use net::{FrameRx, FrameTx, MacAddr, NetError, NetSpec};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// How often a reader thread looks up from its backend to see whether the
/// VM is gone.
const RX_POLL: Duration = Duration::from_millis(200);
/// Bytes of received frames a NIC may have waiting for the runner; past
/// that (the runner is busy: a save, an FT sync's pause, a slow disk),
/// frames are dropped and counted, as a full NIC ring would drop them.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// The NICs of one VM, opened.
pub struct Nics {
    pub specs: Vec<VirtioSpec>,
    pub macs: Vec<MacAddr>,
    pub tx: Vec<Box<dyn FrameTx>>,
    rx: Vec<Box<dyn FrameRx>>,
    /// Set when the VM is done: the reader threads stop.
    stop: Arc<AtomicBool>,
    /// Frames dropped because the runner had too many waiting.
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error("--net {spec}: {source}")]
    Open { spec: String, source: NetError },
    #[error("--net {spec}: the restored VM's NIC {nic} has address {mac}")]
    MacMismatch {
        spec: String,
        nic: usize,
        mac: MacAddr,
    },
    #[error("the restored VM's NIC {nic} has an unusable address: {source}")]
    BadMac {
        nic: usize,
        source: net::MacParseError,
    },
    #[error("the VM has {vm} NICs but {given} --net given (one per NIC)")]
    Count { vm: usize, given: usize },
    #[error("--net {spec}: {source}")]
    Home { spec: String, source: vmm::VmmError },
}

/// Open every `--net` backend. NIC n's MAC is the spec's or one derived
/// from the VM name and n (stable across runs, locally administered).
pub fn open(specs: &[(String, NetSpec)], vm_name: &str) -> Result<Nics, NicError> {
    let macs: Vec<MacAddr> = specs
        .iter()
        .enumerate()
        .map(|(n, (_, spec))| {
            spec.mac
                .unwrap_or_else(|| MacAddr::derive(vm_name.as_bytes(), n as u32))
        })
        .collect();
    open_with_macs(specs, &macs)
}

/// Open the backends for a VM whose NICs already have addresses (a
/// restored snapshot): one `--net` per NIC, any `mac=` must agree.
pub fn open_for(specs: &[(String, NetSpec)], macs: &[[u8; 6]]) -> Result<Nics, NicError> {
    if specs.len() != macs.len() {
        return Err(NicError::Count {
            vm: macs.len(),
            given: specs.len(),
        });
    }
    let mut addrs = Vec::with_capacity(macs.len());
    for (nic, ((text, spec), &octets)) in specs.iter().zip(macs).enumerate() {
        let mac = MacAddr::new(octets).map_err(|source| NicError::BadMac { nic, source })?;
        if spec.mac.is_some_and(|m| m != mac) {
            return Err(NicError::MacMismatch {
                spec: text.clone(),
                nic,
                mac,
            });
        }
        addrs.push(mac);
    }
    open_with_macs(specs, &addrs)
}

fn open_with_macs(specs: &[(String, NetSpec)], macs: &[MacAddr]) -> Result<Nics, NicError> {
    let mut nics = Nics {
        specs: Vec::new(),
        macs: Vec::new(),
        tx: Vec::new(),
        rx: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        dropped: Arc::default(),
    };
    let mut access = None;
    for ((text, spec), &mac) in specs.iter().zip(macs) {
        if matches!(spec.backend, net::Backend::Network { .. }) && access.is_none() {
            access = Some(crate::netcmd::access().map_err(|source| NicError::Home {
                spec: text.clone(),
                source,
            })?);
        }
        let (tx, rx) = net::open(spec, mac, access.as_ref()).map_err(|source| NicError::Open {
            spec: text.clone(),
            source,
        })?;
        nics.specs.push(VirtioSpec::Net { mac: mac.octets() });
        nics.macs.push(mac);
        nics.tx.push(tx);
        nics.rx.push(rx);
    }
    Ok(nics)
}

impl Nics {
    /// Drop every frame waiting in the backends (an FT backup's NICs
    /// collect frames meant for the primary's until it goes live).
    pub fn discard_pending(&mut self) {
        let mut buf = vec![0u8; net::MAX_FRAME_LEN];
        for rx in &mut self.rx {
            while let Ok(Some(_)) = rx.recv(&mut buf, std::time::Duration::ZERO) {}
        }
    }

    /// Start one reader thread per NIC, sending what it receives to the
    /// runner; they stop when the returned guard is dropped or the runner
    /// has gone.
    pub fn start_receivers(&mut self, events: &Sender<HostEvent>) -> StopReceivers {
        for (nic, mut rx) in self.rx.drain(..).enumerate() {
            let events = events.clone();
            let stop = Arc::clone(&self.stop);
            let dropped = Arc::clone(&self.dropped);
            let pool = CreditPool::new(MAX_QUEUED_BYTES);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; net::MAX_FRAME_LEN];
                while !stop.load(Ordering::Relaxed) {
                    match rx.recv(&mut buf, RX_POLL) {
                        Ok(Some(n)) => {
                            let Some(credit) = pool.take(n) else {
                                if dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprint!("\r\nlockstep: NIC {nic}: the VM is not taking frames fast enough; dropping (counted)\r\n");
                                }
                                continue;
                            };
                            let frame = buf[..n].to_vec();
                            let event = HostEvent::Net { nic, frame, credit };
                            if events.send(event).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            eprintln!("lockstep: NIC {nic}: receiving stopped: {e}");
                            return;
                        }
                    }
                }
            });
        }
        StopReceivers(Arc::clone(&self.stop))
    }

    /// Frames dropped so far because the runner had too many waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Stops the NICs' reader threads when dropped.
pub struct StopReceivers(Arc<AtomicBool>);

impl Drop for StopReceivers {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A flood of frames while the runner takes none (it is busy) stays
    /// within the bound: the rest are dropped and counted; once the runner
    /// takes what waits, frames flow again.
    #[test]
    fn a_flood_while_the_runner_is_busy_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("socket={}", dir.path().display());
        let specs = vec![(spec.clone(), spec.parse::<NetSpec>().unwrap())];
        let mut vm = open(&specs, "flooded").unwrap();
        let (events, taken) = mpsc::channel();
        let _receivers = vm.start_receivers(&events);
        let mut flooder = open(&specs, "flooder").unwrap();
        let mut frame = vec![0xffu8; 1514];
        frame[6..12].copy_from_slice(&flooder.macs[0].octets());
        // Broadcasts until the bound drops some: at least 16 MiB, four
        // times the bound (the segment itself drops frames its receiver
        // has no room for yet, so on a busy host more may be needed),
        // and at most 1 GiB.
        let settle = std::time::Instant::now();
        let mut sent = 0usize;
        while vm.dropped() == 0 && sent < 1 << 30 && settle.elapsed() < Duration::from_secs(60) {
            for _ in 0..(4 << 20) / frame.len() {
                flooder.tx[0].send(&frame).unwrap();
                sent += frame.len();
            }
            if sent >= 16 << 20 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let waiting: Vec<HostEvent> = taken.try_iter().collect();
        let bytes: usize = waiting
            .iter()
            .map(|e| match e {
                HostEvent::Net { frame, .. } => frame.len(),
                _ => 0,
            })
            .sum();
        assert!(bytes <= MAX_QUEUED_BYTES, "{bytes} bytes queued");
        assert!(bytes > MAX_QUEUED_BYTES / 2, "only {bytes} bytes queued");
        assert!(vm.dropped() > 0, "nothing dropped");
        // The runner took them: their credits are back, frames flow again.
        drop(waiting);
        let before = vm.dropped();
        flooder.tx[0].send(&frame).unwrap();
        let event = taken.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(event, HostEvent::Net { .. }));
        assert_eq!(vm.dropped(), before);
    }
}
