//! The action API's request parser: the body as JSON, the action lookup,
//! and the parameter type check against every action's declaration (and
//! the one named in the body), plus the value helpers handlers use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackboot::transport::api::catalogue::{find_action, ACTIONS};
use rackboot::transport::api::params::Params;
use rackboot::transport::api::parse_body;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = parse_body(data) else {
        return;
    };
    let named = obj
        .get("action")
        .and_then(|a| a.as_str())
        .and_then(find_action);
    let actions = named.into_iter().chain(ACTIONS.iter().take(if named.is_some() { 0 } else { ACTIONS.len() }));
    for action in actions {
        if let Ok(p) = Params::check(action.name, action.params, obj.clone()) {
            let _ = p.paging();
            let _ = p.ipv4_range(4096, "ip");
            for key in p.keys().map(str::to_string).collect::<Vec<_>>() {
                let _ = p.list(&key);
                let _ = p.unique_list(&key);
                let _ = p.objects(&key);
                let _ = p.int(&key);
                let _ = p.str(&key);
            }
        }
    }
});
