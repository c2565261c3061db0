//! The chain client against a real anvil, started by each test in a temporary folder.
//!
//! anvil comes from the npm package `@foundry-rs/anvil` in `wallet/contracts/node_modules`
//! (`wallet/contracts/check` or `scripts/setup` installs it; `MODELFACTORY_ANVIL` overrides the
//! path). Without it these tests fail and say so.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use alloy_primitives::{U256, keccak256};
use serde_json::Value;
use wallet::chain::contracts::AdapterRegistry::AdapterRegistryErrors;
use wallet::chain::contracts::RewardSplitter::RewardSplitterErrors;
use wallet::chain::{
    ChainClient, ChainError, ContractAddresses, DEV_MNEMONIC, LOCAL_CHAIN_ID, LocalChain,
    LocalChainOptions, NewRegistration, Registration, Registry, Revert, Rewards, deploy, local,
    registry, rewards,
};
use wallet::keystore::signer_from_mnemonic;
use wallet::{Address, B256, PrivateKeySigner, SecretString};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// anvil's funded development account `index` (10 000 ETH each on a fresh chain).
fn dev(index: u32) -> PrivateKeySigner {
    signer_from_mnemonic(&SecretString::from(DEV_MNEMONIC), index).expect("dev account")
}

async fn start(dir: &Path) -> LocalChain {
    match LocalChain::start(&LocalChainOptions::new(dir).repo_root(repo_root())).await {
        Ok(chain) => chain,
        Err(e) => panic!("the local chain did not start: {e}"),
    }
}

/// A fresh chain with the contracts deployed by dev account 0.
async fn deployed(dir: &Path) -> (LocalChain, Registry, Rewards) {
    let chain = start(dir).await;
    let (deployment, reused) = deploy::ensure_deployed(chain.client(), &dev(0), dir)
        .await
        .expect("deploys");
    assert!(!reused);
    let registry = Registry::new(chain.client(), deployment.registry);
    let rewards = Rewards::new(chain.client(), deployment.splitter);
    (chain, registry, rewards)
}

fn sample(label: &str, publisher: Address, shares: Vec<(Address, u16)>) -> Registration {
    NewRegistration {
        manifest_hash: keccak256(label.as_bytes()),
        adapter_hash: keccak256(format!("{label} weights").as_bytes()),
        base_model: "HuggingFaceTB/SmolLM2-135M-Instruct@main".into(),
        datanet_roots: vec![B256::repeat_byte(0xd1)],
        uri: format!("hf://alice/{label}"),
        parent: None,
        publisher,
        shares,
    }
    .build()
    .expect("a valid registration")
}

fn three_contributors() -> Vec<(Address, u16)> {
    vec![
        (dev(1).address(), 5000),
        (dev(2).address(), 3333),
        (dev(3).address(), 1667),
    ]
}

fn golden() -> (Value, Registration) {
    let path = repo_root().join("wallet/contracts/test/golden/eip712.json");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("json");
    let m = &doc["message"];
    let b = |v: &Value| B256::from_str(v.as_str().expect("hex")).expect("bytes32");
    let a = |v: &Value| Address::from_str(v.as_str().expect("hex")).expect("address");
    let list = |v: &Value| v.as_array().expect("array").clone();
    let registration = Registration {
        manifestHash: b(&m["manifestHash"]),
        adapterHash: b(&m["adapterHash"]),
        baseModel: m["baseModel"].as_str().expect("string").into(),
        datanetRoots: list(&m["datanetRoots"]).iter().map(b).collect(),
        uri: m["uri"].as_str().expect("string").into(),
        parent: b(&m["parent"]),
        publisher: a(&m["publisher"]),
        contributors: list(&m["contributors"]).iter().map(a).collect(),
        shares: list(&m["shares"])
            .iter()
            .map(|s| u16::try_from(s.as_u64().expect("number")).expect("u16"))
            .collect(),
    };
    (doc, registration)
}

#[test]
fn digest_matches_the_golden_registration() {
    let (doc, registration) = golden();
    let registry_address = Address::from_str(
        doc["domain"]["verifyingContract"]
            .as_str()
            .expect("address"),
    )
    .expect("address");
    let digest = registry::digest(&registration, LOCAL_CHAIN_ID, registry_address);
    assert_eq!(
        digest,
        B256::from_str(doc["digest"].as_str().expect("hex")).expect("digest")
    );
    let signature =
        registry::sign(&dev(0), &registration, LOCAL_CHAIN_ID, registry_address).expect("signs");
    assert_eq!(
        wallet::signing::signature_to_hex(&signature),
        doc["signature"].as_str().expect("hex")
    );
}

#[test]
fn a_registration_is_checked_and_sorted_before_sending() {
    let publisher = dev(0).address();
    let mut shares = three_contributors();
    shares.reverse();
    let built = sample("sorted", publisher, shares);
    assert!(built.contributors.windows(2).all(|w| w[0] < w[1]));
    for pair in built
        .contributors
        .iter()
        .copied()
        .zip(built.shares.iter().copied())
    {
        assert!(
            three_contributors().contains(&pair),
            "{pair:?} kept together"
        );
    }
    let bad = |shares: Vec<(Address, u16)>| {
        NewRegistration {
            manifest_hash: B256::repeat_byte(1),
            adapter_hash: B256::repeat_byte(2),
            base_model: "m".into(),
            datanet_roots: vec![],
            uri: "u".into(),
            parent: None,
            publisher,
            shares,
        }
        .build()
        .expect_err("invalid")
        .to_string()
    };
    assert!(bad(vec![(dev(1).address(), 9999)]).contains("sum to 9999"));
    assert!(bad(vec![(dev(1).address(), 5000), (dev(1).address(), 5000)]).contains("twice"));
    assert!(bad(vec![(dev(1).address(), 10000), (dev(2).address(), 0)]).contains("zero share"));
    assert!(bad(vec![]).contains("no contributors"));
}

#[tokio::test]
async fn deployment_and_registrations_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let chain = start(dir.path()).await;
    eprintln!("anvil started in {:?}", chain.started_in());
    let t = Instant::now();
    let (deployment, reused) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("deploys");
    eprintln!("deployed in {:?}", t.elapsed());
    assert!(!reused);
    assert_eq!(deployment.chain_id, LOCAL_CHAIN_ID);
    assert!(dir.path().join(deploy::DEPLOYMENT_FILE).is_file());
    chain
        .client()
        .check_contracts(&deployment.contracts())
        .await
        .expect("the deployed contracts check out");

    let registry = Registry::new(chain.client(), deployment.registry);
    let publisher = dev(0);
    let registration = sample("restart", publisher.address(), three_contributors());
    let signature = registry.sign(&publisher, &registration).expect("signs");
    let t = Instant::now();
    let outcome = registry
        .register(&publisher, &registration, &signature)
        .await
        .expect("registers");
    eprintln!("registered in {:?} ({} gas)", t.elapsed(), outcome.gas_used);

    drop(chain);
    assert!(
        dir.path().join(local::STATE_FILE).is_file(),
        "anvil wrote its state on stop"
    );

    let chain = start(dir.path()).await;
    eprintln!("anvil restarted in {:?}", chain.started_in());
    let (again, reused) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("finds the deployment");
    assert!(reused, "the recorded deployment is reused");
    assert_eq!(again, deployment);
    let registry = Registry::new(chain.client(), again.registry);
    assert!(
        registry
            .is_registered(registration.manifestHash)
            .await
            .expect("reads")
    );
    assert_eq!(
        registry
            .get_registration(registration.manifestHash)
            .await
            .expect("reads"),
        Some(registration.clone())
    );
    let at = registry
        .registered_at(registration.manifestHash)
        .await
        .expect("reads")
        .expect("registered");
    assert_eq!(at.block_number, outcome.block_number);
    drop(chain);

    // A state folder whose chain was reset (state file gone) deploys again.
    std::fs::remove_file(dir.path().join(local::STATE_FILE)).expect("remove state");
    let chain = start(dir.path()).await;
    let (_, reused) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("deploys again");
    assert!(!reused, "no code at the recorded addresses: deployed again");
    eprintln!("whole restart test in {:?}", started.elapsed());
}

/// Killed without a chance to write its state (a crash, a power cut), anvil has still written
/// it within `--state-interval`.
#[cfg(unix)]
#[tokio::test]
async fn the_periodic_state_write_survives_a_kill() {
    use rustix::process::{Pid, Signal, kill_process};
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LocalChainOptions {
        state_interval: std::time::Duration::from_secs(1),
        ..LocalChainOptions::new(dir.path()).repo_root(repo_root())
    };
    let chain = LocalChain::start(&options).await.expect("starts");
    let (deployment, _) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("deploys");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let pid = chain
        .pid()
        .and_then(|p| Pid::from_raw(p as i32))
        .expect("running");
    kill_process(pid, Signal::KILL).expect("kill -9");
    drop(chain);

    let chain = LocalChain::start(&options).await.expect("restarts");
    let (again, reused) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("finds the deployment");
    assert!(reused, "the periodic write kept the contracts");
    assert_eq!(again, deployment);
}

#[tokio::test]
async fn register_read_back_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, registry, _) = deployed(dir.path()).await;

    // Dev account 0 deploys first, so the registry sits where the golden file says; the
    // contract's digest of the golden registration is the golden digest, and ours.
    let (doc, golden) = golden();
    assert_eq!(
        registry.address().to_string(),
        doc["domain"]["verifyingContract"]
            .as_str()
            .expect("address")
    );
    let onchain = registry
        .onchain_digest(&golden)
        .await
        .expect("hashRegistration");
    assert_eq!(onchain, registry.digest(&golden));
    assert_eq!(onchain.to_string(), doc["digest"].as_str().expect("hex"));

    let publisher = dev(0);
    let registration = sample("register", publisher.address(), three_contributors());
    assert_eq!(
        registry.onchain_digest(&registration).await.expect("reads"),
        registry.digest(&registration)
    );
    assert!(
        !registry
            .is_registered(registration.manifestHash)
            .await
            .expect("reads")
    );
    assert_eq!(
        registry
            .get_registration(registration.manifestHash)
            .await
            .expect("reads"),
        None
    );
    let signature = registry.sign(&publisher, &registration).expect("signs");
    let preview = registry
        .preview_register(publisher.address(), &registration, &signature)
        .await
        .expect("estimates");
    assert!(preview.gas_estimate > 100_000 && preview.gas_limit > preview.gas_estimate);

    // A relayer (dev account 5) may submit the publisher's signed registration.
    let outcome = registry
        .register(&dev(5), &registration, &signature)
        .await
        .expect("registers");
    assert!(outcome.gas_used > 0 && outcome.gas_used <= preview.gas_limit);
    assert!(
        registry
            .is_registered(registration.manifestHash)
            .await
            .expect("reads")
    );
    assert_eq!(
        registry
            .get_registration(registration.manifestHash)
            .await
            .expect("reads"),
        Some(registration.clone())
    );
    let at = registry
        .registered_at(registration.manifestHash)
        .await
        .expect("reads")
        .expect("registered");
    assert_eq!(at.block_number, outcome.block_number);
    assert!(at.timestamp > 0);

    // The same manifest again: the contract's AlreadyRegistered, by name.
    let err = registry
        .register(&publisher, &registration, &signature)
        .await
        .expect_err("registered twice");
    match &err {
        ChainError::Reverted { revert, .. } => assert!(matches!(
            **revert,
            Revert::Registry(AdapterRegistryErrors::AlreadyRegistered(_))
        )),
        other => panic!("expected AlreadyRegistered, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("AlreadyRegistered"), "{message}");
    assert!(
        message.contains(&registration.manifestHash.to_string()),
        "{message}"
    );

    // Signed by someone other than the publisher: InvalidSignature.
    let other = sample("wrong signer", publisher.address(), three_contributors());
    let forged = registry.sign(&dev(7), &other).expect("signs");
    let err = registry
        .register(&publisher, &other, &forged)
        .await
        .expect_err("wrong signer");
    assert!(
        matches!(&err, ChainError::Reverted { revert, .. }
            if matches!(**revert, Revert::Registry(AdapterRegistryErrors::InvalidSignature(_)))),
        "{err}"
    );
    assert!(err.to_string().contains("InvalidSignature"), "{err}");

    // An unknown parent, checked by the contract.
    let child = NewRegistration {
        parent: Some(B256::repeat_byte(0x77)),
        ..NewRegistration {
            manifest_hash: B256::repeat_byte(0x55),
            adapter_hash: B256::repeat_byte(0x56),
            base_model: "m@main".into(),
            datanet_roots: vec![],
            uri: "hf://x".into(),
            parent: None,
            publisher: publisher.address(),
            shares: three_contributors(),
        }
    }
    .build()
    .expect("valid locally");
    let signature = registry.sign(&publisher, &child).expect("signs");
    let err = registry
        .register(&publisher, &child, &signature)
        .await
        .expect_err("unknown parent");
    assert!(err.to_string().contains("UnknownParent"), "{err}");
    drop(chain);
}

#[tokio::test]
async fn an_account_without_eth_is_told_so_and_can_be_funded_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, registry, _) = deployed(dir.path()).await;
    let newcomer = PrivateKeySigner::random();
    let registration = sample("newcomer", newcomer.address(), three_contributors());
    let signature = registry.sign(&newcomer, &registration).expect("signs");
    let err = registry
        .register(&newcomer, &registration, &signature)
        .await
        .expect_err("no ETH for gas");
    match &err {
        ChainError::InsufficientFunds {
            address,
            balance,
            needed,
        } => {
            assert_eq!(*address, newcomer.address());
            assert!(balance.is_zero());
            assert!(needed.is_some_and(|n| !n.is_zero()));
        }
        other => panic!("expected InsufficientFunds, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("too little ETH"), "{message}");
    assert!(
        message.contains(&newcomer.address().to_string()),
        "{message}"
    );

    let one_eth = U256::from(10).pow(U256::from(18));
    let balance = chain
        .client()
        .fund_local(newcomer.address(), one_eth)
        .await
        .expect("funds");
    assert_eq!(balance, one_eth);
    let outcome = registry
        .register(&newcomer, &registration, &signature)
        .await
        .expect("registers once funded");
    assert_eq!(
        chain
            .client()
            .balance(newcomer.address())
            .await
            .expect("balance"),
        one_eth - outcome.fee
    );
}

#[tokio::test]
async fn payments_split_to_the_wei_and_withdrawals_move_exactly_that() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (chain, registry, rewards) = deployed(dir.path()).await;
    let client = chain.client();
    let publisher = dev(0);
    // A tie for the largest share (4000 and 4000): the remainder goes to the first of them in
    // ascending address order.
    let contributors = [dev(1).address(), dev(2).address(), dev(3).address()];
    let shares = [4000u16, 2000, 4000];
    let registration = sample(
        "rewards",
        publisher.address(),
        contributors.iter().copied().zip(shares).collect(),
    );
    let signature = registry.sign(&publisher, &registration).expect("signs");
    registry
        .register(&publisher, &registration, &signature)
        .await
        .expect("registers");
    let manifest = registration.manifestHash;

    let amount = u256(10_001);
    let expected = rewards::split(amount, &registration.shares);
    // The rule, written out: floor(10001 × 4000 / 10000) = 4000 twice and 2000, one wei left
    // over, credited to the first of the two largest shares in ascending address order.
    let mut by_hand = vec![u256(0); 3];
    for (i, s) in registration.shares.iter().enumerate() {
        by_hand[i] = u256(match s {
            4000 => 4000,
            _ => 2000,
        });
    }
    let first_largest = registration
        .shares
        .iter()
        .position(|s| *s == 4000)
        .expect("a 4000 share");
    by_hand[first_largest] += u256(1);
    assert_eq!(expected, by_hand);
    assert_eq!(
        expected.iter().fold(u256(0), |a, b| a + b),
        amount,
        "every wei credited"
    );

    let preview = rewards.preview(manifest, amount).await.expect("preview");
    assert_eq!(
        preview,
        registration
            .contributors
            .iter()
            .copied()
            .zip(expected.iter().copied())
            .collect::<Vec<_>>()
    );

    let payer = dev(9);
    let payer_before = client.balance(payer.address()).await.expect("balance");
    let paid = rewards.pay(&payer, manifest, amount).await.expect("pays");
    assert_eq!(
        client.balance(payer.address()).await.expect("balance"),
        payer_before - amount - paid.fee
    );
    assert_eq!(rewards.paid_into(manifest).await.expect("reads"), amount);

    for (contributor, owed) in registration.contributors.iter().zip(&expected) {
        assert_eq!(rewards.owed(*contributor).await.expect("owed"), *owed);
    }

    for (contributor, owed) in registration.contributors.iter().zip(&expected) {
        let signer = [dev(1), dev(2), dev(3)]
            .into_iter()
            .find(|s| s.address() == *contributor)
            .expect("a dev account");
        let before = client.balance(*contributor).await.expect("balance");
        let withdrawal = rewards.withdraw(&signer).await.expect("withdraws");
        assert_eq!(withdrawal.amount, *owed);
        assert_eq!(withdrawal.to, *contributor);
        let after = client.balance(*contributor).await.expect("balance");
        assert_eq!(after, before + *owed - withdrawal.tx.fee);
        assert!(rewards.owed(*contributor).await.expect("owed").is_zero());
    }
    assert_eq!(rewards.totals().await.expect("totals"), (amount, amount));
    assert!(
        client
            .balance(rewards.address())
            .await
            .expect("balance")
            .is_zero()
    );

    // Nothing left: the contract's NothingOwed; paying into an unknown adapter: UnknownAdapter.
    let err = rewards.withdraw(&dev(1)).await.expect_err("nothing owed");
    assert!(
        matches!(&err, ChainError::Reverted { revert, .. }
            if matches!(**revert, Revert::Splitter(RewardSplitterErrors::NothingOwed(_)))),
        "{err}"
    );
    let err = rewards
        .pay(&payer, B256::repeat_byte(0x42), u256(1))
        .await
        .expect_err("unknown adapter");
    assert!(err.to_string().contains("UnknownAdapter"), "{err}");
}

#[tokio::test]
async fn unreachable_rpc_wrong_chain_and_missing_contracts_are_clear() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = ChainClient::connect(&url, None)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");

    let err = ChainClient::connect("ftp://127.0.0.1/", None)
        .await
        .expect_err("not http");
    assert!(matches!(err, ChainError::BadUrl { .. }), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let chain = start(dir.path()).await;
    let err = ChainClient::connect(chain.url(), Some(1))
        .await
        .expect_err("wrong chain");
    match &err {
        ChainError::WrongChain {
            expected, found, ..
        } => assert_eq!((*expected, *found), (1, LOCAL_CHAIN_ID)),
        other => panic!("expected WrongChain, got {other}"),
    }
    assert!(err.to_string().contains(chain.url()), "{err}");

    // Settings that name addresses with no contract behind them.
    let err = chain
        .client()
        .check_contracts(&ContractAddresses {
            registry: Address::repeat_byte(0x11),
            splitter: Address::repeat_byte(0x22),
        })
        .await
        .expect_err("no code");
    assert!(
        matches!(
            err,
            ChainError::NoCode {
                which: "registry",
                ..
            }
        ),
        "{err}"
    );
    // A contract, but not ours: the dev account's deployment of the splitter alone would do;
    // the registry's address given for both is enough to be refused.
    let (deployment, _) = deploy::ensure_deployed(chain.client(), &dev(0), dir.path())
        .await
        .expect("deploys");
    let err = chain
        .client()
        .check_contracts(&ContractAddresses {
            registry: deployment.splitter,
            splitter: deployment.registry,
        })
        .await
        .expect_err("swapped addresses");
    assert!(matches!(err, ChainError::NotOurContract { .. }), "{err}");
}

#[tokio::test]
async fn an_unreadable_state_file_stops_the_start_with_anvils_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(local::STATE_FILE), "{\"block\": ").expect("write");
    let err = LocalChain::start(&LocalChainOptions::new(dir.path()).repo_root(repo_root()))
        .await
        .expect_err("a truncated state file");
    assert!(matches!(err, ChainError::AnvilExited { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(local::STATE_FILE), "{message}");
    assert!(message.contains("anvil.log"), "{message}");
}

#[tokio::test]
async fn an_rpc_key_in_the_url_stays_out_of_errors() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let err = ChainClient::connect(&format!("http://127.0.0.1:{port}/v2/SECRETKEY"), None)
        .await
        .expect_err("nothing listens");
    let message = err.to_string();
    assert!(!message.contains("SECRETKEY"), "{message}");
    assert!(
        message.contains(&format!("http://127.0.0.1:{port}/…")),
        "{message}"
    );
}

#[test]
fn a_missing_anvil_says_how_to_install_it() {
    let err = local::find_anvil(Some(Path::new("/nonexistent/anvil")), None).expect_err("missing");
    let message = err.to_string();
    assert!(message.contains("wallet/contracts/check"), "{message}");
    assert!(message.contains("/nonexistent/anvil"), "{message}");
}

fn u256(v: u64) -> U256 {
    U256::from(v)
}
