//! Answers data-subject requests on a kalify SQLite database, such as the
//! one the quickstart writes.
//!
//! ```sh
//! cargo run --example quickstart -- --db kalify-demo.db
//! cargo run --example gdpr -- --db kalify-demo.db export camille.martin@boulangeries-martin.fr
//! cargo run --example gdpr -- --db kalify-demo.db export "06 12 34 56 78" --csv export-dir
//! cargo run --example gdpr -- --db kalify-demo.db restrict camille.martin@boulangeries-martin.fr
//! cargo run --example gdpr -- --db kalify-demo.db object "+33 6 12 34 56 78"
//! cargo run --example gdpr -- --db kalify-demo.db erase camille.martin@boulangeries-martin.fr
//! cargo run --example gdpr -- --db kalify-demo.db requests
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kalify::ai::RulesModel;
use kalify::contact::{ContactPoint, Region};
use kalify::engine::Engine;
use kalify::ports::{Actor, Store};
use kalify::store::SqliteStore;
use kalify::{Error, OrgId};

const USAGE: &str = "\
usage: gdpr --db PATH [--org ORG_ID] [--region CC] COMMAND [EMAIL_OR_PHONE] [--csv DIR]

Commands, each about the person with this e-mail address or phone number:
  export    print everything held about the person as JSON (GDPR Art. 15 and 20);
            with --csv DIR, also write its tables as CSV files into DIR
  erase     delete every row about the person; keep only a keyed hash of their
            contact points on the suppression list (Art. 17)
  restrict  keep the data but stop all processing (Art. 18)
  lift      lift a restriction
  object    stop all marketing to the person, on every channel, for good (Art. 21)
  requests  list the org's recorded requests (no person needed)

Options:
  --db PATH     the SQLite database, such as the one the quickstart wrote (required)
  --org ID      the org (default: the quickstart's org)
  --region CC   the region used to read a phone number written without +country (default FR)
  --csv DIR     with export: also write the CSV tables into DIR";

/// The org the quickstart writes to.
const QUICKSTART_ORG: &str = "01900000-0000-7000-8000-00000000beef";

#[derive(Debug)]
struct Options {
    db: PathBuf,
    org: OrgId,
    region: Region,
    command: String,
    person: Option<String>,
    csv: Option<PathBuf>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut db = None;
    let mut org = QUICKSTART_ORG.to_owned();
    let mut region = "FR".to_owned();
    let mut csv = None;
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            "--org" => org = value("--org")?,
            "--region" => region = value("--region")?,
            "--csv" => csv = Some(PathBuf::from(value("--csv")?)),
            other if other.starts_with("--") => {
                return Err(format!("unknown option {other}\n\n{USAGE}"));
            }
            _ => positional.push(arg),
        }
    }
    let db = db.ok_or_else(|| format!("--db PATH is required\n\n{USAGE}"))?;
    let org = org
        .parse()
        .map_err(|_| format!("--org {org} is not an org id (a UUID)"))?;
    let region: Region = region
        .parse()
        .map_err(|error| format!("--region {region}: {error}"))?;
    let mut positional = positional.into_iter();
    let command = positional
        .next()
        .ok_or_else(|| format!("a command is required\n\n{USAGE}"))?;
    let person = positional.next();
    if let Some(extra) = positional.next() {
        return Err(format!(
            "unexpected argument {extra}; quote a phone number that contains spaces\n\n{USAGE}"
        ));
    }
    match (command.as_str(), &person) {
        ("requests", _) => {}
        ("export" | "erase" | "restrict" | "lift" | "object", None) => {
            return Err(format!(
                "{command} needs the person's e-mail address or phone number\n\n{USAGE}"
            ));
        }
        ("export" | "erase" | "restrict" | "lift" | "object", Some(_)) => {}
        (other, _) => return Err(format!("unknown command {other}\n\n{USAGE}")),
    }
    if csv.is_some() && command != "export" {
        return Err("--csv goes with export only".to_owned());
    }
    Ok(Some(Options {
        db,
        org,
        region,
        command,
        person,
        csv,
    }))
}

async fn run(options: Options, out: &mut impl Write) -> Result<(), Error> {
    if !options.db.is_file() {
        return Err(Error::invalid_input(format!(
            "no database at {}; run the quickstart with --db {} first, or give the path it printed",
            options.db.display(),
            options.db.display()
        )));
    }
    let sqlite = Arc::new(SqliteStore::open(&options.db).await?);
    let store: Arc<dyn Store> = sqlite.clone();
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(RulesModel::default()))
        .build()?;
    let org = options.org;

    // A wrong --org would otherwise look like a person who is not there.
    let org_is_empty = store
        .list_prospects(
            org,
            kalify::ports::ListOptions {
                after: None,
                limit: 1,
            },
        )
        .await?
        .is_empty();

    if options.command == "requests" {
        let requests = store.list_subject_requests(org).await?;
        if requests.is_empty() {
            writeln!(out, "no request is recorded for org {org}").map_err(io)?;
        }
        for request in requests {
            writeln!(
                out,
                "{}  {:<16} prospect {}  received {}  due {}  {}",
                request.id,
                request.kind.as_str(),
                request.prospect_id,
                request.received_at.format("%Y-%m-%d"),
                request.due_at.format("%Y-%m-%d"),
                serde_json::to_string(&request.outcome).unwrap_or_default()
            )
            .map_err(io)?;
        }
        return Ok(());
    }

    let text = options.person.as_deref().unwrap_or_default();
    let contact = ContactPoint::parse_any(text, options.region).map_err(|error| {
        Error::invalid_input(format!(
            "{text:?} is neither an e-mail address nor a phone number: {}",
            error.message()
        ))
    })?;
    if org_is_empty {
        return Err(Error::not_found(format!(
            "org {org} has no prospect in {}; pass the org the data was imported under with --org",
            options.db.display()
        )));
    }
    let prospect = engine.find_subject(org, &contact).await?;
    let actor = Actor::System;
    match options.command.as_str() {
        "export" => {
            // The directory is made first, so that a path that cannot be
            // written fails before the request is recorded as completed.
            if let Some(dir) = &options.csv {
                std::fs::create_dir_all(dir).map_err(|error| {
                    Error::invalid_input(format!("cannot create {}: {error}", dir.display()))
                })?;
            }
            let export = engine.subject_access(org, prospect.id, actor).await?;
            writeln!(out, "{}", export.to_json()?).map_err(io)?;
            if let Some(dir) = &options.csv {
                std::fs::create_dir_all(dir).map_err(|error| {
                    Error::invalid_input(format!("cannot create {}: {error}", dir.display()))
                })?;
                for table in export.csv_tables()? {
                    let path = dir.join(&table.name);
                    std::fs::write(&path, table.content).map_err(|error| {
                        Error::invalid_input(format!("cannot write {}: {error}", path.display()))
                    })?;
                    eprintln!("wrote {}", path.display());
                }
            }
        }
        "erase" => {
            let report = engine.erase(org, prospect.id, actor).await?;
            writeln!(
                out,
                "erased prospect {}: {} rows deleted",
                prospect.id,
                report.total()
            )
            .map_err(io)?;
            for (table, rows) in &report.deleted {
                writeln!(out, "  {table}: {rows}").map_err(io)?;
            }
            writeln!(out, "their contact points stay on the suppression list as keyed hashes, so a re-import stays suppressed").map_err(io)?;
            sqlite.vacuum().await?;
            writeln!(
                out,
                "the database file was rebuilt (VACUUM), so no deleted bytes remain in it"
            )
            .map_err(io)?;
        }
        "restrict" => {
            engine.restrict(org, prospect.id, actor).await?;
            writeln!(out, "restricted prospect {}: the data is kept; no message, model call or enrichment until lifted", prospect.id).map_err(io)?;
        }
        "lift" => {
            engine.lift_restriction(org, prospect.id, actor).await?;
            writeln!(out, "lifted the restriction of prospect {}", prospect.id).map_err(io)?;
        }
        "object" => {
            engine.object(org, prospect.id, actor).await?;
            writeln!(
                out,
                "recorded the objection of prospect {}: no marketing on any channel, permanently",
                prospect.id
            )
            .map_err(io)?;
        }
        _ => unreachable!("parse_args accepts only known commands"),
    }
    Ok(())
}

/// Converts a failed write to standard output, such as a closed pipe.
fn io(error: std::io::Error) -> Error {
    Error::unexpected(format!("cannot write the output: {error}"))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(run(options, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        // `gdpr ... export | head` closes the pipe early; that is not a failure.
        Err(error) if error.message().contains("Broken pipe") => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
