//! The image cache: what an `[[images]]` entry of method `image` becomes
//! before any node gets it. Under `<state_dir>/images/<key>/`:
//!
//! 1. the source: a local `file` is read where it is; a `url` is downloaded
//!    once (`source.part`, then `source`), with progress, and checked
//!    against its `sha256` or `sha512` before anything else happens (a
//!    truncated or failed download never goes further); a local file with a
//!    checksum is checked once;
//! 2. its format, from its first bytes (not its name): qcow2 (v2, v3) is
//!    converted with `qemu-img convert -O raw` (the reference for what the
//!    disk must hold), gzip/xz/zstd are decompressed, each into a sparse
//!    raw file (`image.raw`, all-zero 64 KiB blocks left as holes); a raw
//!    file is used as it is;
//! 3. its data extents (`SEEK_DATA`/`SEEK_HOLE`), their total and the
//!    SHA-256 of their bytes in order, in `manifest.json`, written last:
//!    its presence means "ready".
//!
//! The key is a hash of what identifies the source (its URL and checksum,
//! or its path, size and modification time), so a changed checksum in the
//! config, or a changed file, prepares anew; entries no configured image
//! uses any more are removed. The HTTP boot server serves `image.raw`
//! ([`Images::ready`]); the deploy ramdisk fetches only the extents and
//! zeroes the holes.

use crate::foundation::config::{ImageConfig, ImageMethod};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An image's format, from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Qcow2,
    Gzip,
    Xz,
    Zstd,
}

impl Format {
    /// What the first bytes of a file say it is (anything else is raw).
    pub fn detect(head: &[u8]) -> Format {
        if head.starts_with(b"QFI\xfb") {
            Format::Qcow2
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Format::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else {
            Format::Raw
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
        }
    }
}

/// A prepared image: what the HTTP server serves and the plan names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The sparse raw file served as `/images/<v>/image`.
    pub raw: PathBuf,
    /// What the source was.
    pub format: Format,
    /// The disk bytes the image covers (a qcow2's virtual size).
    pub virtual_size: u64,
    /// (offset, length) of every data extent, in order.
    pub extents: Vec<(u64, u64)>,
    /// Bytes in the extents: what crosses the wire.
    pub data_bytes: u64,
    /// SHA-256 of the extents' bytes in order.
    pub digest: String,
}

/// The cache.
pub struct Images {
    dir: PathBuf,
    /// One preparation of a key at a time; the others wait for it.
    busy: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Bytes of zeros left as a hole when decompressing.
const HOLE: usize = 64 * 1024;

impl Images {
    pub fn new(state_dir: &Path) -> Images {
        Images {
            dir: state_dir.join("images"),
            busy: Mutex::new(HashMap::new()),
        }
    }

    /// The cache key of `image` (what identifies its source now).
    pub fn key(image: &ImageConfig) -> String {
        let mut h = Sha256::new();
        h.update(b"rackboot image v1\n");
        if image.file.is_empty() {
            h.update(image.url.as_bytes());
        } else {
            h.update(image.file.as_bytes());
            if let Ok(m) = std::fs::metadata(&image.file) {
                h.update(m.len().to_le_bytes());
                if let Ok(t) = m.modified() {
                    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    h.update(d.as_nanos().to_le_bytes());
                }
            }
        }
        h.update(b"\n");
        h.update(image.sha256.to_ascii_lowercase().as_bytes());
        h.update(b"\n");
        h.update(image.sha512.to_ascii_lowercase().as_bytes());
        hex(&h.finalize())[..32].to_string()
    }

    fn entry(&self, image: &ImageConfig) -> PathBuf {
        self.dir.join(Images::key(image))
    }

    /// The prepared form of `image`, when it is ready.
    pub fn ready(&self, image: &ImageConfig) -> Option<Prepared> {
        let text = std::fs::read_to_string(self.entry(image).join("manifest.json")).ok()?;
        let p: Prepared = serde_json::from_str(&text).ok()?;
        p.raw.is_file().then_some(p)
    }

    /// Prepares `image` (see the module doc) unless it is ready; `log` hears
    /// what is done (download progress, conversion), for the job's log.
    pub async fn prepare(
        &self,
        image: &ImageConfig,
        log: impl Fn(String) + Send + Sync + 'static,
    ) -> Result<Prepared, String> {
        if image.method != ImageMethod::Image {
            return Err(format!(
                "{} is an installer, not an image",
                image.os_version
            ));
        }
        let key = Images::key(image);
        let gate = self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        if let Some(p) = self.ready(image) {
            return Ok(p);
        }
        let (dir, image) = (self.dir.join(&key), image.clone());
        tokio::task::spawn_blocking(move || prepare_blocking(&dir, &image, &log))
            .await
            .map_err(|e| format!("image preparation stopped: {e}"))?
    }

    /// Removes cache entries that none of `images` uses.
    pub fn prune(&self, images: &[ImageConfig]) {
        let keep: Vec<String> = images.iter().map(Images::key).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) && e.path().is_dir() {
                tracing::info!(entry = %name, "image cache: removing an entry no image uses");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn prepare_blocking(
    dir: &Path,
    image: &ImageConfig,
    log: &dyn Fn(String),
) -> Result<Prepared, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the image cache {}: {e}", dir.display()))?;
    let source = if image.file.is_empty() {
        download(dir, image, log)?
    } else {
        let path = PathBuf::from(&image.file);
        if !image.sha256.is_empty() || !image.sha512.is_empty() {
            log(format!("checking the checksum of {}", image.file));
            verify(&path, image)?;
        }
        path
    };
    let mut head = [0u8; 8];
    let n = std::fs::File::open(&source)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let format = Format::detect(&head[..n]);
    let raw = match format {
        Format::Raw => source.clone(),
        Format::Qcow2 => {
            log("converting qcow2 to raw (qemu-img convert)".into());
            let out = dir.join("image.raw");
            let tmp = dir.join("image.raw.part");
            let _ = std::fs::remove_file(&tmp);
            let status = std::process::Command::new("qemu-img")
                .args(["convert", "-q", "-f", "qcow2", "-O", "raw", "-S", "64k"])
                .arg(&source)
                .arg(&tmp)
                .output()
                .map_err(|e| {
                    format!("qemu-img is needed for qcow2 images (apt-get install qemu-utils): {e}")
                })?;
            if !status.status.success() {
                return Err(format!(
                    "qemu-img convert failed: {}",
                    String::from_utf8_lossy(&status.stderr).trim()
                ));
            }
            std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
            out
        }
        Format::Gzip | Format::Xz | Format::Zstd => {
            log(format!("decompressing ({})", format.as_str()));
            let out = dir.join("image.raw");
            let tmp = dir.join("image.raw.part");
            let mut input = std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(&source).map_err(|e| e.to_string())?,
            );
            let mut w = SparseWriter::create(&tmp).map_err(|e| e.to_string())?;
            let bad = |e: String| format!("cannot decompress the image ({}): {e}", format.as_str());
            match format {
                Format::Gzip => {
                    std::io::copy(&mut flate2::read::MultiGzDecoder::new(input), &mut w)
                        .map_err(|e| bad(e.to_string()))?;
                }
                Format::Xz => {
                    lzma_rs::xz_decompress(&mut input, &mut w)
                        .map_err(|e| bad(format!("{e:?}")))?;
                }
                _ => {
                    let mut z = ruzstd::decoding::StreamingDecoder::new(input)
                        .map_err(|e| bad(e.to_string()))?;
                    std::io::copy(&mut z, &mut w).map_err(|e| bad(e.to_string()))?;
                }
            }
            w.finish().map_err(|e| bad(e.to_string()))?;
            std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
            out
        }
    };
    let virtual_size = std::fs::metadata(&raw).map_err(|e| e.to_string())?.len();
    let extents = merge_gaps(
        data_extents(&raw).map_err(|e| format!("cannot map {}: {e}", raw.display()))?,
        MERGE_GAP,
    );
    let data_bytes = extents.iter().map(|(_, l)| l).sum();
    log(format!(
        "image ready: {} source, {} MiB on disk, {} MiB of data in {} extent(s)",
        format.as_str(),
        virtual_size >> 20,
        data_bytes >> 20,
        extents.len()
    ));
    let digest = extents_digest(&raw, &extents).map_err(|e| e.to_string())?;
    let p = Prepared {
        raw,
        format,
        virtual_size,
        extents,
        data_bytes,
        digest,
    };
    let tmp = dir.join("manifest.json.part");
    std::fs::write(&tmp, serde_json::to_vec(&p).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, dir.join("manifest.json")).map_err(|e| e.to_string())?;
    Ok(p)
}

/// A file written sequentially in which every all-zero block of [`HOLE`]
/// bytes is left as a hole.
pub struct SparseWriter {
    file: std::fs::File,
    block: Vec<u8>,
    written: u64,
}

impl SparseWriter {
    pub fn create(path: &Path) -> std::io::Result<SparseWriter> {
        Ok(SparseWriter {
            file: std::fs::File::create(path)?,
            block: Vec::with_capacity(HOLE),
            written: 0,
        })
    }

    fn flush_block(&mut self) -> std::io::Result<()> {
        // A slice comparison is a memcmp, fast in any build.
        static ZEROS: [u8; HOLE] = [0; HOLE];
        if self.block[..] == ZEROS[..self.block.len()] {
            self.file.seek(SeekFrom::Current(self.block.len() as i64))?;
        } else {
            self.file.write_all(&self.block)?;
        }
        self.written += self.block.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Writes what is pending, sets the length (a trailing hole counts) and
    /// syncs; returns the length.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.flush_block()?;
        self.file.set_len(self.written)?;
        self.file.sync_all()?;
        Ok(self.written)
    }
}

impl Write for SparseWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(HOLE - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == HOLE {
            self.flush_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `r` into a new file at `out`, leaving all-zero blocks as holes.
pub fn sparse_copy(mut r: impl Read, out: &Path) -> std::io::Result<u64> {
    let mut w = SparseWriter::create(out)?;
    std::io::copy(&mut r, &mut w)?;
    w.finish()
}

/// The data extents of a (sparse) file, merged where adjacent.
pub fn data_extents(path: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len() as i64;
    let fd = f.as_raw_fd();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut at: i64 = 0;
    while at < size {
        // SAFETY: lseek on an open descriptor; no memory is passed.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let end = if hole < 0 { size } else { hole.min(size) };
        if end > data {
            match out.last_mut() {
                Some((o, l)) if *o + *l == data as u64 => *l += (end - data) as u64,
                _ => out.push((data as u64, (end - data) as u64)),
            }
        }
        at = end;
    }
    Ok(out)
}

/// Holes smaller than this travel as zeros inside a larger extent: fewer
/// requests, a few more bytes.
const MERGE_GAP: u64 = 1 << 20;

/// `extents` with every gap smaller than `gap` folded into its neighbours.
pub fn merge_gaps(extents: Vec<(u64, u64)>, gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(extents.len());
    for (o, l) in extents {
        match out.last_mut() {
            Some((po, pl)) if o - (*po + *pl) < gap => *pl = o + l - *po,
            _ => out.push((o, l)),
        }
    }
    out
}

/// SHA-256 of the extents' bytes, in order.
pub fn extents_digest(path: &Path, extents: &[(u64, u64)]) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for &(off, len) in extents {
        f.seek(SeekFrom::Start(off))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the image shrank",
                ));
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(hex(&h.finalize()))
}

/// Checks `path` against the image's sha256 or sha512.
fn verify(path: &Path, image: &ImageConfig) -> Result<(), String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut s256, mut s512) = (Sha256::new(), Sha512::new());
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if !image.sha256.is_empty() {
            s256.update(&buf[..n]);
        }
        if !image.sha512.is_empty() {
            s512.update(&buf[..n]);
        }
    }
    if !image.sha256.is_empty() {
        let got = hex(&s256.finalize());
        if !got.eq_ignore_ascii_case(&image.sha256) {
            return Err(format!(
                "sha256 mismatch: {} has {got}, the config says {}",
                path.display(),
                image.sha256
            ));
        }
    }
    if !image.sha512.is_empty() {
        let got = hex(&s512.finalize());
        if !got.eq_ignore_ascii_case(&image.sha512) {
            return Err(format!(
                "sha512 mismatch: {} has {got}, the config says {}",
                path.display(),
                image.sha512
            ));
        }
    }
    Ok(())
}

/// Downloads the image's URL into the entry (once), checked.
fn download(dir: &Path, image: &ImageConfig, log: &dyn Fn(String)) -> Result<PathBuf, String> {
    let done = dir.join("source");
    if done.is_file() {
        return Ok(done);
    }
    let part = dir.join("source.part");
    log(format!("downloading {}", image.url));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(20)))
        .timeout_per_read(Some(std::time::Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(&image.url)
        .call()
        .map_err(|e| format!("cannot download {}: {e}", image.url))?;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(format!("cannot download {}: HTTP {status}", image.url));
    }
    let total: u64 = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = r.body_mut().as_reader();
    let mut out = std::fs::File::create(&part).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut got, mut shown) = (0u64, 0u64);
    loop {
        let n = body.read(&mut buf).map_err(|e| {
            format!(
                "the download of {} broke off after {got} bytes: {e}",
                image.url
            )
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("cannot write the image cache: {e}"))?;
        got += n as u64;
        if total > 0 && got * 10 / total > shown {
            shown = got * 10 / total;
            log(format!(
                "downloading: {}% ({} of {} MiB)",
                shown * 10,
                got >> 20,
                total >> 20
            ));
        }
    }
    out.sync_all().map_err(|e| e.to_string())?;
    if total > 0 && got != total {
        return Err(format!(
            "the download of {} is truncated: {got} of {total} bytes",
            image.url
        ));
    }
    verify(&part, image)
        .map_err(|e| format!("the download is not the image the config names: {e}"))?;
    std::fs::rename(&part, &done).map_err(|e| e.to_string())?;
    log(format!("downloaded {} MiB, checksum verified", got >> 20));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_gaps_fold_into_extents() {
        let e = vec![(0, 10), (100, 10), (10_000_000, 5), (10_000_100, 1)];
        assert_eq!(merge_gaps(e, 1 << 20), vec![(0, 110), (10_000_000, 101)]);
        assert_eq!(merge_gaps(vec![], 1), vec![]);
    }

    #[test]
    fn formats_are_told_by_content() {
        assert_eq!(Format::detect(b"QFI\xfb\x00\x00\x00\x03"), Format::Qcow2);
        assert_eq!(Format::detect(&[0x1f, 0x8b, 8, 0]), Format::Gzip);
        assert_eq!(Format::detect(b"\xfd7zXZ\x00\x00"), Format::Xz);
        assert_eq!(Format::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Format::Zstd);
        assert_eq!(Format::detect(b"\xeb\x63\x90"), Format::Raw);
        assert_eq!(Format::detect(b""), Format::Raw);
    }

    #[test]
    fn a_sparse_copy_keeps_data_and_maps_it() {
        let d = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[100..200].fill(7);
        data[5 << 20..(5 << 20) + 70_000].fill(9);
        let out = d.path().join("x.raw");
        assert_eq!(sparse_copy(&data[..], &out).unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), data);
        let ext = data_extents(&out).unwrap();
        let bytes: u64 = ext.iter().map(|(_, l)| l).sum();
        assert!(bytes < 1 << 20, "holes stay holes: {ext:?}");
        assert!(
            ext.iter().any(|(o, l)| *o <= 100 && o + l >= 200),
            "{ext:?}"
        );
        assert!(
            ext.iter()
                .any(|(o, l)| *o <= 5 << 20 && o + l >= (5 << 20) + 70_000),
            "{ext:?}"
        );
        // The digest is that of the extents' bytes in order.
        let mut h = Sha256::new();
        for (o, l) in &ext {
            h.update(&data[*o as usize..(o + l) as usize]);
        }
        assert_eq!(extents_digest(&out, &ext).unwrap(), hex(&h.finalize()));
    }
}
