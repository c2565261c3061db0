//! The API's JSON shapes and the front end's TypeScript types must agree. This test renders
//! one value of every API type, as the server serialises it, into
//! `ui/src/lib/api/contract.generated.ts` as typed object literals; the front end's type check
//! (`svelte-check`) then fails on a missing, renamed or extra field, or on an enum value the
//! TypeScript unions do not know. The test fails when the committed file is stale; run it
//! with `UPDATE_API_CONTRACT=1` to rewrite it.

use std::collections::BTreeMap;

use datanet_sync::catalog::{DatasetSourceSummary, LabelStatus, Origin};
use datanet_sync::curate::{Bin, LengthStats, PiiKind};
use datanet_sync::format::{ContributorEntry, Manifest, Message, RowSchema, ShardEntry};
use datanet_sync::hub::client::DatanetListing;
use datanet_sync::view::{Flag, SortKey, StatusFilter};
use serde::Serialize;
use studio::attribution::{
    AccuracyRequest, AttributionReport, AttributionRequest, ContributorScore, RowScore,
    RunAttribution,
};
use studio::chain::{ChainSettings, ChainStatus, Payment, RewardBalance, WithdrawResult};
use studio::datanets::{
    Content, CuratedRow, DatanetStats, Dataset, DatasetPage, DatasetRow, DatasetSource,
    DuplicateScan, HubCard, HubDatanet, LabelUpdate, LocalDatanet, NewDataset, RowPage, RowQuery,
    Split,
};
use studio::publish::{Publication, PublicationState, PublishFile, PublishPreview, PublishRequest};
use studio::verify::{Check, VerifyReport, VerifyRequest};
use studio::wallet::WalletAccount;
use studio::{
    AddModelResult, AnswerCitation, ApiError, BackendChoice, BackendStatus, ChatRole, ChatToken,
    CitedRow, Conversation, ConversationSummary, ConversationUpdate, DataSummary, DatasetPreview,
    DemoDataset, DoctorReport, GenerationStats, JobEvent, JobInfo, JobState, MessageStats,
    ModelStatus, ModelSummary, NewConversation, NewRun, Preset, PreviewRequest, RunDetail,
    RunState, RunSummary, SamplingParams, SendMessage, SendResult, Settings, StopReason,
    StopResult, StoredMessage,
};
use trainer::attribution::accuracy::{AccuracyReport, MethodAccuracy};
use trainer::data::{
    DatasetFormat, ExamplePreview, FileFormat, LoadReport, PreviewSegment, RowFormat, RowProblem,
    RowUnit, SegmentKind, SkipReason,
};
use trainer::lora::{LoraConfig, Target};
use trainer::train::{EvalRecord, Method, Precision, Schedule, StepRecord, TrainConfig};
use trainer::{BackendKind, ModelFormat};
use wallet::manifest::AttributionMethod;

fn model(status: ModelStatus) -> ModelSummary {
    ModelSummary {
        id: "smollm2-135m-instruct".into(),
        name: "SmolLM2-135M-Instruct".into(),
        source: "/models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        hub_id: Some("HuggingFaceTB/SmolLM2-135M-Instruct".into()),
        path: "/models/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        format: ModelFormat::Gguf,
        architecture: "llama".into(),
        parameters: 134_515_008,
        quantization: "Q4_1".into(),
        context_length: Some(8192),
        file_size: 98_362_432,
        layers: Some(30),
        hidden_size: Some(576),
        attention_heads: Some(9),
        kv_heads: Some(3),
        vocab_size: None,
        added_at: "2026-01-01T00:00:00.000Z".into(),
        status,
        problem: (status != ModelStatus::Ready).then(|| "file not found: /models/x.gguf".into()),
    }
}

fn job(state: JobState) -> JobInfo {
    JobInfo {
        id: "0f0e".into(),
        kind: "pull-model".into(),
        title: "Pull someone/model".into(),
        state,
        fraction: 0.5,
        message: "downloading model.safetensors".into(),
        figures: BTreeMap::from([("bytes_per_s".to_string(), 1.5e6)]),
        error: (state == JobState::Failed).then(|| "connection refused".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:01.000Z".into(),
    }
}

fn stats(stop_reason: StopReason) -> MessageStats {
    MessageStats {
        generation: GenerationStats {
            prompt_tokens: 31,
            generated_tokens: 8,
            prefill_tokens_per_s: 412.5,
            decode_tokens_per_s: 41.25,
            stop_reason,
        },
        model_id: "smollm2-135m-instruct".into(),
        adapter_run_id: Some("5eed".into()),
        backend: BackendKind::Cpu,
        citations: vec![AnswerCitation {
            text: "list comprehensions build a new list from an iterable".into(),
            tokens: 9,
            occurrences: 1,
            sources: vec![CitedRow {
                contribution_id: "c-0042".into(),
                contributor: Some("0x45c087ebfe09ba5bd55bd01a3bc19ffef7d6ce82".into()),
            }],
        }],
        citations_error: None,
    }
}

fn message(seq: i64, role: ChatRole, content: &str, stats: Option<MessageStats>) -> StoredMessage {
    StoredMessage {
        seq,
        role,
        content: content.into(),
        stats,
        created_at: "2026-01-01T00:00:01.000Z".into(),
    }
}

fn run(state: RunState) -> RunSummary {
    let started = state != RunState::Queued;
    RunSummary {
        id: "5eed".into(),
        name: "modelfactory-help".into(),
        model_id: "smollm2-135m-instruct".into(),
        dataset: "/data/modelfactory-help.jsonl".into(),
        method: Method::Qlora,
        state,
        job_id: started.then(|| "0f0e".into()),
        step: if started { 2 } else { 0 },
        total_steps: started.then_some(3),
        last_loss: started.then_some(5.42),
        last_eval_loss: started.then_some(5.53),
        adapter: started.then(|| "/ws/runs/5eed/adapter".into()),
        error: (state == RunState::Failed).then(|| "out of memory".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:05.000Z".into(),
    }
}

fn step(step: usize) -> StepRecord {
    StepRecord {
        step,
        loss: 5.4246,
        learning_rate: 4e-5,
        grad_norm: 1.979,
        tokens_per_s: 29.8,
        elapsed_s: 4.5,
        eta_s: 11.0,
        peak_memory_bytes: 714_900_000,
    }
}

/// Every knob away from its default, so that each field and enum value is rendered.
fn every_knob() -> TrainConfig {
    TrainConfig {
        method: Method::Lora,
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            rslora: true,
            targets: vec![Target::Q, Target::V],
        },
        learning_rate: 1e-4,
        weight_decay: 0.0,
        schedule: Schedule::Linear,
        warmup_steps: 0,
        epochs: 0.5,
        max_steps: Some(3),
        batch_size: 2,
        grad_accum: 1,
        max_grad_norm: 0.0,
        seed: 7,
        eval_every: 1,
        checkpoint_every: 1,
        keep_checkpoints: 1,
        gradient_checkpointing: true,
        backend: Some(BackendKind::Wgpu),
        max_length: 128,
        packing: true,
        precision: Precision::F32,
        eval_fraction: 0.0,
    }
}

const ALICE: &str = "0x45c087ebfe09ba5bd55bd01a3bc19ffef7d6ce82";

fn demo_manifest() -> Manifest {
    Manifest {
        schema_version: 1,
        id: "modelfactory/python-faq".into(),
        name: "Python FAQ".into(),
        domain: "programming".into(),
        description: "Questions and answers".into(),
        license: "PSF-2.0".into(),
        source: "The Python documentation's FAQ".into(),
        row_schema: RowSchema::Instruction,
        shards: vec![ShardEntry {
            path: "shards/00000.parquet".into(),
            rows: 175,
            bytes: 61_000,
            sha256: "ab".repeat(32),
        }],
        contributors: vec![ContributorEntry {
            address: ALICE.into(),
            rows: 22,
        }],
        contributions_root: "cd".repeat(32),
    }
}

fn curated(content: Content, status: Option<LabelStatus>, version: u32) -> CuratedRow {
    CuratedRow {
        contribution_id: "ef".repeat(32),
        contributor: ALICE.into(),
        created_at: "2026-10-07T14:35:07+02:00".into(),
        license: "PSF-2.0".into(),
        original: (version > 0).then(|| content.clone()),
        content,
        version,
        status,
        rating: status.map(|_| 4),
        tags: vec!["good".into()],
        length: 120,
        pii: vec![PiiKind::Email, PiiKind::Phone],
        duplicate_of: (version == 0).then(|| "01".repeat(32)),
    }
}

fn datanet_entries(out: &mut String) {
    let instruction = Content::Instruction {
        instruction: "What is Python?".into(),
        input: String::new(),
        output: "A programming language.".into(),
    };
    let chat = Content::Messages {
        messages: vec![
            Message {
                role: "user".into(),
                content: "hi".into(),
            },
            Message {
                role: "assistant".into(),
                content: "hello".into(),
            },
        ],
    };
    let listings = vec![HubDatanet {
        listing: DatanetListing {
            id: "modelfactory/python-faq".into(),
            sha: Some("12".repeat(20)),
            tags: vec!["datanet".into(), "license:psf-2.0".into()],
            description: Some("Questions and answers".into()),
            license: Some("psf-2.0".into()),
            last_modified: Some("2026-10-07T12:35:07.000Z".into()),
        },
        pulled: false,
    }];
    entry(out, "hubDatanets", "DatanetListing[]", &listings);
    let card = HubCard {
        id: "modelfactory/python-faq".into(),
        revision: "12".repeat(20),
        manifest: demo_manifest(),
        readme: Some("# Python FAQ".into()),
        pulled: true,
    };
    entry(out, "hubCard", "DatanetCard", &card);
    let locals: Vec<_> = [Origin::Hub, Origin::Import]
        .into_iter()
        .map(|origin| LocalDatanet {
            id: "modelfactory/python-faq".into(),
            name: "Python FAQ".into(),
            domain: "programming".into(),
            license: "PSF-2.0".into(),
            revision: "12".repeat(20),
            rows: 175,
            contributors: 8,
            pulled_at: "2026-01-01T00:00:00.000Z".into(),
            origin,
        })
        .collect();
    entry(out, "localDatanets", "LocalDatanet[]", &locals);
    let page = RowPage {
        total: 175,
        offset: 0,
        rows: vec![
            curated(instruction.clone(), Some(LabelStatus::Accepted), 1),
            curated(chat.clone(), Some(LabelStatus::Rejected), 0),
            curated(instruction.clone(), None, 0),
        ],
    };
    entry(out, "rowPage", "RowPage", &page);
    let queries: Vec<_> = [
        (StatusFilter::Accepted, Flag::Pii, SortKey::Position),
        (StatusFilter::Rejected, Flag::Duplicate, SortKey::Length),
        (StatusFilter::Unlabeled, Flag::Edited, SortKey::Rating),
        (StatusFilter::Unlabeled, Flag::Edited, SortKey::Contributor),
        (StatusFilter::Unlabeled, Flag::Edited, SortKey::CreatedAt),
    ]
    .into_iter()
    .map(|(status, flag, sort)| RowQuery {
        offset: 200,
        limit: 200,
        search: Some("dict".into()),
        contributor: Some(ALICE.into()),
        status: Some(status),
        tag: Some("good".into()),
        min_len: Some(10),
        max_len: Some(1000),
        flag: Some(flag),
        sort,
        desc: true,
    })
    .collect();
    entry(out, "rowQueries", "RowQuery[]", &queries);
    let update = LabelUpdate {
        status: Some(Some(LabelStatus::Accepted)),
        rating: Some(Some(5)),
        tags: Some(vec!["good".into()]),
    };
    entry(out, "labelUpdate", "LabelUpdate", &update);
    let stats = DatanetStats {
        rows: 175,
        accepted: 1,
        rejected: 1,
        unlabeled: 173,
        edited: 1,
        pii_rows: 2,
        duplicate_rows: 0,
        length: LengthStats {
            count: 175,
            min: 50,
            max: 1500,
            mean: 600.5,
            median: 550,
            p95: 1400,
            histogram: vec![Bin {
                start: 50,
                end: 1500,
                count: 175,
            }],
        },
        contributors: demo_manifest().contributors,
    };
    entry(out, "datanetStats", "DatanetStats", &stats);
    let scan = DuplicateScan {
        threshold: 0.8,
        groups: vec![vec!["01".repeat(32), "02".repeat(32)]],
        exact_groups: 1,
        near_groups: 0,
        rejected: 1,
    };
    entry(out, "duplicateScan", "DuplicateScan", &scan);
    let new_dataset = NewDataset {
        name: "faq-accepted".into(),
        sources: vec![DatasetSource {
            datanet: "modelfactory/python-faq".into(),
            statuses: vec![StatusFilter::Accepted, StatusFilter::Unlabeled],
            search: None,
            tag: Some("good".into()),
        }],
        files: vec!["/data/mine.jsonl".into()],
        eval_fraction: 0.1,
        seed: 0,
    };
    entry(out, "newDataset", "NewDataset", &new_dataset);
    let dataset = Dataset {
        name: "faq-accepted".into(),
        rows: 170,
        eval_rows: 17,
        contributors: 8,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        path: "/home/me/.modelfactory/datasets/faq-accepted.jsonl".into(),
        sources: vec![DatasetSourceSummary {
            datanet: "modelfactory/python-faq".into(),
            revision: "12".repeat(20),
            rows: 170,
        }],
    };
    entry(out, "datasets", "DatasetSummary[]", &vec![dataset]);
    let rows = DatasetPage {
        total: 170,
        offset: 0,
        rows: vec![
            DatasetRow {
                contribution_id: "ef".repeat(32),
                contributor: ALICE.into(),
                datanet: Some("modelfactory/python-faq".into()),
                split: Split::Train,
                content: instruction,
            },
            DatasetRow {
                contribution_id: "ef".repeat(32),
                contributor: ALICE.into(),
                datanet: None,
                split: Split::Eval,
                content: chat,
            },
        ],
    };
    entry(out, "datasetPage", "DatasetPage", &rows);
}

const BOB: &str = "0x1cd2E5ecbF5C1aB7E6EAb4B3b7e0b8C0cCf6B7a1";
const CAROL: &str = "0x90f79bf6eb2c4f870365e785982e1f101e93b906";
const MANIFEST_HASH: &str = "0x6a1f0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0f";

fn publication(state: PublicationState) -> Publication {
    let uploaded = state != PublicationState::Signed;
    let registered = state == PublicationState::Registered;
    Publication {
        manifest_hash: MANIFEST_HASH.into(),
        run_id: "5eed".into(),
        state,
        publisher: ALICE.into(),
        hub: "http://127.0.0.1:4000".into(),
        repo: "45c087eb/modelfactory-help".into(),
        commit: uploaded.then(|| "34".repeat(20)),
        repo_url: uploaded.then(|| "http://127.0.0.1:4000/45c087eb/modelfactory-help".into()),
        chain_id: 31337,
        registry: BOB.into(),
        tx_hash: registered.then(|| format!("0x{}", "56".repeat(32))),
        block: registered.then_some(7),
        folder: "/ws/runs/5eed/publish".into(),
        job_id: Some("0f0e".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:09.000Z".into(),
    }
}

/// The wallet, the chain, publishing, verifying and rewards.
fn publishing_entries(out: &mut String) {
    let accounts = [
        WalletAccount {
            address: ALICE.into(),
            name: Some("publishing".into()),
            created: Some(
                chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .expect("a time")
                    .with_timezone(&chrono::Utc),
            ),
        },
        WalletAccount {
            address: BOB.into(),
            name: None,
            created: None,
        },
    ];
    entry(out, "walletAccounts", "WalletAccount[]", &accounts);
    let chain_settings = [
        ChainSettings::default(),
        ChainSettings {
            rpc_url: "https://rpc.example".into(),
            chain_id: Some(84532),
            registry: Some(BOB.into()),
            splitter: Some(ALICE.into()),
        },
    ];
    entry(out, "chainSettings", "ChainSettings[]", &chain_settings);
    let statuses = [
        ChainStatus {
            local: true,
            url: Some("http://127.0.0.1:8545".into()),
            chain_id: Some(31337),
            reachable: true,
            block: Some(7),
            registry: Some(BOB.into()),
            splitter: Some(ALICE.into()),
            state_file: Some("/ws/chain/state.json".into()),
            problem: None,
        },
        ChainStatus {
            local: false,
            url: Some("https://rpc.example".into()),
            chain_id: Some(84532),
            reachable: false,
            block: None,
            registry: None,
            splitter: None,
            state_file: None,
            problem: Some("connection refused".into()),
        },
    ];
    entry(out, "chainStatuses", "ChainStatus[]", &statuses);
    let requests = [
        PublishRequest {
            run_id: "5eed".into(),
            publisher: ALICE.into(),
            repo: None,
            license: None,
            hub: None,
            attribution: None,
        },
        PublishRequest {
            run_id: String::new(),
            publisher: ALICE.into(),
            repo: Some("me/modelfactory-help".into()),
            license: Some("Apache-2.0".into()),
            hub: Some("https://huggingface.co".into()),
            attribution: Some(AttributionMethod::DataInf),
        },
    ];
    entry(out, "publishRequests", "PublishRequest[]", &requests);
    let previews = [
        PublishPreview {
            run_id: "5eed".into(),
            run_name: "modelfactory-help".into(),
            manifest: serde_json::json!({
                "schema_version": 1,
                "base_model": { "repo": "HuggingFaceTB/SmolLM2-135M-Instruct", "sha256": "78".repeat(32) },
                "attribution": { "shares": [{ "contributor": ALICE, "bps": 10000 }] },
                "publisher": ALICE,
            }),
            manifest_hash: MANIFEST_HASH.into(),
            files: vec![PublishFile {
                path: "adapter_model.safetensors".into(),
                bytes: 1_234_567,
                sha256: "9a".repeat(32),
            }],
            hub: "http://127.0.0.1:4000".into(),
            repo: "45c087eb/modelfactory-help".into(),
            chain_id: 31337,
            chain_url: "http://127.0.0.1:8545".into(),
            registry: BOB.into(),
            attribution_method: AttributionMethod::DataInf,
            shares: vec![(ALICE.into(), 7500), (BOB.into(), 2500)],
            harmful: vec![CAROL.into()],
            uncredited_rows: 3,
            gas_estimate: Some(210_000),
            max_cost_wei: Some("420000000000000".into()),
            gas_problem: None,
            publication: Some(publication(PublicationState::Uploaded)),
        },
        PublishPreview {
            run_id: "5eed".into(),
            run_name: "modelfactory-help".into(),
            manifest: serde_json::json!({ "schema_version": 1 }),
            manifest_hash: MANIFEST_HASH.into(),
            files: Vec::new(),
            hub: "http://127.0.0.1:4000".into(),
            repo: "45c087eb/modelfactory-help".into(),
            chain_id: 84532,
            chain_url: "https://rpc.example".into(),
            registry: BOB.into(),
            attribution_method: AttributionMethod::RowShare,
            shares: Vec::new(),
            harmful: Vec::new(),
            uncredited_rows: 0,
            gas_estimate: None,
            max_cost_wei: None,
            gas_problem: Some("the account holds 0 ETH".into()),
            publication: None,
        },
    ];
    entry(out, "publishPreviews", "PublishPreview[]", &previews);
    entry(
        out,
        "runAttributions",
        "RunAttribution[]",
        &run_attributions(),
    );
    let attribution_requests = [
        AttributionRequest::default(),
        AttributionRequest {
            backend: Some(BackendKind::Cpu),
        },
    ];
    entry(
        out,
        "attributionRequests",
        "AttributionRequest[]",
        &attribution_requests,
    );
    let accuracy_requests = [
        AccuracyRequest {
            backend: None,
            subsets: 20,
            steps: None,
        },
        AccuracyRequest {
            backend: Some(BackendKind::Wgpu),
            subsets: 24,
            steps: Some(60),
        },
    ];
    entry(
        out,
        "accuracyRequests",
        "AccuracyRequest[]",
        &accuracy_requests,
    );
    let publications: Vec<_> = [
        PublicationState::Signed,
        PublicationState::Uploaded,
        PublicationState::Registered,
    ]
    .into_iter()
    .map(publication)
    .collect();
    entry(out, "publications", "Publication[]", &publications);
    let verify_requests = [
        VerifyRequest {
            target: "45c087eb/modelfactory-help".into(),
            ..VerifyRequest::default()
        },
        VerifyRequest {
            target: "/ws/runs/5eed/publish".into(),
            hub: Some("http://127.0.0.1:4000".into()),
            contributions: vec!["ef".repeat(32)],
            skip_chain: true,
        },
    ];
    entry(out, "verifyRequests", "VerifyRequest[]", &verify_requests);
    let report = VerifyReport {
        target: "45c087eb/modelfactory-help".into(),
        ok: false,
        manifest_hash: Some(MANIFEST_HASH.into()),
        publisher: Some(ALICE.into()),
        checks: vec![
            Check {
                subject: "adapter_model.safetensors".into(),
                ok: true,
                detail: "sha256 matches the manifest".into(),
            },
            Check {
                subject: "registry".into(),
                ok: false,
                detail: "no record of this manifest hash".into(),
            },
        ],
    };
    entry(out, "verifyReport", "VerifyReport", &report);
    let unreadable = VerifyReport {
        target: "/nowhere".into(),
        ok: false,
        manifest_hash: None,
        publisher: None,
        checks: Vec::new(),
    };
    entry(out, "unreadableReport", "VerifyReport", &unreadable);
    let payment = Payment {
        manifest_hash: MANIFEST_HASH.into(),
        payer: BOB.into(),
        amount_wei: "1000000000000000000".into(),
        tx_hash: format!("0x{}", "bc".repeat(32)),
        block: 8,
        split: vec![(ALICE.into(), "1000000000000000000".into())],
    };
    entry(out, "payment", "Payment", &payment);
    let balance = RewardBalance {
        address: ALICE.into(),
        balance_wei: "10000000000000000000".into(),
        owed_wei: "1000000000000000000".into(),
    };
    entry(out, "rewardBalance", "RewardBalance", &balance);
    let withdrawn = WithdrawResult {
        address: ALICE.into(),
        amount_wei: "1000000000000000000".into(),
        tx_hash: format!("0x{}", "de".repeat(32)),
        block: 9,
    };
    entry(out, "withdrawResult", "WithdrawResult", &withdrawn);
}

/// A run with a report and its accuracy, and one not yet computed.
fn run_attributions() -> Vec<RunAttribution> {
    let contributor = |who: &str, score: f64, bps: u16, rows: usize| ContributorScore {
        contributor: who.into(),
        score,
        bps,
        harmful: score < 0.0,
        rows,
    };
    let row = |id: &str, who: &str, score: f64, preview: &str| RowScore {
        contribution_id: id.into(),
        contributor: who.into(),
        score,
        preview: preview.into(),
    };
    let report = AttributionReport {
        run_id: "5eed".into(),
        method: "datainf".into(),
        lambda: vec![0.0125, 0.0098],
        train_rows: 3,
        eval_rows: 2,
        backend: BackendKind::Cpu,
        contributors: vec![
            contributor(ALICE, 1.5, 7500, 1),
            contributor("file:notes.jsonl", 0.5, 2500, 1),
            contributor(CAROL, -0.25, 0, 1),
        ],
        rows: vec![
            row(
                &"ab".repeat(32),
                ALICE,
                1.5,
                "user: What is the dose? assistant: 5 mg.",
            ),
            row(
                "notes.jsonl:1",
                "file:notes.jsonl",
                0.5,
                "user: Hi assistant: Hello.",
            ),
            row(
                &"cd".repeat(32),
                CAROL,
                -0.25,
                "user: What is the dose? assistant: 50 mg.",
            ),
        ],
        computed_at: "2026-01-01T00:10:00.000Z".into(),
    };
    let method = |name: &str, lds: f64, spearman: Option<f64>, agreement: f64| MethodAccuracy {
        method: name.into(),
        lds,
        loco_spearman: spearman,
        loco_sign_agreement: agreement,
        scores: vec![1.5, 0.5, -0.25],
    };
    let accuracy = AccuracyReport {
        methods: vec![
            method("datainf", 0.377, Some(1.0), 1.0),
            method("tracin", 0.285, Some(0.5), 0.667),
            method("similarity", -0.056, None, 0.333),
        ],
        full_eval_loss: 1.25,
        subset_eval_losses: vec![1.3, 1.4],
        loco: vec![(ALICE.into(), 1.98), (CAROL.into(), -0.65)],
        subsets: 20,
        steps: 60,
        seed: 42,
    };
    vec![
        RunAttribution {
            run_id: "5eed".into(),
            report: Some(report),
            accuracy: Some(accuracy),
        },
        RunAttribution {
            run_id: "5eed".into(),
            report: None,
            accuracy: None,
        },
    ]
}

fn entry<T: Serialize>(out: &mut String, name: &str, ty: &str, value: &T) {
    let json = serde_json::to_string_pretty(value).expect("serialise");
    out.push_str(&format!("export const {name}: {ty} = {json};\n\n"));
}

fn render() -> String {
    let mut out = String::from(
        "// Generated by studio/tests/api_contract.rs from the Rust API types; do not edit.\n\
         // The type annotations make svelte-check compare both sides.\n\
         import type {\n  AddModelResult, ApiError, ChatToken, Conversation, ConversationSummary, ConversationUpdate, DoctorReport,\n  JobEvent, JobInfo, MessageStats, ModelSummary, NewConversation, SamplingParams, SendMessage, SendResult,\n  Settings, StopResult, TrainConfig, NewRun, RunSummary, RunDetail, StepRecord, EvalRecord, DataSummary,\n  PreviewRequest, DatasetPreview, DemoDataset, Preset,\n  DatanetListing, DatanetCard, LocalDatanet, RowPage, RowQuery, LabelUpdate, DatanetStats, DuplicateScan,\n  NewDataset, DatasetSummary, DatasetPage,\n  WalletAccount, ChainSettings, ChainStatus, PublishRequest, PublishPreview, Publication, VerifyRequest,\n  VerifyReport, Payment, RewardBalance, WithdrawResult, RunAttribution, AttributionRequest, AccuracyRequest,\n} from './types';\n\n",
    );
    let statuses = [
        ModelStatus::Ready,
        ModelStatus::Missing,
        ModelStatus::Unreadable,
    ];
    let models: Vec<_> = statuses.into_iter().map(model).collect();
    entry(&mut out, "models", "ModelSummary[]", &models);
    let mut safetensors = model(ModelStatus::Ready);
    safetensors.format = ModelFormat::Safetensors;
    safetensors.context_length = None;
    entry(&mut out, "safetensorsModel", "ModelSummary", &safetensors);
    let states = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];
    let jobs: Vec<_> = states.into_iter().map(job).collect();
    entry(&mut out, "jobs", "JobInfo[]", &jobs);
    let event = JobEvent {
        job_id: "0f0e".into(),
        seq: 3,
        at: "2026-01-01T00:00:01.000Z".into(),
        state: JobState::Running,
        fraction: 0.25,
        message: "step 1".into(),
        figures: BTreeMap::from([("tokens_per_s".to_string(), 212.5)]),
    };
    entry(&mut out, "jobEvent", "JobEvent", &event);
    let settings: Vec<_> = [
        BackendChoice::Auto,
        BackendChoice::Cpu,
        BackendChoice::Wgpu,
        BackendChoice::Cuda,
    ]
    .into_iter()
    .map(|default_backend| Settings {
        hub_endpoint: "http://127.0.0.1:9".into(),
        default_backend,
        datanet_hub: String::new(),
    })
    .collect();
    entry(&mut out, "settings", "Settings[]", &settings);
    let backends: Vec<_> = BackendKind::ALL
        .into_iter()
        .map(|name| BackendStatus {
            name,
            compiled: name == BackendKind::Cpu,
            usable: name == BackendKind::Cpu,
            detail: "detail".into(),
            software: false,
        })
        .collect();
    let doctor = DoctorReport {
        version: "0.1.0".into(),
        workspace: "/ws".into(),
        database: "/ws/studio.sqlite3".into(),
        backends,
        models: vec![model(ModelStatus::Ready)],
    };
    entry(&mut out, "doctor", "DoctorReport", &doctor);
    let added = [
        AddModelResult {
            model: Some(model(ModelStatus::Ready)),
            job: None,
        },
        AddModelResult {
            model: None,
            job: Some(job(JobState::Queued)),
        },
    ];
    entry(&mut out, "added", "AddModelResult[]", &added);
    let sampling = [SamplingParams::default(), SamplingParams::greedy(64)];
    entry(&mut out, "sampling", "SamplingParams[]", &sampling);
    let every_stop: Vec<_> = [
        StopReason::EndOfTurn,
        StopReason::MaxTokens,
        StopReason::ContextFull,
        StopReason::Cancelled,
    ]
    .into_iter()
    .map(stats)
    .collect();
    entry(&mut out, "messageStats", "MessageStats[]", &every_stop);
    let conversation = Conversation {
        id: "c0ffee".into(),
        title: "What is the capital of France?".into(),
        model_id: "smollm2-135m-instruct".into(),
        adapter_run_id: None,
        sampling: SamplingParams::greedy(64),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:02.000Z".into(),
        messages: vec![
            message(1, ChatRole::System, "You answer in one sentence.", None),
            message(2, ChatRole::User, "What is the capital of France?", None),
            message(
                3,
                ChatRole::Assistant,
                "The capital of France is Paris.",
                Some(stats(StopReason::EndOfTurn)),
            ),
        ],
    };
    entry(&mut out, "conversation", "Conversation", &conversation);
    let summaries = [ConversationSummary {
        id: "c0ffee".into(),
        title: "What is the capital of France?".into(),
        model_id: "smollm2-135m-instruct".into(),
        adapter_run_id: Some("5eed".into()),
        message_count: 2,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:02.000Z".into(),
    }];
    entry(
        &mut out,
        "conversations",
        "ConversationSummary[]",
        &summaries,
    );
    let requests = [
        NewConversation {
            model_id: "smollm2-135m-instruct".into(),
            adapter_run_id: None,
            title: None,
            system: None,
            sampling: None,
        },
        NewConversation {
            model_id: "smollm2-135m-instruct".into(),
            adapter_run_id: Some("5eed".into()),
            title: Some("Geography".into()),
            system: Some("You answer in one sentence.".into()),
            sampling: Some(SamplingParams::greedy(64)),
        },
    ];
    entry(&mut out, "newConversations", "NewConversation[]", &requests);
    let updates = [
        ConversationUpdate::default(),
        ConversationUpdate {
            title: Some("Geography".into()),
            model_id: Some("smollm2-135m-instruct".into()),
            adapter_run_id: Some(String::new()),
            sampling: Some(SamplingParams::default()),
        },
    ];
    entry(
        &mut out,
        "conversationUpdates",
        "ConversationUpdate[]",
        &updates,
    );
    let sends = [
        SendMessage {
            content: "What is the capital of France?".into(),
            sampling: None,
        },
        SendMessage {
            content: "And of Italy?".into(),
            sampling: Some(SamplingParams::greedy(64)),
        },
    ];
    entry(&mut out, "sendMessages", "SendMessage[]", &sends);
    let token = ChatToken {
        conversation_id: "c0ffee".into(),
        text: " Paris".into(),
    };
    entry(&mut out, "chatToken", "ChatToken", &token);
    let sent = SendResult {
        message: message(
            3,
            ChatRole::Assistant,
            "The capital of",
            Some(stats(StopReason::Cancelled)),
        ),
        stats: stats(StopReason::Cancelled),
    };
    entry(&mut out, "sendResult", "SendResult", &sent);
    entry(
        &mut out,
        "stopResults",
        "StopResult[]",
        &[StopResult { stopped: true }, StopResult { stopped: false }],
    );
    // Fine-tuning runs.
    entry(
        &mut out,
        "defaultTrainConfig",
        "TrainConfig",
        &TrainConfig::default(),
    );
    let presets: BTreeMap<&str, TrainConfig> = [
        ("quick", Preset::Quick),
        ("balanced", Preset::Balanced),
        ("thorough", Preset::Thorough),
    ]
    .into_iter()
    .map(|(name, p)| (name, p.config()))
    .collect();
    entry(&mut out, "presets", "Record<Preset, TrainConfig>", &presets);
    let schedules: Vec<_> = [Schedule::Constant, Schedule::Linear, Schedule::Cosine]
        .into_iter()
        .map(|schedule| TrainConfig {
            schedule,
            ..every_knob()
        })
        .collect();
    entry(&mut out, "trainConfigs", "TrainConfig[]", &schedules);
    let new_runs = [
        NewRun {
            name: None,
            model_id: "smollm2-135m-instruct".into(),
            dataset: "/data/modelfactory-help.jsonl".into(),
            config: Preset::Quick.config(),
        },
        NewRun {
            name: Some("Support answers".into()),
            model_id: "smollm2-135m-instruct".into(),
            dataset: "/data/modelfactory-help.jsonl".into(),
            config: every_knob(),
        },
    ];
    entry(&mut out, "newRuns", "NewRun[]", &new_runs);
    let runs: Vec<_> = [
        RunState::Queued,
        RunState::Running,
        RunState::Finished,
        RunState::Cancelled,
        RunState::Failed,
        RunState::Interrupted,
    ]
    .into_iter()
    .map(run)
    .collect();
    entry(&mut out, "runs", "RunSummary[]", &runs);
    let evals = [EvalRecord {
        step: 1,
        loss: 5.5355,
        perplexity: 253.53,
    }];
    entry(&mut out, "stepRecords", "StepRecord[]", &[step(1), step(2)]);
    entry(&mut out, "evalRecords", "EvalRecord[]", &evals);
    let data = DataSummary {
        format: "jsonl / alpaca".into(),
        rows_read: 120,
        rows_kept: 119,
        problems: vec!["line 7: no `output`".into()],
        train_examples: 108,
        eval_examples: 11,
        train_sequences: 108,
        skipped_examples: 0,
        truncated_examples: 2,
        trained_tokens: 4321,
    };
    entry(&mut out, "dataSummary", "DataSummary", &data);
    let details = [
        RunDetail {
            run: run(RunState::Running),
            config: Preset::Quick.config(),
            steps: vec![step(1), step(2)],
            evals: evals.to_vec(),
            data: Some(data),
            command: "modelfactory train --model smollm2-135m-instruct --data /data/modelfactory-help.jsonl".into(),
        },
        RunDetail {
            run: run(RunState::Queued),
            config: every_knob(),
            steps: Vec::new(),
            evals: Vec::new(),
            data: None,
            command: "modelfactory train".into(),
        },
    ];
    entry(&mut out, "runDetails", "RunDetail[]", &details);
    let previews = [
        PreviewRequest {
            model_id: "smollm2-135m-instruct".into(),
            dataset: "/data/modelfactory-help.jsonl".into(),
            max_length: None,
            count: None,
        },
        PreviewRequest {
            model_id: "smollm2-135m-instruct".into(),
            dataset: "/data/modelfactory-help.jsonl".into(),
            max_length: Some(128),
            count: Some(3),
        },
    ];
    entry(&mut out, "previewRequests", "PreviewRequest[]", &previews);
    let segment = |text: &str, kind| PreviewSegment {
        text: text.into(),
        kind,
    };
    let skipped = |id: &str, reason| ExamplePreview {
        id: id.into(),
        segments: Vec::new(),
        tokens: 0,
        trained_tokens: 0,
        skipped: Some(reason),
    };
    let preview = DatasetPreview {
        report: LoadReport {
            path: "/data/modelfactory-help.jsonl".into(),
            format: DatasetFormat {
                file: FileFormat::Jsonl,
                rows: RowFormat::Alpaca,
            },
            rows_read: 120,
            rows_kept: 119,
            problems: vec![RowProblem {
                number: 7,
                unit: RowUnit::Line,
                reason: "no `output`".into(),
            }],
        },
        examples: vec![
            ExamplePreview {
                id: "9afd".into(),
                segments: vec![
                    segment(
                        "<|im_start|>user\nWhat is ModelFactory?<|im_end|>\n<|im_start|>assistant\n",
                        SegmentKind::Context,
                    ),
                    segment("A desktop studio", SegmentKind::Trained),
                    segment(" for fine-tuning.<|im_end|>", SegmentKind::Truncated),
                ],
                tokens: 40,
                trained_tokens: 4,
                skipped: None,
            },
            skipped(
                "a",
                SkipReason::LongerThanContext {
                    tokens: 900,
                    first_trained: 600,
                    max_len: 512,
                },
            ),
            skipped("b", SkipReason::NoTrainedTokens),
            skipped("c", SkipReason::TurnNotFound { turn: 2 }),
            skipped(
                "d",
                SkipReason::Render {
                    message: "template error".into(),
                },
            ),
        ],
    };
    entry(&mut out, "datasetPreview", "DatasetPreview", &preview);
    let other_formats: Vec<_> = [
        (FileFormat::JsonArray, RowFormat::ShareGpt, RowUnit::Row),
        (FileFormat::Csv, RowFormat::ChatMl, RowUnit::Line),
        (FileFormat::Tsv, RowFormat::PromptResponse, RowUnit::Line),
        (FileFormat::Parquet, RowFormat::Alpaca, RowUnit::Row),
    ]
    .into_iter()
    .map(|(file, rows, unit)| LoadReport {
        path: "/data/rows".into(),
        format: DatasetFormat { file, rows },
        rows_read: 1,
        rows_kept: 0,
        problems: vec![RowProblem {
            number: 1,
            unit,
            reason: "empty".into(),
        }],
    })
    .map(|report| DatasetPreview {
        report,
        examples: Vec::new(),
    })
    .collect();
    entry(
        &mut out,
        "otherPreviews",
        "DatasetPreview[]",
        &other_formats,
    );
    let demos = [DemoDataset {
        name: "modelfactory-help".into(),
        path: "/usr/share/modelfactory/assets/datasets/modelfactory-help.jsonl".into(),
        bytes: 45_857,
    }];
    entry(&mut out, "demoDatasets", "DemoDataset[]", &demos);
    datanet_entries(&mut out);
    publishing_entries(&mut out);
    let error = ApiError {
        error: "no model with id \"x\"".into(),
        hint: Some("hint".into()),
    };
    entry(&mut out, "apiError", "ApiError", &error);
    out.trim_end().to_string() + "\n"
}

#[test]
fn the_typescript_types_are_checked_against_the_rust_api_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ui/src/lib/api/contract.generated.ts");
    let fresh = render();
    if std::env::var_os("UPDATE_API_CONTRACT").is_some() {
        std::fs::write(&path, &fresh).expect("write the contract file");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: the Rust API types changed. Run `UPDATE_API_CONTRACT=1 cargo test -p studio --test api_contract`, \
         then `npm run check` in ui/ and update ui/src/lib/api/types.ts and docs/api.md until it passes",
        path.display()
    );
}
