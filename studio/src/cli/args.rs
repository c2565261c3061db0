use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ModelFactory: fine-tune small open LLMs on community datasets, on your own machine, with
/// the lineage of every contribution kept.
#[derive(Parser)]
#[command(name = "modelfactory", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The workspace folder (catalog, models, datasets, runs)
    #[arg(long, global = true, env = "MODELFACTORY_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output (-v info, -vv debug); MODELFACTORY_LOG takes a full filter
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check this machine: backends compiled in and usable, the workspace, the models
    Doctor(DoctorArgs),
    /// List, add and remove models
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Background jobs: list them, cancel one
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Chat with a model: one answer with --prompt, else a conversation in the terminal
    Chat(ChatArgs),
    /// Fine-tune a model with LoRA or QLoRA on a dataset file; prints one line per step
    Train(Box<TrainArgs>),
    /// Fine-tuning runs: list, show, merge an adapter into its base, delete
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Datanets: search a hub, show a card, pull, import a file, pack a Datanet repository
    #[command(subcommand)]
    Datanet(DatanetCommand),
    /// Curate a Datanet's rows (list, label, edit, stats, duplicates) and build training datasets
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Serve Datanet repositories over the Hugging Face Hub API, for a team's own network
    #[command(subcommand)]
    Hub(HubCommand),
    /// Serve the studio and its API over HTTP, for a browser
    Serve(ServeArgs),
    /// Benchmarks that print a table, beside a reference engine where one is installed
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Accounts that sign published adapters: create, import, list, sign. Keys and
    /// passphrases are read from MODELFACTORY_PASSPHRASE or standard input, never arguments
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// The chain adapters are registered on: the local chain (anvil) by default, or a network
    /// set with `chain set`
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Publish a finished run's adapter: sign its lineage manifest, upload it to a hub,
    /// register it on chain. Resumes an interrupted publish without repeating a step
    Publish(PublishArgs),
    /// Verify a published adapter (a folder or a hub repository): hashes, signature, the
    /// on-chain record, and contributions against their Datanet's root
    Verify(VerifyArgs),
    /// Rewards for an adapter's contributors: pay into an adapter, see what an account is
    /// owed, withdraw it
    #[command(subcommand)]
    Rewards(RewardsCommand),
    /// Which training rows and contributors shaped a run's adapter (DataInf influence on the
    /// run's evaluation rows), and their shares
    #[command(subcommand)]
    Attribution(AttributionCommand),
}

#[derive(Subcommand)]
pub enum AttributionCommand {
    /// Score every training row by per-example gradients against the run's evaluation rows;
    /// writes runs/<id>/attribution.json
    Compute {
        /// Run id
        run: String,
        /// The compute backend [default: the run's, else the one in Settings]
        #[arg(long, value_name = "NAME")]
        backend: Option<trainer::BackendKind>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Measure how far each method can be trusted: retrain on random halves of the rows
    /// (linear datamodeling score) and without each contributor; DataInf, TracIn and
    /// representation similarity side by side. Minutes on a tiny model; a GPU for the default
    Eval {
        /// Run id
        run: String,
        /// Random halves to retrain on
        #[arg(long, value_name = "N", default_value_t = 20)]
        subsets: usize,
        /// Rows trained per retraining [default: the run's rows × epochs, at least 20]
        #[arg(long, value_name = "N")]
        steps: Option<usize>,
        /// The compute backend [default: the run's, else the one in Settings]
        #[arg(long, value_name = "NAME")]
        backend: Option<trainer::BackendKind>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the last report
    Show {
        /// Run id
        run: String,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ChainCommand {
    /// Start the local chain (or reach the configured one), deploy the contracts if needed,
    /// and keep it running until Ctrl-C, for wallets and tools to use
    Up {
        /// Start, deploy, print the status and exit (the chain stops with the command)
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        json: bool,
    },
    /// Which chain is configured, whether it answers, and where the contracts are
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Use another EVM network: checked (chain id and contracts) before it is saved
    Set {
        /// The node's JSON-RPC URL (http or https)
        #[arg(long)]
        rpc_url: String,
        #[arg(long)]
        chain_id: u64,
        /// The AdapterRegistry's address
        #[arg(long)]
        registry: String,
        /// The RewardSplitter's address
        #[arg(long)]
        splitter: String,
    },
    /// Go back to the local chain
    Local,
}

#[derive(Args)]
pub struct PublishArgs {
    /// The run's id (`modelfactory runs list`)
    pub run: String,
    /// The signing account's address (`modelfactory wallet list`)
    #[arg(long)]
    pub address: String,
    /// The repository on the hub, owner/name
    #[arg(long)]
    pub repo: Option<String>,
    /// The adapter's SPDX licence (the Datanets' when they share one)
    #[arg(long)]
    pub license: Option<String>,
    /// The hub's address (HF_TOKEN writes to it); the workspace's own hub by default
    #[arg(long, env = "MODELFACTORY_PUBLISH_HUB")]
    pub hub: Option<String>,
    /// How rewards are shared: datainf (the run's attribution) or row-share (rows written);
    /// datainf when the run has an attribution, else row-share
    #[arg(long, value_parser = parse_share_method)]
    pub attribution: Option<wallet::manifest::AttributionMethod>,
    /// Print what would be signed and sent, and the gas, then stop
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A published adapter folder, or a repository id (owner/name) on the hub
    pub target: String,
    /// The hub of a repository id; the workspace's own hub by default
    #[arg(long, env = "MODELFACTORY_PUBLISH_HUB")]
    pub hub: Option<String>,
    /// A contribution id to prove part of its Datanet (repeatable)
    #[arg(long = "contribution", value_name = "ID")]
    pub contributions: Vec<String>,
    /// Do not check the on-chain record
    #[arg(long)]
    pub skip_chain: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum RewardsCommand {
    /// Pay into an adapter; the registry's shares split it among its contributors
    Pay {
        /// The adapter's manifest hash, or a published run's id
        adapter: String,
        /// Wei, or ETH with an `eth` suffix (0.5eth)
        #[arg(long)]
        amount: String,
        /// The paying account
        #[arg(long)]
        from: String,
        #[arg(long)]
        json: bool,
    },
    /// An account's balance and what the splitter owes it
    Balance {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw everything the splitter owes an account
    Withdraw {
        address: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum WalletCommand {
    /// Create an account with a new random key
    New {
        /// A name to tell accounts apart
        #[arg(long)]
        name: Option<String>,
    },
    /// Import a private key or a BIP-39 mnemonic, read from standard input (its first line;
    /// hidden when typed at a terminal)
    Import {
        /// The secret is a mnemonic, not a private key
        #[arg(long)]
        mnemonic: bool,
        /// The mnemonic's account index (m/44'/60'/0'/0/INDEX)
        #[arg(long, default_value_t = 0, requires = "mnemonic")]
        index: u32,
        #[arg(long)]
        name: Option<String>,
    },
    /// List the accounts (no passphrase needed)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Sign a personal message (EIP-191) or an EIP-712 typed-data document
    Sign {
        /// The signing account's address
        #[arg(long)]
        address: String,
        /// The message, as text
        #[arg(
            long,
            conflicts_with = "typed_data",
            required_unless_present = "typed_data"
        )]
        message: Option<String>,
        /// A JSON file in the eth_signTypedData_v4 shape
        #[arg(long, value_name = "FILE")]
        typed_data: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt processing and decode speed of the runtime, and of llama.cpp on the same file
    /// and thread count when llama-cpp-python is installed (scripts/reference)
    Generate(GenerateBenchArgs),
    /// LoRA and QLoRA training speed and memory, and PyTorch + PEFT's on the same model and
    /// thread count when they are installed (scripts/reference)
    Train(TrainBenchArgs),
    /// Curation on a generated Datanet (page, filter, sort, search, duplicates) and pull
    /// throughput on loopback beside curl
    Data(DataBenchArgs),
    /// The citation index over a run's training rows: build time, bytes per token, and the
    /// time to cite an answer, on a generated token stream
    Citations(CitationsBenchArgs),
    /// Per-example gradients of the LoRA parameters (what attribution computes): rows per
    /// second on each backend, and the time to attribute a run of 1 000 rows
    Attribution(AttributionBenchArgs),
}

#[derive(Args)]
pub struct AttributionBenchArgs {
    /// A model id from `modelfactory models list`, or the path of a .gguf file or model folder
    #[arg(
        long,
        short,
        value_name = "ID|PATH",
        default_value = "smollm2-135m-instruct"
    )]
    pub model: String,
    /// Tokens per row
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub seq: usize,
    /// LoRA rank, on all seven projections
    #[arg(long, value_name = "R", default_value_t = 16)]
    pub rank: usize,
    /// Rows timed, after one warm-up row
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub rows: usize,
    /// Backends to measure [default: every one compiled in and usable]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub backend: Vec<trainer::BackendKind>,
    /// CPU threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CitationsBenchArgs {
    /// Tokens in the index
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub tokens: usize,
    /// Answers cited
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub answers: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DataBenchArgs {
    /// Rows in the generated shard
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub rows: usize,
    /// Megabytes of the file pulled over loopback
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub pull_mb: usize,
    /// Where the generated files go [default: a temporary folder, removed afterwards]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DatanetCommand {
    /// Datanets pulled or imported into this workspace
    List(JsonArg),
    /// Datanets on the hub (Settings → Datanet hub; the built-in hub by default)
    Search {
        /// Text the Datanet's id contains
        #[arg(default_value = "")]
        query: String,
        #[arg(long)]
        json: bool,
    },
    /// A Datanet's card on the hub: domain, license, rows, shards, contributors
    Show {
        /// owner/name
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Pull a Datanet's shards, verifying each file's sha256; resumes an interrupted pull
    Pull {
        /// owner/name
        id: String,
    },
    /// Make a local Datanet (local/NAME) of a JSONL, CSV or Parquet file
    Import {
        file: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Build a Datanet repository (shards, datanet.json, README.md) from a JSONL, CSV or
    /// Parquet file, ready to upload to a hub or serve with `hub serve`
    Pack(PackArgs),
    /// Check a Datanet repository folder: every shard's size and sha256, every row's id, the
    /// contributions root
    Verify { dir: PathBuf },
    /// Package new rows (a file) and your edits of a Datanet's rows as a contribution for its
    /// maintainers: every row with its contribution id, under your address
    Contribute {
        datanet: String,
        /// Your address (0x…), under which the rows are credited
        #[arg(long)]
        contributor: String,
        /// New rows: a JSONL, CSV or Parquet file
        #[arg(long)]
        file: Option<PathBuf>,
        /// Leave out the edits made to the Datanet's rows in this workspace
        #[arg(long)]
        no_edits: bool,
        /// Where to write the contribution (JSON)
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct PackArgs {
    pub file: PathBuf,
    /// The repository id, owner/name
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub domain: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// SPDX licence identifier
    #[arg(long)]
    pub license: String,
    /// Where the content came from
    #[arg(long, default_value = "")]
    pub source: String,
    /// Contributor of rows that name none
    #[arg(long, default_value = "0x0000000000000000000000000000000000000000")]
    pub contributor: String,
    /// `created_at` of rows that have none (RFC 3339) [default: now]
    #[arg(long)]
    pub created_at: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    pub rows_per_shard: usize,
    /// The repository folder to write (replaced when it exists)
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// A page of a Datanet's rows, as curated (latest edits, labels)
    Rows(RowsArgs),
    /// Accept, reject, rate or tag a row
    Label(LabelArgs),
    /// Replace a row's text with a new version (the original is kept)
    Edit(EditArgs),
    /// Label counts, length statistics with a histogram, personal-data flags, contributors
    Stats {
        datanet: String,
        #[arg(long)]
        json: bool,
    },
    /// Find exact and near-duplicate rows; --reject marks all but one of each group rejected
    Dedupe {
        datanet: String,
        /// Jaccard similarity (word 3-grams) from which rows count as near duplicates
        #[arg(long, default_value_t = 0.8)]
        threshold: f64,
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        json: bool,
    },
    /// Build a named training dataset from Datanets' rows and local files
    Build(BuildArgs),
    /// Datasets built in this workspace
    List(JsonArg),
    /// A page of a dataset's rows with their contribution ids and contributors
    Show {
        name: String,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// Copy a dataset's JSONL (chatml messages with contribution_id and contributor) to a file
    Export { name: String, out: PathBuf },
    /// Delete a dataset and its file
    Delete { name: String },
}

#[derive(Args)]
pub struct RowsArgs {
    pub datanet: String,
    #[arg(long)]
    pub search: Option<String>,
    #[arg(long)]
    pub contributor: Option<String>,
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub min_len: Option<u64>,
    #[arg(long)]
    pub max_len: Option<u64>,
    #[arg(long, value_enum)]
    pub flag: Option<FlagArg>,
    #[arg(long, value_enum, default_value = "position")]
    pub sort: SortArg,
    #[arg(long)]
    pub desc: bool,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Accepted,
    Rejected,
    Unlabeled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlagArg {
    Pii,
    Duplicate,
    Edited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    Position,
    Length,
    Rating,
    Contributor,
    CreatedAt,
}

#[derive(Args)]
pub struct LabelArgs {
    pub datanet: String,
    pub contribution_id: String,
    #[arg(long, conflicts_with_all = ["reject", "clear"])]
    pub accept: bool,
    #[arg(long, conflicts_with = "clear")]
    pub reject: bool,
    /// Clear the accept/reject status
    #[arg(long)]
    pub clear: bool,
    /// 1 to 5; 0 clears the rating
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=5))]
    pub rate: Option<u8>,
    /// Replace the row's tags (repeat for several; --tag '' clears them)
    #[arg(long)]
    pub tag: Vec<String>,
}

#[derive(Args)]
pub struct EditArgs {
    pub datanet: String,
    pub contribution_id: String,
    #[arg(long, conflicts_with = "messages")]
    pub instruction: Option<String>,
    #[arg(long, default_value = "")]
    pub input: String,
    #[arg(long, conflicts_with = "messages")]
    pub output: Option<String>,
    /// The whole chat as JSON: [{"role": "user", "content": "..."}, ...]
    #[arg(long)]
    pub messages: Option<String>,
}

#[derive(Args)]
pub struct BuildArgs {
    pub name: String,
    /// Datanets to take rows from (repeat)
    #[arg(long = "from", value_name = "DATANET")]
    pub from: Vec<String>,
    /// Which labels to take [default: accepted and unlabeled; rejected rows never]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub status: Vec<StatusArg>,
    /// Only rows containing this text
    #[arg(long)]
    pub search: Option<String>,
    /// Only rows with this tag
    #[arg(long)]
    pub tag: Option<String>,
    /// Local JSONL / CSV / Parquet files to add (repeat)
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    pub eval_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum HubCommand {
    /// Serve a folder of Datanet repositories (<owner>/<name>/...) and published adapters
    /// (.models/<owner>/<name>/...) over the subset of the Hugging Face Hub API that hf-hub,
    /// huggingface_hub and the studio use
    Serve {
        folder: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8766)]
        port: u16,
        /// Accept uploads (publishing) from clients that present the write token: the one in
        /// MODELFACTORY_HUB_WRITE_TOKEN, or else a new one, printed once
        #[arg(long)]
        writable: bool,
    },
}

#[derive(Args)]
pub struct TrainBenchArgs {
    /// A model id from `modelfactory models list`, or the path of a .gguf file or model folder
    #[arg(
        long,
        short,
        value_name = "ID|PATH",
        default_value = "smollm2-135m-instruct"
    )]
    pub model: String,
    /// CPU threads, for both engines [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Tokens per training sequence
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub seq: usize,
    /// LoRA rank, on all seven projections
    #[arg(long, value_name = "R", default_value_t = 16)]
    pub rank: usize,
    /// LoRA dropout, for both engines [default: the studio's, as users train]
    #[arg(long, value_name = "P", default_value_t = trainer::lora::LoraConfig::default().dropout)]
    pub dropout: f32,
    /// Timed steps per configuration, after one warm-up step
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub steps: usize,
    /// Backends to measure [default: every one compiled in and usable]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub backend: Vec<trainer::BackendKind>,
    /// Only this method [default: both]
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Precisions of the frozen base's products to measure, each a row
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub precision: Vec<PrecisionArg>,
    /// The Python with torch, transformers and peft [default: $MODELFACTORY_REFERENCE_PYTHON,
    /// else the environment scripts/reference creates]
    #[arg(long, value_name = "PATH")]
    pub reference_python: Option<PathBuf>,
    /// The device's peak rate in TFLOP/s, for the model FLOPs utilisation column (an H100 or
    /// H200: 989 in dense bf16)
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Measure one configuration in this process and print its JSON row (used internally:
    /// each configuration runs in its own process so that peak memory is its own)
    #[arg(long, hide = true)]
    pub single: bool,
}

/// LoRA or QLoRA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Base weights in f32
    Lora,
    /// Base weights in NF4, dequantised on the fly
    Qlora,
}

impl From<MethodArg> for trainer::train::Method {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Lora => trainer::train::Method::Lora,
            MethodArg::Qlora => trainer::train::Method::Qlora,
        }
    }
}

/// The precision of the frozen base's products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// The measured choice for the backend (f32 for now)
    Auto,
    /// f32 throughout
    F32,
    /// The frozen products in bf16; the adapter and optimiser in f32
    Bf16,
}

impl From<PrecisionArg> for trainer::train::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Auto => trainer::train::Precision::Auto,
            PrecisionArg::F32 => trainer::train::Precision::F32,
            PrecisionArg::Bf16 => trainer::train::Precision::Bf16,
        }
    }
}

/// How the learning rate moves after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Linear,
    Cosine,
}

impl From<ScheduleArg> for trainer::train::Schedule {
    fn from(s: ScheduleArg) -> Self {
        match s {
            ScheduleArg::Constant => trainer::train::Schedule::Constant,
            ScheduleArg::Linear => trainer::train::Schedule::Linear,
            ScheduleArg::Cosine => trainer::train::Schedule::Cosine,
        }
    }
}

/// A starting point for the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// Rank 8, one epoch: a first look in minutes
    Quick,
    /// Rank 16, two epochs
    Balanced,
    /// Rank 32, three epochs, a lower learning rate
    Thorough,
}

impl From<PresetArg> for studio::Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Quick => studio::Preset::Quick,
            PresetArg::Balanced => studio::Preset::Balanced,
            PresetArg::Thorough => studio::Preset::Thorough,
        }
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// A run file (TOML): `model`, `data`, `name`, `preset` and a `[config]` table with any
    /// setting; flags given as well override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Resume a cancelled, failed or interrupted run from its last checkpoint
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "data"])]
    pub resume: Option<String>,
    /// The base model's id, from `modelfactory models list`
    #[arg(long, short, value_name = "ID")]
    pub model: Option<String>,
    /// The dataset file: JSONL / JSON (alpaca, sharegpt, chatml messages), CSV, TSV or Parquet
    #[arg(long, short, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// A name for the Runs list [default: the dataset's file name]
    #[arg(long)]
    pub name: Option<String>,
    /// Starting point for every setting not given [default: balanced]
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Print each event as a JSON line instead of key=value lines
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub knobs: TrainKnobs,
}

#[derive(Args, Default)]
#[command(next_help_heading = "Settings (override the preset and the run file)")]
pub struct TrainKnobs {
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// LoRA rank
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// LoRA alpha (the update is scaled by alpha / rank)
    #[arg(long, value_name = "A")]
    pub alpha: Option<f32>,
    /// Dropout on the adapters' input
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,
    /// rsLoRA scaling, alpha / sqrt(rank)
    #[arg(long)]
    pub rslora: bool,
    /// Projections to adapt, comma-separated: q,k,v,o,gate,up,down
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub targets: Vec<String>,
    #[arg(long, value_name = "LR")]
    pub learning_rate: Option<f64>,
    #[arg(long, value_name = "W")]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    #[arg(long, value_name = "N")]
    pub warmup_steps: Option<usize>,
    #[arg(long, value_name = "N")]
    pub epochs: Option<f64>,
    /// A fixed number of optimiser steps (instead of epochs)
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Gradient accumulation: sequences per step = batch size × this
    #[arg(long, value_name = "N")]
    pub grad_accum: Option<usize>,
    /// Clip the global gradient norm (0: off)
    #[arg(long, value_name = "X")]
    pub max_grad_norm: Option<f64>,
    /// Tokens per sequence
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// Concatenate short examples into full-length sequences
    #[arg(long)]
    pub packing: bool,
    /// Share of the examples held out for evaluation
    #[arg(long, value_name = "F")]
    pub eval_fraction: Option<f64>,
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Recompute activations in the backward pass: less memory, more time
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// The compute backend: cpu, wgpu or cuda [default: the one in Settings]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<trainer::BackendKind>,
    /// The precision of the frozen base's products [default: auto, f32 for now]
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Every run, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// A run's settings, curve and the command that repeats it
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Merge a run's adapter into its base model and save the result as a safetensors folder
    Merge {
        id: String,
        /// The folder to write (config.json, model.safetensors, tokenizer files)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Write bf16 weights (half the size) instead of f32
        #[arg(long)]
        bf16: bool,
    },
    /// Delete a run that is not training, with its checkpoints and adapter
    Delete { id: String },
}

#[derive(Args)]
pub struct GenerateBenchArgs {
    /// A model id from `modelfactory models list`, or the path of a .gguf file or model folder
    #[arg(
        long,
        short,
        value_name = "ID|PATH",
        default_value = "smollm2-135m-instruct"
    )]
    pub model: String,
    /// CPU threads, for both engines [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Tokens in the prompt
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens decoded after the prompt, one at a time
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub tokens: usize,
    /// Runs per engine; the best is reported
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: usize,
    /// The backend of our runtime: cpu, wgpu or cuda (llama.cpp is only run beside cpu)
    #[arg(long, value_name = "NAME")]
    pub backend: Option<trainer::BackendKind>,
    /// The Python that has llama_cpp [default: $MODELFACTORY_REFERENCE_PYTHON, else the one
    /// scripts/reference sets up]
    #[arg(long, value_name = "PATH")]
    pub reference_python: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    /// A model id from `modelfactory models list`, or the path of a .gguf file or model folder
    #[arg(long, short, value_name = "ID|PATH")]
    pub model: String,
    /// A LoRA adapter: a PEFT adapter folder, or a run id from `modelfactory runs list`
    #[arg(long, value_name = "DIR|RUN")]
    pub adapter: Option<String>,
    /// How strongly the adapter applies: 1 as trained, 0 not at all
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "adapter")]
    pub adapter_scale: f32,
    /// Ask this one question, stream the answer to stdout and exit ("-" reads it from stdin).
    /// Without it, chat in the terminal: /reset clears the conversation, /exit leaves
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// A system prompt that opens the conversation
    #[arg(long)]
    pub system: Option<String>,
    /// The compute backend: cpu, wgpu or cuda (default: the one in Settings, else the best usable)
    #[arg(long, value_name = "NAME")]
    pub backend: Option<trainer::BackendKind>,
    /// Sampling temperature; 0 always takes the most likely token [default: 0.7]
    #[arg(long, value_name = "T")]
    pub temperature: Option<f32>,
    /// Sample among the K most likely tokens; 0 keeps all [default: 40]
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities add up to P [default: 0.9]
    #[arg(long, value_name = "P")]
    pub top_p: Option<f32>,
    /// Make tokens already in the conversation less likely; 1 turns it off [default: 1.1]
    #[arg(long, value_name = "X")]
    pub repeat_penalty: Option<f32>,
    /// Seed of the sampler, for repeatable answers [default: from the clock]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Stop an answer after this many tokens [default: 512]
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// The models in the workspace, with metadata read from their files
    List {
        /// Print JSON (the same `ModelSummary` list the API returns)
        #[arg(long)]
        json: bool,
    },
    /// Register a .gguf file or a folder with config.json and safetensors, or pull a hub repo
    Add {
        /// A path, or a hub repo id such as HuggingFaceTB/SmolLM2-135M-Instruct
        source: String,
        /// The name to show instead of the one in the file
        #[arg(long)]
        name: Option<String>,
        /// The hub repository a local file came from (owner/name), when the file does not say:
        /// adapters trained on it name it as their base
        #[arg(long, value_name = "OWNER/NAME")]
        hub_id: Option<String>,
        /// Print JSON: progress events as JSON lines on stderr, the model on stdout
        #[arg(long)]
        json: bool,
    },
    /// Forget a model (its files are left in place)
    Remove {
        /// The model's id, from `modelfactory models list`
        id: String,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Every job, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ask a job to stop
    Cancel { id: String },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback requires a token
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Require this token on every API call (generated when listening beyond loopback)
    #[arg(long, env = "MODELFACTORY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The built front end (default: found next to the binary or in the source tree)
    #[arg(long, value_name = "DIR")]
    pub ui_dir: Option<PathBuf>,
    /// Open the studio in the default browser once listening
    #[arg(long)]
    pub open: bool,
}

fn parse_share_method(text: &str) -> Result<wallet::manifest::AttributionMethod, String> {
    use wallet::manifest::AttributionMethod;
    [AttributionMethod::DataInf, AttributionMethod::RowShare]
        .into_iter()
        .find(|m| m.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not datainf or row-share"))
}
