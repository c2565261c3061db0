//! The studio's error type. Each variant says what failed and where, and can offer a hint
//! that tells the user what to do next; front ends show both.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use the workspace folder {path}: {source}")]
    WorkspaceUnusable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the workspace folder is read-only: {path}")]
    WorkspaceReadOnly { path: PathBuf },
    #[error("another ModelFactory instance ({holder}) is already using the workspace {path}")]
    WorkspaceBusy { path: PathBuf, holder: String },
    #[error("the workspace database cannot be opened: {message}: {path}")]
    Database { path: PathBuf, message: String },
    #[error(
        "the workspace database was written by a newer ModelFactory (schema {found}, this build knows up to {known}): {path}"
    )]
    DatabaseTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Model(#[from] trainer::Error),
    #[error("no model with id {0:?} in this workspace")]
    ModelNotFound(String),
    #[error("{given:?} is neither an existing file or folder nor a hub repo id (owner/name)")]
    UnknownModelSource { given: String },
    #[error("downloading {repo} from {endpoint} failed: {message}")]
    Download {
        repo: String,
        endpoint: String,
        message: String,
    },
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: String, message: String },
    #[error("{job}: {message}")]
    JobFailed {
        job: String,
        message: String,
        hint: Option<String>,
        kind: ErrorKind,
    },
    #[error("no job with id {0:?}")]
    JobNotFound(String),
    #[error("cancelled")]
    Cancelled,
    #[error("invalid setting {key}: {message}")]
    InvalidSetting { key: String, message: String },
    #[error("no conversation with id {0:?}")]
    ConversationNotFound(String),
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    #[error("{0}")]
    ChatBusy(String),
    /// The runtime could not load a model for chat; the cause is trainer's own message.
    #[error("cannot load the model {model} for chat")]
    ChatLoad {
        model: String,
        #[source]
        source: trainer::Error,
    },
    #[error("generating the answer failed")]
    Generation(#[source] trainer::Error),
    #[error("no fine-tuning run with id {0:?}")]
    RunNotFound(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Datanet(#[from] datanet_sync::Error),
    #[error(transparent)]
    Keystore(#[from] ::wallet::KeystoreError),
    #[error(transparent)]
    Signing(#[from] ::wallet::SigningError),
    #[error(transparent)]
    Chain(#[from] ::wallet::chain::ChainError),
    #[error(transparent)]
    Manifest(#[from] ::wallet::ManifestError),
    /// A published adapter that does not match its manifest, signature or on-chain record.
    #[error("verification failed: {0}")]
    Verification(String),
}

impl Error {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::WorkspaceReadOnly { .. } | Error::WorkspaceUnusable { .. } => Some(
                "choose a writable folder with --home or the MODELFACTORY_HOME environment variable"
                    .into(),
            ),
            Error::WorkspaceBusy { .. } => Some(
                "close the other instance, or open the same studio in a browser at the address it printed; \
                 use another folder with --home to run a second one"
                    .into(),
            ),
            Error::Database { .. } => Some(
                "the file is left untouched; move it aside to start with an empty catalog, or restore it from a backup"
                    .into(),
            ),
            Error::DatabaseTooNew { .. } => Some("update ModelFactory".into()),
            Error::Listen { .. } => Some(
                "choose another port with --port, or stop the program using it".into(),
            ),
            Error::JobFailed { hint, .. } => hint.clone(),
            Error::ModelNotFound(_) => Some("`modelfactory models list` shows the ids".into()),
            Error::UnknownModelSource { .. } => Some(
                "give a path to a .gguf file or to a folder with config.json and *.safetensors, \
                 or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct"
                    .into(),
            ),
            Error::Download { .. } => Some(
                "check the network and the hub endpoint in Settings (or HF_ENDPOINT); \
                 models already in the workspace keep working offline"
                    .into(),
            ),
            Error::ConversationNotFound(_) => {
                Some("the conversation may have been deleted; reload the list".into())
            }
            Error::ChatBusy(_) => {
                Some("wait for the answer being generated to finish, or stop it".into())
            }
            Error::ChatLoad { source, .. } => Some(load_hint(source)),
            Error::Generation(trainer::Error::PromptTooLong { .. }) => Some(
                "start a new conversation, or lower the maximum number of new tokens".into(),
            ),
            Error::RunNotFound(_) => Some("`modelfactory runs list` shows the ids".into()),
            Error::Model(source) => Some(model_hint(source)),
            Error::Datanet(source) => datanet_hint(source),
            Error::Keystore(source) => keystore_hint(source),
            Error::Chain(source) => chain_hint(source),
            Error::Manifest(::wallet::ManifestError::UnknownVersion { .. }) => {
                Some("update ModelFactory to read this manifest".into())
            }
            _ => None,
        }
    }

    /// A short machine-usable category, used for HTTP status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ModelNotFound(_)
            | Error::JobNotFound(_)
            | Error::ConversationNotFound(_)
            | Error::RunNotFound(_) => ErrorKind::NotFound,
            Error::UnknownModelSource { .. }
            | Error::InvalidSetting { .. }
            | Error::InvalidInput { .. }
            | Error::Model(_)
            | Error::Generation(trainer::Error::PromptTooLong { .. }) => ErrorKind::BadInput,
            Error::ChatLoad { source, .. } => match source {
                trainer::Error::Io { .. } | trainer::Error::BackendUnavailable { .. } => {
                    ErrorKind::Environment
                }
                _ => ErrorKind::BadInput,
            },
            Error::WorkspaceBusy { .. } | Error::ChatBusy(_) => ErrorKind::Conflict,
            Error::Download { .. } => ErrorKind::Unavailable,
            Error::WorkspaceReadOnly { .. }
            | Error::WorkspaceUnusable { .. }
            | Error::Database { .. }
            | Error::DatabaseTooNew { .. }
            | Error::Listen { .. } => ErrorKind::Environment,
            Error::JobFailed { kind, .. } => *kind,
            Error::Datanet(source) => datanet_kind(source),
            Error::Keystore(source) => keystore_kind(source),
            Error::Signing(_) | Error::Manifest(_) | Error::Verification(_) => ErrorKind::BadInput,
            Error::Chain(source) => chain_kind(source),
            _ => ErrorKind::Internal,
        }
    }
}

/// What to do about an error of the model runtime or the trainer, by what went wrong.
fn model_hint(source: &trainer::Error) -> String {
    use trainer::Error as T;
    match source {
        T::Training { .. } | T::DataSetting { .. } => {
            "change the setting the message names and start again".into()
        }
        T::Dataset { .. } | T::DatasetRow { .. } | T::NoUsableRows { .. } => {
            "fix or remove the rows the message names; the preview in the Fine-tune wizard shows \
             how each row is read"
                .into()
        }
        T::Checkpoint { .. } => "the run's earlier checkpoints and adapter are kept; delete the \
             damaged checkpoint folder to resume from the one before"
            .into(),
        T::Adapter { .. } => "check that the adapter was trained for this base model".into(),
        T::Io { .. } => "check that the files can be read and the disk has room; nothing saved \
             before was changed"
            .into(),
        _ => "the file may be incomplete or damaged: download it again; nothing in the workspace \
              was changed"
            .into(),
    }
}

/// What to do about a Datanet error, when there is something to say.
fn datanet_hint(source: &datanet_sync::Error) -> Option<String> {
    use datanet_sync::Error as D;
    Some(match source {
        D::UnknownDatanet(_) => "`modelfactory datanet list` shows the Datanets pulled or imported here".into(),
        D::UnknownDataset(_) => "`modelfactory dataset list` shows the datasets built here".into(),
        // Datanets live under `datasets`; anything else is a published adapter.
        D::Hub { url, .. } if !url.contains("/datasets") => "check the network and the hub the adapter goes to (--hub, MODELFACTORY_PUBLISH_HUB, and HF_TOKEN for writing); what was signed is kept, and publishing again resumes where it stopped"
            .into(),
        D::Hub { .. } => "check the network and the Datanet hub in Settings (or MODELFACTORY_DATANET_HUB); Datanets already pulled keep working offline"
            .into(),
        D::HashMismatch { .. } => "the hub served a file that does not match its datanet.json; pull again later or tell the Datanet's maintainers; nothing already pulled was changed"
            .into(),
        D::BadLine { .. } | D::BadRow(_) | D::Empty(_) => {
            "fix or remove the rows the message names; the good rows were kept".into()
        }
        D::Io { .. } => "check that the files can be read and the disk has room; nothing saved before was changed".into(),
        _ => return None,
    })
}

fn datanet_kind(source: &datanet_sync::Error) -> ErrorKind {
    use datanet_sync::Error as D;
    match source {
        D::UnknownDatanet(_) | D::UnknownRow(_) | D::UnknownDataset(_) => ErrorKind::NotFound,
        D::BadFile { .. } | D::BadLine { .. } | D::BadRow(_) | D::Empty(_) | D::Invalid(_) => {
            ErrorKind::BadInput
        }
        D::Hub { .. } | D::HashMismatch { .. } => ErrorKind::Unavailable,
        D::Io { .. } | D::Catalog { .. } => ErrorKind::Environment,
        _ => ErrorKind::Internal,
    }
}

/// What to do about a keystore error, when there is something to say.
fn keystore_hint(source: &::wallet::KeystoreError) -> Option<String> {
    use ::wallet::KeystoreError as K;
    Some(match source {
        K::WrongPassphrase { .. } => "type the passphrase again (it is case-sensitive); \
             a forgotten passphrase cannot be recovered, but the key can be imported again from \
             its private key or mnemonic"
            .into(),
        K::NotFound { .. } => "`modelfactory wallet list` shows the accounts here".into(),
        K::Corrupt { .. } | K::Unsupported { .. } | K::AddressMismatch { .. } => {
            "the file was left as it is; import the key again from its private key or mnemonic, \
             or restore the file from a backup"
                .into()
        }
        K::Passphrase(_) => format!(
            "give the passphrase in {} or on the first line of standard input",
            ::wallet::passphrase::PASSPHRASE_ENV
        ),
        _ => return None,
    })
}

/// What to do about a chain error, when there is something to say.
fn chain_hint(source: &::wallet::chain::ChainError) -> Option<String> {
    use ::wallet::chain::ChainError as C;
    Some(match source {
        C::AnvilMissing { .. } | C::AnvilSpawn { .. } | C::AnvilExited { .. } | C::AnvilTimeout { .. } => {
            "run scripts/setup, which installs the local chain, or choose a remote chain in Settings".into()
        }
        C::Unreachable { .. } | C::BadUrl { .. } => {
            "check the RPC URL in Settings → Chain and that the node is running; nothing was sent".into()
        }
        C::WrongChain { .. } => "correct the chain id or the RPC URL in Settings → Chain".into(),
        C::NoCode { .. } | C::NotOurContract { .. } | C::SplitterRegistryMismatch { .. } => {
            "correct the contract addresses in Settings → Chain".into()
        }
        C::InsufficientFunds { .. } => {
            "send ETH to the account for gas, then try again; nothing was sent".into()
        }
        C::NonceClash { .. } => "wait a moment and try again; nothing was sent twice".into(),
        C::ReceiptTimeout { .. } => {
            "the transaction may still be mined: run the same command again, which checks first".into()
        }
        _ => return None,
    })
}

fn chain_kind(source: &::wallet::chain::ChainError) -> ErrorKind {
    use ::wallet::chain::ChainError as C;
    match source {
        C::Unreachable { .. } | C::ReceiptTimeout { .. } | C::Rpc { .. } => ErrorKind::Unavailable,
        C::AnvilMissing { .. }
        | C::AnvilSpawn { .. }
        | C::AnvilExited { .. }
        | C::AnvilTimeout { .. }
        | C::Io { .. }
        | C::Deployment { .. } => ErrorKind::Environment,
        C::NonceClash { .. } => ErrorKind::Conflict,
        _ => ErrorKind::BadInput,
    }
}

fn keystore_kind(source: &::wallet::KeystoreError) -> ErrorKind {
    use ::wallet::KeystoreError as K;
    match source {
        K::NotFound { .. } => ErrorKind::NotFound,
        K::AlreadyExists { .. } => ErrorKind::Conflict,
        K::WrongPassphrase { .. }
        | K::InvalidPrivateKey(_)
        | K::InvalidMnemonic(_)
        | K::Passphrase(_)
        | K::Corrupt { .. }
        | K::Unsupported { .. }
        | K::AddressMismatch { .. } => ErrorKind::BadInput,
        K::Io { .. } | K::Random(_) => ErrorKind::Environment,
        _ => ErrorKind::Internal,
    }
}

/// What to do when a model cannot be loaded for chat, by what went wrong.
fn load_hint(source: &trainer::Error) -> String {
    match source {
        trainer::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "the model's file is gone: add it again with `modelfactory models add`".into()
        }
        trainer::Error::Io { .. } => "check that the model's files can be read".into(),
        trainer::Error::UnsupportedArchitecture { .. } | trainer::Error::UnsupportedConfig { .. } => {
            "chat runs Llama-family models (Llama, Mistral, Qwen2, Qwen3, SmolLM); pick another model".into()
        }
        trainer::Error::BackendUnavailable { .. } => {
            "choose another backend (Settings, or --backend); `modelfactory doctor` shows which ones work here"
                .into()
        }
        _ => "the file may be incomplete or damaged: download it again; nothing in the workspace was changed"
            .into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    BadInput,
    Conflict,
    Unavailable,
    /// Something about this machine or workspace the user can fix (a read-only folder, a
    /// damaged catalog, a port in use); not a bug.
    Environment,
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error as both transports send it (see docs/api.md).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    pub error: String,
    pub hint: Option<String>,
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> Self {
        // The whole chain, so that "truncated at offset N" under a wrapper is not lost.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        ApiError {
            error: message,
            hint: e.hint(),
        }
    }
}
