//! The listener's TLS: 1.2 minimum (docs/dialects.md, Protocol rules: Layer 0), the spec's suites, the generated certificate.

mod support;

use std::process::Command;

use support::*;

/// `openssl s_client` against the gateway with `args`; (handshake completed, output).
fn s_client(stack: &Stack, args: &[&str]) -> (bool, String) {
    let (_, out) = run_quiet(
        Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", stack.envoy.port))
            .arg("-CAfile")
            .arg(stack.cacert())
            .args(args),
    );
    let done = out.contains("Verify return code: 0 (ok)") && !out.contains("Cipher is (NONE)");
    (done, out)
}

/// (protocol, cipher) from s_client's `New, TLSv1.2, Cipher is X` line.
fn negotiated(out: &str) -> (String, String) {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("New, "))
        .unwrap_or_default();
    let (protocol, cipher) = line.split_once(", Cipher is ").unwrap_or_default();
    (protocol.to_string(), cipher.trim().to_string())
}

#[test]
fn tls_1_0_and_1_1_are_refused_by_the_server() {
    let stack = Stack::start("tls_old");
    // SECLEVEL=0 so that the client offers them at all: the refusal must come from Envoy.
    for version in ["-tls1", "-tls1_1"] {
        let (done, out) = s_client(&stack, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!done, "{version} was accepted:\n{out}");
        assert!(out.contains(stack.old_tls_alert()), "{version}:\n{out}");
    }
    let (ok, out) = run_quiet(
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--tlsv1.1",
                "--tls-max",
                "1.1",
                "--cacert",
            ])
            .arg(stack.cacert())
            .arg(stack.envoy.url("/")),
    );
    assert!(!ok, "curl --tls-max 1.1 got through: {out}");
    assert!(out.contains(stack.old_tls_alert()), "{out}");
}

#[test]
fn tls_1_2_is_accepted_with_a_suite_of_the_spec_and_1_3_is_accepted() {
    let stack = Stack::start("tls_new");
    let (done, out) = s_client(&stack, &["-tls1_2"]);
    assert!(done, "{out}");
    let (protocol, cipher) = negotiated(&out);
    assert_eq!(protocol, "TLSv1.2");
    assert!(
        [
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-RSA-CHACHA20-POLY1305"
        ]
        .contains(&cipher.as_str()),
        "{cipher}"
    );
    let (done, out) = s_client(&stack, &["-tls1_3"]);
    assert!(done, "{out}");
    let (protocol, cipher) = negotiated(&out);
    assert_eq!(protocol, "TLSv1.3");
    assert!(
        [
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_GCM_SHA256"
        ]
        .contains(&cipher.as_str()),
        "{cipher}"
    );
    for max in ["1.2", "1.3"] {
        let reply = stack.get("/", &["--tls-max", max]);
        assert_eq!(reply.status, 404, "--tls-max {max}");
    }
}

#[test]
fn a_tls_1_2_suite_outside_the_spec_is_refused() {
    let stack = Stack::start("tls_weak_suite");
    for suite in ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384"] {
        // SECLEVEL=0 so that the client offers it at all: the refusal must come from Envoy.
        let offer = format!("{suite}:@SECLEVEL=0");
        let (done, out) = s_client(&stack, &["-tls1_2", "-cipher", &offer]);
        assert!(!done, "{suite} was accepted:\n{out}");
        assert!(out.contains("alert handshake failure"), "{suite}:\n{out}");
    }
}

#[test]
fn the_generated_certificate_names_loopback_and_localhost() {
    let stack = Stack::start("tls_cert");
    let (ok, text) = run_quiet(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(stack.cacert()),
    );
    assert!(ok, "{text}");
    for name in [
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "DNS:localhost",
    ] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    // curl verifies the name `localhost` against it, too.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(stack.cacert())
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", stack.envoy.port),
        ])
        .arg(format!("https://localhost:{}/", stack.envoy.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}
