//! The run's table, written by the bench itself into docs/benchmarks.md and README.md between
//! two marker comments, with the commit it measured: no figure there is copied by hand.

use std::fs;
use std::process::{Command, Stdio};

use crate::Result;

pub(super) const BEGIN: &str = "<!-- cargo xtask bench: results begin (written by the bench) -->";
pub(super) const END: &str = "<!-- cargo xtask bench: results end -->";

/// The files that carry the table.
pub(super) const FILES: [&str; 2] = ["docs/benchmarks.md", "README.md"];

/// `text` with what lies between [`BEGIN`] and [`END`] replaced by `block`; an error unless
/// each marker is there exactly once, in that order.
pub(super) fn replace_between(text: &str, block: &str) -> Result<String> {
    if text.matches(BEGIN).count() != 1 || text.matches(END).count() != 1 {
        return Err("each bench marker must appear exactly once".into());
    }
    let start = text.find(BEGIN).ok_or("no begin marker")? + BEGIN.len();
    let end = text.find(END).ok_or("no end marker")?;
    if end < start {
        return Err("the end marker comes before the begin marker".into());
    }
    Ok(format!(
        "{}\n{}\n{}",
        &text[..start],
        block.trim_end(),
        &text[end..]
    ))
}

fn output(cmd: &mut Command) -> String {
    cmd.stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The commit the run measured, and whether the tree had changes beyond it.
pub(super) fn commit() -> String {
    let root = dynedge_envoy::workspace_root();
    let head =
        output(
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["rev-parse", "--short=12", "HEAD"]),
        );
    let dirty = !output(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_empty();
    if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    }
}

/// UTC now, `2026-12-02 17:50`.
pub(super) fn utc_now() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M"]))
}

/// Writes `block` between the markers of every file in [`FILES`].
pub(super) fn write(block: &str) -> Result<()> {
    let root = dynedge_envoy::workspace_root();
    for f in FILES {
        let path = root.join(f);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let new = replace_between(&text, block).map_err(|e| format!("{f}: {e}"))?;
        fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_replaces_only_what_lies_between_the_markers() {
        let text = format!("intro\n{BEGIN}\nold table\n{END}\nafter\n");
        let out = replace_between(&text, "| new |\n").unwrap();
        assert_eq!(out, format!("intro\n{BEGIN}\n| new |\n{END}\nafter\n"));
        // Running again gives the same file.
        assert_eq!(replace_between(&out, "| new |").unwrap(), out);
    }

    #[test]
    fn missing_repeated_or_swapped_markers_are_refused() {
        assert!(replace_between("no markers", "x").is_err());
        assert!(replace_between(&format!("{BEGIN}{END}{BEGIN}{END}"), "x").is_err());
        assert!(replace_between(&format!("{END}\n{BEGIN}"), "x").is_err());
    }
}
