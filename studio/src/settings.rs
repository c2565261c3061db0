//! User settings, stored in the catalog. Environment variables win over stored values so that
//! scripts and CI can steer a studio without touching its workspace.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::{Error, Result};

pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";
/// The endpoint variable `huggingface_hub` and `hf-hub` already honour.
pub const HUB_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Overrides the Datanet hub setting.
pub const DATANET_HUB_ENV: &str = "MODELFACTORY_DATANET_HUB";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendChoice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Cuda => "cuda",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => BackendChoice::Auto,
            "cpu" => BackendChoice::Cpu,
            "wgpu" => BackendChoice::Wgpu,
            "cuda" => BackendChoice::Cuda,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub hub_endpoint: String,
    pub default_backend: BackendChoice,
    /// Where Datanets are searched and pulled from: a Hugging Face–compatible hub, or empty
    /// for the hub built into the studio, which serves the demo Datanet.
    #[serde(default)]
    pub datanet_hub: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hub_endpoint: DEFAULT_HUB_ENDPOINT.into(),
            default_backend: BackendChoice::Auto,
            datanet_hub: String::new(),
        }
    }
}

impl Settings {
    pub fn load(db: &Db) -> Result<Self> {
        let conn = db.lock();
        let get = |key: &str| -> Result<Option<String>> {
            Ok(conn
                .query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?)
        };
        let mut s = Settings::default();
        if let Some(v) = get("hub_endpoint")? {
            s.hub_endpoint = v;
        }
        if let Some(b) = get("default_backend")?
            .as_deref()
            .and_then(BackendChoice::parse)
        {
            s.default_backend = b;
        }
        if let Some(v) = get("datanet_hub")? {
            s.datanet_hub = v;
        }
        Ok(s)
    }

    pub fn save(&self, db: &Db) -> Result<()> {
        self.validate()?;
        let mut conn = db.lock();
        let tx = conn.transaction()?;
        for (k, v) in [
            ("hub_endpoint", self.hub_endpoint.trim_end_matches('/')),
            ("default_backend", self.default_backend.as_str()),
            ("datanet_hub", self.datanet_hub.trim().trim_end_matches('/')),
        ] {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let e = self.hub_endpoint.trim();
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < "http://x".len() {
            return Err(Error::InvalidSetting {
                key: "hub_endpoint".into(),
                message: format!("{e:?} is not an http(s) address"),
            });
        }
        let d = self.datanet_hub.trim();
        if !(d.is_empty() || d.starts_with("http://") || d.starts_with("https://")) {
            return Err(Error::InvalidSetting {
                key: "datanet_hub".into(),
                message: format!(
                    "{d:?} is not an http(s) address (leave it empty for the built-in hub)"
                ),
            });
        }
        Ok(())
    }

    /// The Datanet hub in force: `MODELFACTORY_DATANET_HUB` if set, else the stored one;
    /// `None` means the hub built into the studio.
    pub fn effective_datanet_hub(&self) -> Option<String> {
        std::env::var(DATANET_HUB_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| Some(self.datanet_hub.clone()).filter(|v| !v.is_empty()))
    }

    /// The hub endpoint in force: `HF_ENDPOINT` if set, else the stored one.
    pub fn effective_hub_endpoint(&self) -> String {
        std::env::var(HUB_ENDPOINT_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.hub_endpoint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_reject_nonsense() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("s.sqlite3")).expect("db");
        assert_eq!(Settings::load(&db).expect("load"), Settings::default());
        let s = Settings {
            hub_endpoint: "http://127.0.0.1:9/".into(),
            default_backend: BackendChoice::Cpu,
            datanet_hub: String::new(),
        };
        s.save(&db).expect("save");
        let back = Settings::load(&db).expect("load");
        assert_eq!(back.hub_endpoint, "http://127.0.0.1:9");
        assert_eq!(back.default_backend, BackendChoice::Cpu);
        let bad = Settings {
            hub_endpoint: "ftp:/nope".into(),
            ..Settings::default()
        };
        assert!(matches!(bad.save(&db), Err(Error::InvalidSetting { .. })));
        assert_eq!(
            Settings::load(&db).expect("load"),
            back,
            "a rejected save changes nothing"
        );
    }
}
