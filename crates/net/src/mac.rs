//! Ethernet MAC addresses of guest NICs.

use std::fmt;
use std::str::FromStr;

/// Why a string or byte array is not a usable NIC MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    /// Not six two-digit hex groups joined by one kind of separator.
    #[error("bad MAC address '{0}': expected six hex pairs like 52:54:00:12:34:56")]
    Syntax(String),
    /// The group bit (bit 0 of the first octet) is set.
    #[error("bad MAC address '{0}': multicast/broadcast addresses cannot be a NIC's address")]
    Multicast(String),
    /// 00:00:00:00:00:00.
    #[error("bad MAC address '{0}': the all-zero address cannot be a NIC's address")]
    Zero(String),
}

/// A unicast, non-zero Ethernet address, usable as a NIC's own address.
///
/// The invariant is enforced by every constructor, so a `MacAddr` can be
/// put into a virtio-net config space as is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Checks that `octets` is a unicast, non-zero address.
    pub fn new(octets: [u8; 6]) -> Result<MacAddr, MacParseError> {
        let mac = MacAddr(octets);
        if octets[0] & 0x01 != 0 {
            return Err(MacParseError::Multicast(mac.to_string()));
        }
        if octets == [0; 6] {
            return Err(MacParseError::Zero(mac.to_string()));
        }
        Ok(mac)
    }

    /// The six octets in wire order.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// A stable, locally administered unicast address for NIC number `nic`
    /// of the VM identified by `seed` (e.g. its name or bundle path).
    ///
    /// The same inputs always give the same address, so a VM keeps its MAC
    /// (and its DHCP lease) across restarts without storing it.
    pub fn derive(seed: &[u8], nic: u32) -> MacAddr {
        let mut hasher = blake3::Hasher::new_derive_key("lockstep net: NIC MAC address v1");
        // `nic` is fixed-size and last, so (seed, nic) pairs cannot collide.
        hasher.update(seed);
        hasher.update(&nic.to_le_bytes());
        let mut octets = [0u8; 6];
        octets.copy_from_slice(&hasher.finalize().as_bytes()[..6]);
        // Locally administered (bit 1 set), unicast (bit 0 clear); the
        // locally administered bit also makes the address non-zero.
        octets[0] = (octets[0] | 0x02) & !0x01;
        MacAddr(octets)
    }
}

impl TryFrom<[u8; 6]> for MacAddr {
    type Error = MacParseError;

    fn try_from(octets: [u8; 6]) -> Result<MacAddr, MacParseError> {
        MacAddr::new(octets)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses `52:54:00:12:34:56` or `52-54-00-12-34-56` (any hex case).
    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let syntax = || MacParseError::Syntax(s.to_string());
        let separator = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut groups = s.split(separator);
        for octet in &mut octets {
            let group = groups.next().ok_or_else(syntax)?;
            if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(syntax());
            }
            *octet = u8::from_str_radix(group, 16).map_err(|_| syntax())?;
        }
        if groups.next().is_some() {
            return Err(syntax());
        }
        MacAddr::new(octets).map_err(|err| match err {
            MacParseError::Multicast(_) => MacParseError::Multicast(s.to_string()),
            MacParseError::Zero(_) => MacParseError::Zero(s.to_string()),
            MacParseError::Syntax(_) => syntax(),
        })
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<MacAddr, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Result<MacAddr, MacParseError> {
        s.parse()
    }

    #[test]
    fn parses_colon_and_dash_forms() {
        let expected = [0x52, 0x54, 0x00, 0x12, 0x34, 0xab];
        assert_eq!(mac("52:54:00:12:34:ab").unwrap().octets(), expected);
        assert_eq!(mac("52-54-00-12-34-AB").unwrap().octets(), expected);
    }

    #[test]
    fn displays_lowercase_colon_form() {
        assert_eq!(
            mac("52-54-00-AB-CD-EF").unwrap().to_string(),
            "52:54:00:ab:cd:ef"
        );
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00-12:34:56",
            "52:54:00:12:34:5",
            "52:54:00:12:34:567",
            "52:54:00:12:34:zz",
            "52:54:00:12:34:+5",
            "525400123456",
            " 52:54:00:12:34:56",
        ] {
            assert_eq!(mac(bad), Err(MacParseError::Syntax(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn rejects_multicast_broadcast_and_zero() {
        let err = mac("01:00:5e:00:00:01").unwrap_err();
        assert_eq!(err, MacParseError::Multicast("01:00:5e:00:00:01".into()));
        assert!(err.to_string().contains("multicast"), "{err}");
        assert!(matches!(
            mac("ff:ff:ff:ff:ff:ff"),
            Err(MacParseError::Multicast(_))
        ));
        assert!(matches!(
            mac("00:00:00:00:00:00"),
            Err(MacParseError::Zero(_))
        ));
        assert!(matches!(
            MacAddr::try_from([0x33, 0, 0, 0, 0, 1]),
            Err(MacParseError::Multicast(_))
        ));
    }

    #[test]
    fn derive_is_stable_local_unicast_and_input_sensitive() {
        let a = MacAddr::derive(b"vm-a", 0);
        assert_eq!(a, MacAddr::derive(b"vm-a", 0));
        let others = [
            MacAddr::derive(b"vm-a", 1),
            MacAddr::derive(b"vm-b", 0),
            MacAddr::derive(b"", 0),
        ];
        for other in others {
            assert_ne!(a, other);
        }
        for nic in 0..256 {
            let first = MacAddr::derive(b"seed", nic).octets()[0];
            assert_eq!(first & 0x03, 0x02, "nic {nic}: first octet {first:#04x}");
        }
    }

    #[test]
    fn derive_matches_blake3_derive_key() {
        // Pins the derivation: changing it would change every VM's MAC.
        let mut input = b"vm-a".to_vec();
        input.extend_from_slice(&7u32.to_le_bytes());
        let key = blake3::derive_key("lockstep net: NIC MAC address v1", &input);
        let mut expected = [0u8; 6];
        expected.copy_from_slice(&key[..6]);
        expected[0] = (expected[0] | 0x02) & !0x01;
        assert_eq!(MacAddr::derive(b"vm-a", 7).octets(), expected);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let m = mac("52:54:00:12:34:56").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"52:54:00:12:34:56\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), m);
        let err = serde_json::from_str::<MacAddr>("\"ff:ff:ff:ff:ff:ff\"").unwrap_err();
        assert!(err.to_string().contains("multicast"), "{err}");
    }
}
