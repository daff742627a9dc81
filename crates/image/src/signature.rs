//! OpenPGP verification of a Release file's clearsignature against Debian's archive keys.
//!
//! The keys are compiled in (public data, copied from Debian's `debian-archive-keyring`), so
//! verification never depends on the host's keyring. trixie's `InRelease` is signed by the
//! bookworm and trixie automatic signing keys (RSA subkeys) and the trixie stable release key
//! (Ed25519); bookworm's by the bookworm keys.

use crate::ImageError;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::Signature;
use pgp::types::KeyDetails;

/// Armored keys embedded in the binary.
const DEBIAN_ARCHIVE_KEYS: [(&str, &str); 4] = [
    (
        "Debian Archive Automatic Signing Key (12/bookworm)",
        include_str!("../keys/debian-archive-bookworm-automatic.asc"),
    ),
    (
        "Debian Stable Release Key (12/bookworm)",
        include_str!("../keys/debian-archive-bookworm-stable.asc"),
    ),
    (
        "Debian Archive Automatic Signing Key (13/trixie)",
        include_str!("../keys/debian-archive-trixie-automatic.asc"),
    ),
    (
        "Debian Stable Release Key (13/trixie)",
        include_str!("../keys/debian-archive-trixie-stable.asc"),
    ),
];

/// One key (primary or subkey) that may have made a signature, with a name for messages.
struct Verifier {
    name: String,
    key: VerifyingKey,
}

enum VerifyingKey {
    Primary(SignedPublicKey),
    Sub(SignedPublicSubKey),
}

impl VerifyingKey {
    fn key_id(&self) -> pgp::types::KeyId {
        match self {
            VerifyingKey::Primary(k) => k.key_id(),
            VerifyingKey::Sub(k) => k.key_id(),
        }
    }

    fn fingerprint(&self) -> pgp::types::Fingerprint {
        match self {
            VerifyingKey::Primary(k) => k.fingerprint(),
            VerifyingKey::Sub(k) => k.fingerprint(),
        }
    }

    fn verify(&self, sig: &Signature, data: &[u8]) -> pgp::errors::Result<()> {
        match self {
            VerifyingKey::Primary(k) => sig.verify(k, data),
            VerifyingKey::Sub(k) => sig.verify(k, data),
        }
    }
}

/// A set of trusted keys.
pub struct Keyring {
    verifiers: Vec<Verifier>,
}

impl Keyring {
    /// Debian's archive keys as embedded in this binary.
    pub fn debian() -> Result<Self, ImageError> {
        Self::from_armored(&DEBIAN_ARCHIVE_KEYS)
    }

    /// Parses armored public keys; each key's self-signatures and subkey bindings must verify,
    /// so only subkeys really bound to a trusted primary are accepted.
    pub fn from_armored(keys: &[(&str, &str)]) -> Result<Self, ImageError> {
        let mut verifiers = Vec::new();
        for (name, armored) in keys {
            let bad = |e: pgp::errors::Error| ImageError::malformed(format!("key {name}"), e);
            let (key, _) = SignedPublicKey::from_string(armored).map_err(bad)?;
            key.verify().map_err(bad)?;
            // Only subkeys whose (verified) binding grants the signing capability.
            let signing_subkeys = key
                .public_subkeys
                .iter()
                .filter(|sub| sub.signatures.iter().any(|s| s.key_flags().sign()));
            for sub in signing_subkeys {
                verifiers.push(Verifier {
                    name: format!("{name} subkey {}", sub.key.key_id()),
                    key: VerifyingKey::Sub(sub.clone()),
                });
            }
            verifiers.push(Verifier {
                name: name.to_string(),
                key: VerifyingKey::Primary(key),
            });
        }
        Ok(Keyring { verifiers })
    }

    /// Keys whose id or fingerprint the signature names as its issuer.
    fn candidates<'a>(&'a self, sig: &'a Signature) -> impl Iterator<Item = &'a Verifier> + 'a {
        self.verifiers.iter().filter(move |v| {
            sig.issuer().iter().any(|id| **id == v.key.key_id())
                || sig
                    .issuer_fingerprint()
                    .iter()
                    .any(|fp| **fp == v.key.fingerprint())
        })
    }
}

/// Verifies a clearsigned document (`InRelease`) and returns the signed text, with LF line ends.
///
/// Accepts when at least one signature is from a trusted key and verifies; any signature from a
/// trusted key that does not verify is an error (as with apt). Signatures from unknown keys are
/// ignored. Only the returned text may be trusted, never the raw file.
pub fn verify_clearsigned(document: &[u8], keyring: &Keyring) -> Result<String, ImageError> {
    let text = std::str::from_utf8(document)
        .map_err(|e| ImageError::Signature(format!("InRelease is not UTF-8: {e}")))?;
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|e| {
        ImageError::Signature(format!("InRelease is not a clearsigned document: {e}"))
    })?;
    let signed = msg.signed_text();
    let mut good = 0;
    for sig in msg.signatures() {
        for candidate in keyring.candidates(sig) {
            candidate.key.verify(sig, signed.as_bytes()).map_err(|e| {
                ImageError::Signature(format!("bad signature by {}: {e}", candidate.name))
            })?;
            good += 1;
        }
    }
    if good == 0 {
        return Err(ImageError::Signature(
            "no signature by a trusted Debian archive key".into(),
        ));
    }
    Ok(signed.replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIXIE_IN_RELEASE: &[u8] = include_bytes!("../testdata/trixie-InRelease");

    #[test]
    fn real_trixie_in_release_verifies() {
        let keyring = Keyring::debian().unwrap();
        let text = verify_clearsigned(TRIXIE_IN_RELEASE, &keyring).unwrap();
        assert!(text.starts_with("Origin: Debian\n"), "{}", &text[..40]);
        assert!(text.contains("\nCodename: trixie\n"));
        assert!(!text.contains("BEGIN PGP SIGNATURE"));
    }

    #[test]
    fn one_modified_byte_in_the_text_is_rejected() {
        let keyring = Keyring::debian().unwrap();
        let mut doc = TRIXIE_IN_RELEASE.to_vec();
        // Change a digit of the first SHA256 checksum in the signed body.
        let at = find(&doc, b"SHA256:\n ").unwrap() + 9;
        doc[at] = if doc[at] == b'0' { b'1' } else { b'0' };
        let err = verify_clearsigned(&doc, &keyring).unwrap_err();
        assert!(matches!(err, ImageError::Signature(_)), "{err}");
        assert!(err.to_string().contains("bad signature"), "{err}");
    }

    #[test]
    fn one_modified_byte_in_a_signature_is_rejected() {
        let keyring = Keyring::debian().unwrap();
        let mut doc = TRIXIE_IN_RELEASE.to_vec();
        // Flip a base64 character well inside the first signature's MPI.
        let at = find(&doc, b"-----BEGIN PGP SIGNATURE-----\n\n").unwrap() + 300;
        doc[at] = if doc[at] == b'A' { b'B' } else { b'A' };
        assert!(verify_clearsigned(&doc, &keyring).is_err());
    }

    #[test]
    fn unknown_signer_only_is_rejected() {
        // Only the bookworm stable key: it made none of trixie's signatures.
        let keyring = Keyring::from_armored(&DEBIAN_ARCHIVE_KEYS[1..2]).unwrap();
        let err = verify_clearsigned(TRIXIE_IN_RELEASE, &keyring).unwrap_err();
        assert!(
            err.to_string().contains("no signature by a trusted"),
            "{err}"
        );
    }

    #[test]
    fn each_trixie_signer_alone_suffices() {
        for key in [0, 2, 3] {
            let keyring = Keyring::from_armored(&DEBIAN_ARCHIVE_KEYS[key..key + 1]).unwrap();
            verify_clearsigned(TRIXIE_IN_RELEASE, &keyring)
                .unwrap_or_else(|e| panic!("{}: {e}", DEBIAN_ARCHIVE_KEYS[key].0));
        }
    }

    #[test]
    fn unsigned_text_is_rejected() {
        let keyring = Keyring::debian().unwrap();
        assert!(verify_clearsigned(b"Origin: Debian\nSuite: stable\n", &keyring).is_err());
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }
}
