//! Background jobs (pull, train, publish, ...) with progress events, cancellation, and state
//! that survives the process.
//!
//! Every job and every event is written to the catalog, so a front end that reconnects can
//! replay a whole run. A running job holds an OS file lock in `jobs/<id>.lock`; when a studio
//! opens and finds a job marked running whose lock nobody holds, the process that ran it died,
//! and the job is marked interrupted instead of staying "running" forever.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::Db;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            // Anything unknown was written by something that is no longer running it.
            _ => JobState::Interrupted,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

pub type Figures = BTreeMap<String, f64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub state: JobState,
    pub fraction: f64,
    pub message: String,
    pub figures: Figures,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    pub seq: i64,
    pub at: String,
    pub state: JobState,
    pub fraction: f64,
    pub message: String,
    pub figures: Figures,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Progress events closer together than this are folded into the next one (a download
/// reports every few kilobytes; the catalog does not need each).
const MIN_EVENT_GAP: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Jobs {
    db: Db,
    locks_dir: PathBuf,
    events: broadcast::Sender<JobEvent>,
    cancel_flags: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

impl Jobs {
    /// Opens the job table and marks the jobs of dead processes as interrupted.
    pub fn open(db: Db, locks_dir: PathBuf) -> Result<Self> {
        let (events, _) = broadcast::channel(1024);
        let jobs = Self {
            db,
            locks_dir,
            events,
            cancel_flags: Arc::default(),
        };
        let n = jobs.recover()?;
        if n > 0 {
            tracing::warn!(
                "{n} job(s) were running when their process stopped; marked interrupted"
            );
        }
        Ok(jobs)
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.locks_dir.join(format!("{id}.lock"))
    }

    fn recover(&self) -> Result<usize> {
        let unfinished: Vec<String> = {
            let conn = self.db.lock();
            let mut stmt =
                conn.prepare("SELECT id FROM jobs WHERE state IN ('queued', 'running')")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut interrupted = 0;
        for id in unfinished {
            let path = self.lock_path(&id);
            let orphaned = match File::options().write(true).open(&path) {
                Ok(file) => file.try_lock().is_ok(),
                Err(_) => true,
            };
            if orphaned {
                let info = self.get(&id)?;
                self.record(
                    &id,
                    JobState::Interrupted,
                    info.fraction,
                    "interrupted: the process running this job stopped",
                    &info.figures,
                    None,
                )?;
                let _ = std::fs::remove_file(&path);
                interrupted += 1;
            }
        }
        Ok(interrupted)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Starts `work` on its own thread and returns at once.
    pub fn spawn<F>(&self, kind: &str, title: &str, work: F) -> Result<JobInfo>
    where
        F: FnOnce(&JobContext) -> Result<()> + Send + 'static,
    {
        let ctx = self.create(kind, title)?;
        let info = self.get(&ctx.id)?;
        std::thread::Builder::new()
            .name(format!("job-{kind}"))
            .spawn(move || ctx.run(work))
            .map_err(|source| Error::Io {
                what: "starting a job thread".into(),
                source,
            })?;
        Ok(info)
    }

    /// Runs `work` on the calling thread (the CLI), recorded like any other job.
    pub fn run<F>(&self, kind: &str, title: &str, work: F) -> Result<JobInfo>
    where
        F: FnOnce(&JobContext) -> Result<()>,
    {
        let ctx = self.create(kind, title)?;
        let id = ctx.id.clone();
        ctx.run(work);
        self.get(&id)
    }

    fn create(&self, kind: &str, title: &str) -> Result<JobContext> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.lock_path(&id);
        let lock = File::create(&path).map_err(|source| Error::Io {
            what: format!("creating {}", path.display()),
            source,
        })?;
        lock.try_lock().map_err(|e| Error::Io {
            what: format!("locking {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        let at = now();
        self.db.lock().execute(
            "INSERT INTO jobs (id, kind, title, state, created_at, updated_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
            params![id, kind, title, at],
        )?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.flags().insert(id.clone(), cancel.clone());
        self.record(&id, JobState::Queued, 0.0, "queued", &Figures::new(), None)?;
        Ok(JobContext {
            id,
            jobs: self.clone(),
            cancel,
            lock: Arc::new(Mutex::new(Some(lock))),
            last: Arc::default(),
        })
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.cancel_flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks a job to stop. A job in this process sees it at once; one in another process at
    /// its next progress report.
    pub fn cancel(&self, id: &str) -> Result<JobInfo> {
        let info = self.get(id)?;
        if info.state.is_finished() {
            return Ok(info);
        }
        if let Some(flag) = self.flags().get(id) {
            flag.store(true, Ordering::SeqCst);
        }
        self.db.lock().execute(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
            params![id],
        )?;
        self.get(id)
    }

    pub fn get(&self, id: &str) -> Result<JobInfo> {
        self.db
            .lock()
            .query_row(
                "SELECT id, kind, title, state, fraction, message, figures_json, error, created_at, updated_at FROM jobs WHERE id = ?1",
                params![id],
                row_to_info,
            )
            .optional()?
            .ok_or_else(|| Error::JobNotFound(id.to_string()))
    }

    /// Every job, newest first.
    pub fn list(&self) -> Result<Vec<JobInfo>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare(
            "SELECT id, kind, title, state, fraction, message, figures_json, error, created_at, updated_at FROM jobs ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = stmt.query_map([], row_to_info)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every stored event of a job, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<JobEvent>> {
        self.get(id)?;
        let conn = self.db.lock();
        let mut stmt = conn.prepare(
            "SELECT job_id, seq, at, state, fraction, message, figures_json FROM job_events WHERE job_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok(JobEvent {
                job_id: r.get(0)?,
                seq: r.get(1)?,
                at: r.get(2)?,
                state: JobState::parse(&r.get::<_, String>(3)?),
                fraction: r.get(4)?,
                message: r.get(5)?,
                figures: parse_figures(&r.get::<_, String>(6)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn cancel_requested_in_db(&self, id: &str) -> bool {
        self.db
            .lock()
            .query_row(
                "SELECT cancel_requested FROM jobs WHERE id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v != 0)
            .unwrap_or(false)
    }

    /// Stores the job's new state and one event, then tells the subscribers.
    fn record(
        &self,
        id: &str,
        state: JobState,
        fraction: f64,
        message: &str,
        figures: &Figures,
        error: Option<&str>,
    ) -> Result<JobEvent> {
        let at = now();
        let figures_json = serde_json::to_string(figures).unwrap_or_else(|_| "{}".into());
        let fraction = fraction.clamp(0.0, 1.0);
        let event = {
            let mut conn = self.db.lock();
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE jobs SET state = ?2, fraction = ?3, message = ?4, figures_json = ?5, error = COALESCE(?6, error), updated_at = ?7 WHERE id = ?1",
                params![id, state.as_str(), fraction, message, figures_json, error, at],
            )?;
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO job_events (job_id, seq, at, state, fraction, message, figures_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, seq, at, state.as_str(), fraction, message, figures_json],
            )?;
            tx.commit()?;
            JobEvent {
                job_id: id.to_string(),
                seq,
                at,
                state,
                fraction,
                message: message.to_string(),
                figures: figures.clone(),
            }
        };
        // No subscriber is fine: the event is stored.
        let _ = self.events.send(event.clone());
        Ok(event)
    }
}

fn parse_figures(s: &str) -> Figures {
    serde_json::from_str(s).unwrap_or_default()
}

fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get(0)?,
        kind: r.get(1)?,
        title: r.get(2)?,
        state: JobState::parse(&r.get::<_, String>(3)?),
        fraction: r.get(4)?,
        message: r.get(5)?,
        figures: parse_figures(&r.get::<_, String>(6)?),
        error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// What a running job sees: report progress, and find out whether it should stop.
/// Clones share the job (a download callback may hold one).
#[derive(Clone)]
pub struct JobContext {
    id: String,
    jobs: Jobs,
    cancel: Arc<AtomicBool>,
    lock: Arc<Mutex<Option<File>>>,
    last: Arc<Mutex<Option<(Instant, String)>>>,
}

impl JobContext {
    /// True once anyone asked the job to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The flag that says the job should stop, for work that polls an `AtomicBool`.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// `Err(Error::Cancelled)` once the job should stop; use with `?` between steps.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports progress. `fraction` is 0..1 of the whole job; `figures` are named numbers
    /// (tokens/s, bytes/s, loss) that front ends chart.
    pub fn progress(&self, fraction: f64, message: &str, figures: &[(&str, f64)]) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = match &*last {
            None => true,
            Some((at, previous)) => {
                previous != message || at.elapsed() >= MIN_EVENT_GAP || fraction >= 1.0
            }
        };
        if !due {
            return;
        }
        *last = Some((Instant::now(), message.to_string()));
        drop(last);
        if self.jobs.cancel_requested_in_db(&self.id) {
            self.cancel.store(true, Ordering::SeqCst);
        }
        let figures: Figures = figures.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        if let Err(e) = self.jobs.record(
            &self.id,
            JobState::Running,
            fraction,
            message,
            &figures,
            None,
        ) {
            tracing::warn!(job = %self.id, "could not store a progress event: {e}");
        }
    }

    fn run<F>(self, work: F)
    where
        F: FnOnce(&JobContext) -> Result<()>,
    {
        let _ = self.jobs.record(
            &self.id,
            JobState::Running,
            0.0,
            "started",
            &Figures::new(),
            None,
        );
        // A panic in a job is a bug, but it must still end the job, not leave it running.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&self)));
        let last = self.jobs.get(&self.id).ok();
        let (fraction, figures) = last
            .map(|i| (i.fraction, i.figures))
            .unwrap_or((0.0, Figures::new()));
        let (state, fraction, message, error) = match outcome {
            Ok(Ok(())) if self.is_cancelled() => {
                (JobState::Cancelled, fraction, "cancelled".to_string(), None)
            }
            Ok(Ok(())) => (JobState::Succeeded, 1.0, "done".to_string(), None),
            Ok(Err(Error::Cancelled)) => {
                (JobState::Cancelled, fraction, "cancelled".to_string(), None)
            }
            Ok(Err(e)) => {
                let api = crate::error::ApiError::from(&e);
                (
                    JobState::Failed,
                    fraction,
                    "failed".to_string(),
                    Some(api.error),
                )
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                (
                    JobState::Failed,
                    fraction,
                    "failed".to_string(),
                    Some(format!("internal error: {what}")),
                )
            }
        };
        if let Err(e) = self.jobs.record(
            &self.id,
            state,
            fraction,
            &message,
            &figures,
            error.as_deref(),
        ) {
            tracing::error!(job = %self.id, "could not store the end of the job: {e}");
        }
        self.jobs.flags().remove(&self.id);
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        let _ = std::fs::remove_file(self.jobs.lock_path(&self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn open(dir: &std::path::Path) -> Jobs {
        let db = Db::open(&dir.join("db.sqlite3")).expect("db");
        std::fs::create_dir_all(dir.join("jobs")).expect("jobs dir");
        Jobs::open(db, dir.join("jobs")).expect("jobs")
    }

    fn wait_finished(jobs: &Jobs, id: &str) -> JobInfo {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = jobs.get(id).expect("get");
            if info.state.is_finished() {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not finish: {info:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_job_reports_progress_and_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = open(dir.path());
        let mut rx = jobs.subscribe();
        let info = jobs
            .spawn("test", "count", |ctx| {
                for i in 1..=3 {
                    ctx.progress(
                        i as f64 / 3.0,
                        &format!("step {i}"),
                        &[("items_per_s", 10.0 * i as f64)],
                    );
                }
                Ok(())
            })
            .expect("spawn");
        let done = wait_finished(&jobs, &info.id);
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.fraction, 1.0);
        let events = jobs.events(&info.id).expect("events");
        let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            ["queued", "started", "step 1", "step 2", "step 3", "done"]
        );
        assert_eq!(events[4].figures.get("items_per_s"), Some(&30.0));
        let seqs: Vec<_> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
        // Subscribers saw the same events, in order.
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            seen.push(e);
        }
        assert_eq!(seen, events);
    }

    #[test]
    fn a_cancelled_job_stops_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = open(dir.path());
        let (started_tx, started_rx) = mpsc::channel();
        let info = jobs
            .spawn("test", "forever", move |ctx| {
                let _ = started_tx.send(());
                loop {
                    ctx.check_cancelled()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .expect("spawn");
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("started");
        jobs.cancel(&info.id).expect("cancel");
        assert_eq!(wait_finished(&jobs, &info.id).state, JobState::Cancelled);
    }

    #[test]
    fn errors_and_panics_fail_the_job_with_a_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = open(dir.path());
        let failed = jobs
            .run("test", "fails", |_| {
                Err(Error::ModelNotFound("nope".into()))
            })
            .expect("run");
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.error.as_deref().unwrap_or("").contains("nope"));
        let panicked = jobs.run("test", "panics", |_| panic!("boom")).expect("run");
        assert_eq!(panicked.state, JobState::Failed);
        assert!(panicked.error.as_deref().unwrap_or("").contains("boom"));
    }

    #[test]
    fn cancel_reaches_a_job_through_the_catalog() {
        // Another process cancels by writing the flag; the job sees it at its next report.
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = open(dir.path());
        let other = Jobs {
            cancel_flags: Arc::default(),
            ..jobs.clone()
        };
        let (started_tx, started_rx) = mpsc::channel();
        let info = jobs
            .spawn("test", "polls", move |ctx| {
                let _ = started_tx.send(());
                for i in 0.. {
                    ctx.progress(0.0, &format!("tick {i}"), &[]);
                    ctx.check_cancelled()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })
            .expect("spawn");
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("started");
        other.cancel(&info.id).expect("cancel from elsewhere");
        assert_eq!(wait_finished(&jobs, &info.id).state, JobState::Cancelled);
    }

    #[test]
    fn a_job_whose_process_died_is_interrupted_but_a_live_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = open(dir.path());
        let live = jobs.create("test", "live").expect("live job");
        let dead = jobs.create("test", "dead").expect("dead job");
        let dead_id = dead.id.clone();
        // Dropping the context closes its lock file, as the OS does when a process dies.
        drop(dead);
        let reopened = open(dir.path());
        assert_eq!(
            reopened.get(&dead_id).expect("dead").state,
            JobState::Interrupted
        );
        assert_eq!(
            reopened.get(&live.id).expect("live").state,
            JobState::Queued
        );
        let last = reopened.events(&dead_id).expect("events");
        assert!(
            last.last()
                .is_some_and(|e| e.state == JobState::Interrupted)
        );
    }
}
