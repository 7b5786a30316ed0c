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
    let mut report = Report::new("client", true);
    for repository in &inventory.repositories {
        let plan = plan_repository(
            &policy,
            &repository.path,
            &repository.tags,
            None,
            options.now,
        );
        report.push(RepositoryReport::from_plan(&plan.into_outline(), None));
    }
    finish(&report, options.report.as_ref())
}
