//! Gratuitous ARP for a backup going live: switches relearn the VM's MAC
//! on the new host's port, and neighbours refresh the IP-to-MAC entry.
//! The address is learned from the guest's own transmitted frames.

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// ARP for IPv4 over Ethernet: htype 1, ptype 0x0800, hlen 6, plen 4.
const ARP_IPV4_ETHERNET: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 6, 4];

/// The IPv4 source address of a frame the VM sent from `mac` (an ARP
/// packet's sender or an IPv4 packet's source), if it has a usable one.
pub fn source_ip(frame: &[u8], mac: &[u8; 6]) -> Option<[u8; 4]> {
    if frame.get(6..12)? != mac {
        return None;
    }
    let at = match frame.get(12..14)? {
        t if t == ETHERTYPE_ARP && frame.get(14..20)? == ARP_IPV4_ETHERNET => 28,
        t if t == ETHERTYPE_IPV4 && frame.get(14)? >> 4 == 4 => 26,
        _ => return None,
    };
    let ip: [u8; 4] = frame.get(at..at + 4)?.try_into().ok()?;
    (ip != [0; 4] && ip[0] < 224).then_some(ip)
}

/// A gratuitous ARP request: broadcast, sender and target both `ip`.
pub fn announce(mac: &[u8; 6], ip: &[u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(mac);
    f.extend_from_slice(&ETHERTYPE_ARP);
    f.extend_from_slice(&ARP_IPV4_ETHERNET);
    f.extend_from_slice(&[0x00, 0x01]); // request
    f.extend_from_slice(mac);
    f.extend_from_slice(ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(ip);
    f.resize(60, 0); // minimum Ethernet frame without FCS
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    #[test]
    fn a_gratuitous_arp_announces_the_learned_address() {
        let garp = announce(&MAC, &[10, 0, 0, 7]);
        assert_eq!(garp.len(), 60);
        assert_eq!(&garp[..6], &[0xff; 6]);
        // Our own announcement is an ARP packet from MAC carrying the IP.
        assert_eq!(source_ip(&garp, &MAC), Some([10, 0, 0, 7]));
        assert_eq!(&garp[38..42], &[10, 0, 0, 7], "target = sender");
        assert_eq!(source_ip(&garp, &[0; 6]), None, "another MAC's frame");
    }

    #[test]
    fn ipv4_sources_are_learned_and_junk_is_not() {
        let mut ip = vec![0xff; 6];
        ip.extend_from_slice(&MAC);
        ip.extend_from_slice(&ETHERTYPE_IPV4);
        ip.push(0x45);
        ip.extend_from_slice(&[0; 11]);
        ip.extend_from_slice(&[192, 168, 1, 9, 192, 168, 1, 1]);
        assert_eq!(source_ip(&ip, &MAC), Some([192, 168, 1, 9]));
        let mut dhcp = ip.clone();
        dhcp[26..30].copy_from_slice(&[0; 4]);
        assert_eq!(source_ip(&dhcp, &MAC), None);
        assert_eq!(source_ip(&ip[..20], &MAC), None, "truncated");
        assert_eq!(source_ip(&[], &MAC), None);
    }
}
