//! Network frames: what guests, TAPs and VXLAN peers send a switch.

use crate::Cursor;
use net::network::{Mode, NetworkConfig};
use net::switch::gateway::Gateway;
use net::switch::table::{well_formed, Table};
use net::switch::vxlan::{complete_partial_checksum, decapsulate, encapsulate};
use std::time::{Duration, Instant};

/// Frames (length-prefixed in the input) through a switch's MAC table, an
/// `internal` network's gateway (ARP, ICMP echo, DHCP: no NAT, so that no
/// input opens a host socket), VXLAN decapsulation and checksum
/// completion. Everything the gateway answers is a well-formed frame; an
/// encapsulated frame decapsulates to itself.
pub fn net_frames(data: &[u8]) {
    let config = NetworkConfig::new("fuzz", Mode::Internal, "10.0.0.0/24".parse().ok());
    let Ok(poll) = mio::Poll::new() else { return };
    let start = Instant::now();
    let Ok(Some(mut gateway)) = Gateway::new(&config, [2, 0, 0, 0, 0, 2], poll.registry(), start)
    else {
        panic!("an internal network with DHCP has a gateway");
    };
    let mut table = Table::default();
    let mut c = Cursor(data);
    let mut step = 0u64;
    while !c.is_empty() {
        let port = usize::from(c.u8() % 4);
        let len = usize::from(c.u8()) * 8;
        let frame = c.bytes(len).to_vec();
        let now = start + Duration::from_secs(step * 7);
        step += 1;
        if well_formed(&frame) {
            let _ = table.forward(port, &frame, now);
            let wrapped = encapsulate(4242, &frame);
            assert_eq!(decapsulate(4242, &wrapped), Some(&frame[..]));
        }
        let _ = decapsulate(4242, &frame);
        let mut copy = frame.clone();
        complete_partial_checksum(&mut copy);
        assert_eq!(copy.len(), frame.len());
        gateway.handle(&frame, poll.registry(), now);
        for answer in gateway.take_output() {
            assert!(well_formed(&answer), "the gateway sent a malformed frame");
        }
    }
}
