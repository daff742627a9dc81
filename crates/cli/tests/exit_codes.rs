//! The exit-code table (README "Exit codes", `lockstep --help`): each
//! code from the situation that gives it, and the operator's aids that go
//! with it (`--version`, completions, man pages).

mod common;

use common::{Guest, PROMPT};
use std::process::{Command, Output};

fn lockstep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .output()
        .expect("run lockstep")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exits(out: &Output, code: i32) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// 1: the guest writes a failure code to the SiFive test device; the code
/// is said, not passed through.
#[test]
fn a_guest_reported_failure_exits_1_and_names_its_code() {
    let mut g = Guest::boot(&[]);
    g.expect(PROMPT);
    // FAIL (0x3333) with code 3 in the upper half.
    g.send("devmem 0x100000 32 0x00033333");
    let status = g.child.wait().expect("wait for lockstep");
    assert_eq!(status.code(), Some(1), "{status}");
    let said = g.expect_stderr("reported failure");
    assert!(said.contains("code 3"), "{said}");
}

/// 4: with --no-reboot a guest reset ends the run; 0: a poweroff.
#[test]
fn a_reset_with_no_reboot_exits_4_and_a_poweroff_0() {
    let mut g = Guest::boot(&["--no-reboot"]);
    g.expect(PROMPT);
    g.send("reboot -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert_eq!(status.code(), Some(4), "{status}");
    g.expect_stderr("the guest reset");

    let mut g = Guest::boot(&["--no-reboot"]);
    g.expect(PROMPT);
    g.send("poweroff -f");
    let status = g.child.wait().expect("wait for lockstep");
    assert_eq!(status.code(), Some(0), "{status}");
}

/// 7: stopped by the host (SIGTERM here; `vm stop` and Ctrl-A x end the
/// same way).
#[test]
fn a_host_stop_exits_7() {
    let mut g = Guest::boot(&[]);
    g.expect(PROMPT);
    let pid = rustix::process::Pid::from_raw(g.child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = g.child.wait().expect("wait for lockstep");
    assert_eq!(status.code(), Some(7), "{status}");
    g.expect_stderr("stopped");
}

/// 2: the command line is wrong, whether clap or lockstep sees it; 3: the
/// host can't do it. One line each, no backtrace.
#[test]
fn usage_errors_exit_2_and_host_errors_3() {
    let home = tempfile::tempdir().expect("temp dir");
    let lockstep = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(args)
            .env("LOCKSTEP_HOME", home.path())
            .output()
            .expect("run lockstep")
    };
    for args in [
        &["run", "--no-such-flag"][..],
        &["run", "--cpus", "9"],
        &["ft", "backup", "--listen", "127.0.0.1:0"],
        &["disk", "create", "/tmp/lockstep-never-made.qcow2"],
        &["vm", "create", "../evil"],
    ] {
        let err = exits(&lockstep(args), 2);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Old spellings are refused, naming the new one.
    for (args, new) in [
        (&["run", "--arbiter", "/tmp/a"][..], "--ft-arbiter"),
        (&["run", "--tls-dir", "/tmp/t"], "--ft-tls-dir"),
        (&["run", "--insecure-plaintext"], "--ft-insecure-plaintext"),
        (
            &["ft", "add-backup", "127.0.0.1:1", "--name", "x"],
            "--ft-backup",
        ),
        (&["run", "--ft-timeout", "500"], "500ms"),
        (&["vm", "stop", "x", "--timeout", "30"], "30s"),
    ] {
        let err = exits(&lockstep(args), 2);
        assert!(err.contains(new), "{args:?}: {err}");
    }
    for args in [
        &["run", "--console", "none", "--kernel", "/nonexistent/Image"][..],
        &["replay", "/nonexistent.log"],
        &["disk", "info", "/nonexistent.qcow2"],
    ] {
        let err = exits(&lockstep(args), 3);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("/nonexistent"), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_the_exit_codes_and_version_names_commit_and_formats() {
    let help = text(&lockstep(&["--help"]).stdout);
    for code in 0..=7 {
        assert!(help.contains(&format!("\n  {code}  ")), "{code}: {help}");
    }
    let version = text(&lockstep(&["--version"]).stdout);
    assert!(version.contains("(commit "), "{version}");
    for format in [
        "snapshot format",
        "replay log format",
        "FT protocol",
        "VM bundle format",
    ] {
        assert!(version.contains(format), "{format}: {version}");
    }
}

/// Completions that bash loads, for every command.
#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completions bash) && complete -p lockstep",
            env!("CARGO_BIN_EXE_lockstep")
        ))
        .output()
        .expect("run bash");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(
        said.starts_with("complete ") && said.contains("lockstep"),
        "{said}"
    );
    for shell in ["zsh", "fish"] {
        let out = lockstep(&["completions", shell]);
        assert!(
            out.status.success() && text(&out.stdout).contains("snapshot"),
            "{shell}"
        );
    }
}

/// A man page per command, each rendering with `man -l`.
#[test]
fn man_pages_cover_every_command_and_render() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = lockstep(&["man", "--out-dir", dir.path().to_str().expect("utf-8")]);
    exits(&out, 0);
    for page in [
        "lockstep.1",
        "lockstep-run.1",
        "lockstep-vm-start.1",
        "lockstep-snapshot-create.1",
        "lockstep-ft-backup.1",
        "lockstep-disk-info.1",
    ] {
        let path = dir.path().join(page);
        assert!(path.is_file(), "{page}");
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man is installed (Debian: man-db)");
        let shown = text(&out.stdout);
        assert!(out.status.success(), "{page}: {}", text(&out.stderr));
        assert!(
            shown.contains("NAME") && shown.contains("SYNOPSIS"),
            "{page}: {shown}"
        );
    }
    let run = std::fs::read_to_string(dir.path().join("lockstep-run.1")).expect("read");
    assert!(run.contains("no\\-reboot"), "run's page lists its flags");
}

/// `lockstep … | head`: a reader that is gone ends the output quietly
/// (exit 0), not with a panic.
#[test]
fn a_reader_that_went_away_ends_a_report_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("d.qcow2");
    let image = image.to_str().expect("utf-8");
    exits(&lockstep(&["disk", "create", image, "--size", "1M"]), 0);
    for args in [
        &["disk", "info", image, "--json"][..],
        &["completions", "bash"],
    ] {
        let (read, write) = rustix::pipe::pipe().expect("a pipe");
        drop(read);
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .expect("run lockstep");
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
