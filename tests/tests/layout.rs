//! The shape of the source tree: no import circle between the modules of a crate, and no
//! source file over [`MAX_CODE_LINES`] lines of code outside its tests, so that a change
//! to one rule touches one module and a reader can hold a file in mind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines of code (not blank, not a comment) a source file may hold before its tests.
const MAX_CODE_LINES: usize = 600;

/// The crates whose modules are checked, by their source directory.
const CRATES: [&str; 8] = [
    "guest/src",
    "host/src",
    "config/src",
    "adapter/src",
    "wire/src",
    "state/src",
    "testkit/src",
    "bench/src",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// A file's text without its unit tests: up to its inline `#[cfg(test)] mod x {` (by
/// convention the file's end), and without the lines declaring a test module kept in a
/// file of its own (`#[cfg(test)] mod tests;`, whose file is not counted).
fn outside_tests(text: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "#[cfg(test)]" {
            match lines.peek() {
                Some(next) if next.starts_with("mod ") && next.ends_with('{') => break,
                Some(next) if next.starts_with("mod ") && next.ends_with(';') => {
                    lines.next();
                    continue;
                }
                _ => {}
            }
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// The lines that are neither blank nor comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
}

/// The module path of `file` within its crate rooted at `src`: `store::durable` for
/// `store/durable.rs` or `store/durable/mod.rs`; empty for `lib.rs` and `main.rs`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_ancestor(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

#[test]
fn no_source_file_holds_more_than_600_lines_of_code_outside_its_tests() {
    let mut over = Vec::new();
    for dir in CRATES {
        let mut files = Vec::new();
        rust_files(&repo().join(dir), &mut files);
        for file in files {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let lines = code_lines(&outside_tests(&text)).count();
            if lines > MAX_CODE_LINES {
                over.push(format!("{}: {lines}", file.display()));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_CODE_LINES} lines of code: {over:#?}"
    );
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    let path = regex::Regex::new(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    let super_path = regex::Regex::new(r"\b((?:super::)+)([a-z_][a-z0-9_]*)").unwrap();
    let mut circles = Vec::new();
    for dir in CRATES {
        let src = repo().join(dir);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // Unit tests may use whatever they test.
        files.retain(|f| f.file_name().is_none_or(|n| n != "tests.rs"));
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        // The module a path names: the longest known module it starts with.
        let resolve = |named: Vec<String>| {
            (1..=named.len())
                .rev()
                .map(|n| named[..n].to_vec())
                .find(|m| modules.contains(m))
        };
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        // A module depends on the modules inside it: `a -> a::b -> c -> a` is a circle
        // between `a` and `c`.
        for module in modules.iter().filter(|m| !m.is_empty()) {
            let parent = module[..module.len() - 1].to_vec();
            edges.entry(parent).or_default().insert(module.clone());
        }
        for file in &files {
            let from = module_of(&src, file);
            let text = std::fs::read_to_string(file).unwrap();
            for line in code_lines(&outside_tests(&text)) {
                let mut named = Vec::new();
                for found in path.captures_iter(line) {
                    named.push(found[1].split("::").skip(1).map(String::from).collect());
                }
                for found in super_path.captures_iter(line) {
                    let ups = found[1].matches("super").count();
                    // `super` in `a/b.rs` (module a::b) is `a`; in `a/b/mod.rs` too.
                    let base = from.len().saturating_sub(ups);
                    let mut target = from[..base].to_vec();
                    target.push(found[2].to_string());
                    named.push(target);
                }
                for target in named.into_iter().filter_map(&resolve) {
                    // What a module names in the modules around it or inside it is not
                    // a dependency between peers.
                    if !is_ancestor(&target, &from) && !is_ancestor(&from, &target) {
                        edges.entry(from.clone()).or_default().insert(target);
                    }
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(
            at: &Vec<String>,
            edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
            state: &mut BTreeMap<Vec<String>, bool>,
            stack: &mut Vec<Vec<String>>,
            circles: &mut Vec<String>,
            dir: &str,
        ) {
            state.insert(at.clone(), false);
            stack.push(at.clone());
            for next in edges.get(at).into_iter().flatten() {
                match state.get(next) {
                    None => visit(next, edges, state, stack, circles, dir),
                    Some(false) => {
                        let start = stack.iter().position(|m| m == next).unwrap();
                        let circle: Vec<String> =
                            stack[start..].iter().map(|m| m.join("::")).collect();
                        circles.push(format!("{dir}: {} -> {}", circle.join(" -> "), circle[0]));
                    }
                    Some(true) => {}
                }
            }
            stack.pop();
            state.insert(at.clone(), true);
        }
        let mut state = BTreeMap::new();
        for module in edges.keys() {
            if !state.contains_key(module) {
                visit(
                    module,
                    &edges,
                    &mut state,
                    &mut Vec::new(),
                    &mut circles,
                    dir,
                );
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
