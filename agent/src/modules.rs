//! Kernel modules by modalias coldplug, as udev would load them: walk
//! `/sys/devices/**/modalias`, load every module whose alias pattern
//! matches (its dependencies first), and repeat until a pass loads nothing
//! new and no new device appears for a while (a driver's devices — a disk
//! behind a new HBA — show up asynchronously).
//!
//! `rackboot ramdisk build` writes the index this reads,
//! `/lib/modules/rackboot.modules`: `module NAME PATH DEP,DEP…` and
//! `alias PATTERN NAME` lines, from each module's own `.modinfo`. Patterns
//! are fnmatch(3) globs without flags, as kmod matches them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The module index of the ramdisk.
#[derive(Debug, Default)]
pub struct Index {
    /// name → (path, dependencies)
    modules: HashMap<String, (PathBuf, Vec<String>)>,
    /// (pattern, module name), in file order.
    aliases: Vec<(String, String)>,
}

/// fnmatch(3) with no flags: `*`, `?`, `[set]`/`[!set]` with ranges, `\`
/// escapes; `*` also matches `/`.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        // An unclosed `[` is a literal.
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                b'\\' if pi + 1 < p.len() => {}
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A bracket expression at `p[at]` against `c`: (matched, index after it),
/// or `None` when the bracket is not closed.
fn class(p: &[u8], at: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

impl Index {
    /// Reads the index text.
    pub fn parse(text: &str) -> Index {
        let mut ix = Index::default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match (f.next(), f.next(), f.next()) {
                (Some("module"), Some(name), Some(path)) => {
                    let deps = f
                        .next()
                        .map(|d| {
                            d.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    ix.modules
                        .insert(name.to_string(), (PathBuf::from(path), deps));
                }
                (Some("alias"), Some(pattern), Some(name)) => {
                    ix.aliases.push((pattern.to_string(), name.to_string()))
                }
                _ => {}
            }
        }
        ix
    }

    /// The modules whose aliases match `modalias`.
    pub fn matching(&self, modalias: &str) -> BTreeSet<String> {
        self.aliases
            .iter()
            .filter(|(p, _)| fnmatch(p, modalias))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// `name` and everything it needs, dependencies first.
    pub fn load_order(&self, name: &str) -> Vec<String> {
        fn visit(ix: &Index, n: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
            if !seen.insert(n.to_string()) {
                return;
            }
            if let Some((_, deps)) = ix.modules.get(n) {
                for d in deps {
                    visit(ix, d, seen, out);
                }
                out.push(n.to_string());
            }
        }
        let mut out = Vec::new();
        visit(self, name, &mut BTreeSet::new(), &mut out);
        out
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }
}

/// Every `modalias` under `root` (normally `/sys/devices`), not following
/// symlinks.
pub fn modaliases(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    let text = text.trim();
                    if !text.is_empty() {
                        out.insert(text.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Whether module `name` is in the running kernel.
fn loaded(name: &str) -> bool {
    Path::new("/sys/module")
        .join(name.replace('-', "_"))
        .exists()
}

/// Loads one module file (finit_module); an already loaded one is fine.
fn insert(path: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let params = c"";
    // SAFETY: finit_module reads the open file and a NUL-terminated
    // parameter string; both outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(()),
        Some(libc::ENOENT) => Err(format!(
            "{}: unknown symbol (a module it needs is not loaded)",
            path.display()
        )),
        _ => Err(format!("{}: {e}", path.display())),
    }
}

/// Loads the ramdisk's modules.
pub struct Loader {
    pub index: Index,
    root: PathBuf,
    /// Modules this loader loaded, in order.
    pub loaded: Vec<String>,
    /// Modules that failed to load, with the reason.
    pub failed: Vec<String>,
}

impl Loader {
    pub fn new(index: Index, root: PathBuf) -> Loader {
        Loader {
            index,
            root,
            loaded: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Loads `name` with its dependencies; whether it is in the kernel now.
    pub fn load(&mut self, name: &str) -> bool {
        for m in self.index.load_order(name) {
            if loaded(&m) || self.failed.iter().any(|f| f.starts_with(&format!("{m}:"))) {
                continue;
            }
            let Some((path, _)) = self.index.modules.get(&m) else {
                continue;
            };
            match insert(&self.root.join(path)) {
                Ok(()) => self.loaded.push(m.clone()),
                Err(e) => self.failed.push(format!("{m}: {e}")),
            }
        }
        loaded(name)
    }

    /// Modalias coldplug until nothing new loads and no new device shows
    /// up for `settle`, or `limit` passes.
    pub fn coldplug(&mut self, settle: Duration, limit: Duration) {
        let started = Instant::now();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut quiet_since = Instant::now();
        loop {
            let now = modaliases(Path::new("/sys/devices"));
            let fresh: Vec<String> = now.difference(&seen).cloned().collect();
            let mut new_module = false;
            for alias in &fresh {
                for m in self.index.matching(alias) {
                    if !loaded(&m) {
                        let before = self.loaded.len();
                        self.load(&m);
                        new_module |= self.loaded.len() > before;
                    }
                }
            }
            if !fresh.is_empty() || new_module {
                quiet_since = Instant::now();
            }
            seen = now;
            if quiet_since.elapsed() >= settle || started.elapsed() >= limit {
                return;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_matches_as_kmod_does() {
        let e1000e = "pci:v00008086d000010D3sv*sd*bc*sc*i*";
        assert!(fnmatch(
            e1000e,
            "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"
        ));
        assert!(!fnmatch(
            e1000e,
            "pci:v00008086d000010D4sv00008086sd00000000bc02sc00i00"
        ));
        assert!(fnmatch("scsi:t-0x00*", "scsi:t-0x00"));
        assert!(fnmatch("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(fnmatch("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0A:"));
        assert!(!fnmatch("acpi*:PNP0C0[9A]:*", "acpi:PNP0C0B:"));
        assert!(fnmatch("a[!0-9]c", "abc") && !fnmatch("a[!0-9]c", "a5c"));
        assert!(fnmatch("a?c", "abc") && !fnmatch("a?c", "ac"));
        assert!(fnmatch("a\\*c", "a*c") && !fnmatch("a\\*c", "abc"));
        assert!(fnmatch("*", "") && fnmatch("a*", "a") && !fnmatch("a*b", "ac"));
        assert!(fnmatch("x[", "x["));
        assert!(fnmatch(
            "usb:v*p*d*dc*dsc*dp*ic02isc06ip00in*",
            "usb:v0B95p1790d0100dcFFdsc00dp00ic02isc06ip00in00"
        ));
    }

    #[test]
    fn the_index_gives_matches_and_dependencies_first() {
        let ix = Index::parse(
            "module e1000e kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko ptp\n\
             module ptp kernel/drivers/ptp/ptp.ko pps_core\n\
             module pps_core kernel/drivers/pps/pps_core.ko\n\
             module ahci kernel/drivers/ata/ahci.ko libahci,libata\n\
             module libahci kernel/drivers/ata/libahci.ko libata\n\
             module libata kernel/drivers/ata/libata.ko scsi_mod\n\
             module scsi_mod kernel/drivers/scsi/scsi_mod.ko\n\
             alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n",
        );
        assert_eq!(ix.len(), 7);
        assert_eq!(
            ix.matching("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            BTreeSet::from(["ahci".to_string()])
        );
        assert_eq!(ix.load_order("e1000e"), vec!["pps_core", "ptp", "e1000e"]);
        assert_eq!(
            ix.load_order("ahci"),
            vec!["scsi_mod", "libata", "libahci", "ahci"]
        );
        assert!(ix.load_order("nothing").is_empty());
    }

    #[test]
    fn modaliases_are_found_under_a_device_tree() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("pci0000:00/0000:00:02.0");
        std::fs::create_dir_all(dev.join("virtio0")).unwrap();
        std::fs::write(
            dev.join("modalias"),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        )
        .unwrap();
        std::fs::write(dev.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::write(dev.join("virtio0/empty"), "").unwrap();
        let found = modaliases(d.path());
        assert_eq!(found.len(), 2);
        assert!(found.contains("virtio:d00000001v00001AF4"));
    }
}
