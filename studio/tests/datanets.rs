//! Datanets end to end through the studio: the built-in hub serves the demo Datanet from
//! `assets/hub`, the studio pulls it over loopback, curates it, builds a dataset, and the
//! trainer reads that dataset with every row's contribution id and contributor intact.

use std::collections::HashSet;

use datanet_sync::catalog::{LabelStatus, LabelUpdate};
use datanet_sync::format::Content;
use datanet_sync::view::{Flag, RowQuery, SortKey, StatusFilter};
use studio::datanets::{DatasetSource, NewDataset};
use studio::{JobState, Studio};

const DEMO: &str = "modelfactory/python-faq";

fn pull(studio: &Studio, id: &str) -> studio::datanets::LocalDatanet {
    let mut pulled = None;
    let job = studio
        .jobs()
        .run("pull-datanet", "test pull", |ctx| {
            pulled = Some(studio.pull_datanet_now(ctx, id)?);
            Ok(())
        })
        .expect("the job runs");
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    pulled.expect("the pull returned the Datanet")
}

#[test]
fn the_demo_datanet_is_pulled_curated_and_built_into_a_dataset_the_trainer_reads() {
    let home = tempfile::tempdir().expect("temp workspace");
    let studio = Studio::open(home.path()).expect("opens the workspace");

    // Browse: the built-in hub lists the demo Datanet and its card.
    let found = studio.search_hub("faq").expect("searches the built-in hub");
    assert!(
        found.iter().any(|d| d.listing.id == DEMO && !d.pulled),
        "{found:?}"
    );
    let card = studio.hub_card(DEMO).expect("reads the card");
    assert!(card.manifest.rows() >= 150, "{} rows", card.manifest.rows());
    assert!(card.manifest.contributors.len() >= 5);

    // Pull, twice: the second finds every shard verified and still succeeds.
    let local = pull(&studio, DEMO);
    assert_eq!(local.rows, card.manifest.rows());
    assert_eq!(local.revision, card.revision);
    pull(&studio, DEMO);
    let listed = studio.search_hub("").expect("searches");
    assert!(
        listed.iter().any(|d| d.listing.id == DEMO && d.pulled),
        "{listed:?}"
    );

    // Curate: page, search, label, edit.
    let page = studio
        .datanet_rows(
            DEMO,
            &RowQuery {
                limit: 10,
                ..RowQuery::default()
            },
        )
        .expect("pages");
    assert_eq!(page.total, local.rows);
    assert_eq!(page.rows.len(), 10);
    let hits = studio
        .datanet_rows(
            DEMO,
            &RowQuery {
                search: Some("DICTIONARY".into()),
                ..RowQuery::default()
            },
        )
        .expect("searches");
    assert!(hits.total > 0 && hits.total < local.rows);
    assert!(
        hits.rows
            .iter()
            .all(|r| r.content.text().to_lowercase().contains("dictionary"))
    );

    let first = &page.rows[0];
    let second = &page.rows[1];
    let accepted = studio
        .label_row(
            DEMO,
            &first.contribution_id,
            &LabelUpdate {
                status: Some(Some(LabelStatus::Accepted)),
                rating: Some(Some(5)),
                tags: Some(vec!["good".into()]),
            },
        )
        .expect("labels");
    assert_eq!(accepted.status, Some(LabelStatus::Accepted));
    studio
        .label_row(
            DEMO,
            &second.contribution_id,
            &LabelUpdate {
                status: Some(Some(LabelStatus::Rejected)),
                ..LabelUpdate::default()
            },
        )
        .expect("rejects");
    let edited_text = "A shorter answer, edited by the curator.";
    let edited = studio
        .edit_row(
            DEMO,
            &first.contribution_id,
            &Content::Instruction {
                instruction: "What is Python?".into(),
                input: String::new(),
                output: edited_text.into(),
            },
        )
        .expect("edits");
    assert_eq!(edited.version, 1);
    assert_eq!(
        edited.original.as_ref(),
        Some(&first.content),
        "the original is kept"
    );
    assert!(
        studio
            .label_row(DEMO, "no-such-row", &LabelUpdate::default())
            .is_err(),
        "labelling a row that does not exist fails"
    );

    let only_edited = studio
        .datanet_rows(
            DEMO,
            &RowQuery {
                flag: Some(Flag::Edited),
                ..RowQuery::default()
            },
        )
        .expect("filters");
    assert_eq!(only_edited.total, 1);
    let tagged = studio
        .datanet_rows(
            DEMO,
            &RowQuery {
                tag: Some("good".into()),
                ..RowQuery::default()
            },
        )
        .expect("filters by tag");
    assert_eq!(tagged.total, 1);
    let longest = studio
        .datanet_rows(
            DEMO,
            &RowQuery {
                sort: SortKey::Length,
                desc: true,
                limit: 5,
                ..RowQuery::default()
            },
        )
        .expect("sorts");
    assert!(longest.rows.windows(2).all(|w| w[0].length >= w[1].length));

    let stats = studio.datanet_stats(DEMO).expect("stats");
    assert_eq!((stats.accepted, stats.rejected, stats.edited), (1, 1, 1));
    assert_eq!(stats.length.count, local.rows);
    assert_eq!(
        stats.length.histogram.iter().map(|b| b.count).sum::<u64>(),
        local.rows
    );

    let scan = studio.scan_duplicates(DEMO, 0.8, true).expect("scans");
    assert_eq!(
        scan.rejected as usize,
        scan.groups.iter().map(|g| g.len() - 1).sum::<usize>()
    );

    // Build a dataset of accepted and unlabeled rows; rejected ones stay out.
    let summary = studio
        .create_dataset(&NewDataset {
            name: "faq".into(),
            sources: vec![DatasetSource {
                datanet: DEMO.into(),
                statuses: vec![StatusFilter::Accepted, StatusFilter::Unlabeled],
                search: None,
                tag: None,
            }],
            files: vec![],
            eval_fraction: 0.1,
            seed: 7,
        })
        .expect("builds the dataset");
    assert_eq!(
        summary.rows,
        local.rows - 1 - scan.rejected,
        "every row but the rejected ones"
    );
    assert!(summary.eval_rows > 0);
    assert!(summary.contributors >= 5);
    let rows = studio
        .dataset_rows("faq", 0, 1000)
        .expect("reads the dataset");
    assert_eq!(rows.total, summary.rows);
    assert!(
        rows.rows
            .iter()
            .all(|r| r.contribution_id.len() == 64 && r.contributor.starts_with("0x"))
    );
    assert!(
        !rows
            .rows
            .iter()
            .any(|r| r.contribution_id == second.contribution_id)
    );
    let with_edit = rows
        .rows
        .iter()
        .find(|r| r.contribution_id == first.contribution_id)
        .expect("the accepted row is in");
    assert!(
        with_edit.content.text().contains(edited_text),
        "the edit is what trains"
    );

    // The trainer reads it and keeps each row's provenance.
    let loaded = trainer::data::load_dataset(&summary.path).expect("the trainer reads it");
    assert_eq!(loaded.examples.len() as u64, summary.rows);
    let ids: HashSet<_> = loaded
        .examples
        .iter()
        .filter_map(|e| e.contribution_id.clone())
        .collect();
    assert_eq!(ids.len() as u64, summary.rows);
    assert!(loaded.examples.iter().all(|e| e.contributor.is_some()));
    assert!(ids.contains(&first.contribution_id));
}

#[test]
fn importing_a_file_with_a_bad_line_keeps_the_good_rows() {
    let home = tempfile::tempdir().expect("temp workspace");
    let studio = Studio::open(home.path()).expect("opens the workspace");
    let file = home.path().join("mine.jsonl");
    std::fs::write(
        &file,
        "{\"instruction\": \"Q1\", \"output\": \"A1\"}\n{not json\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
    )
    .expect("writes");
    let local = studio
        .import_datanet(&file.to_string_lossy(), "mine")
        .expect("imports");
    assert_eq!((local.id.as_str(), local.rows), ("local/mine", 2));
    let page = studio
        .datanet_rows("local/mine", &RowQuery::default())
        .expect("pages");
    assert_eq!(page.rows.len(), 2);
    assert!(matches!(page.rows[1].content, Content::Messages { .. }));

    // A contribution: one new row from a file, and the edit of an existing row.
    studio
        .edit_row(
            "local/mine",
            &page.rows[0].contribution_id,
            &Content::Instruction {
                instruction: "Q1".into(),
                input: String::new(),
                output: "A better A1".into(),
            },
        )
        .expect("edits");
    let more = home.path().join("more.csv");
    std::fs::write(&more, "instruction,output\nQ2,A2\n").expect("writes");
    let me = "0x3333333333333333333333333333333333333333";
    let package = studio
        .package_contribution("local/mine", me, Some(&more), true)
        .expect("packages");
    package.verify().expect("the package checks out");
    assert_eq!((package.rows.len(), package.revisions.len()), (1, 1));
    assert_eq!(package.revisions[0].revises, page.rows[0].contribution_id);
    assert!(package.rows.iter().all(|r| r.contributor == me));

    let bad = home.path().join("bad.jsonl");
    std::fs::write(&bad, "{nope\n").expect("writes");
    let err = studio
        .import_datanet(&bad.to_string_lossy(), "bad")
        .expect_err("no usable rows");
    assert!(err.to_string().contains("bad.jsonl"), "{err}");
    assert!(
        studio.list_datanets().expect("lists").len() == 1,
        "a failed import leaves nothing behind"
    );
}

/// A hub of our own on loopback, serving `root`, for the lifetime of the returned runtime.
fn serve_hub(root: std::path::PathBuf) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    runtime.spawn(datanet_sync::hub::server::serve(root, listener));
    (runtime, format!("http://{addr}"))
}

#[test]
fn a_datanet_with_no_rows_or_no_such_datanet_is_a_clear_error_and_changes_nothing() {
    let home = tempfile::tempdir().expect("temp workspace");
    let root = home.path().join("hub");
    let repo = root.join("someone").join("empty");
    std::fs::create_dir_all(&repo).expect("creates");
    let manifest = datanet_sync::format::Manifest {
        schema_version: datanet_sync::format::SCHEMA_VERSION,
        id: "someone/empty".into(),
        name: "Empty".into(),
        domain: "none".into(),
        description: String::new(),
        license: "CC0-1.0".into(),
        source: String::new(),
        row_schema: datanet_sync::format::RowSchema::Instruction,
        shards: vec![],
        contributors: vec![],
        contributions_root: datanet_sync::format::sha256_hex(b""),
    };
    std::fs::write(
        repo.join("datanet.json"),
        serde_json::to_vec(&manifest).expect("serialises"),
    )
    .expect("writes");
    std::fs::write(
        repo.join("README.md"),
        "---\ntags:\n- datanet\n---\n# Empty\n",
    )
    .expect("writes");
    let (_runtime, endpoint) = serve_hub(root);

    let studio = Studio::open(home.path()).expect("opens the workspace");
    let mut settings = studio.settings().expect("settings");
    settings.datanet_hub = endpoint;
    studio.save_settings(&settings).expect("saves");

    let job = studio
        .jobs()
        .run("pull-datanet", "empty", |ctx| {
            studio.pull_datanet_now(ctx, "someone/empty").map(|_| ())
        })
        .expect("the job runs");
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.error.as_deref().is_some_and(|e| e.contains("no rows")),
        "{:?}",
        job.error
    );
    let err = studio
        .hub_card("someone/missing")
        .expect_err("no such Datanet");
    assert!(err.to_string().contains("someone/missing"), "{err}");
    assert!(studio.list_datanets().expect("lists").is_empty());
}

#[test]
fn the_shipped_demo_datanet_verifies() {
    let repo = studio::datanets::assets_dir()
        .expect("the assets folder")
        .join("hub/modelfactory/python-faq");
    let manifest =
        datanet_sync::pack::verify(&repo).expect("every shard, row id and the root check out");
    assert!(manifest.rows() >= 150);
    assert!(manifest.contributors.len() >= 5, "several contributors");
}
