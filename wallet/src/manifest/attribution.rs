//! Who gets what share of an adapter's rewards.
//!
//! Version 1 knows one method, `row-share`: each contributor's share of the training rows.
//! It measures how much of the data someone wrote, not how much it moved the model; an
//! influence estimate would be a separate, named method.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use super::{Contribution, ManifestError, invalid};

/// Basis points in a whole: the registry contract requires shares summing to exactly this.
pub const TOTAL_BPS: u16 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributionMethod {
    /// Shares proportional to the rows each contributor had in the training set.
    #[serde(rename = "row-share")]
    RowShare,
}

impl AttributionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributionMethod::RowShare => "row-share",
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    pub method: AttributionMethod,
    /// In strictly ascending address order, every share above zero, summing to 10 000: the
    /// shape the registry contract accepts as it is.
    pub shares: Vec<Share>,
}

impl Attribution {
    /// Row-share attribution: each contributor's rows over all rows used, in basis points.
    ///
    /// The rounding is the largest-remainder method, so the shares sum to exactly 10 000:
    /// everyone gets the floor of their exact share, and the basis points left over go one
    /// each to the largest remainders, ties broken by more rows, then by the lower address.
    /// Contributors whose share rounds to zero are left out (the contract refuses zero
    /// shares); their contributions stay listed in the manifest.
    pub fn row_share(contributions: &[Contribution]) -> Result<Attribution, ManifestError> {
        let mut rows: BTreeMap<Address, u128> = BTreeMap::new();
        for c in contributions {
            *rows.entry(c.contributor).or_default() += u128::from(c.rows_used);
        }
        let total: u128 = rows.values().sum();
        if total == 0 {
            return Err(invalid(
                "contributions",
                "no rows were used, so there is nothing to attribute",
            ));
        }
        let whole = u128::from(TOTAL_BPS);
        // (address, rows, floor, remainder), in address order.
        let mut parts: Vec<(Address, u128, u128, u128)> = rows
            .iter()
            .map(|(&address, &r)| (address, r, r * whole / total, r * whole % total))
            .collect();
        let assigned: u128 = parts.iter().map(|p| p.2).sum();
        let leftover = (whole - assigned) as usize;
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&parts[a], &parts[b]);
            pb.3.cmp(&pa.3).then(pb.1.cmp(&pa.1)).then(pa.0.cmp(&pb.0))
        });
        for &i in order.iter().take(leftover) {
            parts[i].2 += 1;
        }
        let shares = parts
            .into_iter()
            .filter(|p| p.2 > 0)
            .map(|(contributor, _, bps, _)| Share {
                contributor,
                // At most 10 000, so it fits.
                bps: bps as u16,
            })
            .collect();
        Ok(Attribution {
            method: AttributionMethod::RowShare,
            shares,
        })
    }

    /// Checks the table's shape (order, zeros, the sum) and that it is what the method gives
    /// for these contributions.
    pub(super) fn validate(&self, contributions: &[Contribution]) -> Result<(), ManifestError> {
        if self.shares.is_empty() {
            return Err(invalid("attribution.shares", "no shares"));
        }
        for (i, pair) in self.shares.windows(2).enumerate() {
            if pair[0].contributor >= pair[1].contributor {
                return Err(invalid(
                    format!("attribution.shares[{}]", i + 1),
                    format!(
                        "{} is not after {} (contributors must be in strictly ascending order)",
                        pair[1].contributor, pair[0].contributor
                    ),
                ));
            }
        }
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
        match self.method {
            AttributionMethod::RowShare => {
                let expected = Attribution::row_share(contributions)?;
                if expected.shares != self.shares {
                    return Err(invalid(
                        "attribution.shares",
                        "they are not the row shares of the contributions listed",
                    ));
                }
            }
        }
        Ok(())
    }
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
}
