//! GitLab's REST API: container repositories and tags, git refs, tag
//! protection rules, project settings, the built-in cleanup policy, the
//! commits in use (environments, deployments, pipelines). Imports only
//! `wire` and `domain`.

pub mod client;
pub mod in_use;
pub mod policy_import;
