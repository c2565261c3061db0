//! Bindings generated from the compiled artifacts in `assets/contracts/`: a changed ABI changes
//! these types, so the client stops compiling instead of calling a function that is not there.

#![allow(clippy::too_many_arguments)]

alloy_sol_types::sol!(
    #[sol(rpc, all_derives)]
    AdapterRegistry,
    "../assets/contracts/AdapterRegistry.json"
);

alloy_sol_types::sol!(
    #[sol(rpc, all_derives)]
    RewardSplitter,
    "../assets/contracts/RewardSplitter.json"
);

/// A registration as the registry stores and the publisher signs it (EIP-712 primary type
/// `Registration`).
pub type Registration = IAdapterRegistry::Registration;
