use std::path::Path;
use std::process::ExitCode;

use studio::{JobContext, JobEvent, JobState, Studio};

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

/// Runs `work` as a job on this thread, printing its progress with `print` as it goes (and
/// storing it, so an open studio shows it too). A failure keeps the error's hint and kind.
pub(crate) fn run_in_foreground<T>(
    studio: &Studio,
    kind: &str,
    title: &str,
    print: impl Fn(&JobEvent) + Send + 'static,
    work: impl FnOnce(&JobContext) -> studio::Result<T>,
) -> anyhow::Result<T> {
    let mut events = studio.jobs().subscribe();
    let printer = std::thread::spawn(move || {
        while let Ok(e) = events.blocking_recv() {
            print(&e);
            if e.state.is_finished() {
                break;
            }
        }
    });
    let mut value = None;
    let mut failure = None;
    let job = studio.jobs().run(kind, title, |ctx| match work(ctx) {
        Ok(v) => {
            value = Some(v);
            Ok(())
        }
        Err(e) => {
            failure = Some((e.hint(), e.kind()));
            Err(e)
        }
    })?;
    let _ = printer.join();
    match (job.state, value) {
        (JobState::Succeeded, Some(v)) => Ok(v),
        _ => {
            let (hint, kind) = failure.unwrap_or((None, studio::error::ErrorKind::Internal));
            Err(studio::Error::JobFailed {
                job: format!("{} {}", title.to_lowercase(), job.state.as_str()),
                message: job.error.unwrap_or_else(|| "no reason given".into()),
                hint,
                kind,
            }
            .into())
        }
    }
}
