//! A real HTTP client on the socket: the exact curl command of the README.

mod common;

use common::{register, Daemon};
use serde_json::Value;
use std::process::Command;

#[test]
fn curl_on_the_unix_socket_gets_the_action_response() {
    let d = Daemon::start();
    register(&d, 0, 3);
    let body = format!(
        r#"{{"action":"DescribeBMNodes","USER_ID":"admin","PASSWORD":"{}"}}"#,
        d.password()
    );
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(d.socket())
        .args(["-d", &body, "http://localhost/"])
        .output()
        .expect("curl must be installed (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["action"], "DescribeBMNodesResponse");
    assert_eq!(r["ret_code"], 0);
    assert_eq!(r["total_count"], 3);

    // GET is refused with a JSON hint, not an HTML page.
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(d.socket())
        .arg("http://localhost/")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ret_code"], 1100);
    assert!(r["message"].as_str().unwrap().contains("POST"));
}
