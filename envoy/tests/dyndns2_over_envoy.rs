//! DynDNS2 through real Envoy + the built filter + real PowerDNS, checked with dig.

mod support;

use support::*;

#[test]
fn a_curl_update_over_https_changes_the_a_record() {
    let stack = Stack::start("a_record");
    let reply = stack.update_as_demo(&format!("hostname={HOME}&myip=192.0.2.10"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "good 192.0.2.10\n"),
        "{reply:#?}"
    );
    assert_eq!(stack.records(HOME, "A"), ["192.0.2.10"]);
}
