//! A contribution to a Datanet: new rows and revised versions of existing rows, written by one
//! contributor against one revision of the Datanet, packaged as a JSON file its maintainers can
//! check and merge. Every row carries its contribution id; the package commits to all of them
//! with a Merkle root, which is what the contributor signs once the wallet is set up.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Content, Row, is_address, merkle_root};

/// The contribution file's schema version.
pub const CONTRIBUTION_VERSION: u32 = 1;

/// A new version of a row already in the Datanet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The contribution id of the row it replaces.
    pub revises: String,
    /// The new row, by the contributor of the package.
    pub row: Row,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    pub schema_version: u32,
    /// The Datanet, `owner/name`, and the revision the rows were written against.
    pub datanet: String,
    pub base_revision: String,
    pub contributor: String,
    pub created_at: String,
    pub rows: Vec<Row>,
    pub revisions: Vec<Revision>,
    /// Merkle root over the ids of `rows`, then of the revisions' rows, in order.
    pub contributions_root: String,
    /// The contributor's signature over `contributions_root`, added by the wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Who contributes, to what, when and under which licence.
#[derive(Debug, Clone, Copy)]
pub struct Author<'a> {
    pub datanet: &'a str,
    pub base_revision: &'a str,
    pub contributor: &'a str,
    pub created_at: &'a str,
    pub license: &'a str,
}

impl Contribution {
    /// Packages rows by the author: each must be valid and new to the Datanet (`existing`
    /// holds its ids); each revision must name a row that exists.
    pub fn package(
        author: Author<'_>,
        new_rows: Vec<Content>,
        revised: Vec<(String, Content)>,
        existing: &HashSet<String>,
    ) -> Result<Contribution> {
        let Author {
            datanet,
            base_revision,
            contributor,
            created_at,
            license,
        } = author;
        if !is_address(contributor) {
            return Err(Error::Invalid(format!(
                "the contributor {contributor:?} is not an 0x address"
            )));
        }
        let mut seen = HashSet::new();
        let mut make = |content: Content| -> Result<Row> {
            content.validate()?;
            let row = Row::new(content, contributor, created_at, license);
            if existing.contains(&row.contribution_id) || !seen.insert(row.contribution_id.clone())
            {
                return Err(Error::BadRow(format!(
                    "the row {} is already in the Datanet or the contribution",
                    row.contribution_id
                )));
            }
            Ok(row)
        };
        let rows = new_rows
            .into_iter()
            .map(&mut make)
            .collect::<Result<Vec<_>>>()?;
        let mut revisions = Vec::new();
        for (revises, content) in revised {
            if !existing.contains(&revises) {
                return Err(Error::UnknownRow(revises));
            }
            revisions.push(Revision {
                revises,
                row: make(content)?,
            });
        }
        if rows.is_empty() && revisions.is_empty() {
            return Err(Error::Invalid(
                "nothing to contribute: no new rows and no edits".into(),
            ));
        }
        let contributions_root = merkle_root(
            rows.iter()
                .chain(revisions.iter().map(|r| &r.row))
                .map(|r| r.contribution_id.as_str()),
        )?;
        Ok(Contribution {
            schema_version: CONTRIBUTION_VERSION,
            datanet: datanet.to_string(),
            base_revision: base_revision.to_string(),
            contributor: contributor.to_string(),
            created_at: created_at.to_string(),
            rows,
            revisions,
            contributions_root,
            signature: None,
        })
    }

    /// Checks a package read from elsewhere: every row valid and by the package's contributor,
    /// and the root matching the rows.
    pub fn verify(&self) -> Result<()> {
        if self.schema_version != CONTRIBUTION_VERSION {
            return Err(Error::Invalid(format!(
                "contribution schema version {} (this build reads {CONTRIBUTION_VERSION})",
                self.schema_version
            )));
        }
        let all: Vec<&Row> = self
            .rows
            .iter()
            .chain(self.revisions.iter().map(|r| &r.row))
            .collect();
        for row in &all {
            row.validate()?;
            if !row.contributor.eq_ignore_ascii_case(&self.contributor) {
                return Err(Error::BadRow(format!(
                    "row {} is by {}, not by the package's contributor {}",
                    row.contribution_id, row.contributor, self.contributor
                )));
            }
        }
        let root = merkle_root(all.iter().map(|r| r.contribution_id.as_str()))?;
        if root != self.contributions_root {
            return Err(Error::Invalid(format!(
                "the contributions root {} does not match the rows ({root})",
                self.contributions_root
            )));
        }
        Ok(())
    }

    /// Writes the package as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Invalid(format!("serialising the contribution: {e}")))?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, json).map_err(Error::io("writing the contribution", &partial))?;
        std::fs::rename(&partial, path).map_err(Error::io("writing the contribution", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "0x3333333333333333333333333333333333333333";

    fn qa(q: &str, a: &str) -> Content {
        Content::Instruction {
            instruction: q.into(),
            input: String::new(),
            output: a.into(),
        }
    }

    #[test]
    fn a_package_commits_to_its_rows_and_refuses_what_is_already_there() {
        let base = Row::new(qa("q", "a"), ME, "t", "MIT");
        let existing = HashSet::from([base.contribution_id.clone()]);
        let author = Author {
            datanet: "o/n",
            base_revision: "rev",
            contributor: ME,
            created_at: "t2",
            license: "MIT",
        };
        let package = Contribution::package(
            author,
            vec![qa("new", "row")],
            vec![(base.contribution_id.clone(), qa("q", "a better answer"))],
            &existing,
        )
        .expect("packages");
        package.verify().expect("verifies");
        assert_eq!(package.revisions[0].revises, base.contribution_id);

        let mut tampered = package.clone();
        tampered.rows[0].content = qa("new", "changed");
        assert!(tampered.verify().is_err());

        let same_again = Contribution::package(
            Author {
                created_at: "t",
                ..author
            },
            vec![qa("q", "a")],
            vec![],
            &existing,
        );
        assert!(same_again.is_err(), "the row is already in the Datanet");
        let unknown = Contribution::package(
            author,
            vec![],
            vec![("ff".repeat(32), qa("q", "a"))],
            &existing,
        );
        assert!(matches!(unknown, Err(Error::UnknownRow(_))));
        let nobody = Author {
            contributor: "me",
            ..author
        };
        assert!(Contribution::package(nobody, vec![qa("a", "b")], vec![], &existing).is_err());
    }
}
