//! The server engine: a policy translated into GitLab's bulk-delete API,
//! one call per repository with its one applicable rule.

use std::collections::HashMap;

use crate::gitlab::client::{BulkDelete, GitLab};

use crate::domain::model::RepositoryInfo;
use crate::domain::policy::{Policy, PolicyError, Rule};
use crate::output::report::{Report, RepositoryReport};

/// The one rule each repository hands to GitLab, by repository id; more
/// than one applicable rule is a policy error, and so is an applicable
/// git-aware rule (`when_ref`/`per_ref`): GitLab's bulk delete knows
/// nothing of refs.
pub fn rules_by_repository<'a>(
    policy: &'a Policy,
    origin: &str,
    repositories: &[RepositoryInfo],
) -> Result<HashMap<u64, &'a Rule>, PolicyError> {
    refuse_empty_repository_removal(policy, origin)?;
    refuse_protect_in_use(policy, origin)?;
    let mut rules = HashMap::new();
    for repository in repositories {
        let applicable: Vec<&Rule> = policy
            .rules
            .iter()
            .filter(|rule| rule.repositories.is_match(&repository.path))
            .collect();
        if let Some(rule) = applicable.iter().find(|rule| inexpressible(rule)) {
            return Err(git_aware_error(
                origin,
                rule,
                &format!(" (applicable to repository {})", repository.path),
            ));
        }
        match applicable.as_slice() {
            [] => {}
            [rule] => {
                rules.insert(repository.id, *rule);
            }
            several => {
                let names: Vec<String> = several.iter().map(|r| format!("{:?}", r.name)).collect();
                return Err(PolicyError {
                    message: format!(
                        "{origin}: repository {} has {} applicable rules ({}), but --engine server hands GitLab one rule per repository: narrow the rules' `repositories` patterns, or use --engine client",
                        repository.path,
                        several.len(),
                        names.join(", ")
                    ),
                });
            }
        }
    }
    Ok(rules)
}

/// What `check --engine server` can tell without the repositories: a
/// git-aware rule (refused wherever it applies), and two rules that apply
/// to the same repositories for certain — one of them for every repository
/// (`repositories: ".*"`, the default), or both with the same pattern.
/// Overlaps that depend on the repositories' paths are checked by `run`
/// ([`rules_by_repository`]), where the paths are known.
pub fn check_policy(policy: &Policy, origin: &str) -> Result<(), PolicyError> {
    refuse_empty_repository_removal(policy, origin)?;
    refuse_protect_in_use(policy, origin)?;
    if let Some(rule) = policy.rules.iter().find(|rule| inexpressible(rule)) {
        return Err(git_aware_error(origin, rule, ""));
    }
    let everywhere = |rule: &Rule| rule.repositories.source() == ".*";
    for (index, first) in policy.rules.iter().enumerate() {
        for second in &policy.rules[index + 1..] {
            if everywhere(first)
                || everywhere(second)
                || first.repositories.source() == second.repositories.source()
            {
                let shared = if everywhere(first) {
                    &second.repositories
                } else {
                    &first.repositories
                };
                return Err(PolicyError {
                    message: format!(
                        "{origin}: rules {:?} and {:?} both apply to every repository matching \"{shared}\", but --engine server hands GitLab one rule per repository: give each rule `repositories` patterns that do not overlap, or use --engine client",
                        first.name, second.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// `remove_empty_repositories` needs to know which tags are left, which a
/// bulk call (GitLab deletes in the background) never says: rather than
/// ignore the key silently, the policy is refused.
fn refuse_empty_repository_removal(policy: &Policy, origin: &str) -> Result<(), PolicyError> {
    if policy.remove_empty_repositories {
        return Err(PolicyError {
            message: format!(
                "{origin}: remove_empty_repositories: true needs to know which tags a run leaves, and --engine server hands the deletes to GitLab, which reports nothing back: use --engine client (the default), or set remove_empty_repositories: false"
            ),
        });
    }
    Ok(())
}

/// `protect_in_use` keeps tags by name, commit by commit, and GitLab's
/// bulk delete takes a name pattern and deletes in the background, while
/// deployments and pipelines come and go: rather than hand it a pattern
/// that would delete an image in use, the policy is refused.
fn refuse_protect_in_use(policy: &Policy, origin: &str) -> Result<(), PolicyError> {
    if policy.protect_in_use.is_some() {
        return Err(PolicyError {
            message: format!(
                "{origin}: protect_in_use keeps the tags of deployed and running commits, which GitLab's bulk delete cannot honour (it takes name patterns and deletes later, in the background, whatever is deployed then): use --engine client (the default), or remove the protect_in_use block"
            ),
        });
    }
    Ok(())
}

/// What GitLab's bulk delete cannot do: git refs (`when_ref`/`per_ref`);
/// pulls (`unpulled_for`: GitLab keeps no pull times, and the bulk call
/// takes no list of tags to spare).
fn inexpressible(rule: &Rule) -> bool {
    rule.is_git_aware() || rule.unpulled_for.is_some()
}

fn git_aware_error(origin: &str, rule: &Rule, applicable: &str) -> PolicyError {
    let keys: Vec<&str> = [
        rule.when_ref.is_some().then_some("when_ref"),
        rule.per_ref.then_some("per_ref"),
        rule.unpulled_for.is_some().then_some("unpulled_for"),
    ]
    .into_iter()
    .flatten()
    .collect();
    PolicyError {
        message: format!(
            "{origin}: rule {:?}{applicable} uses {}, which GitLab's bulk delete cannot express: --engine server hands GitLab name patterns, keep_n and older_than only; use --engine client (the default), or narrow the rule's `repositories`",
            rule.name,
            keys.join(" and ")
        ),
    }
}

/// A pattern GitLab will anchor as `\A` + pattern + `\z`: wrapped so the
/// anchors bind every top-level alternative.
fn anchored(patterns: &[&str]) -> String {
    let alternatives: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
    format!("(?:{})", alternatives.join("|"))
}

/// GitLab parses `older_than` with ChronicDuration; whole units it reads the same way.
pub fn gitlab_duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Whether a rule's `delete` pattern would reach referrer tags in a bulk
/// call (tried on the usual suffixes): worth a warning.
fn reaches_referrers(rule: &Rule) -> bool {
    let hex = "0".repeat(64);
    ["", ".sig", ".att", ".sbom"]
        .iter()
        .any(|suffix| rule.delete.is_match(&format!("sha256-{hex}{suffix}")))
}

/// The form parameters of the bulk-delete call for one rule.
pub fn bulk_form(policy: &Policy, rule: &Rule) -> Vec<(String, String)> {
    let mut form = vec![(
        "name_regex_delete".to_string(),
        anchored(&[rule.delete.source()]),
    )];
    let mut keep: Vec<&str> = rule.keep.iter().map(|k| k.source()).collect();
    keep.extend(policy.protect.iter().map(|p| p.source()));
    // Signature, attestation and other referrer tags: GitLab's bulk delete
    // would treat them as ordinary tags — delete the signatures of images it
    // keeps, count them in `keep_n` — so every bulk call keeps them.
    // Signatures of images GitLab deletes then stay behind as orphans, for
    // the client engine (`orphaned_referrers: delete`) to remove.
    keep.push(crate::domain::referrers::REFERRER_TAGS);
    if !keep.is_empty() {
        form.push(("name_regex_keep".to_string(), anchored(&keep)));
    }
    if rule.keep_n > 0 {
        form.push(("keep_n".to_string(), rule.keep_n.to_string()));
    }
    if let Some(older_than) = &rule.older_than {
        form.push((
            "older_than".to_string(),
            gitlab_duration(older_than.seconds),
        ));
    }
    form
}

/// Sends one bulk call per repository that has a rule; GitLab's "once an
/// hour" refusal is a warning, not a failure.
/// One bulk call per repository with an applicable rule, each pushed into
/// `report` (a live run's head, `engine: server`).
pub async fn execute(
    mut report: Report,
    gitlab: &GitLab,
    policy: &Policy,
    rules: &HashMap<u64, &Rule>,
    repositories: &[RepositoryInfo],
) -> Report {
    if !policy.protect_latest {
        tracing::warn!("protect_latest: false has no effect with --engine server: GitLab never bulk-deletes `latest`");
    }
    for info in repositories {
        let mut repository = RepositoryReport::new(&info.path);
        repository.tags = info.tags_count.unwrap_or(0) as usize;
        let Some(rule) = rules.get(&info.id) else {
            repository
                .warnings
                .push("no rule applies; no bulk call sent".into());
            report.push(repository);
            continue;
        };
        if reaches_referrers(rule) {
            tracing::warn!(repository = %info.path, rule = %rule.name, "signature and attestation tags are kept out of the bulk delete");
            repository.warnings.push(format!(
                "rule {:?} would reach signature/attestation tags (sha256-…): GitLab's bulk delete treats them as ordinary tags, so they are kept out of it; those of images GitLab deletes stay behind as orphans (the client engine with orphaned_referrers: delete removes them)",
                rule.name
            ));
        }
        let form = bulk_form(policy, rule);
        match gitlab.bulk_delete(info.id, &form).await {
            Ok(BulkDelete::Accepted) => {
                tracing::info!(repository = %info.path, rule = %rule.name, "bulk delete accepted");
                repository.warnings.push(format!(
                    "bulk delete for rule {:?} accepted: GitLab runs it in the background and reports nothing back",
                    rule.name
                ));
            }
            Ok(BulkDelete::AlreadyRequested(message)) => {
                tracing::warn!(repository = %info.path, message = %message, "bulk delete not accepted");
                repository
                    .warnings
                    .push(format!("GitLab did not run the bulk delete: {message}"));
            }
            Err(err) => {
                repository.error = Some(format!("bulk delete failed: {err}"));
            }
        }
        report.push(repository);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchoring_binds_every_alternative() {
        assert_eq!(anchored(&["a|b"]), "(?:(?:a|b))");
        assert_eq!(anchored(&["keep", "v\\d+"]), "(?:(?:keep)|(?:v\\d+))");
        let gitlab_regex =
            regex::Regex::new(&format!("\\A{}\\z", anchored(&["a|b"]))).expect("regex");
        assert!(gitlab_regex.is_match("a") && gitlab_regex.is_match("b"));
        assert!(!gitlab_regex.is_match("ab") && !gitlab_regex.is_match("xb"));
    }

    #[test]
    fn every_bulk_call_keeps_referrer_tags() {
        let policy =
            Policy::parse("rules: [{name: all, delete: '.*'}]", "test.yml").expect("policy");
        let form = bulk_form(&policy, &policy.rules[0]);
        let keep = &form
            .iter()
            .find(|(k, _)| k == "name_regex_keep")
            .expect("keep")
            .1;
        // GitLab anchors the pattern as \A…\z.
        let gitlab = regex::Regex::new(&format!("\\A{keep}\\z")).expect("regex");
        let hex = "ab".repeat(32);
        for kept in [
            format!("sha256-{hex}"),
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
        ] {
            assert!(gitlab.is_match(&kept), "{kept}");
        }
        for deleted in ["v1", "sha256-abc.sig", "mr-1"] {
            assert!(!gitlab.is_match(deleted), "{deleted}");
        }
        assert!(reaches_referrers(&policy.rules[0]));
        let narrow = Policy::parse("rules: [{delete: 'mr-.*'}]", "test.yml").expect("policy");
        assert!(!reaches_referrers(&narrow.rules[0]));
    }

    fn info(id: u64, path: &str) -> RepositoryInfo {
        RepositoryInfo {
            id,
            path: crate::domain::names::RepositoryPath::parse(path).expect("path"),
            project_id: None,
            tags_count: None,
            created_at: None,
            status: None,
        }
    }

    #[test]
    fn git_aware_rules_are_a_policy_error() {
        let policy = Policy::parse(
            "rules:\n  - {name: plain, repositories: g/plain, delete: 'mr-.*'}\n  - {name: branch images, repositories: g/git, delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}', when_ref: gone, keep_n: 3, per_ref: true}\n  - {name: per ref, repositories: g/per, delete: '(?P<ref>.+)-x', keep_n: 1, per_ref: true}",
            "policy.yml",
        )
        .expect("policy");
        let rules =
            rules_by_repository(&policy, "policy.yml", &[info(1, "g/plain")]).expect("plain");
        assert_eq!(rules[&1].name, "plain");
        let err = rules_by_repository(
            &policy,
            "policy.yml",
            &[info(1, "g/plain"), info(2, "g/git")],
        )
        .expect_err("when_ref");
        assert!(
            err.message.starts_with(
                r#"policy.yml: rule "branch images" (applicable to repository g/git) uses when_ref and per_ref, which GitLab's bulk delete cannot express"#
            ),
            "{}",
            err.message
        );
        assert!(err.message.contains("--engine client"), "{}", err.message);
        let err =
            rules_by_repository(&policy, "policy.yml", &[info(3, "g/per")]).expect_err("per_ref");
        assert!(err.message.contains(r#"rule "per ref""#), "{}", err.message);
        assert!(err.message.contains("uses per_ref,"), "{}", err.message);
    }

    #[test]
    fn check_refuses_what_every_run_would_refuse() {
        let check = |text: &str| {
            let policy = Policy::parse(text, "p.yml").expect("policy");
            check_policy(&policy, "p.yml").map_err(|err| err.message)
        };
        check("rules: [{delete: a}]").expect("one rule");
        let err = check("remove_empty_repositories: true\nrules: [{delete: a}]")
            .expect_err("no removal through bulk deletes");
        assert!(err.contains("remove_empty_repositories"), "{err}");
        check("rules: [{repositories: g/api, delete: a}, {repositories: g/web, delete: b}]")
            .expect("disjoint");
        // May overlap on some paths only: left to `run`, which knows them.
        check("rules: [{repositories: 'g/.*', delete: a}, {repositories: '.*/api', delete: b}]")
            .expect("depends on the paths");
        let err = check("rules: [{delete: a}, {repositories: g/api, delete: b}]")
            .expect_err("the first applies everywhere");
        assert!(
            err.starts_with(r#"p.yml: rules "rule 1" and "rule 2" both apply to every repository matching "g/api""#),
            "{err}"
        );
        let err = check("rules: [{repositories: g/x, delete: a}, {repositories: g/x, delete: b}]")
            .expect_err("same pattern");
        assert!(err.contains("one rule per repository"), "{err}");
        let err = check("rules: [{repositories: g/x, delete: '(?P<ref>.+)-x', when_ref: gone}]")
            .expect_err("git-aware");
        assert!(
            err.starts_with(
                r#"p.yml: rule "rule 1" uses when_ref, which GitLab's bulk delete cannot express"#
            ),
            "{err}"
        );
    }

    #[test]
    fn durations_in_units_gitlab_parses() {
        assert_eq!(gitlab_duration(90 * 86_400), "90d");
        assert_eq!(gitlab_duration(7_200), "2h");
        assert_eq!(gitlab_duration(90), "90s");
        assert_eq!(gitlab_duration(1_800), "30m");
    }
}
