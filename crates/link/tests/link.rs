use link::{
    accept, connect, Frame, Link, LinkConfig, LinkError, LinkReceiver, LinkSender, Received,
    TlsIdentity, FRAME_HEADER_LEN, HIGH_WATER,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const CONFIG: LinkConfig = LinkConfig {
    magic: *b"LSTPTEST",
    version: 3,
    max_frame: 8 << 20,
    name: "test",
};
const TIMEOUT: Duration = Duration::from_secs(5);

type Pair = (Result<Link, LinkError>, Result<Link, LinkError>);

/// Connects a client to a server over loopback; returns (client, server).
fn try_pair(
    client: LinkConfig,
    server: LinkConfig,
    client_tls: Option<&TlsIdentity>,
    server_tls: Option<&TlsIdentity>,
) -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server_tls = server_tls.cloned();
    let server = thread::spawn(move || accept(&listener, &server, server_tls.as_ref(), TIMEOUT));
    let client = connect(&addr, &client, client_tls, TIMEOUT);
    (client, server.join().unwrap())
}

fn pair(tls: Option<(&TlsIdentity, &TlsIdentity)>) -> (Link, Link) {
    let (client, server) = try_pair(CONFIG, CONFIG, tls.map(|t| t.0), tls.map(|t| t.1));
    (client.unwrap(), server.unwrap())
}

/// `tls-init` of a node directory with the CA in `ca` (made if new).
fn init(node: &Path, ca: &Path) -> Result<bool, LinkError> {
    link::tls_init(&link::TlsInit {
        node_dir: node,
        ca_dir: ca,
        node_name: "test-node",
        days: 365,
    })
}

/// Where the tests keep the CA of the node directory `node`.
fn ca_of(node: &Path) -> std::path::PathBuf {
    let mut name = node.as_os_str().to_owned();
    name.push("-ca");
    name.into()
}

/// Two hosts sharing a CA.
fn two_hosts(root: &Path) -> (TlsIdentity, TlsIdentity) {
    let (a, b) = (root.join("a"), root.join("b"));
    init(&a, &ca_of(&a)).unwrap();
    init(&b, &ca_of(&a)).unwrap();
    (
        TlsIdentity::load(&a).unwrap(),
        TlsIdentity::load(&b).unwrap(),
    )
}

fn expect_frame(rx: &mut LinkReceiver) -> Frame {
    match rx.recv(TIMEOUT).unwrap() {
        Received::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// A 4 MiB frame, 10k small ones of varied sizes, and a 4 MiB frame again.
fn messages(seed: u8) -> Vec<(u8, Vec<u8>)> {
    let big = |salt: u8| (0..4 << 20).map(|i: u32| (i % 251) as u8 ^ salt).collect();
    let mut all = vec![(1, big(seed))];
    for i in 0u32..10_000 {
        let mut payload = i.to_le_bytes().to_vec();
        payload.resize((i % 37) as usize, seed);
        all.push((2 + (i % 3) as u8, payload));
    }
    all.push((9, big(seed.wrapping_add(1))));
    all
}

fn wire_bytes(messages: &[(u8, Vec<u8>)]) -> u64 {
    messages
        .iter()
        .map(|(_, p)| (FRAME_HEADER_LEN + p.len()) as u64)
        .sum()
}

fn exchange_both_ways(a: Link, b: Link) {
    let (a_tx, mut a_rx) = a.split();
    let (b_tx, mut b_rx) = b.split();
    let sender = |tx: LinkSender, seed| {
        thread::spawn(move || {
            for (kind, payload) in messages(seed) {
                tx.send(kind, &payload).unwrap();
            }
            tx
        })
    };
    let receiver = |mut rx: LinkReceiver, seed| {
        thread::spawn(move || {
            for (kind, payload) in messages(seed) {
                assert_eq!(expect_frame(&mut rx), Frame { kind, payload });
            }
            rx
        })
    };
    let sends = [sender(a_tx, 10), sender(b_tx, 20)];
    let (b_rx_done, a_rx_done) = (receiver(b_rx, 10), receiver(a_rx, 20));
    let [a_tx, b_tx] = sends.map(|s| s.join().unwrap());
    b_rx = b_rx_done.join().unwrap();
    a_rx = a_rx_done.join().unwrap();

    let total = wire_bytes(&messages(0));
    assert_eq!(a_tx.stats().bytes_sent(), total);
    assert_eq!(a_rx.stats().bytes_received(), total);
    assert_eq!(b_rx.stats().bytes_sent(), total);
    assert_eq!(b_tx.stats().bytes_received(), total);
    assert_eq!(a_tx.queued_bytes(), 0);

    a_tx.close();
    assert_eq!(b_rx.recv(TIMEOUT).unwrap(), Received::Closed);
    assert_eq!(a_rx.recv(TIMEOUT).unwrap(), Received::Closed);
    assert!(a_tx.send(1, b"late").is_err());
}

#[test]
fn plain_round_trip_both_ways() {
    let (a, b) = pair(None);
    exchange_both_ways(a, b);
}

#[test]
fn tls_round_trip_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (a_id, b_id) = two_hosts(dir.path());
    let (a, b) = pair(Some((&a_id, &b_id)));
    exchange_both_ways(a, b);
}

fn ping_pong(tls: Option<(&TlsIdentity, &TlsIdentity)>) {
    let (a, b) = pair(tls);
    let ((a_tx, mut a_rx), (b_tx, mut b_rx)) = (a.split(), b.split());
    let echo = thread::spawn(move || {
        while let Received::Frame(f) = b_rx.recv(TIMEOUT).unwrap() {
            b_tx.send(f.kind, &f.payload).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0u32..500 {
        a_tx.send(4, &i.to_le_bytes()).unwrap();
        assert_eq!(expect_frame(&mut a_rx).payload, i.to_le_bytes());
    }
    // Generous for a loaded machine; a pump that polls on a timer takes
    // tens of milliseconds per round trip.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    a_tx.close();
    echo.join().unwrap();
}

#[test]
fn frames_go_out_and_arrive_without_delay() {
    ping_pong(None);
    let dir = tempfile::tempdir().unwrap();
    let (a_id, b_id) = two_hosts(dir.path());
    ping_pong(Some((&a_id, &b_id)));
}

#[test]
fn recv_timeout_returns_nothing_promptly() {
    let (a, _b) = pair(None);
    let (_tx, mut rx) = a.split();
    let start = Instant::now();
    assert_eq!(
        rx.recv(Duration::from_millis(100)).unwrap(),
        Received::Nothing
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(1),
        "{took:?}"
    );
}

#[test]
fn sender_blocks_while_peer_does_not_read() {
    const FRAMES: usize = 48;
    let (a, b) = pair(None);
    let ((a_tx, _a_rx), (_b_tx, mut b_rx)) = (a.split(), b.split());
    let sent = Arc::new(AtomicUsize::new(0));
    let payload = vec![7u8; 1 << 20];
    let writer = {
        let (tx, sent) = (a_tx.clone(), sent.clone());
        thread::spawn(move || {
            for _ in 0..FRAMES {
                tx.send(1, &payload).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Once the peer's buffers and then our queue are full, send blocks.
    let deadline = Instant::now() + TIMEOUT;
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = sent.load(Ordering::SeqCst);
        if now == last && a_tx.queued_bytes() > HIGH_WATER {
            break;
        }
        assert!(Instant::now() < deadline, "the sender never stalled");
        last = now;
    }
    assert!(last < FRAMES && !writer.is_finished(), "{last}");

    for _ in 0..FRAMES {
        assert_eq!(expect_frame(&mut b_rx).payload.len(), 1 << 20);
    }
    writer.join().unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), FRAMES);
}

#[test]
fn blocked_sender_fails_when_the_peer_goes_away() {
    let (a, b) = pair(None);
    let (a_tx, _a_rx) = a.split();
    let writer = {
        let tx = a_tx.clone();
        thread::spawn(move || loop {
            if let Err(e) = tx.send(1, &[0; 1 << 20]) {
                return e;
            }
        })
    };
    let deadline = Instant::now() + TIMEOUT;
    while a_tx.queued_bytes() <= HIGH_WATER {
        assert!(Instant::now() < deadline, "the queue never filled");
        thread::sleep(Duration::from_millis(10));
    }
    drop(b);
    let err = writer.join().unwrap();
    assert!(matches!(err, LinkError::Down { .. }), "{err}");
    assert!(a_tx.is_dead());
}

#[test]
fn send_after_peer_closed_fails() {
    let (a, b) = pair(None);
    let ((a_tx, mut a_rx), (b_tx, _b_rx)) = (a.split(), b.split());
    b_tx.close();
    assert_eq!(a_rx.recv(TIMEOUT).unwrap(), Received::Closed);
    let err = a_tx.send(1, b"hello").unwrap_err();
    assert!(
        err.to_string().contains("the peer closed the connection"),
        "{err}"
    );
    assert!(a_tx.is_dead());
}

/// Runs a handshake expected to fail on both sides, quickly.
fn failing_pair(
    client: LinkConfig,
    server: LinkConfig,
    client_tls: Option<&TlsIdentity>,
    server_tls: Option<&TlsIdentity>,
) -> (String, String) {
    let start = Instant::now();
    let (c, s) = try_pair(client, server, client_tls, server_tls);
    assert!(start.elapsed() < TIMEOUT, "took {:?}", start.elapsed());
    let message = |r: Result<Link, LinkError>| match r {
        Ok(_) => panic!("the handshake succeeded"),
        Err(e) => e.to_string(),
    };
    (message(c), message(s))
}

#[test]
fn wrong_magic_is_refused() {
    let other = LinkConfig {
        magic: *b"SOMEELSE",
        ..CONFIG
    };
    let (c, s) = failing_pair(other, CONFIG, None, None);
    assert!(
        c.contains("is not a test endpoint (magic [4c, 53, 54"),
        "{c}"
    );
    assert!(
        s.contains("is not a test endpoint (magic [53, 4f, 4d"),
        "{s}"
    );
}

#[test]
fn wrong_version_is_refused() {
    let newer = LinkConfig {
        version: 4,
        ..CONFIG
    };
    let (c, s) = failing_pair(newer, CONFIG, None, None);
    assert!(c.contains("version 3, this endpoint speaks 4"), "{c}");
    assert!(s.contains("version 4, this endpoint speaks 3"), "{s}");
}

#[test]
fn oversize_frames_are_refused() {
    let small = LinkConfig {
        max_frame: 1000,
        ..CONFIG
    };
    let (c, s) = try_pair(CONFIG, small, None, None);
    let ((c_tx, _c_rx), (s_tx, mut s_rx)) = (c.unwrap().split(), s.unwrap().split());
    let err = s_tx.send(7, &[0; 1001]).unwrap_err();
    assert!(matches!(
        err,
        LinkError::FrameTooLarge {
            kind: 7,
            len: 1001,
            max: 1000
        }
    ));

    c_tx.send(7, &[0; 2000]).unwrap();
    let err = s_rx.recv(TIMEOUT).unwrap_err().to_string();
    assert!(err.contains("frame of kind 0x07 of 2000 bytes"), "{err}");
    // The error is reported once; then the link is down.
    assert_eq!(s_rx.recv(TIMEOUT).unwrap(), Received::Closed);
    assert!(s_tx.is_dead());
}

/// A hand-driven peer: accepts, swaps preambles, then does as told.
fn raw_peer(script: impl FnOnce(TcpStream) + Send + 'static) -> LinkReceiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut preamble = CONFIG.magic.to_vec();
        preamble.extend(CONFIG.version.to_le_bytes());
        stream.write_all(&preamble).unwrap();
        let mut theirs = [0; 10];
        stream.read_exact(&mut theirs).unwrap();
        assert_eq!(theirs[..], preamble[..]);
        script(stream);
    });
    let link = connect(&addr.to_string(), &CONFIG, None, TIMEOUT).unwrap();
    peer.join().unwrap();
    link.split().1
}

#[test]
fn close_mid_frame_is_an_error_and_at_a_boundary_is_closed() {
    let mut rx = raw_peer(|mut s| {
        s.write_all(&[3, 100, 0, 0, 0]).unwrap();
        s.write_all(&[1; 10]).unwrap();
    });
    let err = rx.recv(TIMEOUT).unwrap_err().to_string();
    assert!(err.contains("in the middle of a frame (15 bytes"), "{err}");

    let mut rx = raw_peer(|mut s| s.write_all(&[3, 2, 0, 0, 0, 8, 9]).unwrap());
    let frame = expect_frame(&mut rx);
    assert_eq!((frame.kind, frame.payload), (3, vec![8, 9]));
    assert_eq!(rx.recv(TIMEOUT).unwrap(), Received::Closed);
    assert_eq!(rx.stats().bytes_received(), 7);
}

#[test]
fn silent_peer_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let start = Instant::now();
    let err = connect(&addr, &CONFIG, None, Duration::from_millis(300))
        .err()
        .unwrap();
    assert!(matches!(err, LinkError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// A directory trusting CAs `trusted` whose node certificate comes from `node`.
fn mixed_dir(dir: &Path, trusted: &[&Path], node: &Path) -> TlsIdentity {
    std::fs::create_dir(dir).unwrap();
    let cas: Vec<u8> = trusted
        .iter()
        .flat_map(|d| std::fs::read(d.join("ca.pem")).unwrap())
        .collect();
    std::fs::write(dir.join("ca.pem"), cas).unwrap();
    for name in ["node.pem", "node.key"] {
        std::fs::copy(node.join(name), dir.join(name)).unwrap();
    }
    TlsIdentity::load(dir).unwrap()
}

#[test]
fn tls_refuses_a_client_from_another_ca() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    init(&one, &ca_of(&one)).unwrap();
    init(&two, &ca_of(&two)).unwrap();
    let server = TlsIdentity::load(&one).unwrap();
    // The client trusts the server's CA, but its own certificate is from another.
    let client = mixed_dir(&root.path().join("client"), &[&one, &two], &two);
    let (c, s) = failing_pair(CONFIG, CONFIG, Some(&client), Some(&server));
    let ca = one.join("ca.pem");
    assert!(
        s.contains(&format!(
            "TLS: the peer's certificate is not signed by this host's CA ({})",
            ca.display()
        )),
        "{s}"
    );
    assert!(
        c.contains("the peer rejected this host's certificate"),
        "{c}"
    );
}

#[test]
fn tls_refuses_a_server_from_another_ca() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    init(&one, &ca_of(&one)).unwrap();
    init(&two, &ca_of(&two)).unwrap();
    let client = TlsIdentity::load(&one).unwrap();
    let server = mixed_dir(&root.path().join("server"), &[&one, &two], &two);
    let (c, s) = failing_pair(CONFIG, CONFIG, Some(&client), Some(&server));
    let ca = one.join("ca.pem");
    assert!(
        c.contains(&format!(
            "TLS: the peer's certificate is not signed by this host's CA ({})",
            ca.display()
        )),
        "{c}"
    );
    assert!(
        s.contains("the peer rejected this host's certificate"),
        "{s}"
    );
}

#[test]
fn plain_and_tls_endpoints_refuse_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = two_hosts(dir.path());
    let (c, s) = failing_pair(CONFIG, CONFIG, None, Some(&a));
    assert!(
        c.contains("the peer speaks TLS, but TLS is not configured here"),
        "{c}"
    );
    assert!(s.contains("the peer does not speak TLS"), "{s}");

    let (c, s) = failing_pair(CONFIG, CONFIG, Some(&a), None);
    assert!(c.contains("the peer does not speak TLS"), "{c}");
    assert!(
        s.contains("the peer speaks TLS, but TLS is not configured here"),
        "{s}"
    );
}

fn load_error(dir: &Path) -> String {
    TlsIdentity::load(dir).err().unwrap().to_string()
}

#[test]
fn missing_or_garbage_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("good");
    init(&good, &ca_of(&good)).unwrap();
    let dir = root.path().join("bad");
    std::fs::create_dir(&dir).unwrap();

    let err = load_error(&dir);
    assert!(
        err.contains(&format!("reading {}", dir.join("ca.pem").display())),
        "{err}"
    );

    std::fs::write(dir.join("ca.pem"), "hello\n").unwrap();
    let err = load_error(&dir);
    assert!(err.ends_with("ca.pem: holds no PEM certificate"), "{err}");

    std::fs::write(
        dir.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("ca.pem: is not a valid PEM certificate file"),
        "{err}"
    );

    std::fs::copy(good.join("ca.pem"), dir.join("ca.pem")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains(&format!("reading {}", dir.join("node.pem").display())),
        "{err}"
    );

    std::fs::copy(good.join("node.pem"), dir.join("node.pem")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains(&format!("reading {}", dir.join("node.key").display())),
        "{err}"
    );

    std::fs::write(dir.join("node.key"), "not a key").unwrap();
    let err = load_error(&dir);
    assert!(err.ends_with("node.key: holds no PEM private key"), "{err}");

    // A key that does not belong to the certificate.
    std::fs::copy(ca_of(&good).join("ca.key"), dir.join("node.key")).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("node.key: is not the key of"), "{err}");

    // A node certificate from another CA.
    let other = root.path().join("other");
    init(&other, &ca_of(&other)).unwrap();
    std::fs::copy(other.join("node.pem"), dir.join("node.pem")).unwrap();
    std::fs::copy(other.join("node.key"), dir.join("node.key")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("node.pem: is not a node certificate signed by"),
        "{err}"
    );
}

#[test]
fn tls_init_makes_private_keys_and_joins_hosts() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    init(&a, &ca_of(&a)).unwrap();
    init(&b, &ca_of(&a)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for key in [
        ca_of(&a).join("ca.key"),
        a.join("node.key"),
        b.join("node.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&ca_of(&a)), 0o700);
    for node in [&a, &b] {
        assert!(
            !node.join("ca.key").exists(),
            "the CA key stays out of node directories"
        );
    }
    assert_eq!(
        std::fs::read(a.join("ca.pem")).unwrap(),
        std::fs::read(b.join("ca.pem")).unwrap()
    );
    assert_ne!(
        std::fs::read(a.join("node.pem")).unwrap(),
        std::fs::read(b.join("node.pem")).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let (a_id, b_id) = (
        TlsIdentity::load(&a).unwrap(),
        TlsIdentity::load(&b).unwrap(),
    );
    let (client, server) = pair(Some((&b_id, &a_id)));
    let ((c_tx, _c_rx), (_s_tx, mut s_rx)) = (client.split(), server.split());
    c_tx.send(5, b"joined").unwrap();
    assert_eq!(expect_frame(&mut s_rx).payload, b"joined");

    let before = std::fs::read(a.join("node.key")).unwrap();
    let err = init(&a, &ca_of(&a)).unwrap_err().to_string();
    assert!(
        err.contains("already exists; refusing to overwrite it"),
        "{err}"
    );
    let err = init(&b, &ca_of(&a)).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(a.join("node.key")).unwrap(), before);
}

#[test]
fn tls_init_checks_the_source_ca() {
    let root = tempfile::tempdir().unwrap();
    let (one, two, mixed) = (
        root.path().join("one"),
        root.path().join("two"),
        root.path().join("mixed"),
    );
    init(&one, &ca_of(&one)).unwrap();
    init(&two, &ca_of(&two)).unwrap();
    std::fs::create_dir(&mixed).unwrap();
    std::fs::copy(ca_of(&one).join("ca.pem"), mixed.join("ca.pem")).unwrap();
    std::fs::copy(ca_of(&two).join("ca.key"), mixed.join("ca.key")).unwrap();
    let target = root.path().join("target");
    let err = init(&target, &mixed).unwrap_err().to_string();
    assert!(
        err.contains("does not match") && err.contains("ca.key"),
        "{err}"
    );
    assert!(!target.exists());

    // A CA directory with a key but no certificate.
    let nowhere = root.path().join("nowhere");
    std::fs::create_dir(&nowhere).unwrap();
    std::fs::copy(ca_of(&one).join("ca.key"), nowhere.join("ca.key")).unwrap();
    let err = init(&target, &nowhere).unwrap_err().to_string();
    assert!(err.contains("nowhere/ca.pem"), "{err}");
}

/// Node certificates carry the node's own name and expire after the days
/// asked for (read back with openssl).
#[test]
fn node_certificates_name_the_node_and_expire() {
    let root = tempfile::tempdir().unwrap();
    let (node, ca) = (root.path().join("n"), root.path().join("ca"));
    link::tls_init(&link::TlsInit {
        node_dir: &node,
        ca_dir: &ca,
        node_name: "host-b",
        days: 30,
    })
    .unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-checkend"])
        .arg((29 * 86400).to_string())
        .arg("-in")
        .arg(node.join("node.pem"))
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CN = host-b"), "{text}");
    assert!(out.status.success(), "valid for 29 more days: {text}");
    let later = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend"])
        .arg((31 * 86400).to_string())
        .arg("-in")
        .arg(node.join("node.pem"))
        .output()
        .expect("run openssl");
    assert!(!later.status.success(), "expired within 31 days");
    let bad = link::tls_init(&link::TlsInit {
        node_dir: &root.path().join("m"),
        ca_dir: &ca,
        node_name: "",
        days: 30,
    });
    assert!(bad.is_err());
}
