//! A dry run of a campaign: what it would send, when and at what estimated
//! cost, and which sends the compliance gate would defer. Nothing is sent.
//!
//! ```text
//! cargo run --example simulate -- [--prospects FILE] [--campaign FILE.toml|.json] [--start RFC3339] [--days N]
//! ```
//!
//! Defaults: the sample prospects and `examples/data/campaign.toml`, starting
//! Monday 2 March 2026 at 09:00 UTC, over 14 days.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use kalify::ai::RulesModel;
use kalify::campaign::Campaign;
use kalify::engine::{Engine, ProspectFilter};
use kalify::import::{ImportOptions, import_prospects};
use kalify::ports::{ManualClock, Store};
use kalify::simulation::SimulationOptions;
use kalify::store::MemoryStore;
use kalify::{Error, OrgId};

const USAGE: &str = "usage: simulate [--prospects FILE] [--campaign FILE.toml|FILE.json] [--start RFC3339] [--days N]";

struct Options {
    prospects: PathBuf,
    campaign: PathBuf,
    start: DateTime<Utc>,
    days: u32,
}

fn parse_args() -> Result<Options, String> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let mut options = Options {
        prospects: data.join("prospects.csv"),
        campaign: data.join("campaign.toml"),
        start: Utc
            .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .ok_or("invalid default start")?,
        days: 14,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--prospects" => options.prospects = value()?.into(),
            "--campaign" => options.campaign = value()?.into(),
            "--start" => {
                let text = value()?;
                options.start = DateTime::parse_from_rfc3339(&text)
                    .map_err(|error| format!("invalid --start {text:?}: {error}; expected RFC 3339 such as 2026-03-02T09:00:00Z"))?
                    .with_timezone(&Utc);
            }
            "--days" => {
                let text = value()?;
                options.days = text.parse().ok().filter(|days| *days > 0).ok_or_else(|| {
                    format!("invalid --days {text:?}: expected a whole number of days, at least 1")
                })?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

async fn run(options: Options) -> Result<(), Error> {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(RulesModel::default()))
        .with_clock(Arc::new(ManualClock::new(options.start)))
        .build()?;
    let org = OrgId::new();

    if options.prospects.is_dir() {
        return Err(Error::invalid_input(format!(
            "{} is a directory; pass a CSV file",
            options.prospects.display()
        )));
    }
    let file = std::fs::File::open(&options.prospects).map_err(|error| {
        Error::invalid_input(format!(
            "cannot open {}: {error}",
            options.prospects.display()
        ))
    })?;
    let import = import_prospects(
        store.as_ref(),
        org,
        std::io::BufReader::new(file),
        &ImportOptions::default(),
        options.start,
    )
    .await?;

    let text = std::fs::read_to_string(&options.campaign).map_err(|error| {
        Error::invalid_input(format!(
            "cannot read {}: {error}",
            options.campaign.display()
        ))
    })?;
    let campaign = if options
        .campaign
        .extension()
        .is_some_and(|extension| extension == "json")
    {
        Campaign::from_json_str(org, &text, options.start)?
    } else {
        Campaign::from_toml_str(org, &text, options.start)?
    };
    store.put_campaign(&campaign).await?;

    let report = engine
        .simulate(
            org,
            campaign.id,
            &ProspectFilter::default(),
            &SimulationOptions::new(options.start, options.days),
        )
        .await?;

    println!(
        "campaign {:?} over {} prospects, {} days from {}",
        campaign.name, import.inserted, options.days, options.start
    );
    println!();
    println!(
        "{:<12} {:>5} {:>6} {:>10}",
        "day", "sms", "email", "messenger"
    );
    for (day, counts) in &report.per_day {
        let count = |channel| counts.get(&channel).copied().unwrap_or(0);
        use kalify::contact::ChannelKind::{Email, Messenger, Sms};
        println!(
            "{:<12} {:>5} {:>6} {:>10}",
            day.to_string(),
            count(Sms),
            count(Email),
            count(Messenger)
        );
    }
    println!();
    println!(
        "{} sends, {} SMS segments, estimated cost {:.2} {} (illustrative price per segment)",
        report.sends.len(),
        report.sms_segments,
        report.estimated_cost,
        report.currency
    );
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for deferral in &report.deferred {
        *reasons.entry(deferral.reason.as_str()).or_default() += 1;
    }
    for (reason, count) in reasons {
        println!("deferred {count}: {reason}");
    }
    let mut blocked: BTreeMap<&str, usize> = BTreeMap::new();
    for block in &report.blocked {
        *blocked.entry(block.reason.as_str()).or_default() += 1;
    }
    for (reason, count) in blocked {
        println!("not sent {count}: {reason}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
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
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
