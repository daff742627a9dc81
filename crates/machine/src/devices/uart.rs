//! ns16550a UART with 16-byte FIFOs, interrupt-driven in both directions.
//!
//! Transmission is instantaneous: a byte written to THR leaves at once (so
//! THR is always empty again and the THR-empty interrupt re-arms right
//! after every write). Received bytes come from console input through
//! [`Uart::receive`]; the receive-data interrupt is raised whenever the FIFO
//! holds data (as if the character timeout had already expired), which needs
//! no notion of time.

use crate::state::{BoardShape, Persist, StateError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const FIFO_SIZE: usize = 16;

// Register offsets (reg-shift 0).
const RBR_THR_DLL: u64 = 0;
const IER_DLM: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MS: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_MS: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_RLS: u8 = 0x06;
const IIR_FIFO_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

/// Modem status when not in loopback: carrier, data set ready, clear to send.
const MSR_CONNECTED: u8 = 0xb0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Last FCR value (FIFO enable and trigger bits).
    fcr: u8,
    /// MSR delta bits (low nibble) not yet read.
    msr_delta: u8,
    overrun: bool,
    /// THR-empty interrupt armed: set when THR empties or the interrupt is
    /// enabled, cleared by reading IIR while it is reported, or a THR write.
    thr_ipending: bool,
    rx: VecDeque<u8>,
}

/// The UART's saved state: its registers and the receive FIFO's bytes,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UartState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub scr: u8,
    pub dll: u8,
    pub dlm: u8,
    pub fcr: u8,
    pub msr_delta: u8,
    pub overrun: bool,
    pub thr_ipending: bool,
    pub rx: Vec<u8>,
}

impl Persist for Uart {
    type State = UartState;

    fn save(&self) -> UartState {
        UartState {
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            scr: self.scr,
            dll: self.dll,
            dlm: self.dlm,
            fcr: self.fcr,
            msr_delta: self.msr_delta,
            overrun: self.overrun,
            thr_ipending: self.thr_ipending,
            rx: self.rx.iter().copied().collect(),
        }
    }

    /// The FIFO holds at most its size.
    fn restore(state: &UartState, _: &BoardShape<'_>) -> Result<Self, StateError> {
        if state.rx.len() > FIFO_SIZE {
            return Err(StateError::UartFifo {
                len: state.rx.len(),
                capacity: FIFO_SIZE,
            });
        }
        let mut rx = VecDeque::with_capacity(FIFO_SIZE);
        rx.extend(&state.rx);
        Ok(Self {
            ier: state.ier,
            lcr: state.lcr,
            mcr: state.mcr,
            scr: state.scr,
            dll: state.dll,
            dlm: state.dlm,
            fcr: state.fcr,
            msr_delta: state.msr_delta,
            overrun: state.overrun,
            thr_ipending: state.thr_ipending,
            rx,
        })
    }
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    pub fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 0,
            dlm: 0,
            fcr: 0,
            msr_delta: 0,
            overrun: false,
            thr_ipending: false,
            rx: VecDeque::with_capacity(FIFO_SIZE),
        }
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// How many received bytes fit before the receiver overruns.
    pub fn rx_space(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Bytes arriving on the line. Bytes beyond the FIFO's space are lost
    /// and flag an overrun, as on the real chip; feeders should respect
    /// [`Uart::rx_space`].
    pub fn receive(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.rx.len() < self.rx_capacity() {
                self.rx.push_back(b);
            } else {
                self.overrun = true;
            }
        }
    }

    /// The interrupt line to the PLIC.
    pub fn irq_level(&self) -> bool {
        self.interrupt_id() != IIR_NONE
    }

    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.overrun {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && !self.rx.is_empty() {
            IIR_RDA
        } else if self.ier & IER_THRE != 0 && self.thr_ipending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_delta != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// MSR status bits: in loopback they mirror MCR's outputs.
    fn msr_status(&self) -> u8 {
        if !self.loopback() {
            return MSR_CONNECTED;
        }
        let m = self.mcr;
        // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        (m & 0x01) << 5 | (m & 0x02) << 3 | (m & 0x04) << 4 | (m & 0x08) << 4
    }

    /// A guest read of the byte register at `offset`.
    pub fn read(&mut self, offset: u64) -> u8 {
        match offset {
            RBR_THR_DLL if self.dlab() => self.dll,
            RBR_THR_DLL => self.rx.pop_front().unwrap_or(0),
            IER_DLM if self.dlab() => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => self.read_iir(),
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => self.read_lsr(),
            MSR => {
                let value = self.msr_status() | self.msr_delta;
                self.msr_delta = 0;
                value
            }
            SCR => self.scr,
            _ => 0,
        }
    }

    fn read_iir(&mut self) -> u8 {
        let id = self.interrupt_id();
        if id == IIR_THRE {
            self.thr_ipending = false;
        }
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        id | fifo
    }

    fn read_lsr(&mut self) -> u8 {
        let mut lsr = LSR_THRE | LSR_TEMT;
        if !self.rx.is_empty() {
            lsr |= LSR_DR;
        }
        if std::mem::take(&mut self.overrun) {
            lsr |= LSR_OE;
        }
        lsr
    }

    /// A guest write of the byte register at `offset`; returns a byte to
    /// transmit on the console.
    pub fn write(&mut self, offset: u64, val: u8) -> Option<u8> {
        match offset {
            RBR_THR_DLL if self.dlab() => self.dll = val,
            RBR_THR_DLL => return self.transmit(val),
            IER_DLM if self.dlab() => self.dlm = val,
            IER_DLM => {
                let enabling_thre = val & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = val & 0x0f;
                if enabling_thre {
                    // THR is always empty: enabling the interrupt raises it.
                    self.thr_ipending = true;
                }
            }
            IIR_FCR => self.write_fcr(val),
            LCR => self.lcr = val,
            MCR => self.write_mcr(val),
            SCR => self.scr = val,
            _ => {} // LSR and MSR are read-only.
        }
        None
    }

    fn transmit(&mut self, byte: u8) -> Option<u8> {
        // The byte leaves at once, so THR is empty again.
        self.thr_ipending = true;
        if self.loopback() {
            self.receive(&[byte]);
            None
        } else {
            Some(byte)
        }
    }

    fn write_fcr(&mut self, val: u8) {
        if (val ^ self.fcr) & FCR_ENABLE != 0 || val & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        // Clear bits are self-clearing; TX is always empty.
        self.fcr = val & !0x06;
    }

    fn write_mcr(&mut self, val: u8) {
        let before = self.msr_status();
        self.mcr = val & 0x1f;
        let after = self.msr_status();
        let changed = before ^ after;
        // Delta bits: CTS, DSR, trailing edge of RI, DCD.
        let mut delta = (changed & 0x10) >> 4 | (changed & 0x20) >> 4 | (changed & 0x80) >> 4;
        if before & 0x40 != 0 && after & 0x40 == 0 {
            delta |= 0x04;
        }
        self.msr_delta |= delta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmits_and_reports_empty_thr() {
        let mut u = Uart::new();
        assert_eq!(u.write(RBR_THR_DLL, b'A'), Some(b'A'));
        assert_eq!(u.read(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        assert!(!u.irq_level(), "no interrupt while IER is zero");
    }

    #[test]
    fn thre_interrupt_on_enable_cleared_by_iir_read_rearmed_by_write() {
        let mut u = Uart::new();
        u.write(IER_DLM, IER_THRE);
        assert!(u.irq_level());
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_THRE);
        assert!(!u.irq_level(), "reading IIR acknowledges THRE");
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_NONE);
        u.write(RBR_THR_DLL, b'x');
        assert!(u.irq_level(), "THR empties again after a write");
        u.write(IER_DLM, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn receive_raises_data_interrupt_until_drained() {
        let mut u = Uart::new();
        u.write(IIR_FCR, FCR_ENABLE);
        u.write(IER_DLM, IER_RDA);
        assert!(!u.irq_level());
        u.receive(b"hi");
        assert!(u.irq_level());
        assert_eq!(u.read(IIR_FCR), IIR_FIFO_ENABLED | IIR_RDA);
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(u.read(RBR_THR_DLL), b'h');
        assert!(u.irq_level());
        assert_eq!(u.read(RBR_THR_DLL), b'i');
        assert!(!u.irq_level());
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        assert_eq!(u.read(RBR_THR_DLL), 0);
    }

    #[test]
    fn fifo_overrun_sets_oe_and_line_status_interrupt() {
        let mut u = Uart::new();
        u.write(IIR_FCR, FCR_ENABLE);
        assert_eq!(u.rx_space(), 16);
        u.receive(&[7; 17]);
        assert_eq!(u.rx_space(), 0);
        u.write(IER_DLM, IER_RLS | IER_RDA);
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_RLS, "line status outranks data");
        assert_eq!(u.read(LSR) & LSR_OE, LSR_OE);
        assert_eq!(u.read(LSR) & LSR_OE, 0, "OE clears on read");
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_RDA);
        u.write(IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(u.rx_space(), 16);
        assert!(!u.irq_level());
    }

    #[test]
    fn without_fifo_holds_one_byte() {
        let mut u = Uart::new();
        assert_eq!(u.rx_space(), 1);
        assert_eq!(u.read(IIR_FCR), IIR_NONE, "no FIFO bits in 16450 mode");
        u.receive(b"ab");
        assert_eq!(u.read(RBR_THR_DLL), b'a');
        assert_eq!(u.read(LSR) & LSR_OE, LSR_OE);
    }

    #[test]
    fn dlab_switches_to_divisor_latch() {
        let mut u = Uart::new();
        u.write(LCR, LCR_DLAB | 0x03);
        assert_eq!(u.write(RBR_THR_DLL, 0x0c), None, "DLL write is not output");
        u.write(IER_DLM, 0x01);
        assert_eq!(u.read(RBR_THR_DLL), 0x0c);
        assert_eq!(u.read(IER_DLM), 0x01);
        u.write(LCR, 0x03);
        assert_eq!(u.read(IER_DLM), 0, "IER untouched by DLM write");
        assert_eq!(u.read(LCR), 0x03);
    }

    #[test]
    fn scratch_and_modem_registers() {
        let mut u = Uart::new();
        u.write(SCR, 0x5a);
        assert_eq!(u.read(SCR), 0x5a);
        assert_eq!(u.read(MSR), MSR_CONNECTED);
        u.write(MCR, MCR_LOOP);
        u.write(IER_DLM, IER_MS);
        assert!(u.irq_level(), "losing CTS/DSR/DCD in loopback is a delta");
        assert_eq!(u.read(MSR), 0x0b);
        assert!(!u.irq_level());
        u.write(MCR, MCR_LOOP | 0x03);
        assert_eq!(u.read(MSR), 0x30 | 0x03);
    }

    #[test]
    fn loopback_returns_transmitted_bytes() {
        let mut u = Uart::new();
        u.write(MCR, MCR_LOOP);
        assert_eq!(u.write(RBR_THR_DLL, b'z'), None);
        assert_eq!(u.read(RBR_THR_DLL), b'z');
    }
}
