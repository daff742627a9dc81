//! The machine's only ways in and out (DESIGN §3.3, §3.6).
//!
//! Inputs are applied by the host between slices, at an instruction
//! boundary; outputs leave through one [`Output`] sink stamped with the
//! machine icount at which the guest produced them.

/// Something the guest sent out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputEvent<'a> {
    /// Bytes written to the console UART.
    Console(&'a [u8]),
    /// An Ethernet frame transmitted by NIC `nic`.
    Net { nic: usize, frame: &'a [u8] },
}

/// Where outputs go. What the sink does with them is the run mode's
/// business: print them, hold them (FT primary), compare or drop them.
pub trait Output: Send {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullOutput;

impl Output for NullOutput {
    fn emit(&mut self, _icount: u64, _event: OutputEvent<'_>) {}
}

/// A sink that keeps everything in memory (tests, replay comparison).
#[derive(Debug, Default, Clone)]
pub struct CaptureOutput {
    pub console: Vec<u8>,
    /// The icount of every byte in `console`.
    pub stamps: Vec<u64>,
    /// Transmitted frames: (icount, nic, frame).
    pub frames: Vec<(u64, usize, Vec<u8>)>,
}

impl Output for CaptureOutput {
    fn emit(&mut self, icount: u64, event: OutputEvent<'_>) {
        match event {
            OutputEvent::Console(bytes) => {
                self.console.extend_from_slice(bytes);
                self.stamps.extend(std::iter::repeat_n(icount, bytes.len()));
            }
            OutputEvent::Net { nic, frame } => self.frames.push((icount, nic, frame.to_vec())),
        }
    }
}

/// A value from outside the machine, applied at a slice boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes typed on the console. Only [`crate::Machine::console_room`]
    /// bytes fit at a time; the rest are lost as a UART overrun.
    Console(Vec<u8>),
    /// An Ethernet frame received by NIC `nic`. Apply it only when
    /// [`crate::Machine::net_rx_ready`] says the guest has a buffer posted;
    /// otherwise it is dropped, as on a real link.
    Net { nic: usize, frame: Vec<u8> },
    /// Guest time jumps forward by this many `mtime` ticks (idle skip or
    /// catch-up, decided by the host).
    ClockWarp(u64),
    /// A new VM generation id (clone, revert, restore).
    VmGenId([u8; 16]),
}
