//! A real switch (`switch::serve` on a thread) fed malformed frames from a
//! VM port and from a VXLAN peer on loopback: each is dropped and counted,
//! and the switch carries on forwarding good frames.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::network::{Mode, NetworkConfig, Networks, Vxlan};
use net::switch::{self, ServeOptions};
use net::{FrameRx, FrameTx, MacAddr, NetworkAccess};

/// xorshift64*, for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn counters(status: &switch::SwitchStatus, kind: &str) -> net::switch::table::Counters {
    status
        .ports
        .iter()
        .find(|p| p.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} port in {status:?}"))
        .counters
}

#[test]
fn malformed_frames_from_ports_and_vxlan_peers_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let networks = Networks::at(dir.path().join("networks"));
    let vxlan_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    networks
        .create(&NetworkConfig {
            mtu: 1450,
            vxlan: Some(Vxlan {
                vni: 99,
                local: "127.0.0.1".parse().unwrap(),
                remotes: vec!["127.0.0.2".parse().unwrap()],
                port: vxlan_port,
            }),
            ..NetworkConfig::new("t", Mode::Internal, "10.60.0.0/24".parse().ok())
        })
        .unwrap();
    let served = networks.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        switch::serve(&served, "t", ServeOptions::default(), move || {
            ready_tx.send(()).unwrap();
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the switch started");
    let access = NetworkAccess {
        networks: networks.clone(),
        launch: Arc::new(|_: &str| Err(std::io::Error::other("the switch runs already"))),
    };
    let mac = |n: u8| MacAddr::new([2, 0, 0, 0, 0, n]).unwrap();
    let (mut a_tx, _a_rx) = net::port::open(&access, "t", mac(1)).unwrap();
    let (_b_tx, mut b_rx) = net::port::open(&access, "t", mac(2)).unwrap();

    let mut rng = Rng(0x5eed);
    // From a VM port: runts, multicast sources.
    let mut bad_from_port = 0;
    for i in 0..200 {
        let n = (rng.next() % 14) as usize;
        let mut frame = rng.bytes(n);
        if i % 2 == 0 {
            frame = rng.bytes(60);
            frame[6] |= 1;
        }
        a_tx.send(&frame).unwrap();
        // (An empty frame is not sent at all.)
        if !frame.is_empty() {
            bad_from_port += 1;
        }
    }
    // From a VXLAN peer: garbage, no I flag, another VNI, a runt inside.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", vxlan_port);
    let mut bad_from_vxlan = 0;
    for i in 0..200u32 {
        let datagram = match i % 4 {
            0 => {
                let n = (rng.next() % 100) as usize;
                rng.bytes(n)
            }
            1 => {
                let mut d = vec![0u8; 8];
                d.extend(rng.bytes(60));
                d
            }
            2 => {
                let mut d = vec![0x08, 0, 0, 0, 0, 0, 98, 0];
                d.extend(rng.bytes(60));
                d
            }
            _ => vec![0x08, 0, 0, 0, 0, 0, 99, 0, 1, 2, 3],
        };
        peer.send_to(&datagram, target).unwrap();
        bad_from_vxlan += 1;
    }

    // A good broadcast from a still reaches b, through all that.
    let mut good = vec![0xff; 6];
    good.extend_from_slice(&mac(1).octets());
    good.extend_from_slice(&[0x88, 0xb5]);
    good.extend_from_slice(b"still switching");
    good.resize(60, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; net::MAX_FRAME_LEN];
    'wait: loop {
        a_tx.send(&good).unwrap();
        while let Some(len) = b_rx.recv(&mut buf, Duration::from_millis(200)).unwrap() {
            if buf[..len] == good[..] {
                break 'wait;
            }
        }
        assert!(Instant::now() < deadline, "the good frame never arrived");
    }
    let status = switch::status(&networks, "t").unwrap();
    let vm = status
        .ports
        .iter()
        .filter(|p| p.kind == "vm")
        .map(|p| p.counters.rx_malformed)
        .sum::<u64>();
    assert_eq!(vm, bad_from_port, "{status:?}");
    assert_eq!(
        counters(&status, "vxlan").rx_malformed,
        bad_from_vxlan,
        "{status:?}"
    );

    switch::stop(&networks, "t").unwrap();
    server.join().unwrap().unwrap();
}
