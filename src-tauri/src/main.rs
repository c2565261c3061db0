//! The ModelFactory desktop app: a window over the studio core. Every command forwards to
//! `studio::Studio`, the same calls `modelfactory serve` answers over HTTP (docs/api.md).

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use studio::{
    AddModelResult, ApiError, DoctorReport, JobEvent, JobInfo, ModelSummary, Settings, Studio,
};
use tauri::{Emitter, Manager, State};

type CommandResult<T> = Result<T, ApiError>;

/// Catalog work blocks; keep it off the window's event loop.
async fn blocking<T: Send + 'static>(
    studio: &Studio,
    f: impl FnOnce(Studio) -> studio::Result<T> + Send + 'static,
) -> CommandResult<T> {
    let studio = studio.clone();
    match tauri::async_runtime::spawn_blocking(move || f(studio)).await {
        Ok(result) => result.map_err(|e| ApiError::from(&e)),
        Err(e) => Err(ApiError {
            error: format!("internal error: {e}"),
            hint: None,
        }),
    }
}

#[tauri::command]
async fn doctor(studio: State<'_, Studio>) -> CommandResult<DoctorReport> {
    blocking(&studio, |s| s.doctor()).await
}

#[tauri::command]
async fn list_models(studio: State<'_, Studio>) -> CommandResult<Vec<ModelSummary>> {
    blocking(&studio, |s| s.list_models()).await
}

#[tauri::command]
async fn add_model(studio: State<'_, Studio>, source: String) -> CommandResult<AddModelResult> {
    blocking(&studio, move |s| s.add_model(source.trim(), None)).await
}

#[tauri::command]
async fn remove_model(studio: State<'_, Studio>, id: String) -> CommandResult<()> {
    blocking(&studio, move |s| s.remove_model(&id)).await
}

#[tauri::command]
async fn list_jobs(studio: State<'_, Studio>) -> CommandResult<Vec<JobInfo>> {
    blocking(&studio, |s| s.jobs().list()).await
}

#[tauri::command]
async fn get_job(studio: State<'_, Studio>, id: String) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| s.jobs().get(&id)).await
}

#[tauri::command]
async fn job_events(studio: State<'_, Studio>, id: String) -> CommandResult<Vec<JobEvent>> {
    blocking(&studio, move |s| s.jobs().events(&id)).await
}

#[tauri::command]
async fn cancel_job(studio: State<'_, Studio>, id: String) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| s.jobs().cancel(&id)).await
}

#[tauri::command]
async fn get_settings(studio: State<'_, Studio>) -> CommandResult<Settings> {
    blocking(&studio, |s| s.settings()).await
}

#[tauri::command]
async fn put_settings(studio: State<'_, Studio>, settings: Settings) -> CommandResult<Settings> {
    blocking(&studio, move |s| s.save_settings(&settings)).await
}

fn main() -> anyhow::Result<()> {
    studio::init_logging("info");
    let home = studio::Workspace::default_root();
    let studio = match Studio::open_instance(&home, "the ModelFactory desktop app") {
        Ok(s) => s,
        Err(e) => {
            // There is no window yet to show it in; say it where a launcher's log keeps it.
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            std::process::exit(1);
        }
    };
    tauri::Builder::default()
        .setup(|app| {
            // Forward every job event to the window, as the server does over SSE.
            let handle = app.handle().clone();
            let mut events = app.state::<Studio>().jobs().subscribe();
            std::thread::Builder::new()
                .name("job-events".into())
                .spawn(move || {
                    loop {
                        match events.blocking_recv() {
                            Ok(e) => {
                                if let Err(err) = handle.emit("job-event", &e) {
                                    tracing::warn!("could not forward a job event: {err}");
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(
                                    "the window missed {n} job events; it re-reads them on demand"
                                );
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                })?;
            Ok(())
        })
        .manage(studio)
        .invoke_handler(tauri::generate_handler![
            doctor,
            list_models,
            add_model,
            remove_model,
            list_jobs,
            get_job,
            job_events,
            cancel_job,
            get_settings,
            put_settings
        ])
        .run(tauri::generate_context!())?;
    Ok(())
}
