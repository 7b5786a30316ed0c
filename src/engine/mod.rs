//! The two ways a policy is carried out.
//!
//! - [`client`]: list → plan → guard → execute → report, tag by tag, with
//!   this tool's planner and executor (exact, reportable);
//! - [`server`]: each repository's one applicable rule handed to GitLab's
//!   bulk-delete API (asynchronous, once an hour, nothing reported back).

pub mod client;
pub mod server;
