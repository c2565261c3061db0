//! Verifying a published adapter: every file against the lineage manifest, the manifest against
//! its publisher's signature, the registry's record against both, and given contributions
//! against their Datanet's contributions root.
//!
//! Every check is reported, passing or not, so a user sees what was checked; any failure names
//! the file or field at fault.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ::wallet::chain::Registry;
use ::wallet::manifest::{self, Manifest};
use datanet_sync::format::{merkle_proof, merkle_root, verify_merkle_proof};
use datanet_sync::hub::HubClient;
use serde::{Deserialize, Serialize};

use crate::Studio;
use crate::chain::block_on;
use crate::error::{Error, Result};
use crate::publish::{CARD_FILE, MANIFEST_FILE, WEIGHTS_FILE, read_dir_files, sha256_file};

/// What to verify.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// A folder, or a repository id (`owner/name`) on the hub.
    pub target: String,
    /// The hub for a repository id; the publish hub by default.
    #[serde(default)]
    pub hub: Option<String>,
    /// Contribution ids to prove members of their Datanet's contributions root.
    #[serde(default)]
    pub contributions: Vec<String>,
    /// Skip the on-chain check (for a copy checked where the chain cannot be reached).
    #[serde(default)]
    pub skip_chain: bool,
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked: a file name, a manifest field, `signature`, `registry`, ...
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub target: String,
    /// Every check passed.
    pub ok: bool,
    pub manifest_hash: Option<String>,
    pub publisher: Option<String>,
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// The failed checks, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.subject, c.detail))
            .collect()
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Check {
            subject: subject.into(),
            ok: true,
            detail: detail.into(),
        });
    }
    fn fail(&mut self, subject: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Check {
            subject: subject.into(),
            ok: false,
            detail: detail.into(),
        });
    }
}

impl Studio {
    /// Verifies a published adapter folder or hub repository. An adapter that fails is a
    /// report with `ok: false`; an error only when the target cannot be read at all.
    pub fn verify(&self, request: &VerifyRequest) -> Result<VerifyReport> {
        let given = Path::new(&request.target);
        // A repository is downloaded into a temporary folder that lives until the end.
        let (folder, _download): (PathBuf, Option<tempfile::TempDir>) = if given.is_dir() {
            (given.to_path_buf(), None)
        } else if datanet_sync::hub::is_valid_repo_id(&request.target) {
            let temp = tempfile::tempdir().map_err(|source| Error::Io {
                what: "creating a folder for the download".into(),
                source,
            })?;
            self.download_repo(&request.target, request.hub.as_deref(), temp.path())?;
            (temp.path().to_path_buf(), Some(temp))
        } else {
            return Err(Error::InvalidInput {
                field: "target".into(),
                message: format!(
                    "{:?} is neither a folder nor a repository id (owner/name)",
                    request.target
                ),
            });
        };
        let mut checks = Checks(Vec::new());
        let manifest = check_files(&folder, &mut checks);
        let mut report = VerifyReport {
            target: request.target.clone(),
            ok: false,
            manifest_hash: None,
            publisher: None,
            checks: Vec::new(),
        };
        if let Some(manifest) = manifest {
            report.publisher = Some(manifest.publisher.to_checksum(None));
            match manifest.hash() {
                Ok(hash) => {
                    report.manifest_hash = Some(hash.to_string());
                    if !request.skip_chain {
                        self.check_registry(&manifest, hash, &folder, &mut checks);
                    }
                }
                Err(e) => checks.fail(MANIFEST_FILE, e.to_string()),
            }
            for id in &request.contributions {
                self.check_contribution(&manifest, id, &mut checks);
            }
        }
        report.ok = checks.0.iter().all(|c| c.ok);
        report.checks = checks.0;
        Ok(report)
    }

    fn download_repo(&self, repo: &str, hub: Option<&str>, dest: &Path) -> Result<()> {
        let (endpoint, token) = self.publish_hub(hub)?;
        let client = HubClient::new(&endpoint, token);
        let repo = repo.to_string();
        let dest = dest.to_path_buf();
        block_on(async move {
            for file in client.model_files(&repo, "main").await? {
                client
                    .download_model_file(&repo, &file.path, &dest.join(&file.path))
                    .await?;
            }
            Ok::<_, datanet_sync::Error>(())
        })??;
        Ok(())
    }

    fn check_registry(
        &self,
        manifest: &Manifest,
        hash: ::wallet::B256,
        folder: &Path,
        checks: &mut Checks,
    ) {
        let chain = match self.connect_chain() {
            Ok(chain) => chain,
            Err(e) => {
                checks.fail("registry", format!("the chain cannot be checked: {e}"));
                return;
            }
        };
        let registry = Registry::new(&chain.client, chain.contracts.registry);
        let found = match block_on(async move {
            let record = registry.get_registration(hash).await?;
            let at = registry.registered_at(hash).await?;
            Ok::<_, ::wallet::chain::ChainError>((record, at))
        }) {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                checks.fail("registry", e.to_string());
                return;
            }
            Err(e) => {
                checks.fail("registry", e.to_string());
                return;
            }
        };
        let (Some(record), at) = found else {
            checks.fail(
                "registry",
                format!(
                    "manifest {hash} is not registered with the registry {} on chain {}",
                    chain.contracts.registry,
                    chain.client.chain_id()
                ),
            );
            return;
        };
        let mut problems = Vec::new();
        if record.publisher != manifest.publisher {
            problems.push(format!(
                "the record's publisher is {}, the manifest's {}",
                record.publisher, manifest.publisher
            ));
        }
        match sha256_file(&folder.join(WEIGHTS_FILE)) {
            Ok((sha, _)) if format!("0x{sha}") == record.adapterHash.to_string() => {}
            Ok(_) => problems.push(format!(
                "the record's adapter hash {} is not the sha256 of {WEIGHTS_FILE}",
                record.adapterHash
            )),
            Err(e) => problems.push(e.to_string()),
        }
        if record.baseModel != manifest.base_model.repo {
            problems.push(format!(
                "the record's base model is {:?}, the manifest's {:?}",
                record.baseModel, manifest.base_model.repo
            ));
        }
        let recorded: Vec<(String, u16)> = record
            .contributors
            .iter()
            .zip(&record.shares)
            .map(|(a, s)| (a.to_string().to_lowercase(), *s))
            .collect();
        let manifested: Vec<(String, u16)> = manifest
            .attribution
            .shares
            .iter()
            .map(|s| (s.contributor.to_string().to_lowercase(), s.bps))
            .collect();
        if recorded != manifested {
            problems.push("the record's shares differ from the manifest's attribution".into());
        }
        let roots: Vec<String> = record
            .datanetRoots
            .iter()
            .map(|r| r.to_string().trim_start_matches("0x").to_string())
            .collect();
        let manifest_roots: Vec<String> = manifest
            .datanets
            .iter()
            .map(|d| d.contributions_root.clone())
            .collect();
        if roots != manifest_roots {
            problems.push("the record's Datanet roots differ from the manifest's".into());
        }
        if problems.is_empty() {
            let when = at
                .map(|a| format!(" in block {}", a.block_number))
                .unwrap_or_default();
            checks.pass(
                "registry",
                format!(
                    "registered{when} on chain {} by {}, {}",
                    chain.client.chain_id(),
                    record.publisher,
                    record.uri
                ),
            );
        } else {
            checks.fail("registry", problems.join("; "));
        }
    }

    fn check_contribution(&self, manifest: &Manifest, id: &str, checks: &mut Checks) {
        let subject = format!("contribution {id}");
        let Some(entry) = manifest
            .contributions
            .iter()
            .find(|c| c.contribution_id == id)
        else {
            checks.fail(subject, "not listed in the manifest");
            return;
        };
        let Some(datanet) = manifest.datanets.iter().find(|d| d.id == entry.datanet) else {
            checks.fail(
                subject,
                format!("its Datanet {} is not listed", entry.datanet),
            );
            return;
        };
        // The proof needs every id of the Datanet in shard order: the pulled copy has them.
        let ids = match self.datanet_ids(&datanet.id) {
            Ok(ids) => ids,
            Err(e) => {
                checks.fail(
                    subject,
                    format!(
                        "the Datanet {} is not here to prove it against: {e}",
                        datanet.id
                    ),
                );
                return;
            }
        };
        let result = (|| {
            let root = merkle_root(ids.iter().map(String::as_str))?;
            if root != datanet.contributions_root {
                return Ok(format!(
                    "the Datanet {} here has root {root}, not the manifest's {} (another revision?)",
                    datanet.id, datanet.contributions_root
                ));
            }
            let Some(index) = ids.iter().position(|i| i == id) else {
                return Ok(format!("not among the Datanet {}'s rows", datanet.id));
            };
            let proof = merkle_proof(ids.iter().map(String::as_str), index)?;
            Ok::<_, datanet_sync::Error>(if verify_merkle_proof(id, &proof, &root)? {
                String::new()
            } else {
                "its Merkle proof does not lead to the root".into()
            })
        })();
        match result {
            Ok(problem) if problem.is_empty() => checks.pass(
                subject,
                format!(
                    "in {} (root {}), {} row(s) trained",
                    datanet.id, datanet.contributions_root, entry.rows_used
                ),
            ),
            Ok(problem) => checks.fail(subject, problem),
            Err(e) => checks.fail(subject, e.to_string()),
        }
    }
}

/// The file checks: the manifest read and valid, its exact published form, every adapter
/// file's digest, `adapter_config.json` as the manifest holds it, the model card, no file the
/// manifest does not list, and the signature. Returns the manifest when it could be read.
fn check_files(folder: &Path, checks: &mut Checks) -> Option<Manifest> {
    let manifest_path = folder.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) => {
            checks.fail(MANIFEST_FILE, format!("cannot be read: {e}"));
            return None;
        }
    };
    let manifest = match manifest::read(&text) {
        Ok(m) => m,
        Err(e) => {
            checks.fail(MANIFEST_FILE, e.to_string());
            return None;
        }
    };
    match manifest.validate() {
        Ok(()) => checks.pass(MANIFEST_FILE, "a valid lineage manifest, version 1"),
        Err(e) => checks.fail(MANIFEST_FILE, e.to_string()),
    }
    // Formatting is not covered by the hash; the published bytes still must not change.
    match manifest.to_json_pretty() {
        Ok(rendered) if rendered == text => {}
        Ok(_) => checks.fail(
            MANIFEST_FILE,
            "its bytes differ from the form it was published in (edited by hand?)",
        ),
        Err(e) => checks.fail(MANIFEST_FILE, e.to_string()),
    }
    match manifest.verify() {
        Ok(signer) => checks.pass(
            "signature",
            format!("signed by the publisher {}", signer.to_checksum(None)),
        ),
        Err(e) => checks.fail("signature", e.to_string()),
    }

    let mut listed = BTreeSet::from([MANIFEST_FILE.to_string(), CARD_FILE.to_string()]);
    for file in &manifest.adapter.files {
        listed.insert(file.path.clone());
        match sha256_file(&folder.join(&file.path)) {
            Ok((sha, bytes)) if sha == file.sha256 && bytes == file.bytes => {
                checks.pass(&file.path, format!("sha256 {sha}"));
            }
            Ok((sha, bytes)) => checks.fail(
                &file.path,
                format!(
                    "sha256 {sha} ({bytes} bytes), but the manifest says {} ({} bytes)",
                    file.sha256, file.bytes
                ),
            ),
            Err(_) => checks.fail(&file.path, "missing"),
        }
    }
    let config_path = folder.join("adapter_config.json");
    if let Ok(bytes) = std::fs::read(&config_path) {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(config) if config == manifest.adapter.config => {}
            Ok(_) => checks.fail(
                "adapter_config.json",
                "differs from adapter.config in the manifest",
            ),
            Err(e) => checks.fail("adapter_config.json", format!("not JSON: {e}")),
        }
    }
    match (
        std::fs::read_to_string(folder.join(CARD_FILE)),
        manifest::card::model_card(&manifest),
    ) {
        (Ok(card), Ok(expected)) if card == expected => {
            checks.pass(CARD_FILE, "the model card the manifest gives");
        }
        (Ok(_), Ok(_)) => checks.fail(CARD_FILE, "differs from the model card the manifest gives"),
        (Err(_), _) => checks.fail(CARD_FILE, "missing"),
        (_, Err(e)) => checks.fail(CARD_FILE, e.to_string()),
    }
    match read_dir_files(folder) {
        Ok(files) => {
            for file in files {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // The hub's own attribute file is not part of the adapter.
                if !listed.contains(&name) && name != ".gitattributes" {
                    checks.fail(name, "not listed in the manifest");
                }
            }
        }
        Err(e) => checks.fail("folder", e.to_string()),
    }
    Some(manifest)
}
