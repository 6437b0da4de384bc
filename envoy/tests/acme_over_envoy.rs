//! ACME DNS-01 for real, on loopback: pebble (Debian, the ACME test CA, asking only our
//! PowerDNS) issues a certificate for `home.dyn.example.test` and `*.home.dyn.example.test` to
//! - lego (Debian) with its `httpreq` provider against `/httpreq`,
//! - certbot (Debian) in manual mode through `examples/acme/dynedge-txt-hook.sh` (ApertoDNS TXT),
//! - certbot with the acme-dns plugin `certbot-dns-acmedns` (PyPI; joohoi's `pyacmedns` client)
//!   against our acme-dns API after `/register`, with the `_acme-challenge` CNAME to the
//!   registration's `fulldomain` created in PowerDNS by the test.
//!
//! Each run checks the certificate's names with openssl and the TXT records with dig. Also the
//! acme-dns refusals through Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dynedge_envoy::{workspace_root, Daemon};
use support::*;

const WILDCARD: &str = "*.home.dyn.example.test";
const CHALLENGE: &str = "_acme-challenge.home.dyn.example.test";

fn stack(name: &str) -> Stack {
    Stack::start(name)
}

/// pebble on loopback with its own throwaway certificate, resolving only through `dns_port`.
struct Pebble {
    _daemon: Daemon,
    port: u16,
    cert: PathBuf,
}

impl Pebble {
    fn start(dir: &Path, dns_port: u16) -> Pebble {
        let dir = dir.join("pebble");
        fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let (ok, out) = run_quiet(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-days", "2", "-subj", "/CN=pebble"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        assert!(ok, "openssl: {out}");
        let (port, mgmt, http, tls) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert, "privateKey": key, "httpPort": http, "tlsPort": tls,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble-config.json");
        fs::write(&config_path, config.to_string()).unwrap();
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(&dir);
        let daemon = Daemon::spawn("pebble", cmd, &dir.join("pebble.log"))
            .unwrap_or_else(|e| panic!("{e} (apt-get install pebble)"));
        let pebble = Pebble {
            _daemon: daemon,
            port,
            cert,
        };
        poll_until(within(20), "pebble serving its directory", || {
            let (ok, _) = run_quiet(
                Command::new("curl")
                    .args(["-sSf", "-m", "2", "--cacert"])
                    .arg(&pebble.cert)
                    .arg(pebble.directory()),
            );
            ok.then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        pebble
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }
}

/// One PEM file trusting both pebble and the gateway (certbot's `requests`, Go's SSL_CERT_FILE).
fn bundle(stack: &Stack, pebble: &Pebble) -> PathBuf {
    let mut text = fs::read_to_string(&pebble.cert).unwrap();
    text.push_str(&fs::read_to_string(stack.cacert()).unwrap());
    let path = stack.dir.join("trust-bundle.pem");
    fs::write(&path, text).unwrap();
    path
}

/// The DNS names in a PEM certificate, as openssl prints them.
fn names_in(cert: &Path) -> String {
    let (ok, out) = run_quiet(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(cert),
    );
    assert!(ok, "openssl x509: {out}");
    println!("{}: {}", cert.display(), out.trim());
    out
}

fn assert_both_names(cert: &Path) {
    let names = names_in(cert);
    assert!(
        names.contains(&format!("DNS:{HOME}")) && names.contains(&format!("DNS:{WILDCARD}")),
        "{names}"
    );
}

fn certbot_args(pebble: &Pebble, dir: &Path) -> Vec<String> {
    let d = |s: &str| dir.join(s).display().to_string();
    [
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--no-random-sleep-on-renew",
        "--server",
        &pebble.directory(),
        "--config-dir",
        &d("config"),
        "--work-dir",
        &d("work"),
        "--logs-dir",
        &d("logs"),
        "-d",
        HOME,
        "-d",
        WILDCARD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// lego with its httpreq provider (`mode` "" or "RAW") against `/httpreq`.
fn lego_httpreq(name: &str, mode: &str) {
    let stack = stack(name);
    let pebble = Pebble::start(&stack.dir, stack.pdns.dns_port);
    let dir = stack.dir.join("lego");
    let started = Instant::now();
    let (ok, out) = run_quiet(
        Command::new("lego")
            .args(["--accept-tos", "--email", "acme@example.test"])
            .args(["--server", &pebble.directory()])
            .args(["--dns", "httpreq", "--dns.disable-cp"])
            .args([
                "--dns.resolvers",
                &format!("127.0.0.1:{}", stack.pdns.dns_port),
            ])
            .args(["-d", HOME, "-d", WILDCARD, "--path"])
            .arg(&dir)
            .arg("run")
            .env("LEGO_CA_CERTIFICATES", &pebble.cert)
            .env("SSL_CERT_FILE", bundle(&stack, &pebble))
            .env("HTTPREQ_ENDPOINT", stack.envoy.url("/httpreq"))
            .env("HTTPREQ_MODE", mode)
            .env("HTTPREQ_USERNAME", DEMO_USER)
            .env("HTTPREQ_PASSWORD", DEMO_PASSWORD)
            .env("HTTPREQ_POLLING_INTERVAL", "1")
            .env("HTTPREQ_PROPAGATION_TIMEOUT", "30"),
    );
    assert!(ok, "lego said:\n{out}");
    println!(
        "lego httpreq {mode:?}: certificate in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_both_names(&dir.join(format!("certificates/{HOME}.crt")));
    assert!(
        stack.records(CHALLENGE, "TXT").is_empty(),
        "cleanup left TXT"
    );
    let log = stack.access_log("/httpreq/cleanup", 2);
    assert_eq!(log.matches("/httpreq/present").count(), 2, "{log}");
}

#[test]
fn lego_httpreq_gets_a_certificate_for_a_name_and_its_wildcard_and_cleans_up() {
    lego_httpreq("acme_lego_httpreq", "");
}

#[test]
fn lego_httpreq_raw_mode_gets_a_certificate_with_the_digest_computed_by_the_gateway() {
    lego_httpreq("acme_lego_httpreq_raw", "RAW");
}

#[test]
fn certbot_manual_mode_with_the_examples_hook_gets_a_certificate_and_cleans_up() {
    let stack = stack("acme_certbot_hook");
    let pebble = Pebble::start(&stack.dir, stack.pdns.dns_port);
    let dir = stack.dir.join("certbot");
    let hook = workspace_root().join("examples/acme/dynedge-txt-hook.sh");
    let started = Instant::now();
    let (ok, out) = run_quiet(
        Command::new("certbot")
            .args(certbot_args(&pebble, &dir))
            .args(["--manual", "--preferred-challenges", "dns"])
            .arg("--manual-auth-hook")
            .arg(format!("{} certbot-auth", hook.display()))
            .arg("--manual-cleanup-hook")
            .arg(format!("{} certbot-cleanup", hook.display()))
            .env("REQUESTS_CA_BUNDLE", &pebble.cert)
            .env("DYNEDGE_URL", stack.envoy.url(""))
            .env("DYNEDGE_TOKEN", TOKEN)
            .env("DYNEDGE_CACERT", stack.cacert()),
    );
    assert!(ok, "certbot said:\n{out}");
    println!(
        "certbot manual hook: certificate in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_both_names(&dir.join(format!("config/live/{HOME}/cert.pem")));
    assert!(
        stack.records(CHALLENGE, "TXT").is_empty(),
        "cleanup left TXT"
    );
}

/// The certbot acme-dns plugin's Python: `$DYNEDGE_ACMEDNS_PYTHON`, else `.tools/acme-venv`
/// (`cargo xtask deps --for-tests` makes it).
fn acmedns_python() -> PathBuf {
    let path = std::env::var_os("DYNEDGE_ACMEDNS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/acme-venv/bin/python"));
    assert!(
        path.is_file(),
        "{} missing: run `cargo xtask deps --for-tests` (certbot-dns-acmedns in .tools/acme-venv)",
        path.display()
    );
    path
}

/// `name CNAME target` in the demo zone, through the PowerDNS API.
fn cname(stack: &Stack, name: &str, target: &str) {
    let body = serde_json::json!({"rrsets": [{"name": format!("{name}."), "type": "CNAME",
        "ttl": 60, "changetype": "REPLACE",
        "records": [{"content": format!("{target}."), "disabled": false}]}]});
    let (ok, out) = run_quiet(
        Command::new("curl")
            .args(["-sSf", "-m", "5", "-X", "PATCH", "-H"])
            .arg(format!("X-API-Key: {PDNS_KEY}"))
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(body.to_string())
            .arg(stack.pdns.api_url("/zones/dyn.example.test.")),
    );
    assert!(ok, "PowerDNS PATCH: {out}");
}

fn register(stack: &Stack, body: &str) -> serde_json::Value {
    let r = stack.get("/acme-dns/register", &["-X", "POST", "--data-binary", body]);
    assert_eq!(r.status, 201, "{r:#?}");
    r.assert_layer0_once();
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn certbot_acme_dns_plugin_gets_a_certificate_through_register_update_and_a_cname() {
    let stack = stack("acme_certbot_acmedns");
    let python = acmedns_python();
    let pebble = Pebble::start(&stack.dir, stack.pdns.dns_port);
    let reg = register(&stack, "");
    let fulldomain = reg["fulldomain"].as_str().unwrap().to_string();
    assert!(fulldomain.ends_with(".acme.dyn.example.test"), "{reg}");
    cname(&stack, CHALLENGE, &fulldomain);
    let dir = stack.dir.join("certbot-acmedns");
    fs::create_dir_all(&dir).unwrap();
    let registrations = dir.join("acmedns-registrations.json");
    fs::write(&registrations, serde_json::json!({ HOME: reg }).to_string()).unwrap();
    let ini = dir.join("acmedns.ini");
    fs::write(
        &ini,
        format!(
            "dns_acmedns_api_url = {}\ndns_acmedns_registration_file = {}\n",
            stack.envoy.url("/acme-dns"),
            registrations.display()
        ),
    )
    .unwrap();
    for f in [&ini, &registrations] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let started = Instant::now();
    let (ok, out) = run_quiet(
        Command::new(&python)
            .args([
                "-c",
                "import sys; from certbot.main import main; sys.exit(main())",
            ])
            .args(certbot_args(&pebble, &dir))
            .args([
                "-a",
                "dns-acmedns",
                "--dns-acmedns-propagation-seconds",
                "1",
            ])
            .arg("--dns-acmedns-credentials")
            .arg(&ini)
            .env("REQUESTS_CA_BUNDLE", bundle(&stack, &pebble)),
    );
    assert!(ok, "certbot (acme-dns plugin) said:\n{out}");
    println!(
        "certbot acme-dns: certificate in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_both_names(&dir.join(format!("config/live/{HOME}/cert.pem")));
    // acme-dns has no delete: the last two values (apex + wildcard) stay at the fulldomain, and
    // nothing was ever written at the _acme-challenge name itself (only the CNAME is there).
    let kept = stack.records(&fulldomain, "TXT");
    assert_eq!(kept.len(), 2, "{kept:?}");
    let at_name = stack.records(CHALLENGE, "CNAME");
    assert_eq!(at_name, [format!("{fulldomain}.")]);
    let log = stack.access_log("/acme-dns/update", 2);
    assert_eq!(log.matches("/acme-dns/update").count(), 2, "{log}");
}

#[test]
fn acme_dns_refusals_through_envoy_carry_acme_dns_codes_and_change_no_record() {
    let stack = stack("acme_dns_refusals");
    let reg = register(&stack, r#"{"allowfrom": ["127.0.0.0/8"]}"#);
    let fenced = register(&stack, r#"{"allowfrom": ["192.0.2.0/24"]}"#);
    let other = register(&stack, "");
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_string();
    let ok_value = "A".repeat(43);
    let update = |user: &str, key: &str, sub: &str, txt: &str| {
        let body = serde_json::json!({"subdomain": sub, "txt": txt}).to_string();
        stack.get(
            "/update",
            &[
                "-X",
                "POST",
                "-H",
                &format!("X-Api-User: {user}"),
                "-H",
                &format!("X-Api-Key: {key}"),
                "--data-binary",
                &body,
            ],
        )
    };
    let (user, key, sub) = (
        s(&reg, "username"),
        s(&reg, "password"),
        s(&reg, "subdomain"),
    );
    let cases = [
        (
            "wrong API key",
            update(&user, &"k".repeat(40), &sub, &ok_value),
            401,
            "forbidden",
        ),
        (
            "a subdomain that is not the user's",
            update(&user, &key, &s(&other, "subdomain"), &ok_value),
            401,
            "forbidden",
        ),
        (
            "a malformed TXT value",
            update(&user, &key, &sub, "not-a-43-character-token"),
            400,
            "bad_txt",
        ),
        (
            "an allowfrom mismatch",
            update(
                &s(&fenced, "username"),
                &s(&fenced, "password"),
                &s(&fenced, "subdomain"),
                &ok_value,
            ),
            401,
            "forbidden",
        ),
    ];
    for (what, r, status, error) in cases {
        assert_eq!(r.status, status, "{what}: {r:#?}");
        r.assert_layer0_once();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
            serde_json::json!({ "error": error }),
            "{what}"
        );
    }
    for r in [&reg, &fenced, &other] {
        assert!(stack.records(&s(r, "fulldomain"), "TXT").is_empty(), "{r}");
    }
    // The same request with the right key and its own subdomain goes through.
    let r = update(&user, &key, &sub, &ok_value);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(
        stack.records(&s(&reg, "fulldomain"), "TXT"),
        [format!("\"{ok_value}\"")]
    );
    let h = stack.get("/acme-dns/health", &[]);
    assert_eq!(h.status, 200, "{h:#?}");
}
