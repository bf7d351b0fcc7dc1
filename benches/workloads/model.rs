//! The `model` workload: 1,000 prospects send one reply each, and the
//! engine handles every reply through the OpenAI adapter. The model is a
//! loopback HTTP server that returns each chat completion after 200 ms.
//! At most 64 turns run at once, so a turn that makes one model call
//! cannot go faster than 64 / 0.2 s = 320 turns/s.
//!
//! By default the framework has fixed replies, so a turn makes one call,
//! the analysis. With `--ai-replies` the model also writes each reply, a
//! turn makes two calls, and the ideal rate is halved.
//!
//! The server counts, per prospect, the requests it is answering at once.
//! A second request of a prospect that arrives while the first is still
//! being answered is an overlap.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use kalify::ai::openai::OpenAiModel;
use kalify::contact::{ChannelKind, ContactPoint, EmailAddress};
use kalify::conversation::{Conversation, ConversationState, Direction};
use kalify::engine::{Engine, InboundReport};
use kalify::ports::{InboundMessage, Store};
use kalify::prospect::Prospect;
use kalify::qualification::Framework;
use kalify::store::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};
use kalify::{OrgId, Result};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::turns::workload_framework;

/// Prospects that send one reply each in the timed run.
const PROSPECTS: usize = 1_000;

/// The maximum number of turns in flight in the timed run.
const CONCURRENCY: usize = 64;

/// How long the loopback server waits before it returns a response.
const MODEL_LATENCY: Duration = Duration::from_millis(200);

/// Prospects that send two replies at the same moment after the timed run.
const SAME_PROSPECT: usize = 50;

/// The sentence every reply starts with. The loopback server quotes it as
/// the evidence of the `need` fact, so the fact passes the adapter's checks.
const NEED_QUOTE: &str = "We need a faster way to follow up on our leads";

/// The prefix of the number that identifies the writing prospect to the
/// loopback server, such as `lead-0042`. Prospect text reaches the model, so the
/// number travels in the reply itself.
const LEAD_PREFIX: &str = "lead-";

/// The response format name of the adapter's reply requests.
const REPLY_FORMAT: &str = "kalify_reply";

/// Runs the workload in a new runtime and temporary directory, and prints
/// its figure and check lines. `--ai-replies` makes the model write replies.
pub(crate) fn main(arguments: &[String]) -> ExitCode {
    let ai_replies = arguments.iter().any(|argument| argument == "--ai-replies");
    if let Some(unknown) = arguments
        .iter()
        .find(|argument| argument.as_str() != "--ai-replies")
    {
        eprintln!("unknown option {unknown:?} for the model workload: use --ai-replies or nothing");
        return ExitCode::from(super::USAGE_ERROR);
    }
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
    let server = match LoopbackModel::start() {
        Ok(server) => server,
        Err(error) => {
            eprintln!("failed to start the loopback model server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(dir.path(), &server, ai_replies));
    if let Err(error) = server.stop() {
        eprintln!("the loopback model server failed: {error}");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the model workload failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: &Path, server: &LoopbackModel, ai_replies: bool) -> Result<()> {
    let synchronous = SqliteSynchronous::Full;
    let db_path = dir.join("kalify-model.sqlite");
    let store = Arc::new(
        SqliteStoreBuilder::new(&db_path)
            .with_synchronous(synchronous)
            .build()?,
    );
    let org = OrgId::new();
    let leads = store_prospects(store.as_ref(), org).await?;

    let model = OpenAiModel::builder()
        .with_base_url(format!("http://{}/v1", server.address))
        .with_model("loopback-model")
        .with_timeout(Duration::from_secs(10))
        .build()?;
    let framework = if ai_replies {
        Framework::bant()
    } else {
        workload_framework()
    };
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(model))
        .with_framework(framework)
        .build()?;
    let calls_per_turn = if ai_replies { 2 } else { 1 };
    let ideal = CONCURRENCY as f64 / (calls_per_turn as f64 * MODEL_LATENCY.as_secs_f64());

    // The timed run: one reply per prospect, at most CONCURRENCY at once.
    let replies: Vec<Reply> = leads
        .iter()
        .enumerate()
        .map(|(lead, email)| Reply::new(lead, email, 1))
        .collect();
    let started = Instant::now();
    let turns = drive(&engine, org, replies, CONCURRENCY).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let counts = server.stats.take();
    let rate = PROSPECTS as f64 / elapsed;
    println!(
        "kalify model_turns_per_s={rate:.0} ideal={ideal:.0} ratio={:.2} concurrency={CONCURRENCY} turns={PROSPECTS} overlaps={}",
        rate / ideal,
        counts.overlaps,
    );
    let latencies = Latencies::of(
        turns
            .iter()
            .map(|turn| turn.finished.saturating_duration_since(turn.started)),
    );
    let (before, after) = engine_time(&turns, &counts.calls);
    println!(
        "kalify model_check seconds={elapsed:.2} model_calls={} calls_per_turn={calls_per_turn} unmarked={} max_in_flight={} states={} durability={}+synchronous={}",
        counts.requests,
        counts.unmarked,
        counts.max_in_flight,
        state_counts(&turns),
        super::turns::journal_mode(&db_path)?,
        synchronous.as_str().to_lowercase(),
    );
    println!(
        "kalify model_turn_ms turn_p50={} turn_p99={} turn_max={} before_model_p50={} before_model_p99={} after_model_p50={} after_model_p99={}",
        latencies.p50_ms,
        latencies.p99_ms,
        latencies.max_ms,
        before.p50_ms,
        before.p99_ms,
        after.p50_ms,
        after.p99_ms,
    );

    // Two replies of the same prospect at the same moment: the engine's
    // per-prospect lock must run the second turn after the first.
    let replies: Vec<Reply> = leads[..SAME_PROSPECT]
        .iter()
        .enumerate()
        .flat_map(|(lead, email)| [Reply::new(lead, email, 2), Reply::new(lead, email, 3)])
        .collect();
    let messages = replies.len();
    let started = Instant::now();
    let pairs = drive(&engine, org, replies, messages).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let counts = server.stats.take();
    let inbound = stored_inbound(store.as_ref(), org, &pairs).await?;
    println!(
        "kalify model_same_prospect prospects={SAME_PROSPECT} messages={messages} overlaps={} model_calls={} min_pair_ms={} seconds={elapsed:.2} inbound_stored={inbound}",
        counts.overlaps,
        counts.requests,
        min_pair_ms(started, &pairs),
    );
    Ok(())
}

/// Inserts the prospects who write, each with a conversation in state
/// `Contacted`, as if a campaign had sent them a first message. Returns
/// their e-mail addresses in lead-number order.
async fn store_prospects(store: &SqliteStore, org: OrgId) -> Result<Vec<EmailAddress>> {
    let now = Utc::now();
    let mut prospects = Vec::with_capacity(PROSPECTS);
    let mut emails = Vec::with_capacity(PROSPECTS);
    for lead in 0..PROSPECTS {
        let email = EmailAddress::parse(&format!("lead{lead:04}@bench.example.com"))?;
        let mut prospect = Prospect::new(org, now);
        prospect.email = Some(email.clone());
        prospects.push(prospect);
        emails.push(email);
    }
    store.insert_prospects(&prospects).await?;
    for prospect in &prospects {
        let mut conversation = Conversation::new(org, prospect.id, None, ChannelKind::Email, now);
        conversation.state = ConversationState::Contacted;
        store.insert_conversation(&conversation, &[]).await?;
    }
    Ok(emails)
}

/// One inbound reply to send.
#[derive(Debug)]
struct Reply {
    lead: usize,
    message: InboundMessage,
}

impl Reply {
    /// Builds reply number `sequence` of prospect `lead`. The provider
    /// message id is unique per prospect and sequence number.
    fn new(lead: usize, email: &EmailAddress, sequence: u32) -> Reply {
        let message = InboundMessage {
            channel: ChannelKind::Email,
            provider: "bench".to_owned(),
            provider_message_id: format!("{LEAD_PREFIX}{lead:04}-{sequence}"),
            from: ContactPoint::Email(email.clone()),
            text: format!("{NEED_QUOTE}. Reply {sequence} from {LEAD_PREFIX}{lead:04}."),
            at: Utc::now(),
        };
        Reply { lead, message }
    }
}

/// A finished turn, with the times it started and ended.
#[derive(Debug)]
struct TurnTiming {
    lead: usize,
    report: InboundReport,
    started: Instant,
    finished: Instant,
}

/// Calls `Engine::answer_inbound` for every reply, with at most `limit`
/// turns in flight, and returns the finished turns in completion order.
async fn drive(
    engine: &Engine,
    org: OrgId,
    replies: Vec<Reply>,
    limit: usize,
) -> Result<Vec<TurnTiming>> {
    let permits = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    let mut finished = Vec::with_capacity(replies.len());
    for reply in replies {
        let permit = permits.clone().acquire_owned().await.map_err(|error| {
            kalify::Error::unexpected("the turn semaphore closed").with_source(error)
        })?;
        let engine = engine.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let report = engine.answer_inbound(org, reply.message).await;
            drop(permit);
            report.map(|report| TurnTiming {
                lead: reply.lead,
                report,
                started,
                finished: Instant::now(),
            })
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let turn = joined.map_err(|error| {
            kalify::Error::unexpected("a turn task panicked").with_source(error)
        })??;
        if turn.report.duplicate {
            return Err(kalify::Error::unexpected(format!(
                "the reply of {LEAD_PREFIX}{:04} was reported as a duplicate",
                turn.lead
            )));
        }
        finished.push(turn);
    }
    Ok(finished)
}

/// The median, 99th percentile and maximum of a set of durations, in milliseconds.
#[derive(Debug)]
struct Latencies {
    p50_ms: u128,
    p99_ms: u128,
    max_ms: u128,
}

impl Latencies {
    fn of(durations: impl IntoIterator<Item = Duration>) -> Latencies {
        let mut millis: Vec<u128> = durations.into_iter().map(|d| d.as_millis()).collect();
        millis.sort_unstable();
        let at = |fraction: f64| {
            let index = ((millis.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
            millis.get(index).copied().unwrap_or(0)
        };
        Latencies {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: millis.last().copied().unwrap_or(0),
        }
    }
}

/// Splits each turn's time around its model calls: from the turn's start to
/// the first request's arrival at the server, and from the last answer to
/// the turn's end. Both are the engine's own work and its waits for the store.
fn engine_time(turns: &[TurnTiming], calls: &HashMap<u32, ModelCalls>) -> (Latencies, Latencies) {
    let mut before = Vec::with_capacity(turns.len());
    let mut after = Vec::with_capacity(turns.len());
    for turn in turns {
        let Some(call) = u32::try_from(turn.lead)
            .ok()
            .and_then(|lead| calls.get(&lead))
        else {
            continue;
        };
        before.push(call.first_arrival.saturating_duration_since(turn.started));
        after.push(turn.finished.saturating_duration_since(call.last_answer));
    }
    (Latencies::of(before), Latencies::of(after))
}

/// Returns the conversation states after the turns, such as `engaged:1000`.
fn state_counts(turns: &[TurnTiming]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for turn in turns {
        *counts.entry(turn.report.state.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(state, count)| format!("{state}:{count}"))
        .collect();
    parts.join(",")
}

/// Returns the shortest time, over the prospects, from the start of the run
/// to the end of the prospect's last turn. Two turns of one prospect that
/// run one after the other take at least two model latencies.
fn min_pair_ms(started: Instant, turns: &[TurnTiming]) -> u128 {
    let mut last_end: HashMap<usize, Instant> = HashMap::new();
    for turn in turns {
        let end = last_end.entry(turn.lead).or_insert(turn.finished);
        *end = (*end).max(turn.finished);
    }
    last_end
        .values()
        .map(|end| end.saturating_duration_since(started).as_millis())
        .min()
        .unwrap_or(0)
}

/// Counts the inbound messages stored in the conversations of `turns`, each
/// conversation once, and fails when one of them is not processed.
async fn stored_inbound(store: &SqliteStore, org: OrgId, turns: &[TurnTiming]) -> Result<usize> {
    let mut conversations: Vec<_> = turns
        .iter()
        .map(|turn| turn.report.conversation_id)
        .collect();
    conversations.sort_unstable();
    conversations.dedup();
    let mut inbound = 0;
    for conversation in conversations {
        for message in store.list_messages(org, conversation).await? {
            if message.direction != Direction::Inbound {
                continue;
            }
            if !message.processed {
                return Err(kalify::Error::unexpected(format!(
                    "inbound message {} of conversation {conversation} is stored but not processed",
                    message.id
                )));
            }
            inbound += 1;
        }
    }
    Ok(inbound)
}

/// The counters of the loopback server.
#[derive(Debug, Default)]
struct ServerStats {
    requests: AtomicUsize,
    unmarked: AtomicUsize,
    overlaps: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Requests being answered, by lead number.
    per_lead: Mutex<HashMap<u32, u32>>,
    /// When the requests of each lead arrived and were answered.
    calls: Mutex<HashMap<u32, ModelCalls>>,
}

/// When the first request of a lead arrived and its last answer was sent.
#[derive(Clone, Copy, Debug)]
struct ModelCalls {
    first_arrival: Instant,
    last_answer: Instant,
}

/// The counters of one run, read and reset by [`ServerStats::take`].
#[derive(Debug)]
struct ServerCounts {
    requests: usize,
    unmarked: usize,
    overlaps: usize,
    max_in_flight: usize,
    calls: HashMap<u32, ModelCalls>,
}

impl ServerStats {
    /// Returns the counters since the last call and resets them. Call it
    /// only while no request is in flight.
    fn take(&self) -> ServerCounts {
        ServerCounts {
            requests: self.requests.swap(0, Ordering::SeqCst),
            unmarked: self.unmarked.swap(0, Ordering::SeqCst),
            overlaps: self.overlaps.swap(0, Ordering::SeqCst),
            max_in_flight: self.max_in_flight.swap(0, Ordering::SeqCst),
            calls: std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Records the start of a request of `lead`, and an overlap when another
    /// request of the same lead is still being answered.
    fn enter(self: &Arc<Self>, lead: u32) -> InFlight {
        let arrival = Instant::now();
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(lead)
            .or_insert(ModelCalls {
                first_arrival: arrival,
                last_answer: arrival,
            });
        {
            let mut per_lead = self.per_lead.lock().unwrap_or_else(PoisonError::into_inner);
            let count = per_lead.entry(lead).or_default();
            if *count > 0 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *count += 1;
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            stats: Arc::clone(self),
            lead,
        }
    }
}

/// A request being answered. Dropping it, when the answer is sent or the
/// client goes away, ends the request in the counters.
#[derive(Debug)]
struct InFlight {
    stats: Arc<ServerStats>,
    lead: u32,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let answered = Instant::now();
        if let Some(calls) = self
            .stats
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.lead)
        {
            calls.last_answer = answered;
        }
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut per_lead = self
            .stats
            .per_lead
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_lead.get_mut(&self.lead) {
            *count = count.saturating_sub(1);
        }
    }
}

/// An OpenAI-compatible chat completions server on 127.0.0.1, on a thread
/// and runtime of its own, that answers every request after [`MODEL_LATENCY`].
#[derive(Debug)]
struct LoopbackModel {
    address: SocketAddr,
    stats: Arc<ServerStats>,
    shutdown: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl LoopbackModel {
    /// Binds a free port on 127.0.0.1 and starts serving.
    fn start() -> std::io::Result<LoopbackModel> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&stats));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("loopback-model".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await
                })
            })?;
        Ok(LoopbackModel {
            address,
            stats,
            shutdown,
            thread,
        })
    }

    /// Stops serving and waits for the server's thread.
    fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::other("the server thread panicked")),
        }
    }
}

/// Answers a chat completion after [`MODEL_LATENCY`]: a reply text when the
/// request asks for the reply format, otherwise an analysis.
async fn complete(State(stats): State<Arc<ServerStats>>, body: Bytes) -> Response {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    let Some(lead) = lead_number(&body) else {
        stats.unmarked.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_REQUEST, "no lead number in the request").into_response();
    };
    let writes_reply = request["response_format"]["json_schema"]["name"] == REPLY_FORMAT;
    let _in_flight = stats.enter(lead);
    tokio::time::sleep(MODEL_LATENCY).await;

    let output = if writes_reply {
        json!({"text": "Thanks for your message. What budget do you have in mind for this project?"})
    } else {
        analysis_output()
    };
    let completion = json!({
        "id": format!("chatcmpl-{LEAD_PREFIX}{lead:04}"),
        "object": "chat.completion",
        "created": 0,
        "model": "loopback-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": output.to_string()},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": body.len() / 4, "completion_tokens": 60},
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        completion.to_string(),
    )
        .into_response()
}

/// The analysis the loopback model returns for every reply: an interested
/// prospect who states a need, quoted from the reply.
fn analysis_output() -> Value {
    json!({
        "intent": "interested",
        "facts": [{
            "key": "need",
            "value": {"type": "bool", "value": true},
            "quote": NEED_QUOTE,
            "confidence": 0.9,
        }],
        "sentiment": "positive",
        "objection": "none",
        "next_step": {"step": "ask_for", "key": "budget"},
        "language": "en",
    })
}

/// Returns the number after the first [`LEAD_PREFIX`] in the request body.
/// The history of a request holds only the same prospect's messages, so
/// the first number found is the writer's.
fn lead_number(body: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(LEAD_PREFIX)? + LEAD_PREFIX.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
