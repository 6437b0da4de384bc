//! `cargo xtask doctor`: the table of every tool, with the fix for what is missing.

use std::path::Path;

use dynedge_envoy::workspace_root;

use super::{fix, missing, source_text, survey, Found, Need, Source, TOOLS};
use crate::Result;

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

#[cfg(test)]
mod tests {
    use super::super::survey::without;
    use super::*;

    #[test]
    fn the_table_gives_a_fix_line_for_each_missing_tool() {
        let t = table(&without(&["cmake", "envoy"]));
        let fixes: Vec<&str> = t.lines().filter(|l| l.contains("fix:")).collect();
        assert_eq!(fixes.len(), 2, "{t}");
        assert!(fixes[0].contains("apt-get install -y --no-install-recommends cmake"));
        assert!(fixes[1].contains("cargo xtask deps"));
    }
}
