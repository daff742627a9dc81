//! Record kinds and their payload encoding. The tags below are the on-disk
//! ones documented in the crate root; never renumber or reuse them.

use crate::varint::{self, Cursor};

/// One log record: what happened, in which order, at which icount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Log sequence number: 0 for the first record, then consecutive.
    pub lsn: u64,
    /// Retired-instruction count at which the record applies. For `Progress`
    /// and `Output` it is the progress point and the output's stamp.
    pub icount: u64,
    pub kind: RecordKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A value from outside the machine, applied at the record's icount.
    Input(Input),
    /// No input occurs before the record's icount: a replayer may run up to
    /// it. Any record says as much for its own icount (icounts never
    /// decrease), so this is needed only when nothing else was logged.
    Progress,
    /// The machine emitted `len` bytes with this hash at the record's icount.
    Output {
        channel: OutputChannel,
        len: u64,
        hash: OutputHash,
    },
    /// A VMM-level event that is not guest input.
    Control(Control),
    /// The machine's state hash (`Machine::state_hash`) at the record's
    /// icount: a replay must reach the same state there.
    Checkpoint { state_hash: [u8; 32] },
}

/// Input events (DESIGN §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes typed on the console (UART receive).
    ConsoleInput(Vec<u8>),
    /// An Ethernet frame received by virtio-net device `nic`.
    NetFrame {
        nic: u8,
        frame: Vec<u8>,
    },
    /// Guest time jumps forward by `ticks` timebase ticks (idle skip,
    /// catch-up to host time).
    ClockWarp {
        ticks: u64,
    },
    /// Random bytes handed to the guest (e.g. virtio-rng).
    Entropy(Vec<u8>),
    HostCommand(HostCommand),
}

/// Commands from the host that the guest sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCommand {
    /// Ask the guest to shut down cleanly.
    PowerButton,
    /// Cable plugged in (`up`) or pulled out on NIC `nic`.
    LinkState {
        nic: u8,
        up: bool,
    },
    /// A device appears in `slot`; `spec` is the machine crate's own
    /// description of it.
    DeviceAttach {
        slot: u8,
        spec: Vec<u8>,
    },
    DeviceDetach {
        slot: u8,
    },
}

/// Where an output left the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputChannel {
    Console,
    Net { nic: u8 },
}

/// blake3 of an output's bytes, truncated to 128 bits: ample to tell two
/// executions apart, half the log space of the full hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputHash(pub [u8; 16]);

impl OutputHash {
    pub fn of(bytes: &[u8]) -> OutputHash {
        let full = blake3::hash(bytes);
        let mut short = [0u8; 16];
        short.copy_from_slice(&full.as_bytes()[..16]);
        OutputHash(short)
    }
}

/// VMM-level events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// The run ended here.
    PowerOff(StopReason),
    /// The VM's configuration changed; the bytes are the machine crate's own
    /// description of the change.
    ConfigChange(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    GuestPowerOff,
    GuestReset,
    HostStop,
}

pub(crate) mod tag {
    pub const CONSOLE_INPUT: u8 = 0x01;
    pub const NET_FRAME: u8 = 0x02;
    pub const CLOCK_WARP: u8 = 0x03;
    pub const ENTROPY: u8 = 0x04;
    pub const HOST_COMMAND: u8 = 0x05;
    pub const PROGRESS: u8 = 0x40;
    pub const OUTPUT: u8 = 0x41;
    pub const CHECKPOINT: u8 = 0x42;
    pub const CONTROL: u8 = 0x80;

    pub const HOST_POWER_BUTTON: u8 = 0x01;
    pub const HOST_LINK_STATE: u8 = 0x02;
    pub const HOST_DEVICE_ATTACH: u8 = 0x03;
    pub const HOST_DEVICE_DETACH: u8 = 0x04;

    pub const CHANNEL_CONSOLE: u8 = 0x00;
    pub const CHANNEL_NET: u8 = 0x01;

    pub const CONTROL_POWER_OFF: u8 = 0x01;
    pub const CONTROL_CONFIG_CHANGE: u8 = 0x02;

    pub const STOP_GUEST_POWER_OFF: u8 = 0x01;
    pub const STOP_GUEST_RESET: u8 = 0x02;
    pub const STOP_HOST: u8 = 0x03;
}

/// Why a body could not be parsed (the decoder adds offset and LSN).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    Malformed(&'static str),
    UnknownTag { what: &'static str, tag: u8 },
}

impl From<&'static str> for BodyError {
    fn from(problem: &'static str) -> Self {
        BodyError::Malformed(problem)
    }
}

impl RecordKind {
    /// The frame's kind tag.
    pub(crate) fn tag(&self) -> u8 {
        match self {
            RecordKind::Input(Input::ConsoleInput(_)) => tag::CONSOLE_INPUT,
            RecordKind::Input(Input::NetFrame { .. }) => tag::NET_FRAME,
            RecordKind::Input(Input::ClockWarp { .. }) => tag::CLOCK_WARP,
            RecordKind::Input(Input::Entropy(_)) => tag::ENTROPY,
            RecordKind::Input(Input::HostCommand(_)) => tag::HOST_COMMAND,
            RecordKind::Progress => tag::PROGRESS,
            RecordKind::Output { .. } => tag::OUTPUT,
            RecordKind::Checkpoint { .. } => tag::CHECKPOINT,
            RecordKind::Control(_) => tag::CONTROL,
        }
    }

    /// Appends the payload (everything after lsn and icount delta).
    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            RecordKind::Input(input) => encode_input(input, out),
            RecordKind::Progress => {}
            RecordKind::Output { channel, len, hash } => {
                match channel {
                    OutputChannel::Console => out.push(tag::CHANNEL_CONSOLE),
                    OutputChannel::Net { nic } => out.extend_from_slice(&[tag::CHANNEL_NET, *nic]),
                }
                varint::put(out, *len);
                out.extend_from_slice(&hash.0);
            }
            RecordKind::Control(control) => encode_control(control, out),
            RecordKind::Checkpoint { state_hash } => out.extend_from_slice(state_hash),
        }
    }

    /// Parses the payload of a frame with kind tag `tag`.
    pub(crate) fn decode_payload(tag: u8, body: &mut Cursor<'_>) -> Result<Self, BodyError> {
        let kind = match tag {
            tag::CONSOLE_INPUT => RecordKind::Input(Input::ConsoleInput(body.bytes()?)),
            tag::NET_FRAME => RecordKind::Input(Input::NetFrame {
                nic: body.u8()?,
                frame: body.bytes()?,
            }),
            tag::CLOCK_WARP => RecordKind::Input(Input::ClockWarp {
                ticks: body.varint()?,
            }),
            tag::ENTROPY => RecordKind::Input(Input::Entropy(body.bytes()?)),
            tag::HOST_COMMAND => RecordKind::Input(Input::HostCommand(decode_host_command(body)?)),
            tag::PROGRESS => RecordKind::Progress,
            tag::OUTPUT => RecordKind::Output {
                channel: decode_channel(body)?,
                len: body.varint()?,
                hash: OutputHash(body.array()?),
            },
            tag::CONTROL => RecordKind::Control(decode_control(body)?),
            tag::CHECKPOINT => RecordKind::Checkpoint {
                state_hash: body.array()?,
            },
            tag => {
                return Err(BodyError::UnknownTag {
                    what: "record kind",
                    tag,
                })
            }
        };
        Ok(kind)
    }
}

fn encode_input(input: &Input, out: &mut Vec<u8>) {
    match input {
        Input::ConsoleInput(bytes) | Input::Entropy(bytes) => varint::put_bytes(out, bytes),
        Input::NetFrame { nic, frame } => {
            out.push(*nic);
            varint::put_bytes(out, frame);
        }
        Input::ClockWarp { ticks } => varint::put(out, *ticks),
        Input::HostCommand(command) => match command {
            HostCommand::PowerButton => out.push(tag::HOST_POWER_BUTTON),
            HostCommand::LinkState { nic, up } => {
                out.extend_from_slice(&[tag::HOST_LINK_STATE, *nic, u8::from(*up)]);
            }
            HostCommand::DeviceAttach { slot, spec } => {
                out.extend_from_slice(&[tag::HOST_DEVICE_ATTACH, *slot]);
                varint::put_bytes(out, spec);
            }
            HostCommand::DeviceDetach { slot } => {
                out.extend_from_slice(&[tag::HOST_DEVICE_DETACH, *slot]);
            }
        },
    }
}

fn encode_control(control: &Control, out: &mut Vec<u8>) {
    match control {
        Control::PowerOff(reason) => {
            let reason = match reason {
                StopReason::GuestPowerOff => tag::STOP_GUEST_POWER_OFF,
                StopReason::GuestReset => tag::STOP_GUEST_RESET,
                StopReason::HostStop => tag::STOP_HOST,
            };
            out.extend_from_slice(&[tag::CONTROL_POWER_OFF, reason]);
        }
        Control::ConfigChange(bytes) => {
            out.push(tag::CONTROL_CONFIG_CHANGE);
            varint::put_bytes(out, bytes);
        }
    }
}

fn decode_host_command(body: &mut Cursor<'_>) -> Result<HostCommand, BodyError> {
    let command = match body.u8()? {
        tag::HOST_POWER_BUTTON => HostCommand::PowerButton,
        tag::HOST_LINK_STATE => HostCommand::LinkState {
            nic: body.u8()?,
            up: match body.u8()? {
                0 => false,
                1 => true,
                _ => return Err(BodyError::Malformed("link state is neither 0 nor 1")),
            },
        },
        tag::HOST_DEVICE_ATTACH => HostCommand::DeviceAttach {
            slot: body.u8()?,
            spec: body.bytes()?,
        },
        tag::HOST_DEVICE_DETACH => HostCommand::DeviceDetach { slot: body.u8()? },
        tag => {
            return Err(BodyError::UnknownTag {
                what: "host command",
                tag,
            })
        }
    };
    Ok(command)
}

fn decode_channel(body: &mut Cursor<'_>) -> Result<OutputChannel, BodyError> {
    match body.u8()? {
        tag::CHANNEL_CONSOLE => Ok(OutputChannel::Console),
        tag::CHANNEL_NET => Ok(OutputChannel::Net { nic: body.u8()? }),
        tag => Err(BodyError::UnknownTag {
            what: "output channel",
            tag,
        }),
    }
}

fn decode_control(body: &mut Cursor<'_>) -> Result<Control, BodyError> {
    match body.u8()? {
        tag::CONTROL_POWER_OFF => {
            let reason = match body.u8()? {
                tag::STOP_GUEST_POWER_OFF => StopReason::GuestPowerOff,
                tag::STOP_GUEST_RESET => StopReason::GuestReset,
                tag::STOP_HOST => StopReason::HostStop,
                tag => {
                    return Err(BodyError::UnknownTag {
                        what: "stop reason",
                        tag,
                    })
                }
            };
            Ok(Control::PowerOff(reason))
        }
        tag::CONTROL_CONFIG_CHANGE => Ok(Control::ConfigChange(body.bytes()?)),
        tag => Err(BodyError::UnknownTag {
            what: "control",
            tag,
        }),
    }
}
