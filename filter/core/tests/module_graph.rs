//! The core's file-level import graph has no cycle.
//!
//! Reads `src/` from `lib.rs` down through the `mod` declarations (test-only modules and items,
//! `#[cfg(test)]`, are left out: they may import anything), resolves every `crate::`, `super::`,
//! `self::`, child-module and `use`-alias path to the file that defines the named item (following
//! re-exports, so a facade that only re-exports does not tie its children to each other), and
//! reports the strongly connected components of the resulting graph. A component with more than
//! one file is a cycle: the files in it cannot be read, or changed, one before the other.

// Test code: the helpers may panic on a source they cannot read.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module path from the crate root, e.g. `["dialects", "dyndns2"]`.
type ModPath = Vec<String>;

#[derive(Default)]
struct Module {
    /// The file (relative to `src/`) the module's items are written in.
    file: String,
    /// Child modules, by name.
    children: BTreeSet<String>,
    /// `use` bindings: local name -> the absolute-or-relative path it names, as written.
    uses: BTreeMap<String, Vec<String>>,
    /// `use x::*` targets, as written.
    globs: Vec<Vec<String>>,
    /// Every other path written in the module (expressions, types, patterns).
    paths: Vec<Vec<String>>,
    /// Child modules declared `pub`.
    pub_children: BTreeSet<String>,
    /// The names of the items declared `pub` (a `pub use` counts each name it binds).
    pub_items: Vec<String>,
}

struct Crate {
    src: PathBuf,
    modules: BTreeMap<ModPath, Module>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Ident>()
                .map(|i| i == "test")
                .unwrap_or(false)
    })
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Flattens a `use` tree into (local name or `*`, full path as written).
fn flatten_use(prefix: &[String], tree: &syn::UseTree, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix.to_vec();
            next.push(p.ident.to_string());
            flatten_use(&next, &p.tree, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last() {
                    out.push((last.clone(), prefix.to_vec()));
                }
            } else {
                let mut full = prefix.to_vec();
                full.push(name.clone());
                out.push((name, full));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.to_vec();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            out.push((r.rename.to_string(), full));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.to_vec())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(prefix, t, out);
            }
        }
    }
}

/// Collects the paths of one module's own items (not of its inline child modules).
struct PathCollector<'a> {
    paths: &'a mut Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            self.paths
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}
    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {}
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut krate = Crate {
            src: src.to_path_buf(),
            modules: BTreeMap::new(),
        };
        krate.load_file(Vec::new(), Path::new("lib.rs"), true);
        krate
    }

    /// `dir_owner`: the file owns a directory for its children (lib.rs, mod.rs, #[path] files
    /// are not: their children live next to them under the module's name).
    fn load_file(&mut self, module: ModPath, rel: &Path, dir_owner: bool) {
        let text = std::fs::read_to_string(self.src.join(rel))
            .unwrap_or_else(|e| panic!("reading {}: {e}", rel.display()));
        let file =
            syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", rel.display()));
        let child_dir = if dir_owner {
            rel.parent().unwrap_or(Path::new("")).to_path_buf()
        } else {
            rel.with_extension("")
        };
        self.load_items(module, rel, &child_dir, &file.items);
    }

    fn load_items(&mut self, module: ModPath, rel: &Path, child_dir: &Path, items: &[syn::Item]) {
        let mut m = Module {
            file: rel.to_string_lossy().replace('\\', "/"),
            ..Module::default()
        };
        let mut children = Vec::new();
        for item in items {
            match item {
                syn::Item::Mod(im) if is_cfg_test(&im.attrs) => {}
                syn::Item::Mod(im) => {
                    let name = im.ident.to_string();
                    if matches!(im.vis, syn::Visibility::Public(_)) {
                        m.pub_children.insert(name.clone());
                        m.pub_items.push(name.clone());
                    }
                    m.children.insert(name.clone());
                    children.push(im);
                }
                syn::Item::Use(u) if is_cfg_test(&u.attrs) => {}
                syn::Item::Use(u) => {
                    let mut flat = Vec::new();
                    flatten_use(&[], &u.tree, &mut flat);
                    for (name, full) in flat {
                        if matches!(u.vis, syn::Visibility::Public(_)) {
                            m.pub_items.push(name.clone());
                        }
                        if name == "*" {
                            m.globs.push(full);
                        } else if name != "_" {
                            m.uses.insert(name, full);
                        } else {
                            m.paths.push(full);
                        }
                    }
                }
                other => {
                    if let Some(name) = pub_item_name(other) {
                        m.pub_items.push(name);
                    }
                    if !is_cfg_test(item_attrs(other)) {
                        PathCollector {
                            paths: &mut m.paths,
                        }
                        .visit_item(other);
                    }
                }
            }
        }
        self.modules.insert(module.clone(), m);
        for im in children {
            let name = im.ident.to_string();
            let mut sub = module.clone();
            sub.push(name.clone());
            match &im.content {
                Some((_, inner)) => {
                    self.load_items(sub, rel, &child_dir.join(&name), inner);
                }
                None => {
                    if let Some(p) = path_attr(&im.attrs) {
                        let base = rel.parent().unwrap_or(Path::new(""));
                        self.load_file(sub, &base.join(p), false);
                    } else if self.src.join(child_dir.join(format!("{name}.rs"))).exists() {
                        self.load_file(sub, &child_dir.join(format!("{name}.rs")), false);
                    } else {
                        self.load_file(sub, &child_dir.join(&name).join("mod.rs"), true);
                    }
                }
            }
        }
    }

    /// Makes a path written in `at` absolute, if it names something in this crate.
    fn absolute(&self, at: &ModPath, path: &[String]) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        let mut base: ModPath = match first.as_str() {
            "crate" => Vec::new(),
            "self" => at.clone(),
            "super" => {
                let mut b = at.clone();
                b.pop();
                let mut rest = rest;
                while rest.first().map(String::as_str) == Some("super") {
                    b.pop();
                    rest = &rest[1..];
                }
                let mut out = b;
                out.extend(rest.iter().cloned());
                return Some(out);
            }
            _ => {
                let m = self.modules.get(at)?;
                if m.children.contains(first) {
                    let mut b = at.clone();
                    b.push(first.clone());
                    b
                } else if let Some(target) = m.uses.get(first) {
                    let mut full = self.absolute(at, target)?;
                    full.extend(rest.iter().cloned());
                    return Some(full);
                } else {
                    return None;
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module that defines the item an absolute path names, following re-exports.
    fn defining_module(&self, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None;
        }
        let mut cur: ModPath = Vec::new();
        for (i, seg) in path.iter().enumerate() {
            let m = self.modules.get(&cur)?;
            if m.children.contains(seg) {
                cur.push(seg.clone());
                continue;
            }
            if let Some(target) = m.uses.get(seg) {
                let mut full = self.absolute(&cur, target)?;
                full.extend(path[i + 1..].iter().cloned());
                return self.defining_module(&full, depth + 1);
            }
            return Some(cur);
        }
        Some(cur)
    }

    /// File -> the files it depends on.
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (at, m) in &self.modules {
            let deps = g.entry(m.file.clone()).or_default();
            let written = m.uses.values().chain(m.paths.iter());
            let globbed = m.globs.iter().map(|p| (p, true));
            for (p, glob) in written.map(|p| (p, false)).chain(globbed) {
                let Some(abs) = self.absolute(at, p) else {
                    continue;
                };
                let Some(def) = self.defining_module(&abs, 0) else {
                    continue;
                };
                // Naming a module (`use crate::dialects;`) is no dependency on its file; the
                // paths written through the name are.
                if def == abs && !glob {
                    continue;
                }
                if let Some(target) = self.modules.get(&def) {
                    if target.file != m.file {
                        deps.insert(target.file.clone());
                    }
                }
            }
        }
        g
    }
}

/// The name of an item declared `pub` (not `pub(crate)`), outside `#[cfg(test)]`.
fn pub_item_name(item: &syn::Item) -> Option<String> {
    let (vis, name) = match item {
        syn::Item::Const(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Enum(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Fn(i) => (&i.vis, i.sig.ident.to_string()),
        syn::Item::Static(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Struct(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Trait(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Type(i) => (&i.vis, i.ident.to_string()),
        syn::Item::Union(i) => (&i.vis, i.ident.to_string()),
        _ => return None,
    };
    (matches!(vis, syn::Visibility::Public(_)) && !is_cfg_test(item_attrs(item))).then_some(name)
}

impl Crate {
    /// Every `pub` item another crate can name (`module::item`), outside the `testing` and
    /// `fuzzing` modules (which exist only with the `testing` feature).
    fn public_surface(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo: Vec<ModPath> = vec![Vec::new()];
        while let Some(at) = todo.pop() {
            let m = &self.modules[&at];
            for item in &m.pub_items {
                let mut full = at.clone();
                full.push(item.clone());
                out.push(full.join("::"));
            }
            for c in &m.pub_children {
                if at.is_empty() && (c == "testing" || c == "fuzzing") {
                    continue;
                }
                let mut sub = at.clone();
                sub.push(c.clone());
                todo.push(sub);
            }
        }
        out.sort();
        out
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        _ => &[],
    }
}

/// Tarjan's strongly connected components, largest first.
fn components(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            comp.sort();
            s.out.push(comp);
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    s.out
}

fn core_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    Crate::load(&src).graph()
}

/// A cycle's edges, one per line: `a.rs -> b.rs, c.rs` (only the edges inside the cycle).
fn describe(g: &BTreeMap<String, BTreeSet<String>>, comp: &[String]) -> String {
    let set: BTreeSet<&String> = comp.iter().collect();
    comp.iter()
        .map(|f| {
            let inside: Vec<&str> = g[f]
                .iter()
                .filter(|d| set.contains(d))
                .map(String::as_str)
                .collect();
            format!("  {f} -> {}", inside.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_core_has_no_import_cycle() {
    let g = core_graph();
    let cycles: Vec<Vec<String>> = components(&g).into_iter().filter(|c| c.len() > 1).collect();
    let report: Vec<String> = cycles
        .iter()
        .map(|c| format!("{} files:\n{}", c.len(), describe(&g, c)))
        .collect();
    let in_cycles: usize = cycles.iter().map(Vec::len).sum();
    assert!(
        cycles.is_empty(),
        "{in_cycles} files in import cycles in filter/core/src:\n{}",
        report.join("\n")
    );
}

/// The guard ladder (refuse client → authenticate → count → scope → ownership → host limits)
/// is the pipeline's alone: a dialect parses what the request presents (`credentials.rs`) and
/// renders the outcome, and never names the authenticator or the limiter (`pipeline.rs`
/// re-exports the few types a dialect words its replies with).
#[test]
fn no_dialect_names_the_authenticator_or_the_limiter() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let dialects = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dialects");
    let mut files = Vec::new();
    walk(&dialects, &mut files);
    let mut offences = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if ["crate::auth", "crate::limits"]
                .iter()
                .any(|p| line.contains(p))
            {
                offences.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 10, "read only {} dialect files", files.len());
    assert!(
        offences.is_empty(),
        "dialects naming auth or limits directly:\n{}",
        offences.join("\n")
    );
}

/// What other crates can name: the adapter contract at the root and the `adapter` module
/// (docs/architecture.md, The adapter surface). Everything else is crate-private.
/// The group commit adds its own contract (`GroupCommit`, `ZoneWrite`, `Commits`, ...).
const PUBLIC_ITEMS: usize = 93;

#[test]
fn the_public_surface_stays_narrow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let surface = Crate::load(&src).public_surface();
    assert!(
        surface.len() <= PUBLIC_ITEMS,
        "{} public items (at most {PUBLIC_ITEMS}):\n{}",
        surface.len(),
        surface.join("\n")
    );
}

/// The graph reader itself, on a small crate written for it: it must see `crate::`, `super::`,
/// `self::`, child-module and alias paths, follow re-exports, and skip `#[cfg(test)]` code, or the
/// test above proves nothing.
#[test]
fn the_graph_sees_every_kind_of_path_and_skips_tests() {
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("module_graph_fixture");
    let _ = std::fs::remove_dir_all(&src);
    let files = [
        ("lib.rs", "mod a; mod b; mod c; mod d; pub use c::Thing;"),
        ("a.rs", "use crate::b::B; fn f() { let _ = super::d::D; }"),
        ("b.rs", "mod inner; pub struct B; fn f() { inner::g(); }"),
        ("b/inner.rs", "use crate::Thing; pub fn g() {}"),
        (
            "c.rs",
            "pub struct Thing; #[cfg(test)] mod tests { use crate::a::*; }",
        ),
        ("d/mod.rs", "mod leaf; pub use self::leaf::D;"),
        (
            "d/leaf.rs",
            "use crate as k; pub struct D; fn f() { let _ = k::a::X; }",
        ),
    ];
    for (f, text) in files {
        let path = src.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let g = Crate::load(&src).graph();
    let deps = |f: &str| g[f].iter().map(String::as_str).collect::<Vec<_>>();
    assert_eq!(
        deps("a.rs"),
        ["b.rs", "d/leaf.rs"],
        "crate:: and super:: through a re-export"
    );
    assert_eq!(deps("b.rs"), ["b/inner.rs"], "a child module named bare");
    assert_eq!(
        deps("b/inner.rs"),
        ["c.rs"],
        "a root re-export is followed to its definition"
    );
    assert!(deps("c.rs").is_empty(), "a #[cfg(test)] module is skipped");
    assert_eq!(deps("d/mod.rs"), ["d/leaf.rs"], "self::");
    assert_eq!(deps("d/leaf.rs"), ["a.rs"], "an alias of the crate");
    let cycles: Vec<_> = components(&g).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(cycles, [vec!["a.rs".to_string(), "d/leaf.rs".to_string()]]);
    let _ = std::fs::remove_dir_all(&src);
}

#[test]
fn components_finds_a_cycle_and_leaves_a_chain_alone() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let comps = components(&g);
    assert_eq!(comps[0], vec!["a", "b", "c"]);
    assert_eq!(comps[1], vec!["d"]);
}
