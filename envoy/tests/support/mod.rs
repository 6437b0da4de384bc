//! The end-to-end fixture: a real PowerDNS and a real Envoy running the built filter, on this
//! ports from `free_port`, and curl/dig/openssl to talk to them.
#![allow(dead_code)]
// each test binary uses a different part of it
// Test support: failing loudly is its job (clippy.toml allows these only inside #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod rfc2136;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use dynedge_envoy::{free_port, poll_until, within};
use dynedge_envoy::{
    wasm_file, workspace_root, Certificate, Daemon, Envoy, EnvoyConfig, PowerDns, Proxy, DEMO_ZONE,
};

pub const HOME: &str = "home.dyn.example.test";
pub const OFFICE: &str = "office.dyn.example.test";
pub const NEIGHBOUR: &str = "neighbour.dyn.example.test";
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const TOKEN: &str = "dynedge_test_demodemodemodemodemodemodemodemo";
pub const PDNS_KEY: &str = "dynedge-demo-pdns-key";

/// The Layer 0 headers (docs/dialects.md, Protocol rules: Layer 0) every response must carry exactly once.
pub const LAYER0: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains; preload",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    (
        "cache-control",
        "no-store, no-cache, must-revalidate, private",
    ),
];

/// A fresh directory for one test under cargo's test tmpdir.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// examples/dynedge.json, pointed at this test's PowerDNS, with `office.dyn.example.test`
/// added to demo's hosts (for the multi-host tests).
pub fn plugin_config(pdns_api_port: u16) -> String {
    serde_json::to_string_pretty(&plugin_config_value(pdns_api_port)).unwrap()
}

pub fn plugin_config_value(pdns_api_port: u16) -> serde_json::Value {
    let path = workspace_root().join("examples/dynedge.json");
    let text = fs::read_to_string(&path).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["backends"]["pdns"]["authority"] = format!("127.0.0.1:{pdns_api_port}").into();
    let users = cfg["users"].as_array_mut().unwrap();
    let demo = users.iter_mut().find(|u| u["name"] == DEMO_USER).unwrap();
    demo["hosts"].as_array_mut().unwrap().push(OFFICE.into());
    cfg
}

pub struct Stack {
    pub dir: PathBuf,
    /// Which proxy runs dynedge (`DYNEDGE_GATEWAY=envoy|pingora`).
    pub proxy: Proxy,
    // Envoy first: it is dropped (stopped) before PowerDNS.
    pub envoy: Envoy,
    pub pdns: PowerDns,
}

impl Stack {
    /// PowerDNS with the demo zone, a new certificate, Envoy with the filter and the demo config.
    pub fn start(name: &str) -> Stack {
        Stack::start_with(name, |_| {})
    }

    /// As [`Stack::start`], with the plugin configuration edited first.
    pub fn start_with(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Stack {
        Stack::start_full(name, edit, None)
    }

    /// As [`Stack::start_with`], with an HTTPS webhook receiver on `webhook_port`.
    pub fn start_full(
        name: &str,
        edit: impl FnOnce(&mut serde_json::Value),
        webhook_port: Option<u16>,
    ) -> Stack {
        let proxy = Proxy::from_env().unwrap_or_else(|e| panic!("{e}"));
        let wasm = match proxy {
            Proxy::Envoy => wasm_file().unwrap_or_else(|e| panic!("{e}")),
            Proxy::Pingora => PathBuf::new(),
        };
        let dir = test_dir(name);
        let (dns_port, api_port, https_port) = (free_port(), free_port(), free_port());
        let mut pdns = PowerDns::start(&dir.join("pdns"), dns_port, api_port, PDNS_KEY)
            .unwrap_or_else(|e| panic!("{e}"));
        pdns.create_zone(DEMO_ZONE)
            .unwrap_or_else(|e| panic!("{e}"));
        let certificate =
            Certificate::self_signed(&dir.join("tls")).unwrap_or_else(|e| panic!("{e}"));
        let cfg = EnvoyConfig {
            listen_address: "127.0.0.1".into(),
            listen_port: https_port,
            certificate,
            wasm,
            plugin_config: {
                let mut v = plugin_config_value(api_port);
                edit(&mut v);
                serde_json::to_string_pretty(&v).unwrap()
            },
            pdns_api_port: api_port,
            access_log: dir.join("access.log"),
            webhook_port,
        };
        let envoy =
            Envoy::start_proxy(proxy, &dir.join("envoy"), &cfg).unwrap_or_else(|e| panic!("{e}"));
        Stack {
            dir,
            proxy,
            envoy,
            pdns,
        }
    }

    /// The alert that refuses a TLS 1.0/1.1 ClientHello. BoringSSL (Envoy) answers
    /// protocol_version as RFC 5246 asks; rustls (Pingora) has no TLS 1.0/1.1 at all and turns
    /// such a hello away as lacking signature_algorithms, with handshake_failure.
    pub fn old_tls_alert(&self) -> &'static str {
        match self.proxy {
            Proxy::Envoy => "alert protocol version",
            Proxy::Pingora => "alert handshake failure",
        }
    }

    pub fn cacert(&self) -> &Path {
        &self.envoy.certificate.cert
    }

    /// GET `path_and_query` over HTTPS with curl, plus `extra` curl arguments.
    pub fn get(&self, path_and_query: &str, extra: &[&str]) -> Reply {
        self.get_url(&self.envoy.url(path_and_query), extra)
    }

    /// GET a whole `url` over HTTPS with curl, plus `extra` curl arguments.
    pub fn get_url(&self, url: &str, extra: &[&str]) -> Reply {
        let out = Command::new("curl")
            .args(["-sS", "-i", "-m", "10", "--cacert"])
            .arg(self.cacert())
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Reply::parse(&out)
    }

    /// `/nic/update?{query}` with demo's Basic credentials.
    pub fn update_as_demo(&self, query: &str) -> Reply {
        self.get(
            &format!("/nic/update?{query}"),
            &["-u", &format!("{DEMO_USER}:{DEMO_PASSWORD}")],
        )
    }

    pub fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        self.pdns
            .lookup(name, rtype)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `examples/{name}` with the demo's port and paths replaced by this stack's, written 0600.
    pub fn example(&self, name: &str) -> PathBuf {
        let text = fs::read_to_string(workspace_root().join("examples").join(name)).unwrap();
        assert!(text.contains("127.0.0.1:8443") && text.contains(".run/tls/cert.pem"));
        let run = self.dir.join("client");
        fs::create_dir_all(&run).unwrap();
        let text = text
            .replace("127.0.0.1:8443", &format!("127.0.0.1:{}", self.envoy.port))
            .replace(".run/tls/cert.pem", &self.cacert().display().to_string())
            .replace(".run/", &format!("{}/", run.display()));
        let path = run.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A certificate for `localhost` issued by the stack's own, which is a self-signed CA and
    /// what both proxies trust for the `webhooks` cluster. rustls (Pingora) refuses a CA
    /// certificate as a server's own (`CaUsedAsEndEntity`), so other servers of a test get
    /// one of these.
    pub fn issue_certificate(&self, name: &str) -> Certificate {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let (cert, key, csr, ext) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("req.csr"),
            dir.join("ext.cnf"),
        );
        fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
        )
        .unwrap();
        let (ok, out) = run_quiet(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        assert!(ok, "openssl req: {out}");
        let ca = &self.envoy.certificate;
        let (ok, out) = run_quiet(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "30", "-set_serial", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&ca.cert)
                .arg("-CAkey")
                .arg(&ca.key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        assert!(ok, "openssl x509: {out}");
        Certificate { cert, key }
    }

    /// `examples/webhook-receiver.py` on `port` with `secret` (and `extra` flags), writing one
    /// line per delivery to `log`, once it listens.
    pub fn webhook_receiver(&self, port: u16, secret: &str, extra: &[&str], log: &Path) -> Daemon {
        let tls = self.issue_certificate("receiver-tls");
        let mut cmd = Command::new("python3");
        cmd.arg(workspace_root().join("examples/webhook-receiver.py"))
            .args(["--port", &port.to_string(), "--secret", secret])
            .args(extra)
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .arg("--log")
            .arg(log);
        let receiver = Daemon::spawn("webhook-receiver", cmd, &self.dir.join("receiver.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        poll_until(within(10), "the webhook receiver listening", || {
            (!dynedge_envoy::port_is_free(port)).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        receiver
    }

    /// The access log once `count` of its lines contain `needle` (Envoy flushes it about every
    /// second; the readiness probe's `GET /` is in it too).
    pub fn access_log(&self, needle: &str, count: usize) -> String {
        let read = || fs::read_to_string(&self.envoy.access_log).unwrap_or_default();
        poll_until(within(10), "access log lines", || {
            let text = read();
            (text.lines().filter(|l| l.contains(needle)).count() >= count).then_some(text)
        })
        .unwrap_or_else(|_| read())
    }
}

/// One HTTP response as curl `-i` printed it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(out: &Output) -> Reply {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let r =
            dynedge_http1::parse_printed(&out.stdout).unwrap_or_else(|e| panic!("{e} in {text:?}"));
        Reply {
            status: r.status,
            headers: r.headers,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        }
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// Asserts each Layer 0 header appears exactly once with its value.
    pub fn assert_layer0_once(&self) {
        for (name, value) in LAYER0 {
            assert_eq!(self.all(name), vec![*value], "header {name} in {self:#?}");
        }
    }
}

/// Runs a command to completion with no stdin; its combined output.
pub fn run_quiet(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The ApertoDNS API's path prefix.
pub const APERTO: &str = "/.well-known/apertodns/v1";

/// A reply's body as JSON.
pub fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply:#?}"))
}

/// `METHOD path` on the stack's gateway with a JSON body (none when empty) and a Bearer token.
pub fn send(stack: &Stack, method: &str, path: &str, token: &str, body: &str) -> Reply {
    send_url(stack, method, &stack.envoy.url(path), token, body)
}

/// [`send`] to a whole `url`.
pub fn send_url(stack: &Stack, method: &str, url: &str, token: &str, body: &str) -> Reply {
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec!["-X", method, "-H", auth.as_str()];
    if !body.is_empty() {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    stack.get_url(url, &args)
}
