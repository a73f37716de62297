//! The HTTP boot server's sendfile fast path: the request-head parser that
//! decides, from peeked bytes, whether a request is a plain whole-file GET.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::transport::pxe::sendfile::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Some(g) = parse_head(data) {
        assert!(g.head_len <= data.len());
        assert!(data[..g.head_len].ends_with(b"\r\n\r\n"));
        assert!(g.path.starts_with('/') && !g.path.contains(['?', '%', '#']));
    }
});
