//! Entry point: parse flags, load config, run. No logic lives here.

use std::process::ExitCode;

use clap::Parser;
use pgswitch::cli::{Cli, Command, LogFormat};
use pgswitch::config::{Config, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("pgswitch {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig { file }) => {
            match Config::load(Some(&file), &Overrides::default()) {
                Ok(c) => {
                    println!(
                        "{}: OK ({} databases, {} users)",
                        file.display(),
                        c.databases.len(),
                        c.users.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprintln!("{problems}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::ImportPgbouncer { ini, userlist }) => import_pgbouncer(&ini, userlist),
        None => run(cli),
    }
}

/// `import-pgbouncer`: the TOML on stdout, problems on stderr (exit 2).
fn import_pgbouncer(ini: &std::path::Path, userlist: Option<std::path::PathBuf>) -> ExitCode {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let text = match read(ini) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Without a userlist named, the ini's own auth_file (relative to it).
    let userlist = userlist.or_else(|| {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("auth_file"))?;
        let path = std::path::PathBuf::from(line.trim_start().strip_prefix('=')?.trim());
        let path = match path.is_relative() {
            true => ini.parent()?.join(path),
            false => path,
        };
        path.exists().then_some(path)
    });
    let users = match userlist.as_deref().map(read).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match pgswitch::import::import(&text, users.as_deref()) {
        Ok(out) => {
            print!("{}", out.toml);
            eprintln!(
                "{} setting(s) without an equivalent are listed in comments; check the result with `pgswitch check-config`",
                out.unmatched
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", ini.display());
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> ExitCode {
    init_logging(cli.run.log_format);
    let config = match Config::load(cli.run.config.as_deref(), &cli.run.overrides()) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("pgswitch: invalid configuration:\n{problems}");
            return ExitCode::from(2);
        }
    };
    let workers = config.general.workers;
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgswitch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgswitch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    match pgswitch::app::raise_nofile_limit() {
        Ok(n) => tracing::info!(
            open_files = n,
            max_clients_estimate = n.saturating_sub(64) / 2,
            "file descriptor limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let mode = config.general.pool_mode;
    let app = pgswitch::app::App::bind(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(listen = %app.local_addr()?, pool_mode = %mode, "pgswitch ready");
    let token = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received");
        token.cancel();
    });
    let shared = app.shared();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with RELOAD in the admin console");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            pgswitch::reload::reload_and_log(&shared);
        }
    });
    app.run().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
