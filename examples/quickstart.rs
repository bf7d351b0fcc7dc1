//! The quickstart: kalify qualifying prospects end to end on embedded defaults.
//!
//! It creates a SQLite database, imports a CSV of prospects, enrolls them in a
//! sample campaign (a first message and two follow-ups), replays timestamped
//! replies on a simulated clock with the offline `rules` model, and prints a
//! pipeline table with a count per state. Nothing leaves the machine: sends go
//! to the console channel.
//!
//! ```text
//! cargo run --release --example quickstart -- [OPTIONS]
//!
//!   --prospects FILE       prospects CSV (default examples/data/prospects.csv)
//!   --replies FILE         replies CSV with at,from,channel,text (default examples/data/replies.csv)
//!   --db PATH              SQLite database to create or reuse (default: a new file in the temp dir)
//!   --json FILE            also write the full report as JSON
//!   --default-region CC    region for phone numbers without a country code (default FR)
//!   --show-messages        print every message as it is sent
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use kalify::ai::RulesModel;
use kalify::campaign::{Campaign, CampaignStatus, Step};
use kalify::channels::ConsoleChannel;
use kalify::contact::{ChannelKind, ContactPoint, Region};
use kalify::conversation::{ConversationState, DeliveryStatus, Direction};
use kalify::engine::Engine;
use kalify::import::{ImportOptions, import_prospects};
use kalify::ports::{InboundMessage, ListOptions, ManualClock, Store};
use kalify::prospect::Locale;
use kalify::qualification::Localized;
use kalify::store::SqliteStore;
use kalify::{Error, OrgId, Timestamp};
use serde::Serialize;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The prospects CSV.
    pub prospects: PathBuf,
    /// The replies CSV; `None` replays nothing.
    pub replies: Option<PathBuf>,
    /// The database path; a fresh file in the temp dir when `None`.
    pub db: Option<PathBuf>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Region for national phone numbers.
    pub default_region: Region,
    /// Print each message as it is sent.
    pub show_messages: bool,
}

impl Default for Options {
    fn default() -> Self {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
        Options {
            prospects: data.join("prospects.csv"),
            replies: Some(data.join("replies.csv")),
            db: None,
            json: None,
            default_region: Region::FR,
            show_messages: false,
        }
    }
}

const USAGE: &str = "usage: quickstart [--prospects FILE] [--replies FILE] [--db PATH] [--json FILE] [--default-region CC] [--show-messages]

  --prospects FILE      prospects CSV (default: the sample in examples/data)
  --replies FILE        replies CSV with the columns at, from, channel, text
                        (default: the sample replies, unless --prospects is given)
  --db PATH             SQLite database to create or reuse (default: a new file in the temp directory)
  --json FILE           also write the report as JSON
  --default-region CC   region for phone numbers without a country code (default FR)
  --show-messages       print every message as it is sent";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run with these options.
    Run(Options),
    /// Print the usage and exit.
    Help,
}

/// Parses command-line arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut replies_given = false;
    let mut prospects_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--prospects" => {
                options.prospects = value("--prospects")?.into();
                prospects_given = true;
            }
            "--replies" => {
                options.replies = Some(value("--replies")?.into());
                replies_given = true;
            }
            "--db" => options.db = Some(value("--db")?.into()),
            "--json" => options.json = Some(value("--json")?.into()),
            "--default-region" => {
                let code = value("--default-region")?;
                options.default_region = code.parse().map_err(|error: Error| error.to_string())?;
            }
            "--show-messages" => options.show_messages = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    // The sample replies are written for the sample prospects only.
    if prospects_given && !replies_given {
        options.replies = None;
    }
    Ok(Command::Run(options))
}

/// One message in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct MessageReport {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `sms`, `email` or `messenger`.
    pub channel: String,
    /// RFC 3339 UTC.
    pub at: String,
    /// The text.
    pub text: String,
    /// Delivery status: `received` for inbound; `sent`, `pending`, `cancelled` or `failed` for outbound.
    pub status: String,
}

/// One fact in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct FactReport {
    /// The value as text.
    pub value: String,
    /// The words it comes from.
    pub quote: String,
    /// Extractor confidence.
    pub confidence: f32,
}

/// One prospect in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ProspectReport {
    /// Display name.
    pub name: String,
    /// E-mail address, if any.
    pub email: Option<String>,
    /// Phone in E.164, if any.
    pub phone: Option<String>,
    /// Channel of the latest conversation.
    pub channel: Option<String>,
    /// Conversation state.
    pub state: String,
    /// Score 0–100, once a reply was analysed.
    pub score: Option<u8>,
    /// The score's explanation.
    pub explanation: Option<String>,
    /// Facts by criterion key.
    pub facts: BTreeMap<String, FactReport>,
    /// Criteria still unknown.
    pub missing: Vec<String>,
    /// When the next follow-up is due, RFC 3339 UTC.
    pub next_follow_up: Option<String>,
    /// Every message in and out.
    pub messages: Vec<MessageReport>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per imported prospect, in import order.
    pub prospects: Vec<ProspectReport>,
    /// Counts.
    pub summary: BTreeMap<String, usize>,
    /// The database file.
    pub database: String,
}

/// A reply read from the replies file.
#[derive(Debug, Clone)]
struct Reply {
    line: u64,
    at: Timestamp,
    from: String,
    channel: ChannelKind,
    text: String,
}

/// Runs the whole quickstart and writes human-readable progress to `out`.
///
/// # Errors
/// Fails when a file cannot be read or the database cannot be created; bad
/// rows are reported and skipped.
pub async fn run(options: &Options, out: &mut dyn Write) -> Result<Report, Error> {
    let io = |error: std::io::Error| {
        Error::new(kalify::ErrorKind::Unavailable, "failed to write output").with_source(error)
    };

    // Check every input and output path before creating the database.
    let file = std::fs::File::open(&options.prospects).map_err(|error| {
        Error::invalid_input(format!(
            "cannot open prospects file {}: {error}",
            options.prospects.display()
        ))
    })?;
    if options.prospects.is_dir() {
        return Err(Error::invalid_input(format!(
            "prospects file {} is a directory",
            options.prospects.display()
        )));
    }
    for path in options.json.iter().chain(options.db.iter()) {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(Error::invalid_input(format!(
                "the directory of {} does not exist; create it or choose another path",
                path.display()
            )));
        }
    }
    let replies = match &options.replies {
        Some(path) => read_replies(path, options.default_region, out)?,
        None => Vec::new(),
    };

    let db_path = match &options.db {
        Some(path) => path.clone(),
        None => std::env::temp_dir().join(format!(
            "kalify-quickstart-{}.db",
            Utc::now().format("%Y%m%d-%H%M%S-%f")
        )),
    };
    writeln!(out, "database: {}", db_path.display()).map_err(io)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db_path).await?);
    let start = simulation_start(&replies);
    let clock = ManualClock::new(start);
    let channel_printer = |kind| -> Arc<dyn kalify::ports::Channel> {
        if options.show_messages {
            Arc::new(ConsoleChannel::new(kind))
        } else {
            Arc::new(ConsoleChannel::quiet(kind))
        }
    };
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(RulesModel::default()))
        .with_clock(Arc::new(clock.clone()))
        .with_channel(channel_printer(ChannelKind::Sms))
        .with_channel(channel_printer(ChannelKind::Email))
        .with_default_sender(PERSONA)
        .build()?;

    // Import. A fixed org id lets a rerun on the same database find the
    // prospects, opt-outs and replies of the previous run.
    let org: OrgId = QUICKSTART_ORG.parse()?;
    let import_options = ImportOptions::default()
        .with_default_region(options.default_region)
        .with_default_locale(locale_of_region(options.default_region))
        .with_source("quickstart");
    let import = import_prospects(
        store.as_ref(),
        org,
        std::io::BufReader::new(file),
        &import_options,
        start,
    )
    .await
    .map_err(|error| error.with_context("file", options.prospects.display()))?;
    writeln!(
        out,
        "imported {} from {} ({} updated, {} duplicates, {} suppressed, {} rejected)",
        plural(import.inserted, "prospect"),
        options.prospects.display(),
        import.updated,
        import.duplicates,
        import.suppressed,
        import.rejected_total
    )
    .map_err(io)?;
    for row in &import.rejected {
        let column = row
            .column
            .as_deref()
            .map(|column| format!(" column {column:?}:"))
            .unwrap_or_default();
        writeln!(out, "  rejected line {}:{column} {}", row.line, row.reason).map_err(io)?;
    }
    for row in &import.warnings {
        let column = row
            .column
            .as_deref()
            .map(|column| format!(" column {column:?}:"))
            .unwrap_or_default();
        writeln!(
            out,
            "  imported with a warning, line {}:{column} {}",
            row.line, row.reason
        )
        .map_err(io)?;
    }

    // Enroll everyone in the sample campaign.
    let campaign = sample_campaign(org, start);
    campaign.validate()?;
    store.put_campaign(&campaign).await?;
    let prospects = store.list_prospects(org, ListOptions::default()).await?;
    for prospect in &prospects {
        if let Err(error) = engine.enroll(org, prospect.id, campaign.id).await {
            writeln!(out, "  not enrolled: {}: {error}", prospect.display_name()).map_err(io)?;
        }
    }

    // Replay the replies on the simulated clock, running due follow-ups every hour.
    let end = simulation_end(start, &replies);
    let mut next_reply = 0;
    let mut tick = start;
    while tick <= end {
        while next_reply < replies.len() && replies[next_reply].at <= tick {
            let reply = &replies[next_reply];
            next_reply += 1;
            clock.set(reply.at);
            engine.run_due().await?;
            let from = match ContactPoint::parse_any(&reply.from, options.default_region) {
                Ok(from)
                    if from.channel() == reply.channel
                        || (reply.channel == ChannelKind::Messenger) =>
                {
                    from
                }
                Ok(from) => {
                    writeln!(
                        out,
                        "  replies line {}: channel {} does not match the sender {:?}, which is an {} contact; skipped",
                        reply.line,
                        reply.channel,
                        reply.from,
                        if from.channel() == ChannelKind::Email { "e-mail" } else { "SMS" }
                    )
                    .map_err(io)?;
                    continue;
                }
                Err(error) => {
                    writeln!(
                        out,
                        "  replies line {}: invalid sender {:?}: {}; skipped",
                        reply.line,
                        reply.from,
                        error.message()
                    )
                    .map_err(io)?;
                    continue;
                }
            };
            let inbound = InboundMessage {
                channel: reply.channel,
                provider: "quickstart".to_owned(),
                provider_message_id: format!("replies-line-{}", reply.line),
                from,
                text: reply.text.clone(),
                at: reply.at,
            };
            let known = store.find_prospect(org, &inbound.from).await?.is_some();
            match engine.handle_inbound(org, inbound).await {
                Ok(_) if !known => {
                    writeln!(
                        out,
                        "  replies line {}: no prospect had the sender {:?}; stored as a new prospect for a member to review",
                        reply.line, reply.from
                    )
                    .map_err(io)?;
                }
                Ok(_) => {}
                Err(error) if error.kind() == kalify::ErrorKind::NotFound => {
                    writeln!(
                        out,
                        "  replies line {}: no prospect has the sender {:?}; skipped",
                        reply.line, reply.from
                    )
                    .map_err(io)?;
                }
                Err(error) => {
                    writeln!(out, "  replies line {}: {error}; skipped", reply.line).map_err(io)?
                }
            }
        }
        clock.set(tick);
        engine.run_due().await?;
        tick += Duration::hours(1);
    }

    let report = build_report(&engine, org, &import, &db_path).await?;
    print_table(&report, out).map_err(io)?;
    let not_sent = report.summary.get("not_sent").copied().unwrap_or(0);
    if not_sent > 0 {
        writeln!(
            out,
            "{} not sent: cancelled by a reply or an opt-out, or blocked by the compliance gate \
             (no consent record for the channel, a suppression or a restriction). \
             The gate needs a consent column such as \"Consent date\" in the prospects CSV; see the README.",
            plural(not_sent, "message")
        )
        .map_err(io)?;
    }
    if let Some(path) = &options.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).map_err(|error| {
            Error::invalid_input(format!(
                "cannot write JSON report {}: {error}",
                path.display()
            ))
        })?;
        writeln!(out, "report written to {}", path.display()).map_err(io)?;
    }
    Ok(report)
}

/// The org every quickstart run uses, so reruns on one database build on each other.
const QUICKSTART_ORG: &str = "01900000-0000-7000-8000-00000000beef";

/// The sender identity, readable in English and French.
const PERSONA: &str = "Léa (Kalify Demo)";

fn locale_of_region(region: Region) -> Locale {
    match region.code() {
        "FR" | "BE" | "CH" | "LU" | "MC" | "RE" | "GP" | "MQ" | "GF" | "YT" | "PM" | "NC"
        | "PF" | "SN" | "CI" | "MA" | "TN" | "DZ" => Locale::Fr,
        _ => Locale::En,
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn sample_campaign(org: OrgId, now: Timestamp) -> Campaign {
    Campaign {
        // The same id on every run, so a rerun does not enroll everyone again.
        id: "01900000-0000-7000-8000-00000000ca11"
            .parse()
            .unwrap_or_default(),
        org_id: org,
        name: "Lead follow-up assistant".to_owned(),
        persona: PERSONA.to_owned(),
        goal: "book a 20-minute demo".to_owned(),
        channels: vec![ChannelKind::Sms, ChannelKind::Email],
        steps: vec![
            Step::new(
                0,
                Localized::new(
                    "Hi {{ first_name or 'there' }}, {{ sender }} here. You asked about automating lead follow-up for {{ company or 'your company' }}: what would you like to improve first? Reply STOP to opt out.",
                    "Bonjour {{ first_name or '' }}, ici {{ sender }}. Vous vous êtes intéressé à l'automatisation du suivi des prospects pour {{ company or 'votre entreprise' }} : qu'aimeriez-vous améliorer en priorité ? STOP pour ne plus recevoir de messages.",
                ),
            ),
            Step::new(
                48,
                Localized::new(
                    "{{ first_name or 'Hello' }}, just checking in: is lead follow-up still a topic at {{ company or 'your company' }}? Reply STOP to opt out.",
                    "{{ first_name or 'Bonjour' }}, je me permets de vous relancer : le suivi des prospects est-il toujours d'actualité chez {{ company or 'vous' }} ? STOP pour ne plus recevoir de messages.",
                ),
            ),
            Step::new(
                72,
                Localized::new(
                    "Last message from {{ sender }}: if the timing is better later, just reply and we will pick it up. Reply STOP to opt out.",
                    "Dernier message de {{ sender }} : si le moment est mieux choisi plus tard, répondez simplement et nous reprendrons. STOP pour ne plus recevoir de messages.",
                ),
            ),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: now,
        settings: Default::default(),
    }
}

fn read_replies(path: &Path, _region: Region, out: &mut dyn Write) -> Result<Vec<Reply>, Error> {
    let file = std::fs::File::open(path).map_err(|error| {
        Error::invalid_input(format!(
            "cannot open replies file {}: {error}",
            path.display()
        ))
    })?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let headers = reader
        .headers()
        .map_err(|error| {
            Error::invalid_input(format!(
                "cannot read the header row of {}: {error}",
                path.display()
            ))
        })?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|header| header.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(name)).ok_or_else(|| {
            Error::invalid_input(format!(
                "replies file {} has no {name:?} column; expected a comma-separated header row with the columns at, from, channel, text",
                path.display()
            ))
        })
    };
    let (at_column, from_column, channel_column, text_column) = (
        column("at")?,
        column("from")?,
        column("channel")?,
        column("text")?,
    );

    let mut replies = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |position| position.line());
                let hint = if matches!(error.kind(), csv::ErrorKind::Utf8 { .. }) {
                    "; save the file as UTF-8"
                } else {
                    ""
                };
                let _ = writeln!(out, "  replies line {line}: unreadable row{hint}; skipped");
                continue;
            }
        };
        let line = record.position().map_or(0, |position| position.line());
        let field = |index: usize| record.get(index).unwrap_or("").trim().to_owned();
        let at = match DateTime::parse_from_rfc3339(&field(at_column)) {
            Ok(at) => at.with_timezone(&Utc),
            Err(_) => {
                let _ = writeln!(
                    out,
                    "  replies line {line}: invalid time {:?}, expected RFC 3339 such as 2026-03-02T09:42:00Z; skipped",
                    field(at_column)
                );
                continue;
            }
        };
        let channel = match field(channel_column).parse::<ChannelKind>() {
            Ok(channel) => channel,
            Err(error) => {
                let _ = writeln!(out, "  replies line {line}: {error}; skipped");
                continue;
            }
        };
        if record.len() < headers.len() {
            let _ = writeln!(
                out,
                "  replies line {line}: the row has {} fields but the header has {}; skipped",
                record.len(),
                headers.len()
            );
            continue;
        }
        let text = record.get(text_column).unwrap_or("").to_owned();
        if text.trim().is_empty() {
            let _ = writeln!(out, "  replies line {line}: the text is empty; skipped");
            continue;
        }
        replies.push(Reply {
            line,
            at,
            from: field(from_column),
            channel,
            text,
        });
    }
    replies.sort_by_key(|reply| reply.at);
    Ok(replies)
}

/// The simulation starts at 09:00 UTC on the day of the first reply (or an
/// hour before it, if it comes earlier), so the first messages go out first.
fn simulation_start(replies: &[Reply]) -> Timestamp {
    let Some(first) = replies.first() else {
        return Utc::now()
            .duration_trunc(Duration::hours(1))
            .unwrap_or_else(|_| Utc::now());
    };
    let day = first
        .at
        .duration_trunc(Duration::days(1))
        .unwrap_or(first.at);
    let nine = day + Duration::hours(9);
    if nine < first.at {
        nine
    } else {
        first.at - Duration::hours(1)
    }
}

/// Six days of simulated time, or half a day past the last reply if later.
fn simulation_end(start: Timestamp, replies: &[Reply]) -> Timestamp {
    let after_last = replies
        .last()
        .map_or(start, |reply| reply.at + Duration::hours(12));
    after_last.max(start + Duration::days(6))
}

async fn build_report(
    engine: &Engine,
    org: OrgId,
    import: &kalify::import::ImportReport,
    db: &Path,
) -> Result<Report, Error> {
    let store = engine.store().as_ref();
    let all_criteria: Vec<String> = engine
        .framework()
        .criteria
        .iter()
        .map(|criterion| criterion.key.clone())
        .collect();
    let prospects = store.list_prospects(org, ListOptions::default()).await?;
    let mut summary = BTreeMap::new();
    summary.insert("imported".to_owned(), import.inserted);
    summary.insert("rejected".to_owned(), import.rejected_total);
    summary.insert("duplicates".to_owned(), import.duplicates);
    summary.insert("suppressed".to_owned(), import.suppressed);
    summary.insert("not_sent".to_owned(), 0);
    let mut entries = Vec::with_capacity(prospects.len());
    for prospect in prospects {
        let conversations = store.conversations_of(org, prospect.id).await?;
        let latest = conversations.first();
        let mut messages = Vec::new();
        let mut next_follow_up = None;
        for conversation in conversations.iter().rev() {
            for message in store.list_messages(org, conversation.id).await? {
                if matches!(
                    message.status,
                    DeliveryStatus::Cancelled | DeliveryStatus::Failed
                ) {
                    *summary.entry("not_sent".to_owned()).or_insert(0) += 1;
                }
                messages.push(MessageReport {
                    status: message.status.as_str().to_owned(),
                    direction: match message.direction {
                        Direction::Inbound => "inbound".to_owned(),
                        Direction::Outbound => "outbound".to_owned(),
                    },
                    channel: message.channel.to_string(),
                    at: message
                        .at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    text: message.text,
                });
            }
            if conversation.state.awaits_follow_up()
                && let Some(job) = store.pending_jobs(org, conversation.id).await?.first()
            {
                next_follow_up = Some(
                    job.due_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
        }
        messages.sort_by(|a, b| a.at.cmp(&b.at));
        let state = latest.map_or(prospect.status, |conversation| conversation.state);
        *summary.entry(state.to_string()).or_insert(0) += 1;
        let facts = latest
            .map(|conversation| {
                conversation
                    .facts
                    .iter()
                    .map(|fact| {
                        (
                            fact.key.clone(),
                            FactReport {
                                value: fact.value.to_string(),
                                quote: fact.evidence.quote.clone(),
                                confidence: fact.evidence.confidence,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let score = latest.and_then(|conversation| conversation.score.clone());
        entries.push(ProspectReport {
            name: prospect.display_name(),
            email: prospect.email.as_ref().map(|email| email.to_string()),
            phone: prospect.phone.as_ref().map(|phone| phone.to_string()),
            channel: latest.map(|conversation| conversation.channel.to_string()),
            state: state.to_string(),
            score: score.as_ref().map(|score| score.value),
            explanation: score.as_ref().map(|score| score.explain()),
            facts,
            missing: score
                .as_ref()
                .map_or_else(|| all_criteria.clone(), |score| score.missing.clone()),
            next_follow_up,
            messages,
        });
    }
    Ok(Report {
        prospects: entries,
        summary,
        database: db.display().to_string(),
    })
}

fn print_table(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<26} {:<6} {:<13} {:>5}  {:<44} {:<24} next follow-up",
        "name", "chan", "state", "score", "facts found", "facts missing"
    )?;
    for prospect in &report.prospects {
        let facts: Vec<String> = prospect
            .facts
            .iter()
            .map(|(key, fact)| format!("{key}={}", fact.value))
            .collect();
        writeln!(
            out,
            "{:<26} {:<6} {:<13} {:>5}  {:<44} {:<24} {}",
            clip(&prospect.name, 26),
            prospect.channel.as_deref().unwrap_or("-"),
            prospect.state,
            prospect
                .score
                .map_or_else(|| "-".to_owned(), |score| score.to_string()),
            clip(&facts.join(", "), 44),
            clip(&prospect.missing.join(", "), 24),
            prospect.next_follow_up.as_deref().unwrap_or("-"),
        )?;
    }
    writeln!(out)?;
    let counts: Vec<String> = ConversationState::ALL
        .iter()
        .filter_map(|state| {
            report
                .summary
                .get(state.as_str())
                .map(|count| format!("{state}={count}"))
        })
        .collect();
    writeln!(
        out,
        "summary: imported={} rejected={} not_sent={} {}",
        report.summary.get("imported").copied().unwrap_or(0),
        report.summary.get("rejected").copied().unwrap_or(0),
        report.summary.get("not_sent").copied().unwrap_or(0),
        counts.join(" ")
    )
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut clipped: String = text.chars().take(width.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

#[allow(dead_code)]
fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(run(&options, &mut stdout)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
