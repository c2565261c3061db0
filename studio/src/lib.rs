//! The ModelFactory application core shared by every front end: the workspace folder and its
//! catalog, settings, models, the job runner, fine-tuning runs and local chat. The `modelfactory` CLI, its HTTP
//! server and the desktop app all call [`Studio`].

pub mod attribution;
pub mod chain;
pub mod chat;
pub mod datanets;
pub mod db;
pub mod error;
pub mod jobs;
pub mod models;
pub mod publish;
pub mod runs;
pub mod server;
pub mod settings;
pub mod verify;
pub mod wallet;
pub mod workspace;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use chat::{
    AnswerCitation, ChatRole, ChatToken, CitedRow, Conversation, ConversationSummary,
    ConversationUpdate, GenerationStats, MessageStats, NewConversation, PendingAnswer,
    SamplingParams, SendMessage, SendResult, StopReason, StopResult, StoredMessage,
};
pub use error::{ApiError, Error, Result};
pub use jobs::{JobContext, JobEvent, JobInfo, JobState, Jobs};
pub use models::{ModelStatus, ModelSummary};
pub use runs::{
    DataSummary, DatasetPreview, DemoDataset, NewRun, Preset, PreviewRequest, RunDetail, RunState,
    RunSummary, demo_datasets,
};
pub use settings::{BackendChoice, Settings};
pub use trainer::BackendStatus;
pub use workspace::{InstanceLock, Workspace};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Logs to standard error; `MODELFACTORY_LOG` (an `EnvFilter` directive) overrides the default.
pub fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MODELFACTORY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoctorReport {
    pub version: String,
    pub workspace: String,
    pub database: String,
    pub backends: Vec<BackendStatus>,
    pub models: Vec<ModelSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddModelResult {
    pub model: Option<ModelSummary>,
    pub job: Option<JobInfo>,
}

/// One open workspace. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Studio {
    inner: Arc<Inner>,
}

struct Inner {
    workspace: Workspace,
    db: db::Db,
    jobs: Jobs,
    models: models::Models,
    chat: chat::ChatState,
    chain: chain::ChainState,
    _instance: Option<InstanceLock>,
}

impl Studio {
    /// Opens a workspace for a one-shot command. It may share the workspace with a running
    /// instance.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_inner(root, None)
    }

    /// Opens a workspace for a long-lived front end (server, desktop app); refuses when
    /// another one holds it.
    pub fn open_instance(root: &Path, holder: &str) -> Result<Self> {
        Self::open_inner(root, Some(holder))
    }

    fn open_inner(root: &Path, holder: Option<&str>) -> Result<Self> {
        let workspace = Workspace::open(root)?;
        let instance = holder.map(|h| workspace.lock_instance(h)).transpose()?;
        let db = db::Db::open(&workspace.database_path())?;
        let jobs = Jobs::open(db.clone(), workspace.jobs_dir())?;
        let models = models::Models::new(db.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                workspace,
                db,
                jobs,
                models,
                chat: chat::ChatState::default(),
                chain: chain::ChainState::default(),
                _instance: instance,
            }),
        })
    }

    pub fn workspace(&self) -> &Workspace {
        &self.inner.workspace
    }
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    pub fn doctor(&self) -> Result<DoctorReport> {
        Ok(DoctorReport {
            version: VERSION.into(),
            workspace: self.inner.workspace.root().display().to_string(),
            database: self.inner.db.path().display().to_string(),
            backends: trainer::probe_backends(),
            models: self.list_models()?,
        })
    }

    pub fn list_models(&self) -> Result<Vec<ModelSummary>> {
        self.inner.models.list()
    }

    pub fn remove_model(&self, id: &str) -> Result<()> {
        self.inner.models.remove(id)
    }

    /// Registers a local file or folder at once; a hub id becomes a background pull job.
    pub fn add_model(&self, source: &str, name: Option<&str>) -> Result<AddModelResult> {
        let path = Path::new(source);
        if path.exists() {
            let model = self.inner.models.register_path(path, source, name)?;
            return Ok(AddModelResult {
                model: Some(model),
                job: None,
            });
        }
        if !models::looks_like_repo_id(source) {
            return Err(Error::UnknownModelSource {
                given: source.into(),
            });
        }
        let studio = self.clone();
        let repo = source.to_string();
        let name = name.map(str::to_string);
        let job = self
            .inner
            .jobs
            .spawn("pull-model", &format!("Pull {repo}"), move |ctx| {
                studio.pull_model(ctx, &repo, name.as_deref()).map(|_| ())
            })?;
        Ok(AddModelResult {
            model: None,
            job: Some(job),
        })
    }

    /// Records the hub repository a local model came from (see [`models::portable_id`]).
    pub fn set_model_hub_id(&self, id: &str, hub_id: &str) -> Result<ModelSummary> {
        self.inner.models.set_hub_id(id, hub_id)
    }

    /// Pulls a hub repo into the workspace and registers it; used by the pull job and,
    /// in the foreground, by the CLI.
    pub fn pull_model(
        &self,
        ctx: &JobContext,
        repo: &str,
        name: Option<&str>,
    ) -> Result<ModelSummary> {
        let endpoint = self.settings()?.effective_hub_endpoint();
        let dest = self.inner.workspace.models_dir().join("hub");
        let folder = models::pull_repo(ctx, repo, &endpoint, &dest)?;
        ctx.progress(1.0, "reading the model's metadata", &[]);
        let model = self.inner.models.register_path(&folder, repo, name)?;
        self.inner.models.set_hub_id(&model.id, repo)
    }

    pub fn settings(&self) -> Result<Settings> {
        Settings::load(&self.inner.db)
    }

    pub fn save_settings(&self, settings: &Settings) -> Result<Settings> {
        settings.save(&self.inner.db)?;
        self.settings()
    }
}
