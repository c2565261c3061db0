//! Local chat: conversations kept in the catalog, and one loaded model shared by every front
//! end of a studio.
//!
//! Sending a message is two steps. [`Studio::begin_answer`] checks the request, stores the
//! question and registers a cancel flag that [`Studio::stop_answer`] can reach from another
//! request; it is quick. [`PendingAnswer::run`] then loads the model (kept for the next
//! message), generates the answer on the calling thread, passing the text on piece by piece,
//! and stores it with its statistics. An answer that is stopped is stored as far as it got,
//! with the stop reason `cancelled`. An answer that fails leaves the conversation as it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use trainer::citations::{CITATION_INDEX_FILE, CitationIndex};
use trainer::lora::Adapter;
use trainer::{BackendKind, ChatMessage, ChatModel, LoadOptions};

pub use trainer::{GenerationStats, SamplingParams, StopReason};

use crate::error::{Error, Result};
use crate::jobs::now;
use crate::{BackendChoice, Studio};

/// The title a conversation shows until its first answer names it.
pub const UNTITLED: &str = "New conversation";

/// Longest title taken from a first question, in characters.
const TITLE_CHARS: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "system" => ChatRole::System,
            "user" => ChatRole::User,
            _ => ChatRole::Assistant,
        }
    }
}

/// How an answer was generated: trainer's figures, the model and the backend it ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStats {
    #[serde(flatten)]
    pub generation: GenerationStats,
    pub model_id: String,
    /// The fine-tuning run whose adapter answered, if any.
    #[serde(default)]
    pub adapter_run_id: Option<String>,
    pub backend: BackendKind,
    /// An adapter's answer: the passages of it found word for word in the rows that trained
    /// the adapter, rarest first.
    #[serde(default)]
    pub citations: Vec<AnswerCitation>,
    /// Why an adapter's answer could not be looked up in its training rows.
    #[serde(default)]
    pub citations_error: Option<String>,
}

/// A passage of an answer found word for word in training rows (the run's citation index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCitation {
    /// The passage as it stands in the answer.
    pub text: String,
    /// Its length in tokens.
    pub tokens: usize,
    /// How many times it occurs in the training rows: the fewer, the more telling.
    pub occurrences: u64,
    /// Rows it occurs in (a few at most).
    pub sources: Vec<CitedRow>,
}

/// A training row a passage was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitedRow {
    pub contribution_id: String,
    pub contributor: Option<String>,
}

/// The shortest passage worth citing: shorter ones are common phrases found everywhere.
const CITATION_MIN_TOKENS: usize = 8;
/// Passages listed per answer.
const CITATIONS_PER_ANSWER: usize = 5;

/// Looks `answer` up in the citation index at `index`, built with `tokenizer`.
fn cite_answer(
    index: &Path,
    tokenizer: &trainer::tokenizer::TextTokenizer,
    answer: &str,
) -> std::result::Result<Vec<AnswerCitation>, String> {
    if !index.is_file() {
        return Err(format!(
            "{} is missing: the run was trained before citations were indexed",
            index.display()
        ));
    }
    let index = CitationIndex::open(index, &tokenizer.fingerprint()).map_err(|e| e.to_string())?;
    let (ids, offsets) = tokenizer
        .encode_with_offsets(answer)
        .map_err(|e| e.to_string())?;
    Ok(index
        .cite(&ids, CITATION_MIN_TOKENS)
        .into_iter()
        .take(CITATIONS_PER_ANSWER)
        .filter_map(|c| {
            let start = offsets.get(c.start)?.0;
            let end = offsets.get(c.start + c.len.checked_sub(1)?)?.1;
            Some(AnswerCitation {
                text: answer.get(start..end)?.to_string(),
                tokens: c.len,
                occurrences: c.occurrences,
                sources: c
                    .rows
                    .into_iter()
                    .map(|r| CitedRow {
                        contribution_id: r.id,
                        contributor: r.contributor,
                    })
                    .collect(),
            })
        })
        .collect())
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// 1, 2, 3, … in the order of the conversation.
    pub seq: i64,
    pub role: ChatRole,
    pub content: String,
    /// Assistant messages only. `stop_reason: "cancelled"` marks an answer that was stopped.
    pub stats: Option<MessageStats>,
    pub created_at: String,
}

/// A conversation as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    pub model_id: String,
    /// Answers come from the base model with this run's adapter.
    pub adapter_run_id: Option<String>,
    /// Questions and answers (the system prompt is not counted).
    pub message_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A conversation with its settings and every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub model_id: String,
    /// Answers come from the base model with this run's adapter.
    pub adapter_run_id: Option<String>,
    pub sampling: SamplingParams,
    pub created_at: String,
    pub updated_at: String,
    pub messages: Vec<StoredMessage>,
}

/// What creating a conversation takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewConversation {
    pub model_id: String,
    /// Chat through this fine-tuning run's adapter (on the run's base model).
    #[serde(default)]
    pub adapter_run_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// A system prompt, stored as the first message.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub sampling: Option<SamplingParams>,
}

/// Changes to a conversation; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationUpdate {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub model_id: Option<String>,
    /// A run id to chat through its adapter; an empty string goes back to the base model.
    #[serde(default)]
    pub adapter_run_id: Option<String>,
    #[serde(default)]
    pub sampling: Option<SamplingParams>,
}

/// A question; `sampling`, when given, becomes the conversation's setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    pub content: String,
    #[serde(default)]
    pub sampling: Option<SamplingParams>,
}

/// The stored answer, and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResult {
    pub message: StoredMessage,
    pub stats: MessageStats,
}

/// A piece of an answer as it is generated: the `token` server-sent event, the `chat-token`
/// Tauri event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatToken {
    pub conversation_id: String,
    pub text: String,
}

/// Whether a stop request found an answer to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopResult {
    pub stopped: bool,
}

/// Checks sampling settings before they are stored or used.
pub fn validate_sampling(s: &SamplingParams) -> Result<()> {
    let bad = |field: &str, message: String| {
        Err(Error::InvalidInput {
            field: field.into(),
            message,
        })
    };
    if !s.temperature.is_finite() || !(0.0..=10.0).contains(&s.temperature) {
        return bad(
            "temperature",
            format!("{} is not between 0 and 10", s.temperature),
        );
    }
    if !s.top_p.is_finite() || s.top_p <= 0.0 || s.top_p > 1.0 {
        return bad("top_p", format!("{} is not above 0 and at most 1", s.top_p));
    }
    if !s.repetition_penalty.is_finite() || s.repetition_penalty <= 0.0 {
        return bad(
            "repetition_penalty",
            format!("{} is not above 0", s.repetition_penalty),
        );
    }
    if s.max_new_tokens == 0 || s.max_new_tokens > 65_536 {
        return bad(
            "max_new_tokens",
            format!("{} is not between 1 and 65536", s.max_new_tokens),
        );
    }
    Ok(())
}

/// Loads a model for chat, naming it in the error when it fails. Blocking: seconds of CPU work.
pub fn load_model(
    label: &str,
    path: &Path,
    backend: Option<BackendKind>,
    progress: &mut dyn FnMut(f32, &str),
) -> Result<ChatModel> {
    let started = Instant::now();
    let model = ChatModel::load(
        path,
        &LoadOptions {
            backend,
            ..LoadOptions::default()
        },
        progress,
    )
    .map_err(|source| Error::ChatLoad {
        model: label.to_string(),
        source,
    })?;
    tracing::info!(
        model = label,
        backend = model.backend().name(),
        seconds = started.elapsed().as_secs_f64(),
        "loaded a model for chat"
    );
    Ok(model)
}

/// The backend a setting asks for; `None` lets the runtime take the best usable one.
pub fn backend_of(choice: BackendChoice) -> Option<BackendKind> {
    match choice {
        BackendChoice::Auto => None,
        BackendChoice::Cpu => Some(BackendKind::Cpu),
        BackendChoice::Wgpu => Some(BackendKind::Wgpu),
        BackendChoice::Cuda => Some(BackendKind::Cuda),
    }
}

/// Which model a loaded one is: the same id, file and backend reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelKey {
    id: String,
    path: PathBuf,
    backend: Option<BackendKind>,
}

struct LoadedModel {
    key: ModelKey,
    model: ChatModel,
    /// The adapter folder applied now; switching adapters keeps the base model loaded.
    adapter: Option<PathBuf>,
}

/// The studio's chat state: the model kept loaded, and the answers being generated.
#[derive(Default)]
pub(crate) struct ChatState {
    loaded: Mutex<Option<LoadedModel>>,
    /// Cancel flags of the answers in progress, by conversation.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl ChatState {
    fn running(&self) -> MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn title_from(question: &str) -> String {
    let line = question
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let line = line.trim();
    if line.chars().count() <= TITLE_CHARS {
        return line.to_string();
    }
    let cut: String = line.chars().take(TITLE_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

fn parse_sampling(id: &str, json: &str) -> SamplingParams {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(
            conversation = id,
            "unreadable sampling settings ({e}); using the defaults"
        );
        SamplingParams::default()
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Io {
        what: "serialising chat data".into(),
        source: std::io::Error::other(e),
    })
}

impl Studio {
    /// Every conversation, the most recently used first.
    pub fn list_conversations(&self) -> Result<Vec<ConversationSummary>> {
        let conn = self.inner.db.lock();
        let mut stmt = conn.prepare(
            "SELECT c.id, c.title, c.model_id, c.created_at, c.updated_at,
                    (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.role != 'system'),
                    c.adapter_run_id
             FROM conversations c ORDER BY c.updated_at DESC, c.rowid DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ConversationSummary {
                id: r.get(0)?,
                title: r
                    .get::<_, Option<String>>(1)?
                    .unwrap_or_else(|| UNTITLED.into()),
                model_id: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
                message_count: r.get(5)?,
                adapter_run_id: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Starts a conversation with a registered model.
    pub fn create_conversation(&self, request: &NewConversation) -> Result<Conversation> {
        self.inner.models.find(&request.model_id)?;
        if let Some(run) = &request.adapter_run_id {
            self.check_adapter_run(run, &request.model_id)?;
        }
        let sampling = request.sampling.clone().unwrap_or_default();
        validate_sampling(&sampling)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let title = request
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let at = now();
        {
            let mut conn = self.inner.db.lock();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO conversations (id, title, model_id, sampling_json, created_at, updated_at, adapter_run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                params![id, title, request.model_id, to_json(&sampling)?, at, request.adapter_run_id],
            )?;
            if let Some(system) = request.system.as_deref().filter(|s| !s.trim().is_empty()) {
                tx.execute(
                    "INSERT INTO messages (conversation_id, seq, role, content, created_at) VALUES (?1, 1, 'system', ?2, ?3)",
                    params![id, system, at],
                )?;
            }
            tx.commit()?;
        }
        tracing::info!(conversation = %id, model = %request.model_id, "created a conversation");
        self.get_conversation(&id)
    }

    pub fn get_conversation(&self, id: &str) -> Result<Conversation> {
        let conn = self.inner.db.lock();
        type Head = (
            String,
            Option<String>,
            String,
            String,
            String,
            String,
            Option<String>,
        );
        let head: Option<Head> = conn
            .query_row(
                "SELECT id, title, model_id, sampling_json, created_at, updated_at, adapter_run_id FROM conversations WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .optional()?;
        let (id, title, model_id, sampling_json, created_at, updated_at, adapter_run_id) =
            head.ok_or_else(|| Error::ConversationNotFound(id.to_string()))?;
        let mut stmt = conn.prepare(
            "SELECT seq, role, content, stats_json, created_at FROM messages WHERE conversation_id = ?1 ORDER BY seq",
        )?;
        let messages = stmt
            .query_map(params![id], |r| {
                let stats: Option<String> = r.get(3)?;
                Ok(StoredMessage {
                    seq: r.get(0)?,
                    role: ChatRole::parse(&r.get::<_, String>(1)?),
                    content: r.get(2)?,
                    stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Conversation {
            sampling: parse_sampling(&id, &sampling_json),
            id,
            title: title.unwrap_or_else(|| UNTITLED.into()),
            model_id,
            adapter_run_id,
            created_at,
            updated_at,
            messages,
        })
    }

    /// Renames a conversation, moves it to another model, or changes its sampling settings.
    pub fn update_conversation(
        &self,
        id: &str,
        update: &ConversationUpdate,
    ) -> Result<Conversation> {
        let current = self.get_conversation(id)?;
        if let Some(model_id) = &update.model_id {
            self.inner.models.find(model_id)?;
        }
        let model_id = update.model_id.as_ref().unwrap_or(&current.model_id);
        if let Some(run) = update.adapter_run_id.as_deref().filter(|r| !r.is_empty()) {
            self.check_adapter_run(run, model_id)?;
        }
        if let Some(sampling) = &update.sampling {
            validate_sampling(sampling)?;
        }
        let sampling = update.sampling.as_ref().map(to_json).transpose()?;
        let title = update
            .title
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        self.inner.db.lock().execute(
            "UPDATE conversations SET title = COALESCE(?2, title), model_id = COALESCE(?3, model_id),
                    sampling_json = COALESCE(?4, sampling_json), updated_at = ?5,
                    adapter_run_id = CASE WHEN ?6 IS NULL THEN adapter_run_id WHEN ?6 = '' THEN NULL ELSE ?6 END
             WHERE id = ?1",
            params![id, title, update.model_id, sampling, now(), update.adapter_run_id],
        )?;
        self.get_conversation(id)
    }

    /// Checks that run `run` has an adapter trained on model `model_id`.
    fn check_adapter_run(&self, run: &str, model_id: &str) -> Result<()> {
        let detail = self.get_run(run)?;
        if detail.run.model_id != model_id {
            return Err(Error::InvalidInput {
                field: "adapter_run_id".into(),
                message: format!(
                    "run {} trained an adapter for model {}, not {model_id}",
                    detail.run.name, detail.run.model_id
                ),
            });
        }
        self.run_adapter(run)?;
        Ok(())
    }

    /// Deletes a conversation and its messages, stopping its answer if one is being generated.
    pub fn delete_conversation(&self, id: &str) -> Result<()> {
        if let Some(flag) = self.inner.chat.running().get(id) {
            flag.store(true, Ordering::SeqCst);
        }
        let n = self
            .inner
            .db
            .lock()
            .execute("DELETE FROM conversations WHERE id = ?1", params![id])?;
        if n == 0 {
            return Err(Error::ConversationNotFound(id.to_string()));
        }
        tracing::info!(conversation = id, "deleted a conversation");
        Ok(())
    }

    /// Asks the answer being generated in a conversation to stop; it is stored as far as it got.
    pub fn stop_answer(&self, conversation_id: &str) -> Result<StopResult> {
        let flag = self.inner.chat.running().get(conversation_id).cloned();
        if flag.is_none() {
            // Only to tell an unknown conversation from an idle one.
            self.get_conversation(conversation_id)?;
        }
        let stopped = flag.is_some_and(|f| !f.swap(true, Ordering::SeqCst));
        Ok(StopResult { stopped })
    }

    /// Checks a question, stores it and registers its cancel flag. The answer is generated by
    /// [`PendingAnswer::run`]; dropping the `PendingAnswer` instead takes the question back.
    pub fn begin_answer(
        &self,
        conversation_id: &str,
        request: &SendMessage,
    ) -> Result<PendingAnswer> {
        let content = request.content.trim();
        if content.is_empty() {
            return Err(Error::InvalidInput {
                field: "content".into(),
                message: "the message is empty".into(),
            });
        }
        if let Some(sampling) = &request.sampling {
            validate_sampling(sampling)?;
        }
        let conversation = self.get_conversation(conversation_id)?;
        let model = self.inner.models.find(&conversation.model_id)?;
        let backend = backend_of(self.settings()?.default_backend);
        let sampling = request
            .sampling
            .clone()
            .unwrap_or_else(|| conversation.sampling.clone());

        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut running = self.inner.chat.running();
            if running.contains_key(conversation_id) {
                return Err(Error::ChatBusy(
                    "this conversation is already being answered".into(),
                ));
            }
            running.insert(conversation_id.to_string(), cancel.clone());
        }
        // From here on, dropping `pending` unregisters the flag (and takes the question back).
        let mut pending = PendingAnswer {
            studio: self.clone(),
            conversation_id: conversation_id.to_string(),
            user_seq: None,
            question: content.to_string(),
            history: conversation
                .messages
                .iter()
                .filter(|m| !m.content.is_empty())
                .map(|m| ChatMessage::new(m.role.as_str(), m.content.clone()))
                .chain([ChatMessage::new("user", content)])
                .collect(),
            model: ModelKey {
                id: model.id,
                path: PathBuf::from(model.path),
                backend,
            },
            adapter: match &conversation.adapter_run_id {
                Some(run) => Some((run.clone(), self.run_adapter(run)?)),
                None => None,
            },
            sampling,
            cancel,
            finished: false,
        };
        let at = now();
        let sampling_json = to_json(&pending.sampling)?;
        let seq = {
            let mut conn = self.inner.db.lock();
            let tx = conn.transaction()?;
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?1",
                params![conversation_id],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO messages (conversation_id, seq, role, content, created_at) VALUES (?1, ?2, 'user', ?3, ?4)",
                params![conversation_id, seq, content, at],
            )?;
            tx.execute(
                "UPDATE conversations SET sampling_json = ?2, updated_at = ?3 WHERE id = ?1",
                params![conversation_id, sampling_json, at],
            )?;
            tx.commit()?;
            seq
        };
        pending.user_seq = Some(seq);
        Ok(pending)
    }

    /// Sends a question and generates the answer on this thread: [`Studio::begin_answer`] and
    /// [`PendingAnswer::run`] in one call.
    pub fn send_message(
        &self,
        conversation_id: &str,
        request: &SendMessage,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<SendResult> {
        self.begin_answer(conversation_id, request)?.run(on_text)
    }

    /// The model an id names, for chat outside a conversation (the CLI).
    pub fn find_model(&self, id: &str) -> Result<crate::ModelSummary> {
        self.inner.models.find(id)
    }
}

/// A stored question whose answer is yet to be generated.
pub struct PendingAnswer {
    studio: Studio,
    conversation_id: String,
    user_seq: Option<i64>,
    question: String,
    history: Vec<ChatMessage>,
    model: ModelKey,
    /// The run and its adapter folder, when the conversation chats through one.
    adapter: Option<(String, PathBuf)>,
    sampling: SamplingParams,
    cancel: Arc<AtomicBool>,
    finished: bool,
}

impl PendingAnswer {
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// The flag that stops the answer; [`Studio::stop_answer`] sets the same one.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Loads the model if it is not the one kept loaded, generates the answer on this thread,
    /// passing its text to `on_text` piece by piece, and stores it.
    pub fn run(mut self, on_text: &mut dyn FnMut(&str)) -> Result<SendResult> {
        let (text, stats) = self.generate(on_text)?;
        let result = self.store(text, stats)?;
        self.finished = true;
        Ok(result)
    }

    fn generate(&self, on_text: &mut dyn FnMut(&str)) -> Result<(String, MessageStats)> {
        let chat = &self.studio.inner.chat;
        let mut slot = match chat.loaded.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::ChatBusy(
                    "the model is answering in another conversation".into(),
                ));
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                // A generation panicked midway: do not trust that model's state.
                let mut guard = poisoned.into_inner();
                *guard = None;
                guard
            }
        };
        let loaded = match slot.take() {
            Some(loaded) if loaded.key == self.model => loaded,
            previous => {
                // Free the previous model before loading the next one.
                drop(previous);
                let mut progress = |fraction: f32, message: &str| {
                    tracing::debug!(fraction, "loading {}: {message}", self.model.id);
                };
                let model = load_model(
                    &self.model.id,
                    &self.model.path,
                    self.model.backend,
                    &mut progress,
                )?;
                LoadedModel {
                    key: self.model.clone(),
                    model,
                    adapter: None,
                }
            }
        };
        let loaded = slot.insert(loaded);
        let wanted = self.adapter.as_ref().map(|(_, dir)| dir.clone());
        if loaded.adapter != wanted {
            match &wanted {
                Some(dir) => {
                    let adapter = Adapter::load_peft(dir).map_err(|source| Error::ChatLoad {
                        model: self.model.id.clone(),
                        source,
                    })?;
                    loaded
                        .model
                        .set_adapter(Some((&adapter, 1.0)), dir)
                        .map_err(|source| Error::ChatLoad {
                            model: self.model.id.clone(),
                            source,
                        })?;
                }
                None => loaded
                    .model
                    .set_adapter(None, &self.model.path)
                    .map_err(Error::Generation)?,
            }
            loaded.adapter = wanted;
        }
        let mut text = String::new();
        let generation = loaded
            .model
            .chat(
                &self.history,
                &self.sampling,
                &self.cancel,
                &mut |piece: &str| {
                    text.push_str(piece);
                    on_text(piece);
                },
            )
            .map_err(Error::Generation)?;
        tracing::info!(
            conversation = %self.conversation_id,
            tokens = generation.generated_tokens,
            tokens_per_s = generation.decode_tokens_per_s,
            stop = ?generation.stop_reason,
            "answered"
        );
        let (citations, citations_error) = match &self.adapter {
            Some((run, _)) => {
                let index = self.studio.run_dir(run).join(CITATION_INDEX_FILE);
                match cite_answer(&index, loaded.model.tokenizer(), &text) {
                    Ok(found) => (found, None),
                    Err(e) => {
                        tracing::warn!(run = %run, "no citations for the answer: {e}");
                        (Vec::new(), Some(e))
                    }
                }
            }
            None => (Vec::new(), None),
        };
        let stats = MessageStats {
            generation,
            model_id: self.model.id.clone(),
            adapter_run_id: self.adapter.as_ref().map(|(run, _)| run.clone()),
            backend: loaded.model.backend(),
            citations,
            citations_error,
        };
        Ok((text, stats))
    }

    fn store(&self, text: String, stats: MessageStats) -> Result<SendResult> {
        let at = now();
        let stats_json = to_json(&stats)?;
        let seq = {
            let mut conn = self.studio.inner.db.lock();
            let tx = conn.transaction()?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM conversations WHERE id = ?1",
                    params![self.conversation_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                return Err(Error::ConversationNotFound(self.conversation_id.clone()));
            }
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?1",
                params![self.conversation_id],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO messages (conversation_id, seq, role, content, stats_json, created_at)
                 VALUES (?1, ?2, 'assistant', ?3, ?4, ?5)",
                params![self.conversation_id, seq, text, stats_json, at],
            )?;
            tx.execute(
                "UPDATE conversations SET title = COALESCE(title, ?2), updated_at = ?3 WHERE id = ?1",
                params![self.conversation_id, title_from(&self.question), at],
            )?;
            tx.commit()?;
            seq
        };
        let message = StoredMessage {
            seq,
            role: ChatRole::Assistant,
            content: text,
            stats: Some(stats.clone()),
            created_at: at,
        };
        Ok(SendResult { message, stats })
    }
}

impl Drop for PendingAnswer {
    fn drop(&mut self) {
        {
            let mut running = self.studio.inner.chat.running();
            if running
                .get(&self.conversation_id)
                .is_some_and(|f| Arc::ptr_eq(f, &self.cancel))
            {
                running.remove(&self.conversation_id);
            }
        }
        if self.finished {
            return;
        }
        // No answer: take the question back, so that a failed send changes nothing.
        if let Some(seq) = self.user_seq {
            let removed = self.studio.inner.db.lock().execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND seq = ?2 AND role = 'user'",
                params![self.conversation_id, seq],
            );
            if let Err(e) = removed {
                tracing::warn!(conversation = %self.conversation_id, "could not take back a question: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn studio_with_model() -> (tempfile::TempDir, Studio, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let studio = Studio::open(&dir.path().join("ws")).expect("studio");
        let gguf = dir.path().join("tiny.gguf");
        trainer::test_support::tiny_llama_gguf(&trainer::test_support::TinyGguf::default())
            .write(&gguf)
            .expect("write");
        let added = studio
            .add_model(&gguf.to_string_lossy(), None)
            .expect("add");
        let id = added.model.expect("model").id;
        (dir, studio, id)
    }

    #[test]
    fn an_answer_repeating_a_training_row_cites_it_with_its_text_and_contributor() {
        let dir = tempfile::tempdir().expect("tempdir");
        trainer::test_support::TinyLlama::default()
            .write_tokenizer(dir.path())
            .expect("tokenizer");
        let tokenizer =
            trainer::tokenizer::TextTokenizer::from_folder(dir.path()).expect("tokenizer");
        let row = tokenizer.encode("thequickbrownfoxjumps").expect("encode");
        let other = tokenizer.encode("loremipsumdolorsitamet").expect("encode");
        let index = CitationIndex::build(
            &tokenizer.fingerprint(),
            [
                ("c-1", Some("0xabc"), row.as_slice()),
                ("c-2", None, other.as_slice()),
            ],
        )
        .expect("index");
        let path = dir.path().join(CITATION_INDEX_FILE);
        index.save(&path).expect("save");

        let found =
            cite_answer(&path, &tokenizer, "Surethequickbrownfoxjumpsindeed").expect("cite");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].text, "thequickbrownfoxjumps");
        assert_eq!(found[0].occurrences, 1);
        assert_eq!(
            found[0].sources,
            vec![CitedRow {
                contribution_id: "c-1".into(),
                contributor: Some("0xabc".into()),
            }]
        );
        assert!(
            cite_answer(&path, &tokenizer, "nothingsharedhereatallXYZ")
                .expect("cite")
                .is_empty()
        );
        let missing = cite_answer(&dir.path().join("gone.idx"), &tokenizer, "x")
            .expect_err("no index, no citations");
        assert!(missing.contains("gone.idx"), "{missing}");
    }

    #[test]
    fn titles_come_from_the_first_line_and_are_cut_on_a_character() {
        assert_eq!(
            title_from("\n  What is the capital of France?\nthanks"),
            "What is the capital of France?"
        );
        let long = "é".repeat(100);
        let t = title_from(&long);
        assert_eq!(t.chars().count(), TITLE_CHARS);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn sampling_settings_out_of_range_are_refused_by_name() {
        assert!(validate_sampling(&SamplingParams::default()).is_ok());
        assert!(validate_sampling(&SamplingParams::greedy(16)).is_ok());
        for (field, s) in [
            (
                "temperature",
                SamplingParams {
                    temperature: -0.1,
                    ..Default::default()
                },
            ),
            (
                "temperature",
                SamplingParams {
                    temperature: f32::NAN,
                    ..Default::default()
                },
            ),
            (
                "top_p",
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
            ),
            (
                "repetition_penalty",
                SamplingParams {
                    repetition_penalty: 0.0,
                    ..Default::default()
                },
            ),
            (
                "max_new_tokens",
                SamplingParams {
                    max_new_tokens: 0,
                    ..Default::default()
                },
            ),
        ] {
            match validate_sampling(&s) {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn conversations_are_created_listed_updated_and_deleted() {
        let (_dir, studio, model) = studio_with_model();
        assert!(studio.list_conversations().expect("list").is_empty());
        let c = studio
            .create_conversation(&NewConversation {
                model_id: model.clone(),
                system: Some("You are terse.".into()),
                ..Default::default()
            })
            .expect("create");
        assert_eq!(c.title, UNTITLED);
        assert_eq!(c.sampling, SamplingParams::default());
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.messages[0].role, ChatRole::System);

        let listed = studio.list_conversations().expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].message_count, 0,
            "the system prompt is not counted"
        );

        let updated = studio
            .update_conversation(
                &c.id,
                &ConversationUpdate {
                    title: Some("  Geography ".into()),
                    sampling: Some(SamplingParams::greedy(8)),
                    ..Default::default()
                },
            )
            .expect("update");
        assert_eq!(updated.title, "Geography");
        assert_eq!(updated.sampling, SamplingParams::greedy(8));
        assert_eq!(updated.model_id, model);

        let err = studio
            .update_conversation(
                &c.id,
                &ConversationUpdate {
                    model_id: Some("no-such-model".into()),
                    ..Default::default()
                },
            )
            .expect_err("unknown model");
        assert!(matches!(err, Error::ModelNotFound(_)), "{err:?}");

        studio.delete_conversation(&c.id).expect("delete");
        assert!(matches!(
            studio.get_conversation(&c.id),
            Err(Error::ConversationNotFound(_))
        ));
        assert!(matches!(
            studio.delete_conversation(&c.id),
            Err(Error::ConversationNotFound(_))
        ));
        let n: i64 = studio
            .inner
            .db
            .lock()
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0, "messages go with their conversation");
    }

    #[test]
    fn a_conversation_needs_a_registered_model() {
        let (_dir, studio, _) = studio_with_model();
        let err = studio
            .create_conversation(&NewConversation {
                model_id: "nope".into(),
                ..Default::default()
            })
            .expect_err("unknown model");
        assert!(matches!(err, Error::ModelNotFound(_)));
    }

    #[test]
    fn a_question_taken_back_leaves_the_conversation_as_it_was() {
        let (_dir, studio, model) = studio_with_model();
        let c = studio
            .create_conversation(&NewConversation {
                model_id: model,
                ..Default::default()
            })
            .expect("create");
        let empty = studio.begin_answer(
            &c.id,
            &SendMessage {
                content: "  \n".into(),
                sampling: None,
            },
        );
        assert!(matches!(empty, Err(Error::InvalidInput { .. })));

        let pending = studio
            .begin_answer(
                &c.id,
                &SendMessage {
                    content: "Hello?".into(),
                    sampling: Some(SamplingParams::greedy(4)),
                },
            )
            .expect("begin");
        let stored = studio.get_conversation(&c.id).expect("get");
        assert_eq!(stored.messages.len(), 1);
        assert_eq!(stored.messages[0].content, "Hello?");
        assert_eq!(stored.sampling, SamplingParams::greedy(4));

        // A second question while the first is pending is refused; stopping reaches the flag.
        let again = studio.begin_answer(
            &c.id,
            &SendMessage {
                content: "Again?".into(),
                sampling: None,
            },
        );
        assert!(matches!(again, Err(Error::ChatBusy(_))));
        let flag = pending.cancel_flag();
        assert_eq!(
            studio.stop_answer(&c.id).expect("stop"),
            StopResult { stopped: true }
        );
        assert!(flag.load(Ordering::SeqCst));

        drop(pending);
        let stored = studio.get_conversation(&c.id).expect("get");
        assert!(stored.messages.is_empty(), "{:?}", stored.messages);
        assert_eq!(
            studio.stop_answer(&c.id).expect("stop"),
            StopResult { stopped: false }
        );
        assert!(matches!(
            studio.stop_answer("nope"),
            Err(Error::ConversationNotFound(_))
        ));
    }
}
