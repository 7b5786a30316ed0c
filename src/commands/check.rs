//! `registry-cleanup check`: validate the policy and say what it does.

use super::load_policy;
use crate::cli::CheckArgs;
use crate::config::CleanupEnv;
use crate::error::Exit;

pub fn check(args: CheckArgs, env: &CleanupEnv) -> anyhow::Result<Exit> {
    let (path, policy) = load_policy(args.policy, env)?;
    println!(
        "{}: valid, {} rule{}",
        path.display(),
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" }
    );
    let mut protected: Vec<String> = Vec::new();
    if policy.protect_latest {
        protected.push("latest".into());
    }
    protected.extend(policy.protect.iter().map(|p| format!("\"{}\"", p.source())));
    if protected.is_empty() {
        println!("  protected: nothing (protect_latest: false, no protect patterns)");
    } else {
        println!("  protected: {}", protected.join(", "));
    }
    for rule in &policy.rules {
        println!("  {}", rule.summary());
    }
    Ok(Exit::Success)
}
