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
    /// Serve the studio and its API over HTTP, for a browser
    Serve(ServeArgs),
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
