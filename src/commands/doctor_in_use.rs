//! `doctor`'s checks for `protect_in_use`: whether the credentials may list
//! each of the project's environments, deployments and running pipelines,
//! as `run` does before it plans, and which token is needed where GitLab
//! refuses. Reads only; asked only where the policy has the block.

use crate::commands::doctor_findings::{plural, Findings, Level};
use crate::domain::policy::ProtectInUse;
use crate::gitlab::client::GitLab;
use crate::gitlab::in_use::InUseListing;

/// One line per listing the block needs: `ok` with what was found, or
/// `fail` with GitLab's answer and the token to use (a refused listing
/// makes `run` delete nothing in the project and exit 1).
pub async fn check_in_use(gitlab: &GitLab, block: &ProtectInUse, findings: &mut Findings) {
    let check = |listing: InUseListing| format!("in use: {}", listing.what());
    let credentials = match gitlab.credentials() {
        "PRIVATE-TOKEN" => "GITLAB_TOKEN",
        _ => "the job token",
    };
    if block.last_deployments > 0 {
        let listing = InUseListing::Environments;
        match gitlab.environments("available").await {
            Ok(listed) => {
                let listed = listed.unwrap_or_default();
                let matching = listed
                    .iter()
                    .filter(|environment| block.environments.is_match(&environment.name))
                    .count();
                findings.ok(
                    check(listing),
                    format!(
                        "{credentials} lists {} ({} matching \"{}\")",
                        plural(
                            listed.len(),
                            "available environment",
                            "available environments"
                        ),
                        matching,
                        block.environments
                    ),
                );
            }
            Err(err) => fail(gitlab, listing, err, findings),
        }
        let listing = InUseListing::Deployments;
        match gitlab.successful_deployments(None, 1).await {
            Ok(listed) => findings.ok(
                check(listing),
                match listed.first() {
                    Some(newest) => format!(
                        "{credentials} reads successful deployments (the newest: {})",
                        newest.id
                    ),
                    None => format!("{credentials} reads deployments (no successful one yet)"),
                },
            ),
            Err(err) => fail(gitlab, listing, err, findings),
        }
    }
    if block.running_pipelines {
        let listing = InUseListing::Pipelines;
        match gitlab.pipelines("running").await {
            Ok(listed) => findings.ok(
                check(listing),
                format!(
                    "{credentials} lists pipelines ({} running now)",
                    listed.map_or(0, |listed| listed.len())
                ),
            ),
            Err(err) => fail(gitlab, listing, err, findings),
        }
    }
}

fn fail(
    gitlab: &GitLab,
    listing: InUseListing,
    err: crate::gitlab::client::GitLabError,
    findings: &mut Findings,
) {
    findings.add(
        Level::Fail,
        format!("in use: {}", listing.what()),
        gitlab.in_use_failure(listing, err),
        "until then `run` deletes nothing in the project (protect_in_use) and exits 1",
    );
}
