//! `modelfactory attribution compute|show <run>`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use studio::Studio;
use studio::attribution::AttributionReport;

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
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
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
