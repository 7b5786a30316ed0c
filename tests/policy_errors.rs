//! Every file in `tests/policy_corpus/*.yml` has exactly one problem; its
//! sidecar `.expect` file lists substrings (one per line) the error must contain
//! — the first usually `name.yml:line:column:`. Files in `good/` and the shipped
//! example must parse.

use std::path::{Path, PathBuf};

use registry_cleanup::domain::model::Tag;
use registry_cleanup::domain::names::TagName;
use registry_cleanup::domain::planner::protect_reason;
use registry_cleanup::domain::policy::{Policy, DEFAULT_POLICY_PATH};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policy_corpus")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_policy_is_refused_with_a_precise_message() {
    let files = yaml_files(&corpus_dir());
    assert!(files.len() >= 20, "only {} corpus files", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let file_name = path.file_name().expect("file name").to_string_lossy();
        let expect_path = path.with_extension("expect");
        let expected = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|err| panic!("{}: {err}", expect_path.display()));
        let message = match Policy::load(path) {
            Ok(_) => {
                problems.push(format!("{file_name}: parsed, but must be refused"));
                continue;
            }
            Err(err) => err.to_string(),
        };
        if !message.contains(file_name.as_ref()) {
            problems.push(format!(
                "{file_name}: message does not name the file: {message}"
            ));
        }
        if message.contains('\n') {
            problems.push(format!(
                "{file_name}: message spans several lines: {message}"
            ));
        }
        for needle in expected.lines().filter(|line| !line.trim().is_empty()) {
            if !message.contains(needle) {
                problems.push(format!(
                    "{file_name}: message lacks {needle:?}\n    message: {message}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_expect_file_has_its_policy() {
    let dir = corpus_dir();
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "expect") {
            assert!(
                path.with_extension("yml").exists(),
                "{} has no policy file",
                path.display()
            );
        }
    }
}

#[test]
fn a_missing_file_names_the_default_path_and_how_to_choose_another() {
    let path = corpus_dir().join("does-not-exist.yml");
    let message = Policy::load(&path).expect_err("missing file").to_string();
    for needle in [
        "does-not-exist.yml",
        "not found",
        DEFAULT_POLICY_PATH,
        "--policy",
        "CLEANUP_POLICY",
    ] {
        assert!(message.contains(needle), "lacks {needle:?}: {message}");
    }
}

#[test]
fn a_directory_is_not_a_policy() {
    let message = Policy::load(&corpus_dir())
        .expect_err("directory")
        .to_string();
    assert!(message.contains("policy_corpus"), "{message}");
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn good_policies_parse() {
    let mut files = yaml_files(&corpus_dir().join("good"));
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.yml"));
    assert!(files.len() >= 4);
    for path in files {
        let policy = Policy::load(&path)
            .unwrap_or_else(|err| panic!("{} must parse: {err}", path.display()));
        assert!(!policy.rules.is_empty());
    }
}

#[test]
fn the_example_policy_reads_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.yml");
    let policy = Policy::load(&path).expect("example policy");
    assert!(policy.protect_latest);
    let protects = |name: &str| {
        let tag = Tag::named(TagName::parse(name).expect("tag name"));
        protect_reason(&policy, &tag).is_some()
    };
    assert!(protects("v1.4.2"));
    assert!(!protects("v1.4.2-rc.1"));
    let summaries: Vec<String> = policy.rules.iter().map(|rule| rule.summary()).collect();
    assert!(
        summaries.iter().any(|line| line.starts_with(
            r#"review images: in repositories matching ".*", delete tags matching "mr-\d+-.*""#
        )),
        "{summaries:#?}"
    );
}

/// The example an error message ends with, between backticks (the last
/// pair), which must work when pasted.
fn suggestion(message: &str) -> &str {
    let end = message.rfind('`').expect("a suggestion in backticks");
    let start = message[..end].rfind('`').expect("opening backtick") + 1;
    &message[start..end]
}

#[test]
fn suggested_snippets_are_valid_yaml_policies() {
    for policy in ["", "# only a comment\n", "rules: []\n"] {
        let message = Policy::parse(policy, "p.yml")
            .expect_err("refused")
            .to_string();
        let snippet = suggestion(&message);
        assert!(snippet.starts_with("rules:"), "{message}");
        let pasted = Policy::parse(snippet, "pasted.yml")
            .unwrap_or_else(|err| panic!("the suggestion {snippet:?} does not parse: {err}"));
        assert_eq!(pasted.rules.len(), 1);
        assert!(pasted.rules[0].delete.is_match("mr-12-fix"), "{snippet}");
    }
    let message = Policy::parse("rules:\n  - name: x\n", "p.yml")
        .expect_err("no delete")
        .to_string();
    let snippet = suggestion(&message);
    let pasted = Policy::parse(&format!("rules:\n  - {snippet}\n"), "pasted.yml")
        .unwrap_or_else(|err| panic!("the suggestion {snippet:?} does not parse: {err}"));
    assert!(pasted.rules[0].delete.is_match("mr-1-a"), "{snippet}");
}
