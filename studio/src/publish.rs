//! Publishing a finished run's adapter: the lineage manifest built from the run, its dataset
//! and the Datanets the rows came from; a preview of exactly what will be signed and sent; and
//! a job that signs, uploads to a hub and registers on chain.
//!
//! A publication is recorded in the catalog before anything leaves the machine and advanced
//! one stage at a time (`signed` → `uploaded` → `registered`). A publish that was killed
//! resumes from its record: files already on the hub are not uploaded again, and a manifest
//! already registered is not registered again (the registry is asked first).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ::wallet::chain::{NewRegistration, Registry};
use ::wallet::manifest::{
    self, Attribution, AttributionMethod, BaseModel, Contribution, DatanetUse, FileHash, Influence,
    InfluenceAccuracy, InfluenceScore, Manifest, Run, Training,
};
use ::wallet::{Address, B256, SecretString};
use datanet_sync::hub::server::HubServer;
use datanet_sync::hub::{HubClient, RepoKind};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Studio;
use crate::chain::{Connected, block_on};
use crate::datanets::DatasetRow;
use crate::error::{Error, Result};
use crate::jobs::{JobContext, JobInfo, now};
use crate::runs::RunState;
use crate::wallet::parse_address;

/// The manifest's file name in a published repository.
pub const MANIFEST_FILE: &str = "lineage-manifest.json";
/// The model card's file name.
pub const CARD_FILE: &str = "README.md";
/// The adapter weights, whose sha256 is the registry's `adapterHash`.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Names the hub to publish to when a request names none.
pub const PUBLISH_HUB_ENV: &str = "MODELFACTORY_PUBLISH_HUB";

/// What publishing a run takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// Taken from the address in the HTTP API.
    #[serde(default)]
    pub run_id: String,
    /// The account that signs, `0x…`.
    pub publisher: String,
    /// `owner/name` on the hub; `<publisher's first 8 hex digits>/<run name>` by default.
    #[serde(default)]
    pub repo: Option<String>,
    /// The adapter's SPDX licence; the Datanets' licence when they share one.
    #[serde(default)]
    pub license: Option<String>,
    /// The hub's address; `MODELFACTORY_PUBLISH_HUB`, else the workspace hub, by default.
    #[serde(default)]
    pub hub: Option<String>,
    /// How the rewards are shared: `datainf` (by the run's attribution report) or `row-share`
    /// (by rows written). By default `datainf` when the run has a report that credits someone,
    /// else `row-share`.
    #[serde(default)]
    pub attribution: Option<AttributionMethod>,
}

/// One file that will be uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Everything the user confirms before publishing: what is signed, what is sent, where, and
/// what it may cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishPreview {
    pub run_id: String,
    pub run_name: String,
    /// The manifest exactly as it will be signed (without the signature).
    pub manifest: serde_json::Value,
    /// keccak256 of its canonical JSON: what the signature covers and the registry records.
    pub manifest_hash: String,
    pub files: Vec<PublishFile>,
    pub hub: String,
    pub repo: String,
    pub chain_id: u64,
    pub chain_url: String,
    pub registry: String,
    /// How the shares were computed: `row-share` or `datainf`.
    pub attribution_method: AttributionMethod,
    /// Each contributor's share in basis points.
    pub shares: Vec<(String, u16)>,
    /// Contributors whose rows raised the evaluation loss (`datainf` only): no share.
    pub harmful: Vec<String>,
    /// Rows that came from local files rather than a Datanet: trained on, credited to nobody.
    pub uncredited_rows: u64,
    pub gas_estimate: Option<u64>,
    /// The most the registration may cost, in wei.
    pub max_cost_wei: Option<String>,
    /// Why there is no estimate (for example, too little ETH for gas).
    pub gas_problem: Option<String>,
    /// An earlier publication of this run, if any.
    pub publication: Option<Publication>,
}

/// Where a publication got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicationState {
    /// The manifest is signed and saved; nothing has left the machine.
    Signed,
    /// The files are on the hub.
    Uploaded,
    /// The registry recorded it.
    Registered,
}

impl PublicationState {
    fn as_str(self) -> &'static str {
        match self {
            PublicationState::Signed => "signed",
            PublicationState::Uploaded => "uploaded",
            PublicationState::Registered => "registered",
        }
    }
}

/// A publication as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub manifest_hash: String,
    pub run_id: String,
    pub state: PublicationState,
    pub publisher: String,
    pub hub: String,
    pub repo: String,
    /// The hub's revision after the upload.
    pub commit: Option<String>,
    pub repo_url: Option<String>,
    pub chain_id: u64,
    pub registry: String,
    pub tx_hash: Option<String>,
    pub block: Option<u64>,
    /// The folder with the adapter, the signed manifest and the model card.
    pub folder: String,
    pub job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A manifest built from a run, with what publishing it needs besides.
struct Built {
    manifest: Manifest,
    /// Adapter files in the run's adapter folder, by repository path.
    adapter_files: Vec<(String, PathBuf)>,
    uncredited_rows: u64,
    repo: String,
}

impl Studio {
    /// Builds the manifest for `request` and says what publishing it would do and cost.
    pub fn publish_preview(&self, request: &PublishRequest) -> Result<PublishPreview> {
        let publisher = parse_address(&request.publisher)?;
        let built = self.build_manifest(request, publisher)?;
        let manifest_hash = built.manifest.hash()?;
        let (hub, _) = self.publish_hub(request.hub.as_deref())?;
        let chain = self.connect_chain()?;
        let registration_for_gas = registration(
            &built.manifest,
            manifest_hash,
            &built.adapter_files,
            &format!("{hub}/{}", built.repo),
        )?;
        // The real signature needs the passphrase; a throwaway key signing the same fields
        // costs the same gas, so the estimate is taken with it.
        let (gas_estimate, max_cost_wei, gas_problem) =
            match self.estimate_registration(&chain, publisher, registration_for_gas) {
                Ok(p) => (Some(p.gas_limit), Some(p.max_cost.to_string()), None),
                Err(e) => (None, None, Some(e.to_string())),
            };
        let mut files = Vec::new();
        for (path, local) in &built.adapter_files {
            let (sha256, bytes) = sha256_file(local)?;
            files.push(PublishFile {
                path: path.clone(),
                bytes,
                sha256,
            });
        }
        let manifest_json = built.manifest.to_json_pretty()?;
        let card = manifest::card::model_card(&built.manifest)?;
        for (path, text) in [(MANIFEST_FILE, &manifest_json), (CARD_FILE, &card)] {
            files.push(PublishFile {
                path: path.into(),
                bytes: text.len() as u64,
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
            });
        }
        let run = self.get_run(&request.run_id)?.run;
        Ok(PublishPreview {
            run_id: run.id.clone(),
            run_name: run.name,
            manifest: serde_json::to_value(&built.manifest).map_err(json_error)?,
            manifest_hash: manifest_hash.to_string(),
            files,
            hub,
            repo: built.repo,
            chain_id: chain.client.chain_id(),
            chain_url: chain.client.url().to_string(),
            registry: chain.contracts.registry.to_checksum(None),
            attribution_method: built.manifest.attribution.method,
            shares: built
                .manifest
                .attribution
                .shares
                .iter()
                .map(|s| (s.contributor.to_checksum(None), s.bps))
                .collect(),
            harmful: built
                .manifest
                .attribution
                .influence
                .iter()
                .flat_map(|i| &i.scores)
                .filter(|s| s.score < 0.0)
                .map(|s| s.contributor.to_checksum(None))
                .collect(),
            uncredited_rows: built.uncredited_rows,
            gas_estimate,
            max_cost_wei,
            gas_problem,
            publication: self.latest_publication(&request.run_id)?,
        })
    }

    /// Starts the publish job: sign, upload, register. The passphrase unlocks the key inside
    /// the job and is dropped with it.
    pub fn publish(&self, request: &PublishRequest, passphrase: SecretString) -> Result<JobInfo> {
        let publisher = parse_address(&request.publisher)?;
        // Refuse at once what would fail in the job: unknown run, no key, wrong passphrase.
        self.keystore()?.unlock(publisher, &passphrase)?;
        let run = self.get_run(&request.run_id)?.run;
        let studio = self.clone();
        let request = request.clone();
        self.jobs()
            .spawn("publish", &format!("Publish {}", run.name), move |ctx| {
                studio
                    .publish_job(ctx, &request, publisher, &passphrase)
                    .map(|_| ())
            })
    }

    /// Publishes in the calling thread (the CLI's `publish`), with progress on `ctx`.
    pub fn publish_job(
        &self,
        ctx: &JobContext,
        request: &PublishRequest,
        publisher: Address,
        passphrase: &SecretString,
    ) -> Result<Publication> {
        ctx.progress(0.02, "building the lineage manifest", &[]);
        let built = self.build_manifest(request, publisher)?;
        let manifest_hash = built.manifest.hash()?;
        let signer = self.keystore()?.unlock(publisher, passphrase)?;
        let (hub, token) = self.publish_hub(request.hub.as_deref())?;
        let chain = self.connect_chain()?;
        let folder = self.run_dir(&request.run_id).join("publish");

        let mut publication = match self.publication(&manifest_hash.to_string())? {
            Some(p) => {
                tracing::info!(state = p.state.as_str(), "resuming a publication");
                p
            }
            None => {
                ctx.progress(0.05, "signing the manifest", &[]);
                let mut signed = built.manifest.clone();
                signed.sign(&signer)?;
                write_folder(&folder, &signed, &built.adapter_files)?;
                let at = now();
                let p = Publication {
                    manifest_hash: manifest_hash.to_string(),
                    run_id: request.run_id.clone(),
                    state: PublicationState::Signed,
                    publisher: publisher.to_checksum(None),
                    hub: hub.clone(),
                    repo: built.repo.clone(),
                    commit: None,
                    repo_url: None,
                    chain_id: chain.client.chain_id(),
                    registry: chain.contracts.registry.to_checksum(None),
                    tx_hash: None,
                    block: None,
                    folder: folder.display().to_string(),
                    job_id: Some(ctx.id().to_string()),
                    created_at: at.clone(),
                    updated_at: at,
                };
                self.save_publication(&p)?;
                p
            }
        };
        ctx.check_cancelled()?;

        if publication.state == PublicationState::Signed {
            ctx.progress(0.1, &format!("uploading to {}", publication.repo), &[]);
            // A resumed publish may go to another hub than the attempt that failed.
            publication.hub = hub.clone();
            let commit = self.upload_folder(&hub, token, &publication.repo, &folder)?;
            publication.commit = Some(commit.0);
            publication.repo_url = Some(commit.1);
            publication.state = PublicationState::Uploaded;
            publication.updated_at = now();
            self.save_publication(&publication)?;
        }
        ctx.check_cancelled()?;

        if publication.state == PublicationState::Uploaded {
            ctx.progress(0.7, "registering on chain", &[]);
            let signed = read_signed(&folder)?;
            let uri = format!(
                "{}@{}",
                publication.repo_url.as_deref().unwrap_or(&publication.repo),
                publication.commit.as_deref().unwrap_or("main")
            );
            let fields = registration(&signed, manifest_hash, &built.adapter_files, &uri)?;
            let registry = Registry::new(&chain.client, chain.contracts.registry);
            self.fund_if_local(&chain, publisher)?;
            let outcome = block_on(async move {
                // Asked first, so a publish killed after sending does not register twice.
                if registry.is_registered(manifest_hash).await? {
                    return Ok::<_, ::wallet::chain::ChainError>(None);
                }
                let registration = fields.build()?;
                let signature = registry.sign(&signer, &registration)?;
                registry
                    .register(&signer, &registration, &signature)
                    .await
                    .map(Some)
            })??;
            if let Some(outcome) = outcome {
                publication.tx_hash = Some(outcome.tx_hash.to_string());
                publication.block = Some(outcome.block_number);
            }
            publication.state = PublicationState::Registered;
            publication.updated_at = now();
            self.save_publication(&publication)?;
        }
        ctx.progress(1.0, "published", &[]);
        Ok(publication)
    }

    /// The newest publication of a run.
    pub fn latest_publication(&self, run_id: &str) -> Result<Option<Publication>> {
        let hash: Option<String> = self
            .inner
            .db
            .lock()
            .query_row(
                "SELECT manifest_hash FROM publications WHERE run_id = ?1 ORDER BY created_at DESC LIMIT 1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()?;
        match hash {
            Some(h) => self.publication(&h),
            None => Ok(None),
        }
    }

    pub fn publication(&self, manifest_hash: &str) -> Result<Option<Publication>> {
        let conn = self.inner.db.lock();
        let found = conn
            .query_row(
                "SELECT body FROM publications WHERE manifest_hash = ?1",
                params![manifest_hash],
                |r| r.get::<_, String>(0),
            )
            .optional()?;
        Ok(found.and_then(|body| serde_json::from_str(&body).ok()))
    }

    fn save_publication(&self, p: &Publication) -> Result<()> {
        self.inner.db.lock().execute(
            "INSERT INTO publications (manifest_hash, run_id, state, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(manifest_hash) DO UPDATE SET state = ?3, body = ?4",
            params![
                p.manifest_hash,
                p.run_id,
                p.state.as_str(),
                serde_json::to_string(p).map_err(json_error)?,
                p.created_at
            ],
        )?;
        Ok(())
    }

    /// The hub adapters are published to, and the token that writes to it: the hub named
    /// (or in `MODELFACTORY_PUBLISH_HUB`) with `HF_TOKEN`, else the workspace hub, a hub over
    /// `<workspace>/hub` that this process serves with a token of its own.
    pub fn publish_hub(&self, named: Option<&str>) -> Result<(String, Option<String>)> {
        let named = named
            .map(str::to_string)
            .or_else(|| std::env::var(PUBLISH_HUB_ENV).ok())
            .filter(|h| !h.trim().is_empty());
        match named {
            None => {
                let (endpoint, token) = workspace_hub(&self.workspace().root().join("hub"))?;
                Ok((endpoint, Some(token)))
            }
            Some(endpoint) => {
                let endpoint = endpoint.trim().trim_end_matches('/').to_string();
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(Error::InvalidInput {
                        field: "hub".into(),
                        message: format!("{endpoint:?} is not an http(s) address"),
                    });
                }
                Ok((
                    endpoint,
                    std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
                ))
            }
        }
    }

    /// Uploads every file of `folder` unless the hub already holds the same bytes. Returns the
    /// hub's revision and the repository's address.
    fn upload_folder(
        &self,
        hub: &str,
        token: Option<String>,
        repo: &str,
        folder: &Path,
    ) -> Result<(String, String)> {
        let client = HubClient::new(hub, token);
        let mut files = Vec::new();
        for local in read_dir_files(folder)? {
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| Error::InvalidInput {
                    field: "publish folder".into(),
                    message: format!("{} has a file name that is not UTF-8", folder.display()),
                })?;
            let (sha256, _) = sha256_file(&local)?;
            files.push((name, local, sha256));
        }
        let repo = repo.to_string();
        let url = format!("{hub}/{repo}");
        let revision = block_on(async move {
            client.create_repo(RepoKind::Model, &repo).await?;
            let remote = client.model_files(&repo, "main").await?;
            let missing: Vec<(String, PathBuf)> = files
                .iter()
                .filter(|(path, local, sha)| {
                    !remote
                        .iter()
                        .any(|r| r.path == *path && r.matches(local, sha).unwrap_or(false))
                })
                .map(|(path, local, _)| (path.clone(), local.clone()))
                .collect();
            if missing.is_empty() {
                tracing::info!(%repo, "every file is on the hub already; nothing uploaded");
                return client.model_revision(&repo).await;
            }
            let commit = client
                .upload_files(RepoKind::Model, &repo, &missing, "Publish adapter")
                .await?;
            Ok::<_, datanet_sync::Error>(commit.oid)
        })??;
        Ok((revision, url))
    }

    /// The manifest's attribution: the shares of the run's DataInf report (with its measured
    /// accuracy, when measured) or its row shares.
    fn manifest_attribution(
        &self,
        run_id: &str,
        asked: Option<AttributionMethod>,
        contributions: &[Contribution],
    ) -> Result<Attribution> {
        if asked == Some(AttributionMethod::RowShare) {
            return Ok(Attribution::row_share(contributions)?);
        }
        // The report and its accuracy, read once.
        let stored = self.run_attribution(run_id)?;
        let report = match (stored.report, asked) {
            (Some(report), _) => report,
            (None, None) => return Ok(Attribution::row_share(contributions)?),
            // Asked for by name: the error says how to compute it.
            (None, Some(_)) => self.attribution(run_id)?,
        };
        let stale = |why: String| Error::InvalidInput {
            field: "attribution".into(),
            message: format!(
                "the attribution of run {run_id} does not match its training rows ({why}): \
                 compute it again (`modelfactory attribution compute {run_id}`)"
            ),
        };
        let trained: BTreeSet<Address> = contributions
            .iter()
            .filter(|c| c.rows_used > 0)
            .map(|c| c.contributor)
            .collect();
        let mut scores = Vec::new();
        let mut uncredited_score = 0.0;
        for c in &report.contributors {
            match parse_address(&c.contributor) {
                Ok(address) if trained.contains(&address) => scores.push(InfluenceScore {
                    contributor: address,
                    score: c.score,
                }),
                Ok(address) => return Err(stale(format!("{address} trained no rows"))),
                // Rows of a local file without contributors: scored, credited to nobody.
                Err(_) => uncredited_score += c.score,
            }
        }
        if let Some(missing) = trained
            .iter()
            .find(|a| !scores.iter().any(|s| s.contributor == **a))
        {
            return Err(stale(format!("{missing} has no score")));
        }
        let accuracy = stored.accuracy.and_then(|a| {
            let m = a.methods.iter().find(|m| m.method == report.method)?;
            (m.lds.is_finite() && m.loco_sign_agreement.is_finite()).then_some(InfluenceAccuracy {
                lds: m.lds,
                subsets: a.subsets as u64,
                loco_sign_agreement: m.loco_sign_agreement,
            })
        });
        let by_influence = Attribution::datainf(Influence {
            scores,
            uncredited_score,
            train_rows: report.train_rows as u64,
            eval_rows: report.eval_rows as u64,
            damping: trainer::attribution::DAMPING,
            accuracy,
        });
        match (by_influence, asked) {
            (Ok(a), _) => Ok(a),
            // Unasked, an attribution that credits no one (every contributor's rows raised
            // the loss) leaves the rows to decide.
            (Err(_), None) => Ok(Attribution::row_share(contributions)?),
            (Err(e), Some(_)) => Err(e.into()),
        }
    }

    /// The lineage manifest of a run, unsigned.
    fn build_manifest(&self, request: &PublishRequest, publisher: Address) -> Result<Built> {
        let detail = self.get_run(&request.run_id)?;
        let run = &detail.run;
        if !matches!(run.state, RunState::Finished | RunState::Cancelled) {
            return Err(Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "run {} is {:?}: only a finished (or cancelled, with its best checkpoint) run can be published",
                    run.name, run.state
                ),
            });
        }
        let adapter_dir = self.run_adapter(&run.id)?;
        let model = self.inner.models.find(&run.model_id)?;

        // Which rows trained it: the run's record of its training sequences.
        let sources_path = self.run_dir(&run.id).join("train_sources.json");
        let sources: Vec<Vec<trainer::data::PackedSegment>> = std::fs::read(&sources_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "{} is missing or unreadable, so the rows that trained this run are unknown",
                    sources_path.display()
                ),
            })?;
        let mut trained: HashMap<String, u64> = HashMap::new();
        for segment in sources.iter().flatten() {
            *trained.entry(segment.id.clone()).or_default() += 1;
        }

        // Where each row came from: the dataset file the Datasets screen wrote.
        let rows = read_dataset_rows(Path::new(&run.dataset))?;
        let catalog =
            datanet_sync::catalog::Catalog::open(&self.workspace().datanet_catalog_path())?;
        let mut datanets: BTreeMap<String, DatanetUse> = BTreeMap::new();
        let mut licenses: BTreeMap<String, String> = BTreeMap::new();
        let mut contributions = Vec::new();
        let mut uncredited_rows = 0u64;
        let mut seen = BTreeSet::new();
        for row in rows {
            let Some(datanet) = row.datanet.clone() else {
                uncredited_rows += u64::from(trained.contains_key(&row.contribution_id));
                continue;
            };
            if !seen.insert(row.contribution_id.clone()) {
                continue;
            }
            if !datanets.contains_key(&datanet) {
                let record = catalog.datanet(&datanet)?;
                licenses.insert(datanet.clone(), record.manifest.license.clone());
                datanets.insert(
                    datanet.clone(),
                    DatanetUse {
                        id: datanet.clone(),
                        revision: record.revision.clone(),
                        shards: record
                            .manifest
                            .shards
                            .iter()
                            .map(|s| FileHash {
                                path: s.path.clone(),
                                sha256: s.sha256.clone(),
                                bytes: s.bytes,
                            })
                            .collect(),
                        contributions_root: record.manifest.contributions_root.clone(),
                    },
                );
            }
            let contributor = parse_address(&row.contributor)?;
            // What the trainer trained on, not the dataset's own split: a run may split anew.
            let rows_used = trained.get(&row.contribution_id).copied().unwrap_or(0);
            contributions.push(Contribution {
                contribution_id: row.contribution_id.clone(),
                datanet: datanet.clone(),
                contributor,
                content_hash: row.content.content_hash(),
                license: licenses.get(&datanet).cloned().unwrap_or_default(),
                rows_used,
            });
        }
        if contributions.iter().all(|c| c.rows_used == 0) {
            return Err(Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "the data of run {} has no Datanet contribution ids, so there is no one to credit; \
                     train on a dataset built from a Datanet (Datasets screen) to publish with lineage",
                    run.name
                ),
            });
        }
        let attribution =
            self.manifest_attribution(&run.id, request.attribution, &contributions)?;

        let mut adapter_files = Vec::new();
        for file in read_dir_files(&adapter_dir)? {
            if let Some(name) = file.file_name().and_then(|n| n.to_str())
                && (name.ends_with(".safetensors") || name.ends_with(".json"))
            {
                adapter_files.push((name.to_string(), file.clone()));
            }
        }
        // The citation index travels with the adapter, so that whoever loads it can trace its
        // answers back to the rows and contributors that trained it.
        let index = self
            .run_dir(&run.id)
            .join(trainer::citations::CITATION_INDEX_FILE);
        if index.is_file() {
            adapter_files.push((trainer::citations::CITATION_INDEX_FILE.to_string(), index));
        }
        adapter_files.sort();
        if !adapter_files.iter().any(|(p, _)| p == WEIGHTS_FILE) {
            return Err(Error::InvalidInput {
                field: "run".into(),
                message: format!("{} has no {WEIGHTS_FILE}", adapter_dir.display()),
            });
        }
        let config_path = adapter_dir.join("adapter_config.json");
        let config: serde_json::Value = std::fs::read(&config_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::InvalidInput {
                field: "run".into(),
                message: format!("{} is missing or not JSON", config_path.display()),
            })?;
        let mut adapter_hashes = Vec::new();
        for (path, local) in &adapter_files {
            let (sha256, bytes) = sha256_file(local)?;
            adapter_hashes.push(FileHash {
                path: path.clone(),
                sha256,
                bytes,
            });
        }

        let model_dir = PathBuf::from(&model.path);
        let model_dir = if model_dir.is_file() {
            model_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or(model_dir)
        } else {
            model_dir
        };
        let mut base_files = Vec::new();
        for file in read_dir_files(&model_dir)? {
            if let Some(name) = file.file_name().and_then(|n| n.to_str())
                && (name.ends_with(".safetensors") || name.ends_with(".gguf"))
            {
                let (sha256, bytes) = sha256_file(&file)?;
                base_files.push(FileHash {
                    path: name.to_string(),
                    sha256,
                    bytes,
                });
            }
        }
        base_files.sort_by(|a, b| a.path.cmp(&b.path));
        // A hub snapshot folder is named by its commit; a local folder has no revision, and
        // the weight hashes pin it instead.
        let revision = model_dir
            .components()
            .rev()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1].as_os_str() == "snapshots")
            .map(|w| w[0].as_os_str().to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into());

        let config_json = serde_json::to_value(&detail.config).map_err(json_error)?;
        let hyperparameters = match config_json {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let backend = match detail.config.backend {
            Some(kind) => format!("{kind:?}").to_lowercase(),
            None => self.settings()?.default_backend.as_str().to_string(),
        };
        let mut metrics = BTreeMap::new();
        if let Some(eval) = detail.evals.last() {
            metrics.insert("eval_loss".to_string(), eval.loss);
            metrics.insert("eval_perplexity".to_string(), eval.perplexity);
        }
        if let Some(step) = detail.steps.last() {
            metrics.insert("train_loss".to_string(), step.loss);
        }
        let name = request
            .repo
            .as_deref()
            .and_then(|r| r.split_once('/').map(|(_, n)| n.to_string()))
            .unwrap_or_else(|| crate::models::slug(&run.name));
        let repo = match &request.repo {
            Some(r) => {
                if !datanet_sync::hub::is_valid_repo_id(r) {
                    return Err(Error::InvalidInput {
                        field: "repo".into(),
                        message: format!("{r:?} is not a repository id (owner/name)"),
                    });
                }
                r.clone()
            }
            None => format!("{}/{name}", &hex::encode(publisher.as_slice())[..8]),
        };
        let distinct: BTreeSet<&String> = licenses.values().collect();
        let license = match (&request.license, distinct.len()) {
            (Some(l), _) if !l.trim().is_empty() => l.trim().to_string(),
            (_, 1) => distinct.into_iter().next().cloned().unwrap_or_default(),
            _ => "other".into(),
        };
        let manifest = Manifest {
            schema: manifest::SCHEMA.into(),
            version: manifest::VERSION,
            name,
            license,
            base_model: BaseModel {
                repo: crate::models::portable_id(&model),
                revision,
                files: base_files,
            },
            adapter: ::wallet::manifest::Adapter {
                files: adapter_hashes,
                config,
            },
            training: Training {
                method: format!("{:?}", detail.config.method).to_lowercase(),
                backend,
                code_version: format!("modelfactory {}", crate::VERSION),
                seed: detail.config.seed,
                hyperparameters,
            },
            metrics,
            datanets: datanets.into_values().collect(),
            contributions,
            attribution,
            run: Run {
                id: run.id.clone(),
                started_at: run.created_at.clone(),
                ended_at: run.updated_at.clone(),
            },
            publisher,
            signature: None,
        };
        manifest.validate()?;
        Ok(Built {
            manifest,
            adapter_files,
            uncredited_rows,
            repo,
        })
    }

    fn estimate_registration(
        &self,
        chain: &Connected,
        publisher: Address,
        mut fields: NewRegistration,
    ) -> Result<::wallet::chain::GasPreview> {
        let throwaway = ::wallet::keystore::random_signer()?;
        fields.publisher = throwaway.address();
        let registration = fields.build()?;
        let registry = Registry::new(&chain.client, chain.contracts.registry);
        let signature = registry.sign(&throwaway, &registration)?;
        // The local chain funds the publisher at publish time; estimate from a funded account.
        let from = if chain.local() {
            ::wallet::keystore::signer_from_mnemonic(
                &SecretString::from(::wallet::chain::DEV_MNEMONIC),
                0,
            )?
            .address()
        } else {
            publisher
        };
        Ok(block_on(async move {
            registry
                .preview_register(from, &registration, &signature)
                .await
        })??)
    }
}

/// The registry fields for a manifest: its hash, the weights' sha256, the base model, the
/// Datanets' roots, where it is published, and the attribution table.
fn registration(
    manifest: &Manifest,
    manifest_hash: B256,
    adapter_files: &[(String, PathBuf)],
    uri: &str,
) -> Result<NewRegistration> {
    let weights = adapter_files
        .iter()
        .find(|(p, _)| p == WEIGHTS_FILE)
        .map(|(_, local)| local)
        .ok_or_else(|| Error::InvalidInput {
            field: "adapter".into(),
            message: format!("no {WEIGHTS_FILE}"),
        })?;
    let (sha, _) = sha256_file(weights)?;
    let mut roots = Vec::new();
    for d in &manifest.datanets {
        roots.push(crate::chain::parse_hash(&format!(
            "0x{}",
            d.contributions_root
        ))?);
    }
    Ok(NewRegistration {
        manifest_hash,
        adapter_hash: crate::chain::parse_hash(&format!("0x{sha}"))?,
        base_model: manifest.base_model.repo.clone(),
        datanet_roots: roots,
        uri: uri.to_string(),
        parent: None,
        publisher: manifest.publisher,
        shares: manifest
            .attribution
            .shares
            .iter()
            .map(|s| (s.contributor, s.bps))
            .collect(),
    })
}

/// The folder that is uploaded and that `verify` checks: the adapter files, the signed
/// manifest and the model card. Written to a temporary folder first, so a crash leaves either
/// the old folder or the new one.
fn write_folder(
    folder: &Path,
    signed: &Manifest,
    adapter_files: &[(String, PathBuf)],
) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let staging = folder.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(format!("clearing {}", staging.display())))?;
    }
    std::fs::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    for (path, local) in adapter_files {
        std::fs::copy(local, staging.join(path)).map_err(io(format!(
            "copying {} to {}",
            local.display(),
            staging.display()
        )))?;
    }
    let manifest_json = signed.to_json_pretty()?;
    std::fs::write(staging.join(MANIFEST_FILE), manifest_json)
        .map_err(io(format!("writing the manifest in {}", staging.display())))?;
    std::fs::write(staging.join(CARD_FILE), manifest::card::model_card(signed)?).map_err(io(
        format!("writing the model card in {}", staging.display()),
    ))?;
    if folder.exists() {
        std::fs::remove_dir_all(folder).map_err(io(format!("replacing {}", folder.display())))?;
    }
    std::fs::rename(&staging, folder).map_err(io(format!("moving {} into place", folder.display())))
}

fn read_signed(folder: &Path) -> Result<Manifest> {
    let path = folder.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        what: format!("reading {}", path.display()),
        source,
    })?;
    Ok(manifest::read(&text)?)
}

fn read_dataset_rows(path: &Path) -> Result<Vec<DatasetRow>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("reading the run's dataset {}", path.display()),
        source,
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A file that is not a Datasets-screen dataset has no lineage to publish.
        let row: DatasetRow = serde_json::from_str(line).map_err(|e| Error::InvalidInput {
            field: "run".into(),
            message: format!(
                "{} line {}: not a row with a contribution id and contributor ({e}); \
                 only datasets built from Datanets can be published with lineage",
                path.display(),
                i + 1
            ),
        })?;
        rows.push(row);
    }
    Ok(rows)
}

/// The regular files directly in `dir`, sorted.
pub(crate) fn read_dir_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        what: format!("listing {}", dir.display()),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// sha256 (hex) and size of a file, read in blocks.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let io = |source| Error::Io {
        what: format!("reading {}", path.display()),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

fn json_error(e: serde_json::Error) -> Error {
    Error::InvalidInput {
        field: "manifest".into(),
        message: e.to_string(),
    }
}

/// The workspace hub: `<workspace>/hub` served on a loopback port by this process, writable
/// with a token made for this process alone. One per workspace folder.
fn workspace_hub(root: &Path) -> Result<(String, String)> {
    static HUBS: OnceLock<Mutex<HashMap<PathBuf, (String, String)>>> = OnceLock::new();
    let mut hubs = HUBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(hub) = hubs.get(root) {
        return Ok(hub.clone());
    }
    let fail = |message: String| Error::InvalidInput {
        field: "publish_hub".into(),
        message,
    };
    std::fs::create_dir_all(root).map_err(|e| {
        fail(format!(
            "cannot create the workspace hub {}: {e}",
            root.display()
        ))
    })?;
    let token = crate::server::new_token();
    let server = HubServer::new(root).with_write_token(Some(token.clone()));
    let endpoint = crate::datanets::spawn_hub(server, "workspace hub").map_err(fail)?;
    hubs.insert(root.to_path_buf(), (endpoint.clone(), token.clone()));
    Ok((endpoint, token))
}
