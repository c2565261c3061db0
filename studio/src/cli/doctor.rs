use std::path::Path;
use std::process::ExitCode;

use super::args::DoctorArgs;
use super::{human_bytes, print_json};

pub fn run(home: &Path, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let studio = studio::Studio::open(home)?;
    let report = studio.doctor()?;
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("ModelFactory {}", report.version);
    println!("workspace   {}", report.workspace);
    println!("catalog     {}", report.database);
    println!();
    println!("backends");
    for b in &report.backends {
        let state = match (b.compiled, b.usable) {
            (true, true) => "usable",
            (true, false) => "compiled in, not usable",
            (false, _) => "not compiled in",
        };
        println!("  {:<5} {:<24} {}", b.name.name(), state, b.detail);
    }
    println!();
    if report.models.is_empty() {
        println!(
            "models      none yet: `modelfactory models add <path or hub id>`, or run scripts/setup"
        );
    } else {
        println!("models");
        for m in &report.models {
            println!(
                "  {:<28} {:<8} {:>9} {}",
                m.id,
                format!("{:?}", m.status).to_lowercase(),
                human_bytes(m.file_size),
                m.problem.as_deref().unwrap_or("")
            );
        }
    }
    let usable = report.backends.iter().any(|b| b.usable);
    Ok(if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
