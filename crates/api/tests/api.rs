//! lockstepd end to end: a real daemon on a Unix socket (and HTTPS) in a
//! temporary home, real VMs booting the Debian kernel, the real `lockstep`
//! binary as their process; nothing mocked.

use api::client::{Client, ClientError};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[test]
fn tokens_roles_and_projects_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    // The first admin's password is in a 0600 file and nowhere else.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("admin-password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let sock_mode = std::fs::metadata(&d.sock).unwrap().permissions().mode();
    assert_eq!(sock_mode & 0o077, 0, "the API socket is private");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let password = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert!(
        !log.contains(password.trim()),
        "the password reached the log"
    );

    // No token, a forged one, a wrong password, an expired one: 401.
    let none = d.client(None);
    assert_eq!(status(none.get("/v1/vms")), 401);
    let admin = d.admin();
    let token = admin.token().unwrap().to_string();
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(status(d.client(Some(forged)).get("/v1/vms")), 401);
    let (claims_end, _) = token.rsplit_once('.').unwrap();
    let other_key = format!("{claims_end}.{}", "x".repeat(43));
    assert_eq!(status(d.client(Some(other_key)).get("/v1/vms")), 401);
    let mut wrong = d.client(None);
    assert!(matches!(
        wrong.login("admin", "not-the-password"),
        Err(ClientError::Api { status: 401, .. })
    ));
    let short: Value = d
        .client(None)
        .post_unauthenticated(
            "/v1/auth/tokens",
            &json!({"name": "admin", "password": password.trim(), "expires_in": 1}),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let expired = d.client(Some(short["token"].as_str().unwrap().to_string()));
    let why = message(expired.get("/v1/vms"));
    assert!(why.contains("expired"), "{why}");
    assert_eq!(status(admin.get("/v1/vms")), 200);

    // Projects and roles.
    let _: Value = admin
        .post("/v1/projects", &json!({"name": "blue"}))
        .unwrap();
    let _: Value = admin
        .post("/v1/projects", &json!({"name": "green"}))
        .unwrap();
    for (name, project, role) in [
        ("bob", "blue", "member"),
        ("rita", "blue", "reader"),
        ("gus", "green", "member"),
    ] {
        let _: Value = admin
            .post("/v1/users", &json!({"name": name, "password": "correct horse", "project": project, "role": role}))
            .unwrap();
    }
    let bob = d.login("bob", "correct horse");
    let rita = d.login("rita", "correct horse");
    let gus = d.login("gus", "correct horse");
    // Only an admin manages users.
    assert_eq!(status(bob.get("/v1/users")), 403);
    assert_eq!(
        status(bob.post(
            "/v1/users",
            &json!({"name": "eve", "password": "12345678", "project": "blue", "role": "admin"})
        )),
        403
    );
    // A reader reads, and may not create.
    assert_eq!(status(rita.get("/v1/vms")), 200);
    let why = message(rita.post("/v1/vms", &json!({"name": "r1", "start": false})));
    assert!(why.contains("reader"), "{why}");
    assert_eq!(
        status(rita.post("/v1/vms", &json!({"name": "r1", "start": false}))),
        403
    );
    // A member's VM is its project's: invisible to another project.
    let _: Value = bob
        .post(
            "/v1/vms",
            &json!({"name": "web", "flavor": "tiny", "start": false}),
        )
        .unwrap();
    let list: Value = rita.get("/v1/vms").unwrap();
    assert_eq!(list["vms"][0]["name"], "web");
    assert_eq!(status(gus.get("/v1/vms/web")), 404);
    assert_eq!(status(gus.post("/v1/vms/web/start", &json!({}))), 404);
    assert_eq!(status(gus.delete("/v1/vms/web").map(|()| json!({}))), 404);
    let list: Value = gus.get("/v1/vms").unwrap();
    assert_eq!(list["vms"], json!([]));
    // The same name in another project is another VM.
    let _: Value = gus
        .post(
            "/v1/vms",
            &json!({"name": "web", "flavor": "tiny", "start": false}),
        )
        .unwrap();
    let blue: Value = bob.get("/v1/vms/web").unwrap();
    let green: Value = gus.get("/v1/vms/web").unwrap();
    assert_ne!(blue["uuid"], green["uuid"]);
    // Deleting a user ends their tokens.
    admin.delete("/v1/users/gus").unwrap();
    assert_eq!(status(gus.get("/v1/vms")), 401);
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let admin = d.admin();
    let _: Value = admin
        .post("/v1/vms", &json!({"name": "keep", "start": false}))
        .unwrap();
    let before: Value = admin.get("/v1/vms").unwrap();
    let raw = |body: Vec<u8>| -> (u16, Value) {
        let http = reqwest::blocking::Client::builder()
            .unix_socket(d.sock.as_path())
            .build()
            .unwrap();
        let r = http
            .post("http://lockstepd/v1/vms")
            .bearer_auth(admin.token().unwrap())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    };
    let (s, body) = raw(b"{\"name\": ".to_vec());
    assert_eq!(s, 400);
    assert_eq!(body["code"], "bad_request");
    let (s, body) = raw(br#"{"name": "x", "colour": "red"}"#.to_vec());
    assert_eq!(s, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (s, body) = raw(br#"{"name": 7}"#.to_vec());
    assert_eq!(s, 400, "{body}");
    let mut huge = br#"{"name": "x", "append": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    huge.extend(br#""}"#);
    // Raw, so the client's writing on after the early 413 is no error.
    let mut conn = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    let head = format!(
        "POST /v1/vms HTTP/1.1\r\nHost: lockstepd\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        admin.token().unwrap(),
        huge.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(&huge);
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut conn, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    for bad in ["../etc", ".hidden", "a b", "x/y", ""] {
        let why = message(admin.post("/v1/vms", &json!({"name": bad, "start": false})));
        assert!(why.contains("name"), "{bad:?}: {why}");
    }
    let why = message(admin.post("/v1/vms", &json!({"name": "big", "memory_mib": 1u64 << 19})));
    assert!(
        why.contains("no host has room") && why.contains("MiB"),
        "{why}"
    );
    let why = message(admin.post("/v1/vms", &json!({"name": "big", "memory_mib": 1u64 << 40})));
    assert!(why.contains("memory_mib"), "{why}");
    let why = message(admin.post("/v1/vms", &json!({"name": "f", "flavor": "huge"})));
    assert!(why.contains("flavor"), "{why}");
    let why = message(admin.post(
        "/v1/vms",
        &json!({"name": "n", "networks": ["nowhere"], "start": false}),
    ));
    assert!(why.contains("nowhere"), "{why}");
    let why = message(admin.post(
        "/v1/vms",
        &json!({"name": "i", "image": "nothing-like-it", "start": false}),
    ));
    assert!(why.contains("nothing-like-it"), "{why}");
    let why = message(admin.post("/v1/vms", &json!({"name": "keep", "start": false})));
    assert!(why.contains("exists"), "{why}");
    assert_eq!(
        status(admin.post("/v1/vms", &json!({"name": "keep", "start": false}))),
        409
    );
    assert_eq!(status(admin.get("/v1/no-such-thing")), 404);
    // Nothing changed.
    let after: Value = admin.get("/v1/vms").unwrap();
    assert_eq!(before, after);
    assert!(!dir.path().join("projects/admin/vms/big").exists());

    // Concurrent conflicting requests on one VM: one wins, the others get 409.
    let _guard = boots();
    let api = d.api();
    let token = admin.token().unwrap().to_string();
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (api, token) = (api.clone(), token.clone());
                s.spawn(move || {
                    let c = Client::new(&api, Some(token)).unwrap();
                    status(c.post("/v1/vms/keep/start", &json!({})))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|&&s| s == 200).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|&&s| s == 409).count(),
        2,
        "{results:?}"
    );
    let vm: Value = admin.get("/v1/vms/keep").unwrap();
    assert_eq!(vm["state"], "running");
    let _: Value = admin.post("/v1/vms/keep/stop", &json!({})).unwrap();
}

#[test]
fn nova_flow_token_create_boot_console() {
    let _guard = boots();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let admin = d.admin();
    // Events as they happen.
    let http = reqwest::blocking::Client::builder()
        .unix_socket(d.sock.as_path())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let events = http
        .get("http://lockstepd/v1/events")
        .bearer_auth(admin.token().unwrap())
        .send()
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(events).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data:") {
                if tx.send(data.trim().to_string()).is_err() {
                    break;
                }
            }
        }
    });
    let started = Instant::now();
    let vm: Value = admin
        .post(
            "/v1/vms",
            &json!({"name": "nova", "flavor": "tiny", "networks": ["nat"]}),
        )
        .unwrap();
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["host"], "host-a");
    assert_eq!(vm["memory"], 256u64 << 20);
    let seen = console_until(
        &admin,
        "nova",
        "echo api-$((6*7))\n",
        "api-42",
        Duration::from_secs(120),
    );
    eprintln!(
        "create to console answer: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(seen.contains("api-42"));
    let mut states = Vec::new();
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(2)) {
        let e: Value = serde_json::from_str(&e).unwrap();
        if e["name"] == "nova" {
            states.push(e["state"].as_str().unwrap().to_string());
        }
        if states.iter().any(|s| s == "running") {
            break;
        }
    }
    assert_eq!(
        states[..3],
        ["created", "starting", "running"],
        "{states:?}"
    );
    // Snapshot it running, stop, revert, clone, delete.
    let snaps: Value = admin
        .post("/v1/vms/nova/snapshots", &json!({"name": "booted"}))
        .unwrap();
    assert_eq!(snaps["snapshots"][0]["power"], "running");
    let shown: Value = admin.get("/v1/vms/nova").unwrap();
    assert!(shown["live"]["icount"].as_u64().unwrap() > 0);
    let stopped: Value = admin.post("/v1/vms/nova/stop", &json!({})).unwrap();
    assert_eq!(stopped["state"], "stopped");
    let _: Value = admin
        .post("/v1/vms/nova/snapshots/booted/revert", &json!({}))
        .unwrap();
    let clone: Value = admin
        .post(
            "/v1/vms/nova/clone",
            &json!({"name": "nova2", "linked": true, "snapshot": "booted"}),
        )
        .unwrap();
    assert_eq!(clone["name"], "nova2");
    assert_ne!(clone["uuid"], vm["uuid"]);
    assert_eq!(
        status(admin.delete("/v1/vms/nova").map(|()| json!({}))),
        409,
        "linked clones stand on it"
    );
    admin.delete("/v1/vms/nova2").unwrap();
    admin.delete("/v1/vms/nova").unwrap();
    assert_eq!(status(admin.get("/v1/vms/nova")), 404);
}

#[test]
fn a_restarted_daemon_finds_its_running_vms_and_restarts_crashed_ones() {
    let _guard = boots();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    let admin = d.admin();
    let vm: Value = admin
        .post(
            "/v1/vms",
            &json!({"name": "keeper", "flavor": "tiny", "restart": "always"}),
        )
        .unwrap();
    let pid = vm["pid"].as_u64().unwrap();
    console_until(
        &admin,
        "keeper",
        "echo before-$((1+1))\n",
        "before-2",
        Duration::from_secs(120),
    );
    // The daemon dies hard; its VM does not.
    d.kill();
    drop(admin);
    let d = Daemon::start(dir.path(), &[]);
    let admin = d.admin();
    let list: Value = admin.get("/v1/vms").unwrap();
    assert_eq!(list["vms"][0]["name"], "keeper");
    assert_eq!(list["vms"][0]["state"], "running");
    assert_eq!(
        list["vms"][0]["pid"].as_u64(),
        Some(pid),
        "the same process"
    );
    console_until(
        &admin,
        "keeper",
        "echo after-$((2+2))\n",
        "after-4",
        Duration::from_secs(60),
    );
    // Its process is killed: restart "always" starts it again.
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for("a new process for keeper", Duration::from_secs(60), || {
        let v: Value = admin.get("/v1/vms/keeper").unwrap();
        v["state"] == "running" && v["pid"].as_u64() != Some(pid)
    });
    console_until(
        &admin,
        "keeper",
        "echo again-$((3+3))\n",
        "again-6",
        Duration::from_secs(120),
    );
    // Asked to stop, it stays stopped.
    let _: Value = admin.post("/v1/vms/keeper/stop", &json!({})).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let v: Value = admin.get("/v1/vms/keeper").unwrap();
    assert_eq!(v["state"], "stopped");
}

#[test]
fn images_are_uploaded_with_their_sha256_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let admin = d.admin();
    let img = dir.path().join("small.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("64M")
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&img).unwrap();
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let http = reqwest::blocking::Client::builder()
        .unix_socket(d.sock.as_path())
        .build()
        .unwrap();
    let put = |name: &str, query: &str, body: Vec<u8>| -> (u16, Value) {
        let r = http
            .put(format!("http://lockstepd/v1/images/{name}?{query}"))
            .bearer_auth(admin.token().unwrap())
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let (s, body) = put(
        "small",
        &format!("format=qcow2&sha256={}", "0".repeat(64)),
        bytes.clone(),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&sha));
    let (s, body) = put("small", "format=raw", bytes.clone());
    assert_eq!(s, 400, "a qcow2 is not raw: {body}");
    // A qcow2 naming a backing file on the host is refused.
    let backed = dir.path().join("backed.qcow2");
    Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&img)
        .arg(&backed)
        .status()
        .unwrap();
    let (s, body) = put("backed", "format=qcow2", std::fs::read(&backed).unwrap());
    assert_eq!(s, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("backing"),
        "{body}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        leftovers.is_empty(),
        "refused uploads leave nothing: {leftovers:?}"
    );
    let (s, body) = put("small", &format!("format=qcow2&sha256={sha}"), bytes);
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["sha256"], sha.as_str());
    assert_eq!(body["size"], 64u64 << 20);
    let list: Value = admin.get("/v1/images").unwrap();
    assert!(list["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "small" && i["kind"] == "upload"));
    let vm: Value = admin
        .post(
            "/v1/vms",
            &json!({"name": "fromimg", "image": "small", "start": false}),
        )
        .unwrap();
    assert_eq!(vm["disks"], json!([64u64 << 20]));
    admin.delete("/v1/images/small").unwrap();
    assert_eq!(
        status(admin.delete("/v1/images/small").map(|()| json!({}))),
        404
    );
}

#[test]
fn https_with_tokens_and_the_checked_in_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    binaries();
    let lockstep = PathBuf::from(env!("CARGO_BIN_EXE_lockstepd")).with_file_name("lockstep");
    let tls = dir.path().join("tls");
    let ok = Command::new(&lockstep)
        .args(["ft", "tls-init"])
        .arg(&tls)
        .arg("--ca")
        .arg(dir.path().join("ca"))
        .args(["--node-name", "localhost"])
        .status()
        .unwrap();
    assert!(ok.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let tls_arg = tls.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dir.path().join("home"),
        &["--listen", &addr, "--tls-dir", &tls_arg],
    );
    let url = format!("https://localhost:{port}");
    wait_for("the HTTPS listener", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    std::env::set_var(api::client::CA_ENV, tls.join("ca.pem"));
    let password = std::fs::read_to_string(d.home.join("admin-password")).unwrap();
    let mut c = Client::new(&url, Some(String::new())).unwrap();
    assert_eq!(status(c.get("/v1/vms")), 401, "HTTPS needs a token too");
    c.login("admin", password.trim()).unwrap();
    let hosts: Value = c.get("/v1/hosts").unwrap();
    assert_eq!(hosts["hosts"][0]["name"], "host-a");
    assert!(hosts["hosts"][0]["memory_total"].as_u64().unwrap() > 0);
    // A plain-text client gets no answer.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut plain, &mut buf).unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("200 OK"));

    // The document served is the one checked in (regenerate: lockstepd --openapi > crates/api/openapi.json).
    let served: Value = c.get("/v1/openapi.json").unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(
        served == checked_in,
        "{} is stale: regenerate it with `lockstepd --openapi > {}`",
        file.display(),
        file.display()
    );
    assert_eq!(
        served["openapi"].as_str().unwrap().chars().next(),
        Some('3')
    );
    for path in [
        "/v1/auth/tokens",
        "/v1/vms",
        "/v1/vms/{name}/console",
        "/v1/images/{name}",
        "/v1/networks",
        "/v1/hosts",
        "/v1/events",
    ] {
        assert!(
            served["paths"].get(path).is_some(),
            "{path} is not in the OpenAPI document"
        );
    }
}
