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
    /// Serve the studio and its API over HTTP, for a browser
    Serve(ServeArgs),
    /// Benchmarks that print a table, beside a reference engine where one is installed
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt processing and decode speed of the runtime, and of llama.cpp on the same file
    /// and thread count when llama-cpp-python is installed (scripts/reference)
    Generate(GenerateBenchArgs),
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
    /// A LoRA adapter folder to apply to the model (not supported yet)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
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
