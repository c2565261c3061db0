use std::path::Path;
use std::process::ExitCode;

use studio::{ModelStatus, ModelSummary, Studio};

use super::args::ModelsCommand;
use super::{human_bytes, human_count, print_json};

pub fn run(home: &Path, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        ModelsCommand::List { json } => {
            let models = studio.list_models()?;
            if json {
                print_json(&models)?;
            } else if models.is_empty() {
                println!("No models yet. Add one with `modelfactory models add <path or hub id>`.");
            } else {
                print_table(&models);
            }
        }
        ModelsCommand::Add {
            source,
            name,
            hub_id,
            json,
        } => {
            let mut model = add(&studio, &source, name.as_deref(), json)?;
            if let Some(hub_id) = hub_id {
                model = studio.set_model_hub_id(&model.id, &hub_id)?;
            }
            if json {
                print_json(&model)?;
            } else {
                println!("added {}", model.id);
                print_table(std::slice::from_ref(&model));
            }
        }
        ModelsCommand::Remove { id } => {
            studio.remove_model(&id)?;
            println!("removed {id} from the catalog (its files are untouched)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A local path registers at once; a hub id is pulled here, in the foreground, as a job
/// whose progress is printed (and stored, so the studio shows it too).
fn add(
    studio: &Studio,
    source: &str,
    name: Option<&str>,
    json: bool,
) -> anyhow::Result<ModelSummary> {
    if Path::new(source).exists() || !studio::models::looks_like_repo_id(source) {
        let added = studio.add_model(source, name)?;
        return added
            .model
            .ok_or_else(|| anyhow::anyhow!("no model registered for {source}"));
    }
    super::jobs::run_in_foreground(
        studio,
        "pull-model",
        &format!("Pull {source}"),
        move |e| {
            if json {
                if let Ok(line) = serde_json::to_string(e) {
                    eprintln!("{line}");
                }
            } else {
                let rate = e
                    .figures
                    .get("bytes_per_s")
                    .map(|r| format!(" {}/s", human_bytes(*r as u64)))
                    .unwrap_or_default();
                eprintln!("[{:>3.0}%] {}{rate}", e.fraction * 100.0, e.message);
            }
        },
        |ctx| studio.pull_model(ctx, source, name),
    )
}

fn print_table(models: &[ModelSummary]) {
    println!(
        "{:<28} {:<12} {:>8} {:<8} {:>8} {:>9}  STATUS",
        "ID", "ARCH", "PARAMS", "QUANT", "CONTEXT", "SIZE"
    );
    for m in models {
        let status = match m.status {
            ModelStatus::Ready => "ready".to_string(),
            ModelStatus::Missing | ModelStatus::Unreadable => format!(
                "{}: {}",
                if m.status == ModelStatus::Missing {
                    "missing"
                } else {
                    "unreadable"
                },
                m.problem.as_deref().unwrap_or("")
            ),
        };
        println!(
            "{:<28} {:<12} {:>8} {:<8} {:>8} {:>9}  {}",
            m.id,
            m.architecture,
            human_count(m.parameters),
            m.quantization,
            m.context_length
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            human_bytes(m.file_size),
            status
        );
    }
}
