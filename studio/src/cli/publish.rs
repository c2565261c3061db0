//! `chain`, `publish`, `verify` and `rewards`: the adapter's way out of the studio.

use std::path::Path;
use std::process::ExitCode;

use studio::Studio;
use studio::chain::{ChainSettings, ChainStatus, parse_wei};
use studio::publish::{Publication, PublishRequest};
use studio::verify::VerifyRequest;
use studio::wallet::parse_address;
use wallet::manifest::AttributionMethod;

use super::args::{ChainCommand, PublishArgs, RewardsCommand, VerifyArgs};
use super::print_json;
use super::wallet::passphrase_once;

pub fn chain(home: &Path, command: ChainCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        ChainCommand::Up { detach, json } => {
            let status = studio.chain_up()?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
            if !detach && status.local {
                eprintln!("the local chain runs until Ctrl-C");
                wait_for_ctrl_c()?;
            }
        }
        ChainCommand::Status { json } => {
            let status = studio.chain_status()?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
        }
        ChainCommand::Set {
            rpc_url,
            chain_id,
            registry,
            splitter,
        } => {
            let saved = studio.save_chain_settings(&ChainSettings {
                rpc_url,
                chain_id: Some(chain_id),
                registry: Some(registry),
                splitter: Some(splitter),
            })?;
            println!(
                "saved: chain {} at {}",
                saved.chain_id.unwrap_or_default(),
                saved.rpc_url
            );
        }
        ChainCommand::Local => {
            studio.save_chain_settings(&ChainSettings::default())?;
            println!("saved: the local chain");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &ChainStatus) {
    let which = if s.local { "local (anvil)" } else { "remote" };
    println!("chain      {which}, id {}", opt(s.chain_id));
    println!("url        {}", s.url.as_deref().unwrap_or("-"));
    println!(
        "state      {}",
        if s.reachable {
            format!("answering, block {}", opt(s.block))
        } else {
            "not answering".into()
        }
    );
    println!("registry   {}", s.registry.as_deref().unwrap_or("-"));
    println!("splitter   {}", s.splitter.as_deref().unwrap_or("-"));
    if let Some(file) = &s.state_file {
        println!("saved in   {file}");
    }
    if let Some(problem) = &s.problem {
        println!("note       {problem}");
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}

pub fn publish(home: &Path, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    let request = PublishRequest {
        run_id: args.run,
        publisher: args.address,
        repo: args.repo,
        license: args.license,
        hub: args.hub,
        attribution: args.attribution,
    };
    if args.dry_run {
        let preview = studio.publish_preview(&request)?;
        if args.json {
            print_json(&preview)?;
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", serde_json::to_string_pretty(&preview.manifest)?);
        println!();
        println!("manifest hash  {}", preview.manifest_hash);
        println!("destination    {}/{}", preview.hub, preview.repo);
        for f in &preview.files {
            println!(
                "  {:<28} {:>12} bytes  sha256 {}",
                f.path, f.bytes, f.sha256
            );
        }
        println!(
            "chain          {} at {}, registry {}",
            preview.chain_id, preview.chain_url, preview.registry
        );
        match (
            &preview.gas_estimate,
            &preview.max_cost_wei,
            &preview.gas_problem,
        ) {
            (Some(gas), Some(cost), _) => {
                println!("gas            {gas} at most, costing up to {cost} wei")
            }
            (_, _, Some(problem)) => println!("gas            no estimate: {problem}"),
            _ => println!("gas            no estimate"),
        }
        println!(
            "shares by      {}",
            match preview.attribution_method {
                AttributionMethod::DataInf => "datainf (measured influence on the evaluation loss)",
                AttributionMethod::RowShare => "row-share (rows written)",
            }
        );
        for (who, bps) in &preview.shares {
            println!("share          {who}  {:>6.2}%", f64::from(*bps) / 100.0);
        }
        for who in &preview.harmful {
            println!("harmful        {who}  (its rows raised the evaluation loss: no share)");
        }
        if preview.uncredited_rows > 0 {
            println!(
                "note           {} trained row(s) came from local files and are credited to no one",
                preview.uncredited_rows
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let publisher = parse_address(&request.publisher)?;
    let mut stdin = std::io::stdin().lock();
    let pass = passphrase_once(&mut stdin)?;
    let published: Publication = super::jobs::run_in_foreground(
        &studio,
        "publish",
        &format!("Publish run {}", request.run_id),
        |e| eprintln!("[{:>3.0}%] {}", e.fraction * 100.0, e.message),
        |ctx| studio.publish_job(ctx, &request, publisher, &pass),
    )?;
    if args.json {
        print_json(&published)?;
    } else {
        print_publication(&published);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_publication(p: &Publication) {
    println!("manifest   {}", p.manifest_hash);
    println!(
        "repository {}",
        p.repo_url.as_deref().unwrap_or(p.repo.as_str())
    );
    println!("revision   {}", p.commit.as_deref().unwrap_or("-"));
    println!(
        "registered {} on chain {} (registry {})",
        p.tx_hash.as_deref().unwrap_or("earlier"),
        p.chain_id,
        p.registry
    );
    println!("folder     {}", p.folder);
}

pub fn verify(home: &Path, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    let report = studio.verify(&VerifyRequest {
        target: args.target,
        hub: args.hub,
        contributions: args.contributions,
        skip_chain: args.skip_chain,
    })?;
    if args.json {
        print_json(&report)?;
    } else {
        for c in &report.checks {
            println!(
                "{} {:<28} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.subject,
                c.detail
            );
        }
    }
    if report.ok {
        eprintln!("verified: {}", report.target);
        Ok(ExitCode::SUCCESS)
    } else {
        Err(studio::Error::Verification(report.failures().join("; ")).into())
    }
}

pub fn rewards(home: &Path, command: RewardsCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    match command {
        RewardsCommand::Pay {
            adapter,
            amount,
            from,
            json,
        } => {
            let amount = parse_wei(&amount)?;
            // A run id stands for the manifest it was published with.
            let hash = if adapter.starts_with("0x") {
                adapter
            } else {
                studio
                    .latest_publication(&adapter)?
                    .map(|p| p.manifest_hash)
                    .ok_or_else(|| studio::Error::InvalidInput {
                        field: "adapter".into(),
                        message: format!(
                            "{adapter:?} is neither a manifest hash (0x…) nor a published run"
                        ),
                    })?
            };
            let pass = passphrase_once(&mut std::io::stdin().lock())?;
            let paid = studio.rewards_pay(&from, &pass, &hash, amount)?;
            if json {
                print_json(&paid)?;
            } else {
                println!(
                    "paid {} wei into {} (tx {})",
                    paid.amount_wei, paid.manifest_hash, paid.tx_hash
                );
                for (who, wei) in &paid.split {
                    println!("  {who}  +{wei} wei");
                }
            }
        }
        RewardsCommand::Balance { address, json } => {
            let b = studio.rewards_balance(&address)?;
            if json {
                print_json(&b)?;
            } else {
                println!(
                    "{}  balance {} wei, owed {} wei",
                    b.address, b.balance_wei, b.owed_wei
                );
            }
        }
        RewardsCommand::Withdraw { address, json } => {
            let pass = passphrase_once(&mut std::io::stdin().lock())?;
            let w = studio.rewards_withdraw(&address, &pass)?;
            if json {
                print_json(&w)?;
            } else {
                println!(
                    "withdrew {} wei to {} (tx {})",
                    w.amount_wei, w.address, w.tx_hash
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
