//! Writes an image to a disk: one streamed GET (a broken stream of a raw
//! image resumes with a Range request where it stopped), gzip decoded on
//! the fly, the SHA-256 of the bytes as served checked before `done`, the
//! disk flushed, progress reported about once a second. A failed download
//! or write is an error, never a success: every read and write is checked.

use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

/// What to write.
pub struct Job<'a> {
    /// Bytes as served (0: unknown).
    pub size: u64,
    pub sha256: &'a str,
    pub gzip: bool,
}

const CHUNK: usize = 1 << 20;

/// Counts and hashes what a reader yields.
struct Tally<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Where the image comes from (HTTP in the ramdisk, anything in tests).
pub trait Source {
    /// A reader of the image from byte `offset` on.
    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send>, String>;
}

/// The image over HTTP.
pub struct Http {
    pub agent: ureq::Agent,
    pub url: String,
}

impl Source for Http {
    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send>, String> {
        let mut req = self.agent.get(&self.url);
        if offset > 0 {
            req = req.header("Range", &format!("bytes={offset}-"));
        }
        let r = req.call().map_err(|e| format!("GET {}: {e}", self.url))?;
        let status = r.status().as_u16();
        let ok = if offset > 0 {
            status == 206
        } else {
            status == 200
        };
        if !ok {
            return Err(format!("GET {}: HTTP {status}", self.url));
        }
        Ok(Box::new(r.into_body().into_reader()))
    }
}

/// Writes `job` from `source` to `disk` (a block device or a file);
/// `progress(bytes_served, total)` is called about once a second and at
/// the end. Returns the bytes served.
pub fn write_image<D: Write + Seek>(
    job: &Job<'_>,
    source: &mut dyn Source,
    disk: &mut D,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, String> {
    let mut last = Instant::now();
    let mut tally = Tally {
        inner: source.open(0)?,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut buf = vec![0u8; CHUNK];
    if job.gzip {
        // A gzip stream cannot resume mid-way: one try.
        let mut decoder = flate2::read::GzDecoder::new(&mut tally);
        loop {
            let n = read_full(&mut decoder, &mut buf)
                .map_err(|(_, e)| format!("reading or gunzipping the image: {e}"))?;
            if n == 0 {
                break;
            }
            disk.write_all(&buf[..n])
                .map_err(|e| format!("writing the disk: {e}"))?;
            if last.elapsed() >= Duration::from_secs(1) {
                progress(decoder.get_ref().bytes, job.size);
                last = Instant::now();
            }
        }
        // Bytes after the gzip stream (none expected) still count for the sum.
        std::io::copy(&mut tally, &mut std::io::sink())
            .map_err(|e| format!("reading the image: {e}"))?;
    } else {
        let mut failures = 0;
        loop {
            let n = match read_full(&mut tally, &mut buf) {
                Ok(n) => n,
                Err((partial, e)) => {
                    // What arrived before the break is written, then the
                    // stream resumes right after it.
                    let at = tally.bytes - partial as u64;
                    disk.write_all(&buf[..partial])
                        .map_err(|e| format!("writing the disk at byte {at}: {e}"))?;
                    failures += 1;
                    if failures > 5 {
                        return Err(format!(
                            "reading the image at byte {}: {e} (5 retries)",
                            tally.bytes
                        ));
                    }
                    println!(
                        "rackboot-agent: image stream broke at byte {} ({e}); resuming",
                        tally.bytes
                    );
                    std::thread::sleep(Duration::from_millis(300 * failures));
                    // Resume where the disk is.
                    disk.seek(SeekFrom::Start(tally.bytes))
                        .map_err(|e| format!("seeking the disk: {e}"))?;
                    tally.inner = source.open(tally.bytes)?;
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            disk.write_all(&buf[..n])
                .map_err(|e| format!("writing the disk at byte {}: {e}", tally.bytes - n as u64))?;
            if last.elapsed() >= Duration::from_secs(1) {
                progress(tally.bytes, job.size);
                last = Instant::now();
            }
        }
    }
    disk.flush()
        .map_err(|e| format!("flushing the disk: {e}"))?;
    if job.size > 0 && tally.bytes != job.size {
        return Err(format!(
            "the image server sent {} bytes, {} were expected (truncated download)",
            tally.bytes, job.size
        ));
    }
    let sum: String = tally
        .hash
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !job.sha256.is_empty() && !job.sha256.eq_ignore_ascii_case(&sum) {
        return Err(format!(
            "sha256 mismatch: the image served has {sum}, expected {}",
            job.sha256
        ));
    }
    progress(tally.bytes, job.size.max(tally.bytes));
    Ok(tally.bytes)
}

/// Reads until `buf` is full or the stream ends; an error comes with the
/// bytes that were read before it.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, (usize, std::io::Error)> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((n, e)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Serves `data`, failing once at byte `break_at` when set.
    struct Flaky {
        data: Vec<u8>,
        break_at: Option<usize>,
        opens: Vec<u64>,
    }

    struct Breaking {
        data: Vec<u8>,
        pos: usize,
        stop: usize,
    }

    impl Read for Breaking {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.pos >= self.stop && self.stop < self.data.len() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ));
            }
            let end = (self.pos + buf.len().min(4096))
                .min(self.stop.max(self.pos))
                .min(self.data.len());
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            Ok(n)
        }
    }

    impl Source for Flaky {
        fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send>, String> {
            self.opens.push(offset);
            let stop = self.break_at.take().unwrap_or(self.data.len());
            Ok(Box::new(Breaking {
                data: self.data.clone(),
                pos: offset as usize,
                stop,
            }))
        }
    }

    fn sha(d: &[u8]) -> String {
        Sha256::digest(d)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn image() -> Vec<u8> {
        (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_raw_image_lands_byte_for_byte_and_resumes_after_a_broken_stream() {
        let data = image();
        let mut src = Flaky {
            data: data.clone(),
            break_at: Some(1_234_567),
            opens: vec![],
        };
        let mut disk = Cursor::new(vec![0u8; 4_000_000]);
        let mut seen = Vec::new();
        let sum = sha(&data);
        let job = Job {
            size: data.len() as u64,
            sha256: &sum,
            gzip: false,
        };
        let n = write_image(&job, &mut src, &mut disk, &mut |b, t| seen.push((b, t))).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(&disk.get_ref()[..data.len()], &data[..]);
        assert_eq!(
            src.opens,
            vec![0, 1_234_567],
            "resumed right where the stream broke"
        );
        assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    }

    #[test]
    fn a_wrong_checksum_or_a_short_image_is_an_error_not_a_success() {
        let data = image();
        let mut disk = Cursor::new(Vec::new());
        let job = Job {
            size: data.len() as u64,
            sha256: "00ff",
            gzip: false,
        };
        let mut src = Flaky {
            data: data.clone(),
            break_at: None,
            opens: vec![],
        };
        let e = write_image(&job, &mut src, &mut disk, &mut |_, _| {}).unwrap_err();
        assert!(
            e.starts_with("sha256 mismatch: the image served has "),
            "{e}"
        );
        let job = Job {
            size: data.len() as u64 + 10,
            sha256: "",
            gzip: false,
        };
        let mut src = Flaky {
            data,
            break_at: None,
            opens: vec![],
        };
        let e = write_image(&job, &mut src, &mut disk, &mut |_, _| {}).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn a_gzip_image_is_decoded_and_its_sum_taken_over_the_compressed_bytes() {
        let data = image();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let packed = gz.finish().unwrap();
        let sum = sha(&packed);
        let job = Job {
            size: packed.len() as u64,
            sha256: &sum,
            gzip: true,
        };
        let mut src = Flaky {
            data: packed.clone(),
            break_at: None,
            opens: vec![],
        };
        let mut disk = Cursor::new(Vec::new());
        write_image(&job, &mut src, &mut disk, &mut |_, _| {}).unwrap();
        assert_eq!(disk.get_ref(), &data);
        // A broken gzip stream fails (no resume inside gzip).
        let mut src = Flaky {
            data: packed.clone(),
            break_at: Some(packed.len() / 2),
            opens: vec![],
        };
        assert!(write_image(&job, &mut src, &mut Cursor::new(Vec::new()), &mut |_, _| {}).is_err());
    }
}
