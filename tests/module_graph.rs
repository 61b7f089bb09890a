//! The module graph stays acyclic: no top-level module of `src/` may depend on another that
//! depends back on it, directly or through others (docs/architecture.md). Read from the source:
//! every `crate::a…` path outside test code names an edge to the top-level module `a`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The top-level modules each top-level module's non-test code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name")
            .trim_end_matches(".rs")
            .to_string();
        let name = relative.to_string_lossy();
        if matches!(top.as_str(), "lib" | "main") || name.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let uses = graph.entry(top.clone()).or_default();
        uses.extend(paths_after("crate::", code));
        // In `src/a.rs` and `src/a/mod.rs`, `super::` is the crate root too.
        if name == format!("{top}.rs") || name == format!("{top}/mod.rs") {
            uses.extend(paths_after("super::", code));
        }
    }
    // `crate::Error` is the `error` module's, re-exported by lib.rs.
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let aliases = reexports(&lib);
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, uses) in graph.iter_mut() {
        *uses = uses
            .iter()
            .map(|u| aliases.get(u).cloned().unwrap_or_else(|| u.clone()))
            .filter(|u| modules.contains(u) && u != module)
            .collect();
    }
    graph
}

/// The names lib.rs re-exports (`pub use module::{A, B};`), and the module of each.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        for item in items.split([',', '{', '}']) {
            let name = item.rsplit("::").next().unwrap_or_default();
            let name = name.rsplit(" as ").next().unwrap_or_default().trim();
            if !name.is_empty() {
                names.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    names
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The first segment after each `prefix` (`crate::`; each item of a `crate::{a, b::c}` group),
/// comments left out.
fn paths_after(prefix: &str, code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item) = (1, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        found.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    found.insert(ident(&item));
                    break;
                }
                if depth == 1 {
                    item.push(c);
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.remove("");
    found
}

/// A cycle through `start`, if there is one: the modules in order.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == start {
                return Some(path.iter().cloned().chain([start.to_string()]).collect());
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_top_level_module_depends_on_itself_through_others() {
    let graph = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "the source was not read: {graph:?}");
    assert!(
        graph["pipeline"].contains("forge") && graph["app"].contains("pipeline"),
        "the imports were not read: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_paths_and_a_cycle() {
    let paths = paths_after(
        "crate::",
        "use crate::{\n    Error,\n    git::{A, b::C},\n    spec::Plan,\n};\n// crate::web\nlet x = crate::kind::ErrorKind::Internal;",
    );
    let expected: BTreeSet<String> = ["Error", "git", "spec", "kind"].map(String::from).into();
    assert_eq!(paths, expected);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        cycle_through(&graph, "a").map(|c| c.join(" ")),
        Some("a b c a".into())
    );
    assert_eq!(cycle_through(&graph, "d"), None);
    let aliases =
        reexports("pub mod error;\npub use error::{Error, Result};\npub use kind::ErrorKind;");
    assert_eq!(aliases.get("Result").map(String::as_str), Some("error"));
    assert_eq!(aliases.get("ErrorKind").map(String::as_str), Some("kind"));
}
