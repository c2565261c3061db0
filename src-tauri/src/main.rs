//! The ModelFactory desktop app: a window over the studio core. Every command forwards to
//! `studio::Studio`, the same calls `modelfactory serve` answers over HTTP (docs/api.md).

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::sync::atomic::Ordering;

use studio::attribution::{AccuracyRequest, AttributionRequest, RunAttribution};
use studio::chain::{
    ChainSettings, ChainStatus, PayRequest, Payment, RewardBalance, WithdrawResult,
};
use studio::datanets::{
    Content, CuratedRow, DatanetStats, Dataset, DatasetPage, DuplicateScan, HubCard, HubDatanet,
    LabelUpdate, LocalDatanet, NewDataset, RowPage, RowQuery,
};
use studio::publish::{Publication, PublishPreview, PublishRequest};
use studio::verify::{VerifyReport, VerifyRequest};
use studio::wallet::{ImportRequest, WalletAccount};
use studio::{
    AddModelResult, ApiError, ChatToken, Conversation, ConversationSummary, ConversationUpdate,
    DatasetPreview, DoctorReport, JobEvent, JobInfo, ModelSummary, NewConversation, NewRun,
    PreviewRequest, RunDetail, RunSummary, SamplingParams, SendMessage, SendResult, Settings,
    StopResult, Studio,
};
use tauri::{AppHandle, Emitter, Manager, State};

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

#[tauri::command]
async fn list_conversations(studio: State<'_, Studio>) -> CommandResult<Vec<ConversationSummary>> {
    blocking(&studio, |s| s.list_conversations()).await
}

#[tauri::command]
async fn create_conversation(
    studio: State<'_, Studio>,
    conversation: NewConversation,
) -> CommandResult<Conversation> {
    blocking(&studio, move |s| s.create_conversation(&conversation)).await
}

#[tauri::command]
async fn get_conversation(studio: State<'_, Studio>, id: String) -> CommandResult<Conversation> {
    blocking(&studio, move |s| s.get_conversation(&id)).await
}

#[tauri::command]
async fn update_conversation(
    studio: State<'_, Studio>,
    id: String,
    update: ConversationUpdate,
) -> CommandResult<Conversation> {
    blocking(&studio, move |s| s.update_conversation(&id, &update)).await
}

#[tauri::command]
async fn delete_conversation(studio: State<'_, Studio>, id: String) -> CommandResult<()> {
    blocking(&studio, move |s| s.delete_conversation(&id)).await
}

#[tauri::command]
async fn list_runs(studio: State<'_, Studio>) -> CommandResult<Vec<RunSummary>> {
    blocking(&studio, |s| s.list_runs()).await
}

#[tauri::command]
async fn start_run(studio: State<'_, Studio>, run: NewRun) -> CommandResult<RunSummary> {
    blocking(&studio, move |s| s.start_run(&run)).await
}

#[tauri::command]
async fn get_run(studio: State<'_, Studio>, id: String) -> CommandResult<RunDetail> {
    blocking(&studio, move |s| s.get_run(&id)).await
}

#[tauri::command]
async fn delete_run(studio: State<'_, Studio>, id: String) -> CommandResult<()> {
    blocking(&studio, move |s| s.delete_run(&id)).await
}

#[tauri::command]
async fn cancel_run(studio: State<'_, Studio>, id: String) -> CommandResult<RunSummary> {
    blocking(&studio, move |s| s.cancel_run(&id)).await
}

#[tauri::command]
async fn resume_run(studio: State<'_, Studio>, id: String) -> CommandResult<RunSummary> {
    blocking(&studio, move |s| s.resume_run(&id)).await
}

#[tauri::command]
async fn preview_dataset(
    studio: State<'_, Studio>,
    request: PreviewRequest,
) -> CommandResult<DatasetPreview> {
    blocking(&studio, move |s| s.preview_dataset(&request)).await
}

#[tauri::command]
async fn search_hub(studio: State<'_, Studio>, search: String) -> CommandResult<Vec<HubDatanet>> {
    blocking(&studio, move |s| s.search_hub(&search)).await
}

#[tauri::command]
async fn hub_card(studio: State<'_, Studio>, id: String) -> CommandResult<HubCard> {
    blocking(&studio, move |s| s.hub_card(&id)).await
}

#[tauri::command]
async fn pull_datanet(studio: State<'_, Studio>, id: String) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| s.pull_datanet(&id)).await
}

#[tauri::command]
async fn list_datanets(studio: State<'_, Studio>) -> CommandResult<Vec<LocalDatanet>> {
    blocking(&studio, |s| s.list_datanets()).await
}

#[tauri::command]
async fn import_datanet(
    studio: State<'_, Studio>,
    path: String,
    name: String,
) -> CommandResult<LocalDatanet> {
    blocking(&studio, move |s| s.import_datanet(&path, &name)).await
}

#[tauri::command]
async fn datanet_rows(
    studio: State<'_, Studio>,
    id: String,
    query: RowQuery,
) -> CommandResult<RowPage> {
    blocking(&studio, move |s| s.datanet_rows(&id, &query)).await
}

#[tauri::command]
async fn label_row(
    studio: State<'_, Studio>,
    id: String,
    contribution_id: String,
    update: LabelUpdate,
) -> CommandResult<CuratedRow> {
    blocking(&studio, move |s| {
        s.label_row(&id, &contribution_id, &update)
    })
    .await
}

#[tauri::command]
async fn edit_row(
    studio: State<'_, Studio>,
    id: String,
    contribution_id: String,
    content: Content,
) -> CommandResult<CuratedRow> {
    blocking(&studio, move |s| {
        s.edit_row(&id, &contribution_id, &content)
    })
    .await
}

#[tauri::command]
async fn datanet_stats(studio: State<'_, Studio>, id: String) -> CommandResult<DatanetStats> {
    blocking(&studio, move |s| s.datanet_stats(&id)).await
}

#[tauri::command]
async fn scan_duplicates(
    studio: State<'_, Studio>,
    id: String,
    threshold: f64,
    reject: bool,
) -> CommandResult<DuplicateScan> {
    blocking(&studio, move |s| s.scan_duplicates(&id, threshold, reject)).await
}

#[tauri::command]
async fn list_datasets(studio: State<'_, Studio>) -> CommandResult<Vec<Dataset>> {
    blocking(&studio, |s| s.list_datasets()).await
}

#[tauri::command]
async fn create_dataset(studio: State<'_, Studio>, dataset: NewDataset) -> CommandResult<Dataset> {
    blocking(&studio, move |s| s.create_dataset(&dataset)).await
}

#[tauri::command]
async fn dataset_rows(
    studio: State<'_, Studio>,
    name: String,
    offset: u64,
    limit: u64,
) -> CommandResult<DatasetPage> {
    blocking(&studio, move |s| s.dataset_rows(&name, offset, limit)).await
}

#[tauri::command]
async fn delete_dataset(studio: State<'_, Studio>, name: String) -> CommandResult<()> {
    blocking(&studio, move |s| s.delete_dataset(&name)).await
}

#[tauri::command]
fn demo_datasets() -> Vec<studio::DemoDataset> {
    studio::demo_datasets()
}

// Wallet, chain, publishing, verifying and rewards. The app is its own user, so these need no
// token; the window asks before anything is signed. Passphrases and keys become secrets at
// once and are dropped with the call.

#[tauri::command]
async fn wallet_accounts(studio: State<'_, Studio>) -> CommandResult<Vec<WalletAccount>> {
    blocking(&studio, |s| s.wallet_accounts()).await
}

#[tauri::command]
async fn create_account(
    studio: State<'_, Studio>,
    passphrase: String,
    name: Option<String>,
) -> CommandResult<WalletAccount> {
    blocking(&studio, move |s| {
        s.create_account(&passphrase.into(), name.as_deref())
    })
    .await
}

#[tauri::command]
async fn import_account(
    studio: State<'_, Studio>,
    request: ImportRequest,
) -> CommandResult<WalletAccount> {
    blocking(&studio, move |s| s.import_account_request(request)).await
}

#[tauri::command]
async fn chain_status(studio: State<'_, Studio>) -> CommandResult<ChainStatus> {
    blocking(&studio, |s| s.chain_status()).await
}

#[tauri::command]
async fn chain_up(studio: State<'_, Studio>) -> CommandResult<ChainStatus> {
    blocking(&studio, |s| s.chain_up()).await
}

#[tauri::command]
async fn get_chain_settings(studio: State<'_, Studio>) -> CommandResult<ChainSettings> {
    blocking(&studio, |s| s.chain_settings()).await
}

#[tauri::command]
async fn put_chain_settings(
    studio: State<'_, Studio>,
    settings: ChainSettings,
) -> CommandResult<ChainSettings> {
    blocking(&studio, move |s| s.save_chain_settings(&settings)).await
}

#[tauri::command]
async fn run_attribution(studio: State<'_, Studio>, id: String) -> CommandResult<RunAttribution> {
    blocking(&studio, move |s| s.run_attribution(&id)).await
}

#[tauri::command]
async fn start_attribution(
    studio: State<'_, Studio>,
    id: String,
    request: AttributionRequest,
) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| s.start_attribution(&id, &request)).await
}

#[tauri::command]
async fn start_attribution_accuracy(
    studio: State<'_, Studio>,
    id: String,
    request: AccuracyRequest,
) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| {
        s.start_attribution_accuracy(&id, &request)
    })
    .await
}

#[tauri::command]
async fn publish_preview(
    studio: State<'_, Studio>,
    request: PublishRequest,
) -> CommandResult<PublishPreview> {
    blocking(&studio, move |s| s.publish_preview(&request)).await
}

#[tauri::command]
async fn publish(
    studio: State<'_, Studio>,
    request: PublishRequest,
    passphrase: String,
) -> CommandResult<JobInfo> {
    blocking(&studio, move |s| s.publish(&request, passphrase.into())).await
}

#[tauri::command]
async fn run_publication(
    studio: State<'_, Studio>,
    id: String,
) -> CommandResult<Option<Publication>> {
    blocking(&studio, move |s| s.latest_publication(&id)).await
}

#[tauri::command]
async fn verify(studio: State<'_, Studio>, request: VerifyRequest) -> CommandResult<VerifyReport> {
    blocking(&studio, move |s| s.verify(&request)).await
}

#[tauri::command]
async fn rewards_pay(studio: State<'_, Studio>, request: PayRequest) -> CommandResult<Payment> {
    blocking(&studio, move |s| s.rewards_pay_request(request)).await
}

#[tauri::command]
async fn rewards_balance(
    studio: State<'_, Studio>,
    address: String,
) -> CommandResult<RewardBalance> {
    blocking(&studio, move |s| s.rewards_balance(&address)).await
}

#[tauri::command]
async fn rewards_withdraw(
    studio: State<'_, Studio>,
    address: String,
    passphrase: String,
) -> CommandResult<WithdrawResult> {
    blocking(&studio, move |s| {
        s.rewards_withdraw(&address, &passphrase.into())
    })
    .await
}

#[tauri::command]
async fn stop_answer(studio: State<'_, Studio>, id: String) -> CommandResult<StopResult> {
    blocking(&studio, move |s| s.stop_answer(&id)).await
}

/// Sends a question; the answer arrives as `chat-token` events while it is generated, and the
/// command resolves with the stored answer (or rejects with an `ApiError`).
#[tauri::command]
async fn send_message(
    app: AppHandle,
    studio: State<'_, Studio>,
    id: String,
    content: String,
    sampling: Option<SamplingParams>,
) -> CommandResult<SendResult> {
    let request = SendMessage { content, sampling };
    // Checking and storing the question is quick; generating is not: both off the event loop.
    let pending = blocking(&studio, move |s| s.begin_answer(&id, &request)).await?;
    let cancel = pending.cancel_flag();
    let conversation_id = pending.conversation_id().to_string();
    let run = tauri::async_runtime::spawn_blocking(move || {
        pending.run(&mut |text: &str| {
            let token = ChatToken {
                conversation_id: conversation_id.clone(),
                text: text.to_string(),
            };
            if let Err(err) = app.emit("chat-token", &token) {
                tracing::warn!("could not forward a chat token, stopping the answer: {err}");
                cancel.store(true, Ordering::SeqCst);
            }
        })
    });
    match run.await {
        Ok(result) => result.map_err(|e| ApiError::from(&e)),
        Err(e) => Err(ApiError {
            error: format!("internal error: {e}"),
            hint: None,
        }),
    }
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
            put_settings,
            list_conversations,
            create_conversation,
            get_conversation,
            update_conversation,
            delete_conversation,
            send_message,
            stop_answer,
            list_runs,
            start_run,
            get_run,
            delete_run,
            cancel_run,
            resume_run,
            preview_dataset,
            demo_datasets,
            search_hub,
            hub_card,
            pull_datanet,
            list_datanets,
            import_datanet,
            datanet_rows,
            label_row,
            edit_row,
            datanet_stats,
            scan_duplicates,
            list_datasets,
            create_dataset,
            dataset_rows,
            delete_dataset,
            wallet_accounts,
            create_account,
            import_account,
            chain_status,
            chain_up,
            get_chain_settings,
            put_chain_settings,
            run_attribution,
            start_attribution,
            start_attribution_accuracy,
            publish_preview,
            publish,
            run_publication,
            verify,
            rewards_pay,
            rewards_balance,
            rewards_withdraw
        ])
        .run(tauri::generate_context!())?;
    Ok(())
}
