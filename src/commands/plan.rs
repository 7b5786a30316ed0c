//! `registry-cleanup plan`: the policy against an inventory file, offline.
//!
//! Streamed: each repository is planned and its report entry written as
//! soon as it is read (`inventory_stream`, `report_stream`), so memory holds
//! one repository, however large the inventory.

use crate::commands::exit::{CommandResult, Failure};
use crate::commands::finish::{finish_stream, start_stream};
use crate::config::options::{CountFiles, PlanOptions};
use crate::domain::planner::plan_owned_repository_with_ledger;
use crate::domain::policy::Policy;
use crate::domain::project::ProjectFacts;
use crate::output::inventory_stream::{for_each_repository, read_facts, StreamError};
use crate::output::report::{Report, RepositoryReport};

pub fn plan(options: PlanOptions) -> CommandResult {
    let policy = Policy::load(&options.policy)?;
    // Each repository is planned with its project's facts from the
    // inventory (`refs[project_id]`, `in_use[project_id]`), if any: else
    // nothing is claimed through `when_ref`, and nothing is deleted under
    // `protect_in_use`; the report says so. Only `when_ref` rules look at
    // refs, only `protect_in_use` at the commits in use; for them, the
    // facts are read first (a pass of their own: `inventory` writes them
    // after the repositories).
    let uses_refs = policy.rules.iter().any(|rule| rule.when_ref.is_some());
    let uses_in_use = policy.protect_in_use.is_some();
    let facts = if uses_refs || uses_in_use {
        let mut facts = read_facts(&options.inventory)?;
        // What the policy does not look at is left out, as `run` leaves it unlisted.
        for project in facts.values_mut() {
            project.refs = project.refs.take().filter(|_| uses_refs);
            project.in_use = project.in_use.take().filter(|_| uses_in_use);
        }
        Some(facts)
    } else {
        None
    };

    // The plan the client engine would carry out; nothing is attempted.
    let mut head = Report::new("client", true);
    head.planned_with(options.now, &options.policy);
    let outputs = CountFiles {
        html: options.html.clone(),
        ..CountFiles::default()
    };
    let mut report = start_stream(head, options.report.as_deref(), &outputs)?;
    for_each_repository(&options.inventory, facts.as_ref(), |repository, project| {
        let project: Option<&ProjectFacts> = project.filter(|_| facts.is_some());
        // What `inventory --ledger` recorded, for rules with `unpulled_for`:
        // the plan a run with the same ledger answers would make.
        let ledger = repository.ledger_view();
        // The listing is not needed after planning: the plan takes its tags.
        let plan = plan_owned_repository_with_ledger(
            &policy,
            &repository.path,
            repository.tags,
            project,
            &ledger,
            options.now,
        );
        report.push(RepositoryReport::from_plan(plan.into_outline(), None))
    })
    .map_err(|err| match err {
        // Unwrapped, so that the exit code comes from the error's own type.
        StreamError::Inventory(err) => Failure::from(err),
        StreamError::Caller(err) => Failure::from(err),
    })?;
    finish_stream(report, &outputs).map(|(exit, _)| exit)
}
