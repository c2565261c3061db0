//! Datanets in the studio: searching a hub and pulling from it (the configured one, or the hub
//! built into the studio that serves the demo Datanet from `assets/hub`), the curation verbs on
//! pulled or imported Datanets, and training datasets built from their rows. The work itself is
//! `datanet_sync`'s; this module joins it to the workspace, the settings and the job runner.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datanet_sync::catalog::{
    Catalog, DatanetRecord, DatasetSourceSummary, DatasetSummary, LabelStatus, Origin,
};
use datanet_sync::contribution::{Author, Contribution};
use datanet_sync::curate::{self, LengthStats};
use datanet_sync::format::Manifest;
use datanet_sync::hub::client::{DatanetListing, HubClient, PullProgress};
use datanet_sync::import::{self, ImportDefaults};
use datanet_sync::pack::{self, PackOptions};
use datanet_sync::view::{CurationView, StatusFilter};
use serde::{Deserialize, Serialize};

use crate::Studio;
use crate::error::{Error, Result};
use crate::jobs::{JobContext, JobInfo};

/// The Datanet types front ends exchange with the studio.
pub use datanet_sync::catalog::{DatasetSummary as Dataset, LabelUpdate};
pub use datanet_sync::format::Content;
pub use datanet_sync::view::{CuratedRow, RowPage, RowQuery};

/// The contributor named on rows a user imports from a file of their own, until the wallet
/// signs them with the user's address.
pub const LOCAL_CONTRIBUTOR: &str = "0x0000000000000000000000000000000000000000";

/// A hub listing, and whether it is already here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubDatanet {
    #[serde(flatten)]
    pub listing: DatanetListing,
    pub pulled: bool,
}

/// A Datanet's card on the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubCard {
    pub id: String,
    pub revision: String,
    pub manifest: Manifest,
    pub readme: Option<String>,
    pub pulled: bool,
}

/// A Datanet on this machine, as the Datanets screen lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalDatanet {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub license: String,
    pub revision: String,
    pub rows: u64,
    pub contributors: u64,
    pub pulled_at: String,
    pub origin: Origin,
}

impl From<&DatanetRecord> for LocalDatanet {
    fn from(r: &DatanetRecord) -> Self {
        LocalDatanet {
            id: r.id.clone(),
            name: r.manifest.name.clone(),
            domain: r.manifest.domain.clone(),
            license: r.manifest.license.clone(),
            revision: r.revision.clone(),
            rows: r.manifest.rows(),
            contributors: r.manifest.contributors.len() as u64,
            pulled_at: r.pulled_at.clone(),
            origin: r.origin,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatanetStats {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub unlabeled: u64,
    pub edited: u64,
    pub pii_rows: u64,
    pub duplicate_rows: u64,
    pub length: LengthStats,
    pub contributors: Vec<datanet_sync::format::ContributorEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateScan {
    pub threshold: f64,
    /// Groups of contribution ids; the first of each is the one kept.
    pub groups: Vec<Vec<String>>,
    pub exact_groups: u64,
    pub near_groups: u64,
    /// Rows marked rejected by this scan.
    pub rejected: u64,
}

/// Rows a dataset takes from one Datanet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSource {
    pub datanet: String,
    /// Which labels to take; rejected rows are never taken.
    pub statuses: Vec<StatusFilter>,
    #[serde(default)]
    pub search: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDataset {
    pub name: String,
    #[serde(default)]
    pub sources: Vec<DatasetSource>,
    /// Local JSONL / CSV / Parquet files whose rows join the dataset.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

fn default_eval_fraction() -> f64 {
    0.1
}

/// One line of a dataset's JSONL: the chat the trainer reads, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub contribution_id: String,
    pub contributor: String,
    /// The Datanet the row came from; `None` for a row of a local file.
    pub datanet: Option<String>,
    pub split: Split,
    pub content: Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Eval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPage {
    pub total: u64,
    pub offset: u64,
    pub rows: Vec<DatasetRow>,
}

/// The folder of shipped assets (`assets/` in the source tree): beside the installed binary,
/// through `MODELFACTORY_ASSETS`, or in the source tree.
pub fn assets_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(std::env::var_os("MODELFACTORY_ASSETS").map(PathBuf::from));
    if let Ok(exe) = std::env::current_exe()
        && let Some(bin) = exe.parent()
    {
        candidates.push(bin.join("../share/modelfactory/assets"));
        candidates.push(bin.join("assets"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets"));
    candidates.into_iter().find(|d| d.is_dir())
}

/// The hub built into the studio: `assets/hub` served on a loopback port by a thread of its
/// own, started on first use and kept for the life of the process.
fn embedded_hub() -> Result<String> {
    static ENDPOINT: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            let root = assets_dir()
                .map(|a| a.join("hub"))
                .filter(|h| h.is_dir())
                .ok_or("the studio's assets (assets/hub) were not found; set MODELFACTORY_ASSETS to the assets folder")?;
            spawn_hub(datanet_sync::hub::server::HubServer::new(root), "built-in hub")
        })
        .clone()
        .map_err(|message| Error::InvalidInput {
            field: "datanet_hub".into(),
            message,
        })
}

/// Serves `server` on a loopback port from a thread of its own for the life of the process,
/// and returns its address.
pub(crate) fn spawn_hub(
    server: datanet_sync::hub::server::HubServer,
    what: &str,
) -> std::result::Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot open a loopback port for the {what}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("the {what}'s port: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("the {what}'s port: {e}"))?;
    let name = what.to_string();
    std::thread::Builder::new()
        .name(what.replace(' ', "-"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("the {name} cannot start: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = server.serve(listener).await {
                            tracing::error!("the {name} stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("the {name} cannot listen: {e}"),
                }
            });
        })
        .map_err(|e| format!("cannot start the {what}: {e}"))?;
    Ok(format!("http://{addr}"))
}

/// Runs a hub call on a runtime of its own: the studio's methods are synchronous, and are
/// called from worker threads, never from inside an async task.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "starting the hub client".into(),
            source,
        })?;
    Ok(runtime.block_on(future))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            field: "name".into(),
            message: format!(
                "{name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        })
    }
}

impl Studio {
    fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::open(&self.workspace().datanet_catalog_path())?)
    }

    /// The Datanet hub in force: the setting (or its environment variable), else the built-in one.
    pub fn datanet_hub(&self) -> Result<String> {
        match self.settings()?.effective_datanet_hub() {
            Some(endpoint) => Ok(endpoint),
            None => embedded_hub(),
        }
    }

    fn hub_client(&self) -> Result<HubClient> {
        Ok(HubClient::new(
            &self.datanet_hub()?,
            std::env::var("HF_TOKEN").ok(),
        ))
    }

    fn pulled_ids(&self) -> Result<HashSet<String>> {
        Ok(self
            .catalog()?
            .datanets()?
            .into_iter()
            .map(|d| d.id)
            .collect())
    }

    /// Datanets on the hub whose id contains `search` (all when empty).
    pub fn search_hub(&self, search: &str) -> Result<Vec<HubDatanet>> {
        let client = self.hub_client()?;
        let listings = block_on(client.search(search))??;
        let pulled = self.pulled_ids()?;
        Ok(listings
            .into_iter()
            .map(|listing| HubDatanet {
                pulled: pulled.contains(&listing.id),
                listing,
            })
            .collect())
    }

    pub fn hub_card(&self, id: &str) -> Result<HubCard> {
        let client = self.hub_client()?;
        let card = block_on(client.card(id, None))??;
        Ok(HubCard {
            pulled: self.pulled_ids()?.contains(&card.id),
            id: card.id,
            revision: card.revision,
            manifest: card.manifest,
            readme: card.readme,
        })
    }

    /// Starts pulling a Datanet in the background (`kind: "pull-datanet"`).
    pub fn pull_datanet(&self, id: &str) -> Result<JobInfo> {
        if !crate::models::looks_like_repo_id(id) {
            return Err(Error::InvalidInput {
                field: "id".into(),
                message: format!("{id:?} is not a Datanet id (owner/name)"),
            });
        }
        let studio = self.clone();
        let id = id.to_string();
        self.jobs()
            .spawn("pull-datanet", &format!("Pull {id}"), move |ctx| {
                studio.pull_datanet_now(ctx, &id).map(|_| ())
            })
    }

    /// Pulls a Datanet (verifying every shard) and records it in the catalog; shards already
    /// here and verified are not fetched again.
    pub fn pull_datanet_now(&self, ctx: &JobContext, id: &str) -> Result<LocalDatanet> {
        let endpoint = self.datanet_hub()?;
        let client = HubClient::new(&endpoint, std::env::var("HF_TOKEN").ok());
        let dest = self.workspace().datanets_dir();
        let cancel = ctx.cancel_flag();
        ctx.progress(0.0, &format!("reading {id} from {endpoint}"), &[]);
        let report = |p: PullProgress| {
            let fraction = if p.bytes_total == 0 {
                0.0
            } else {
                p.bytes_done as f64 / p.bytes_total as f64
            };
            ctx.progress(
                fraction.min(1.0),
                &format!("downloading {}", p.file),
                &[
                    ("bytes", p.bytes_done as f64),
                    ("bytes_total", p.bytes_total as f64),
                ],
            );
        };
        let pulled = block_on(client.pull(id, None, &dest, &report, &cancel))??;
        if pulled.manifest.rows() == 0 {
            // Nothing to curate or train on; keep the catalog as it was.
            return Err(datanet_sync::Error::Empty(id.to_string()).into());
        }
        let record = self.catalog()?.record_datanet(
            &pulled.manifest,
            &pulled.revision,
            Origin::Hub,
            &pulled.dir,
            Some(&endpoint),
        )?;
        ctx.progress(1.0, &format!("pulled {} rows", record.manifest.rows()), &[]);
        Ok(LocalDatanet::from(&record))
    }

    pub fn list_datanets(&self) -> Result<Vec<LocalDatanet>> {
        Ok(self
            .catalog()?
            .datanets()?
            .iter()
            .map(LocalDatanet::from)
            .collect())
    }

    /// A local JSONL / CSV / Parquet file becomes the Datanet `local/<name>`, packed into the
    /// workspace. Bad rows are skipped (and logged with their line); good ones are kept.
    pub fn import_datanet(&self, path: &str, name: &str) -> Result<LocalDatanet> {
        check_name(name)?;
        let file = Path::new(path);
        let imported = import::import_file(
            file,
            &ImportDefaults {
                contributor: LOCAL_CONTRIBUTOR.into(),
                license: "unknown".into(),
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
        )?;
        for skipped in &imported.skipped {
            tracing::warn!(
                "{}, line {}: skipped: {}",
                file.display(),
                skipped.line,
                skipped.reason
            );
        }
        let id = format!("local/{name}");
        let dir = self
            .workspace()
            .datanets_dir()
            .join(format!("local--{name}"));
        let staging = self
            .workspace()
            .datanets_dir()
            .join(format!(".local--{name}.partial"));
        let _ = std::fs::remove_dir_all(&staging);
        let manifest = pack::pack(
            &imported.rows,
            &PackOptions {
                id: id.clone(),
                name: name.into(),
                domain: "local".into(),
                description: format!("Imported from {}", file.display()),
                license: "unknown".into(),
                source: file.display().to_string(),
                rows_per_shard: 100_000,
            },
            &staging,
        )?;
        // Swap in whole: an earlier import of the same name stays until the new one is complete.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(|source| Error::Io {
            what: format!("moving the imported Datanet into {}", dir.display()),
            source,
        })?;
        let record = self.catalog()?.record_datanet(
            &manifest,
            &manifest.contributions_root,
            Origin::Import,
            &dir,
            None,
        )?;
        Ok(LocalDatanet::from(&record))
    }

    pub fn datanet_rows(&self, id: &str, query: &RowQuery) -> Result<RowPage> {
        let catalog = self.catalog()?;
        Ok(CurationView::open(&catalog, id)?.page(query)?)
    }

    /// One row as the table shows it, found by its id.
    fn curated_row(
        &self,
        catalog: &Catalog,
        id: &str,
        contribution_id: &str,
    ) -> Result<CuratedRow> {
        let view = CurationView::open(catalog, id)?;
        view.find(contribution_id)?
            .ok_or_else(|| datanet_sync::Error::UnknownRow(contribution_id.to_string()).into())
    }

    pub fn label_row(
        &self,
        id: &str,
        contribution_id: &str,
        update: &LabelUpdate,
    ) -> Result<CuratedRow> {
        let catalog = self.catalog()?;
        // Check the row exists before labelling it, so a typo does not leave a stray label.
        self.curated_row(&catalog, id, contribution_id)?;
        catalog.label(id, contribution_id, update)?;
        self.curated_row(&catalog, id, contribution_id)
    }

    pub fn edit_row(
        &self,
        id: &str,
        contribution_id: &str,
        content: &Content,
    ) -> Result<CuratedRow> {
        let catalog = self.catalog()?;
        self.curated_row(&catalog, id, contribution_id)?;
        catalog.edit(id, contribution_id, content)?;
        self.curated_row(&catalog, id, contribution_id)
    }

    pub fn datanet_stats(&self, id: &str) -> Result<DatanetStats> {
        let catalog = self.catalog()?;
        let view = CurationView::open(&catalog, id)?;
        let record = view.record().clone();
        let labels = catalog.labels(id)?;
        let count = |s: LabelStatus| labels.values().filter(|l| l.status == Some(s)).count() as u64;
        let rows = record.manifest.rows();
        let accepted = count(LabelStatus::Accepted);
        let rejected = count(LabelStatus::Rejected);
        Ok(DatanetStats {
            rows,
            accepted,
            rejected,
            unlabeled: rows.saturating_sub(accepted + rejected),
            edited: catalog.edits(id)?.len() as u64,
            pii_rows: view.personal_data_rows()?,
            duplicate_rows: catalog.duplicates(id)?.len() as u64,
            length: curate::length_stats(&view.lengths()?, 20),
            contributors: record.manifest.contributors.clone(),
        })
    }

    /// Finds exact and near duplicates (MinHash, Jaccard ≥ `threshold`) and marks them; with
    /// `reject`, every row but the first of each group is labelled rejected.
    pub fn scan_duplicates(&self, id: &str, threshold: f64, reject: bool) -> Result<DuplicateScan> {
        if !(0.3..=1.0).contains(&threshold) {
            return Err(Error::InvalidInput {
                field: "threshold".into(),
                message: format!("{threshold} is not between 0.3 and 1"),
            });
        }
        let catalog = self.catalog()?;
        let texts = CurationView::open(&catalog, id)?.texts()?;
        let exact = curate::exact_duplicates(&texts);
        let groups = curate::near_duplicates(&texts, threshold);
        catalog.set_duplicates(id, &groups)?;
        let exact_ids: HashSet<&String> = exact.iter().flatten().collect();
        let near_groups = groups
            .iter()
            .filter(|g| g.iter().any(|i| !exact_ids.contains(i)))
            .count() as u64;
        let mut rejected = 0;
        if reject {
            let losers: Vec<String> = groups
                .iter()
                .flat_map(|g| g.iter().skip(1).cloned())
                .collect();
            rejected = losers.len() as u64;
            catalog.set_status_many(id, &losers, LabelStatus::Rejected)?;
        }
        Ok(DuplicateScan {
            threshold,
            exact_groups: exact.len() as u64,
            near_groups,
            rejected,
            groups,
        })
    }

    /// A pulled Datanet's contribution ids in shard order: what its contributions root covers.
    pub fn datanet_ids(&self, id: &str) -> Result<Vec<String>> {
        let catalog = self.catalog()?;
        Ok(CurationView::open(&catalog, id)?
            .texts()?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Builds a named training dataset: rows chosen from Datanets by label (never rejected
    /// ones) and search, plus rows of local files, split train/eval, written as JSONL where
    /// every line keeps its contribution id and contributor.
    pub fn create_dataset(&self, request: &NewDataset) -> Result<DatasetSummary> {
        check_name(&request.name)?;
        if ["list", "named", "preview", "demo"].contains(&request.name.as_str()) {
            return Err(Error::InvalidInput {
                field: "name".into(),
                message: format!("{:?} is reserved; choose another name", request.name),
            });
        }
        if !(0.0..0.9).contains(&request.eval_fraction) {
            return Err(Error::InvalidInput {
                field: "eval_fraction".into(),
                message: format!("{} is not in [0, 0.9)", request.eval_fraction),
            });
        }
        let catalog = self.catalog()?;
        let mut rows: Vec<DatasetRow> = Vec::new();
        let mut seen = HashSet::new();
        let mut sources = Vec::new();
        for source in &request.sources {
            let view = CurationView::open(&catalog, &source.datanet)?;
            let statuses = if source.statuses.is_empty() {
                vec![StatusFilter::Accepted, StatusFilter::Unlabeled]
            } else {
                source.statuses.clone()
            };
            let mut taken = 0;
            for status in statuses {
                if status == StatusFilter::Rejected {
                    continue;
                }
                let query = RowQuery {
                    status: Some(status),
                    search: source.search.clone(),
                    tag: source.tag.clone(),
                    ..RowQuery::default()
                };
                for row in view.all(&query)? {
                    if seen.insert(row.contribution_id.clone()) {
                        taken += 1;
                        rows.push(DatasetRow {
                            contribution_id: row.contribution_id,
                            contributor: row.contributor,
                            datanet: Some(source.datanet.clone()),
                            split: Split::Train,
                            content: row.content,
                        });
                    }
                }
            }
            sources.push(DatasetSourceSummary {
                datanet: source.datanet.clone(),
                revision: view.record().revision.clone(),
                rows: taken,
            });
        }
        for file in &request.files {
            let imported = import::import_file(
                Path::new(file),
                &ImportDefaults {
                    contributor: LOCAL_CONTRIBUTOR.into(),
                    license: "unknown".into(),
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            )?;
            let mut taken = 0;
            for row in imported.rows {
                if seen.insert(row.contribution_id.clone()) {
                    taken += 1;
                    rows.push(DatasetRow {
                        contribution_id: row.contribution_id,
                        contributor: row.contributor,
                        datanet: None,
                        split: Split::Train,
                        content: row.content,
                    });
                }
            }
            sources.push(DatasetSourceSummary {
                datanet: file.clone(),
                revision: String::new(),
                rows: taken,
            });
        }
        if rows.is_empty() {
            return Err(Error::InvalidInput {
                field: "sources".into(),
                message: "no rows match: accept some rows, or include unlabeled ones".into(),
            });
        }
        // The trainer's own split: a run with the same eval fraction and seed evaluates on
        // exactly these rows.
        let ids = rows
            .iter()
            .map(|r| RowId(r.contribution_id.clone()))
            .collect();
        let (_, eval) = trainer::data::split_train_eval(ids, request.eval_fraction, request.seed)?;
        let eval: HashSet<String> = eval.into_iter().map(|id| id.0).collect();
        for row in &mut rows {
            if eval.contains(&row.contribution_id) {
                row.split = Split::Eval;
            }
        }
        let eval_rows = eval.len() as u64;
        let path = self
            .workspace()
            .datasets_dir()
            .join(format!("{}.jsonl", request.name));
        write_dataset(&path, &rows)?;
        let contributors: HashSet<&str> = rows.iter().map(|r| r.contributor.as_str()).collect();
        let summary = DatasetSummary {
            name: request.name.clone(),
            rows: rows.len() as u64,
            eval_rows,
            contributors: contributors.len() as u64,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            path,
            sources,
        };
        catalog.save_dataset(&summary)?;
        Ok(summary)
    }

    /// Packages a contribution to a Datanet: the rows of `file` as new rows, and (with
    /// `include_edits`) the user's edits of its rows as revisions, all by `contributor`.
    pub fn package_contribution(
        &self,
        datanet: &str,
        contributor: &str,
        file: Option<&Path>,
        include_edits: bool,
    ) -> Result<Contribution> {
        let catalog = self.catalog()?;
        let view = CurationView::open(&catalog, datanet)?;
        let existing: HashSet<String> = view.texts()?.into_iter().map(|(id, _)| id).collect();
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let license = view.record().manifest.license.clone();
        let new_rows = match file {
            Some(path) => {
                let imported = import::import_file(
                    path,
                    &ImportDefaults {
                        contributor: contributor.into(),
                        license: license.clone(),
                        created_at: created_at.clone(),
                    },
                )?;
                imported.rows.into_iter().map(|r| r.content).collect()
            }
            None => Vec::new(),
        };
        let revised = if include_edits {
            let mut edits: Vec<_> = catalog
                .edits(datanet)?
                .into_iter()
                .map(|(id, edit)| (id, edit.content))
                .collect();
            edits.sort_by(|a, b| a.0.cmp(&b.0));
            edits
        } else {
            Vec::new()
        };
        Ok(Contribution::package(
            Author {
                datanet,
                base_revision: &view.record().revision,
                contributor,
                created_at: &created_at,
                license: &license,
            },
            new_rows,
            revised,
            &existing,
        )?)
    }

    pub fn list_datasets(&self) -> Result<Vec<DatasetSummary>> {
        Ok(self.catalog()?.datasets()?)
    }

    pub fn dataset(&self, name: &str) -> Result<DatasetSummary> {
        Ok(self.catalog()?.dataset(name)?)
    }

    /// A page of a dataset's rows, read back from its file.
    pub fn dataset_rows(&self, name: &str, offset: u64, limit: u64) -> Result<DatasetPage> {
        let summary = self.dataset(name)?;
        let text = std::fs::read_to_string(&summary.path).map_err(|source| Error::Io {
            what: format!("reading the dataset {}", summary.path.display()),
            source,
        })?;
        let limit = if limit == 0 { 100 } else { limit.min(1000) };
        let mut rows = Vec::new();
        let mut total = 0u64;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if total >= offset && (rows.len() as u64) < limit {
                let line: DatasetLine =
                    serde_json::from_str(line).map_err(|e| datanet_sync::Error::BadLine {
                        path: summary.path.clone(),
                        line: i + 1,
                        message: e.to_string(),
                    })?;
                rows.push(line.into_row());
            }
            total += 1;
        }
        Ok(DatasetPage {
            total,
            offset,
            rows,
        })
    }

    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        let path = self.catalog()?.delete_dataset(name)?;
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("the dataset's file {} stays: {e}", path.display());
        }
        Ok(())
    }
}

/// A row's id, for the trainer's split.
struct RowId(String);

impl trainer::data::ExampleId for RowId {
    fn example_id(&self) -> &str {
        &self.0
    }
}

/// A dataset line as written: chatml `messages` for the trainer, with the row's provenance.
#[derive(Debug, Serialize, Deserialize)]
struct DatasetLine {
    messages: Vec<datanet_sync::format::Message>,
    contribution_id: String,
    contributor: String,
    #[serde(default)]
    datanet: Option<String>,
    split: Split,
    /// The row's content as curated (instruction form kept when it had one).
    content: Content,
}

impl DatasetLine {
    fn into_row(self) -> DatasetRow {
        DatasetRow {
            contribution_id: self.contribution_id,
            contributor: self.contributor,
            datanet: self.datanet,
            split: self.split,
            content: self.content,
        }
    }
}

/// Writes the dataset beside its final name and renames it into place, so a failure leaves
/// the previous version whole.
fn write_dataset(path: &Path, rows: &[DatasetRow]) -> Result<()> {
    let io = |what: &str, source| Error::Io {
        what: format!("{what} {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the folder of", e))?;
    }
    let partial = path.with_extension("jsonl.partial");
    let file = std::fs::File::create(&partial).map_err(|e| io("writing", e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut per_contributor: BTreeMap<&str, u64> = BTreeMap::new();
    for row in rows {
        *per_contributor.entry(&row.contributor).or_default() += 1;
        let line = DatasetLine {
            messages: row.content.to_messages(),
            contribution_id: row.contribution_id.clone(),
            contributor: row.contributor.clone(),
            datanet: row.datanet.clone(),
            split: row.split,
            content: row.content.clone(),
        };
        let json = serde_json::to_string(&line).map_err(|e| Error::InvalidInput {
            field: "row".into(),
            message: e.to_string(),
        })?;
        writeln!(out, "{json}").map_err(|e| io("writing", e))?;
    }
    out.flush().map_err(|e| io("writing", e))?;
    out.into_inner()
        .map_err(|e| io("writing", e.into_error()))?
        .sync_all()
        .map_err(|e| io("writing", e))?;
    std::fs::rename(&partial, path).map_err(|e| io("renaming into place", e))?;
    tracing::debug!(contributors = per_contributor.len(), "dataset written");
    Ok(())
}
