//! The modules of `mmssl-protocol` form a downward stack: no module imports, directly or
//! through others, a module that imports it. Read off the sources (`crate::NAME` paths, in
//! `use` lines and in code alike), so the test fails the day a circle comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module a source file belongs to (`run/mod.rs` -> `run`), `None` for `lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.as_str() {
        "lib.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module -> the other modules it names (`crate::x`, `crate::{x, y}`); tests excluded.
pub fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(src, &mut all);
    let modules: BTreeSet<String> = all.iter().filter_map(|f| module_of(src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &all {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Code before a `#[cfg(test)]` module only, without comments (doc links are not
        // imports).
        let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = g.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            if text[..i].ends_with("mmssl_") || text[..i].ends_with('_') {
                continue;
            }
            let rest = &text[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![
                    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or(""),
                ],
            };
            for n in names {
                if modules.contains(n) && n != from {
                    entry.insert(n.to_string());
                }
            }
        }
    }
    g
}

/// The modules that sit on a circle: each reaches itself.
fn on_circles(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let reaches = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = g
            .get(start)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(m) = stack.pop() {
            if seen.insert(m.to_string())
                && let Some(next) = g.get(m)
            {
                stack.extend(next.iter().map(String::as_str));
            }
        }
        seen
    };
    g.keys()
        .filter(|m| reaches(m).contains(*m))
        .cloned()
        .collect()
}

#[test]
fn the_protocol_modules_form_a_stack_without_circles() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() >= 15, "modules found: {:?}", g.keys());
    let circles = on_circles(&g);
    let edges: Vec<String> = circles
        .iter()
        .map(|m| {
            format!(
                "{m} -> {:?}",
                g[m].intersection(&circles).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        circles.is_empty(),
        "modules on import circles:\n{}",
        edges.join("\n")
    );
}

#[test]
fn the_graph_reader_sees_a_circle() {
    // The reader itself: a made-up crate of two modules importing each other is a circle.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a; mod b;").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B; pub struct A;").unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    std::fs::write(dir.path().join("b/mod.rs"), "use crate::{a::A, c};").unwrap();
    std::fs::write(dir.path().join("c.rs"), "").unwrap();
    let g = graph(dir.path());
    assert_eq!(g["b"], BTreeSet::from(["a".to_string(), "c".to_string()]));
    assert_eq!(on_circles(&g), BTreeSet::from(["a".into(), "b".into()]));
}
