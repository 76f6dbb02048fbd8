//! `crate-loader` entry point: parse the command line, set up logging and a watchdog, run one
//! flow from [`crate_loader::run`], and turn its result into output and an exit code.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser as _;
use crate_loader::cli::{
    Cli, Command, Format, LoadArgs, LogArgs, Output, PreviewArgs, ValidateArgs,
};
use crate_loader::run::{self, Failure};
use crate_operator_api::contract::{LoadResult, Outcome};

/// How long after `--timeout` the watchdog ends a flow that is still blocked. The fetch worker
/// is killed earlier (at the deadline plus two seconds) and reported by the flow itself, so the
/// watchdog only catches what comes after the fetch.
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let code = match cli.command {
        Command::Preview(args) => preview(&args, &cli.log),
        Command::Validate(args) => validate(&args),
        Command::CopyTo { path } => copy_to(&path),
        Command::Load(args) => load(&args, &cli.log),
        Command::FetchWorker(args) => crate_loader::worker::serve(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_logging(args: &LogArgs) {
    crate_operator_api::logging::init(args.log_format, &args.log_level, false);
}

/// Ends the process if a flow overruns its deadline by [`WATCHDOG_GRACE`], after `on_fire`
/// has recorded why.
fn arm_watchdog(deadline: Instant, on_fire: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()) + WATCHDOG_GRACE);
        on_fire();
        crate_loader::worker::remove_areas();
        std::process::exit(Outcome::TimedOut.exit_code());
    });
}

fn report_failure(failure: &Failure) -> i32 {
    if let Some(report) = &failure.report {
        for diagnostic in &report.diagnostics {
            eprintln!("{diagnostic}");
        }
    }
    eprintln!("error: {}", failure.message);
    failure.outcome.exit_code()
}

fn preview(args: &PreviewArgs, log: &LogArgs) -> i32 {
    let deadline = Instant::now() + args.source.timeout;
    arm_watchdog(deadline, || {
        eprintln!("error: the preview overran its --timeout");
    });
    let (datasource, report, revision) = match run::preview(args, log, deadline) {
        Ok(run::Previewed::Rendered {
            datasource,
            report,
            revision,
        }) => (datasource, report, revision),
        Ok(run::Previewed::Unchanged { revision }) => {
            eprintln!("unchanged: the branch head is still {revision}; fetched no objects");
            return 0;
        }
        Err(failure) => return report_failure(&failure),
    };
    for warning in report.warnings() {
        eprintln!("{warning}");
    }
    let rendered = match args.output {
        Output::Yaml => serde_yaml::to_string(&datasource).map_err(|e| e.to_string()),
        Output::Json => serde_json::to_string_pretty(&datasource)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    };
    match rendered {
        Ok(text) => print!("{text}"),
        Err(e) => {
            return report_failure(&Failure {
                outcome: Outcome::Internal,
                message: format!("failed to render: {e}"),
                report: None,
            });
        }
    }
    eprintln!(
        "valid crate at {}: {} warning(s)",
        revision,
        report.warnings().count()
    );
    0
}

fn validate(args: &ValidateArgs) -> i32 {
    let (file, report) = match run::validate(args) {
        Ok(r) => r,
        // A script reading `--format json` gets JSON whatever went wrong, with the reason.
        Err(failure) if matches!(args.format, Format::Json) => {
            let doc = serde_json::json!({
                "file": args.path,
                "valid": false,
                "errors": 1,
                "warnings": 0,
                "diagnostics": [{
                    "severity": "error",
                    "entity": null,
                    "property": null,
                    "message": failure.message,
                }],
            });
            println!("{doc:#}");
            eprintln!("error: {}", failure.message);
            return failure.outcome.exit_code();
        }
        Err(failure) => return report_failure(&failure),
    };
    let (errors, warnings) = (report.errors().count(), report.warnings().count());
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Text => report
            .diagnostics
            .iter()
            .try_for_each(|d| writeln!(out, "{d}"))
            .and_then(|()| {
                writeln!(
                    out,
                    "{}: {errors} error(s), {warnings} warning(s)",
                    file.display()
                )
            }),
        Format::Json => {
            let doc = serde_json::json!({
                "file": file,
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": report.diagnostics,
            });
            writeln!(out, "{doc:#}")
        }
    };
    if let Err(e) = written {
        eprintln!("error: failed to write the report: {e}");
        return Outcome::Internal.exit_code();
    }
    if errors == 0 {
        0
    } else {
        Outcome::InvalidCrate.exit_code()
    }
}

/// The init container's job: put this binary where the main container can run it, without
/// needing a shell or `cp` in the loader image.
fn copy_to(dest: &Path) -> i32 {
    match copy_self(dest) {
        Ok(target) => {
            tracing::info!(path = %target.display(), "copied crate-loader");
            0
        }
        Err(e) => {
            eprintln!(
                "error: failed to copy crate-loader to {}: {e}",
                dest.display()
            );
            Outcome::Internal.exit_code()
        }
    }
}

fn copy_self(dest: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let exe = std::env::current_exe()?;
    let target = if dest.is_dir() {
        dest.join("crate-loader")
    } else {
        dest.to_owned()
    };
    // Copy then rename, so a reader never sees a half-written executable.
    let partial = target.with_extension("partial");
    std::fs::copy(&exe, &partial)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}

fn load(args: &LoadArgs, log: &LogArgs) -> i32 {
    let deadline = Instant::now() + args.source.timeout;
    let path = args.termination_message_path.clone();
    let datasource = args.crate_name.clone();
    arm_watchdog(deadline, move || {
        let result = LoadResult {
            outcome: Outcome::TimedOut,
            commit: None,
            revision: None,
            datasource: Some(datasource),
            fetch: None,
            warnings: 0,
            message: "the load overran its --timeout and was stopped".to_owned(),
        };
        finish(&path, &result);
    });
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run::load(args, log, deadline)),
        Err(e) => LoadResult {
            outcome: Outcome::Internal,
            commit: None,
            revision: None,
            datasource: Some(args.crate_name.clone()),
            fetch: None,
            warnings: 0,
            message: format!("failed to start the async runtime: {e}"),
        },
    };
    finish(&args.termination_message_path, &result);
    result.outcome.exit_code()
}

/// Publishes the result: the termination message for the manager, and one log line for people.
fn finish(path: &Path, result: &LoadResult) {
    let message = result.to_termination_message();
    if let Err(e) = std::fs::write(path, &message) {
        tracing::error!(path = %path.display(), error = %e, "failed to write the termination message");
    }
    let outcome = result.outcome.name();
    if result.outcome.is_success() {
        tracing::info!(
            outcome,
            commit = result.commit.as_deref(),
            warnings = result.warnings,
            "{}",
            result.message
        );
    } else {
        tracing::error!(
            outcome,
            commit = result.commit.as_deref(),
            "{}",
            result.message
        );
    }
    println!("{message}");
}
