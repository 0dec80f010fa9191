//! The layering of `ARCHITECTURE.md`, checked: every `crate::` path in every source file must
//! point down (or sideways without a loop), never up. Test-only; it reads the sources.
//!
//! Run it alone with `cargo test --lib architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module and the layer it belongs to, bottom (0) to top. A module not named takes its
/// closest named parent's layer. Keep this table and `ARCHITECTURE.md` in step.
const LAYERS: &[(&str, u8)] = &[
    // 0 plain types: ids, times, records, tokens and scopes, secret material and its
    //   encryption, configuration, the signature contract, leaf utilities.
    ("verify", 0),
    ("signing", 0),
    ("ids", 0),
    ("clock", 0),
    ("config", 0),
    ("records", 0),
    ("keys", 0),
    ("secrets", 0),
    ("delivery::envelope", 0),
    ("delivery::ssrf", 0),
    ("telemetry", 0),
    ("supervisor", 0),
    // 1 pure rules over plain data.
    ("keys::rules", 1),
    ("secrets::rotation", 1),
    ("delivery::retry", 1),
    ("delivery::retention", 1),
    ("delivery::filter", 1),
    ("audit", 1),
    // 2 storage: all SQL.
    ("store", 2),
    // 3 services: what acts on the store.
    ("delivery", 3),
    ("secrets::keyring", 3),
    ("secrets::scheduler", 3),
    ("audit::stored", 3),
    ("provision", 3),
    // 4 HTTP plumbing shared by every HTTP surface.
    ("http", 4),
    // 5 authentication in front of it.
    ("auth", 5),
    // 6 the shared state handlers read.
    ("state", 6),
    // 7 the HTTP surfaces.
    ("api", 7),
    // 8 wiring.
    ("server", 8),
    ("serve", 8),
    // 9 entry points.
    ("cli", 9),
    ("lib", 9),
    ("architecture", 9),
];

fn layer_of(module: &str) -> Option<(&'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(name, _)| {
            module == *name
                || module
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
        .max_by_key(|(name, _)| name.len())
        .copied()
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments (line comments, doc comments), good enough for finding paths:
/// a `//` inside a string literal on a line with no earlier quote is the only thing it
/// gets wrong, and no `crate::` path hides behind one.
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            let mut in_string = false;
            let bytes = line.as_bytes();
            for i in 0..bytes.len() {
                match bytes[i] {
                    b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
                    b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a source refers to through `crate::a::b…` (and `$crate::` in macros).
fn referenced_modules(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let path: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        assert!(
            !after.starts_with('{'),
            "grouped `crate::{{…}}` imports are not read by this check; write one path per `use`"
        );
        // Segments that name modules are lower case; a type or item ends the module path,
        // but the item's module is the longest prefix the table knows anyway.
        let modules: Vec<&str> = path
            .split("::")
            .filter(|segment| !segment.is_empty())
            .take_while(|segment| segment.starts_with(|c: char| c.is_ascii_lowercase()))
            .collect();
        if !modules.is_empty() {
            found.insert(modules.join("::"));
        }
        rest = &after[path.len()..];
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// A node of the dependency graph: a top-level module at one layer (`secrets` at 0 and
/// `secrets` at 2 are two nodes).
type Node = (String, u8);

fn node(module: &str) -> Option<Node> {
    let (_, layer) = layer_of(module)?;
    let top = module.split("::").next().unwrap_or(module).to_owned();
    Some((top, layer))
}

/// Every edge between nodes, with one place it comes from.
fn edges() -> BTreeMap<(Node, Node), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = module_of(relative);
        if module == "main" || module == "architecture" {
            continue; // the binary, which only calls `cli::main`; this check's own examples
        }
        let from = node(&module)
            .unwrap_or_else(|| panic!("{module} ({}) has no layer in LAYERS", relative.display()));
        let source = std::fs::read_to_string(&file).expect("read source");
        for target in referenced_modules(&without_comments(&source)) {
            let to = node(&target).unwrap_or_else(|| {
                panic!("{module} refers to crate::{target}, which has no layer in LAYERS")
            });
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("{} → crate::{target}", relative.display()));
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let upward: Vec<String> = edges()
        .into_iter()
        .filter(|((from, to), _)| to.1 > from.1)
        .map(|((from, to), place)| {
            format!(
                "{} (layer {}) imports {} (layer {}): {place}",
                from.0, from.1, to.0, to.1
            )
        })
        .collect();
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn modules_of_one_layer_do_not_import_each_other_in_a_loop() {
    let edges = edges();
    let mut graph: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().push(to.clone());
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &Node,
        graph: &BTreeMap<Node, Vec<Node>>,
        path: &mut Vec<Node>,
        done: &mut BTreeSet<Node>,
    ) -> Option<Vec<Node>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        if let Some(cycle) = visit(start, &graph, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|(m, l)| format!("{m}@{l}")).collect();
            let places: Vec<String> = cycle
                .windows(2)
                .map(|pair| edges[&(pair[0].clone(), pair[1].clone())].clone())
                .collect();
            panic!("import loop: {}\n{}", names.join(" → "), places.join("\n"));
        }
    }
}

#[test]
fn the_check_reads_paths_as_intended() {
    // The helpers themselves, so a broken reader cannot make the checks above pass vacuously.
    let source = "use crate::store::Store; // crate::api::x\nlet s = \"// not\"; $crate::keys::rules::may_act_on(x);\n/// [`crate::server::App`]";
    let found = referenced_modules(&without_comments(source));
    assert_eq!(
        found,
        // A function's name reads like a module's; the table's longest prefix places it.
        BTreeSet::from(["store".to_owned(), "keys::rules::may_act_on".to_owned()])
    );
    assert_eq!(
        layer_of("secrets::scheduler"),
        Some(("secrets::scheduler", 3))
    );
    assert_eq!(layer_of("secrets::crypto"), Some(("secrets", 0)));
    assert_eq!(layer_of("serverless"), None);
    assert_eq!(module_of(Path::new("store/mod.rs")), "store");
    assert_eq!(module_of(Path::new("store/queue.rs")), "store::queue");
    assert!(edges().len() > 20, "the sources were read");
}
