//! Bare-metal hart tests: every program under `tests/asm/` is assembled with
//! the RISC-V cross GCC and run with `lockstep bare`, once with the
//! interpreter and once with the translator, each checked against the
//! reference interpreter slice by slice; the program reports pass, or the
//! number of the first failing check, through HTIF `tohost`.
//!
//! The programs were validated against QEMU's `spike` machine, built with
//! `-DQEMU_QUIRKS` where QEMU 7.2 departs from the privileged spec (see
//! `tests/asm/common/trap.h`); here they are built without it, so Lockstep's
//! hart is held to the spec.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CROSS_GCC: &str = "riscv64-linux-gnu-gcc";
const MAX_INSTRUCTIONS: &str = "50000000";

fn asm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("asm")
}

/// Assembles `tests/asm/<rel>` (e.g. `rv64m.S`) into an ELF in the test
/// scratch directory and returns its path. Fails the test, never skips, when
/// the cross compiler is missing.
fn build(rel: &str) -> PathBuf {
    let out_name = rel.replace(['/', '.'], "_") + ".elf";
    let elf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out_name);
    let result = Command::new(CROSS_GCC)
        .current_dir(asm_dir())
        .args([
            "-march=rv64gc",
            "-mabi=lp64d",
            "-nostdlib",
            "-nostartfiles",
            "-static",
            "-fno-pie",
            "-no-pie",
            "-Wl,--build-id=none",
            "-T",
            "common/link.ld",
            "-I.",
            rel,
            "-o",
        ])
        .arg(&elf)
        .output();
    let output = match result {
        Ok(output) => output,
        Err(err) if err.kind() == ErrorKind::NotFound => panic!(
            "{CROSS_GCC} not found: install the gcc-riscv64-linux-gnu package \
             (apt-get install gcc-riscv64-linux-gnu) to run the bare-metal hart tests"
        ),
        Err(err) => panic!("cannot run {CROSS_GCC}: {err}"),
    };
    assert!(
        output.status.success(),
        "assembling {rel} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    elf
}

/// Runs an ELF under `lockstep bare` with the instruction budget, with
/// `--cpu check` (the interpreter's fast loop against its general loop)
/// or `--cpu jit-check` (the translator against the general loop),
/// compared after every slice (a divergence fails the run).
fn run_bare_cpu(elf: &Path, cpu: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("bare")
        .arg(elf)
        .args(["--max-instructions", MAX_INSTRUCTIONS, "--cpu", cpu])
        .output()
        .unwrap_or_else(|err| panic!("cannot run lockstep bare: {err}"))
}

fn run_bare(elf: &Path) -> Output {
    run_bare_cpu(elf, "check")
}

fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_asm_test(stem: &str) {
    let rel = format!("{stem}.S");
    let elf = build(&rel);
    for cpu in ["check", "jit-check"] {
        let output = run_bare_cpu(&elf, cpu);
        assert!(
            output.status.success(),
            "{rel} failed under lockstep bare --cpu {cpu} (the number in the \
             message is the failing check; grep for it in tests/asm/{rel})\n{}",
            describe(&output)
        );
    }
}

macro_rules! asm_tests {
    ($($stem:ident),* $(,)?) => {
        /// Every program the macro turns into a test, by file stem.
        const ASM_TESTS: &[&str] = &[$(stringify!($stem)),*];
        $(
            #[test]
            fn $stem() {
                run_asm_test(stringify!($stem));
            }
        )*
    };
}

asm_tests!(
    smoke,
    // integer side
    rv64i_alu,
    rv64i_branch_jump,
    rv64i_loadstore,
    rv64m,
    rv64a,
    rv64c,
    zicsr,
    traps,
    interrupts,
    // virtual memory and PMP
    vm_deleg,
    vm_mprv,
    vm_perms,
    vm_pmp,
    vm_sv39,
    vm_sv48,
    // floating point
    fp_csr,
    fp_cvt,
    fp_cvt_int,
    fp_d_arith,
    fp_d_misc,
    fp_f_arith,
    fp_f_misc,
    fp_fma,
);

/// Every `tests/asm/*.S` must be listed in `asm_tests!` above.
#[test]
fn every_asm_program_is_listed() {
    let entries = std::fs::read_dir(asm_dir()).expect("read tests/asm");
    let mut missing = Vec::new();
    for entry in entries {
        let path = entry.expect("read tests/asm entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("S") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if !ASM_TESTS.contains(&stem) {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "add these to asm_tests! in tests/bare.rs: {missing:?}"
    );
}

/// True if `text` contains `n` as a whole number (not part of a longer one).
fn mentions_number(text: &str, n: u64) -> bool {
    let wanted = n.to_string();
    text.split(|c: char| !c.is_ascii_digit())
        .any(|token| token == wanted)
}

/// A program that fails check 7 makes `lockstep bare` fail and say so.
#[test]
fn failing_program_reports_its_check_number() {
    let elf = build("negative/fails_check_seven.S");
    let output = run_bare(&elf);
    assert!(
        !output.status.success(),
        "a failing program must make lockstep bare exit non-zero\n{}",
        describe(&output)
    );
    let elf_path = elf.display().to_string();
    let message = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .replace(&elf_path, "");
    assert!(
        mentions_number(&message, 7),
        "lockstep bare must name the failing check (7)\n{}",
        describe(&output)
    );
}

#[test]
fn mentions_number_matches_whole_numbers_only() {
    assert!(mentions_number("test 7 failed", 7));
    assert!(mentions_number("failed: 7", 7));
    assert!(!mentions_number("test 17 failed", 7));
    assert!(!mentions_number("test 70 failed", 7));
    assert!(!mentions_number("passed", 7));
}

fn run_bare_with(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .arg("bare")
        .args(args)
        .output()
        .expect("run lockstep bare")
}

/// One line on stderr, exit status 3 (a runtime error, not a test failure).
fn assert_one_line_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{}", describe(output));
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "error should be one line: {stderr}"
    );
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

#[test]
fn runaway_program_stops_at_the_instruction_budget() {
    let elf = build("negative/spins_forever.S");
    let out = run_bare_with(&[elf.to_str().unwrap(), "--max-instructions", "100000"]);
    assert_one_line_error(&out, "instruction budget of 100000 exhausted");
}

#[test]
fn trap_loop_is_reported_not_spun() {
    let elf = build("negative/trap_storm.S");
    let out = run_bare_with(&[elf.to_str().unwrap()]);
    assert_one_line_error(&out, "trap loop at pc 0x40000000");
}

#[test]
fn bad_files_get_one_line_errors() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-elf");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.elf");
    let _ = std::fs::remove_file(&missing);
    assert_one_line_error(&run_bare_with(&[missing.to_str().unwrap()]), "cannot read");

    let garbage = dir.join("garbage.elf");
    std::fs::write(&garbage, b"this is not an ELF file at all").unwrap();
    assert_one_line_error(
        &run_bare_with(&[garbage.to_str().unwrap()]),
        "is not an ELF file",
    );

    let good = std::fs::read(build("smoke.S")).unwrap();
    let truncated = dir.join("truncated.elf");
    std::fs::write(&truncated, &good[..100]).unwrap();
    assert_one_line_error(
        &run_bare_with(&[truncated.to_str().unwrap()]),
        "is not an ELF file",
    );

    // The test binary itself is an ELF for the host, not for RISC-V.
    let host_elf = std::env::current_exe().unwrap();
    assert_one_line_error(
        &run_bare_with(&[host_elf.to_str().unwrap()]),
        "not a 64-bit little-endian RISC-V ELF",
    );
}
