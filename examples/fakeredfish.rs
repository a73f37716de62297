//! A FAKE farm of Redfish BMCs (HTTPS with the test CA, sessions, user
//! admin / password), the one the tests and `benches/redfish.rs` use
//! (`tests/common/fakeredfish.rs`), runnable on its own to try a client on:
//!
//! usage: fakeredfish [--count N]   (prints each BMC's URL and the CA's PEM)

#[path = "../tests/common/fakeredfish.rs"]
mod fakeredfish;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let farm = fakeredfish::start(count, fakeredfish::Options::default());
    for b in &farm.bmcs {
        println!("redfish://{}/redfish/v1/Systems/1", b.addr);
    }
    println!("{}", farm.ca_pem);
    loop {
        std::thread::park();
    }
}
