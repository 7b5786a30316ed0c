//! `registry-cleanup plan`: the policy against an inventory file, offline.

use super::finish;
use crate::error::Exit;
use crate::inventory::Inventory;
use crate::options::PlanOptions;
use crate::planner::plan_repository;
use crate::policy::Policy;
use crate::report::{Report, RepositoryReport};

pub fn plan(options: PlanOptions) -> anyhow::Result<Exit> {
    let policy = Policy::load(&options.policy)?;
    let inventory = Inventory::load(&options.inventory)?;

    // The plan the client engine would carry out; nothing is attempted.
    // Each repository is planned with its project's refs from the
    // inventory (`refs[project_id]`), if any: else nothing is claimed
    // through `when_ref`, and the report says so.
    let mut report = Report::new("client", true);
    report.planned_with(options.now, &options.policy);
    for repository in &inventory.repositories {
        let plan = plan_repository(
            &policy,
            &repository.path,
            &repository.tags,
            inventory.refs_of(repository),
            options.now,
        );
        report.push(RepositoryReport::from_plan(&plan.into_outline(), None));
    }
    finish(&report, options.report.as_ref())
}
