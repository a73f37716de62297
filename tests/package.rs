//! The Debian package (packaging/build-deb.sh, cargo-deb) installed into a
//! fresh Debian 12 root: the files where Debian puts them, the `rackboot`
//! user and group from sysusers.d, the conffile, a stripped binary that
//! runs, man pages that render, completions that match the binary, the
//! config check the unit runs first, and `systemd-analyze verify` of the
//! installed unit. Needs root (mmdebstrap, chroot) and cargo-deb, as CI has.
//!
//! The root is minbase + systemd (systemd-sysusers, systemd-analyze,
//! deb-systemd-helper) and procps (/bin/kill, the unit's ExecReload): the
//! package's dependencies, made once by mmdebstrap and kept as a tarball under
//! /var/cache/rackboot/package-root/<recipe key>.tar; each run unpacks it
//! afresh.

use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const CACHE: &str = "/var/cache/rackboot/package-root";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The mmdebstrap recipe of the root; its hash names the cached tarball.
fn recipe(tarball: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--mode=root",
        "--format=tar",
        "--variant=minbase",
        "--components=main",
        "--include=systemd,procps",
        "--aptopt=Acquire::Languages \"none\"",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        // Nothing a package installs may start (deb-systemd-invoke asks).
        "--customize-hook=printf '#!/bin/sh\\nexit 101\\n' > \"$1/usr/sbin/policy-rc.d\"; chmod 755 \"$1/usr/sbin/policy-rc.d\"",
        "--customize-hook=rm -rf \"$1\"/var/cache/apt/archives/*.deb \"$1\"/var/lib/apt/lists/*",
        "bookworm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(tarball.display().to_string());
    args.push("deb http://deb.debian.org/debian bookworm main".into());
    args
}

/// The cached root tarball, made with mmdebstrap when missing.
fn base_root() -> PathBuf {
    let key_args = recipe(Path::new("OUT"));
    let key: String = sha2::Sha256::digest(key_args.join("\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tarball = PathBuf::from(CACHE).join(format!("bookworm-{}.tar", &key[..16]));
    if tarball.exists() {
        return tarball;
    }
    std::fs::create_dir_all(CACHE).unwrap();
    let partial = tarball.with_extension(format!("partial-{}", std::process::id()));
    let started = Instant::now();
    run(Command::new("mmdebstrap")
        .args(recipe(&partial))
        .env("TMPDIR", "/var/tmp"));
    std::fs::rename(&partial, &tarball).unwrap();
    eprintln!(
        "package root: built {} in {:.0} s",
        tarball.display(),
        started.elapsed().as_secs_f64()
    );
    tarball
}

fn chroot(root: &Path, args: &[&str]) -> Output {
    run(Command::new("chroot")
        .arg(root)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("RACKBOOT_SOCKET")
        .env_remove("RACKBOOT_STATE_DIR"))
}

/// The ELF file's debug-info and symbol-table sections.
fn debug_sections(path: &Path) -> Vec<String> {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(path).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    elf.sections()
        .filter_map(|s| s.name().ok().map(str::to_string))
        // .debug_gdb_scripts is loaded (a pointer to pretty-printers), not debug info.
        .filter(|n| n == ".symtab" || (n.starts_with(".debug_") && n != ".debug_gdb_scripts"))
        .collect()
}

#[test]
fn the_deb_installs_into_a_fresh_debian_12_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/package.rs needs root (mmdebstrap, chroot, dpkg in the root): CI runs as root"
    );
    let started = Instant::now();

    // The package, built as README says.
    // In a clean environment: the variables cargo sets for this test would
    // make the release build's build scripts run again (and the next
    // build outside the test too).
    let mut build = Command::new("bash");
    build
        .arg("packaging/build-deb.sh")
        .current_dir(MANIFEST)
        .env_clear();
    for var in [
        "PATH",
        "HOME",
        "TMPDIR",
        "RUSTUP_HOME",
        "CARGO_HOME",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Some(v) = std::env::var_os(var) {
            build.env(var, v);
        }
    }
    let out = run(&mut build);
    let deb = PathBuf::from(MANIFEST).join(stdout(&out).lines().last().unwrap_or("").trim());
    assert!(deb.is_file(), "build-deb.sh printed no package: {deb:?}");
    let release = Path::new(MANIFEST).join("target/release/rackboot");
    eprintln!(
        "package {} ({:.1} MB); release binary {:.1} MB",
        deb.display(),
        std::fs::metadata(&deb).unwrap().len() as f64 / 1e6,
        std::fs::metadata(&release).unwrap().len() as f64 / 1e6
    );
    let built = started.elapsed();

    // A fresh root with the package installed.
    let tarball = base_root();
    let dir = tempfile::Builder::new()
        .prefix("rackboot-package-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = dir.path();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(root));
    std::fs::copy(&deb, root.join("tmp/rackboot.deb")).unwrap();
    let install = Instant::now();
    chroot(root, &["dpkg", "-i", "/tmp/rackboot.deb"]);
    eprintln!(
        "build {:.0} s, install {:.1} s",
        built.as_secs_f64(),
        install.elapsed().as_secs_f64()
    );

    // The files.
    let unit = ["lib/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .map(|d| root.join(d).join("rackboot.service"))
        .find(|p| p.is_file())
        .expect("the package installs rackboot.service under /lib/systemd/system");
    for f in [
        "usr/bin/rackboot",
        "usr/lib/rackboot/rackboot-agent",
        "etc/rackboot/rackboot.toml",
        "usr/lib/sysusers.d/rackboot.conf",
        "usr/share/doc/rackboot/README.md",
        "usr/share/doc/rackboot/copyright",
        "usr/share/man/man1/rackboot.1.gz",
        "usr/share/man/man1/rackboot-serve.1.gz",
        "usr/share/man/man1/rackboot-config-check.1.gz",
        "usr/share/man/man1/rackboot-describe-bm-nodes.1.gz",
        "usr/share/bash-completion/completions/rackboot",
        "usr/share/zsh/vendor-completions/_rackboot",
        "usr/share/fish/vendor_completions.d/rackboot.fish",
    ] {
        assert!(root.join(f).is_file(), "/{f} is not installed");
    }
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/rackboot.conffiles"))
        .expect("the package has conffiles");
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/rackboot/rackboot.toml"),
        "{conffiles}"
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/rackboot.service");
    let link = std::fs::read_link(&wants).expect("the unit is not enabled");
    assert!(link.ends_with("system/rackboot.service"), "{link:?}");

    // Stripped binaries; the agent static (it runs in the ramdisk).
    for bin in ["usr/bin/rackboot", "usr/lib/rackboot/rackboot-agent"] {
        let debug = debug_sections(&root.join(bin));
        assert!(debug.is_empty(), "/{bin} is not stripped: {debug:?}");
    }
    let file = stdout(&run(Command::new("file")
        .arg("-L")
        .arg(root.join("usr/lib/rackboot/rackboot-agent"))));
    assert!(
        file.contains("statically linked") || file.contains("static-pie"),
        "{file}"
    );
    eprintln!(
        "installed binary {:.1} MB (stripped), agent {:.1} MB",
        std::fs::metadata(root.join("usr/bin/rackboot"))
            .unwrap()
            .len() as f64
            / 1e6,
        std::fs::metadata(root.join("usr/lib/rackboot/rackboot-agent"))
            .unwrap()
            .len() as f64
            / 1e6
    );

    // The user and group, from sysusers.d; the config readable by the group only.
    let passwd = stdout(&chroot(root, &["getent", "passwd", "rackboot"]));
    assert!(
        passwd.contains(":/var/lib/rackboot:") && passwd.trim_end().ends_with("nologin"),
        "{passwd}"
    );
    chroot(root, &["getent", "group", "rackboot"]);
    let mode = stdout(&chroot(
        root,
        &["stat", "-c", "%a %U %G", "/etc/rackboot/rackboot.toml"],
    ));
    assert_eq!(mode.trim(), "640 root rackboot");

    // It runs; its config check passes on the conffile (the unit's ExecStartPre).
    let version = stdout(&chroot(root, &["rackboot", "--version"]));
    assert_eq!(
        version.trim(),
        format!("rackboot {}", env!("CARGO_PKG_VERSION"))
    );
    let check = stdout(&chroot(root, &["rackboot", "config", "check"]));
    assert_eq!(
        check.trim(),
        "configuration OK: /etc/rackboot/rackboot.toml"
    );

    // The completions are the binary's own.
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/rackboot"),
        ("zsh", "usr/share/zsh/vendor-completions/_rackboot"),
        ("fish", "usr/share/fish/vendor_completions.d/rackboot.fish"),
    ] {
        let generated = stdout(&chroot(root, &["rackboot", "completions", shell]));
        let installed = std::fs::read_to_string(root.join(path)).unwrap();
        assert!(
            installed == generated && installed.contains("describe-bm-nodes"),
            "{shell} completion differs from `rackboot completions {shell}`"
        );
    }
    run(Command::new("bash")
        .arg("-n")
        .arg(root.join("usr/share/bash-completion/completions/rackboot")));

    // The man pages render.
    for page in ["rackboot.1.gz", "rackboot-config-check.1.gz"] {
        let text = stdout(&run(Command::new("man")
            .arg("-l")
            .arg(root.join("usr/share/man/man1").join(page))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat")));
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS") && text.contains("rackboot"),
            "{page} does not render:\n{text}"
        );
        if page == "rackboot.1.gz" {
            assert!(text.contains("--state-dir"), "{text}");
        }
    }

    // The installed unit: as the rackboot user, with two capabilities, the
    // config checked first, not restarted on a config error; and verified.
    let text = std::fs::read_to_string(&unit).unwrap();
    for needle in [
        "User=rackboot",
        "ExecStartPre=/usr/bin/rackboot config check",
        "ExecStart=/usr/bin/rackboot serve",
        "RestartPreventExitStatus=78",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "RuntimeDirectory=rackboot",
        "StateDirectory=rackboot",
    ] {
        assert!(text.contains(needle), "the installed unit lacks {needle}");
    }
    let rel = unit.strip_prefix(root).unwrap();
    let out = chroot(
        root,
        &["systemd-analyze", "verify", &format!("/{}", rel.display())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("rackboot.service:"), "{stderr}");
    eprintln!(
        "package test: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
}
