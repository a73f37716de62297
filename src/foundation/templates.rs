//! The boot and install configs rendered per node from `pxe-templates/`
//! (compiled in; `boot.templates_dir` may replace any of them by name), and
//! the variables they see ([`BootVars`]).
//!
//! Strict: an undefined variable is an error naming the template and the
//! node. Values that go into a kernel command line pass the `kernel_arg`
//! filter, which refuses spaces and control characters (a newline would end
//! the boot config's line and start a command of the node's choosing).
//! [`Templates::check`] renders every template for every mode and image at
//! start-up and on SIGHUP. iPXE's own `${…}` settings are left alone
//! (minijinja only reads `{{ … }}`).

use crate::foundation::config::{image_path, Config, ImageConfig, ImageMethod};
use crate::foundation::store::{BmNode, NetworkSettings};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use serde::Serialize;
use std::path::Path;

/// Built-in templates: (name, source).
/// The names of the built-in templates.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(name, _)| *name)
}

const BUILT_IN: &[(&str, &str)] = &[
    (
        "ipxe/local.ipxe",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/ipxe/local.ipxe"
        )),
    ),
    (
        "ipxe/discovery.ipxe",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/ipxe/discovery.ipxe"
        )),
    ),
    (
        "ipxe/deploy.ipxe",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/ipxe/deploy.ipxe"
        )),
    ),
    (
        "ipxe/install.ipxe",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/ipxe/install.ipxe"
        )),
    ),
    (
        "grub/grub.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/grub/grub.cfg"
        )),
    ),
    (
        "pxelinux/pxelinux.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/pxelinux/pxelinux.cfg"
        )),
    ),
    (
        "deploy/kernel-args",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/deploy/kernel-args"
        )),
    ),
    (
        "grub/netboot.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/grub/netboot.cfg"
        )),
    ),
    (
        "cloud-init/meta-data",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/cloud-init/meta-data"
        )),
    ),
    (
        "cloud-init/user-data",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/cloud-init/user-data"
        )),
    ),
    (
        "cloud-init/network-config",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/cloud-init/network-config"
        )),
    ),
    (
        "vmedia/network-args",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/vmedia/network-args"
        )),
    ),
    (
        "vmedia/grub.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/vmedia/grub.cfg"
        )),
    ),
    (
        "vmedia/isolinux.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/vmedia/isolinux.cfg"
        )),
    ),
    (
        "install/kernel-args",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/kernel-args"
        )),
    ),
    (
        "install/callbacks",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/callbacks"
        )),
    ),
    (
        "install/user-data",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/user-data"
        )),
    ),
    (
        "install/meta-data",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/meta-data"
        )),
    ),
    (
        "install/preseed.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/preseed.cfg"
        )),
    ),
    (
        "install/ks.cfg",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/pxe-templates/install/ks.cfg"
        )),
    ),
];

/// What a network-booting node is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Boot the local disk (not being provisioned or inspected).
    Local,
    /// Boot the deploy ramdisk, which writes the image.
    Deploy,
    /// Boot the distro installer with a rendered install config.
    Install,
    /// Boot the deploy ramdisk to report the inventory only.
    Inspect,
    /// Boot the deploy ramdisk to wipe the disks (UnprovisionBMNodes).
    Clean,
}

impl Mode {
    /// The iPXE script of this mode.
    pub fn ipxe_template(self) -> &'static str {
        match self {
            Mode::Local => "ipxe/local.ipxe",
            Mode::Deploy | Mode::Inspect | Mode::Clean => "ipxe/deploy.ipxe",
            Mode::Install => "ipxe/install.ipxe",
        }
    }
}

/// A network as templates see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NetVars {
    pub address: String,
    pub netmask: String,
    pub gateway: String,
    pub bond: bool,
    pub vlan: bool,
    pub vlan_id: u16,
}

impl From<&NetworkSettings> for NetVars {
    fn from(n: &NetworkSettings) -> Self {
        NetVars {
            address: n.address.clone(),
            netmask: n.netmask.clone(),
            gateway: n.gateway.clone(),
            bond: n.bond,
            vlan: n.vlan,
            vlan_id: n.vlan_id,
        }
    }
}

/// The node, as templates see it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeVars {
    pub node_id: String,
    pub hostname: String,
    /// PXE MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub cpu_arch: String,
    pub os_disk_name: String,
    pub os_version: String,
    pub mgmt: NetVars,
    pub public: NetVars,
}

impl From<&BmNode> for NodeVars {
    fn from(n: &BmNode) -> Self {
        NodeVars {
            node_id: n.node_id.clone(),
            hostname: n.hostname.clone(),
            mac: n.pxe_mac.clone(),
            cpu_arch: n.cpu_arch.clone(),
            os_disk_name: n.os_disk_name.clone(),
            os_version: n.os_version.clone(),
            mgmt: NetVars::from(&n.mgmt),
            public: NetVars::from(&n.public),
        }
    }
}

/// The image of the node's `os_version` (empty strings when none).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImageVars {
    pub os_version: String,
    /// `image` or `installer`.
    pub method: String,
    /// Where the image (or the installer's repository) is fetched from.
    pub url: String,
    pub sha256: String,
    pub kernel_url: String,
    pub initrd_url: String,
    /// GRUB's `(http,addr:port)/path` form (an external `http://` URL too).
    pub kernel_grub: String,
    pub initrd_grub: String,
    pub cmdline: String,
    /// `autoinstall`, `preseed` or `kickstart` (installer).
    pub template: String,
    /// The installed OS calls back on its first boot.
    pub first_boot_callback: bool,
}

/// The deploy ramdisk and the node's callback and config URLs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployVars {
    pub kernel_url: String,
    pub initrd_url: String,
    pub kernel_grub: String,
    pub initrd_grub: String,
    pub cmdline: String,
    /// `…/callback/<node_id>/<token>`; events are POSTed under it.
    pub callback_url: String,
    /// `…/config/<node_id>/<token>`; install configs are under it.
    pub config_url: String,
}

/// Where the server is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerVars {
    /// `http://10.99.0.1:8080`
    pub http_base: String,
    pub address: String,
    pub http_port: u16,
}

/// Everything a template may use.
#[derive(Debug, Clone, Serialize)]
pub struct BootVars {
    pub mode: Mode,
    pub node: NodeVars,
    pub image: ImageVars,
    pub deploy: DeployVars,
    pub server: ServerVars,
}

/// Where the server's HTTP paths are, as URLs and in GRUB's notation.
pub struct Urls<'a> {
    pub address: &'a str,
    pub http_port: u16,
}

impl Urls<'_> {
    fn base(&self) -> String {
        format!("http://{}:{}", self.address, self.http_port)
    }
    /// (URL, GRUB form) of a server path, or of an external URL as is.
    /// `grub_tftp`: GRUB fetches rackboot's own files over TFTP (Debian's
    /// signed GRUB netboot image, used for Secure Boot, has no HTTP).
    fn both(&self, path_or_url: &str, served_as: &str, grub_tftp: bool) -> (String, String) {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            (path_or_url.to_string(), grub_path(path_or_url))
        } else if grub_tftp {
            (
                format!("{}{served_as}", self.base()),
                format!("(tftp,{}){served_as}", self.address),
            )
        } else {
            (
                format!("{}{served_as}", self.base()),
                format!("(http,{}:{}){served_as}", self.address, self.http_port),
            )
        }
    }
}

/// GRUB names a file on an HTTP server `(http,host[:port])/path`; an
/// `https://` URL stays as it is (GRUB has no TLS: such a kernel cannot be
/// fetched by GRUB, only by iPXE).
fn grub_path(url: &str) -> String {
    match url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((host, path)) => format!("(http,{host})/{path}"),
        None => url.to_string(),
    }
}

impl BootVars {
    /// The variables for `node` in `mode`, with its image (when the catalogue
    /// has it) and its current deploy `token`.
    pub fn new(
        mode: Mode,
        node: &NodeVars,
        image: Option<&ImageConfig>,
        cfg: &Config,
        urls: &Urls<'_>,
        token: &str,
    ) -> BootVars {
        let base = urls.base();
        let tftp = cfg.boot.secure_boot_chain;
        let image = image
            .map(|i| {
                let v = image_path(&i.os_version);
                let (kernel_url, kernel_grub) = urls.both(&i.kernel, &format!("{v}/kernel"), tftp);
                let (initrd_url, initrd_grub) = urls.both(&i.initrd, &format!("{v}/initrd"), tftp);
                let url = if i.file.is_empty() {
                    i.url.clone()
                } else {
                    format!("{base}{v}/image")
                };
                ImageVars {
                    os_version: i.os_version.clone(),
                    method: match i.method {
                        ImageMethod::Image => "image".into(),
                        ImageMethod::Installer => "installer".into(),
                    },
                    url,
                    sha256: i.sha256.clone(),
                    kernel_url,
                    initrd_url,
                    kernel_grub,
                    initrd_grub,
                    cmdline: i.cmdline.clone(),
                    template: i.template.clone(),
                    first_boot_callback: i.first_boot_callback,
                }
            })
            .unwrap_or_default();
        let (kernel_url, kernel_grub) = urls.both(&cfg.deploy.kernel, "/deploy/kernel", tftp);
        let (initrd_url, initrd_grub) = urls.both(&cfg.deploy.initrd, "/deploy/initrd", tftp);
        BootVars {
            mode,
            image,
            deploy: DeployVars {
                kernel_url,
                initrd_url,
                kernel_grub,
                initrd_grub,
                cmdline: cfg.deploy.cmdline.clone(),
                callback_url: format!("{base}/callback/{}/{token}", node.node_id),
                config_url: format!("{base}/config/{}/{token}", node.node_id),
            },
            server: ServerVars {
                http_base: base,
                address: urls.address.to_string(),
                http_port: urls.http_port,
            },
            node: node.clone(),
        }
    }
}

/// `{{ value | kernel_arg }}`: refuses what would break a kernel command
/// line (space, newline, any control character).
fn kernel_arg(value: String) -> Result<String, Error> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{value:?} cannot go into a kernel command line (space or control character)"),
        ));
    }
    Ok(value)
}

/// `{{ "255.255.255.0" | prefix_len }}` → 24.
/// A YAML double-quoted string (the JSON form, which YAML reads as is):
/// values from users never break the document's structure.
fn yaml_str(value: String) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "\"\"".into())
}

fn prefix_len(netmask: String) -> Result<u32, Error> {
    netmask
        .parse::<std::net::Ipv4Addr>()
        .map(|m| u32::from(m).count_ones())
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{netmask:?} is not a netmask"),
            )
        })
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
    /// Names of the templates read from `boot.templates_dir`.
    pub replaced: Vec<String>,
}

impl Templates {
    /// The built-in templates, each replaced by `dir/<name>` when that file
    /// exists; a syntax error is an error naming the template.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("kernel_arg", kernel_arg);
        env.add_filter("prefix_len", prefix_len);
        env.add_filter("yaml_str", yaml_str);
        let mut replaced = Vec::new();
        for (name, built_in) in BUILT_IN {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => {
                    replaced.push(name.to_string());
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("template {}: cannot read: {e}", path.display()))?
                }
                None => built_in.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Templates { env, replaced })
    }

    /// Renders `name` for `vars` and `cloud` (the cloud-init templates'
    /// own variables); errors name the template and the node.
    pub fn render_with<T: Serialize>(
        &self,
        name: &str,
        vars: &BootVars,
        cloud: &T,
    ) -> Result<String, String> {
        #[derive(Serialize)]
        struct With<'a, T> {
            #[serde(flatten)]
            vars: &'a BootVars,
            cloud: &'a T,
        }
        self.render_value(name, vars, &With { vars, cloud })
    }

    /// Renders `name` for `vars`; errors name the template and the node.
    pub fn render(&self, name: &str, vars: &BootVars) -> Result<String, String> {
        self.render_value(name, vars, vars)
    }

    fn render_value<S: Serialize>(
        &self,
        name: &str,
        vars: &BootVars,
        context: &S,
    ) -> Result<String, String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(context))
            .map_err(|e| {
                // An error inside an included template is its source: name
                // what went wrong at the bottom, where it went wrong.
                let mut detail = match e.detail() {
                    Some(d) => format!("{e}: {d}"),
                    None => e.to_string(),
                };
                // An included template's error is the cause: say what it is.
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    detail.push_str(&format!(": {c}"));
                    if let Some(d) = c.downcast_ref::<Error>().and_then(|m| m.detail()) {
                        detail.push_str(&format!(" ({d})"));
                    }
                    cause = c.source();
                }
                format!("template {name} for node {}: {detail}", vars.node.node_id)
            })
    }

    /// Renders every template the way it is used, for a sample node and
    /// every image of `cfg`: what fails here would fail a boot.
    pub fn check(&self, cfg: &Config) -> Result<(), String> {
        let node = NodeVars {
            node_id: "n-CHECK000".into(),
            hostname: "template-check".into(),
            mac: "52:54:00:00:00:01".into(),
            cpu_arch: "x86_64".into(),
            os_disk_name: "sda".into(),
            os_version: String::new(),
            mgmt: NetVars {
                address: "10.0.0.10".into(),
                netmask: "255.255.255.0".into(),
                gateway: "10.0.0.1".into(),
                bond: true,
                vlan: true,
                vlan_id: 10,
            },
            public: NetVars {
                address: "192.0.2.10".into(),
                netmask: "255.255.255.0".into(),
                gateway: String::new(),
                bond: false,
                vlan: true,
                vlan_id: 20,
            },
        };
        let urls = Urls {
            address: "10.99.0.1",
            http_port: cfg.http.port,
        };
        let vars = |mode, image| BootVars::new(mode, &node, image, cfg, &urls, "0123abcd");
        for mode in [Mode::Local, Mode::Inspect, Mode::Clean] {
            let v = vars(mode, None);
            for name in [
                mode.ipxe_template(),
                "grub/grub.cfg",
                "pxelinux/pxelinux.cfg",
            ] {
                self.render(name, &v)?;
            }
        }
        self.render("ipxe/discovery.ipxe", &vars(Mode::Local, None))?;
        self.render("grub/netboot.cfg", &vars(Mode::Local, None))?;
        for name in VMEDIA_TEMPLATES {
            self.render(name, &vars(Mode::Inspect, None))?;
        }
        for image in &cfg.images {
            let mode = match image.method {
                ImageMethod::Image => Mode::Deploy,
                ImageMethod::Installer => Mode::Install,
            };
            let v = vars(mode, Some(image));
            let mut names = vec![
                mode.ipxe_template(),
                "grub/grub.cfg",
                "pxelinux/pxelinux.cfg",
            ];
            if let Some(config) = install_config(&image.template) {
                names.extend(["install/meta-data", config]);
            }
            if mode == Mode::Deploy {
                names.extend(VMEDIA_TEMPLATES);
            }
            for name in names {
                self.render(name, &v)
                    .map_err(|e| format!("{e} (image {})", image.os_version))?;
            }
        }
        Ok(())
    }
}

/// The boot configs of a virtual-media ISO (UEFI, legacy BIOS).
pub const VMEDIA_TEMPLATES: [&str; 2] = ["vmedia/grub.cfg", "vmedia/isolinux.cfg"];

/// The install config an installer template name renders.
pub fn install_config(template: &str) -> Option<&'static str> {
    match template {
        "autoinstall" => Some("install/user-data"),
        "preseed" => Some("install/preseed.cfg"),
        "kickstart" => Some("install/ks.cfg"),
        _ => None,
    }
}

/// The template behind `/config/<node>/<token>/<file>` for an installer
/// image with install config `template`.
pub fn config_file_template(template: &str, file: &str) -> Option<&'static str> {
    match (template, file) {
        ("autoinstall", "user-data") => Some("install/user-data"),
        ("autoinstall", "meta-data") => Some("install/meta-data"),
        ("preseed", "preseed.cfg") => Some("install/preseed.cfg"),
        ("kickstart", "ks.cfg") => Some("install/ks.cfg"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
[[images]]
os_version = "tiny-1.0"
file = "/var/lib/rackboot/images/tiny.raw"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[[images]]
os_version = "ubuntu-24.04"
method = "installer"
url = "http://mirror.example/ubuntu"
kernel = "/srv/ubuntu/vmlinuz"
initrd = "http://mirror.example/ubuntu/initrd"
cmdline = "ip=dhcp"
template = "autoinstall"
[[images]]
os_version = "debian-12"
method = "installer"
url = "http://deb.example/debian"
kernel = "/srv/debian/linux"
initrd = "/srv/debian/initrd.gz"
template = "preseed"
[[images]]
os_version = "rocky-9"
method = "installer"
url = "http://rocky.example/9/BaseOS/x86_64/os"
kernel = "/srv/rocky/vmlinuz"
initrd = "/srv/rocky/initrd.img"
template = "kickstart"
"#,
        )
        .unwrap()
    }

    fn node() -> NodeVars {
        NodeVars {
            node_id: "n-Jr8KE6cf".into(),
            hostname: "test01n01".into(),
            mac: "52:54:00:99:00:10".into(),
            cpu_arch: "x86_64".into(),
            os_disk_name: "vda".into(),
            os_version: "tiny-1.0".into(),
            mgmt: NetVars {
                address: "10.1.0.5".into(),
                netmask: "255.255.0.0".into(),
                gateway: "10.1.0.1".into(),
                bond: true,
                vlan: true,
                vlan_id: 100,
            },
            public: NetVars::default(),
        }
    }

    fn vars(mode: Mode, os: &str, cfg: &Config) -> BootVars {
        let urls = Urls {
            address: "10.99.0.1",
            http_port: 8080,
        };
        let image = cfg.images.iter().find(|i| i.os_version == os);
        BootVars::new(mode, &node(), image, cfg, &urls, "tok3n")
    }

    #[test]
    fn every_built_in_template_renders_for_every_mode_and_image() {
        let cfg = config();
        Templates::load(None).unwrap().check(&cfg).unwrap();
    }

    #[test]
    fn boot_scripts_say_what_the_node_does() {
        let (cfg, t) = (config(), Templates::load(None).unwrap());
        let local = t
            .render("ipxe/local.ipxe", &vars(Mode::Local, "", &cfg))
            .unwrap();
        assert!(
            local.starts_with("#!ipxe") && local.contains("sanboot"),
            "{local}"
        );
        assert!(local.contains("n-Jr8KE6cf test01n01: booting from the local disk"));

        let deploy = t
            .render("ipxe/deploy.ipxe", &vars(Mode::Deploy, "tiny-1.0", &cfg))
            .unwrap();
        assert!(deploy.contains("kernel http://10.99.0.1:8080/deploy/kernel initrd=initrd.img console=ttyS0,115200 rackboot.mode=deploy rackboot.node=n-Jr8KE6cf rackboot.callback=http://10.99.0.1:8080/callback/n-Jr8KE6cf/tok3n BOOTIF=01-52-54-00-99-00-10\n"), "{deploy}");
        assert!(deploy.contains("initrd --name initrd.img http://10.99.0.1:8080/deploy/initrd"));

        let install = t
            .render(
                "ipxe/install.ipxe",
                &vars(Mode::Install, "ubuntu-24.04", &cfg),
            )
            .unwrap();
        assert!(install.contains("kernel http://10.99.0.1:8080/images/ubuntu-24.04/kernel initrd=initrd.img ip=dhcp autoinstall ds=nocloud-net;s=http://10.99.0.1:8080/config/n-Jr8KE6cf/tok3n/ hostname=test01n01"), "{install}");
        assert!(
            install.contains("initrd --name initrd.img http://mirror.example/ubuntu/initrd"),
            "{install}"
        );

        let grub = t
            .render("grub/grub.cfg", &vars(Mode::Install, "ubuntu-24.04", &cfg))
            .unwrap();
        assert!(grub.contains("linux (http,10.99.0.1:8080)/images/ubuntu-24.04/kernel ip=dhcp autoinstall ds=nocloud-net\\;s="), "{grub}");
        // An initrd on a mirror: GRUB's device form of the URL.
        assert!(
            grub.contains("initrd (http,mirror.example)/ubuntu/initrd"),
            "{grub}"
        );
        let grub_local = t
            .render("grub/grub.cfg", &vars(Mode::Local, "", &cfg))
            .unwrap();
        assert!(grub_local.contains("exit"), "{grub_local}");
        let pxelinux = t
            .render(
                "pxelinux/pxelinux.cfg",
                &vars(Mode::Deploy, "tiny-1.0", &cfg),
            )
            .unwrap();
        assert!(
            pxelinux.contains("DEFAULT deploy")
                && pxelinux.contains("KERNEL http://10.99.0.1:8080/deploy/kernel"),
            "{pxelinux}"
        );
    }

    #[test]
    fn the_virtual_media_iso_boots_the_deploy_kernel_line_with_the_network() {
        let (cfg, t) = (config(), Templates::load(None).unwrap());
        let v = vars(Mode::Deploy, "tiny-1.0", &cfg);
        let ipxe = t.render("ipxe/deploy.ipxe", &v).unwrap();
        let line = ipxe
            .lines()
            .find(|l| l.starts_with("kernel "))
            .unwrap()
            .split_once("initrd=initrd.img ")
            .unwrap()
            .1
            .to_string();
        for name in VMEDIA_TEMPLATES {
            let out = t.render(name, &v).unwrap();
            // The same deploy arguments as the iPXE script, then the network.
            assert!(
                out.contains(&format!(
                    "{line} rackboot.ip=10.1.0.5/16 rackboot.gateway=10.1.0.1 rackboot.vlan=100\n"
                )),
                "{name}:\n{out}"
            );
        }
        let mut v = vars(Mode::Inspect, "", &cfg);
        v.node.mgmt = NetVars::default();
        let out = t.render("vmedia/isolinux.cfg", &v).unwrap();
        assert!(
            out.contains("rackboot.mode=inspect")
                && out.contains("BOOTIF=01-52-54-00-99-00-10")
                && !out.contains("rackboot.ip"),
            "without a management address the ramdisk uses DHCP: {out}"
        );
    }

    #[test]
    fn install_configs_carry_network_disk_and_callbacks() {
        let (cfg, t) = (config(), Templates::load(None).unwrap());
        let ud = t
            .render(
                "install/user-data",
                &vars(Mode::Install, "ubuntu-24.04", &cfg),
            )
            .unwrap();
        assert!(ud.starts_with("#cloud-config"), "{ud}");
        for want in [
            "hostname: test01n01",
            "path: /dev/vda",
            "macaddress: \"52:54:00:99:00:10\"",
            "bond0:",
            "mgmt100:",
            "id: 100",
            "link: bond0",
            "addresses: [\"10.1.0.5/16\"]",
            "via: \"10.1.0.1\"",
            "http://10.99.0.1:8080/callback/n-Jr8KE6cf/tok3n/done",
            "--post-data 'percent=95&message=installed'",
        ] {
            assert!(ud.contains(want), "user-data lacks {want}:\n{ud}");
        }
        let preseed = t
            .render(
                "install/preseed.cfg",
                &vars(Mode::Install, "debian-12", &cfg),
            )
            .unwrap();
        assert!(
            preseed.contains("d-i partman-auto/disk string /dev/vda"),
            "{preseed}"
        );
        assert!(
            preseed.contains("d-i netcfg/vlan_id string 100"),
            "{preseed}"
        );
        assert!(preseed.contains("late_command string wget"), "{preseed}");
        let ks = t
            .render("install/ks.cfg", &vars(Mode::Install, "rocky-9", &cfg))
            .unwrap();
        for want in [
            "--ip=10.1.0.5",
            "--netmask=255.255.0.0",
            "--vlanid=100",
            "--bondslaves=52:54:00:99:00:10",
            "ignoredisk --only-use=vda",
            "%post",
            "/callback/n-Jr8KE6cf/tok3n/done",
        ] {
            assert!(ks.contains(want), "ks.cfg lacks {want}:\n{ks}");
        }
    }

    #[test]
    fn a_control_character_never_reaches_a_kernel_command_line() {
        let (cfg, t) = (config(), Templates::load(None).unwrap());
        let mut v = vars(Mode::Deploy, "tiny-1.0", &cfg);
        v.deploy.callback_url = "http://10.99.0.1/cb\nshell".into();
        let err = t.render("ipxe/deploy.ipxe", &v).unwrap_err();
        assert!(
            err.contains("ipxe/deploy.ipxe")
                && err.contains("n-Jr8KE6cf")
                && err.contains("kernel command line"),
            "{err}"
        );
        let mut v = vars(Mode::Install, "ubuntu-24.04", &cfg);
        v.node.hostname = "a b".into();
        assert!(t.render("ipxe/install.ipxe", &v).is_err());
        // And the config refuses a command line with a newline.
        let bad = Config::parse("[deploy]\ncmdline = \"console=ttyS0\\nshell\"\n").unwrap_err();
        assert!(bad.to_string().contains("deploy.cmdline"), "{bad}");
    }

    #[test]
    fn a_replaced_template_is_checked_and_undefined_variables_name_template_and_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ipxe")).unwrap();
        std::fs::write(
            dir.path().join("ipxe/local.ipxe"),
            "#!ipxe\necho {{ node.hostnme }}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(t.replaced, vec!["ipxe/local.ipxe".to_string()]);
        let err = t.check(&config()).unwrap_err();
        assert!(
            err.contains("template ipxe/local.ipxe") && err.contains("undefined"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("ipxe/local.ipxe"),
            "#!ipxe\necho {{ node.hostname }\n",
        )
        .unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap();
        assert!(err.contains("template ipxe/local.ipxe"), "{err}");
    }
}
