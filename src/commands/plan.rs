//! `registry-cleanup plan`: the policy against an inventory file, offline.

use chrono::{DateTime, Utc};

use super::{finish, load_policy};
use crate::cli::PlanArgs;
use crate::commands::run::plan_warnings;
use crate::config::CleanupEnv;
use crate::error::{Exit, UserError};
use crate::inventory::Inventory;
use crate::planner::plan_repository;
use crate::report::Report;

pub fn plan(args: PlanArgs, env: &CleanupEnv) -> anyhow::Result<Exit> {
    let inventory_path = args
        .inventory
        .clone()
        .or_else(|| env.path(&env.cleanup_inventory))
        .ok_or_else(|| {
            UserError::new(
                "plan needs an inventory: pass --inventory FILE (write one with `registry-cleanup inventory --output FILE`, or try examples/inventory.json)",
            )
        })?;
    let now = match (&args.now, env.string(&env.cleanup_now)) {
        (Some(text), _) => parse_now("--now", text)?,
        (None, Some(text)) => parse_now("CLEANUP_NOW", &text)?,
        (None, None) => Utc::now(),
    };
    let report_path = args
        .report
        .clone()
        .or_else(|| env.path(&env.cleanup_report));
    let (_, policy) = load_policy(args.policy.clone(), env)?;
    let inventory = Inventory::load(&inventory_path)?;

    let mut report = Report::new("plan", true);
    for repository in &inventory.repositories {
        let plan = plan_repository(&policy, &repository.path, &repository.tags, now);
        let mut entry = plan.to_report();
        entry.warnings.extend(plan_warnings(&plan));
        report.push(entry);
    }
    finish(&report, report_path)
}

fn parse_now(name: &str, text: &str) -> Result<DateTime<Utc>, UserError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| {
            UserError::new(format!(
                "{name} {text:?} is not an RFC 3339 time ({err}): use e.g. 2026-11-01T00:00:00Z"
            ))
        })
}
