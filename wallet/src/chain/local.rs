//! The local chain: anvil, from the npm package `@foundry-rs/anvil`, on 127.0.0.1 with chain id
//! 31337, its state kept in a folder so registrations survive a restart.
//!
//! anvil is started with `--state <folder>/anvil-state.json` (load it if it exists, write it on
//! exit) and `--state-interval` (write it every few seconds as well, in case the process is
//! killed), on a port the system picks (`--port 0`; the port is read from anvil's
//! `Listening on` line). Stopping sends SIGTERM, on which anvil writes its state, and kills it
//! only if it has not exited after a while.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::client::ChainClient;
use super::error::ChainError;
use super::{LOCAL_CHAIN_ID, Result};

/// An anvil binary to use instead of the repository's.
pub const ANVIL_ENV: &str = "MODELFACTORY_ANVIL";
/// anvil's state in the state folder.
pub const STATE_FILE: &str = "anvil-state.json";
/// anvil's standard output and error, this run; the previous run's is `anvil.previous.log`.
pub const LOG_FILE: &str = "anvil.log";
const PREVIOUS_LOG_FILE: &str = "anvil.previous.log";

#[derive(Debug, Clone)]
pub struct LocalChainOptions {
    /// Holds the chain's state, its log and the deployment record. Created if missing.
    pub state_dir: PathBuf,
    /// The anvil binary; otherwise `MODELFACTORY_ANVIL`, otherwise the npm package under
    /// `repo_root`.
    pub anvil: Option<PathBuf>,
    /// The repository (or installed assets) root that holds `wallet/contracts/node_modules`.
    pub repo_root: Option<PathBuf>,
    pub start_timeout: Duration,
    /// How often anvil writes its state besides on exit.
    pub state_interval: Duration,
}

impl LocalChainOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            anvil: None,
            repo_root: None,
            start_timeout: Duration::from_secs(30),
            state_interval: Duration::from_secs(5),
        }
    }

    pub fn anvil(mut self, path: impl Into<PathBuf>) -> Self {
        self.anvil = Some(path.into());
        self
    }

    pub fn repo_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.repo_root = Some(root.into());
        self
    }
}

/// npm's name for this platform's anvil package (`@foundry-rs/anvil-<platform>`).
fn npm_platform() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-amd64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        ("macos", "x86_64") => Some("darwin-amd64"),
        ("windows", "x86_64") => Some("win32-amd64"),
        _ => None,
    }
}

/// Where the npm package puts this platform's anvil under `repo_root`.
pub fn repo_anvil(repo_root: &Path) -> Option<PathBuf> {
    let platform = npm_platform()?;
    let exe = if cfg!(windows) { "anvil.exe" } else { "anvil" };
    Some(
        repo_root
            .join("wallet/contracts/node_modules/@foundry-rs")
            .join(format!("anvil-{platform}"))
            .join("bin")
            .join(exe),
    )
}

/// The anvil binary: `explicit`, else `MODELFACTORY_ANVIL`, else the npm package under
/// `repo_root`. A path that is given but missing is an error, not a reason to look elsewhere.
pub fn find_anvil(explicit: Option<&Path>, repo_root: Option<&Path>) -> Result<PathBuf> {
    let given = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(ANVIL_ENV).map(PathBuf::from));
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ChainError::AnvilMissing {
                looked: path.display().to_string(),
            })
        };
    }
    match repo_root.and_then(repo_anvil) {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(ChainError::AnvilMissing {
            looked: path.display().to_string(),
        }),
        None => Err(ChainError::AnvilMissing {
            looked: match repo_root {
                Some(_) => format!(
                    "a package for {} {} (npm has anvil for Linux and macOS on x86-64 and arm64, \
                     and Windows on x86-64)",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ),
                None => format!("{ANVIL_ENV} (unset) and no repository root given"),
            },
        }),
    }
}

/// A running anvil. Dropping it stops it (SIGTERM, so it writes its state, then kill).
#[derive(Debug)]
pub struct LocalChain {
    child: Option<Child>,
    client: ChainClient,
    state_dir: PathBuf,
    started_in: Duration,
}

impl LocalChain {
    pub async fn start(options: &LocalChainOptions) -> Result<Self> {
        let started = Instant::now();
        let anvil = find_anvil(options.anvil.as_deref(), options.repo_root.as_deref())?;
        let dir = &options.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| ChainError::Io {
            what: "cannot create the local chain's folder",
            path: dir.clone(),
            source,
        })?;
        let log_path = dir.join(LOG_FILE);
        if log_path.exists() {
            // Keep one earlier log: the reason a previous run ended is often in it.
            let _ = std::fs::rename(&log_path, dir.join(PREVIOUS_LOG_FILE));
        }
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| ChainError::Io { what, path, source }
        };
        let log = File::create(&log_path).map_err(io("cannot create", &log_path))?;
        let log_err = log.try_clone().map_err(io("cannot open", &log_path))?;
        let state_path = dir.join(STATE_FILE);
        let interval = options.state_interval.as_secs().max(1);
        let child = Command::new(&anvil)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg("0")
            .arg("--chain-id")
            .arg(LOCAL_CHAIN_ID.to_string())
            .arg("--state")
            .arg(&state_path)
            .arg("--state-interval")
            .arg(interval.to_string())
            .arg("--color")
            .arg("never")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| ChainError::AnvilSpawn {
                path: anvil.clone(),
                source,
            })?;
        // Stops the child on every early return below.
        let mut guard = ChildGuard(Some(child));
        let deadline = started + options.start_timeout;
        let timeout = || ChainError::AnvilTimeout {
            seconds: options.start_timeout.as_secs(),
            log: log_path.clone(),
            tail: log_tail(&log_path),
        };

        let address = loop {
            if let Some(status) = guard.try_wait() {
                return Err(ChainError::AnvilExited {
                    status,
                    log: log_path.clone(),
                    tail: log_tail(&log_path),
                });
            }
            if let Some(address) = listening_address(&log_path) {
                break address;
            }
            if Instant::now() >= deadline {
                return Err(timeout());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let url = format!("http://{address}");
        let client = loop {
            match ChainClient::connect(&url, Some(LOCAL_CHAIN_ID)).await {
                Ok(client) => break client,
                Err(ChainError::Unreachable { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(ChainError::Unreachable { .. }) => return Err(timeout()),
                Err(e) => return Err(e),
            }
        };
        let started_in = started.elapsed();
        info!(
            %url,
            state = %state_path.display(),
            ms = started_in.as_millis() as u64,
            "local chain started"
        );
        Ok(Self {
            child: guard.0.take(),
            client,
            state_dir: dir.clone(),
            started_in,
        })
    }

    /// A client for this chain (chain id checked).
    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE)
    }

    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join(LOG_FILE)
    }

    /// anvil's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// From spawning anvil to its first answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Stops anvil: SIGTERM (it writes its state and exits), then kill after 10 s. Idempotent.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

impl Drop for LocalChain {
    fn drop(&mut self) {
        self.stop();
    }
}

struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// The exit status if the child has exited.
    fn try_wait(&mut self) -> Option<String> {
        let child = self.0.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot be waited for: {e}")),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            stop_child(child);
        }
    }
}

fn stop_child(mut child: Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process};
        if kill_process(Pid::from_child(&child), Signal::TERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            warn!("anvil did not exit within 10 s of SIGTERM; killing it");
        }
    }
    // Windows has no SIGTERM: the state on disk is the last periodic write.
    if let Err(e) = child.kill() {
        warn!("cannot kill anvil: {e}");
    }
    let _ = child.wait();
}

/// The address in anvil's `Listening on 127.0.0.1:<port>` line.
fn listening_address(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Listening on "))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The last lines of the log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() {
        "(the log is empty)".into()
    } else {
        tail
    }
}
