//! Configuration: the command line, the `CI_*`/`CLEANUP_*` environment,
//! every command's options resolved once, `--repository` paths, logging.
//! Imports only `wire` (to build the HTTP options) and `domain`.

pub mod cli;
pub mod ledger;
pub mod logging;
pub mod options;
pub mod paths;
pub mod plan;
pub mod settings;
