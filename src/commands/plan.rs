//! `registry-cleanup plan`: the policy against an inventory file, offline.
//!
//! Streamed: each repository is planned and its report entry written as
//! soon as it is read (`inventory_stream`, `report_stream`), so memory holds
//! one repository, however large the inventory.

use crate::commands::exit::{CommandResult, Failure};
use crate::commands::finish::{finish_stream, start_stream};
use crate::config::options::{CountFiles, PlanOptions};
use crate::domain::planner::plan_owned_repository;
use crate::domain::policy::Policy;
use crate::output::inventory_stream::{for_each_repository, read_refs, StreamError};
use crate::output::report::{Report, RepositoryReport};

pub fn plan(options: PlanOptions) -> CommandResult {
    let policy = Policy::load(&options.policy)?;
    // Each repository is planned with its project's refs from the
    // inventory (`refs[project_id]`), if any: else nothing is claimed
    // through `when_ref`, and the report says so. Only `when_ref` rules
    // look at refs; for them, the refs are read first (a pass of their own:
    // `inventory` writes them after the repositories).
    let uses_refs = policy.rules.iter().any(|rule| rule.when_ref.is_some());
    let refs = if uses_refs {
        Some(read_refs(&options.inventory)?)
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
    for_each_repository(&options.inventory, refs.as_ref(), |repository, refs| {
        let refs = refs.filter(|_| uses_refs);
        // The listing is not needed after planning: the plan takes its tags.
        let plan = plan_owned_repository(
            &policy,
            &repository.path,
            repository.tags,
            refs,
            options.now,
        );
        report.push(RepositoryReport::from_plan(plan.into_outline(), None))
    })
    .map_err(|err| match err {
        // Unwrapped, so that the exit code comes from the error's own type.
        StreamError::Inventory(err) => Failure::from(err),
        StreamError::Caller(err) => Failure::from(err),
    })?;
    finish_stream(report, &outputs)
}
