//! The TFTP server against real clients on loopback: curl (blksize),
//! atftp (blksize, windowsize) and tftp-hpa (plain RFC 1350) fetch
//! byte-identical files; traversal attempts are refused without naming
//! server paths; what a client may negotiate is capped; garbage does not
//! stop the server.

use rackboot::foundation::tftp::Limits;
use rackboot::transport::pxe::tftp::{serve, TftpSettings};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Server {
    root: tempfile::TempDir,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Server {
    fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        // 3 MiB + 7 bytes of pseudo-random data: many blocks, a short last one,
        // more than 65535 blocks of 512 bytes (block numbers wrap).
        let mut x: u32 = 1;
        let big: Vec<u8> = (0..(3 * 1024 * 1024 + 7))
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        std::fs::write(root.path().join("big.img"), &big).unwrap();
        std::fs::write(root.path().join("exact.bin"), vec![7u8; 1468 * 4]).unwrap();
        std::fs::write(root.path().join("my..file"), "two dots are fine\n").unwrap();
        std::fs::create_dir(root.path().join("pxelinux.cfg")).unwrap();
        std::fs::write(root.path().join("pxelinux.cfg/default"), "DEFAULT local\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.path().join("escape")).unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = CancellationToken::new();
        let settings = TftpSettings {
            root: root.path().to_path_buf(),
            limits: Limits {
                max_blksize: 1468,
                max_windowsize: 16,
            },
            max_transfers: 32,
            max_per_client: 32,
            retries: 5,
            report: None,
            generate: None,
            named: None,
        };
        let token = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let sock = tokio::net::UdpSocket::from_std(sock).unwrap();
                serve(sock, settings, token).await.unwrap();
            });
        });
        Server { root, addr, stop }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root.path().join(name)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run.sh installs curl, atftp, tftp-hpa)"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn curl_atftp_and_tftp_hpa_fetch_identical_files() {
    let s = Server::start();
    let out = tempfile::tempdir().unwrap();
    let port = s.addr.port().to_string();
    for (name, blksize) in [
        ("big.img", "1468"),
        ("exact.bin", "1468"),
        ("my..file", "512"),
    ] {
        let dest = out.path().join(format!("curl-{name}"));
        let (ok, log) = run(Command::new("curl")
            .args(["-sS", "--max-time", "60", "--tftp-blksize", blksize, "-o"])
            .arg(&dest)
            .arg(format!("tftp://127.0.0.1:{port}/{name}")));
        assert!(ok, "curl {name}: {log}");
        assert!(
            std::fs::read(&dest).unwrap() == s.file(name),
            "curl copy of {name} differs"
        );
    }
    for opts in [
        vec!["--option", "blksize 1468"],
        vec!["--option", "blksize 1468", "--option", "windowsize 16"],
        vec![],
    ] {
        let dest = out.path().join("atftp-big");
        let _ = std::fs::remove_file(&dest);
        let (ok, log) = run(Command::new("atftp")
            .args(&opts)
            .args(["-g", "-r", "big.img", "-l"])
            .arg(&dest)
            .args(["127.0.0.1", &port]));
        assert!(
            ok && std::fs::read(&dest).unwrap() == s.file("big.img"),
            "atftp {opts:?}: {log}"
        );
    }
    let dest = out.path().join("hpa-default");
    let (ok, log) = run(Command::new("tftp")
        .args([
            "127.0.0.1",
            &port,
            "-m",
            "binary",
            "-c",
            "get",
            "/pxelinux.cfg/default",
        ])
        .arg(&dest));
    assert!(
        ok && std::fs::read(&dest).unwrap() == s.file("pxelinux.cfg/default"),
        "tftp-hpa: {log}"
    );
}

#[test]
fn traversal_attempts_are_refused_without_naming_server_paths() {
    let s = Server::start();
    let port = s.addr.port();
    let out = tempfile::tempdir().unwrap();
    for name in [
        "../etc/passwd",
        "pxelinux.cfg/../../etc/passwd",
        "/etc/passwd",
        "escape",
        "missing",
    ] {
        let dest = out.path().join("x");
        let (ok, log) = run(Command::new("curl")
            .args(["-sS", "--path-as-is", "--max-time", "10", "-o"])
            .arg(&dest)
            .arg(format!("tftp://127.0.0.1:{port}/{name}")));
        assert!(!ok, "{name} was served: {log}");
        assert!(
            !log.contains(s.root.path().to_str().unwrap()) && !log.contains("/tmp"),
            "{log}"
        );
        let got = std::fs::read(&dest).unwrap_or_default();
        assert!(got.is_empty(), "{name}: got {} bytes", got.len());
    }
}

#[test]
fn negotiation_is_capped_and_garbage_is_ignored() {
    let s = Server::start();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Garbage first: the server must still answer afterwards.
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x01no-terminator",
        b"\x00\x09",
        &[0xffu8; 600],
    ] {
        client.send_to(junk, s.addr).unwrap();
    }
    let mut rrq = vec![0u8, 1];
    for part in [
        "big.img",
        "octet",
        "blksize",
        "65464",
        "windowsize",
        "65535",
        "tsize",
        "0",
    ] {
        rrq.extend_from_slice(part.as_bytes());
        rrq.push(0);
    }
    client.send_to(&rrq, s.addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = client.recv_from(&mut buf).expect("an OACK");
    assert_eq!(&buf[..2], &[0, 6], "expected OACK, got {:?}", &buf[..n]);
    let text: Vec<String> = buf[2..n]
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).to_string())
        .collect();
    let value = |k: &str| {
        text.iter()
            .position(|x| x == k)
            .map(|i| text[i + 1].clone())
    };
    assert_eq!(value("blksize").as_deref(), Some("1468"));
    assert_eq!(value("windowsize").as_deref(), Some("16"));
    assert_eq!(value("tsize"), Some(s.file("big.img").len().to_string()));
    // A write request is refused: the server is read-only.
    let mut wrq = vec![0u8, 2];
    wrq.extend_from_slice(b"upload\0octet\0");
    client.send_to(&wrq, s.addr).unwrap();
    loop {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        if buf[..2] == [0, 5] {
            assert!(String::from_utf8_lossy(&buf[4..n]).contains("read-only"));
            break;
        }
    }
}
