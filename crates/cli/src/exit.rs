//! The process's exit codes, one table for every command (README "Exit
//! codes", and the end of `lockstep --help`).

use std::process::ExitCode;

/// How a `lockstep` process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what it was asked; a guest powered off normally.
    Success = 0,
    /// The guest reported a failure: a nonzero code through the SiFive
    /// test device (printed, not passed through), or a failed bare-metal
    /// test.
    GuestFailure = 1,
    /// The command line is wrong (clap's own errors exit 2 too).
    Usage = 2,
    /// An error on the host: a file, an image, a disk, the network.
    Runtime = 3,
    /// The guest asked for a reset and `--no-reboot` was given.
    GuestReset = 4,
    /// An FT side lost the arbiter to its peer and halted: the VM runs on
    /// elsewhere.
    Fenced = 5,
    /// A replay diverged from its recording.
    Diverged = 6,
    /// The host stopped the VM: a signal, `vm stop`, `vm suspend`, the
    /// terminal's quit key.
    Stopped = 7,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// The table, as `--help` prints it after the commands.
pub const TABLE: &str = "\
Exit codes:
  0  success; the guest powered off normally
  1  the guest reported a failure (its code is printed)
  2  usage error: the command line is wrong
  3  runtime error on the host (file, image, disk, network)
  4  the guest reset and --no-reboot was given
  5  fenced: an FT side lost the arbiter and halted
  6  a replay diverged from its recording
  7  stopped by the host (signal, vm stop, vm suspend, Ctrl-A x)";

/// An error that ends the process with a code other than
/// [`Exit::Runtime`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    pub exit: Exit,
    pub message: String,
}

/// A command line that is wrong in a way clap could not see.
pub fn usage(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Coded {
        exit: Exit::Usage,
        message: message.into(),
    })
}

/// An FT side that lost the arbiter.
pub fn fenced(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Coded {
        exit: Exit::Fenced,
        message: message.into(),
    })
}

/// The exit for an error that reached `main`.
pub fn for_error(err: &(dyn std::error::Error + 'static)) -> Exit {
    if let Some(coded) = err.downcast_ref::<Coded>() {
        return coded.exit;
    }
    if let Some(::ft::FtError::LostArbiter(_)) = err.downcast_ref::<::ft::FtError>() {
        return Exit::Fenced;
    }
    // Typed errors that say the command line is wrong, whatever the host
    // holds.
    let usage = matches!(
        err.downcast_ref::<vmm::VmmError>(),
        Some(vmm::VmmError::BadName { .. } | vmm::VmmError::OutOfRange { .. })
    ) || matches!(
        err.downcast_ref::<crate::run::RunError>(),
        Some(crate::run::RunError::TooManyDevices { .. })
    ) || matches!(
        err.downcast_ref::<net::NetworkError>(),
        Some(
            net::NetworkError::BadName { .. }
                | net::NetworkError::BadSubnet { .. }
                | net::NetworkError::BadForward { .. }
                | net::NetworkError::Invalid { .. }
        )
    );
    // The API refused the request as malformed, or its address is.
    let usage = usage
        || matches!(
            err.downcast_ref::<api::client::ClientError>(),
            Some(
                api::client::ClientError::BadUrl { .. }
                    | api::client::ClientError::Api { status: 400, .. }
            )
        );
    if usage {
        Exit::Usage
    } else {
        Exit::Runtime
    }
}

/// The exit for a guest's poweroff: 0 stays 0; any other code is the
/// guest's failure, said in one line.
pub fn guest_poweroff(code: u32) -> ExitCode {
    if code == 0 {
        return Exit::Success.into();
    }
    eprintln!("lockstep: the guest reported failure code {code}");
    Exit::GuestFailure.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_code_once_in_order() {
        let all = [
            Exit::Success,
            Exit::GuestFailure,
            Exit::Usage,
            Exit::Runtime,
            Exit::GuestReset,
            Exit::Fenced,
            Exit::Diverged,
            Exit::Stopped,
        ];
        let rows: Vec<&str> = TABLE.lines().skip(1).collect();
        assert_eq!(rows.len(), all.len());
        for (row, exit) in rows.iter().zip(all) {
            assert!(row.starts_with(&format!("  {}  ", exit as u8)), "{row}");
        }
        assert_eq!(for_error(&*usage("x")), Exit::Usage);
        assert_eq!(for_error(&*fenced("x")), Exit::Fenced);
        let io: Box<dyn std::error::Error> = Box::new(std::io::Error::other("x"));
        assert_eq!(for_error(&*io), Exit::Runtime);
    }
}
