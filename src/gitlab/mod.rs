//! GitLab's REST API: container repositories and tags, git refs, tag
//! protection rules, project settings, the built-in cleanup policy. Imports
//! only `wire` and `domain`.

pub mod client;
pub mod policy_import;
