//! `registry-cleanup check`: validate the policy and say what it does.

use crate::commands::exit::CommandResult;
use crate::config::cli::Engine;
use crate::config::options::CheckOptions;
use crate::domain::exit::Exit;
use crate::domain::lint;
use crate::domain::policy::Policy;
use crate::execute::server_engine;

pub fn check(options: CheckOptions) -> CommandResult {
    let path = options.policy;
    let policy = Policy::load(&path)?;
    // The server engine's own validation, so that `check` never passes a
    // policy `run --engine server` refuses for every project.
    if options.engine == Engine::Server {
        server_engine::check_policy(&policy, &path.display().to_string())?;
    }
    println!(
        "{}: valid, {} rule{}",
        path.display(),
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" }
    );
    for line in explanation(&policy) {
        if let Some(warning) = line.strip_prefix("warning: ") {
            tracing::warn!("{warning}");
        }
        println!("  {line}");
    }
    if options.engine == Engine::Server {
        println!("  engine server: one bulk call per repository; whether two rules meet in one repository is checked by `run`, against the repositories' paths");
    }
    Ok(Exit::Success)
}

/// What the policy protects and what each rule does, one line each (also
/// `doctor`'s policy check).
pub fn explanation(policy: &Policy) -> Vec<String> {
    let mut lines = Vec::new();
    let mut protected: Vec<String> = Vec::new();
    if policy.protect_latest {
        protected.push("latest".into());
    }
    protected.extend(policy.protect.iter().map(|p| format!("\"{}\"", p.source())));
    if protected.is_empty() {
        lines.push("protected: nothing (protect_latest: false, no protect patterns)".to_string());
    } else {
        lines.push(format!("protected: {}", protected.join(", ")));
    }
    lines.push(format!(
        "orphaned referrers (signatures, attestations whose image has no tag): {}",
        policy.orphaned_referrers
    ));
    if let Some(block) = &policy.protect_in_use {
        lines.push(block.summary());
    }
    for rule in &policy.rules {
        lines.push(rule.summary());
    }
    // Which repositories exist is known in `run` only; it warns about rules
    // that match none of them.
    lines.extend(
        lint::shadowed_rules(policy)
            .into_iter()
            .map(|warning| format!("warning: {warning}")),
    );
    lines
}
