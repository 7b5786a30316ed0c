//! The domain: what a tag, a policy, a plan and a run's verdict are. The
//! planner is a pure function of them (no I/O, no clock). This layer imports
//! nothing else of the crate; every other layer builds on it.

pub mod applied_plan;
pub mod config_error;
pub mod exit;
pub mod in_use;
pub mod lint;
pub mod model;
pub mod names;
pub mod pattern;
pub mod planner;
pub mod policy;
pub mod project;
pub mod pulls;
pub mod referrers;
pub mod refs;
pub mod rfc3339;
pub mod shard;
pub mod tag_rules;
