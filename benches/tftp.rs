//! TFTP benchmark (`cargo bench --bench tftp`; needs root for dnsmasq's
//! port 69, and atftp, tftpd-hpa, dnsmasq installed — without starting their
//! services). The same atftp client fetches from rackboot's TFTP server (in
//! this process), tftpd-hpa and dnsmasq on loopback:
//! a 64 MiB file with blksize 1468, the same with windowsize 16 (neither
//! reference supports windowsize: they answer without it), and 20 concurrent
//! fetches of a 32 MiB file. Prints MiB/s and rackboot's ratio to each.

use rackboot::foundation::tftp::Limits;
use rackboot::transport::pxe::tftp::{serve, TftpSettings};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn fetch(addr: &str, port: u16, file: &str, dest: &Path, options: &[&str]) -> bool {
    let mut c = Command::new("atftp");
    for o in options {
        c.args(["--option", o]);
    }
    c.args(["-g", "-r", file, "-l"])
        .arg(dest)
        .args([addr, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// MiB/s of `parallel` fetches of `file` at once (0 when any failed).
fn measure(
    addr: &str,
    port: u16,
    file: &str,
    mib: f64,
    options: &[&str],
    parallel: usize,
    out: &Path,
) -> f64 {
    let t = Instant::now();
    let handles: Vec<_> = (0..parallel)
        .map(|i| {
            let (addr, file, dest) = (
                addr.to_string(),
                file.to_string(),
                out.join(format!("{port}-{i}")),
            );
            let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
            std::thread::spawn(move || {
                let opts: Vec<&str> = options.iter().map(String::as_str).collect();
                fetch(&addr, port, &file, &dest, &opts)
            })
        })
        .collect();
    let ok = handles.into_iter().all(|h| h.join().unwrap_or(false));
    if ok {
        mib * parallel as f64 / t.elapsed().as_secs_f64()
    } else {
        0.0
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut x: u32 = 5;
    let data: Vec<u8> = (0..64 * 1024 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(root.join("64m.img"), &data).unwrap();
    std::fs::write(root.join("32m.img"), &data[..32 * 1024 * 1024]).unwrap();
    for p in [dir.path(), root.as_path()] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    // rackboot
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let rb_port = sock.local_addr().unwrap().port();
    let settings = TftpSettings {
        root: root.clone(),
        limits: Limits {
            max_blksize: 1468,
            max_windowsize: 64,
        },
        max_transfers: 64,
        max_per_client: 64,
        retries: 5,
        report: None,
        generate: None,
        named: None,
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sock = tokio::net::UdpSocket::from_std(sock).unwrap();
            let _ = serve(sock, settings, tokio_util::sync::CancellationToken::new()).await;
        });
    });
    // tftpd-hpa
    let hpa_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _hpa = Kill(
        Command::new("in.tftpd")
            .args([
                "-L",
                "-u",
                "root",
                "-s",
                "-a",
                &format!("127.0.0.1:{hpa_port}"),
            ])
            .arg(&root)
            .stderr(Stdio::null())
            .spawn()
            .expect("tftpd-hpa (in.tftpd) must be installed"),
    );
    // dnsmasq: TFTP only (DNS off), on 127.0.0.3:69.
    let _dnsmasq = Kill(
        Command::new("dnsmasq")
            .args([
                "-k",
                "-C",
                "/dev/null",
                "--port=0",
                "--enable-tftp",
                "--listen-address=127.0.0.3",
                "--bind-interfaces",
                "--user=root",
                "--group=root",
            ])
            .arg(format!("--tftp-root={}", root.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed"),
    );
    std::thread::sleep(Duration::from_millis(500)); // let both reference servers bind
    println!("TFTP benchmark (atftp client, loopback; MiB/s, higher is better)");
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "case", "rackboot", "tftpd-hpa", "dnsmasq", "vs hpa", "vs dnsm"
    );
    let cases: [(&str, &str, f64, Vec<&str>, usize); 3] = [
        (
            "64 MiB, blksize 1468",
            "64m.img",
            64.0,
            vec!["blksize 1468"],
            1,
        ),
        (
            "64 MiB, blksize 1468 + windowsize 16",
            "64m.img",
            64.0,
            vec!["blksize 1468", "windowsize 16"],
            1,
        ),
        (
            "20 x 32 MiB concurrent, blksize 1468",
            "32m.img",
            32.0,
            vec!["blksize 1468"],
            20,
        ),
    ];
    for (name, file, mib, opts, parallel) in cases {
        let rb = measure("127.0.0.1", rb_port, file, mib, &opts, parallel, &out);
        let hpa = measure("127.0.0.1", hpa_port, file, mib, &opts, parallel, &out);
        let dm = measure("127.0.0.3", 69, file, mib, &opts, parallel, &out);
        let ratio = |r: f64| {
            if r > 0.0 {
                format!("{:.2}x", rb / r)
            } else {
                "failed".into()
            }
        };
        println!(
            "{name:<40} {rb:>10.1} {hpa:>10.1} {dm:>10.1} {:>8} {:>8}",
            ratio(hpa),
            ratio(dm)
        );
    }
}
