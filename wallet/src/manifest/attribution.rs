//! Who gets what share of an adapter's rewards.
//!
//! Two methods:
//! - `row-share` (versions 1 and 2): each contributor's share of the training rows. It
//!   measures how much of the data someone wrote, not how much it moved the model.
//! - `datainf` (version 2): each contributor's measured influence on the adapter's evaluation
//!   loss (DataInf over the LoRA gradients). The manifest carries every contributor's score,
//!   so anyone can recompute the shares from it; negative scores (rows that made the adapter
//!   worse) get nothing and are flagged harmful.
//!
//! Both round by the largest-remainder method, so the shares sum to exactly 10 000.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use super::{Contribution, ManifestError, invalid};

/// Basis points in a whole: the registry contract requires shares summing to exactly this.
pub const TOTAL_BPS: u16 = 10_000;

/// Influence scores are split in units of 10^-12: fine enough for any loss change a float
/// resolves, and integers, so every reader rounds the same way.
const SCORE_UNITS: f64 = 1e12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributionMethod {
    /// Shares proportional to the rows each contributor had in the training set.
    #[serde(rename = "row-share")]
    RowShare,
    /// Shares proportional to each contributor's positive DataInf influence.
    #[serde(rename = "datainf")]
    DataInf,
}

impl AttributionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributionMethod::RowShare => "row-share",
            AttributionMethod::DataInf => "datainf",
        }
    }
}

/// One contributor's share, in basis points (1/100 of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    #[serde(with = "super::lower_address")]
    pub contributor: Address,
    pub bps: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    pub method: AttributionMethod,
    /// In strictly ascending address order, every share above zero, summing to 10 000: the
    /// shape the registry contract accepts as it is.
    pub shares: Vec<Share>,
    /// What `datainf` shares were computed from; absent for `row-share`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influence: Option<Influence>,
}

/// The measured influence behind `datainf` shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Influence {
    /// Every contributor with rows in the training set, in strictly ascending address order.
    pub scores: Vec<InfluenceScore>,
    /// The summed score of trained rows that name no contributor (local files): credited to
    /// nobody.
    pub uncredited_score: f64,
    /// Training rows scored.
    pub train_rows: u64,
    /// Held-out rows whose loss the scores are about.
    pub eval_rows: u64,
    /// Each layer's damping as a fraction of its mean squared gradient norm (DataInf's 0.1).
    pub damping: f64,
    /// How well the method predicted retrained adapters' losses on this run, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<InfluenceAccuracy>,
}

/// A contributor's summed row scores: how much up-weighting their rows lowers the evaluation
/// loss. Negative: their rows raised it (harmful, shared nothing).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluenceScore {
    #[serde(with = "super::lower_address")]
    pub contributor: Address,
    pub score: f64,
}

/// The method's accuracy, measured by retraining.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluenceAccuracy {
    /// Linear Datamodeling Score: Spearman correlation between predicted and actual
    /// evaluation losses of adapters retrained on random halves.
    pub lds: f64,
    /// The halves retrained.
    pub subsets: u64,
    /// Share of contributors whose credit has the sign of what leaving them out costs.
    pub loco_sign_agreement: f64,
}

impl Attribution {
    /// Row-share attribution: each contributor's rows over all rows used, in basis points.
    ///
    /// Contributors whose share rounds to zero are left out (the contract refuses zero
    /// shares); their contributions stay listed in the manifest.
    pub fn row_share(contributions: &[Contribution]) -> Result<Attribution, ManifestError> {
        let mut rows: BTreeMap<Address, u128> = BTreeMap::new();
        for c in contributions {
            *rows.entry(c.contributor).or_default() += u128::from(c.rows_used);
        }
        Ok(Attribution {
            method: AttributionMethod::RowShare,
            shares: largest_remainder(&rows)
                .map(nonzero_shares)
                .ok_or_else(|| {
                    invalid(
                        "contributions",
                        "no rows were used, so there is nothing to attribute",
                    )
                })?,
            influence: None,
        })
    }

    /// DataInf attribution: shares proportional to each contributor's positive score.
    /// Contributors whose rows raised the evaluation loss get none.
    pub fn datainf(mut influence: Influence) -> Result<Attribution, ManifestError> {
        influence.scores.sort_by_key(|s| s.contributor);
        let shares = influence_shares(&influence.scores)?;
        Ok(Attribution {
            method: AttributionMethod::DataInf,
            shares,
            influence: Some(influence),
        })
    }

    /// Checks the table's shape (order, zeros, the sum) and that it is what the method gives
    /// for these contributions.
    pub(super) fn validate(&self, contributions: &[Contribution]) -> Result<(), ManifestError> {
        if self.shares.is_empty() {
            return Err(invalid("attribution.shares", "no shares"));
        }
        ascending(
            "attribution.shares",
            self.shares.iter().map(|s| s.contributor),
        )?;
        if let Some(i) = self.shares.iter().position(|s| s.bps == 0) {
            return Err(invalid(format!("attribution.shares[{i}]"), "a zero share"));
        }
        let sum: u32 = self.shares.iter().map(|s| u32::from(s.bps)).sum();
        if sum != u32::from(TOTAL_BPS) {
            return Err(invalid(
                "attribution.shares",
                format!("the shares sum to {sum} basis points, not {TOTAL_BPS}"),
            ));
        }
        match (self.method, &self.influence) {
            (AttributionMethod::RowShare, None) => {
                let expected = Attribution::row_share(contributions)?;
                if expected.shares != self.shares {
                    return Err(invalid(
                        "attribution.shares",
                        "they are not the row shares of the contributions listed",
                    ));
                }
            }
            (AttributionMethod::RowShare, Some(_)) => {
                return Err(invalid(
                    "attribution.influence",
                    "row-share attribution carries no influence scores",
                ));
            }
            (AttributionMethod::DataInf, None) => {
                return Err(invalid(
                    "attribution.influence",
                    "datainf attribution needs the scores its shares come from",
                ));
            }
            (AttributionMethod::DataInf, Some(influence)) => {
                influence.validate(contributions)?;
                if influence_shares(&influence.scores)? != self.shares {
                    return Err(invalid(
                        "attribution.shares",
                        "they are not the shares of the influence scores listed",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Influence {
    fn validate(&self, contributions: &[Contribution]) -> Result<(), ManifestError> {
        const FIELD: &str = "attribution.influence";
        ascending(
            &format!("{FIELD}.scores"),
            self.scores.iter().map(|s| s.contributor),
        )?;
        if let Some(i) = self.scores.iter().position(|s| !s.score.is_finite()) {
            return Err(invalid(
                format!("{FIELD}.scores[{i}].score"),
                "not a finite number",
            ));
        }
        let scored: BTreeSet<Address> = self.scores.iter().map(|s| s.contributor).collect();
        let trained: BTreeSet<Address> = contributions
            .iter()
            .filter(|c| c.rows_used > 0)
            .map(|c| c.contributor)
            .collect();
        if let Some(missing) = trained.difference(&scored).next() {
            return Err(invalid(
                format!("{FIELD}.scores"),
                format!("{missing} has rows in the training set but no score"),
            ));
        }
        if let Some(extra) = scored.difference(&trained).next() {
            return Err(invalid(
                format!("{FIELD}.scores"),
                format!("{extra} is scored but has no rows in the training set"),
            ));
        }
        if !self.uncredited_score.is_finite() {
            return Err(invalid(
                format!("{FIELD}.uncredited_score"),
                "not a finite number",
            ));
        }
        if self.train_rows == 0 || self.eval_rows == 0 {
            return Err(invalid(
                FIELD,
                "influence needs training rows and evaluation rows",
            ));
        }
        if !(self.damping.is_finite() && self.damping > 0.0) {
            return Err(invalid(format!("{FIELD}.damping"), "not a positive number"));
        }
        if let Some(a) = &self.accuracy {
            let in_range = |v: f64, lo: f64| v.is_finite() && (lo..=1.0).contains(&v);
            if !in_range(a.lds, -1.0) || !in_range(a.loco_sign_agreement, 0.0) || a.subsets < 2 {
                return Err(invalid(
                    format!("{FIELD}.accuracy"),
                    "lds must lie in [-1, 1], loco_sign_agreement in [0, 1], with two subsets or more",
                ));
            }
        }
        Ok(())
    }
}

/// Shares of the positive scores, each quantised to [`SCORE_UNITS`].
fn influence_shares(scores: &[InfluenceScore]) -> Result<Vec<Share>, ManifestError> {
    if let Some(s) = scores.iter().find(|s| !s.score.is_finite()) {
        return Err(invalid(
            "attribution.influence.scores",
            format!("{}: {} is not a finite number", s.contributor, s.score),
        ));
    }
    let units = scores
        .iter()
        .map(|s| (s.contributor, score_units(s.score)))
        .collect();
    largest_remainder(&units).map(nonzero_shares).ok_or_else(|| {
        invalid(
            "attribution.influence.scores",
            "no contributor lowered the evaluation loss, so there is nothing to share by influence \
             (publish with row-share instead)",
        )
    })
}

/// Basis points of influence scores by the rule a verifier applies to a manifest: negative and
/// non-finite scores count as zero, the rest are quantised to [`SCORE_UNITS`] and split by
/// largest remainder; all zero when no score is positive. The studio's attribution report uses
/// it as well, so the shares it shows are the ones a published manifest carries.
pub fn influence_bps<K: Ord + Clone>(scores: &BTreeMap<K, f64>) -> BTreeMap<K, u16> {
    let units = scores
        .iter()
        .map(|(key, &score)| (key.clone(), score_units(score)))
        .collect();
    largest_remainder(&units).unwrap_or_else(|| scores.keys().map(|k| (k.clone(), 0)).collect())
}

fn score_units(score: f64) -> u128 {
    if !score.is_finite() {
        return 0;
    }
    // The cap (far beyond any loss change) keeps the products in `largest_remainder` in range.
    (score.clamp(0.0, 1e18) * SCORE_UNITS).floor() as u128
}

/// The contract refuses zero shares; those contributors stay listed, without a share.
fn nonzero_shares(bps: BTreeMap<Address, u16>) -> Vec<Share> {
    bps.into_iter()
        .filter(|&(_, bps)| bps > 0)
        .map(|(contributor, bps)| Share { contributor, bps })
        .collect()
}

/// Splits 10 000 basis points in proportion to `weights`: everyone gets the floor of their
/// exact share, and the points left over go one each to the largest remainders, ties broken
/// by the larger weight, then by the lower key. `None` when every weight is zero.
fn largest_remainder<K: Ord + Clone>(weights: &BTreeMap<K, u128>) -> Option<BTreeMap<K, u16>> {
    let total: u128 = weights.values().sum();
    if total == 0 {
        return None;
    }
    let whole = u128::from(TOTAL_BPS);
    // (key, weight, floor, remainder), in key order.
    let mut parts: Vec<(&K, u128, u128, u128)> = weights
        .iter()
        .map(|(key, &w)| (key, w, w * whole / total, w * whole % total))
        .collect();
    let assigned: u128 = parts.iter().map(|p| p.2).sum();
    let leftover = (whole - assigned) as usize;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&parts[a], &parts[b]);
        pb.3.cmp(&pa.3).then(pb.1.cmp(&pa.1)).then(pa.0.cmp(pb.0))
    });
    for &i in order.iter().take(leftover) {
        parts[i].2 += 1;
    }
    Some(
        parts
            .into_iter()
            // At most 10 000, so it fits.
            .map(|(key, _, bps, _)| (key.clone(), bps as u16))
            .collect(),
    )
}

fn ascending(field: &str, addresses: impl Iterator<Item = Address>) -> Result<(), ManifestError> {
    let list: Vec<Address> = addresses.collect();
    for (i, pair) in list.windows(2).enumerate() {
        if pair[0] >= pair[1] {
            return Err(invalid(
                format!("{field}[{}]", i + 1),
                format!(
                    "{} is not after {} (contributors must be in strictly ascending order)",
                    pair[1], pair[0]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(byte: u8, rows_used: u64) -> Contribution {
        Contribution {
            contribution_id: format!("{byte:02x}").repeat(32),
            datanet: "alice/clinical".into(),
            contributor: Address::repeat_byte(byte),
            content_hash: format!("{byte:02x}").repeat(32),
            license: "CC-BY-4.0".into(),
            rows_used,
        }
    }

    fn bps(a: &Attribution) -> Vec<u16> {
        a.shares.iter().map(|s| s.bps).collect()
    }

    #[test]
    fn thirds_go_to_the_lowest_address_on_a_tie() {
        let a =
            Attribution::row_share(&[contribution(3, 1), contribution(1, 1), contribution(2, 1)])
                .expect("shares");
        assert_eq!(bps(&a), [3334, 3333, 3333]);
        assert_eq!(a.shares[0].contributor, Address::repeat_byte(1));
    }

    #[test]
    fn largest_remainders_win_the_leftover() {
        // 1/6, 2/6, 3/6 of 10 000: 1666.67, 3333.33, 5000 -> the first remainder is largest.
        let a =
            Attribution::row_share(&[contribution(1, 1), contribution(2, 2), contribution(3, 3)])
                .expect("shares");
        assert_eq!(bps(&a), [1667, 3333, 5000]);
    }

    #[test]
    fn equal_remainders_go_to_more_rows_first() {
        // Seven contributors with one row each: 1428.57 each, 4 left over -> the four lowest
        // addresses (all remainders and row counts tie).
        let many: Vec<Contribution> = (1..=7).map(|b| contribution(b, 1)).collect();
        let a = Attribution::row_share(&many).expect("shares");
        assert_eq!(bps(&a), [1429, 1429, 1429, 1429, 1428, 1428, 1428]);
        // Rows 1, 4 and 25 of 30: floors 333, 1333, 8333 and every remainder is 10, so the one
        // basis point left goes to the contributor with the most rows.
        let a =
            Attribution::row_share(&[contribution(1, 1), contribution(2, 4), contribution(3, 25)])
                .expect("shares");
        assert_eq!(
            a.shares.iter().map(|s| u32::from(s.bps)).sum::<u32>(),
            10_000
        );
        assert_eq!(bps(&a), [333, 1333, 8334]);
    }

    #[test]
    fn several_contributions_of_one_contributor_add_up_and_tiny_shares_drop() {
        let mut list = vec![contribution(1, 20_000), contribution(1, 19_999)];
        list.push(contribution(2, 1));
        let a = Attribution::row_share(&list).expect("shares");
        assert_eq!(a.shares.len(), 1);
        assert_eq!(a.shares[0].bps, 10_000);
        assert!(a.validate(&list).is_ok());
    }

    #[test]
    fn no_rows_is_an_error() {
        assert!(Attribution::row_share(&[contribution(1, 0)]).is_err());
        assert!(Attribution::row_share(&[]).is_err());
    }

    #[test]
    fn validate_refuses_wrong_tables() {
        let list = [contribution(1, 1), contribution(2, 1)];
        let good = Attribution::row_share(&list).expect("shares");
        assert!(good.validate(&list).is_ok());

        let mut short = good.clone();
        short.shares[1].bps -= 1;
        let err = short.validate(&list).expect_err("9999");
        assert!(err.to_string().contains("9999"), "{err}");

        let mut swapped = good.clone();
        swapped.shares.swap(0, 1);
        assert!(swapped.validate(&list).is_err());

        let mut other = good.clone();
        other.shares[0].bps = 6000;
        other.shares[1].bps = 4000;
        let err = other.validate(&list).expect_err("not row shares");
        assert!(err.to_string().contains("row shares"), "{err}");
    }

    fn influence(scores: &[(u8, f64)]) -> Influence {
        Influence {
            scores: scores
                .iter()
                .map(|&(byte, score)| InfluenceScore {
                    contributor: Address::repeat_byte(byte),
                    score,
                })
                .collect(),
            uncredited_score: 0.0,
            train_rows: 4,
            eval_rows: 2,
            damping: 0.1,
            accuracy: None,
        }
    }

    #[test]
    fn report_shares_round_as_the_manifest_does_and_credit_no_harm() {
        let scores: BTreeMap<&str, f64> =
            [("a", 3.0), ("b", 1.0), ("c", -2.0), ("file:d.csv", 2.0)].into();
        let report = influence_bps(&scores);
        assert_eq!(
            report.values().copied().collect::<Vec<_>>(),
            [5000, 1667, 0, 3333]
        );
        let harm: BTreeMap<&str, f64> = [("a", -1.0), ("b", 0.0), ("c", f64::NAN)].into();
        assert_eq!(
            influence_bps(&harm).values().copied().collect::<Vec<_>>(),
            [0, 0, 0]
        );
        // The same scores keyed by address give the manifest's shares.
        let a = Attribution::datainf(influence(&[(1, 3.0), (2, 1.0), (3, -2.0), (4, 2.0)]))
            .expect("shares");
        assert_eq!(bps(&a), [5000, 1667, 3333]);
    }

    #[test]
    fn influence_shares_clip_harm_and_sum_to_ten_thousand() {
        // 3 : 1 : 2 of the positive total 6, and nothing for the harmful -2.
        let a = Attribution::datainf(influence(&[(1, 3.0), (2, 1.0), (3, -2.0), (4, 2.0)]))
            .expect("shares");
        assert_eq!(bps(&a), [5000, 1667, 3333]);
        assert!(
            !a.shares
                .iter()
                .any(|s| s.contributor == Address::repeat_byte(3))
        );
        let list: Vec<Contribution> = (1..=4).map(|b| contribution(b, 1)).collect();
        assert!(a.validate(&list).is_ok());
        // Scores given out of order are sorted by address.
        let b = Attribution::datainf(influence(&[(4, 2.0), (1, 3.0), (3, -2.0), (2, 1.0)]))
            .expect("shares");
        assert_eq!(a, b);
    }

    #[test]
    fn influence_with_no_positive_score_is_an_error() {
        let err = Attribution::datainf(influence(&[(1, -1.0), (2, 0.0)])).expect_err("none");
        assert!(err.to_string().contains("row-share"), "{err}");
        assert!(Attribution::datainf(influence(&[(1, f64::NAN)])).is_err());
    }

    #[test]
    fn validate_refuses_influence_that_does_not_match() {
        let list: Vec<Contribution> = (1..=3).map(|b| contribution(b, 1)).collect();
        let good =
            Attribution::datainf(influence(&[(1, 2.0), (2, 1.0), (3, -1.0)])).expect("shares");
        assert!(good.validate(&list).is_ok());

        // Shares that are not the scores' shares.
        let mut skewed = good.clone();
        skewed.shares[0].bps -= 1;
        skewed.shares[1].bps += 1;
        let err = skewed.validate(&list).expect_err("skewed");
        assert!(err.to_string().contains("influence scores"), "{err}");

        // A contributor with trained rows but no score, and one scored without rows.
        let mut missing = good.clone();
        if let Some(i) = missing.influence.as_mut() {
            i.scores.pop();
        }
        let err = missing.validate(&list).expect_err("missing");
        assert!(err.to_string().contains("no score"), "{err}");
        let mut held_out = list.clone();
        held_out[2].rows_used = 0;
        let err = good.validate(&held_out).expect_err("extra");
        assert!(err.to_string().contains("no rows"), "{err}");

        // The method and its evidence must go together.
        let mut bare = good.clone();
        bare.influence = None;
        assert!(bare.validate(&list).is_err());
        let mut row = Attribution::row_share(&list).expect("rows");
        row.influence = good.influence.clone();
        assert!(row.validate(&list).is_err());

        // Accuracy outside its range.
        let mut wild = good;
        if let Some(i) = wild.influence.as_mut() {
            i.accuracy = Some(InfluenceAccuracy {
                lds: 1.5,
                subsets: 20,
                loco_sign_agreement: 1.0,
            });
        }
        assert!(wild.validate(&list).is_err());
    }
}
