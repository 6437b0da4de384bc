//! Real parts for the end-to-end tests: PowerDNS, an upstream web server, certificates, the
//! `dynedge-pingora` binary, curl and openssl. Every process is a child stopped on Drop, on
//! ports from `dynedge_envoy::free_port`.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

pub use dynedge_envoy::{free_port, poll_until, within};

pub const PDNS_KEY: &str = "dynedge-demo-pdns-key";
pub const ZONE: &str = "dyn.example.test";

/// A child process killed (and reaped) when dropped.
pub struct Proc {
    pub name: &'static str,
    pub child: Option<Child>,
    /// Kept open: some servers (openssl s_server) exit at end of input.
    _stdin: Option<std::process::ChildStdin>,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name,
            _stdin: child.stdin.take(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.name);
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until something accepts TCP connections on the port (the process may be slow to start).
pub fn wait_tcp(port: u16, what: &str) {
    poll_until(within(30), &format!("{what} listening on {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU16 = AtomicU16::new(0);
    let d = std::env::temp_dir().join(format!(
        "dynedge-pingora-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A throw-away CA and a server certificate for 127.0.0.1 / localhost.
pub fn make_certs(dir: &Path) {
    let sh = format!(
        r#"set -e; cd '{}'
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=dynedge test CA" \
  -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem 2>/dev/null"#,
        dir.display()
    );
    let out = run(Command::new("bash").args(["-c", &sh]));
    assert!(out.status.success(), "certs: {out:?}");
}

/// PowerDNS Authoritative with a sqlite backend and its HTTP API; the zone exists.
pub struct Pdns {
    pub proc: Proc,
    pub dns_port: u16,
    pub api_port: u16,
}

impl Pdns {
    pub fn start(dir: &Path) -> Pdns {
        let dir = dir.join("pdns");
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("pdns.sqlite3");
        let schema = std::fs::read("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
            .expect("pdns-backend-sqlite3 is installed");
        let mut sqlite = Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sqlite.stdin.take().unwrap().write_all(&schema).unwrap();
        assert!(sqlite.wait().unwrap().success());
        let (dns_port, api_port) = (free_port(), free_port());
        std::fs::write(
            dir.join("pdns.conf"),
            format!(
                "launch=gsqlite3\ngsqlite3-database={db}\ngsqlite3-dnssec=no\n\
                 local-address=127.0.0.1\nlocal-port={dns_port}\napi=yes\napi-key={PDNS_KEY}\n\
                 webserver=yes\nwebserver-address=127.0.0.1\nwebserver-port={api_port}\n\
                 webserver-allow-from=127.0.0.1\nsocket-dir={d}\ndaemon=no\nguardian=no\n\
                 write-pid=no\ndisable-syslog=yes\nzone-cache-refresh-interval=0\ncache-ttl=0\n\
                 query-cache-ttl=0\nnegquery-cache-ttl=0\nsecurity-poll-suffix=\n\
                 default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 3600\n",
                db = db.display(),
                d = dir.display()
            ),
        )
        .unwrap();
        let proc = Proc::spawn(
            "pdns_server",
            Command::new("pdns_server").arg(format!("--config-dir={}", dir.display())),
            &dir.join("pdns.log"),
        );
        wait_tcp(api_port, "PowerDNS API");
        let pdns = Pdns {
            proc,
            dns_port,
            api_port,
        };
        let zone = format!(r#"{{"name":"{ZONE}.","kind":"Native","nameservers":["ns1.{ZONE}."]}}"#);
        let (code, body) = pdns.api("POST", "/zones", Some(&zone));
        assert_eq!(code, "201", "create zone: {body}");
        pdns
    }

    /// `(http code, body)` of a PowerDNS API call.
    pub fn api(&self, method: &str, path: &str, json: Option<&str>) -> (String, String) {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/servers/localhost{path}",
            self.api_port
        );
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "-H"])
            .arg(format!("X-API-Key: {PDNS_KEY}"))
            .args(["-w", "\n%{http_code}", &url]);
        if let Some(j) = json {
            cmd.args(["-H", "Content-Type: application/json", "--data", j]);
        }
        let out = run(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.to_string())
    }

    /// What PowerDNS answers over DNS for `name`/`rtype` (dig +short).
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        let out = run(Command::new("dig").args([
            "+short",
            "@127.0.0.1",
            "-p",
            &self.dns_port.to_string(),
            name,
            rtype,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `python3 -m http.server` serving a directory with `hello.txt`: the proxied upstream.
pub struct Upstream {
    pub proc: Proc,
    pub port: u16,
}

impl Upstream {
    pub fn start(dir: &Path) -> Upstream {
        let root = dir.join("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), "hello from the upstream\n").unwrap();
        let port = free_port();
        let proc = Proc::spawn(
            "upstream",
            Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .arg("--directory")
                .arg(&root),
            &dir.join("upstream.log"),
        );
        wait_tcp(port, "upstream");
        Upstream { proc, port }
    }
}

/// The binary under test with one TLS and one plain listener.
pub struct Gateway {
    pub proc: Proc,
    pub tls_port: u16,
    pub plain_port: u16,
    pub stats_port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
}

pub fn demo_config() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/dynedge.json"
    ))
    .unwrap()
}

impl Gateway {
    pub fn start(dir: &Path, config_json: &str, pdns_api_port: u16, upstream: u16) -> Gateway {
        let cluster = format!("pdns_api=127.0.0.1:{pdns_api_port},max_requests=1");
        Gateway::start_with_cluster(dir, config_json, &cluster, upstream)
    }

    /// With one `--cluster` mapping of the caller's choice.
    pub fn start_with_cluster(
        dir: &Path,
        config_json: &str,
        cluster: &str,
        upstream: u16,
    ) -> Gateway {
        let config = dir.join("dynedge.json");
        std::fs::write(&config, config_json).unwrap();
        let (tls_port, plain_port, stats_port) = (free_port(), free_port(), free_port());
        let proc = Proc::spawn(
            "dynedge-pingora",
            Command::new(env!("CARGO_BIN_EXE_dynedge-pingora"))
                .arg("--config")
                .arg(&config)
                .args(["--tls", &format!("127.0.0.1:{tls_port}")])
                .arg("--cert")
                .arg(dir.join("server.pem"))
                .arg("--key")
                .arg(dir.join("server.key"))
                .args(["--listen", &format!("127.0.0.1:{plain_port}")])
                .args(["--cluster", cluster])
                .args(["--stats", &format!("127.0.0.1:{stats_port}")])
                .arg("--access-log")
                .arg(dir.join("access.log"))
                .args(["--upstream", &format!("127.0.0.1:{upstream}")])
                .args(["--threads", "2", "--grace-period", "0"]),
            &dir.join("gateway.log"),
        );
        wait_tcp(tls_port, "dynedge-pingora (TLS)");
        wait_tcp(plain_port, "dynedge-pingora (plain)");
        wait_tcp(stats_port, "dynedge-pingora (stats)");
        Gateway {
            proc,
            tls_port,
            plain_port,
            stats_port,
            dir: dir.to_path_buf(),
            config,
        }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The access log once it has at least `lines` lines: the gateway writes a request's line
    /// after its reply has gone out, so a client can be faster than the log. Gives up after 5 s
    /// and returns what is there (the caller's assertion then shows it).
    pub fn access_log_lines(&self, lines: usize) -> String {
        poll_until(within(5), "access log lines", || {
            Some(self.access_log()).filter(|log| log.lines().count() >= lines)
        })
        .unwrap_or_else(|_| self.access_log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// A request over HTTPS with curl (trusting the test CA); extra curl arguments after.
    pub fn https(&self, path: &str, extra: &[&str]) -> Response {
        let url = format!("https://127.0.0.1:{}{path}", self.tls_port);
        curl(&url, &self.dir.join("ca.pem"), extra)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn curl(url: &str, ca: &Path, extra: &[&str]) -> Response {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url));
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = dynedge_http1::parse_printed(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "curl {url}: {e} in {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Response {
        status: r.status,
        headers: r.headers,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    }
}

/// Everything at once: PowerDNS with the zone, an upstream, certificates, the gateway.
pub struct Stack {
    pub dir: PathBuf,
    pub pdns: Pdns,
    pub upstream: Upstream,
    pub gw: Gateway,
}

impl Stack {
    pub fn start(tag: &str) -> Stack {
        Stack::with_config(tag, &demo_config())
    }

    pub fn with_config(tag: &str, config_json: &str) -> Stack {
        let dir = tempdir(tag);
        make_certs(&dir);
        let pdns = Pdns::start(&dir);
        let upstream = Upstream::start(&dir);
        let gw = Gateway::start(&dir, config_json, pdns.api_port, upstream.port);
        Stack {
            dir,
            pdns,
            upstream,
            gw,
        }
    }
}
