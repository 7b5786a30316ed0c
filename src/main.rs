//! Thin entry point: parse, set up logging, run, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    registry_cleanup::main_with_args(std::env::args_os())
}
