//! registry-cleanup: precise, previewable cleanup of GitLab container registries.

pub mod error;
pub mod inventory;
pub mod planner;
pub mod policy;
pub mod report;
pub mod secret;

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main_with_args(_args: impl IntoIterator<Item = OsString>) -> ExitCode {
    ExitCode::SUCCESS
}
