//! Several worker processes on one PostgreSQL database, sending SMS through
//! the Twilio adapter to a loopback server in the role of Twilio's Messages
//! API, and the engine's de-duplication of enrollments and webhooks on
//! PostgreSQL.
//!
//! The worker processes are this test binary run again with
//! `--exact worker_process --ignored`: the ignored test `worker_process`
//! reads its settings from `KALIFY_TEST_WORKER_*` variables, runs
//! `Engine::run_worker`, and stops when its standard input closes, so a
//! worker never outlives the test that started it.
//!
//! The loopback server counts requests per recipient. Each prospect has its
//! own phone number and receives exactly one message, so a recipient stands
//! for one outbox entry and its idempotency key: the Twilio adapter does not
//! put the key in its request, because Twilio's API takes none.
//!
//! Tests need `KALIFY_TEST_POSTGRES_URL` and skip without it, unless `CI`
//! is set. Each uses a schema of its own, dropped when it ends.
//!
//! `workers_throughput` is ignored by default. It prints the sends per
//! second of 1 and of 4 worker processes draining 10,000 due follow-ups:
//!
//! ```text
//! KALIFY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo test --release --all-features --test workers -- --ignored --exact workers_throughput --nocapture
//! ```

// Clippy allows `expect` and `panic` in test functions only, and the
// helpers here fail a test the same way.
#![allow(clippy::expect_used, clippy::panic)]

#[path = "../kalify-store/tests/postgres_support/mod.rs"]
mod postgres_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Form, Json, Router};
use kalify::ai::RulesModel;
use kalify::analysis::{Analysis, AnalysisRequest, ReplyDraft, ReplyRequest};
use kalify::campaign::{Campaign, CampaignStatus, Step};
use kalify::channels::TwilioSmsChannelBuilder;
use kalify::channels::twilio::{SIGNATURE_HEADER, compute_signature};
use kalify::contact::{ChannelKind, PhoneNumber};
use kalify::conversation::{Conversation, ConversationState, Direction};
use kalify::engine::{Engine, EngineSettings, EventOutcome, WorkerOptions};
use kalify::gate::GatePolicy;
use kalify::ports::{Channel, Job, LanguageModel, Store, WebhookRequest};
use kalify::prospect::{Consent, ConsentBasis, Prospect};
use kalify::qualification::Localized;
use kalify::store::{PostgresStore, PostgresStoreBuilder};
use kalify::{CampaignId, OrgId, Timestamp};
use postgres_support::{TestDatabase, admin, test_url};
use sqlx::Row;
use sqlx::postgres::PgConnection;

/// The worker's index. When set, this binary runs as a worker process.
const WORKER_INDEX_VARIABLE: &str = "KALIFY_TEST_WORKER_INDEX";
const WORKER_SCHEMA_VARIABLE: &str = "KALIFY_TEST_WORKER_SCHEMA";
const WORKER_PROVIDER_VARIABLE: &str = "KALIFY_TEST_WORKER_PROVIDER";
const WORKER_LEASE_VARIABLE: &str = "KALIFY_TEST_WORKER_LEASE_MS";

/// The line a worker prints once its engine is built.
const READY_LINE: &str = "worker-ready";
/// The prefix of the line a worker prints with its report when it stops.
const REPORT_PREFIX: &str = "worker-report";

/// Jobs and deliveries one worker runs at once.
const WORKER_CONCURRENCY: usize = 8;
const AUTH_TOKEN: &str = "loopback-auth-token";
const FROM: &str = "+33757000000";

// ------------------------------------------------------------ the provider

/// What the loopback provider received.
#[derive(Debug, Default)]
struct ProviderLog {
    /// For each recipient, the index of the worker behind each request, in arrival order.
    requests: HashMap<String, Vec<usize>>,
    /// Requests per worker index.
    per_worker: BTreeMap<usize, usize>,
    total: usize,
    /// The messages accepted, oldest first, as the message list returns them.
    messages: Vec<serde_json::Value>,
    /// Lookups in the message list.
    lookups: usize,
}

/// A loopback HTTP server in the role of Twilio's Messages API: it accepts
/// `POST …/Messages.json` with 201 and records the message, and responds to
/// `GET …/Messages.json` with the list filtered by `To` and `From`, newest
/// first, on one page. The account SID in the path names the worker, and the
/// list contains the messages of every worker, as one real account would.
struct LoopbackProvider {
    base_url: String,
    log: Arc<Mutex<ProviderLog>>,
    server: tokio::task::JoinHandle<()>,
}

impl LoopbackProvider {
    async fn start() -> Self {
        let log = Arc::new(Mutex::new(ProviderLog::default()));
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(accept_message).get(list_messages),
            )
            .with_state(Arc::clone(&log));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("failed to bind the loopback provider");
        let address = listener
            .local_addr()
            .expect("failed to read the provider's address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the loopback provider failed");
        });
        LoopbackProvider {
            base_url: format!("http://{address}"),
            log,
            server,
        }
    }

    fn total(&self) -> usize {
        self.log
            .lock()
            .expect("the provider log lock is poisoned")
            .total
    }

    fn lookups(&self) -> usize {
        self.log
            .lock()
            .expect("the provider log lock is poisoned")
            .lookups
    }

    fn requests_of(&self, worker: usize) -> usize {
        let log = self.log.lock().expect("the provider log lock is poisoned");
        log.per_worker.get(&worker).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> (HashMap<String, Vec<usize>>, BTreeMap<usize, usize>) {
        let log = self.log.lock().expect("the provider log lock is poisoned");
        (log.requests.clone(), log.per_worker.clone())
    }
}

impl Drop for LoopbackProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept_message(
    State(log): State<Arc<Mutex<ProviderLog>>>,
    Path(account_sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let worker = worker_of_account(&account_sid);
    let Some(to) = form.get("To").cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"code": 21604, "message": "To is required"})),
        );
    };
    let message = {
        let mut log = log.lock().expect("the provider log lock is poisoned");
        log.requests.entry(to.clone()).or_default().push(worker);
        *log.per_worker.entry(worker).or_default() += 1;
        log.total += 1;
        let message = serde_json::json!({
            "sid": format!("SM{:032x}", log.total),
            "status": "queued",
            "direction": "outbound-api",
            "to": to,
            "from": form.get("From").cloned().unwrap_or_default(),
            "messaging_service_sid": null,
            "body": form.get("Body").cloned().unwrap_or_default(),
            "date_created": chrono::Utc::now().to_rfc2822(),
            "date_sent": null,
        });
        log.messages.push(message.clone());
        message
    };
    (StatusCode::CREATED, Json(message))
}

async fn list_messages(
    State(log): State<Arc<Mutex<ProviderLog>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let mut log = log.lock().expect("the provider log lock is poisoned");
    log.lookups += 1;
    let wanted = |message: &serde_json::Value, field: &str, param: &str| {
        query
            .get(param)
            .is_none_or(|value| message[field].as_str() == Some(value.as_str()))
    };
    let messages: Vec<serde_json::Value> = log
        .messages
        .iter()
        .rev()
        .filter(|message| wanted(message, "to", "To") && wanted(message, "from", "From"))
        .cloned()
        .collect();
    Json(serde_json::json!({"messages": messages, "next_page_uri": null, "page": 0}))
}

/// Returns the Twilio account SID that worker `index` uses.
fn account_of_worker(index: usize) -> String {
    format!("AC{index:032x}")
}

fn worker_of_account(account_sid: &str) -> usize {
    usize::from_str_radix(account_sid.trim_start_matches("AC"), 16).unwrap_or(usize::MAX)
}

// ------------------------------------------------------------- the data

fn sms_consent(at: Timestamp) -> Consent {
    Consent {
        channel: ChannelKind::Sms,
        basis: ConsentBasis::Consent,
        collected_at: at,
        source: "test".to_owned(),
        wording_version: None,
        withdrawn_at: None,
    }
}

fn campaign(org: OrgId, now: Timestamp) -> Campaign {
    let step = |delay_hours, text: &str| Step::new(delay_hours, Localized::new(text, text));
    Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: "loopback".to_owned(),
        persona: "Acme".to_owned(),
        goal: "book a demo".to_owned(),
        channels: vec![ChannelKind::Sms],
        steps: vec![
            step(0, "Acme: hello {{ first_name }}. STOP to opt out."),
            step(
                24,
                "Acme: a follow-up for {{ first_name }}. STOP to opt out.",
            ),
            step(48, "Acme: a last follow-up. STOP to opt out."),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: now,
        settings: Default::default(),
    }
}

/// Returns the phone number of prospect `index`: French mobile numbers, one per index.
fn phone(index: usize) -> String {
    format!("+3361{index:07}")
}

fn prospect(org: OrgId, index: usize, now: Timestamp) -> Prospect {
    let mut prospect = Prospect::new(org, now);
    prospect.first_name = Some(format!("Camille{index}"));
    prospect.phone =
        Some(PhoneNumber::from_e164(&phone(index)).expect("the test phone numbers are valid"));
    prospect.consents.push(sms_consent(now));
    prospect
}

/// A schema with `count` prospects of one org, each with a conversation
/// in one SMS campaign and one follow-up job due in an hour. Even prospects
/// get the first message (attempt 0 of a new conversation), odd ones the
/// first follow-up (attempt 1 of a contacted conversation).
struct Seeded {
    database: TestDatabase,
    count: usize,
}

async fn seed(url: &str, count: usize) -> Seeded {
    let database = TestDatabase::new(url);
    let store = Arc::new(
        database
            .owner_builder()
            .with_max_connections(8)
            .build()
            .await
            .expect("failed to build the store"),
    );
    let org = OrgId::new();
    let now = chrono::Utc::now();
    let campaign = campaign(org, now);
    store.put_campaign(&campaign).await.expect("put_campaign");

    let prospects: Vec<Prospect> = (0..count).map(|index| prospect(org, index, now)).collect();
    for chunk in prospects.chunks(1_000) {
        store
            .insert_prospects(chunk)
            .await
            .expect("insert_prospects");
    }

    let due_at = now + chrono::Duration::hours(1);
    let mut tasks = tokio::task::JoinSet::new();
    let prospects = Arc::new(prospects);
    let writers = 8;
    for writer in 0..writers {
        let store = Arc::clone(&store);
        let prospects = Arc::clone(&prospects);
        let campaign_id = campaign.id;
        tasks.spawn(async move {
            for index in (writer..prospects.len()).step_by(writers) {
                let prospect = &prospects[index];
                let mut conversation =
                    Conversation::new(org, prospect.id, Some(campaign_id), ChannelKind::Sms, now);
                let attempt = u32::try_from(index % 2).expect("0 or 1");
                if attempt == 1 {
                    conversation.state = ConversationState::Contacted;
                }
                let job = Job::follow_up(&conversation, attempt, due_at);
                assert!(
                    store
                        .insert_conversation(&conversation, &[job])
                        .await
                        .expect("insert_conversation")
                );
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a seeding task panicked");
    }
    store.close().await;
    Seeded { database, count }
}

/// Makes every pending job of the schema due now.
async fn make_due(connection: &mut PgConnection, schema: &str) {
    let now = nanos(chrono::Utc::now());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.jobs SET due_at = $1 WHERE status = 'pending'"
    )))
    .bind(now)
    .execute(connection)
    .await
    .expect("failed to make the jobs due");
}

fn nanos(at: Timestamp) -> i64 {
    at.timestamp_nanos_opt()
        .expect("the test runs within the range of i64 nanoseconds")
}

/// Counts of the schema's rows that a drained run must bring to zero or to the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    due_jobs: i64,
    pending_outbox: i64,
    sent_outbox: i64,
}

async fn progress(connection: &mut PgConnection, schema: &str) -> Progress {
    let now = nanos(chrono::Utc::now());
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {schema}.jobs WHERE status = 'pending' AND due_at <= $1) AS due_jobs, \
                (SELECT count(*) FROM {schema}.outbox WHERE status = 'pending') AS pending_outbox, \
                (SELECT count(*) FROM {schema}.outbox WHERE status = 'sent') AS sent_outbox"
    )))
    .bind(now)
    .fetch_one(connection)
    .await
    .expect("failed to read the progress");
    Progress {
        due_jobs: row.get("due_jobs"),
        pending_outbox: row.get("pending_outbox"),
        sent_outbox: row.get("sent_outbox"),
    }
}

/// Waits until no job is due, no entry is pending and `expected` entries are sent.
async fn wait_until_drained(
    connection: &mut PgConnection,
    schema: &str,
    expected: usize,
    timeout: Duration,
) -> Progress {
    let deadline = Instant::now() + timeout;
    let expected = i64::try_from(expected).expect("the count fits in i64");
    loop {
        let now = progress(connection, schema).await;
        if now.due_jobs == 0 && now.pending_outbox == 0 && now.sent_outbox >= expected {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not drain the schema within {timeout:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One outbox row: its recipient, idempotency key and status.
struct OutboxRow {
    recipient: String,
    idempotency_key: String,
    status: String,
}

async fn outbox_rows(connection: &mut PgConnection, schema: &str) -> Vec<OutboxRow> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT recipient, idempotency_key, status FROM {schema}.outbox"
    )))
    .fetch_all(connection)
    .await
    .expect("failed to read the outbox");
    rows.iter()
        .map(|row| OutboxRow {
            recipient: row.get("recipient"),
            idempotency_key: row.get("idempotency_key"),
            status: row.get("status"),
        })
        .collect()
}

/// Checks that every outbox entry is sent, that each of the `count`
/// prospects has one entry with a key of its own, and returns the
/// provider's requests per idempotency key.
async fn requests_per_key(
    connection: &mut PgConnection,
    schema: &str,
    count: usize,
    requests: &HashMap<String, Vec<usize>>,
) -> HashMap<String, Vec<usize>> {
    let rows = outbox_rows(connection, schema).await;
    assert_eq!(
        rows.len(),
        count,
        "each prospect must have exactly one outbox entry"
    );
    let not_sent: Vec<&str> = rows
        .iter()
        .filter(|row| row.status != "sent")
        .map(|row| row.status.as_str())
        .collect();
    assert!(
        not_sent.is_empty(),
        "every outbox entry must be sent; {} are not: {:?}",
        not_sent.len(),
        &not_sent[..not_sent.len().min(5)]
    );
    let recipients: HashSet<&str> = rows.iter().map(|row| row.recipient.as_str()).collect();
    assert_eq!(
        recipients.len(),
        count,
        "each outbox entry must go to a recipient of its own"
    );

    let mut per_key = HashMap::new();
    for row in &rows {
        let workers = requests.get(&row.recipient).cloned().unwrap_or_default();
        let previous = per_key.insert(row.idempotency_key.clone(), workers);
        assert!(
            previous.is_none(),
            "the idempotency key {} must belong to one outbox entry",
            row.idempotency_key
        );
    }
    let unknown: Vec<&String> = requests
        .keys()
        .filter(|to| !recipients.contains(to.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the provider must receive only the outbox's recipients, also got {unknown:?}"
    );
    per_key
}

// ---------------------------------------------------------- the workers

/// A worker process and the reader of its standard output.
struct WorkerProcess {
    index: usize,
    child: Child,
    output: std::thread::JoinHandle<Vec<String>>,
}

/// Starts `count` worker processes on `schema` and waits until each has built its engine.
fn start_workers(
    url: &str,
    schema: &str,
    provider: &LoopbackProvider,
    count: usize,
    lease: Duration,
) -> Vec<WorkerProcess> {
    let executable = std::env::current_exe().expect("failed to find the test binary");
    let mut workers = Vec::new();
    let mut ready = Vec::new();
    for index in 1..=count {
        let mut child = Command::new(&executable)
            .args([
                "--exact",
                "worker_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(postgres_support::URL_VARIABLE, url)
            .env(WORKER_INDEX_VARIABLE, index.to_string())
            .env(WORKER_SCHEMA_VARIABLE, schema)
            .env(WORKER_PROVIDER_VARIABLE, &provider.base_url)
            .env(WORKER_LEASE_VARIABLE, lease.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("failed to start a worker process");
        let stdout = child.stdout.take().expect("the worker's stdout is piped");
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let output = std::thread::spawn(move || read_output(stdout, ready_sender));
        workers.push(WorkerProcess {
            index,
            child,
            output,
        });
        ready.push(ready_receiver);
    }
    for (worker, receiver) in workers.iter().zip(ready) {
        receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("worker {} did not report ready within 60 s", worker.index));
    }
    workers
}

/// Collects the lines of a worker's output, and signals when it is ready.
fn read_output(stdout: ChildStdout, ready: std::sync::mpsc::Sender<()>) -> Vec<String> {
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // libtest prints "test worker_process ... " on the same line first.
        if line.ends_with(READY_LINE) {
            let _ = ready.send(());
        }
        lines.push(line);
    }
    lines
}

/// Closes each worker's standard input, which stops it, and returns the
/// report line of each, keyed by worker index.
fn stop_workers(workers: Vec<WorkerProcess>) -> BTreeMap<usize, String> {
    let mut reports = BTreeMap::new();
    for mut worker in workers {
        drop(worker.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = worker
                .child
                .try_wait()
                .expect("failed to wait for a worker")
            {
                break status;
            }
            if Instant::now() > deadline {
                let _ = worker.child.kill();
                panic!(
                    "worker {} did not stop within 60 s of its stdin closing",
                    worker.index
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = worker.output.join().expect("the output reader panicked");
        assert!(
            status.success(),
            "worker {} failed with {status}: {lines:?}",
            worker.index
        );
        let report = lines
            .iter()
            .find_map(|line| {
                line.find(REPORT_PREFIX)
                    .map(|start| line[start..].to_owned())
            })
            .unwrap_or_else(|| panic!("worker {} printed no report: {lines:?}", worker.index));
        reports.insert(worker.index, report);
    }
    reports
}

/// Returns the value of `name=` in a report line.
fn report_field(report: &str, name: &str) -> u64 {
    report
        .split_whitespace()
        .find_map(|field| {
            field
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("the report {report:?} has no numeric {name}"))
}

/// Runs `Engine::run_worker` on the schema until standard input closes, in
/// a worker process. Ignored, and a no-op outside a worker process.
#[test]
#[ignore = "a worker process of the multi-worker tests, started by them"]
fn worker_process() {
    let Ok(index) = std::env::var(WORKER_INDEX_VARIABLE) else {
        return;
    };
    let index: usize = index.parse().expect("the worker index is a number");
    let url =
        std::env::var(postgres_support::URL_VARIABLE).expect("the parent passes the database URL");
    let schema = std::env::var(WORKER_SCHEMA_VARIABLE).expect("the parent passes the schema");
    let provider =
        std::env::var(WORKER_PROVIDER_VARIABLE).expect("the parent passes the provider URL");
    let lease_ms: u64 = std::env::var(WORKER_LEASE_VARIABLE)
        .expect("the parent passes the lease")
        .parse()
        .expect("the lease is a number of milliseconds");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to build the runtime");
    runtime.block_on(async move {
        let store = PostgresStoreBuilder::new(url)
            .with_schema(schema)
            .with_max_connections(u32::try_from(WORKER_CONCURRENCY).expect("small") + 2)
            .with_acquire_timeout(Duration::from_secs(30))
            .build()
            .await
            .expect("failed to build the worker's store");
        let engine = worker_engine(
            Arc::new(store),
            index,
            &provider,
            Duration::from_millis(lease_ms),
            Arc::new(RulesModel::default()),
        );

        let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            // Standard input closes when the parent closes it or exits.
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = stop_sender.send(());
        });
        println!("{READY_LINE}");

        let options = WorkerOptions::default()
            .with_concurrency(WORKER_CONCURRENCY)
            .with_poll_interval(Duration::from_millis(50));
        let report = engine
            .run_worker(options, async move {
                let _ = stop_receiver.await;
            })
            .await
            .expect("run_worker failed");
        println!(
            "{REPORT_PREFIX} jobs_done={} jobs_other={} sent={} not_sent={} store_errors={}",
            report.jobs_done, report.jobs_other, report.sent, report.not_sent, report.store_errors
        );
    });
}

/// Builds a worker's engine: the Twilio adapter on the loopback provider
/// with the worker's own account SID, and no quiet hours, so that the test
/// sends at any time of day.
fn worker_engine(
    store: Arc<dyn Store>,
    index: usize,
    provider: &str,
    lease: Duration,
    model: Arc<dyn LanguageModel>,
) -> Engine {
    let channel = TwilioSmsChannelBuilder::new(account_of_worker(index), AUTH_TOKEN)
        .with_from(FROM)
        .with_base_url(provider)
        .with_request_timeout(Duration::from_secs(10))
        .build()
        .expect("failed to build the Twilio channel");
    let mut settings = EngineSettings::default();
    settings.worker_id = format!("worker-{index}");
    settings.lease = lease;
    Engine::builder()
        .with_store(store)
        .with_model(model)
        .with_channel(Arc::new(channel))
        .with_gate_policy(GatePolicy::default().with_quiet_hours_channels(Vec::new()))
        .with_settings(settings)
        .build()
        .expect("failed to build the engine")
}

// ---------------------------------------------------------------- tests

/// Four worker processes share 10,000 due follow-ups, and the provider
/// receives exactly one request per idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_send_each_key_once() {
    let Some(url) = test_url() else { return };
    let started = Instant::now();
    let seeded = seed(&url, 10_000).await;
    let seeded_after = started.elapsed();
    let schema = seeded.database.schema.clone();
    let provider = LoopbackProvider::start().await;
    let mut admin = admin(&url).await;

    let workers = start_workers(&url, &schema, &provider, 4, Duration::from_secs(60));
    let due_at = Instant::now();
    make_due(&mut admin, &schema).await;
    let drained =
        wait_until_drained(&mut admin, &schema, seeded.count, Duration::from_secs(300)).await;
    postgres_support::say(&format!(
        "four_workers_send_each_key_once: seeded in {:.1} s, drained in {:.1} s",
        seeded_after.as_secs_f64(),
        due_at.elapsed().as_secs_f64()
    ));
    let reports = stop_workers(workers);

    assert_eq!(drained.sent_outbox, 10_000, "every follow-up must be sent");
    let (requests, per_worker) = provider.snapshot();
    let per_key = requests_per_key(&mut admin, &schema, seeded.count, &requests).await;
    let repeated: Vec<(&String, &Vec<usize>)> = per_key
        .iter()
        .filter(|(_, workers)| workers.len() != 1)
        .collect();
    assert!(
        repeated.is_empty(),
        "every idempotency key must reach the provider exactly once; {} did not, such as {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert_eq!(
        provider.total(),
        10_000,
        "the provider must receive 10,000 requests in all"
    );

    let sent: u64 = reports
        .values()
        .map(|report| report_field(report, "sent"))
        .sum();
    assert_eq!(
        sent, 10_000,
        "the workers' reports must add up to 10,000 sends: {reports:?}"
    );
    for index in 1..=4 {
        assert!(
            per_worker.get(&index).copied().unwrap_or(0) > 0,
            "worker {index} must have sent some messages: {per_worker:?}"
        );
    }
}

/// A worker killed with SIGKILL mid-run loses nothing and sends nothing
/// twice: its leases expire, the other workers claim what it held, and
/// because those entries come back unconfirmed, they look each one up in
/// the provider's message list before sending. An entry the killed worker
/// had sent is found there and recorded as sent, not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_nothing() {
    let Some(url) = test_url() else { return };
    let count = 2_000;
    let seeded = seed(&url, count).await;
    let schema = seeded.database.schema.clone();
    let provider = LoopbackProvider::start().await;
    let mut admin = admin(&url).await;

    // Short, so that the killed worker's claims come back soon, and long
    // enough that the other workers finish a claimed batch within it.
    let lease = Duration::from_secs(5);
    let mut workers = start_workers(&url, &schema, &provider, 4, lease);
    make_due(&mut admin, &schema).await;

    // Kill worker 1 once it has sent a few messages, mid-run.
    let victim = 1;
    let deadline = Instant::now() + Duration::from_secs(120);
    while provider.requests_of(victim) < 50 {
        assert!(
            Instant::now() < deadline,
            "worker {victim} sent fewer than 50 messages in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut killed = workers.remove(0);
    assert_eq!(killed.index, victim);
    killed.child.kill().expect("failed to kill the worker");
    let status = killed
        .child
        .wait()
        .expect("failed to wait for the killed worker");
    let sent_before_kill = provider.total();
    assert!(
        sent_before_kill < count,
        "the kill must land mid-run, but all {count} messages were already sent"
    );
    let lines = killed.output.join().expect("the output reader panicked");
    assert!(
        !lines.iter().any(|line| line.contains(REPORT_PREFIX)),
        "a killed worker prints no report: {status}"
    );

    let drained = wait_until_drained(&mut admin, &schema, count, Duration::from_secs(180)).await;
    stop_workers(workers);
    assert_eq!(
        drained.sent_outbox,
        i64::try_from(count).expect("small"),
        "every follow-up must be sent"
    );

    let (requests, _) = provider.snapshot();
    let per_key = requests_per_key(&mut admin, &schema, count, &requests).await;
    let lost: Vec<&String> = per_key
        .iter()
        .filter(|(_, workers)| workers.is_empty())
        .map(|(key, _)| key)
        .collect();
    assert!(
        lost.is_empty(),
        "no idempotency key may be lost; {} never reached the provider",
        lost.len()
    );
    let repeated: Vec<(&String, &Vec<usize>)> = per_key
        .iter()
        .filter(|(_, workers)| workers.len() > 1)
        .collect();
    assert!(
        repeated.is_empty(),
        "no idempotency key may reach the provider twice; {} did, such as {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert_eq!(
        provider.total(),
        count,
        "the provider must receive {count} sends in all"
    );
    postgres_support::say(&format!(
        "killed_worker_loses_nothing: {sent_before_kill} of {count} sent at the kill, {} entries looked up after it, none sent twice",
        provider.lookups()
    ));
}

/// Prints the sends per second of 1 and of 4 worker processes draining
/// 10,000 due follow-ups on the loopback provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it alone with --release and --nocapture"]
async fn workers_throughput() {
    let Some(url) = test_url() else { return };
    let count = 10_000;
    for workers_count in [1, 4] {
        let seeded = seed(&url, count).await;
        let schema = seeded.database.schema.clone();
        let provider = LoopbackProvider::start().await;
        let mut admin = admin(&url).await;
        let workers = start_workers(
            &url,
            &schema,
            &provider,
            workers_count,
            Duration::from_secs(60),
        );

        let started = Instant::now();
        make_due(&mut admin, &schema).await;
        wait_until_drained(&mut admin, &schema, count, Duration::from_secs(600)).await;
        let elapsed = started.elapsed();
        stop_workers(workers);

        let (requests, _) = provider.snapshot();
        let per_key = requests_per_key(&mut admin, &schema, count, &requests).await;
        let exactly_once = per_key
            .values()
            .filter(|workers| workers.len() == 1)
            .count();
        println!(
            "kalify workers={workers_count} jobs={count} seconds={:.2} sends_per_s={:.0} keys_sent_once={exactly_once}",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
    }
}

// ------------------------------------------ enrollments and webhooks

/// A model that counts the analyses it is asked for and delegates to the rules model.
#[derive(Debug, Default)]
struct CountingModel {
    inner: RulesModel,
    analyses: AtomicUsize,
}

#[async_trait]
impl LanguageModel for CountingModel {
    fn name(&self) -> &str {
        "counting-rules"
    }

    async fn analyse(&self, request: &AnalysisRequest) -> kalify::Result<Analysis> {
        self.analyses.fetch_add(1, Ordering::SeqCst);
        self.inner.analyse(request).await
    }

    async fn write_reply(&self, request: &ReplyRequest) -> kalify::Result<ReplyDraft> {
        self.inner.write_reply(request).await
    }
}

async fn owner_store(database: &TestDatabase) -> PostgresStore {
    database
        .owner_builder()
        .with_max_connections(8)
        .build()
        .await
        .expect("failed to build the store")
}

/// 50 concurrent enrollments of one prospect in one campaign, through two
/// engines with pools of their own, create one conversation and one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_create_one_job() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    let provider = LoopbackProvider::start().await;
    let model: Arc<CountingModel> = Arc::default();
    let engines = [
        worker_engine(
            Arc::new(owner_store(&database).await),
            1,
            &provider.base_url,
            Duration::from_secs(60),
            model.clone(),
        ),
        worker_engine(
            Arc::new(owner_store(&database).await),
            2,
            &provider.base_url,
            Duration::from_secs(60),
            model,
        ),
    ];
    let store = engines[0].store().clone();
    let org = OrgId::new();
    let now = chrono::Utc::now();
    let campaign = campaign(org, now);
    store.put_campaign(&campaign).await.expect("put_campaign");
    let prospect = prospect(org, 1, now);
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..50 {
        let engine = engines[index % 2].clone();
        tasks.spawn(async move {
            engine
                .enroll(org, prospect.id, campaign.id)
                .await
                .expect("enroll")
        });
    }
    let mut enrollments = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        enrollments.push(joined.expect("an enrollment task panicked"));
    }

    let created = enrollments
        .iter()
        .filter(|enrollment| enrollment.created)
        .count();
    assert_eq!(
        created, 1,
        "exactly one of 50 concurrent enrollments must create the conversation"
    );
    let conversations = store
        .conversations_of(org, prospect.id)
        .await
        .expect("conversations_of");
    assert_eq!(
        conversations.len(),
        1,
        "the prospect must have one conversation"
    );
    let conversation = conversations[0].id;
    assert!(
        enrollments
            .iter()
            .all(|enrollment| enrollment.conversation_id == conversation),
        "every enrollment must return the stored conversation"
    );
    let jobs = store
        .pending_jobs(org, conversation)
        .await
        .expect("pending_jobs");
    assert_eq!(jobs.len(), 1, "the conversation must have one pending job");

    let mut admin = admin(&url).await;
    let job_rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.jobs WHERE org_id = $1",
        database.schema
    )))
    .bind(org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("failed to count jobs");
    assert_eq!(
        job_rows, 1,
        "50 concurrent enrollments must write one job row"
    );
}

/// Builds Twilio's signed inbound-message webhook for `from` with the message SID `sid`.
fn inbound_webhook(from: &str, sid: &str, text: &str) -> WebhookRequest {
    const WEBHOOK_URL: &str = "https://hooks.example.com/twilio/sms";
    let account = account_of_worker(1);
    let params = [
        ("MessageSid", sid),
        ("SmsMessageSid", sid),
        ("AccountSid", account.as_str()),
        ("From", from),
        ("To", FROM),
        ("Body", text),
        ("NumMedia", "0"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ];
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let mut body = String::new();
    for (index, (key, value)) in params.iter().enumerate() {
        if index > 0 {
            body.push('&');
        }
        body.push_str(key);
        body.push('=');
        body.push_str(&percent_encode(value));
    }
    let headers = BTreeMap::from([
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        (
            SIGNATURE_HEADER.to_owned(),
            compute_signature(AUTH_TOKEN, WEBHOOK_URL, &owned),
        ),
    ]);
    WebhookRequest {
        method: "POST".into(),
        url: WEBHOOK_URL.into(),
        headers,
        body: body.into_bytes(),
    }
}

/// Percent-encodes a form value: unreserved ASCII stays, everything else is escaped.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Parses the webhook with the engine's Twilio channel and handles its events.
async fn deliver_webhook(
    engine: &Engine,
    channel: &dyn Channel,
    org: OrgId,
    request: &WebhookRequest,
) -> Vec<EventOutcome> {
    let events = channel
        .parse_webhook(request)
        .expect("the signed webhook must parse");
    let mut outcomes = Vec::new();
    for event in events {
        outcomes.push(engine.handle_event(org, event).await.expect("handle_event"));
    }
    outcomes
}

/// Counts the messages of a webhook's outcomes that were new, not duplicates.
fn new_messages(outcomes: Vec<EventOutcome>) -> usize {
    let mut count = 0;
    for outcome in outcomes {
        let EventOutcome::Message(report) = outcome else {
            panic!("the webhook must carry a message: {outcome:?}")
        };
        if !report.duplicate {
            count += 1;
        }
    }
    count
}

/// Returns how many stored inbound messages carry the provider message id `sid`.
fn inbound_with_sid(messages: &[kalify::conversation::Message], sid: &str) -> usize {
    messages
        .iter()
        .filter(|message| {
            message.direction == Direction::Inbound
                && message.provider_message_id.as_deref() == Some(sid)
        })
        .count()
}

/// The same inbound webhook delivered 10 times in sequence, then another
/// one delivered 10 times at once through two engines, each stores one
/// message and runs one analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_webhook_stores_one_message() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    let provider = LoopbackProvider::start().await;
    let model: Arc<CountingModel> = Arc::default();
    let engines = [
        worker_engine(
            Arc::new(owner_store(&database).await),
            1,
            &provider.base_url,
            Duration::from_secs(60),
            model.clone(),
        ),
        worker_engine(
            Arc::new(owner_store(&database).await),
            1,
            &provider.base_url,
            Duration::from_secs(60),
            model.clone(),
        ),
    ];
    let channel: Arc<dyn Channel> = Arc::new(
        TwilioSmsChannelBuilder::new(account_of_worker(1), AUTH_TOKEN)
            .with_from(FROM)
            .with_base_url(&provider.base_url)
            .build()
            .expect("failed to build the Twilio channel"),
    );
    let store = engines[0].store().clone();
    let org = OrgId::new();
    let now = chrono::Utc::now();
    let campaign = campaign(org, now);
    store.put_campaign(&campaign).await.expect("put_campaign");
    let prospect = prospect(org, 7, now);
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");
    let mut conversation =
        Conversation::new(org, prospect.id, Some(campaign.id), ChannelKind::Sms, now);
    conversation.state = ConversationState::Contacted;
    assert!(
        store
            .insert_conversation(&conversation, &[])
            .await
            .expect("insert_conversation")
    );
    let from = phone(7);

    // In sequence: the first delivery is handled, the nine others are duplicates.
    let first_sid = "SM00000000000000000000000000000001";
    let request = inbound_webhook(
        &from,
        first_sid,
        "Yes, interested. Our budget is 30k EUR for Q3.",
    );
    let mut handled = 0;
    for _ in 0..10 {
        handled +=
            new_messages(deliver_webhook(&engines[0], channel.as_ref(), org, &request).await);
    }
    assert_eq!(
        handled, 1,
        "one of 10 deliveries in sequence must be handled, the others are duplicates"
    );
    let messages = store
        .list_messages(org, conversation.id)
        .await
        .expect("list_messages");
    assert_eq!(
        inbound_with_sid(&messages, first_sid),
        1,
        "10 deliveries in sequence must store one message"
    );
    assert_eq!(
        model.analyses.load(Ordering::SeqCst),
        1,
        "10 deliveries in sequence must run one analysis"
    );

    // At once, through two engines with pools of their own.
    let second_sid = "SM00000000000000000000000000000002";
    let request = Arc::new(inbound_webhook(
        &from,
        second_sid,
        "Also, I decide on this myself.",
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..10 {
        let engine = engines[index % 2].clone();
        let channel = Arc::clone(&channel);
        let request = Arc::clone(&request);
        tasks.spawn(async move { deliver_webhook(&engine, channel.as_ref(), org, &request).await });
    }
    let mut handled = 0;
    while let Some(joined) = tasks.join_next().await {
        handled += new_messages(joined.expect("a webhook task panicked"));
    }
    assert_eq!(
        handled, 1,
        "one of 10 concurrent deliveries must be handled, the others are duplicates"
    );
    let messages = store
        .list_messages(org, conversation.id)
        .await
        .expect("list_messages");
    assert_eq!(
        inbound_with_sid(&messages, second_sid),
        1,
        "10 concurrent deliveries must store one message"
    );
    assert_eq!(
        model.analyses.load(Ordering::SeqCst),
        2,
        "10 concurrent deliveries must run one more analysis"
    );
}
