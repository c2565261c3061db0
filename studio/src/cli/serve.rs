use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use studio::{Studio, server};

use super::args::ServeArgs;

pub fn run(home: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ip: IpAddr = args.host.parse().with_context(|| {
        format!(
            "--host {:?} is not an IP address (try 127.0.0.1 or 0.0.0.0)",
            args.host
        )
    })?;
    // Beyond loopback anyone on the network could drive the studio: require a token.
    let token = match args.token.filter(|t| !t.is_empty()) {
        Some(t) => Some(t),
        None if !ip.is_loopback() => Some(server::new_token()),
        None => None,
    };
    // Signing routes need a token even on loopback; the printed address carries it.
    let signing_token = token.clone().unwrap_or_else(server::new_token);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = server::bind(SocketAddr::new(ip, args.port)).await?;
        let local = listener.local_addr().context("reading the bound address")?;
        let shown = if ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        };
        let base = format!("http://{}/", SocketAddr::new(shown, local.port()));
        let url = format!("{base}?token={signing_token}");
        // The lock file names the instance without its token.
        let studio = Studio::open_instance(home, &format!("modelfactory serve at {base}"))?;
        let ui = server::find_ui_dir(args.ui_dir);
        if ui.is_none() {
            tracing::warn!(
                "the front end is not built; the API works, pages say how to build them"
            );
        }
        let app = server::router_with_signing_token(studio, token, signing_token, ui);
        println!("ModelFactory studio: {url}");
        println!("workspace: {}", home.display());
        if args.open {
            open_browser(&url);
        }
        server::serve(listener, app, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    // The opener's own complaints (no browser found) would bury the address; we say it once.
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("could not open a browser ({opener}: {e}); open {url} yourself");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
