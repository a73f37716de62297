//! HTTP boot-server benchmark (`cargo bench --bench http`).
//!
//! The issue's goal: "50 concurrent fetches of a 32 MiB kernel-sized file vs
//! nginx (Debian) on the same file: ≥ 80 % of nginx".
//!
//! Needs root (it creates network namespaces) and Debian's `nginx-light`
//! (or any nginx), `wrk`, `curl` and iproute2 installed; nginx's own service
//! is never started. Nothing touches a real interface: a server namespace
//! `rbb-hsrv-<pid>` (veth `rb-srv`, 10.99.0.1/24) and a client namespace
//! `rbb-hcli-<pid>` (veth `cli0`, 10.99.0.2/24), both deleted on exit (and
//! on panic).
//!
//! In the server namespace, one 32 MiB file is served by rackboot (as the
//! `[[images]]` file of os_version `bench`: `GET :8080/images/bench/image`,
//! the full PXE responder on `rb-srv`, TFTP off) and by nginx (Debian's
//! defaults that matter: sendfile on, `worker_processes auto`; on :8081).
//! From the client namespace, the same load runs against each in turn
//! (rackboot, nginx, rackboot, nginx; the best of the two runs counts):
//!
//! - `wrk -t2 -c50 -d8s`: MiB/s = Requests/sec × 32 (and wrk's Transfer/sec);
//! - 50 `curl -s -o /dev/null` processes started at once, each fetching the
//!   file once: total bytes ÷ wall time.
//!
//! Prints a table (client, rackboot MiB/s, nginx MiB/s, ratio, goal met),
//! and rackboot's peak RSS (VmHWM). On 2 cores the clients themselves are a
//! large part of the load: the figures are a lower bound on both servers.

#[path = "common/netns.rs"]
mod netns;
use netns::{Netns, Server};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILE_MIB: u64 = 32;
const FILE_BYTES: u64 = FILE_MIB * 1024 * 1024;
const CLIENTS: usize = 50;
const WRK_SECONDS: u32 = 8;
const ROUNDS: usize = 2;
const GOAL: f64 = 0.80;
const SRV_IP: &str = "10.99.0.1";
const RACKBOOT_PORT: u16 = 8080;
const NGINX_PORT: u16 = 8081;

/// Deterministic, incompressible-looking bytes (no page of zeros).
fn write_file(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// HTTP status of a HEAD request from the client namespace (0: no answer).
fn probe(cli: &Netns, url: &str) -> u16 {
    cli.command("curl")
        .args([
            "-s",
            "-I",
            "-o",
            "/dev/null",
            "-m",
            "2",
            "-w",
            "%{http_code}",
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `url` answers 200, or panics with `log`'s content.
fn wait_ready(cli: &Netns, url: &str, server: &mut Server, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{} exited early ({status}):\n{}",
                server.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if probe(cli, url) == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not answering 200 in 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_rackboot(srv: &Netns, cli: &Netns, dir: &Path, file: &Path) -> Server {
    let state = dir.join("rackboot-state");
    std::fs::create_dir_all(&state).unwrap();
    let boot_files = dir.join("boot-files");
    std::fs::create_dir_all(&boot_files).unwrap();
    let conf = dir.join("rackboot.toml");
    std::fs::write(
        &conf,
        format!(
            "[dhcp]\ninterface = \"rb-srv\"\nrange_start = \"10.99.0.100\"\nrange_end = \"10.99.0.199\"\n\
             router_advertisement = false\n[tftp]\nenabled = false\n[boot]\nfiles_dir = \"{}\"\n\
             [http]\nport = {RACKBOOT_PORT}\n[ipmi]\npower_sync_interval = 0\n\
             [[images]]\nos_version = \"bench\"\nfile = \"{}\"\n",
            boot_files.display(),
            file.display()
        ),
    )
    .unwrap();
    let log = dir.join("rackboot.log");
    let child = srv
        .command(env!("CARGO_BIN_EXE_rackboot"))
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .arg("--state-dir")
        .arg(&state)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rackboot");
    let mut s = Server::new("rackboot", child);
    wait_ready(cli, &rackboot_url(), &mut s, &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("PXE services listening"), "{text}");
    s
}

fn start_nginx(srv: &Netns, cli: &Netns, dir: &Path, root: &Path) -> Server {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = prefix.join("nginx.conf");
    let error_log = prefix.join("error.log");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\npid {pid};\nerror_log {err};\n\
             events {{}}\n\
             http {{\n  sendfile on;\n  access_log off;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
               fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n\
               scgi_temp_path {tmp}/scgi;\n\
               server {{\n    listen {SRV_IP}:{NGINX_PORT};\n    root {root};\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            err = error_log.display(),
            tmp = prefix.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let child = srv
        .command("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(prefix.join("stderr.log")).unwrap())
        .spawn()
        .expect("nginx (Debian nginx-light) must be installed");
    let mut s = Server::new("nginx", child);
    wait_ready(cli, &nginx_url(), &mut s, &error_log);
    s
}

fn rackboot_url() -> String {
    format!("http://{SRV_IP}:{RACKBOOT_PORT}/images/bench/image")
}

fn nginx_url() -> String {
    format!("http://{SRV_IP}:{NGINX_PORT}/kernel.bin")
}

/// wrk's "Transfer/sec" value ("1.42GB") in MiB/s.
fn parse_size_mib(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit {
        "B" | "" => 1.0 / (1024.0 * 1024.0),
        "KB" => 1.0 / 1024.0,
        "MB" => 1.0,
        "GB" => 1024.0,
        "TB" => 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * factor)
}

#[derive(Debug, Clone, Copy, Default)]
struct WrkRun {
    /// Requests/sec × file size.
    mib_s: f64,
    req_s: f64,
    /// wrk's own Transfer/sec (headers included), MiB/s.
    transfer_mib_s: f64,
    errors: u64,
}

fn run_wrk(cli: &Netns, url: &str) -> WrkRun {
    let out = cli
        .command("wrk")
        .args([
            "-t2",
            &format!("-c{CLIENTS}"),
            &format!("-d{WRK_SECONDS}s"),
            "--timeout",
            "30s",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("wrk must be installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = WrkRun::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            run.req_s = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Transfer/sec:") {
            run.transfer_mib_s = parse_size_mib(v).unwrap_or(0.0);
        } else if l.starts_with("Non-2xx or 3xx responses:") || l.starts_with("Socket errors:") {
            // "Socket errors: connect 0, read 0, write 0, timeout 0"
            run.errors += l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    run.mib_s = run.req_s * FILE_MIB as f64;
    if run.errors > 0 {
        eprintln!("wrk against {url} reported errors:\n{text}");
    }
    run
}

#[derive(Debug, Clone, Copy, Default)]
struct CurlRun {
    mib_s: f64,
    seconds: f64,
    failed: usize,
}

/// `count` curl processes at once, one fetch each: total bytes ÷ wall time.
fn run_curls(cli: &Netns, url: &str, count: usize) -> CurlRun {
    let t = Instant::now();
    let children: Vec<Child> = (0..count)
        .map(|_| {
            cli.command("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-m",
                    "60",
                    "-w",
                    "%{http_code} %{size_download}",
                    url,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("curl must be installed")
        })
        .collect();
    let mut bytes = 0u64;
    let mut failed = 0;
    for c in children {
        let out = c.wait_with_output().expect("wait for curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut f = text.split_whitespace();
        let code = f.next().unwrap_or("");
        let size: u64 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if !out.status.success() || code != "200" || size != FILE_BYTES {
            failed += 1;
        }
        bytes += size;
    }
    let seconds = t.elapsed().as_secs_f64();
    CurlRun {
        mib_s: bytes as f64 / (1024.0 * 1024.0) / seconds,
        seconds,
        failed,
    }
}

/// VmHWM and VmRSS of `pid` in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} must be installed (Debian packages nginx-light, wrk, curl)"
    );
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the HTTP bench creates network namespaces: run it as root"
    );
    for p in ["nginx", "wrk", "curl"] {
        require(p);
    }
    let dir = tempfile::Builder::new()
        .prefix("rbb-http-")
        .tempdir()
        .unwrap();
    // nginx workers run as www-data: they must be able to read the file.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let www: PathBuf = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let file = www.join("kernel.bin");
    write_file(&file, FILE_BYTES);

    let srv = Netns::new("hsrv");
    let cli = Netns::new("hcli");
    srv.veth_to(&cli, &format!("{SRV_IP}/24"), "10.99.0.2/24");

    let rackboot = start_rackboot(&srv, &cli, dir.path(), &file);
    let nginx = start_nginx(&srv, &cli, dir.path(), &www);
    let nginx_version = Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    println!(
        "HTTP: {CLIENTS} concurrent fetches of a {FILE_MIB} MiB file, veth between two namespaces, \
         {} cores; rackboot vs {nginx_version} (sendfile on)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  rackboot: {}", rackboot_url());
    println!("  nginx:    {}\n", nginx_url());

    // One fetch from each first (page cache, lazily opened files).
    run_curls_once(&cli, &rackboot_url());
    run_curls_once(&cli, &nginx_url());

    let mut wrk_best = [WrkRun::default(); 2];
    let mut curl_best = [CurlRun::default(); 2];
    println!(
        "{:<6} {:<28} {:<9} {:>10} {:>10} {:>14} {:>7}",
        "round", "client", "server", "MiB/s", "req/s", "wrk Transfer", "errors"
    );
    for round in 1..=ROUNDS {
        for (i, (name, url)) in [("rackboot", rackboot_url()), ("nginx", nginx_url())]
            .iter()
            .enumerate()
        {
            let w = run_wrk(&cli, url);
            println!(
                "{round:<6} {:<28} {name:<9} {:>10.0} {:>10.1} {:>10.0} MiB/s {:>7}",
                format!("wrk -t2 -c{CLIENTS} -d{WRK_SECONDS}s"),
                w.mib_s,
                w.req_s,
                w.transfer_mib_s,
                w.errors
            );
            if w.mib_s > wrk_best[i].mib_s {
                wrk_best[i] = w;
            }
        }
        for (i, (name, url)) in [("rackboot", rackboot_url()), ("nginx", nginx_url())]
            .iter()
            .enumerate()
        {
            let c = run_curls(&cli, url, CLIENTS);
            println!(
                "{round:<6} {:<28} {name:<9} {:>10.0} {:>10} {:>14} {:>7}",
                format!("{CLIENTS} × curl, once each"),
                c.mib_s,
                format!("{:.2} s", c.seconds),
                "",
                c.failed
            );
            if c.failed == 0 && c.mib_s > curl_best[i].mib_s {
                curl_best[i] = c;
            }
        }
    }

    let (hwm, rss) = memory_kib(rackboot.pid());
    rackboot.stop();
    nginx.stop();

    println!(
        "\nBest of {ROUNDS} (goal: rackboot ≥ {:.0} % of nginx)",
        GOAL * 100.0
    );
    println!(
        "{:<28} {:>14} {:>14} {:>9}  goal",
        "client", "rackboot MiB/s", "nginx MiB/s", "ratio"
    );
    let rows = [
        (
            format!("wrk -t2 -c{CLIENTS} -d{WRK_SECONDS}s"),
            wrk_best[0].mib_s,
            wrk_best[1].mib_s,
        ),
        (
            format!("{CLIENTS} × curl, once each"),
            curl_best[0].mib_s,
            curl_best[1].mib_s,
        ),
    ];
    for (client, r, n) in rows {
        let ratio = if n > 0.0 { r / n } else { 0.0 };
        println!(
            "{client:<28} {r:>14.0} {n:>14.0} {:>8.0} %  {}",
            ratio * 100.0,
            if ratio >= GOAL { "met" } else { "NOT met" }
        );
    }
    println!(
        "\nrackboot memory after the runs: VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}

/// One untimed fetch (warm-up); a failure is fatal.
fn run_curls_once(cli: &Netns, url: &str) {
    let c = run_curls(cli, url, 1);
    assert_eq!(c.failed, 0, "warm-up fetches of {url} failed");
}
