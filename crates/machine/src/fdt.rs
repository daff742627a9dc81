//! The flattened device tree handed to OpenSBI and Linux. It lists exactly
//! the devices the board has (DESIGN §2), in QEMU `virt`'s layout.

use crate::devices::plic::NUM_SOURCES;
use crate::layout::*;
use vm_fdt::{Error as FdtError, FdtWriter};

/// What the tree describes besides the fixed devices.
#[derive(Debug, Clone)]
pub struct FdtConfig<'a> {
    pub harts: usize,
    pub ram_size: u64,
    pub bootargs: &'a str,
    /// `[start, end)` of the initrd.
    pub initrd: Option<(u64, u64)>,
    /// Populated virtio-mmio slots (0 to this, exclusive).
    pub virtio_slots: usize,
}

/// The ISA each hart implements, in both the legacy string form and the
/// per-extension list newer kernels prefer. Only what the hart really has.
pub const ISA_STRING: &str = "rv64imafdc_zicsr_zifencei_zicntr_sstc";
pub const ISA_BASE: &str = "rv64i";
pub const ISA_EXTENSIONS: &[&str] = &[
    "i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zicntr", "sstc",
];

const PLIC_PHANDLE: u32 = 0x100;
const TEST_PHANDLE: u32 = 0x101;

fn cpu_phandle(hart: usize) -> u32 {
    1 + hart as u32
}

fn intc_phandle(hart: usize) -> u32 {
    0x10 + hart as u32
}

/// Interrupt numbers on a hart's local interrupt controller (`mip` bits).
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// The device tree blob.
pub fn build(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string_list("compatible", strings(&["lockstep,virt", "riscv-virtio"]))?;
    fdt.property_string("model", "lockstep,virt")?;

    chosen(&mut fdt, cfg)?;
    memory(&mut fdt, cfg.ram_size)?;
    cpus(&mut fdt, cfg.harts)?;
    soc(&mut fdt, cfg.harts, cfg.virtio_slots)?;
    power(&mut fdt)?;

    fdt.end_node(root)?;
    fdt.finish()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn reg(fdt: &mut FdtWriter, base: u64, size: u64) -> Result<(), FdtError> {
    fdt.property_array_u64("reg", &[base, size])
}

fn chosen(fdt: &mut FdtWriter, cfg: &FdtConfig) -> Result<(), FdtError> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.bootargs)?;
    fdt.property_string("stdout-path", &format!("/soc/serial@{UART_BASE:x}"))?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(node)
}

fn memory(fdt: &mut FdtWriter, size: u64) -> Result<(), FdtError> {
    let node = fdt.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    reg(fdt, RAM_BASE, size)?;
    fdt.end_node(node)
}

fn cpus(fdt: &mut FdtWriter, harts: usize) -> Result<(), FdtError> {
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ as u32)?;
    for hart in 0..harts {
        let cpu = fdt.begin_node(&format!("cpu@{hart}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", hart as u32)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", ISA_STRING)?;
        fdt.property_string("riscv,isa-base", ISA_BASE)?;
        fdt.property_string_list("riscv,isa-extensions", strings(ISA_EXTENSIONS))?;
        fdt.property_string("mmu-type", "riscv,sv48")?;
        fdt.property_phandle(cpu_phandle(hart))?;
        let intc = fdt.begin_node("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(intc_phandle(hart))?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    for hart in 0..harts {
        let core = fdt.begin_node(&format!("core{hart}"))?;
        fdt.property_u32("cpu", cpu_phandle(hart))?;
        fdt.end_node(core)?;
    }
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;
    fdt.end_node(node)
}

/// `interrupts-extended` pairs (intc phandle, irq) for each hart.
fn per_hart_irqs(harts: usize, irqs: &[u32]) -> Vec<u32> {
    (0..harts)
        .flat_map(|h| irqs.iter().flat_map(move |&irq| [intc_phandle(h), irq]))
        .collect()
}

fn soc(fdt: &mut FdtWriter, harts: usize, virtio_slots: usize) -> Result<(), FdtError> {
    let node = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let clint = fdt.begin_node(&format!("clint@{CLINT_BASE:x}"))?;
    fdt.property_string_list("compatible", strings(&["sifive,clint0", "riscv,clint0"]))?;
    reg(fdt, CLINT_BASE, CLINT_SIZE)?;
    fdt.property_array_u32(
        "interrupts-extended",
        &per_hart_irqs(harts, &[IRQ_M_SOFT, IRQ_M_TIMER]),
    )?;
    fdt.end_node(clint)?;

    let plic = fdt.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    fdt.property_string_list("compatible", strings(&["sifive,plic-1.0.0", "riscv,plic0"]))?;
    reg(fdt, PLIC_BASE, PLIC_SIZE)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    // Context 2h is hart h's M-mode, 2h+1 its S-mode.
    fdt.property_array_u32(
        "interrupts-extended",
        &per_hart_irqs(harts, &[IRQ_M_EXT, IRQ_S_EXT]),
    )?;
    fdt.property_u32("riscv,ndev", NUM_SOURCES)?;
    fdt.property_phandle(PLIC_PHANDLE)?;
    fdt.end_node(plic)?;

    let uart = fdt.begin_node(&format!("serial@{UART_BASE:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    reg(fdt, UART_BASE, UART_SIZE)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    device_irq(fdt, UART_IRQ)?;
    fdt.end_node(uart)?;

    let test = fdt.begin_node(&format!("test@{TEST_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        strings(&["sifive,test1", "sifive,test0", "syscon"]),
    )?;
    reg(fdt, TEST_BASE, TEST_SIZE)?;
    fdt.property_phandle(TEST_PHANDLE)?;
    fdt.end_node(test)?;

    let rtc = fdt.begin_node(&format!("rtc@{RTC_BASE:x}"))?;
    fdt.property_string("compatible", "google,goldfish-rtc")?;
    reg(fdt, RTC_BASE, RTC_SIZE)?;
    device_irq(fdt, RTC_IRQ)?;
    fdt.end_node(rtc)?;

    let genid = fdt.begin_node(&format!("vmgenid@{VMGENID_BASE:x}"))?;
    fdt.property_string("compatible", "microsoft,vmgenid")?;
    reg(fdt, VMGENID_BASE, 16)?;
    device_irq(fdt, VMGENID_IRQ)?;
    fdt.end_node(genid)?;

    // In slot order: Linux probes them in this order, so vda is slot 0.
    for n in 0..virtio_slots {
        let base = VIRTIO_BASE + n as u64 * VIRTIO_SLOT_SIZE;
        let virtio = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        reg(fdt, base, VIRTIO_SLOT_SIZE)?;
        device_irq(fdt, VIRTIO_IRQ_BASE + n as u32)?;
        fdt.end_node(virtio)?;
    }

    fdt.end_node(node)
}

fn device_irq(fdt: &mut FdtWriter, irq: u32) -> Result<(), FdtError> {
    fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;
    fdt.property_u32("interrupts", irq)
}

/// Linux powers off and reboots through the test device's syscon.
fn power(fdt: &mut FdtWriter) -> Result<(), FdtError> {
    for (name, compatible, value) in [
        ("poweroff", "syscon-poweroff", 0x5555),
        ("reboot", "syscon-reboot", 0x7777),
    ] {
        let node = fdt.begin_node(name)?;
        fdt.property_string("compatible", compatible)?;
        fdt.property_u32("regmap", TEST_PHANDLE)?;
        fdt.property_u32("offset", 0)?;
        fdt.property_u32("value", value)?;
        fdt.end_node(node)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Decompile with `dtc` (the device-tree-compiler package; CI installs it).
    fn dts(blob: &[u8]) -> String {
        let mut child = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dtc must be installed (apt-get install device-tree-compiler)");
        child.stdin.take().unwrap().write_all(blob).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "dtc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn section<'a>(dts: &'a str, node: &str) -> &'a str {
        let start = dts
            .find(&format!("{node} {{"))
            .unwrap_or_else(|| panic!("node {node} missing:\n{dts}"));
        let end = dts[start..].find("};").unwrap() + start;
        &dts[start..end]
    }

    #[test]
    fn dtb_decompiles_with_every_device() {
        let blob = build(&FdtConfig {
            harts: 2,
            ram_size: 512 << 20,
            bootargs: "console=ttyS0 earlycon=sbi",
            initrd: Some((0x9f00_0000, 0x9f12_3456)),
            virtio_slots: 0,
        })
        .unwrap();
        assert!(blob.len() < crate::loader::FDT_MAX);
        let dts = dts(&blob);

        let chosen = section(&dts, "chosen");
        assert!(
            chosen.contains("bootargs = \"console=ttyS0 earlycon=sbi\";"),
            "{chosen}"
        );
        assert!(chosen.contains("stdout-path = \"/soc/serial@10000000\";"));
        assert!(
            chosen.contains("linux,initrd-start = <0x00 0x9f000000>;"),
            "{chosen}"
        );
        assert!(chosen.contains("linux,initrd-end = <0x00 0x9f123456>;"));

        let memory = section(&dts, "memory@80000000");
        assert!(
            memory.contains("reg = <0x00 0x80000000 0x00 0x20000000>;"),
            "{memory}"
        );
        assert!(dts.contains("timebase-frequency = <0x989680>;"));

        for hart in 0..2 {
            let cpu = section(&dts, &format!("cpu@{hart}"));
            assert!(cpu.contains(&format!("reg = <0x{hart:02x}>;")), "{cpu}");
            assert!(cpu.contains("riscv,isa-base = \"rv64i\";"));
            assert!(cpu.contains("mmu-type = \"riscv,sv48\";"));
            assert!(cpu.contains("riscv,cpu-intc"));
        }
        assert!(!dts.contains("cpu@2"));
        assert!(dts.contains(
            "riscv,isa-extensions = \"i\\0m\\0a\\0f\\0d\\0c\\0zicsr\\0zifencei\\0zicntr\\0sstc\";"
        ));

        let clint = section(&dts, "clint@2000000");
        assert!(clint.contains("reg = <0x00 0x2000000 0x00 0x10000>;"));
        assert!(
            clint.contains("interrupts-extended = <0x10 0x03 0x10 0x07 0x11 0x03 0x11 0x07>;"),
            "{clint}"
        );
        let plic = section(&dts, "plic@c000000");
        assert!(
            plic.contains("interrupts-extended = <0x10 0x0b 0x10 0x09 0x11 0x0b 0x11 0x09>;"),
            "{plic}"
        );
        assert!(plic.contains("riscv,ndev = <0x60>;"));
        let uart = section(&dts, "serial@10000000");
        assert!(
            uart.contains("compatible = \"ns16550a\";") && uart.contains("interrupts = <0x0a>;")
        );
        let rtc = section(&dts, "rtc@101000");
        assert!(rtc.contains("google,goldfish-rtc") && rtc.contains("interrupts = <0x0b>;"));
        let test = section(&dts, "test@100000");
        assert!(test.contains("compatible = \"sifive,test1\\0sifive,test0\\0syscon\";"));
        let genid = section(&dts, "vmgenid@102000");
        assert!(
            genid.contains("microsoft,vmgenid")
                && genid.contains("reg = <0x00 0x102000 0x00 0x10>;")
        );
        let poweroff = section(&dts, "poweroff");
        assert!(poweroff.contains("syscon-poweroff") && poweroff.contains("value = <0x5555>;"));
        assert!(section(&dts, "reboot").contains("value = <0x7777>;"));
        assert!(
            !dts.contains("virtio,mmio"),
            "no device that does not exist"
        );
    }

    #[test]
    fn no_initrd_no_initrd_properties() {
        let blob = build(&FdtConfig {
            harts: 1,
            ram_size: 1 << 30,
            bootargs: "",
            initrd: None,
            virtio_slots: 0,
        })
        .unwrap();
        let dts = dts(&blob);
        assert!(!dts.contains("linux,initrd"));
        assert!(dts.contains("cpu@0") && !dts.contains("cpu@1"));
    }

    #[test]
    fn virtio_slots_are_listed_in_order() {
        let blob = build(&FdtConfig {
            harts: 1,
            ram_size: 1 << 30,
            bootargs: "",
            initrd: None,
            virtio_slots: 3,
        })
        .unwrap();
        let dts = dts(&blob);
        let mut last = 0;
        for n in 0..3u64 {
            let name = format!("virtio_mmio@{:x}", 0x1000_1000 + n * 0x1000);
            let at = dts.find(&format!("{name} {{")).unwrap();
            assert!(at > last, "slot {n} out of order");
            last = at;
            let node = section(&dts, &name);
            assert!(node.contains("compatible = \"virtio,mmio\";"), "{node}");
            assert!(
                node.contains(&format!(
                    "reg = <0x00 0x{:x} 0x00 0x1000>;",
                    0x1000_1000 + n * 0x1000
                )),
                "{node}"
            );
            assert!(
                node.contains(&format!("interrupts = <0x{:02x}>;", n + 1)),
                "{node}"
            );
            assert!(node.contains("interrupt-parent = <0x100>;"), "{node}");
        }
        assert!(
            !dts.contains("virtio_mmio@10004000"),
            "only populated slots"
        );
    }
}
