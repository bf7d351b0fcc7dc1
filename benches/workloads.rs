//! Runs the benchmark workloads on data written by the workload generator.
//!
//! ```sh
//! cargo bench --bench workloads -- import --data DIR
//! cargo bench --bench workloads -- turns --data DIR [--stored N] [--synchronous LEVEL]
//! cargo bench --bench workloads -- score --data DIR
//! cargo bench --bench workloads --features openai -- model [--ai-replies]
//! cargo bench --bench workloads -- commits [--tables 1,6,12,18,24] [--synchronous LEVEL]
//! ```
//!
//! `DIR` contains the generated files (`prospects.csv`, `turns.jsonl`,
//! `messages.json`, `score_input.bin`, `score_criteria.json`). Without
//! `--data`, the folder named by `KALIFY_BENCH_DATA` is read. `--stored N`
//! fills the store with N prospects before the turns: the 2,000 who write,
//! then others up to N.
//! `commits` needs no data: it times bare SQLite commits that each write one
//! row into each of N tables, for each N of `--tables`, to show how the cost
//! of a durable commit grows with the b-trees it writes. `--synchronous`
//! sets `PRAGMA synchronous` of the turns and of the bare commits (`off`,
//! `normal`, `full` or `extra`; `full` by default), to show what each sync
//! costs.
//! Each workload but `commits` prints a figure line and a check line, and
//! `import` and `turns` also print the limit measured in the same run, such
//! as
//!
//! ```text
//! kalify import_rows_per_s=NNNN rss_mb=NN
//! kalify import_check invalid=N duplicates=N inserted=N table_sha256=HHHHHHHHHHHHHHHH
//! kalify import_limit rows_per_s=N
//! ```
//!
//! `docs/benchmarks.md` describes each workload and records the figures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use kalify::contact::Region;
use kalify::import::{ImportOptions, ImportReport, InvalidContact, MergePolicy, import_prospects};
use kalify::ports::{ListOptions, Store};
use kalify::prospect::{CustomValue, Prospect};
use kalify::store::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};
use kalify::{OrgId, Result};

#[cfg(feature = "openai")]
#[path = "workloads/model.rs"]
mod model;
#[path = "workloads/score.rs"]
mod score;
#[path = "workloads/turns.rs"]
mod turns;

/// Columns of the workload's CSV that are stored in their own table columns;
/// every other column is a custom field.
const STANDARD_COLUMNS: [&str; 7] = [
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "source",
    "country",
];

/// New prospects written per store call and transaction, and rows per
/// chunk of lookups. Peak memory grows with it, not with the file's size.
const IMPORT_BATCH_ROWS: usize = 10_000;

/// The SQLite page cache of the import, in KiB: enough for the contact-point
/// indexes of 200,000 prospects, so that inserts do not read and spill pages.
const IMPORT_CACHE_KIB: u32 = 64 * 1024;

/// The `sqlite3` command-line shell whose `.import` gives the physical limit.
const SQLITE3_CLI: &str = "/usr/bin/sqlite3";

/// A workload of the runner.
struct Workload {
    name: &'static str,
    /// Options it reads, without the leading `--`. `model` checks its own.
    options: &'static [&'static str],
    /// Generated files it reads from the data folder.
    files: &'static [&'static str],
}

const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "import",
        options: &["data"],
        files: &["prospects.csv"],
    },
    Workload {
        name: "turns",
        options: &["data", "stored", "synchronous"],
        files: &["messages.json", "turns.jsonl"],
    },
    Workload {
        name: "score",
        options: &["data"],
        files: &["score_criteria.json", "score_input.bin"],
    },
    Workload {
        name: "model",
        options: &[],
        files: &[],
    },
    Workload {
        name: "commits",
        options: &["tables", "synchronous"],
        files: &[],
    },
];

/// Exit status of a run stopped by invalid arguments or missing data.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| argument != "--bench")
        .collect();
    match run(&arguments) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

/// Checks the arguments and runs the workload they name. A usage error,
/// such as an unknown option or a missing data file, is returned as its
/// message, and a failure of the workload itself as the exit code.
fn run(arguments: &[String]) -> std::result::Result<ExitCode, String> {
    let Some(name) = arguments.first() else {
        return Err(
            "missing workload: use import, turns, score, model or commits, such as `-- import --data DIR`"
                .to_owned(),
        );
    };
    let Some(workload) = WORKLOADS.iter().find(|workload| workload.name == name) else {
        return Err(format!(
            "unknown workload {name:?}: use import, turns, score, model or commits"
        ));
    };
    // The model workload generates its own prospects and reads no data folder.
    if workload.name == "model" {
        return Ok(run_model(&arguments[1..]));
    }
    let options = Options::parse(workload.name, &arguments[1..], workload.options)?;
    let synchronous = synchronous_level(&options)?;
    if workload.name == "commits" {
        return Ok(run_commits(&table_counts(&options)?, synchronous));
    }
    let data = data_dir(&options)?;
    if data.is_file() {
        return Err(format!(
            "{} is a file: pass the folder the workload generator wrote",
            data.display()
        ));
    }
    if let Some(missing) = workload
        .files
        .iter()
        .map(|file| data.join(file))
        .find(|path| !path.is_file())
    {
        return Err(format!(
            "{} not found: generate the data with the workload generator first",
            missing.display()
        ));
    }
    Ok(match workload.name {
        "import" => run_import(&data),
        "turns" => run_turns(&data, stored_prospects(&options)?, synchronous),
        // The other workloads have returned above, so this is `score`.
        _ => match score::run(&data) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("the score workload failed: {}", with_causes(&error));
                ExitCode::FAILURE
            }
        },
    })
}

/// Returns `error` followed by the chain of errors that caused it.
fn with_causes(error: &kalify::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        // A store error repeats its cause's message in its own, so a cause
        // already in the text adds nothing.
        let message = current.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = current.source();
    }
    text
}

/// The options of a workload, by name without the leading `--`.
struct Options<'a> {
    values: Vec<(&'static str, &'a str)>,
}

impl<'a> Options<'a> {
    /// Reads `arguments`, each option given as `--NAME VALUE` or
    /// `--NAME=VALUE`, and checks that each is one of `accepted`, has a
    /// value and appears once.
    fn parse(
        workload: &str,
        arguments: &'a [String],
        accepted: &[&'static str],
    ) -> std::result::Result<Self, String> {
        let list: Vec<String> = accepted.iter().map(|name| format!("--{name}")).collect();
        let usage = format!("the {workload} workload reads {}", list.join(", "));
        let mut values: Vec<(&'static str, &'a str)> = Vec::new();
        let mut iter = arguments.iter();
        while let Some(argument) = iter.next() {
            let Some(option) = argument.strip_prefix("--") else {
                return Err(format!("unexpected argument {argument:?}: {usage}"));
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (option, None),
            };
            let Some(name) = accepted.iter().copied().find(|accepted| *accepted == name) else {
                return Err(format!("unknown option {argument:?}: {usage}"));
            };
            let value = match inline {
                Some(value) => Some(value),
                None => iter.next().map(String::as_str),
            };
            let value = match value {
                Some(value) if value.starts_with("--") => {
                    return Err(format!(
                        "--{name} needs {}, got the option {value:?}",
                        value_of(name)
                    ));
                }
                Some(value) if !value.is_empty() => value,
                _ => return Err(format!("--{name} needs {}", value_of(name))),
            };
            if values.iter().any(|(seen, _)| *seen == name) {
                return Err(format!("--{name} is given twice: give it once"));
            }
            values.push((name, value));
        }
        Ok(Options { values })
    }

    /// Returns the value of the option `name`, if given.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(seen, _)| *seen == name)
            .map(|(_, value)| *value)
    }
}

/// Describes the value an option expects, for its errors.
fn value_of(name: &str) -> &'static str {
    match name {
        "data" => "a folder",
        "stored" => "a number of prospects",
        "tables" => "a comma-separated list of table counts, such as 1,6,12",
        "synchronous" => "a level: off, normal, full or extra",
        _ => "a value",
    }
}

/// Returns the data folder from `--data DIR`, else from `KALIFY_BENCH_DATA`.
fn data_dir(options: &Options) -> std::result::Result<PathBuf, String> {
    if let Some(dir) = options.get("data") {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("KALIFY_BENCH_DATA")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "missing data folder: pass --data DIR or set KALIFY_BENCH_DATA".to_owned())
}

/// Returns the number of prospects to store before the turns, from `--stored N`.
fn stored_prospects(options: &Options) -> std::result::Result<usize, String> {
    let Some(value) = options.get("stored") else {
        return Ok(2_000);
    };
    value
        .parse()
        .map_err(|_| format!("--stored expects a number of prospects, got {value:?}"))
}

/// Table counts of the `commits` workload without `--tables`: from one, as
/// in `turns_limit`, to more than the 18 b-trees (tables and indexes) that
/// a turn of the `turns` workload writes.
const DEFAULT_TABLE_COUNTS: [usize; 5] = [1, 6, 12, 18, 24];

/// Commits timed for each table count of the `commits` workload.
const COMMITS_PER_COUNT: usize = 5_000;

/// Returns the table counts of `--tables 1,6,12`, else the default ones.
fn table_counts(options: &Options) -> std::result::Result<Vec<usize>, String> {
    let Some(value) = options.get("tables") else {
        return Ok(DEFAULT_TABLE_COUNTS.to_vec());
    };
    value
        .split(',')
        .map(|count| match count.trim().parse::<usize>() {
            Ok(count) if (1..=1_000).contains(&count) => Ok(count),
            _ => Err(format!(
                "--tables expects counts from 1 to 1000 separated by commas, got {count:?}"
            )),
        })
        .collect()
}

/// Returns the level of `--synchronous LEVEL`, else `Full`.
fn synchronous_level(options: &Options) -> std::result::Result<SqliteSynchronous, String> {
    let Some(value) = options.get("synchronous") else {
        return Ok(SqliteSynchronous::Full);
    };
    match value.to_ascii_lowercase().as_str() {
        "off" => Ok(SqliteSynchronous::Off),
        "normal" => Ok(SqliteSynchronous::Normal),
        "full" => Ok(SqliteSynchronous::Full),
        "extra" => Ok(SqliteSynchronous::Extra),
        _ => Err(format!(
            "--synchronous expects off, normal, full or extra, got {value:?}"
        )),
    }
}

/// Prints the bare commit rate for each table count.
fn run_commits(counts: &[usize], synchronous: SqliteSynchronous) -> ExitCode {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("failed to create a temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    for (run, &tables) in counts.iter().enumerate() {
        let path = dir.path().join(format!("commits-{run}.sqlite"));
        match turns::commit_rate(&path, synchronous, tables, COMMITS_PER_COUNT) {
            Ok(rate) => println!(
                "kalify commit_limit tables={tables} commits_per_s={rate:.0} synchronous={}",
                synchronous.as_str().to_lowercase()
            ),
            Err(error) => {
                eprintln!(
                    "the commits workload failed with {tables} tables: {}",
                    with_causes(&error)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

#[cfg(feature = "openai")]
fn run_model(arguments: &[String]) -> ExitCode {
    model::main(arguments)
}

#[cfg(not(feature = "openai"))]
fn run_model(_arguments: &[String]) -> ExitCode {
    eprintln!("the model workload needs the openai feature: add `--features openai`");
    ExitCode::from(USAGE_ERROR)
}

fn run_turns(data: &Path, stored: usize, synchronous: SqliteSynchronous) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("failed to start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("failed to create a temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(turns::run(data, dir.path(), stored, synchronous)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the turns workload failed: {}", with_causes(&error));
            ExitCode::FAILURE
        }
    }
}

fn run_import(data: &Path) -> ExitCode {
    let csv_path = data.join("prospects.csv");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("failed to start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("failed to create a temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(import_workload(&csv_path, dir.path())) {
        Ok(()) => {}
        Err(error) => {
            eprintln!(
                "the import workload of {} failed: {}",
                csv_path.display(),
                with_causes(&error)
            );
            return ExitCode::FAILURE;
        }
    }
    match import_limit(&csv_path, dir.path()) {
        Ok(Some(rows_per_s)) => println!("kalify import_limit rows_per_s={rows_per_s:.0}"),
        Ok(None) => eprintln!("{SQLITE3_CLI} not found: import_limit not measured"),
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Returns the import options that apply the workload's rules: a row with
/// any invalid contact cell is invalid, and a row matching an earlier row by
/// e-mail address or phone number is dropped, keeping the first.
fn workload_options() -> ImportOptions {
    ImportOptions::default()
        .with_default_region(Region::FR)
        .with_invalid_contact(InvalidContact::RejectRow)
        .with_merge_policy(MergePolicy::Skip)
        .with_batch_size(IMPORT_BATCH_ROWS)
}

async fn import_workload(csv_path: &Path, dir: &Path) -> Result<()> {
    let db_path = dir.join("kalify-import.sqlite");
    let org = OrgId::new();
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let options = workload_options();
    let rows = count_data_rows(csv_path)?;

    let started = Instant::now();
    let store = SqliteStoreBuilder::new(&db_path)
        .with_synchronous(SqliteSynchronous::Full)
        .with_cache_size_kib(IMPORT_CACHE_KIB)
        .build()?;
    let file = std::fs::File::open(csv_path).map_err(|error| {
        kalify::Error::invalid_input(format!("cannot open {}", csv_path.display()))
            .with_source(error)
    })?;
    let report = import_prospects(
        &store,
        org,
        std::io::BufReader::with_capacity(1 << 16, file),
        &options,
        now,
    )
    .await?;
    drop(store);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_mb = peak_rss_kib().map(|kib| kib / 1024);

    println!(
        "kalify import_rows_per_s={:.0} rss_mb={} seconds={elapsed:.2}",
        rows as f64 / elapsed,
        rss_mb
            .map(|mb| mb.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    );

    let store = SqliteStore::open(&db_path).await?;
    let header = read_header(csv_path)?;
    let table_sha256 = table_sha256(&store, org, &header).await?;
    print_check(&report, &table_sha256);
    Ok(())
}

fn print_check(report: &ImportReport, table_sha256: &str) {
    println!(
        "kalify import_check invalid={} duplicates={} inserted={} table_sha256={table_sha256}",
        report.rejected_total, report.duplicates, report.inserted
    );
    let other = report.updated + report.unchanged + report.suppressed + report.blank;
    if other != 0 {
        eprintln!(
            "unexpected outcomes: updated={} unchanged={} suppressed={} blank={}",
            report.updated, report.unchanged, report.suppressed, report.blank
        );
    }
}

/// Counts the CSV records after the header, which the rate is computed on.
fn count_data_rows(csv_path: &Path) -> Result<usize> {
    let mut reader = csv::Reader::from_path(csv_path).map_err(|error| {
        kalify::Error::invalid_input(format!("cannot read {}", csv_path.display()))
            .with_source(error)
    })?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while reader.read_byte_record(&mut record).map_err(|error| {
        kalify::Error::invalid_input(format!("cannot read {}", csv_path.display()))
            .with_source(error)
    })? {
        rows += 1;
    }
    Ok(rows)
}

fn read_header(csv_path: &Path) -> Result<Vec<String>> {
    let mut reader = csv::Reader::from_path(csv_path).map_err(|error| {
        kalify::Error::invalid_input(format!("cannot read {}", csv_path.display()))
            .with_source(error)
    })?;
    let header = reader.headers().map_err(|error| {
        kalify::Error::invalid_input(format!("cannot read {}", csv_path.display()))
            .with_source(error)
    })?;
    Ok(header.iter().map(str::to_owned).collect())
}

/// Computes the workload's table digest from the stored prospects: the
/// first 16 hex digits of the SHA-256 of one line `email|phone|custom_fields`
/// per prospect in insertion order, with empty text for a missing value.
///
/// The workload's table keeps the custom columns as one compact JSON object
/// of strings in CSV column order, without `country`, which has a column
/// of its own. kalify keeps typed custom fields by name and the country
/// cell among them, so the object is rebuilt in that form here.
async fn table_sha256(store: &SqliteStore, org: OrgId, header: &[String]) -> Result<String> {
    let custom_columns: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .filter(|name| !STANDARD_COLUMNS.contains(name))
        .collect();
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| {
            kalify::Error::unexpected("failed to start sha256sum").with_source(error)
        })?;
    let Some(mut input) = child.stdin.take() else {
        return Err(kalify::Error::unexpected("sha256sum has no standard input"));
    };
    let mut writer = std::io::BufWriter::new(&mut input);
    let mut after = None;
    loop {
        let page = store
            .list_prospects(
                org,
                ListOptions {
                    after,
                    limit: 5_000,
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for prospect in &page {
            writer
                .write_all(table_line(prospect, &custom_columns).as_bytes())
                .map_err(|error| {
                    kalify::Error::unexpected("failed to write to sha256sum").with_source(error)
                })?;
        }
    }
    writer.flush().map_err(|error| {
        kalify::Error::unexpected("failed to write to sha256sum").with_source(error)
    })?;
    drop(writer);
    drop(input);
    let output = child
        .wait_with_output()
        .map_err(|error| kalify::Error::unexpected("sha256sum failed").with_source(error))?;
    let digest = String::from_utf8_lossy(&output.stdout);
    Ok(digest.chars().take(16).collect())
}

fn table_line(prospect: &Prospect, custom_columns: &[&str]) -> String {
    let email = prospect
        .email
        .as_ref()
        .map(|email| email.as_str())
        .unwrap_or("");
    let phone = prospect
        .phone
        .as_ref()
        .map(|phone| phone.as_str())
        .unwrap_or("");
    let mut custom = String::from("{");
    for name in custom_columns {
        let Some(value) = prospect.custom_fields.get(*name) else {
            continue;
        };
        let text = match value {
            CustomValue::Text(text) => text.clone(),
            other => other.to_string(),
        };
        if custom.len() > 1 {
            custom.push(',');
        }
        custom.push_str(&serde_json::Value::from(*name).to_string());
        custom.push(':');
        custom.push_str(&serde_json::Value::from(text).to_string());
    }
    custom.push('}');
    format!("{email}|{phone}|{custom}\n")
}

/// Times `sqlite3 FILE ".import --csv CSV prospects_raw"` into a new file
/// and returns its rows per second, or `None` when the shell is missing.
fn import_limit(csv_path: &Path, dir: &Path) -> std::result::Result<Option<f64>, String> {
    if !Path::new(SQLITE3_CLI).is_file() {
        return Ok(None);
    }
    let rows = count_data_rows(csv_path).map_err(|error| error.to_string())?;
    let db_path = dir.join("import_cli.sqlite");
    let started = Instant::now();
    let status = Command::new(SQLITE3_CLI)
        .arg(&db_path)
        .arg(format!(
            ".import --csv {} prospects_raw",
            csv_path.display()
        ))
        .status()
        .map_err(|error| format!("failed to run {SQLITE3_CLI}: {error}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("{SQLITE3_CLI} .import failed with {status}"));
    }
    Ok(Some(rows as f64 / elapsed))
}

/// Returns the first 16 hex digits of the SHA-256 of `bytes`, computed by
/// the `sha256sum` command.
fn sha256_prefix(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| {
            kalify::Error::unexpected("failed to start sha256sum").with_source(error)
        })?;
    let Some(mut input) = child.stdin.take() else {
        return Err(kalify::Error::unexpected("sha256sum has no standard input"));
    };
    input.write_all(bytes).map_err(|error| {
        kalify::Error::unexpected("failed to write to sha256sum").with_source(error)
    })?;
    drop(input);
    let output = child
        .wait_with_output()
        .map_err(|error| kalify::Error::unexpected("sha256sum failed").with_source(error))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .chars()
        .take(16)
        .collect())
}

/// Peak resident memory of this process in KiB, from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
