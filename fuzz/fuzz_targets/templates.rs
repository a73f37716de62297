//! Boot templates with hostile inputs: a node's fields (host name, MAC,
//! disk, networks), an image's paths and command line, and the deploy
//! command line, rendered through every template in every mode, and the
//! cloud-init seed with hostile host names, keys and user data. Rendering
//! may refuse a value, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::foundation::config::{Config, ImageConfig, ImageMethod};
use rackboot::foundation::templates::{names, BootVars, Mode, NetVars, NodeVars, Templates, Urls};
use std::sync::OnceLock;

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| Templates::load(None).expect("built-in templates"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let f: Vec<&str> = text.split('\u{1}').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("").to_string();
    let net = |i: usize| NetVars {
        address: field(i),
        netmask: field(i + 1),
        gateway: field(i + 2),
        bond: data.first().is_some_and(|b| b & 1 == 1),
        vlan: data.first().is_some_and(|b| b & 2 == 2),
        vlan_id: data.get(1).copied().unwrap_or(0).into(),
    };
    let node = NodeVars {
        node_id: field(0),
        hostname: field(1),
        mac: field(2),
        cpu_arch: field(3),
        os_disk_name: field(4),
        os_version: field(5),
        mgmt: net(6),
        public: net(9),
    };
    let mut cfg = Config::default();
    cfg.deploy.cmdline = field(12);
    let image = ImageConfig {
        os_version: field(5),
        method: if data.first().is_some_and(|b| b & 4 == 4) {
            ImageMethod::Installer
        } else {
            ImageMethod::Image
        },
        file: field(13),
        url: field(18),
        sha256: field(19),
        sha512: field(20),
        kernel: field(14),
        initrd: field(15),
        cmdline: field(16),
        template: field(17),
        first_boot_callback: data.first().is_some_and(|b| b & 8 == 8),
    };
    let urls = Urls {
        address: "10.99.0.1",
        http_port: 8080,
    };
    for mode in [Mode::Local, Mode::Deploy, Mode::Install, Mode::Inspect, Mode::Clean] {
        let vars = BootVars::new(mode, &node, Some(&image), &cfg, &urls, "tok");
        for name in names() {
            let _ = templates().render(name, &vars);
        }
    }
    // The cloud-init seed: a host name, SSH keys and user data from the API.
    let vars = BootVars::new(Mode::Deploy, &node, Some(&image), &cfg, &urls, "tok");
    let keys = vec![field(21), field(22)];
    let _ = rackboot::service::provision::settings::seed(
        templates(),
        &vars,
        &field(23),
        &field(24),
        &keys,
        &field(25),
    );
});
