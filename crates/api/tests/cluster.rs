//! lockstepd as a cluster: a real `etcd` server (Debian's etcd-server)
//! started by the test on loopback, three real daemons (`a`, `b`, `c`,
//! each its own home and HTTPS port) joined to it, real VMs booting the
//! Debian kernel. Nothing mocked.

mod common;
use common::*;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd server of its own, on loopback.
struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client: u16,
    peer: u16,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: dir.to_path_buf(),
            client: free_port(),
            peer: free_port(),
        };
        etcd.run();
        etcd
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// Start (again) on the same data and ports.
    fn run(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server) is installed by test.sh");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.client);
        wait_for("etcd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The host names `GET /v1/hosts` lists.
fn host_names(c: &api::client::Client) -> Vec<String> {
    let hosts: Value = c.get("/v1/hosts").unwrap();
    hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect()
}

fn host_field(c: &api::client::Client, host: &str, field: &str) -> Value {
    let hosts: Value = c.get("/v1/hosts").unwrap();
    hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .map(|h| h[field].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn three_hosts_on_etcd_schedule_forward_copy_images_and_survive_etcd_and_host_loss() {
    let _turn = boots();
    let dir = tempfile::tempdir().unwrap();
    let lockstep = binaries().with_file_name("lockstep");
    let mut etcd = Etcd::start(dir.path());

    // Three hosts, one CA.
    let mut daemons = Vec::new();
    for name in ["a", "b", "c"] {
        let tls = dir.path().join(format!("tls-{name}"));
        let ok = Command::new(&lockstep)
            .args(["ft", "tls-init"])
            .arg(&tls)
            .arg("--ca")
            .arg(dir.path().join("ca"))
            .args(["--node-name", name])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let listen = format!("127.0.0.1:{}", free_port());
        let d = Daemon::start_as(
            &dir.path().join(name),
            name,
            &[
                "--listen",
                &listen,
                "--tls-dir",
                tls.to_str().unwrap(),
                "--etcd",
                &etcd.url(),
            ],
        );
        daemons.push(d);
    }
    let (a, b, c) = (&daemons[0], &daemons[1], &daemons[2]);

    // One identity: a made it (the first to join); b and c took it on, so
    // a's admin password and a's tokens work everywhere.
    assert!(!b.home.join("admin-password").exists());
    let on_a = a.admin();
    let token = on_a.token().unwrap().to_string();
    let on_b = b.client(Some(token.clone()));
    let on_c = c.client(Some(token.clone()));
    assert_eq!(host_names(&on_c), ["a", "b", "c"]);
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(status(b.client(Some(forged)).get("/v1/vms")), 401);
    // A user made on c logs in on b.
    on_c.post::<_, Value>(
        "/v1/users",
        &json!({"name": "ops", "password": "ops-password", "project": "admin", "role": "reader"}),
    )
    .unwrap();
    wait_for("c's new user to reach b", Duration::from_secs(5), || {
        let mut reader = b.client(None);
        reader.login("ops", "ops-password").is_ok()
    });
    let mut reader = b.client(None);
    reader.login("ops", "ops-password").unwrap();
    assert_eq!(
        status(reader.post("/v1/vms", &json!({"name": "nope", "start": false}))),
        403,
        "a reader creates nothing, whichever host it asks"
    );

    // An image uploaded to a only.
    let img = dir.path().join("data.raw");
    std::fs::write(&img, vec![0x5au8; 4 << 20]).unwrap();
    let http = reqwest::blocking::Client::builder()
        .unix_socket(a.sock.as_path())
        .build()
        .unwrap();
    let r = http
        .put("http://lockstepd/v1/images/data?format=raw")
        .bearer_auth(&token)
        .body(std::fs::read(&img).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    wait_for(
        "a's record to list the image",
        Duration::from_secs(5),
        || {
            let hosts: Value = on_c.get("/v1/hosts").unwrap();
            hosts["hosts"].as_array().unwrap().len() == 3
        },
    );

    // The scheduler: equal hosts, so the first by name takes the first VM.
    let first: Value = on_c
        .post(
            "/v1/vms",
            &json!({"name": "first", "memory_mib": 256, "start": true}),
        )
        .unwrap();
    assert_eq!(first["host"], "a", "{first}");
    wait_for("a's load to show", Duration::from_secs(10), || {
        host_field(&on_b, "a", "vms_running") == json!(1)
    });

    // The Nova flow: token → create on c → placed on the least loaded
    // host (b: a runs a VM) → the image copied from a → boots → console.
    let web: Value = on_c
        .post(
            "/v1/vms",
            &json!({"name": "web", "memory_mib": 256, "image": "data", "start": true,
                    "append": "console=ttyS0 earlycon=sbi"}),
        )
        .unwrap();
    assert_eq!(web["host"], "b", "least loaded: {web}");
    let copied = std::fs::read(b.home.join("images/data.raw")).unwrap();
    assert_eq!(
        copied,
        std::fs::read(&img).unwrap(),
        "the image was copied to b"
    );
    // Its console, through c: c opens it on b and relays.
    console_until(
        &on_c,
        "web",
        "echo cluster-$((6*7))\n",
        "cluster-42",
        Duration::from_secs(180),
    );
    // Any host answers for it: c forwards to b.
    let shown: Value = on_c.get("/v1/vms/web").unwrap();
    assert_eq!(shown["host"], "b");
    assert_eq!(shown["state"], "running");
    let all: Value = on_a.get("/v1/vms").unwrap();
    let names: Vec<&str> = all["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "web"], "every host's VMs");
    // A name is taken once in the cluster.
    let again = on_a.post::<_, Value>("/v1/vms", &json!({"name": "web", "start": false}));
    assert_eq!(status(again), 409);
    // Nothing fits: a network no host has.
    let none = on_b.post::<_, Value>(
        "/v1/vms",
        &json!({"name": "lost", "networks": ["nowhere"], "start": false}),
    );
    let why = message(none);
    assert!(
        why.contains("no host fits")
            && why.contains("a: no network admin/nowhere")
            && why.contains("c: no network"),
        "{why}"
    );
    // Stop and delete through a host that does not own it.
    on_a.post::<_, Value>("/v1/vms/web/stop", &json!({}))
        .unwrap();
    on_a.delete("/v1/vms/web").unwrap();
    assert_eq!(status(on_c.get("/v1/vms/web")), 404);

    // etcd stops: 503 with a clear message; the running VM runs on.
    let pid = a.vm_pids()[0];
    etcd.kill();
    let down = message(on_b.get::<Value>("/v1/vms/first"));
    assert!(
        down.contains("etcd") && down.contains("keep running"),
        "{down}"
    );
    assert_eq!(status(on_b.get("/v1/hosts")), 503);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the VM runs on without etcd"
    );
    // etcd back: the hosts register again and answer.
    etcd.run();
    wait_for("the cluster to converge", Duration::from_secs(30), || {
        on_b.get::<Value>("/v1/hosts")
            .map(|h| h["hosts"].as_array().map_or(0, |l| l.len()) == 3)
            .unwrap_or(false)
    });
    let first: Value = on_b.get("/v1/vms/first").unwrap();
    assert_eq!(first["state"], "running");

    // A host whose daemon dies: until its lease runs out, lists say it
    // did not answer; then it drops out.
    daemons[2].kill();
    let on_a = daemons[0].client(Some(token.clone()));
    let list: Value = on_a.get("/v1/vms").unwrap();
    assert_eq!(list["unreachable"], json!(["c"]), "{list}");
    wait_for("c's lease to expire", Duration::from_secs(15), || {
        host_names(&on_a) == ["a", "b"]
    });
}
