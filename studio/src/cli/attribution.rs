//! `modelfactory attribution compute|show <run>`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use studio::Studio;
use studio::attribution::AttributionReport;
use trainer::attribution::accuracy::AccuracyReport;

use super::args::AttributionCommand;

pub fn run(home: &Path, command: AttributionCommand) -> anyhow::Result<ExitCode> {
    let studio = Studio::open(home)?;
    let (report, json) = match command {
        AttributionCommand::Compute { run, backend, json } => {
            let mut last = 0;
            let report = studio.compute_attribution(&run, backend, &mut |done, total| {
                // A line per tenth: gradients are the slow part.
                let tenth = done * 10 / total.max(1);
                if tenth > last || done == total {
                    last = tenth;
                    eprintln!("gradients {done}/{total}");
                    let _ = std::io::stderr().flush();
                }
                true
            })?;
            (report, json)
        }
        AttributionCommand::Show { run, json } => (studio.attribution(&run)?, json),
        AttributionCommand::Eval {
            run,
            subsets,
            steps,
            backend,
            json,
        } => {
            let report = studio.measure_attribution_accuracy(
                &run,
                backend,
                subsets,
                steps,
                &mut |d, t| {
                    eprintln!("trainings {d}/{t}");
                    true
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_accuracy(&report);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_accuracy(r: &AccuracyReport) {
    println!(
        "{} random halves and {} contributors left out, {} rows trained each",
        r.subsets,
        r.loco.len(),
        r.steps
    );
    println!(
        "{:<12} {:>8} {:>16} {:>16}",
        "method", "LDS", "LOCO Spearman", "LOCO agreement"
    );
    for m in &r.methods {
        println!(
            "{:<12} {:>8.3} {:>16} {:>15.0}%",
            m.method,
            m.lds,
            m.loco_spearman.map_or("-".into(), |s| format!("{s:.3}")),
            100.0 * m.loco_sign_agreement
        );
    }
    println!(
        "LDS: how well a method's scores rank the losses of adapters retrained on random halves \
         of the rows (1: perfectly, 0: no better than chance). LOCO: whether the contributors it \
         credits are the ones whose absence raises the loss."
    );
}

fn print_report(r: &AttributionReport) {
    println!(
        "{} on {} training rows against {} evaluation rows ({}), {}",
        r.method, r.train_rows, r.eval_rows, r.backend, r.computed_at
    );
    println!(
        "{:<44} {:>6} {:>12} {:>8}",
        "contributor", "rows", "score", "share"
    );
    for c in &r.contributors {
        println!(
            "{:<44} {:>6} {:>12.4e} {:>7.2}%{}",
            c.contributor,
            c.rows,
            c.score,
            f64::from(c.bps) / 100.0,
            if c.harmful { "  harmful" } else { "" }
        );
    }
    let harmful = r.rows.iter().filter(|row| row.score < 0.0).count();
    println!(
        "score: how much the rows lowered the evaluation loss (DataInf); {harmful} of {} rows \
         raised it and earn nothing",
        r.rows.len()
    );
}
