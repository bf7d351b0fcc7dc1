//! The `turns` workload: 10,000 inbound replies of 2,000 prospects, each
//! answered by the engine and committed to SQLite before the next one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use kalify::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, NextStep, Objection, ReplyDraft,
    ReplyRequest, Sentiment,
};
use kalify::contact::{ChannelKind, ContactPoint, EmailAddress};
use kalify::conversation::{ConversationState, Direction, Policy};
use kalify::engine::{Engine, InboundReport};
use kalify::ports::{InboundMessage, LanguageModel, Store};
use kalify::prospect::{Locale, Prospect};
use kalify::qualification::{
    Authority, FactValue, FixedReplies, Framework, Localized, ReplyTemplates,
};
use kalify::store::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};
use kalify::{ConversationId, OrgId, Result};
use serde::Deserialize;

use crate::{peak_rss_kib, sha256_prefix};

/// Prospects written per `insert_prospects` call while the store is filled
/// before the timer starts.
const FILL_BATCH: usize = 10_000;

/// Single-row commits of the bare loop that gives the physical limit.
const LIMIT_COMMITS: usize = 10_000;

/// One line of `turns.jsonl`.
#[derive(Debug, Deserialize)]
struct TurnLine {
    turn: u64,
    prospect_id: String,
    text: String,
}

/// One entry of `messages.json`: a reply and the extraction the scripted
/// model returns for it.
#[derive(Debug, Deserialize)]
struct CatalogueEntry {
    text: String,
    expected_extraction: Extraction,
}

#[derive(Clone, Debug, Deserialize)]
struct Extraction {
    lang: String,
    intent: String,
    budget_eur: Option<i64>,
    timeline_months: Option<i64>,
    authority: Option<String>,
    need: Option<bool>,
}

/// A language model that returns the catalogue's extraction of each
/// message, with the whole message as the quote of every fact. It writes
/// no replies: the framework's fixed replies are used instead.
#[derive(Debug)]
struct ScriptedModel {
    extractions: HashMap<String, Extraction>,
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        let mut analysis = Analysis::empty();
        for line in &request.new_messages {
            let Some(extraction) = self.extractions.get(&line.text) else {
                return Err(kalify::Error::invalid_input(format!(
                    "message not in the catalogue: {:?}",
                    line.text
                )));
            };
            apply_extraction(&mut analysis, extraction, line.text.trim())?;
        }
        Ok(analysis)
    }

    async fn write_reply(&self, _request: &ReplyRequest) -> Result<ReplyDraft> {
        Err(kalify::Error::unexpected(
            "the scripted model writes no replies; the framework's fixed replies apply",
        ))
    }
}

fn apply_extraction(analysis: &mut Analysis, extraction: &Extraction, quote: &str) -> Result<()> {
    analysis.language = Some(match extraction.lang.as_str() {
        "fr" => Locale::Fr,
        _ => Locale::En,
    });
    analysis.next_step = NextStep::Reply;
    analysis.sentiment = Sentiment::Neutral;
    analysis.intent = match extraction.intent.as_str() {
        "question" => Intent::Question,
        "handoff" => Intent::AsksForHuman,
        "not_interested" => Intent::NotInterested,
        "opt_out" => Intent::ObjectsToMessages,
        "info" => Intent::Interested,
        other => {
            return Err(kalify::Error::invalid_input(format!(
                "unknown intent {other:?} in the catalogue"
            )));
        }
    };
    if analysis.intent == Intent::ObjectsToMessages {
        analysis.objection = Objection::Clear;
    }
    let mut fact = |key: &str, value: FactValue| {
        analysis.facts.push(ExtractedFact {
            key: key.to_owned(),
            value,
            quote: quote.to_owned(),
            confidence: 1.0,
        });
    };
    if let Some(amount) = extraction.budget_eur {
        fact(
            "budget",
            FactValue::Money {
                amount: amount as f64,
                currency: "EUR".to_owned(),
            },
        );
    }
    match extraction.authority.as_deref() {
        Some("decision_maker") => fact("authority", FactValue::Authority(Authority::DecisionMaker)),
        Some("needs_approval") => fact("authority", FactValue::Authority(Authority::NeedsApproval)),
        Some(other) => {
            return Err(kalify::Error::invalid_input(format!(
                "unknown authority {other:?} in the catalogue"
            )));
        }
        None => {}
    }
    if let Some(need) = extraction.need {
        fact("need", FactValue::Bool(need));
    }
    if let Some(months) = extraction.timeline_months {
        fact("timeline", FactValue::Months(months as f64));
    }
    Ok(())
}

/// The workload's reply templates by key, English then French.
const TEMPLATES: [(&str, &str, &str); 14] = [
    (
        "opt_out_ack",
        "You have been unsubscribed. We will not contact you again.",
        "C'est noté, vous ne serez plus contacté.",
    ),
    (
        "handoff_ack",
        "Thanks! A member of our sales team will get back to you shortly.",
        "Merci ! Un membre de notre équipe commerciale vous recontacte rapidement.",
    ),
    (
        "disqualified",
        "Thanks for your honesty. We'll leave it there for now, feel free to come back anytime.",
        "Merci pour votre retour. Nous en restons là pour le moment, n'hésitez pas à revenir vers nous.",
    ),
    (
        "qualified_book",
        "Great, it sounds like a good fit. Would you like to book a 30-minute call with our team?",
        "Parfait, cela semble correspondre. Souhaitez-vous réserver un appel de 30 minutes avec notre équipe ?",
    ),
    (
        "answer_then_book",
        "Good question, I'll include the details in our call. Shall we book 30 minutes this week?",
        "Bonne question, je vous donne le détail lors de notre appel. On cale 30 minutes cette semaine ?",
    ),
    (
        "ask_budget",
        "To point you to the right offer, do you have a budget in mind for this project?",
        "Pour vous orienter vers la bonne offre, avez-vous une enveloppe budgétaire en tête ?",
    ),
    (
        "ask_authority",
        "Who else would be involved in the decision on your side?",
        "Qui d'autre serait impliqué dans la décision de votre côté ?",
    ),
    (
        "ask_need",
        "What is the main problem you are trying to solve with your leads today?",
        "Quel est le principal problème que vous cherchez à résoudre avec vos leads aujourd'hui ?",
    ),
    (
        "ask_timeline",
        "When would you ideally like to have a solution in place?",
        "Quand souhaiteriez-vous idéalement avoir une solution en place ?",
    ),
    (
        "answer_budget",
        "Good question! Our pricing depends on volume. What budget did you have in mind?",
        "Bonne question ! Nos tarifs dépendent du volume. Quel budget aviez-vous en tête ?",
    ),
    (
        "answer_authority",
        "Good question! I can send you the details. Who else would be involved in the decision?",
        "Bonne question ! Je peux vous envoyer le détail. Qui d'autre serait impliqué dans la décision ?",
    ),
    (
        "answer_need",
        "Good question! Yes, that is covered. What is the main problem you want to solve?",
        "Bonne question ! Oui, c'est couvert. Quel est le principal problème que vous voulez résoudre ?",
    ),
    (
        "answer_timeline",
        "Good question! Yes, that is covered. When would you like to get started?",
        "Bonne question ! Oui, c'est couvert. Quand souhaiteriez-vous démarrer ?",
    ),
    (
        "nurture",
        "Thanks, that's helpful. I'll send you a short case study in the meantime.",
        "Merci, c'est utile. Je vous envoie une courte étude de cas en attendant.",
    ),
];

fn template(key: &str) -> Localized {
    let (_, en, fr) = TEMPLATES
        .iter()
        .find(|(name, _, _)| *name == key)
        .copied()
        .unwrap_or((key, "", ""));
    Localized::new(en, fr)
}

/// Returns the BANT preset configured to the workload's rules: the same
/// points and thresholds, a budget of zero disqualifies but "no need" does
/// not, and every reply is one of the workload's fixed texts.
pub(crate) fn workload_framework() -> Framework {
    let mut framework = Framework::bant();
    framework.name = "bant-workload".to_owned();
    for criterion in &mut framework.criteria {
        if criterion.key == "need" {
            criterion.requirement = None;
        }
        criterion.question = template(&format!("ask_{}", criterion.key));
        criterion.answer = Some(template(&format!("answer_{}", criterion.key)));
    }
    framework.replies = ReplyTemplates {
        opt_out_confirmation: Some(template("opt_out_ack")),
        handoff_ack: Some(template("handoff_ack")),
        fixed: Some(FixedReplies {
            closing: template("disqualified"),
            qualified: template("qualified_book"),
            qualified_after_question: template("answer_then_book"),
            nurture: template("nurture"),
        }),
    };
    framework
}

/// Returns the state machine settings of the workload: disqualified and
/// declined prospects stay so, and replies after an opt-out still update
/// the facts and the score.
fn workload_policy() -> Policy {
    Policy::default()
        .with_final_disqualification(true)
        .with_analyse_opt_outs(true)
}

/// The workload's name of a conversation state. A prospect who declines is
/// `Closed` in kalify and `disqualified` in the workload.
fn status_name(state: ConversationState) -> &'static str {
    match state {
        ConversationState::Closed | ConversationState::Disqualified => "disqualified",
        other => other.as_str(),
    }
}

fn email_of(name: &str) -> Result<EmailAddress> {
    EmailAddress::parse(&format!("{name}@bench.example.com"))
}

/// Runs the workload and prints its figure, check and limit lines.
/// `stored` is the number of prospects in the store before the first turn,
/// at least the 2,000 that write.
pub(crate) async fn run(
    data: &Path,
    dir: &Path,
    stored: usize,
    synchronous: SqliteSynchronous,
) -> Result<()> {
    let read = |name: &str| {
        std::fs::read_to_string(data.join(name)).map_err(|error| {
            kalify::Error::invalid_input(format!("cannot read {}", data.join(name).display()))
                .with_source(error)
        })
    };
    let catalogue: Vec<CatalogueEntry> =
        serde_json::from_str(&read("messages.json")?).map_err(|error| {
            kalify::Error::invalid_input("messages.json is not a valid catalogue")
                .with_source(error)
        })?;
    let turns: Vec<TurnLine> = read("turns.jsonl")?
        .lines()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| {
                kalify::Error::invalid_input(format!(
                    "line {} of turns.jsonl is not a valid turn",
                    index + 1
                ))
                .with_source(error)
            })
        })
        .collect::<Result<_>>()?;
    let extractions = catalogue
        .into_iter()
        .map(|entry| (entry.text, entry.expected_extraction))
        .collect();

    let db_path = dir.join("kalify-turns.sqlite");
    let store = Arc::new(
        SqliteStoreBuilder::new(&db_path)
            .with_synchronous(synchronous)
            .build()?,
    );
    let org = OrgId::new();
    let writers = fill_store(store.as_ref(), org, &turns, stored).await?;
    let stored = stored.max(writers.len());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(ScriptedModel { extractions }))
        .with_framework(workload_framework())
        .with_policy(workload_policy())
        .build()?;

    let started = Instant::now();
    let mut reports = Vec::with_capacity(turns.len());
    for line in &turns {
        let from = writers.get(&line.prospect_id).cloned().ok_or_else(|| {
            kalify::Error::invalid_input(format!(
                "turn {} names an unknown prospect {}",
                line.turn, line.prospect_id
            ))
        })?;
        let inbound = InboundMessage {
            channel: ChannelKind::Email,
            provider: "bench".to_owned(),
            provider_message_id: line.turn.to_string(),
            from: ContactPoint::Email(from),
            text: line.text.clone(),
            at: Utc::now(),
        };
        reports.push(engine.answer_inbound(org, inbound).await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_mb =
        peak_rss_kib().map_or_else(|| "unknown".to_owned(), |kib| (kib / 1024).to_string());
    println!(
        "kalify turns_per_s={:.0} rss_mb={rss_mb} turns={} seconds={elapsed:.2} durability={}+synchronous={} stored_prospects={stored}",
        turns.len() as f64 / elapsed,
        turns.len(),
        journal_mode(&db_path)?,
        synchronous.as_str().to_lowercase(),
    );

    print_check(store.as_ref(), org, &turns, &reports).await?;
    drop(engine);
    drop(store);
    let commits_per_s = commit_limit(&dir.join("bare-commits.sqlite"), synchronous)?;
    println!("kalify turns_limit commits_per_s={commits_per_s:.0}");
    Ok(())
}

/// Inserts the 2,000 prospects who write, then filler prospects up to
/// `stored`, and returns the e-mail address of each writer by workload id.
async fn fill_store(
    store: &SqliteStore,
    org: OrgId,
    turns: &[TurnLine],
    stored: usize,
) -> Result<HashMap<String, EmailAddress>> {
    let now = Utc::now();
    let mut writers = HashMap::new();
    let mut batch = Vec::with_capacity(FILL_BATCH);
    for line in turns {
        if writers.contains_key(&line.prospect_id) {
            continue;
        }
        let email = email_of(&line.prospect_id)?;
        let mut prospect = Prospect::new(org, now);
        prospect.email = Some(email.clone());
        writers.insert(line.prospect_id.clone(), email);
        batch.push(prospect);
    }
    let mut count = batch.len();
    while count < stored.max(writers.len()) {
        let mut prospect = Prospect::new(org, now);
        prospect.email = Some(email_of(&format!("filler{count:07}"))?);
        batch.push(prospect);
        count += 1;
        if batch.len() == FILL_BATCH {
            store.insert_prospects(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_prospects(&batch).await?;
    }
    Ok(writers)
}

/// Prints the check line. Status and score of each turn come from the
/// engine's reports, and each turn's reply is read back from the store:
/// the outbound messages between that turn's inbound message and the next.
async fn print_check(
    store: &SqliteStore,
    org: OrgId,
    turns: &[TurnLine],
    reports: &[InboundReport],
) -> Result<()> {
    let keys: HashMap<&str, &str> = TEMPLATES
        .iter()
        .flat_map(|(key, en, fr)| [(*en, *key), (*fr, *key)])
        .collect();
    if keys.len() != TEMPLATES.len() * 2 {
        return Err(kalify::Error::unexpected(
            "two reply templates have the same text, so replies cannot be told apart",
        ));
    }

    let mut replies: HashMap<String, String> = HashMap::new();
    let conversations: BTreeMap<ConversationId, ()> = reports
        .iter()
        .map(|report| (report.conversation_id, ()))
        .collect();
    for conversation in conversations.keys() {
        let mut current: Option<String> = None;
        for message in store.list_messages(org, *conversation).await? {
            match message.direction {
                Direction::Inbound => {
                    let turn = message.provider_message_id.unwrap_or_default();
                    replies.insert(turn.clone(), String::new());
                    current = Some(turn);
                }
                Direction::Outbound => {
                    if let Some(reply) = current.as_ref().and_then(|turn| replies.get_mut(turn)) {
                        reply.push_str(&message.text);
                    }
                }
            }
        }
    }

    let mut lines = String::new();
    let mut last: BTreeMap<&str, (&'static str, u32)> = BTreeMap::new();
    for (line, report) in turns.iter().zip(reports) {
        let status = status_name(report.state);
        let score = report.score.map_or(0, u32::from);
        let text = replies
            .get(&line.turn.to_string())
            .map_or("", String::as_str);
        let key = if text.is_empty() {
            "none"
        } else {
            keys.get(text).copied().unwrap_or("unknown")
        };
        lines.push_str(&format!("{status}|{score}|{key}|{text}\n"));
        last.insert(&line.prospect_id, (status, score));
    }
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for (status, _) in last.values() {
        *statuses.entry(status).or_default() += 1;
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect();
    let final_score_sum: u32 = last.values().map(|(_, score)| score).sum();
    println!(
        "kalify turns_check statuses={} final_score_sum={final_score_sum} outputs_sha256={}",
        statuses.join(","),
        sha256_prefix(lines.as_bytes())?
    );
    Ok(())
}

/// Returns the journal mode recorded in the database file at `path`, read
/// through a connection of its own, so that the printed durability comes
/// from the file rather than from the configuration.
pub(crate) fn journal_mode(path: &Path) -> Result<String> {
    let fail = |error: rusqlite::Error| {
        kalify::Error::unexpected("failed to read the journal mode of the database file")
            .with_context("path", path.display())
            .with_source(error)
    };
    let connection = rusqlite::Connection::open(path).map_err(fail)?;
    connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(fail)
}

/// Times `LIMIT_COMMITS` single-row commits into a new WAL file with the
/// store's `synchronous` level, and returns commits per second.
fn commit_limit(path: &Path, synchronous: SqliteSynchronous) -> Result<f64> {
    commit_rate(path, synchronous, 1, LIMIT_COMMITS)
}

/// Times `commits` commits into a new WAL file with the `synchronous` level,
/// each inserting one 200-byte row into each of `tables` tables, and returns
/// commits per second. Each row goes to the end of its table, so a commit
/// writes about one page per table.
pub(crate) fn commit_rate(
    path: &Path,
    synchronous: SqliteSynchronous,
    tables: usize,
    commits: usize,
) -> Result<f64> {
    let fail = |error: rusqlite::Error| {
        kalify::Error::unexpected("the bare commit loop failed").with_source(error)
    };
    let connection = rusqlite::Connection::open(path).map_err(fail)?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    connection
        .pragma_update(None, "synchronous", synchronous.as_str())
        .map_err(fail)?;
    connection.set_prepared_statement_cache_capacity(tables + 4);
    for table in 0..tables {
        connection
            .execute(
                &format!(
                    "CREATE TABLE commits_{table} (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"
                ),
                [],
            )
            .map_err(fail)?;
    }
    let inserts: Vec<String> = (0..tables)
        .map(|table| format!("INSERT INTO commits_{table} (payload) VALUES (?1)"))
        .collect();
    let payload = "x".repeat(200);
    let started = Instant::now();
    for _ in 0..commits {
        connection.execute("BEGIN IMMEDIATE", []).map_err(fail)?;
        for insert in &inserts {
            connection
                .prepare_cached(insert)
                .and_then(|mut statement| statement.execute([&payload]))
                .map_err(fail)?;
        }
        connection.execute("COMMIT", []).map_err(fail)?;
    }
    Ok(commits as f64 / started.elapsed().as_secs_f64())
}
