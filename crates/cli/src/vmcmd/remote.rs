//! `lockstep --api URL vm …` / `snapshot …` / `login`: the same verbs
//! against lockstepd's REST API instead of the local bundles.

use super::{CmdResult, SnapshotCommand, VmCommand};
use api::client::{Client, ClientError};
use api::routes::{SnapshotList, VmDoc, VmList};
use std::process::ExitCode;

/// A client of `api` with the stored (or `LOCKSTEP_TOKEN`) token.
pub fn client(api: &str) -> Result<Client, ClientError> {
    Client::new(api, None)
}

fn enc(s: &str) -> String {
    // Names are letters, digits, '.', '_' and '-' (checked by the daemon);
    // anything else is escaped so a path cannot be smuggled in.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print_json<T: serde::Serialize>(v: &T) -> CmdResult {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn say_vm(doc: &VmDoc) {
    println!("name:        {}", doc.name);
    println!("uuid:        {}", doc.uuid);
    println!("project:     {}", doc.project);
    println!("host:        {}", doc.host);
    match doc.pid {
        Some(pid) => println!("state:       {} (pid {pid})", doc.state),
        None => println!("state:       {}", doc.state),
    }
    if let Some(live) = &doc.live {
        println!("live:        {} at icount {}", live.state, live.icount);
    }
    println!("cpus:        {}", doc.cpus);
    println!("memory:      {} MiB", doc.memory >> 20);
    for (i, size) in doc.disks.iter().enumerate() {
        println!("disk vd{}:    {} MiB", (b'a' + i as u8) as char, size >> 20);
    }
    for (i, n) in doc.nics.iter().enumerate() {
        println!("nic eth{i}:    {} mac={}", n.net, n.mac);
    }
    println!(
        "restart:     {}",
        serde_json::to_value(doc.restart)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("")
    );
    println!("snapshots:   {}", doc.snapshots);
}

pub fn vm(api: &str, command: VmCommand) -> CmdResult {
    let c = client(api)?;
    match command {
        VmCommand::List(a) => {
            let list: VmList = c.get("/v1/vms")?;
            if a.json {
                return print_json(&list);
            }
            println!("{:<24} {:<10} {:>4} {:>8} {:>5}  HOST", "NAME", "STATE", "CPUS", "MEMORY", "SNAPS");
            for v in &list.vms {
                println!(
                    "{:<24} {:<10} {:>4} {:>7}M {:>5}  {}",
                    v.name,
                    v.state,
                    v.cpus,
                    v.memory >> 20,
                    v.snapshots,
                    v.host
                );
            }
            if !list.unreachable.is_empty() {
                eprintln!(
                    "lockstep: hosts {} did not answer: their VMs are not listed",
                    list.unreachable.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Show(a) => {
            let doc: VmDoc = c.get(&format!("/v1/vms/{}", enc(&a.name)))?;
            if a.json {
                return print_json(&doc);
            }
            say_vm(&doc);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Create(a) => {
            let unsupported = [
                (!a.disks.is_empty(), "--disk (upload the image: PUT /v1/images/NAME)"),
                (a.kernel.is_some() || a.initrd.is_some() || a.firmware.is_some(), "--kernel/--initrd/--firmware"),
                (a.ssh_key.is_some(), "--ssh-key"),
                (a.ft.ft_backup.is_some(), "--ft-backup (the cluster places backups)"),
                (a.disk_sizes.len() > 1, "more than one --disk-size"),
            ];
            if let Some((_, what)) = unsupported.iter().find(|(given, _)| *given) {
                return Err(crate::exit::usage(format!("{what} is not available with --api")));
            }
            let mut networks = Vec::new();
            for n in &a.nets {
                match n.strip_prefix("network=") {
                    Some(name) if !name.contains(',') => networks.push(name.to_string()),
                    _ => {
                        return Err(crate::exit::usage(format!(
                            "--net {n}: with --api a NIC joins a network of the project: network=NAME"
                        )))
                    }
                }
            }
            let image = a.image.as_deref().map(|i| if i == "debian" { "debian-minbase" } else { i });
            let body = serde_json::json!({
                "name": a.name,
                "cpus": a.cpus,
                "memory_mib": a.memory >> 20,
                "image": image,
                "disk_gib": a.disk_sizes.first().map(|s| s.div_ceil(1 << 30)),
                "networks": networks,
                "append": a.append,
                "start": false,
            });
            let doc: VmDoc = c.post("/v1/vms", &body)?;
            eprintln!(
                "lockstep: created VM {} ({} CPU, {} MiB) on host {} through {}",
                doc.name,
                doc.cpus,
                doc.memory >> 20,
                doc.host,
                c.api()
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Start(a) | VmCommand::Resume(a) => {
            if a.attach || a.verify {
                return Err(crate::exit::usage("--attach and --verify are not available with --api; use `vm console`"));
            }
            let doc: VmDoc = c.post(&format!("/v1/vms/{}/start", enc(&a.name)), &serde_json::json!({}))?;
            eprintln!("lockstep: started VM {} (pid {}) on host {}", doc.name, doc.pid.unwrap_or(0), doc.host);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Stop(a) => {
            let path = format!(
                "/v1/vms/{}/stop?force={}&timeout={}",
                enc(&a.name),
                a.force,
                a.timeout.as_secs()
            );
            let doc: VmDoc = c.post(&path, &serde_json::json!({}))?;
            eprintln!("lockstep: stopped VM {}", doc.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Suspend(a) => {
            let doc: VmDoc = c.post(&format!("/v1/vms/{}/suspend", enc(&a.name)), &serde_json::json!({}))?;
            eprintln!("lockstep: suspended VM {}", doc.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Delete(a) => {
            c.delete(&format!("/v1/vms/{}?force={}", enc(&a.name), a.force))?;
            eprintln!("lockstep: deleted VM {}", a.name);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Clone(a) => {
            let body = serde_json::json!({
                "name": a.name,
                "linked": a.linked,
                "snapshot": a.from_snapshot,
            });
            let doc: VmDoc = c.post(&format!("/v1/vms/{}/clone", enc(&a.source)), &body)?;
            eprintln!("lockstep: created clone {} of {} (uuid {})", doc.name, a.source, doc.uuid);
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Console(a) => console(&c, &a.name),
        VmCommand::Kill(_)
        | VmCommand::Pause(_)
        | VmCommand::Unpause(_)
        | VmCommand::Rename(_)
        | VmCommand::Set(_) => Err(crate::exit::usage(
            "this vm command is not available with --api (the API has list, show, create, start, stop, suspend, resume, delete, clone, console)",
        )),
    }
}

/// Console output to stdout; Ctrl-] ends it. Stdin goes to the guest.
fn console(c: &Client, name: &str) -> CmdResult {
    let mut ws = c.console(&enc(name))?;
    eprintln!(
        "lockstep: connected to VM {name}'s console through {}; Ctrl-C ends",
        c.api()
    );
    use std::io::Write;
    let mut out = std::io::stdout();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => {
                out.write_all(&b)?;
                out.flush()?;
            }
            Ok(tungstenite::Message::Text(t)) => {
                out.write_all(t.as_bytes())?;
                out.flush()?;
            }
            Ok(tungstenite::Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => return Err(format!("console of VM {name}: {e}").into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn snapshot(api: &str, command: SnapshotCommand) -> CmdResult {
    let c = client(api)?;
    let say = |list: &SnapshotList| {
        println!("{:<24} {:<24} {:<10} CURRENT", "NAME", "PARENT", "POWER");
        for s in &list.snapshots {
            println!(
                "{:<24} {:<24} {:<10} {}",
                s.name,
                s.parent.as_deref().unwrap_or("-"),
                s.power,
                if s.current { "*" } else { "" }
            );
        }
    };
    match command {
        SnapshotCommand::List(a) => {
            let list: SnapshotList = c.get(&format!("/v1/vms/{}/snapshots", enc(&a.vm)))?;
            if a.json {
                return print_json(&list);
            }
            say(&list);
        }
        SnapshotCommand::Create(a) => {
            if a.disk_only {
                return Err(crate::exit::usage(
                    "--disk-only is not available with --api",
                ));
            }
            let body = serde_json::json!({"name": a.snapshot, "description": a.description});
            let _: SnapshotList = c.post(&format!("/v1/vms/{}/snapshots", enc(&a.vm)), &body)?;
            eprintln!("lockstep: created snapshot {} of VM {}", a.snapshot, a.vm);
        }
        SnapshotCommand::Revert(a) => {
            let _: SnapshotList = c.post(
                &format!(
                    "/v1/vms/{}/snapshots/{}/revert",
                    enc(&a.vm),
                    enc(&a.snapshot)
                ),
                &serde_json::json!({}),
            )?;
            eprintln!("lockstep: VM {} reverted to snapshot {}", a.vm, a.snapshot);
        }
        SnapshotCommand::Delete(a) => {
            c.delete(&format!(
                "/v1/vms/{}/snapshots/{}?children={}",
                enc(&a.vm),
                enc(&a.snapshot),
                a.children
            ))?;
            eprintln!("lockstep: deleted snapshot {} of VM {}", a.snapshot, a.vm);
        }
        SnapshotCommand::Show(a) => {
            let list: SnapshotList = c.get(&format!("/v1/vms/{}/snapshots", enc(&a.vm)))?;
            let s = list
                .snapshots
                .iter()
                .find(|s| s.name == a.snapshot)
                .ok_or_else(|| format!("VM {:?} has no snapshot named {:?}", a.vm, a.snapshot))?;
            return print_json(s);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lockstep login`: a token for `user`, kept for `api`.
pub fn login(api: &str, user: &str, password_file: Option<&std::path::Path>) -> CmdResult {
    let password = match password_file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            if rustix::termios::isatty(std::io::stdin()) {
                eprint!("password for {user} at {api}: ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let password = password.trim_end_matches(['\n', '\r']);
    let mut c = Client::new(api, Some(String::new()))?;
    let reply = c.login(user, password)?;
    let path = api::client::store_token(api, &reply.token, reply.expires_at)?;
    eprintln!(
        "lockstep: logged in to {api} as {} (project {}, role {}) until {}; token kept in {}",
        reply.user,
        reply.project,
        reply.role.as_str(),
        vmm::format_time(reply.expires_at),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
