//! Writes an image to a disk: only its data crosses the wire. The plan
//! names the image's data extents (rackboot prepared the image as a sparse
//! raw file: qcow2 converted, compressed images decompressed); each extent
//! is fetched with a Range request (a broken one resumes where it stopped)
//! and written at its offset, every hole between and after them is zeroed
//! on the disk (BLKZEROOUT: the device clears it without data moving when
//! it can), and the SHA-256 of the data received must equal the plan's
//! before `done`. Progress is the share of the data written.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::time::{Duration, Instant};

/// What to write.
pub struct Job<'a> {
    /// (offset, length) of the data, in order.
    pub extents: &'a [(u64, u64)],
    /// The disk bytes the image covers; holes up to here are zeroed.
    pub virtual_size: u64,
    /// SHA-256 of the extents' bytes in order ("" = none given).
    pub digest: &'a str,
}

/// Where the image comes from (HTTP in the ramdisk, anything in tests).
pub trait Source {
    /// A reader of `len` image bytes from `offset`.
    fn open(&mut self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>, String>;
}

/// Where it goes.
pub trait Target {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Makes `len` bytes from `offset` read as zeros.
    fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()>;
}

/// The image over HTTP (Range requests).
pub struct Http {
    pub agent: ureq::Agent,
    pub url: String,
}

impl Source for Http {
    fn open(&mut self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>, String> {
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let r = self
            .agent
            .get(&self.url)
            .header("Range", &range)
            .call()
            .map_err(|e| format!("GET {} ({range}): {e}", self.url))?;
        let status = r.status().as_u16();
        if status != 206 {
            return Err(format!("GET {} ({range}): HTTP {status}", self.url));
        }
        Ok(Box::new(r.into_body().into_reader().take(len)))
    }
}

/// A block device (or a plain file: holes are punched then).
pub struct Disk {
    pub file: std::fs::File,
}

/// `_IO(0x12, 127)`: zero a byte range of a block device.
const BLKZEROOUT: libc::c_ulong = 0x127f;

impl Target for Disk {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }

    fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileTypeExt;
        if len == 0 {
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        if self.file.metadata()?.file_type().is_block_device() {
            // Sector-aligned middle by the device; the ragged ends by hand.
            let start = offset.div_ceil(512) * 512;
            let end = ((offset + len) / 512) * 512;
            if end > start {
                let range: [u64; 2] = [start, end - start];
                // SAFETY: BLKZEROOUT reads two u64s from `range`.
                let r = unsafe { libc::ioctl(fd, BLKZEROOUT as _, range.as_ptr()) };
                if r != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                self.write_at(offset, &vec![0u8; (start - offset) as usize])?;
                return self.write_at(end, &vec![0u8; (offset + len - end) as usize]);
            }
        } else {
            // SAFETY: fallocate on an open descriptor; no memory is passed.
            let r = unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as i64,
                    len as i64,
                )
            };
            if r == 0 {
                return Ok(());
            }
        }
        let zeros = vec![0u8; 1 << 20];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(zeros.len() as u64) as usize;
            self.write_at(at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Writes `job` from `source` to `disk`; `progress(data_written,
/// data_total)` about once a second and at the end. Returns the data bytes.
pub fn write_image(
    job: &Job<'_>,
    source: &mut dyn Source,
    disk: &mut dyn Target,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, String> {
    let total: u64 = job.extents.iter().map(|(_, l)| l).sum();
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let mut last = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64; // the end of what is on the disk
    for &(offset, len) in job.extents {
        if offset < at || offset + len > job.virtual_size {
            return Err(format!(
                "the plan's extents are out of order or past the image ({offset}+{len})"
            ));
        }
        disk.zero(at, offset - at)
            .map_err(|e| format!("zeroing the disk at byte {at}: {e}"))?;
        let (mut done, mut failures) = (0u64, 0u32);
        let mut reader = source.open(offset, len)?;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            match reader.read(&mut buf[..want]) {
                Ok(0) | Err(_) if failures < 5 => {
                    failures += 1;
                    println!(
                        "rackboot-agent: image stream broke at byte {}; resuming",
                        offset + done
                    );
                    std::thread::sleep(Duration::from_millis(300 * u64::from(failures)));
                    reader = source.open(offset + done, len - done)?;
                }
                Ok(0) => {
                    return Err(format!(
                        "the image server sent only {done} of {len} bytes at {offset} (5 retries)"
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "reading the image at byte {}: {e} (5 retries)",
                        offset + done
                    ))
                }
                Ok(n) => {
                    disk.write_at(offset + done, &buf[..n])
                        .map_err(|e| format!("writing the disk at byte {}: {e}", offset + done))?;
                    hash.update(&buf[..n]);
                    done += n as u64;
                    written += n as u64;
                    if last.elapsed() >= Duration::from_secs(1) {
                        progress(written, total);
                        last = Instant::now();
                    }
                }
            }
        }
        at = offset + len;
    }
    disk.zero(at, job.virtual_size - at)
        .map_err(|e| format!("zeroing the disk at byte {at}: {e}"))?;
    let sum: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if !job.digest.is_empty() && !job.digest.eq_ignore_ascii_case(&sum) {
        return Err(format!(
            "sha256 mismatch: the image data received has {sum}, the plan says {}",
            job.digest
        ));
    }
    progress(written, total);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `data`, failing once at byte `break_at` when set.
    struct Flaky {
        data: Vec<u8>,
        break_at: Option<u64>,
        opens: Vec<(u64, u64)>,
    }

    struct Part {
        data: Vec<u8>,
        pos: usize,
        end: usize,
        stop: Option<usize>,
    }

    impl Read for Part {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.stop.is_some_and(|s| self.pos >= s) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ));
            }
            let limit = self.stop.unwrap_or(self.end).min(self.end);
            let n = buf.len().min(4096).min(limit - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Source for Flaky {
        fn open(&mut self, offset: u64, len: u64) -> Result<Box<dyn Read + Send>, String> {
            self.opens.push((offset, len));
            let stop = match self.break_at {
                Some(b) if b > offset && b < offset + len => {
                    self.break_at = None;
                    Some(b as usize)
                }
                _ => None,
            };
            Ok(Box::new(Part {
                data: self.data.clone(),
                pos: offset as usize,
                end: (offset + len) as usize,
                stop,
            }))
        }
    }

    /// A disk in memory that remembers what was zeroed.
    struct Mem {
        bytes: Vec<u8>,
        zeroed: Vec<(u64, u64)>,
    }

    impl Target for Mem {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn zero(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
            if len > 0 {
                self.zeroed.push((offset, len));
                self.bytes[offset as usize..(offset + len) as usize].fill(0);
            }
            Ok(())
        }
    }

    fn image() -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut data = vec![0u8; 3_000_000];
        let extents = vec![
            (0u64, 100_000u64),
            (1_000_000, 1_500_000),
            (2_900_000, 50_000),
        ];
        for &(o, l) in &extents {
            for i in o..o + l {
                data[i as usize] = (i * 7 % 251) as u8 | 1;
            }
        }
        (data, extents)
    }

    fn digest(data: &[u8], extents: &[(u64, u64)]) -> String {
        let mut h = Sha256::new();
        for &(o, l) in extents {
            h.update(&data[o as usize..(o + l) as usize]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn only_the_data_travels_the_holes_are_zeroed_and_a_break_resumes() {
        let (data, extents) = image();
        let sum = digest(&data, &extents);
        let job = Job {
            extents: &extents,
            virtual_size: data.len() as u64,
            digest: &sum,
        };
        let mut src = Flaky {
            data: data.clone(),
            break_at: Some(1_234_567),
            opens: vec![],
        };
        // The disk held old data everywhere.
        let mut disk = Mem {
            bytes: vec![0xee; 4_000_000],
            zeroed: vec![],
        };
        let mut seen = Vec::new();
        let n = write_image(&job, &mut src, &mut disk, &mut |w, t| seen.push((w, t))).unwrap();
        assert_eq!(n, 1_650_000);
        assert_eq!(
            &disk.bytes[..data.len()],
            &data[..],
            "the disk equals the raw image"
        );
        assert!(
            disk.bytes[data.len()..].iter().all(|b| *b == 0xee),
            "nothing past the image"
        );
        assert_eq!(
            disk.zeroed,
            vec![
                (100_000, 900_000),
                (2_500_000, 400_000),
                (2_950_000, 50_000)
            ]
        );
        assert_eq!(
            src.opens,
            vec![
                (0, 100_000),
                (1_000_000, 1_500_000),
                (1_234_567, 1_265_433),
                (2_900_000, 50_000)
            ],
            "only extents are asked for; the broken one resumes where it stopped"
        );
        assert_eq!(seen.last(), Some(&(1_650_000, 1_650_000)));
    }

    #[test]
    fn a_wrong_digest_or_bad_extents_are_errors_not_successes() {
        let (data, extents) = image();
        let job = Job {
            extents: &extents,
            virtual_size: data.len() as u64,
            digest: "00ff",
        };
        let mut src = Flaky {
            data: data.clone(),
            break_at: None,
            opens: vec![],
        };
        let mut disk = Mem {
            bytes: vec![0; data.len()],
            zeroed: vec![],
        };
        let e = write_image(&job, &mut src, &mut disk, &mut |_, _| {}).unwrap_err();
        assert!(
            e.starts_with("sha256 mismatch: the image data received has "),
            "{e}"
        );
        let backwards = [(1000u64, 10u64), (0, 10)];
        let job = Job {
            extents: &backwards,
            virtual_size: 2000,
            digest: "",
        };
        assert!(write_image(&job, &mut src, &mut disk, &mut |_, _| {})
            .unwrap_err()
            .contains("out of order"));
    }

    #[test]
    fn a_plain_file_gets_holes_punched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk");
        std::fs::write(&p, vec![0xaau8; 1 << 20]).unwrap();
        let mut disk = Disk {
            file: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap(),
        };
        disk.zero(4096, 65536).unwrap();
        disk.zero(100_001, 7).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert!(b[4096..4096 + 65536].iter().all(|x| *x == 0));
        assert!(b[100_001..100_008].iter().all(|x| *x == 0));
        assert_eq!(
            (b[4095], b[69632], b[100_000], b[100_008]),
            (0xaa, 0xaa, 0xaa, 0xaa)
        );
    }
}
