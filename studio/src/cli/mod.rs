//! Argument parsing and dispatch. Each command is a function in its own module that takes
//! parsed arguments and returns; errors are printed once, here, with their hint.

mod args;
mod attribution;
mod bench;
mod bench_citations;
mod bench_data;
mod chat;
mod datanets;
mod doctor;
mod jobs;
mod models;
mod publish;
mod serve;
mod train;
mod wallet;

use std::process::ExitCode;

use clap::Parser;
use studio::error::ErrorKind;

use args::{Cli, Command};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(
        cli.global.verbose,
        matches!(cli.command, Command::Serve(_) | Command::Hub(_)),
    );
    let home = cli
        .global
        .home
        .clone()
        .unwrap_or_else(studio::Workspace::default_root);
    let outcome = match cli.command {
        Command::Doctor(a) => doctor::run(&home, a),
        Command::Models(a) => models::run(&home, a),
        Command::Jobs(a) => jobs::run(&home, a),
        Command::Chat(a) => chat::run(&home, a),
        Command::Train(a) => train::run(&home, *a),
        Command::Runs(a) => train::runs(&home, a),
        Command::Datanet(a) => datanets::datanet(&home, a),
        Command::Dataset(a) => datanets::dataset(&home, a),
        Command::Hub(a) => datanets::hub(a),
        Command::Serve(a) => serve::run(&home, a),
        Command::Bench(a) => bench::run(&home, a),
        Command::Wallet(a) => wallet::run(&home, a),
        Command::Chain(a) => publish::chain(&home, a),
        Command::Publish(a) => publish::publish(&home, a),
        Command::Verify(a) => publish::verify(&home, a),
        Command::Rewards(a) => publish::rewards(&home, a),
        Command::Attribution(a) => attribution::run(&home, a),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Prints `error:`, the causes, and a `hint:` when the error has one. User mistakes and
/// problems of the machine exit with 1, anything that looks like a bug with 2.
fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let studio_err = err.chain().find_map(|e| e.downcast_ref::<studio::Error>());
    if let Some(hint) = studio_err.and_then(studio::Error::hint) {
        eprintln!("hint: {hint}");
    }
    match studio_err.map(studio::Error::kind) {
        Some(ErrorKind::Internal) | None => ExitCode::from(2),
        Some(_) => ExitCode::from(1),
    }
}

fn init_logging(verbose: u8, serving: bool) {
    studio::init_logging(match (verbose, serving) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    });
}

/// Human-readable figures shared by the commands' tables.
pub(crate) fn human_count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}K", n / 1e3)
    } else {
        format!("{n}")
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Prints one value as pretty JSON on stdout: the contract of every `--json` flag.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
