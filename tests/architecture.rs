//! docs/architecture.md's table of the crates' dependencies is the one the `Cargo.toml` files
//! declare: the documented layering cannot drift from the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The workspace's `mmssl-*` crates each `[dependencies]` section names (dev-dependencies
/// excluded), by crate.
fn declared(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut manifests = vec![(String::from("mmssl"), root.join("Cargo.toml"))];
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = e.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        manifests.push((name, dir.join("Cargo.toml")));
    }
    manifests
        .into_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut deps = BTreeSet::new();
            let mut inside = false;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('[') {
                    inside = line == "[dependencies]";
                } else if inside && line.starts_with("mmssl-") {
                    let dep: String = line
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '-')
                        .collect();
                    deps.insert(dep);
                }
            }
            (name, deps)
        })
        .collect()
}

/// The table under "## Dependencies" in docs/architecture.md: `| crate | depends on |`.
fn documented(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let section = text
        .split("## Dependencies")
        .nth(1)
        .expect("docs/architecture.md has a Dependencies section");
    let tick = |s: &str| s.trim().trim_matches('`').to_string();
    section
        .lines()
        .skip_while(|l| !l.starts_with("| crate"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            let deps = cells[1]
                .split(',')
                .map(tick)
                .filter(|d| !d.is_empty() && d != "-")
                .collect();
            (tick(cells[0]), deps)
        })
        .collect()
}

#[test]
fn the_documented_dependencies_are_the_declared_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (real, docs) = (declared(root), documented(root));
    assert_eq!(
        real.keys().collect::<Vec<_>>(),
        docs.keys().collect::<Vec<_>>(),
        "the table names every crate once"
    );
    for (name, deps) in &real {
        assert_eq!(
            deps, &docs[name],
            "docs/architecture.md: `{name}` depends on {deps:?} in its Cargo.toml"
        );
    }
}
