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
    /// LoRA and QLoRA training speed and memory, and PyTorch + PEFT's on the same model and
    /// thread count when they are installed (scripts/reference)
    Train(TrainBenchArgs),
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
    /// Timed steps per configuration, after one warm-up step
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub steps: usize,
    /// Backends to measure [default: every one compiled in and usable]
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub backend: Vec<trainer::BackendKind>,
    /// Only this method [default: both]
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// The Python with torch, transformers and peft [default: $MODELFACTORY_REFERENCE_PYTHON,
    /// else the environment scripts/reference creates]
    #[arg(long, value_name = "PATH")]
    pub reference_python: Option<PathBuf>,
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
