//! VM names on this host: a name for an ad-hoc run that has none, and a
//! claim that keeps two running VMs from sharing one (their NICs' MACs,
//! control sockets and FT replicas derive from it).

use std::error::Error;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// A name for a run without `--name`: `vm-` and 8 random hex digits.
pub fn unique() -> Result<String, Box<dyn Error>> {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a VM name: {e}"))?;
    Ok(format!("vm-{:08x}", u32::from_be_bytes(bytes)))
}

/// Why a name cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Directory(#[source] crate::control::ControlError),
    #[error("{0}")]
    Lock(#[source] vmm::VmmError),
    /// `holder`: ` (pid N)` when the lock file names the process, else
    /// empty.
    #[error(
        "a VM named {name:?} is already running on this host{holder}; give this one another --name"
    )]
    Held { name: String, holder: String },
    #[error("a backup of the VM {name:?} already runs on this host{holder}")]
    BackupHeld { name: String, holder: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as the VM runs: the name is this process's. (The
/// lock file stays when it ends: removing it could race with the next
/// process claiming the name.)
pub struct NameClaim {
    _file: File,
}

/// Claim `name` on this host (a lock file beside the control sockets,
/// holding this process's pid). A name another running process holds is
/// refused with that process's pid.
pub fn claim(name: &str) -> Result<NameClaim, ClaimError> {
    claim_as(name, |holder| ClaimError::Held {
        name: name.to_string(),
        holder,
    })
}

/// An FT backup's claim on the VM it receives (`NAME-backup`: its control
/// socket's name too): a second backup of one VM on this host is refused
/// with the first one's pid.
pub fn claim_backup(name: &str) -> Result<NameClaim, ClaimError> {
    claim_as(&format!("{name}-backup"), |holder| ClaimError::BackupHeld {
        name: name.to_string(),
        holder,
    })
}

/// [`claim`], saying `refusal(" (pid N)")` when the name is held.
fn claim_as(
    name: &str,
    refusal: impl FnOnce(String) -> ClaimError,
) -> Result<NameClaim, ClaimError> {
    let dir = crate::ft::default_control_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| ClaimError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
    crate::control::check_private_dir(&dir, true).map_err(ClaimError::Directory)?;
    let path = dir.join(format!("{name}.lock"));
    // The same lock a kept VM's bundle uses for its run lock.
    let Some(mut file) = vmm::try_lock(&path, true).map_err(ClaimError::Lock)? else {
        let mut pid = String::new();
        let _ = std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut pid));
        let pid = pid.trim();
        let holder = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        return Err(refusal(holder));
    };
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|source| ClaimError::Write { path, source })?;
    Ok(NameClaim { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_are_valid_and_differ() {
        let a = super::unique().unwrap();
        let b = super::unique().unwrap();
        assert_ne!(a, b);
        assert!(crate::vm::check_name(&a).is_ok(), "{a}");
        assert_eq!(a.len(), 11);
    }
}
