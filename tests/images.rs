//! The image cache against the reference tools: images made with qemu-img,
//! gzip, xz and zstd (qcow2 v2 and v3, sparse raw, compressed raw) are
//! prepared by rackboot, and what it will put on a disk — its sparse raw
//! file — must equal `qemu-img convert -O raw` byte for byte, while only
//! the data extents count as what crosses the wire. URL images come from a
//! real HTTP server (python's): downloaded once, checked, reused; a
//! truncated download or a wrong checksum never becomes an image.

use rackboot::foundation::config::{ImageConfig, ImageMethod};
use rackboot::service::images::{Format, Images};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A 384 MiB disk image holding 40 MiB of data in three places (a
/// partition table at the start, data in the middle, a little at the end).
fn make_raw(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(384 << 20).unwrap();
    // Numbered lines: no block repeats, and xz compresses it quickly
    // (random bytes take it a minute).
    for (seek_mib, count_mib) in [(0, 1), (200, 32), (377, 7)] {
        run(Command::new("sh").arg("-c").arg(format!(
            "seq -f 'rackboot image line %.0f' {} 1e9 | dd of={} bs=1M iflag=fullblock conv=notrunc,sparse status=none seek={seek_mib} count={count_mib}",
            seek_mib * 100_000,
            raw.display()
        )));
    }
    raw
}

/// Whether two sparse raw files hold the same bytes: equal length, and
/// equal wherever either has data (holes read as zeros).
fn same_disk_bytes(a: &Path, b: &Path) -> bool {
    use rackboot::service::images::data_extents;
    use std::io::{Read, Seek, SeekFrom};
    let len = std::fs::metadata(a).unwrap().len();
    if len != std::fs::metadata(b).unwrap().len() {
        return false;
    }
    let read = |p: &Path, off: u64, n: u64| {
        let mut f = std::fs::File::open(p).unwrap();
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut v = vec![0u8; n as usize];
        f.read_exact(&mut v).unwrap();
        v
    };
    let mut ranges = data_extents(a).unwrap();
    ranges.extend(data_extents(b).unwrap());
    ranges
        .iter()
        .all(|&(off, n)| read(a, off, n) == read(b, off, n))
}

fn image(name: &str, file: &Path) -> ImageConfig {
    ImageConfig {
        os_version: name.into(),
        method: ImageMethod::Image,
        file: file.display().to_string(),
        url: String::new(),
        sha256: String::new(),
        sha512: String::new(),
        kernel: String::new(),
        initrd: String::new(),
        cmdline: String::new(),
        template: String::new(),
        first_boot_callback: false,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_format_becomes_what_qemu_img_convert_makes_and_only_data_counts() {
    let d = tempfile::tempdir().unwrap();
    let raw = make_raw(d.path());
    let reference = d.path().join("reference.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&raw)
        .arg(&reference));
    let q2 = d.path().join("v2.qcow2");
    let q3 = d.path().join("v3.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2", "-o", "compat=0.10"])
        .arg(&raw)
        .arg(&q2));
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2", "-c", "-o", "compat=1.1"])
        .arg(&raw)
        .arg(&q3));
    let mut compressed = Vec::new();
    for (tool, ext) in [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")] {
        let out = d.path().join(format!("src.{ext}"));
        run(Command::new("sh").arg("-c").arg(format!(
            "{tool} -c -1 {} > {}",
            raw.display(),
            out.display()
        )));
        // The name says nothing: the content decides.
        let hidden = d.path().join(format!("image-{ext}.img"));
        std::fs::rename(&out, &hidden).unwrap();
        compressed.push(hidden);
    }
    let images = Images::new(&d.path().join("state"));
    let rt = rt();
    let mut cases = vec![
        ("raw", raw.clone(), Format::Raw),
        ("qcow2-v2", q2, Format::Qcow2),
        ("qcow2-v3", q3, Format::Qcow2),
    ];
    for (p, f) in compressed
        .into_iter()
        .zip([Format::Gzip, Format::Xz, Format::Zstd])
    {
        cases.push(("compressed", p, f));
    }
    for (name, file, format) in cases {
        let mut img = image(name, &file);
        img.sha256 = sha256(&file);
        let p = rt
            .block_on(images.prepare(&img, |_| {}))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.format, format, "{name}");
        assert_eq!(p.virtual_size, 384 << 20, "{name}");
        assert!(
            same_disk_bytes(&p.raw, &reference),
            "{name}: not what qemu-img convert makes"
        );
        // Only the data crosses the wire: 40 MiB (and the small gaps folded
        // into extents), not 384 MiB.
        assert!(
            p.data_bytes >= 40 << 20 && p.data_bytes < 48 << 20,
            "{name}: {} bytes of data in {:?}",
            p.data_bytes,
            p.extents
        );
        // Ready from the cache next time, without work.
        assert_eq!(images.ready(&img), Some(p), "{name}");
    }
    // A wrong checksum is refused before anything is converted.
    let mut bad = image("bad", &raw);
    bad.sha256 = "ab".repeat(32);
    let e = rt.block_on(images.prepare(&bad, |_| {})).unwrap_err();
    assert!(e.contains("sha256 mismatch"), "{e}");
    assert!(images.ready(&bad).is_none());
}

/// A python HTTP server on loopback serving `dir`; with `lie`, it claims
/// twice the length of every file (a download that breaks off).
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, lie: bool) -> Server {
        let script = format!(
            r#"
import http.server, os, sys, socketserver
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(s, *a, **k): super().__init__(*a, directory={dir:?}, **k)
    def log_message(s, *a): pass
    def send_header(s, k, v):
        if {lie} and k == "Content-Length": v = str(int(v) * 2)
        super().send_header(k, v)
with socketserver.TCPServer(("127.0.0.1", 0), H) as srv:
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
"#,
            dir = dir.display().to_string(),
            lie = if lie { "True" } else { "False" }
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        Server {
            port: line.trim().parse().unwrap(),
            child,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_url_image_is_downloaded_once_checked_and_a_bad_download_never_becomes_an_image() {
    let d = tempfile::tempdir().unwrap();
    let raw = make_raw(d.path());
    let served = d.path().join("www");
    std::fs::create_dir(&served).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(served.join("disk.qcow2")));
    let sum = sha256(&served.join("disk.qcow2"));
    let images = Images::new(&d.path().join("state"));
    let rt = rt();
    let good = Server::start(&served, false);
    let mut img = image("url", Path::new(""));
    img.file = String::new();
    img.url = format!("http://127.0.0.1:{}/disk.qcow2", good.port);
    img.sha256 = sum.clone();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    let p = rt
        .block_on(images.prepare(&img, move |l| seen.lock().unwrap().push(l)))
        .unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("downloading: 100%") && log.contains("checksum verified"),
        "{log}"
    );
    assert_eq!(p.format, Format::Qcow2);
    // Reused: with the server gone, the cache answers.
    drop(good);
    let again = rt.block_on(images.prepare(&img, |_| {})).unwrap();
    assert_eq!(again, p);
    // A changed checksum in the config is another image: fetched anew (and
    // here the server is gone, so it fails, saying why).
    let mut changed = img.clone();
    changed.sha256 = "cd".repeat(32);
    let e = rt.block_on(images.prepare(&changed, |_| {})).unwrap_err();
    assert!(e.contains("cannot download"), "{e}");
    // A truncated download never becomes an image.
    let liar = Server::start(&served, true);
    let mut trunc = img.clone();
    trunc.url = format!("http://127.0.0.1:{}/disk.qcow2", liar.port);
    trunc.sha256 = "ef".repeat(32);
    let e = rt.block_on(images.prepare(&trunc, |_| {})).unwrap_err();
    assert!(e.contains("truncated") || e.contains("broke off"), "{e}");
    assert!(images.ready(&trunc).is_none());
    // The right content under a wrong checksum neither.
    let mut wrong = img.clone();
    wrong.url = format!("http://127.0.0.1:{}/disk.qcow2", liar.port);
    wrong.sha512 = "01".repeat(64);
    wrong.sha256 = String::new();
    let e = rt.block_on(images.prepare(&wrong, |_| {})).unwrap_err();
    assert!(!e.is_empty() && images.ready(&wrong).is_none(), "{e}");
}

#[test]
fn a_url_image_without_a_checksum_is_refused_when_the_config_loads() {
    let e = rackboot::foundation::config::Config::parse(
        "[[images]]\nos_version = \"web\"\nurl = \"https://example.org/debian.qcow2\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("images[0].sha256") && e.contains("sha256 or sha512"),
        "{e}"
    );
    assert!(rackboot::foundation::config::Config::parse(
        "[[images]]\nos_version = \"web\"\nurl = \"https://example.org/debian.qcow2\"\nsha512 = \"{}\"\n"
            .replace("{}", &"0".repeat(128))
            .as_str(),
    )
    .is_ok());
}
