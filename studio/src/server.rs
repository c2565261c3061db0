//! `modelfactory serve`: the studio over HTTP. Serves the built `ui/` and the API of
//! docs/api.md, with job progress and chat answers as server-sent events.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};

use crate::attribution::{AccuracyRequest, AttributionRequest, RunAttribution};
use crate::chain::{
    ChainSettings, ChainStatus, PayRequest, Payment, RewardBalance, WithdrawResult,
};
use crate::datanets::{
    DatanetStats, DatasetPage, DuplicateScan, HubCard, HubDatanet, LocalDatanet, NewDataset,
};
use crate::error::{ApiError, Error, ErrorKind};
use crate::publish::{Publication, PublishPreview, PublishRequest};
use crate::verify::{VerifyReport, VerifyRequest};
use crate::wallet::{ImportRequest, WalletAccount};
use crate::{
    AddModelResult, ChatToken, Conversation, ConversationSummary, ConversationUpdate,
    DatasetPreview, DoctorReport, JobEvent, JobInfo, ModelSummary, NewConversation, NewRun,
    PreviewRequest, RunDetail, RunSummary, SendMessage, Settings, StopResult, Studio,
};
use ::wallet::SecretString;
use datanet_sync::catalog::{DatasetSummary, LabelUpdate};
use datanet_sync::format::Content;
use datanet_sync::view::{CuratedRow, RowPage, RowQuery};
use subtle::ConstantTimeEq;

#[derive(Clone)]
struct AppState {
    studio: Studio,
    token: Option<Arc<str>>,
    /// Routes that unlock a key (signing, publishing, paying) need this token even on
    /// loopback, where the rest of the API is open: another local program must not be able
    /// to spend the user's keys by guessing the port.
    signing_token: Arc<str>,
}

/// An error on its way to an HTTP client: status from its kind, body an `ApiError`.
struct HttpError(Error);

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self.0.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::BAD_GATEWAY,
            ErrorKind::Environment | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("request failed: {}", self.0);
        }
        (status, Json(ApiError::from(&self.0))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, HttpError>;

/// Runs blocking catalog work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(Json(result?)),
        Err(e) => Err(HttpError(Error::Io {
            what: "a request handler".into(),
            source: std::io::Error::other(e.to_string()),
        })),
    }
}

async fn doctor(State(s): State<AppState>) -> ApiResult<DoctorReport> {
    blocking(move || s.studio.doctor()).await
}

async fn list_models(State(s): State<AppState>) -> ApiResult<Vec<ModelSummary>> {
    blocking(move || s.studio.list_models()).await
}

#[derive(Deserialize)]
struct AddModel {
    source: String,
    name: Option<String>,
}

async fn add_model(
    State(s): State<AppState>,
    Json(body): Json<AddModel>,
) -> ApiResult<AddModelResult> {
    blocking(move || s.studio.add_model(body.source.trim(), body.name.as_deref())).await
}

async fn remove_model(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, HttpError> {
    let Json(()) = blocking(move || s.studio.remove_model(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_jobs(State(s): State<AppState>) -> ApiResult<Vec<JobInfo>> {
    blocking(move || s.studio.jobs().list()).await
}

async fn get_job(State(s): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult<JobInfo> {
    blocking(move || s.studio.jobs().get(&id)).await
}

async fn job_events(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Vec<JobEvent>> {
    blocking(move || s.studio.jobs().events(&id)).await
}

async fn cancel_job(State(s): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult<JobInfo> {
    blocking(move || s.studio.jobs().cancel(&id)).await
}

async fn get_settings(State(s): State<AppState>) -> ApiResult<Settings> {
    blocking(move || s.studio.settings()).await
}

async fn put_settings(
    State(s): State<AppState>,
    Json(body): Json<Settings>,
) -> ApiResult<Settings> {
    blocking(move || s.studio.save_settings(&body)).await
}

async fn list_conversations(State(s): State<AppState>) -> ApiResult<Vec<ConversationSummary>> {
    blocking(move || s.studio.list_conversations()).await
}

async fn create_conversation(
    State(s): State<AppState>,
    Json(body): Json<NewConversation>,
) -> ApiResult<Conversation> {
    blocking(move || s.studio.create_conversation(&body)).await
}

async fn get_conversation(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Conversation> {
    blocking(move || s.studio.get_conversation(&id)).await
}

async fn update_conversation(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<ConversationUpdate>,
) -> ApiResult<Conversation> {
    blocking(move || s.studio.update_conversation(&id, &body)).await
}

async fn delete_conversation(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, HttpError> {
    let Json(()) = blocking(move || s.studio.delete_conversation(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    search: String,
}

async fn search_hub(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<SearchQuery>,
) -> ApiResult<Vec<HubDatanet>> {
    blocking(move || s.studio.search_hub(&q.search)).await
}

async fn hub_card(
    State(s): State<AppState>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
) -> ApiResult<HubCard> {
    blocking(move || s.studio.hub_card(&format!("{owner}/{name}"))).await
}

#[derive(Deserialize)]
struct PullDatanet {
    id: String,
}

async fn pull_datanet(
    State(s): State<AppState>,
    Json(body): Json<PullDatanet>,
) -> ApiResult<JobInfo> {
    blocking(move || s.studio.pull_datanet(&body.id)).await
}

async fn list_datanets(State(s): State<AppState>) -> ApiResult<Vec<LocalDatanet>> {
    blocking(move || s.studio.list_datanets()).await
}

#[derive(Deserialize)]
struct ImportDatanet {
    path: String,
    name: String,
}

async fn import_datanet(
    State(s): State<AppState>,
    Json(body): Json<ImportDatanet>,
) -> ApiResult<LocalDatanet> {
    blocking(move || s.studio.import_datanet(&body.path, &body.name)).await
}

async fn datanet_rows(
    State(s): State<AppState>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<RowQuery>,
) -> ApiResult<RowPage> {
    blocking(move || s.studio.datanet_rows(&format!("{owner}/{name}"), &query)).await
}

async fn label_row(
    State(s): State<AppState>,
    UrlPath((owner, name, cid)): UrlPath<(String, String, String)>,
    Json(update): Json<LabelUpdate>,
) -> ApiResult<CuratedRow> {
    blocking(move || {
        s.studio
            .label_row(&format!("{owner}/{name}"), &cid, &update)
    })
    .await
}

#[derive(Deserialize)]
struct EditRow {
    content: Content,
}

async fn edit_row(
    State(s): State<AppState>,
    UrlPath((owner, name, cid)): UrlPath<(String, String, String)>,
    Json(body): Json<EditRow>,
) -> ApiResult<CuratedRow> {
    blocking(move || {
        s.studio
            .edit_row(&format!("{owner}/{name}"), &cid, &body.content)
    })
    .await
}

async fn datanet_stats(
    State(s): State<AppState>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
) -> ApiResult<DatanetStats> {
    blocking(move || s.studio.datanet_stats(&format!("{owner}/{name}"))).await
}

#[derive(Deserialize)]
struct ScanDuplicates {
    threshold: f64,
    #[serde(default)]
    reject: bool,
}

async fn scan_duplicates(
    State(s): State<AppState>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    Json(body): Json<ScanDuplicates>,
) -> ApiResult<DuplicateScan> {
    blocking(move || {
        s.studio
            .scan_duplicates(&format!("{owner}/{name}"), body.threshold, body.reject)
    })
    .await
}

async fn list_datasets(State(s): State<AppState>) -> ApiResult<Vec<DatasetSummary>> {
    blocking(move || s.studio.list_datasets()).await
}

async fn create_dataset(
    State(s): State<AppState>,
    Json(body): Json<NewDataset>,
) -> ApiResult<DatasetSummary> {
    blocking(move || s.studio.create_dataset(&body)).await
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    limit: u64,
}

async fn dataset_rows(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> ApiResult<DatasetPage> {
    blocking(move || s.studio.dataset_rows(&name, q.offset, q.limit)).await
}

async fn delete_dataset(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, HttpError> {
    let Json(()) = blocking(move || s.studio.delete_dataset(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_runs(State(s): State<AppState>) -> ApiResult<Vec<RunSummary>> {
    blocking(move || s.studio.list_runs()).await
}

async fn start_run(State(s): State<AppState>, Json(body): Json<NewRun>) -> ApiResult<RunSummary> {
    blocking(move || s.studio.start_run(&body)).await
}

async fn get_run(State(s): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult<RunDetail> {
    blocking(move || s.studio.get_run(&id)).await
}

async fn delete_run(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, HttpError> {
    let Json(()) = blocking(move || s.studio.delete_run(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_run(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<RunSummary> {
    blocking(move || s.studio.cancel_run(&id)).await
}

async fn resume_run(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<RunSummary> {
    blocking(move || s.studio.resume_run(&id)).await
}

async fn list_demo_datasets() -> Json<Vec<crate::DemoDataset>> {
    Json(crate::demo_datasets())
}

async fn preview_dataset(
    State(s): State<AppState>,
    Json(body): Json<PreviewRequest>,
) -> ApiResult<DatasetPreview> {
    blocking(move || s.studio.preview_dataset(&body)).await
}

async fn stop_answer(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<StopResult> {
    blocking(move || s.studio.stop_answer(&id)).await
}

/// Sends a question. A bad request answers 4xx with an `ApiError`, as everywhere; once the
/// question is stored the answer streams as server-sent events: `token` events, then one
/// `done` (`SendResult`) or `error` (`ApiError`). A client that goes away stops the answer.
async fn send_message(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<SendMessage>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let studio = s.studio.clone();
    let Json(pending) = blocking(move || studio.begin_answer(&id, &body)).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let cancel = pending.cancel_flag();
    let conversation_id = pending.conversation_id().to_string();
    // Loading and generating are seconds of CPU work: a blocking thread, not the async ones.
    tokio::task::spawn_blocking(move || {
        let tokens = tx.clone();
        let result = pending.run(&mut |text: &str| {
            let token = ChatToken {
                conversation_id: conversation_id.clone(),
                text: text.to_string(),
            };
            let sent = Event::default()
                .event("token")
                .json_data(&token)
                .map(|event| tokens.send(event).is_ok());
            if !matches!(sent, Ok(true)) {
                // Nobody is listening any more: stop generating for no one.
                cancel.store(true, Ordering::SeqCst);
            }
        });
        let last = match result {
            Ok(done) => Event::default().event("done").json_data(&done),
            Err(e) => {
                let api = ApiError::from(&e);
                if e.kind() == ErrorKind::Internal {
                    tracing::error!("answering failed: {}", api.error);
                } else {
                    tracing::info!("answering failed: {}", api.error);
                }
                Event::default().event("error").json_data(api)
            }
        };
        let last = last.unwrap_or_else(|e| {
            Event::default()
                .event("error")
                .data(
                    serde_json::json!({ "error": format!("cannot encode the answer: {e}"), "hint": null })
                        .to_string(),
                )
        });
        let _ = tx.send(last);
    });
    let stream = UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Live job events. A client that falls behind gets a `lagged` event and should re-read
/// `/api/jobs/{id}/events`, where every event is stored.
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(s.studio.jobs().subscribe()).map(|item| {
        Ok(match item {
            Ok(event) => Event::default()
                .event("job")
                .json_data(&event)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---------------------------------------------------------------------------------------------
// Wallet, chain, publishing, verifying and rewards. Bodies that carry a passphrase are read
// into `SecretString`s at once and never logged or echoed.

#[derive(Deserialize)]
struct NewAccountBody {
    #[serde(default)]
    name: Option<String>,
    passphrase: String,
}

#[derive(Deserialize)]
struct PublishBody {
    #[serde(flatten)]
    request: PublishRequest,
    passphrase: String,
}

#[derive(Deserialize)]
struct WithdrawBody {
    address: String,
    passphrase: String,
}

async fn wallet_accounts(State(s): State<AppState>) -> ApiResult<Vec<WalletAccount>> {
    blocking(move || s.studio.wallet_accounts()).await
}

async fn create_account(
    State(s): State<AppState>,
    Json(body): Json<NewAccountBody>,
) -> ApiResult<WalletAccount> {
    let pass = SecretString::from(body.passphrase);
    blocking(move || s.studio.create_account(&pass, body.name.as_deref())).await
}

async fn import_account(
    State(s): State<AppState>,
    Json(body): Json<ImportRequest>,
) -> ApiResult<WalletAccount> {
    blocking(move || s.studio.import_account_request(body)).await
}

async fn chain_status(State(s): State<AppState>) -> ApiResult<ChainStatus> {
    blocking(move || s.studio.chain_status()).await
}

async fn chain_up(State(s): State<AppState>) -> ApiResult<ChainStatus> {
    blocking(move || s.studio.chain_up()).await
}

async fn get_chain_settings(State(s): State<AppState>) -> ApiResult<ChainSettings> {
    blocking(move || s.studio.chain_settings()).await
}

async fn put_chain_settings(
    State(s): State<AppState>,
    Json(body): Json<ChainSettings>,
) -> ApiResult<ChainSettings> {
    blocking(move || s.studio.save_chain_settings(&body)).await
}

async fn run_attribution(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<RunAttribution> {
    blocking(move || s.studio.run_attribution(&id)).await
}

async fn start_attribution(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<AttributionRequest>,
) -> ApiResult<JobInfo> {
    blocking(move || s.studio.start_attribution(&id, &body)).await
}

async fn start_attribution_accuracy(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(body): Json<AccuracyRequest>,
) -> ApiResult<JobInfo> {
    blocking(move || s.studio.start_attribution_accuracy(&id, &body)).await
}

async fn publish_preview(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(mut body): Json<PublishRequest>,
) -> ApiResult<PublishPreview> {
    body.run_id = id;
    blocking(move || s.studio.publish_preview(&body)).await
}

async fn publish(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Json(mut body): Json<PublishBody>,
) -> ApiResult<JobInfo> {
    let pass = SecretString::from(body.passphrase);
    body.request.run_id = id;
    blocking(move || s.studio.publish(&body.request, pass)).await
}

async fn run_publication(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Option<Publication>> {
    blocking(move || s.studio.latest_publication(&id)).await
}

async fn verify(
    State(s): State<AppState>,
    Json(body): Json<VerifyRequest>,
) -> ApiResult<VerifyReport> {
    blocking(move || s.studio.verify(&body)).await
}

async fn rewards_pay(
    State(s): State<AppState>,
    Json(body): Json<PayRequest>,
) -> ApiResult<Payment> {
    blocking(move || s.studio.rewards_pay_request(body)).await
}

async fn rewards_balance(
    State(s): State<AppState>,
    UrlPath(address): UrlPath<String>,
) -> ApiResult<RewardBalance> {
    blocking(move || s.studio.rewards_balance(&address)).await
}

async fn rewards_withdraw(
    State(s): State<AppState>,
    Json(body): Json<WithdrawBody>,
) -> ApiResult<WithdrawResult> {
    let pass = SecretString::from(body.passphrase);
    blocking(move || s.studio.rewards_withdraw(&body.address, &pass)).await
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn require_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = s.token.as_deref() else {
        return next.run(req).await;
    };
    let given = presented_token(&headers, &req);
    if given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes()))) {
        next.run(req).await
    } else {
        let body = ApiError {
            error: "this studio requires a token".into(),
            hint: Some(
                "open the address `modelfactory serve` printed, which carries ?token=...".into(),
            ),
        };
        (StatusCode::UNAUTHORIZED, Json(body)).into_response()
    }
}

/// The signing routes' guard: the signing token, in `Authorization: Bearer` or `?token=`,
/// whether or not the rest of the API needs one.
async fn require_signing_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if presented_token(&headers, &req)
        .is_some_and(|g| bool::from(g.as_bytes().ct_eq(s.signing_token.as_bytes())))
    {
        return next.run(req).await;
    }
    let body = ApiError {
        error: "using a key through the API needs the studio's token, even on this machine".into(),
        hint: Some(
            "open the address `modelfactory serve` printed, which carries ?token=...".into(),
        ),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The token a request carries, from its `Authorization` header or its `?token=`.
fn presented_token(headers: &HeaderMap, req: &Request) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| {
            axum::extract::Query::<TokenQuery>::try_from_uri(req.uri())
                .ok()
                .and_then(|q| q.0.token)
        })
}

/// The API under `/api`, and the built UI (or a page saying how to build it) everywhere else.
pub fn router(studio: Studio, token: Option<String>, ui_dir: Option<PathBuf>) -> Router {
    let signing = token.clone().unwrap_or_else(new_token);
    router_with_signing_token(studio, token, signing, ui_dir)
}

/// A random token: 256 bits, hex.
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// [`router`] with the token the signing routes require (the access token when there is one).
pub fn router_with_signing_token(
    studio: Studio,
    token: Option<String>,
    signing_token: String,
    ui_dir: Option<PathBuf>,
) -> Router {
    let state = AppState {
        studio,
        signing_token: Arc::from(token.clone().unwrap_or(signing_token)),
        token: token.map(Arc::from),
    };
    let signing = Router::new()
        .route("/wallet/new", post(create_account))
        .route("/wallet/import", post(import_account))
        .route("/runs/{id}/publish", post(publish))
        .route("/rewards/pay", post(rewards_pay))
        .route("/rewards/withdraw", post(rewards_withdraw))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_signing_token,
        ));
    let api = Router::new()
        .merge(signing)
        .route("/wallet/accounts", get(wallet_accounts))
        .route("/chain", get(chain_status))
        .route("/chain/up", post(chain_up))
        .route(
            "/chain/settings",
            get(get_chain_settings).put(put_chain_settings),
        )
        .route("/runs/{id}/publish/preview", post(publish_preview))
        .route(
            "/runs/{id}/attribution",
            get(run_attribution).post(start_attribution),
        )
        .route(
            "/runs/{id}/attribution/accuracy",
            post(start_attribution_accuracy),
        )
        .route("/runs/{id}/publication", get(run_publication))
        .route("/verify", post(verify))
        .route("/rewards/balance/{address}", get(rewards_balance))
        .route("/doctor", get(doctor))
        .route("/models", get(list_models).post(add_model))
        .route("/models/{id}", axum::routing::delete(remove_model))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/settings", get(get_settings).put(put_settings))
        .route(
            "/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route(
            "/conversations/{id}",
            get(get_conversation)
                .patch(update_conversation)
                .delete(delete_conversation),
        )
        .route("/conversations/{id}/messages", post(send_message))
        .route("/conversations/{id}/stop", post(stop_answer))
        .route("/runs", get(list_runs).post(start_run))
        .route("/runs/{id}", get(get_run).delete(delete_run))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/resume", post(resume_run))
        .route("/hub/datanets", get(search_hub))
        .route("/hub/datanets/{owner}/{name}", get(hub_card))
        .route("/datanets", get(list_datanets))
        .route("/datanets/pull", post(pull_datanet))
        .route("/datanets/import", post(import_datanet))
        .route("/datanets/{owner}/{name}/rows", get(datanet_rows))
        .route("/datanets/{owner}/{name}/rows/{cid}/label", post(label_row))
        .route("/datanets/{owner}/{name}/rows/{cid}/edit", post(edit_row))
        .route("/datanets/{owner}/{name}/stats", get(datanet_stats))
        .route("/datanets/{owner}/{name}/duplicates", post(scan_duplicates))
        .route("/datasets/list", get(list_datasets).post(create_dataset))
        .route(
            "/datasets/named/{name}",
            axum::routing::delete(delete_dataset),
        )
        .route("/datasets/named/{name}/rows", get(dataset_rows))
        .route("/datasets/preview", post(preview_dataset))
        .route("/datasets/demo", get(list_demo_datasets))
        .route("/events", get(events))
        .fallback(|| async {
            let body = ApiError {
                error: "no such API route".into(),
                hint: Some("the routes are listed in docs/api.md".into()),
            };
            (StatusCode::NOT_FOUND, Json(body))
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    let app = Router::new().nest("/api", api);
    match ui_dir.filter(|d| d.join("index.html").is_file()) {
        Some(dir) => {
            let index = dir.join("index.html");
            app.fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(index)),
            )
        }
        None => app.fallback(|| async {
            Html(
                "<!doctype html><title>ModelFactory</title><h1>ModelFactory</h1>\
                 <p>The API is running, but the studio's pages are not built. Run <code>scripts/setup</code> \
                 (or <code>npm --prefix ui ci &amp;&amp; npm --prefix ui run build</code>) and restart, \
                 or point <code>--ui-dir</code> at a built <code>ui/dist</code>.</p>",
            )
        }),
    }
}

/// Where the built UI is: an explicit folder, `MODELFACTORY_UI_DIR`, next to the binary
/// (`../share/modelfactory/ui` as installed), or the source tree's `ui/dist`.
pub fn find_ui_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(explicit);
    candidates.extend(std::env::var_os("MODELFACTORY_UI_DIR").map(PathBuf::from));
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        candidates.push(bin.join("../share/modelfactory/ui"));
        candidates.push(bin.join("ui"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/dist"));
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
}

/// Binds the address, with a message that names it when it is taken.
pub async fn bind(addr: SocketAddr) -> crate::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_string(),
            message: if source.kind() == std::io::ErrorKind::AddrInUse {
                format!("port {} is already in use (another studio?)", addr.port())
            } else {
                source.to_string()
            },
        })
}

/// How long open connections get to finish after shutdown begins. The live event stream
/// never finishes by itself, so without a limit an open studio tab would keep the server up.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves until `shutdown` resolves, then lets requests in flight finish for a moment.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = began_tx.send(());
    });
    let grace_over = async move {
        if began_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served.map_err(|source| Error::Io {
            what: "serving HTTP".into(),
            source,
        }),
        // Dropping the server closes the connections still open (event streams).
        () = grace_over => Ok(()),
    }
}
