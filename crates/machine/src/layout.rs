//! The physical address map and interrupt numbers of the board (DESIGN §2).
//! They match QEMU's `virt` machine so OpenSBI's generic platform and Linux
//! find everything where they expect it.

/// Reset ROM: the first instructions every hart runs, plus boot data.
pub const ROM_BASE: u64 = 0x0000_1000;
pub const ROM_SIZE: u64 = 0x1000;

/// SiFive test device: poweroff, reboot, failure exit.
pub const TEST_BASE: u64 = 0x0010_0000;
pub const TEST_SIZE: u64 = 0x1000;

/// Goldfish real-time clock.
pub const RTC_BASE: u64 = 0x0010_1000;
pub const RTC_SIZE: u64 = 0x1000;

/// VM generation id (16 bytes, read-only to the guest).
pub const VMGENID_BASE: u64 = 0x0010_2000;
pub const VMGENID_SIZE: u64 = 0x1000;

/// Core-local interruptor: msip, mtimecmp, mtime.
pub const CLINT_BASE: u64 = 0x0200_0000;
pub const CLINT_SIZE: u64 = 0x1_0000;

/// Platform-level interrupt controller.
pub const PLIC_BASE: u64 = 0x0c00_0000;
pub const PLIC_SIZE: u64 = 0x60_0000;

/// ns16550a UART.
pub const UART_BASE: u64 = 0x1000_0000;
pub const UART_SIZE: u64 = 0x100;
/// The UART's input clock as QEMU advertises it; Linux only uses it to
/// compute divisors, which we ignore.
pub const UART_CLOCK_HZ: u32 = 3_686_400;

/// virtio-mmio transports: slot n at `VIRTIO_BASE + n × VIRTIO_SLOT_SIZE`,
/// PLIC source `VIRTIO_IRQ_BASE + n`.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_SLOT_SIZE: u64 = 0x1000;
pub const VIRTIO_SLOTS: usize = 8;
pub const VIRTIO_IRQ_BASE: u32 = 1;

/// Start of RAM; the firmware is loaded here.
pub const RAM_BASE: u64 = 0x8000_0000;
/// The kernel goes this far into RAM (Linux on RV64 wants 2 MiB alignment).
pub const KERNEL_OFFSET: u64 = 0x20_0000;

/// PLIC source numbers of the devices.
pub const UART_IRQ: u32 = 10;
pub const RTC_IRQ: u32 = 11;
pub const VMGENID_IRQ: u32 = 12;

/// Frequency of `mtime`, advertised as `timebase-frequency`.
pub const TIMEBASE_HZ: u64 = 10_000_000;

/// Most harts the board supports.
pub const MAX_HARTS: usize = 4;
