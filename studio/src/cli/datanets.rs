//! `modelfactory datanet …`, `modelfactory dataset …` and `modelfactory hub serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datanet_sync::catalog::{LabelStatus, LabelUpdate};
use datanet_sync::format::{Content, Manifest, Message};
use datanet_sync::import::{self, ImportDefaults};
use datanet_sync::pack::{self, PackOptions};
use datanet_sync::view::{Flag, RowQuery, SortKey, StatusFilter};
use studio::Studio;
use studio::datanets::{DatasetSource, NewDataset};

use super::args::{
    DatanetCommand, DatasetCommand, FlagArg, HubCommand, PackArgs, SortArg, StatusArg,
};
use super::{human_bytes, human_count, print_json};

impl From<StatusArg> for StatusFilter {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Accepted => StatusFilter::Accepted,
            StatusArg::Rejected => StatusFilter::Rejected,
            StatusArg::Unlabeled => StatusFilter::Unlabeled,
        }
    }
}

fn short(address: &str) -> String {
    if address.len() > 12 {
        format!("{}…{}", &address[..6], &address[address.len() - 4..])
    } else {
        address.to_string()
    }
}

/// The first line of a text, cut to `n` characters.
fn clip(text: &str, n: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > n {
        format!("{}…", line.chars().take(n - 1).collect::<String>())
    } else {
        line.to_string()
    }
}

fn print_manifest(m: &Manifest, revision: &str) {
    println!("{} — {}", m.id, m.name);
    println!(
        "domain: {}   license: {}   revision: {revision}",
        m.domain, m.license
    );
    if !m.description.is_empty() {
        println!("{}", m.description);
    }
    if !m.source.is_empty() {
        println!("source: {}", m.source);
    }
    println!(
        "rows: {}   shards: {}   size: {}   contributions root: {}",
        m.rows(),
        m.shards.len(),
        human_bytes(m.bytes()),
        m.contributions_root
    );
    for s in &m.shards {
        println!(
            "  {:<28} {:>8} rows {:>10}  sha256 {}",
            s.path,
            s.rows,
            human_bytes(s.bytes),
            s.sha256
        );
    }
    println!("contributors:");
    for c in &m.contributors {
        println!("  {} {:>8} rows", c.address, c.rows);
    }
}

pub fn datanet(home: &Path, command: DatanetCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatanetCommand::Pack(args) => return pack_command(args),
        DatanetCommand::Verify { dir } => {
            let manifest = pack::verify(&dir)?;
            println!(
                "{}: {} rows in {} shards verified; contributions root {}",
                dir.display(),
                manifest.rows(),
                manifest.shards.len(),
                manifest.contributions_root
            );
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let studio = Studio::open(home)?;
    match command {
        DatanetCommand::List(a) => {
            let list = studio.list_datanets()?;
            if a.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "No Datanets here yet: `modelfactory datanet search`, then `modelfactory datanet pull ID`."
                );
            } else {
                println!(
                    "{:<36} {:<14} {:>8} {:>6}  {:<8} REVISION",
                    "ID", "DOMAIN", "ROWS", "PEOPLE", "ORIGIN"
                );
                for d in list {
                    println!(
                        "{:<36} {:<14} {:>8} {:>6}  {:<8} {}",
                        d.id,
                        d.domain,
                        human_count(d.rows),
                        d.contributors,
                        serde_json::to_value(d.origin)?.as_str().unwrap_or("?"),
                        &d.revision[..d.revision.len().min(12)]
                    );
                }
            }
        }
        DatanetCommand::Search { query, json } => {
            let found = studio.search_hub(&query)?;
            if json {
                print_json(&found)?;
            } else if found.is_empty() {
                println!("No Datanet on {} matches {query:?}.", studio.datanet_hub()?);
            } else {
                for d in found {
                    println!(
                        "{:<36} {:<12} {}{}",
                        d.listing.id,
                        d.listing.license.as_deref().unwrap_or("-"),
                        d.listing
                            .description
                            .as_deref()
                            .map(|s| clip(s, 60))
                            .unwrap_or_default(),
                        if d.pulled { "  [pulled]" } else { "" }
                    );
                }
            }
        }
        DatanetCommand::Show { id, json } => {
            let card = studio.hub_card(&id)?;
            if json {
                print_json(&card)?;
            } else {
                print_manifest(&card.manifest, &card.revision);
            }
        }
        DatanetCommand::Pull { id } => {
            let last = std::sync::Mutex::new(-1.0f64);
            let d = super::jobs::run_in_foreground(
                &studio,
                "pull-datanet",
                &format!("Pull {id}"),
                move |e| {
                    // Whole percents are enough for a terminal.
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    if (e.fraction - *last).abs() >= 0.01 || e.state.is_finished() {
                        *last = e.fraction;
                        eprintln!("[{:>3.0}%] {}", e.fraction * 100.0, e.message);
                    }
                },
                |ctx| studio.pull_datanet_now(ctx, &id),
            )?;
            println!(
                "pulled {} revision {}: {} rows from {} contributors",
                d.id, d.revision, d.rows, d.contributors
            );
        }
        DatanetCommand::Import { file, name } => {
            let d = studio.import_datanet(&file.to_string_lossy(), &name)?;
            println!("imported {} rows as {}", d.rows, d.id);
        }
        DatanetCommand::Contribute {
            datanet,
            contributor,
            file,
            no_edits,
            out,
        } => {
            let package =
                studio.package_contribution(&datanet, &contributor, file.as_deref(), !no_edits)?;
            package.write(&out)?;
            println!(
                "{} new rows and {} revisions to {} (revision {}) by {} → {}; contributions root {}",
                package.rows.len(),
                package.revisions.len(),
                package.datanet,
                package.base_revision,
                package.contributor,
                out.display(),
                package.contributions_root
            );
        }
        DatanetCommand::Pack(_) | DatanetCommand::Verify { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn pack_command(args: PackArgs) -> anyhow::Result<ExitCode> {
    let created_at = args
        .created_at
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let imported = import::import_file(
        &args.file,
        &ImportDefaults {
            contributor: args.contributor,
            license: args.license.clone(),
            created_at,
        },
    )?;
    for s in &imported.skipped {
        eprintln!(
            "{}, line {}: skipped: {}",
            args.file.display(),
            s.line,
            s.reason
        );
    }
    let staging = args.out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    let manifest = pack::pack(
        &imported.rows,
        &PackOptions {
            id: args.id,
            name: args.name,
            domain: args.domain,
            description: args.description,
            license: args.license,
            source: args.source,
            rows_per_shard: args.rows_per_shard,
        },
        &staging,
    )?;
    if args.out.exists() {
        std::fs::remove_dir_all(&args.out)
            .with_context(|| format!("replacing {}", args.out.display()))?;
    }
    std::fs::rename(&staging, &args.out)
        .with_context(|| format!("moving the Datanet into {}", args.out.display()))?;
    print_manifest(&manifest, "-");
    Ok(ExitCode::SUCCESS)
}

pub fn dataset(home: &Path, command: DatasetCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        DatasetCommand::Rows(a) => {
            let query = RowQuery {
                offset: a.offset,
                limit: a.limit,
                search: a.search,
                contributor: a.contributor,
                status: a.status.map(Into::into),
                tag: a.tag,
                min_len: a.min_len,
                max_len: a.max_len,
                flag: a.flag.map(|f| match f {
                    FlagArg::Pii => Flag::Pii,
                    FlagArg::Duplicate => Flag::Duplicate,
                    FlagArg::Edited => Flag::Edited,
                }),
                sort: match a.sort {
                    SortArg::Position => SortKey::Position,
                    SortArg::Length => SortKey::Length,
                    SortArg::Rating => SortKey::Rating,
                    SortArg::Contributor => SortKey::Contributor,
                    SortArg::CreatedAt => SortKey::CreatedAt,
                },
                desc: a.desc,
            };
            let page = studio.datanet_rows(&a.datanet, &query)?;
            if a.json {
                print_json(&page)?;
            } else {
                println!(
                    "rows {}–{} of {}",
                    page.offset + 1,
                    page.offset + page.rows.len() as u64,
                    page.total
                );
                println!(
                    "{:<12} {:<9} {:>2} {:<13} {:>6}  TEXT",
                    "ID", "STATUS", "★", "CONTRIBUTOR", "CHARS"
                );
                for r in page.rows {
                    let status = match r.status {
                        Some(LabelStatus::Accepted) => "accepted",
                        Some(LabelStatus::Rejected) => "rejected",
                        None => "-",
                    };
                    let mut flags = String::new();
                    if r.version > 0 {
                        flags.push_str(" [edited]");
                    }
                    if !r.pii.is_empty() {
                        flags.push_str(" [pii]");
                    }
                    if r.duplicate_of.is_some() {
                        flags.push_str(" [dup]");
                    }
                    println!(
                        "{:<12} {:<9} {:>2} {:<13} {:>6}  {}{flags}",
                        &r.contribution_id[..12.min(r.contribution_id.len())],
                        status,
                        r.rating
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "-".into()),
                        short(&r.contributor),
                        r.length,
                        clip(&r.content.text(), 60)
                    );
                }
            }
        }
        DatasetCommand::Label(a) => {
            let update = LabelUpdate {
                status: if a.accept {
                    Some(Some(LabelStatus::Accepted))
                } else if a.reject {
                    Some(Some(LabelStatus::Rejected))
                } else if a.clear {
                    Some(None)
                } else {
                    None
                },
                rating: a.rate.map(|r| (r > 0).then_some(r)),
                tags: (!a.tag.is_empty()).then_some(a.tag),
            };
            let id = find_id(&studio, &a.datanet, &a.contribution_id)?;
            let row = studio.label_row(&a.datanet, &id, &update)?;
            print_json(&row)?;
        }
        DatasetCommand::Edit(a) => {
            let content = match (a.messages, a.instruction, a.output) {
                (Some(json), _, _) => Content::Messages {
                    messages: serde_json::from_str::<Vec<Message>>(&json)
                        .context("--messages is not a JSON list of {role, content}")?,
                },
                (None, Some(instruction), Some(output)) => Content::Instruction {
                    instruction,
                    input: a.input,
                    output,
                },
                _ => anyhow::bail!("give --instruction and --output, or --messages"),
            };
            let id = find_id(&studio, &a.datanet, &a.contribution_id)?;
            let row = studio.edit_row(&a.datanet, &id, &content)?;
            println!(
                "{} is now version {} (the original is kept)",
                row.contribution_id, row.version
            );
        }
        DatasetCommand::Stats { datanet, json } => {
            let s = studio.datanet_stats(&datanet)?;
            if json {
                print_json(&s)?;
            } else {
                println!(
                    "rows {}  accepted {}  rejected {}  unlabeled {}  edited {}  with personal data {}  marked duplicate {}",
                    s.rows,
                    s.accepted,
                    s.rejected,
                    s.unlabeled,
                    s.edited,
                    s.pii_rows,
                    s.duplicate_rows
                );
                let l = &s.length;
                println!(
                    "length (characters): min {} median {} mean {:.0} p95 {} max {}",
                    l.min, l.median, l.mean, l.p95, l.max
                );
                let top = l
                    .histogram
                    .iter()
                    .map(|b| b.count)
                    .max()
                    .unwrap_or(1)
                    .max(1);
                for b in &l.histogram {
                    let bar = "█".repeat(((b.count as f64 / top as f64) * 40.0).round() as usize);
                    println!("  {:>6}–{:<6} {:>7} {bar}", b.start, b.end, b.count);
                }
                println!("contributors:");
                for c in &s.contributors {
                    println!("  {} {:>8} rows", c.address, c.rows);
                }
            }
        }
        DatasetCommand::Dedupe {
            datanet,
            threshold,
            reject,
            json,
        } => {
            let scan = studio.scan_duplicates(&datanet, threshold, reject)?;
            if json {
                print_json(&scan)?;
            } else {
                println!(
                    "{} groups of duplicates ({} exact, {} near at Jaccard ≥ {}); {} rows rejected",
                    scan.groups.len(),
                    scan.exact_groups,
                    scan.near_groups,
                    scan.threshold,
                    scan.rejected
                );
            }
        }
        DatasetCommand::Build(a) => {
            let statuses: Vec<StatusFilter> = a.status.into_iter().map(Into::into).collect();
            let summary = studio.create_dataset(&NewDataset {
                name: a.name,
                sources: a
                    .from
                    .into_iter()
                    .map(|datanet| DatasetSource {
                        datanet,
                        statuses: statuses.clone(),
                        search: a.search.clone(),
                        tag: a.tag.clone(),
                    })
                    .collect(),
                files: a
                    .files
                    .iter()
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect(),
                eval_fraction: a.eval_fraction,
                seed: a.seed,
            })?;
            if a.json {
                print_json(&summary)?;
            } else {
                println!(
                    "dataset {}: {} rows ({} eval) from {} contributors → {}",
                    summary.name,
                    summary.rows,
                    summary.eval_rows,
                    summary.contributors,
                    summary.path.display()
                );
            }
        }
        DatasetCommand::List(a) => {
            let list = studio.list_datasets()?;
            if a.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("No datasets yet: `modelfactory dataset build NAME --from DATANET`.");
            } else {
                println!(
                    "{:<24} {:>8} {:>6} {:>6}  PATH",
                    "NAME", "ROWS", "EVAL", "PEOPLE"
                );
                for d in list {
                    println!(
                        "{:<24} {:>8} {:>6} {:>6}  {}",
                        d.name,
                        d.rows,
                        d.eval_rows,
                        d.contributors,
                        d.path.display()
                    );
                }
            }
        }
        DatasetCommand::Show {
            name,
            offset,
            limit,
            json,
        } => {
            let page = studio.dataset_rows(&name, offset, limit)?;
            if json {
                print_json(&page)?;
            } else {
                println!(
                    "rows {}–{} of {}",
                    offset + 1,
                    offset + page.rows.len() as u64,
                    page.total
                );
                for r in page.rows {
                    println!(
                        "{:<12} {:<13} {:<5} {}",
                        &r.contribution_id[..12.min(r.contribution_id.len())],
                        short(&r.contributor),
                        serde_json::to_value(r.split)?.as_str().unwrap_or("?"),
                        clip(&r.content.text(), 60)
                    );
                }
            }
        }
        DatasetCommand::Export { name, out } => {
            let summary = studio.dataset(&name)?;
            std::fs::copy(&summary.path, &out).with_context(|| {
                format!("copying {} to {}", summary.path.display(), out.display())
            })?;
            println!("{} rows → {}", summary.rows, out.display());
        }
        DatasetCommand::Delete { name } => {
            studio.delete_dataset(&name)?;
            println!("deleted {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A contribution id, or a unique prefix of one as the tables print.
fn find_id(studio: &Studio, datanet: &str, given: &str) -> anyhow::Result<String> {
    if given.len() == 64 {
        return Ok(given.to_string());
    }
    let page = studio.datanet_rows(
        datanet,
        &RowQuery {
            limit: datanet_sync::view::MAX_PAGE,
            ..RowQuery::default()
        },
    )?;
    let mut offset = 0;
    let mut found = Vec::new();
    let mut rows = page.rows;
    loop {
        found.extend(
            rows.iter()
                .filter(|r| r.contribution_id.starts_with(given))
                .map(|r| r.contribution_id.clone()),
        );
        offset += rows.len() as u64;
        if rows.is_empty() || offset >= page.total || found.len() > 1 {
            break;
        }
        rows = studio
            .datanet_rows(
                datanet,
                &RowQuery {
                    offset,
                    limit: datanet_sync::view::MAX_PAGE,
                    ..RowQuery::default()
                },
            )?
            .rows;
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no row of {datanet} has an id starting with {given}"),
        _ => anyhow::bail!(
            "several rows of {datanet} have ids starting with {given}; give more digits"
        ),
    }
}

/// The write token `hub serve --writable` accepts, when set.
const HUB_WRITE_TOKEN_ENV: &str = "MODELFACTORY_HUB_WRITE_TOKEN";

pub fn hub(command: HubCommand) -> anyhow::Result<ExitCode> {
    match command {
        HubCommand::Serve {
            folder,
            host,
            port,
            writable,
        } => {
            let ip: IpAddr = host
                .parse()
                .with_context(|| format!("--host {host:?} is not an IP address"))?;
            anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async move {
                let addr = SocketAddr::new(ip, port);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                println!("Datanet hub: http://{local} serving {}", folder.display());
                println!("point the studio at it: MODELFACTORY_DATANET_HUB=http://{local}");
                let token = writable.then(|| match std::env::var(HUB_WRITE_TOKEN_ENV) {
                    Ok(token) if !token.trim().is_empty() => token,
                    _ => {
                        let token = studio::server::new_token();
                        println!("write token (publish with HF_TOKEN set to it): {token}");
                        token
                    }
                });
                if token.is_some() {
                    println!(
                        "publish to it: MODELFACTORY_PUBLISH_HUB=http://{local} modelfactory publish <run>"
                    );
                }
                datanet_sync::hub::HubServer::new(folder)
                    .with_write_token(token)
                    .serve(listener)
                    .await?;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
