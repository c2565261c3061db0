//! The reward splitter: pay ether into a registered adapter, see what each contributor is
//! owed, withdraw it.
//!
//! The contract credits contributor i `floor(amount × shares[i] / 10 000)` and the remainder
//! (fewer wei than there are contributors) to the largest share, the first of them on a tie,
//! so every payment is credited to the wei. [`split`] computes the same locally.

use alloy_network::TransactionBuilder;
use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_eth::TransactionRequest;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use tracing::info;

use super::client::{ChainClient, GasPreview, TxOutcome};
use super::contracts::RewardSplitter::{self, RewardSplitterInstance};
use super::{Result, TOTAL_SHARES};

/// A withdrawal that went through: how much left the splitter, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub tx: TxOutcome,
    pub account: Address,
    pub to: Address,
    pub amount: U256,
}

/// The splitter contract at one address, through a [`ChainClient`].
#[derive(Clone, Debug)]
pub struct Rewards {
    client: ChainClient,
    address: Address,
}

impl Rewards {
    pub fn new(client: &ChainClient, address: Address) -> Self {
        Self {
            client: client.clone(),
            address,
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    fn contract(&self) -> RewardSplitterInstance<alloy_provider::DynProvider> {
        RewardSplitter::new(self.address, self.client.provider().clone())
    }

    fn pay_tx(&self, manifest_hash: B256, amount: U256) -> TransactionRequest {
        TransactionRequest::default()
            .with_to(self.address)
            .with_value(amount)
            .with_input(
                RewardSplitter::payCall {
                    manifestHash: manifest_hash,
                }
                .abi_encode(),
            )
    }

    /// Gas and the most a payment of `amount` wei may cost `from`, the amount included.
    pub async fn preview_pay(
        &self,
        from: Address,
        manifest_hash: B256,
        amount: U256,
    ) -> Result<GasPreview> {
        self.client
            .preview("pay", from, &self.pay_tx(manifest_hash, amount))
            .await
    }

    /// Pays `amount` wei from `payer` into the adapter registered as `manifest_hash`.
    pub async fn pay(
        &self,
        payer: &PrivateKeySigner,
        manifest_hash: B256,
        amount: U256,
    ) -> Result<TxOutcome> {
        let outcome = self
            .client
            .send("pay", payer, self.pay_tx(manifest_hash, amount))
            .await?;
        info!(manifest = %manifest_hash, wei = %amount, tx = %outcome.tx_hash, "paid into adapter");
        Ok(outcome)
    }

    /// What a payment of `amount` wei would credit each contributor, as the contract computes it.
    pub async fn preview(&self, manifest_hash: B256, amount: U256) -> Result<Vec<(Address, U256)>> {
        let out = self
            .contract()
            .preview(manifest_hash, amount)
            .call()
            .await
            .map_err(|e| self.client.contract_error("preview", e))?;
        Ok(out.contributors.into_iter().zip(out.amounts).collect())
    }

    /// Credited to `account` and not yet withdrawn.
    pub async fn owed(&self, account: Address) -> Result<U256> {
        self.contract()
            .owed(account)
            .call()
            .await
            .map_err(|e| self.client.contract_error("owed", e))
    }

    /// Paid into the adapter `manifest_hash` so far.
    pub async fn paid_into(&self, manifest_hash: B256) -> Result<U256> {
        self.contract()
            .paidInto(manifest_hash)
            .call()
            .await
            .map_err(|e| self.client.contract_error("paidInto", e))
    }

    /// Paid into all adapters and withdrawn by all accounts so far.
    pub async fn totals(&self) -> Result<(U256, U256)> {
        let contract = self.contract();
        let paid = contract
            .totalPaid()
            .call()
            .await
            .map_err(|e| self.client.contract_error("totalPaid", e))?;
        let withdrawn = contract
            .totalWithdrawn()
            .call()
            .await
            .map_err(|e| self.client.contract_error("totalWithdrawn", e))?;
        Ok((paid, withdrawn))
    }

    /// Sends `account` everything it is owed. Nothing owed is the contract's `NothingOwed`.
    pub async fn withdraw(&self, account: &PrivateKeySigner) -> Result<Withdrawal> {
        let tx = TransactionRequest::default()
            .with_to(self.address)
            .with_input(RewardSplitter::withdrawCall {}.abi_encode());
        self.finish_withdrawal(account, tx).await
    }

    /// Sends everything `account` is owed to `to`.
    pub async fn withdraw_to(&self, account: &PrivateKeySigner, to: Address) -> Result<Withdrawal> {
        let tx = TransactionRequest::default()
            .with_to(self.address)
            .with_input(RewardSplitter::withdrawToCall { to }.abi_encode());
        self.finish_withdrawal(account, tx).await
    }

    async fn finish_withdrawal(
        &self,
        account: &PrivateKeySigner,
        tx: TransactionRequest,
    ) -> Result<Withdrawal> {
        let outcome = self.client.send("withdraw", account, tx).await?;
        // The Withdrawn event says exactly what moved, whatever happened between a read of
        // `owed` and the transaction.
        let event = outcome
            .logs
            .iter()
            .filter(|log| log.address() == self.address)
            .find_map(|log| log.log_decode::<RewardSplitter::Withdrawn>().ok())
            .map(|log| log.inner.data);
        let (to, amount) = match event {
            Some(e) => (e.to, e.amount),
            None => (account.address(), U256::ZERO),
        };
        info!(account = %account.address(), %to, wei = %amount, tx = %outcome.tx_hash, "withdrawn");
        Ok(Withdrawal {
            tx: outcome,
            account: account.address(),
            to,
            amount,
        })
    }
}

/// The splitter's rule, computed locally: `floor(amount × share / 10 000)` each, the
/// remainder to the largest share (the first of them on a tie). `shares` in the registration's
/// (ascending address) order.
pub fn split(amount: U256, shares: &[u16]) -> Vec<U256> {
    let total = U256::from(TOTAL_SHARES);
    let mut amounts: Vec<U256> = shares
        .iter()
        .map(|s| amount * U256::from(*s) / total)
        .collect();
    let credited = amounts.iter().fold(U256::ZERO, |sum, a| sum + a);
    let mut largest = 0;
    for (i, s) in shares.iter().enumerate() {
        if *s > shares[largest] {
            largest = i;
        }
    }
    if let Some(a) = amounts.get_mut(largest) {
        *a += amount - credited;
    }
    amounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_credits_every_wei() {
        let s = |v: &[u64]| v.iter().map(|x| U256::from(*x)).collect::<Vec<_>>();
        assert_eq!(
            split(U256::from(10_001), &[5000, 3333, 1667]),
            s(&[5001, 3333, 1667])
        );
        // A tie for the largest share: the first of them gets the remainder.
        assert_eq!(
            split(U256::from(10_001), &[2000, 4000, 4000]),
            s(&[2000, 4001, 4000])
        );
        assert_eq!(split(U256::from(2), &[3334, 3333, 3333]), s(&[2, 0, 0]));
        assert!(split(U256::from(5), &[]).is_empty());
    }
}
