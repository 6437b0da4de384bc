//! What is installed: dpkg's records, PATH, the venvs, the rustup targets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use super::{acme_python, envoy_path, on_path, tools_path, Source, Tool, ENVOY_VERSION, TOOLS};
use crate::{cargo, output_of};

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

/// Every tool present but `names` (for the tests of the table and the installer).
#[cfg(test)]
pub fn without(names: &[&str]) -> Vec<Found> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
