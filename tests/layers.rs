//! The layers of `src/` stay layers: each folder imports only the layers its
//! module comment names, and no two files import each other, directly or
//! through others. Read from the source text, `use` lines and `crate::…`
//! paths alike; comments and `#[cfg(test)]` modules are left out (a test may
//! reach for whatever it checks against). A failure names the offending line.
//!
//! The layers, from the ground up (`docs/architecture.md` draws them):
//!
//! | folder | may import |
//! |---|---|
//! | `domain` | nothing else of the crate |
//! | `wire` | domain |
//! | `gitlab`, `registry`, `ledger` | wire, domain |
//! | `output` | domain |
//! | `config` | wire, domain |
//! | `execute` | config, gitlab, registry, ledger, output, wire, domain |
//! | `commands` | every layer |

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers each layer may import (besides itself).
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    Some(match layer {
        "domain" => &[],
        "wire" => &["domain"],
        "gitlab" | "registry" | "ledger" => &["wire", "domain"],
        "output" => &["domain"],
        "config" => &["wire", "domain"],
        "execute" => &[
            "config", "gitlab", "registry", "ledger", "output", "wire", "domain",
        ],
        "commands" => &[
            "execute", "config", "gitlab", "registry", "ledger", "output", "wire", "domain",
        ],
        _ => return None,
    })
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

/// The module a file is, as `crate::` paths name it: `domain::planner` for
/// `src/domain/planner/mod.rs` and `src/domain/planner.rs` alike.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(src()).expect("under src/");
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

/// The source lines that are code outside tests: `(line number, text)`.
/// Comments are dropped; a `#[cfg(test)]` item (a `mod tests { … }` block)
/// is skipped to its closing brace.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut skipping_test_item = false;
    let mut depth: i64 = 0;
    let mut entered = false;
    for (index, raw) in text.lines().enumerate() {
        let line = match raw.find("//") {
            // Not inside a string literal on the same line: good enough for
            // `use` lines and paths, which never hold `//` in a string.
            Some(at) if !raw[..at].contains('"') => &raw[..at],
            _ => raw,
        };
        if line.trim() == "#[cfg(test)]" {
            skipping_test_item = true;
            depth = 0;
            entered = false;
            continue;
        }
        if skipping_test_item {
            for c in line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        entered = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            // `mod tests;` (a file of its own) ends the item at once.
            if (entered && depth <= 0) || (!entered && line.trim_end().ends_with(';')) {
                skipping_test_item = false;
            }
            continue;
        }
        lines.push((index + 1, line.to_string()));
    }
    lines
}

/// The `crate::…` modules a line names, as far as they exist: for
/// `use crate::domain::model::{Tag, Outcome};`, `domain::model`. Grouped
/// imports of modules (`use crate::domain::{model, names};`) name each.
fn imported_modules(line: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let path: String = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':');
        // The longest prefix that is a module of the crate.
        let segments: Vec<&str> = path.split("::").collect();
        let longest = (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|candidate| modules.contains(candidate));
        if let Some(module) = longest {
            found.push(module.clone());
            // `crate::domain::{model, names}`: each inner name that is a module.
            let after = &tail[path.len()..];
            if let Some(group) = after.strip_prefix("::{") {
                let group = group.split('}').next().unwrap_or("");
                for name in group.split(',') {
                    let name = name.trim().split("::").next().unwrap_or("").trim();
                    let candidate = format!("{module}::{name}");
                    if modules.contains(&candidate) {
                        found.push(candidate);
                    }
                }
            }
        }
        rest = &tail[path.len()..];
    }
    found
}

fn layer_of(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
    text: String,
}

fn imports() -> (BTreeSet<String>, Vec<Import>) {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|path| module_of(path)).collect();
    let mut imports = Vec::new();
    for file in files {
        // A test module in a file of its own (`planner/tests.rs`).
        if file.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let from = module_of(&file);
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line, code) in code_lines(&text) {
            for to in imported_modules(&code, &modules) {
                if to != from && !from.starts_with(&format!("{to}::")) {
                    imports.push(Import {
                        from: from.clone(),
                        to,
                        file: file.clone(),
                        line,
                        text: code.trim().to_string(),
                    });
                }
            }
        }
    }
    (modules, imports)
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let (modules, imports) = imports();
    let mut wrong = Vec::new();
    for module in &modules {
        let layer = layer_of(module);
        if module.contains("::") && allowed(layer).is_none() {
            wrong.push(format!(
                "src/{layer}/ is no layer: name it in tests/layers.rs (and docs/architecture.md)"
            ));
        }
    }
    for import in &imports {
        let (from, to) = (layer_of(&import.from), layer_of(&import.to));
        let Some(may) = allowed(from) else { continue };
        if from != to && !may.contains(&to) {
            wrong.push(format!(
                "{}:{}: `{}` — {from} may import only {may:?}, not {to}",
                import
                    .file
                    .strip_prefix(src().parent().expect("root"))
                    .expect("in the tree")
                    .display(),
                import.line,
                import.text
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let (_, imports) = imports();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        // A folder's mod.rs declares its children; that is not a use.
        if import.to.starts_with(&format!("{}::", import.from)) {
            continue;
        }
        graph.entry(&import.from).or_default().insert(&import.to);
    }
    // Depth-first search for a back edge; the cycle is the path back to it.
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys().copied().collect::<Vec<_>>() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let lines: Vec<String> = cycle
                .windows(2)
                .filter_map(|pair| {
                    imports
                        .iter()
                        .find(|i| i.from == pair[0] && i.to == pair[1])
                        .map(|i| format!("  {}:{}: `{}`", i.file.display(), i.line, i.text))
                })
                .collect();
            panic!(
                "an import circle: {}\n{}",
                cycle.join(" -> "),
                lines.join("\n")
            );
        }
    }
}

/// The checks above would pass on a tree they cannot read: make sure they see
/// the imports that are there.
#[test]
fn the_checks_read_the_imports() {
    let (modules, imports) = imports();
    assert!(modules.contains("domain::planner") && modules.contains("execute::deleter"));
    assert!(
        imports
            .iter()
            .any(|i| i.from == "execute::deleter" && i.to == "registry::client"),
        "the deleter's use of the registry client is seen"
    );
    // What an upward import looks like to the check.
    let line = "use crate::execute::deleter::Deleter;";
    assert_eq!(imported_modules(line, &modules), ["execute::deleter"]);
    assert!(!allowed("domain").expect("a layer").contains(&"execute"));
    let grouped = "use crate::domain::{model, names::TagName};";
    assert_eq!(
        imported_modules(grouped, &modules),
        ["domain", "domain::model", "domain::names"]
    );
    let test_module =
        "fn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::execute::deleter;\n}\nfn b() {}\n";
    let kept: Vec<String> = code_lines(test_module)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(kept, ["fn a() {}", "fn b() {}"]);
}
