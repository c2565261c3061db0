use std::path::Path;
use std::process::ExitCode;

use studio::Studio;

use super::args::JobsCommand;
use super::print_json;

pub fn run(home: &Path, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        JobsCommand::List { json } => {
            let jobs = studio.jobs().list()?;
            if json {
                print_json(&jobs)?;
            } else if jobs.is_empty() {
                println!("No jobs yet.");
            } else {
                println!(
                    "{:<32} {:<12} {:<11} {:>5}  TITLE",
                    "ID", "KIND", "STATE", "DONE"
                );
                for j in jobs {
                    println!(
                        "{:<32} {:<12} {:<11} {:>4.0}%  {}{}",
                        j.id,
                        j.kind,
                        j.state.as_str(),
                        j.fraction * 100.0,
                        j.title,
                        j.error.map(|e| format!(" — {e}")).unwrap_or_default()
                    );
                }
            }
        }
        JobsCommand::Cancel { id } => {
            let job = studio.jobs().cancel(&id)?;
            println!(
                "{}: {}",
                job.id,
                if job.state.is_finished() {
                    job.state.as_str()
                } else {
                    "cancel requested"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
