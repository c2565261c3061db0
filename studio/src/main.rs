//! `modelfactory`: every studio action as a command, and `serve` for the browser.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
