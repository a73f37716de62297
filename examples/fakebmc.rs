//! A farm of fake IPMI 2.0 BMCs (RMCP+ suites 3 and 17, user admin /
//! password), one UDP socket each, for benchmarks and the lab; the server
//! is `tests/common/fakebmc.rs`, which the tests use too. pyghmi's BMC serves
//! ~30 sessions/s and stops after ~2,500 calls, too slow to measure a fast
//! client against. ipmitool works against this farm.
//!
//! usage: fakebmc --count N [--addr 127.0.0.1] [--port 20000] [--spread-ips STRIDE]
//!   default: N BMCs on ADDR:PORT .. ADDR:PORT+N-1
//!   --spread-ips S: N BMCs on ADDR, ADDR+S, ADDR+2S, … all on PORT

#[path = "../tests/common/fakebmc.rs"]
mod fakebmc;

use std::net::Ipv4Addr;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: u32 = arg(&args, "--count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let addr: Ipv4Addr = arg(&args, "--addr")
        .and_then(|v| v.parse().ok())
        .unwrap_or(Ipv4Addr::LOCALHOST);
    let port: u16 = arg(&args, "--port")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20000);
    let spread: Option<u32> = arg(&args, "--spread-ips").and_then(|v| v.parse().ok());
    let at = fakebmc::addresses(count, addr, port, spread);
    if let Err(e) = fakebmc::serve(at).await {
        eprintln!("fakebmc: cannot bind: {e}");
        std::process::exit(1);
    }
    println!(
        "fakebmc: serving {count} BMCs (first {addr}:{port}), pid {}",
        std::process::id()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}
