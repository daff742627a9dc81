//! Records the commit the binary is built from, for `lockstep --version`.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let commit = if dirty {
        format!("{commit}-modified")
    } else {
        commit
    };
    println!("cargo:rustc-env=LOCKSTEP_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout) or the index changes.
    // (A worktree keeps HEAD and its index apart, its branches in the
    // common directory.)
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    if let (Some(common), Some(head)) = (common, git(&["symbolic-ref", "-q", "HEAD"])) {
        if std::path::Path::new(&common).join(&head).exists() {
            println!("cargo:rerun-if-changed={common}/{head}");
        }
    }
}
