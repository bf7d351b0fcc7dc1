//! The offline `rules` language model: deterministic English and French
//! extraction with regular expressions, and template replies.
//!
//! Each new message is normalised (lower case, accents removed, typographic
//! punctuation replaced) and read on its own, so every quote is copied from
//! one message. For each criterion the latest message that states it wins,
//! because prospects correct themselves. The intent is that of the latest
//! message with a clear intent, except that a clear objection in any new
//! message makes the whole turn an objection.

mod authority;
mod intent;
mod language;
mod matching;
mod money;
mod need;
mod normalise;
mod timeline;

use std::sync::LazyLock;

use async_trait::async_trait;

use kalify_core::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, NextStep, Objection, ReplyDraft,
    ReplyRequest, Sentiment,
};
use kalify_core::conversation::Direction;
use kalify_core::ports::LanguageModel;
use kalify_core::prospect::Locale;
use kalify_core::qualification::{Authority, FactValue};
use kalify_core::reply::template_reply;
use kalify_core::{Error, Result};

use self::authority::AuthorityPatterns;
use self::intent::{FactSignals, IntentPatterns, Signals, decide_intent};
use self::matching::Found;
use self::money::{Money, MoneyPatterns};
use self::need::NeedPatterns;
use self::normalise::Normalised;
use self::timeline::{CalendarDate, TimelinePatterns};

/// The criterion keys this model extracts; other keys are left to the
/// engine and reported as missing.
const BUDGET: &str = "budget";
const AUTHORITY: &str = "authority";
const NEED: &str = "need";
const TIMELINE: &str = "timeline";

/// The maximum length of a quote in bytes, before widening to character
/// boundaries. Long clauses are cut around the words that state the fact.
const MAX_QUOTE_BYTES: usize = 240;

/// The offline language model: reads budget, authority, need, timeline,
/// intent, objection, tone and language with fixed English and French
/// rules, and writes replies from [`template_reply`].
///
/// It never calls the network and returns the same analysis for the same
/// request. See the crate documentation for what it understands.
///
/// # Example
///
/// ```
/// use kalify_ai::RulesModel;
/// use kalify_core::ports::LanguageModel;
///
/// let model = RulesModel::new();
/// assert_eq!(model.name(), "rules");
/// ```
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct RulesModel;

impl RulesModel {
    /// Creates the model. The patterns are compiled once per process, on
    /// the first analysis.
    pub fn new() -> Self {
        RulesModel
    }
}

#[async_trait]
impl LanguageModel for RulesModel {
    fn name(&self) -> &str {
        "rules"
    }

    /// Analyses the new replies.
    ///
    /// # Errors
    /// `Unexpected` if the built-in patterns failed to compile, which the
    /// crate's tests rule out for a released build.
    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        let rules = rules()?;
        let analysis = rules.analyse(request);
        tracing::debug!(
            messages = request.new_messages.len(),
            facts = analysis.facts.len(),
            intent = ?analysis.intent,
            objection = ?analysis.objection,
            "rules model analysed replies"
        );
        Ok(analysis)
    }

    /// Writes a reply from the fixed templates.
    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        Ok(ReplyDraft {
            text: template_reply(request),
        })
    }
}

static RULES: LazyLock<std::result::Result<Rules, regex::Error>> = LazyLock::new(Rules::new);

fn rules() -> Result<&'static Rules> {
    RULES.as_ref().map_err(|error| {
        Error::unexpected(format!(
            "the rules model patterns failed to compile: {error}"
        ))
        .with_adapter("rules")
        .with_operation("analyse")
    })
}

/// All compiled patterns.
#[derive(Debug)]
struct Rules {
    money: MoneyPatterns,
    timeline: TimelinePatterns,
    authority: AuthorityPatterns,
    need: NeedPatterns,
    intent: IntentPatterns,
}

/// The facts and signals read from one new message.
struct MessageReading<'a> {
    original: &'a str,
    text: Normalised,
    budget: Option<Found<Money>>,
    authority: Option<Found<Authority>>,
    need: Option<Found<bool>>,
    timeline: Option<Found<f64>>,
    signals: Signals,
}

impl MessageReading<'_> {
    fn fact_signals(&self) -> FactSignals {
        let no_budget = self
            .budget
            .as_ref()
            .is_some_and(|found| found.value.amount <= 0.0);
        let no_need = self.need.as_ref().is_some_and(|found| !found.value);
        let engaged = self
            .budget
            .as_ref()
            .is_some_and(|found| found.value.amount > 0.0)
            || self.need.as_ref().is_some_and(|found| found.value)
            || self.timeline.is_some()
            || self
                .authority
                .as_ref()
                .is_some_and(|found| found.value != Authority::None);
        FactSignals {
            hard_no: no_budget || no_need,
            engaged,
        }
    }

    /// Builds the fact for `key`, quoted from this message. A message that clearly
    /// objects to being messaged gives no facts: in "unsubscribe me
    /// immediately" the urgency is about the opt-out, not a timeline.
    fn fact(&self, key: &str) -> Option<ExtractedFact> {
        if self.signals.objection == Objection::Clear {
            return None;
        }
        let (value, range, confidence) = match key {
            BUDGET => {
                let found = self.budget.as_ref()?;
                let value = FactValue::Money {
                    amount: found.value.amount,
                    currency: found.value.currency.to_owned(),
                };
                (value, found.range.clone(), found.confidence)
            }
            AUTHORITY => {
                let found = self.authority.as_ref()?;
                (
                    FactValue::Authority(found.value),
                    found.range.clone(),
                    found.confidence,
                )
            }
            NEED => {
                let found = self.need.as_ref()?;
                (
                    FactValue::Bool(found.value),
                    found.range.clone(),
                    found.confidence,
                )
            }
            TIMELINE => {
                let found = self.timeline.as_ref()?;
                (
                    FactValue::Months(found.value),
                    found.range.clone(),
                    found.confidence,
                )
            }
            _ => return None,
        };
        let quote = self.text.quote(self.original, range, MAX_QUOTE_BYTES)?;
        Some(ExtractedFact {
            key: key.to_owned(),
            value,
            quote: quote.to_owned(),
            confidence: confidence.clamp(0.0, 1.0),
        })
    }
}

impl Rules {
    fn new() -> std::result::Result<Self, regex::Error> {
        Ok(Rules {
            money: MoneyPatterns::new()?,
            timeline: TimelinePatterns::new()?,
            authority: AuthorityPatterns::new()?,
            need: NeedPatterns::new()?,
            intent: IntentPatterns::new()?,
        })
    }

    fn analyse(&self, request: &AnalysisRequest) -> Analysis {
        let Some(now) = request.new_messages.iter().map(|line| line.at).max() else {
            return Analysis::empty();
        };
        let now = CalendarDate::of(now);

        let normalised: Vec<Normalised> = request
            .new_messages
            .iter()
            .map(|line| Normalised::new(&line.text))
            .collect();
        let language = language::detect(
            request
                .new_messages
                .iter()
                .zip(&normalised)
                .map(|(line, text)| (line.text.as_str(), text.text.as_str())),
        );
        let default_currency = match language.unwrap_or(request.locale) {
            Locale::Fr => "EUR",
            Locale::En => "USD",
        };
        let budget_requested = request
            .history
            .iter()
            .rev()
            .find(|line| line.direction == Direction::Outbound)
            .is_some_and(|line| Normalised::new(&line.text).text.contains("budget"));

        let readings: Vec<MessageReading<'_>> = request
            .new_messages
            .iter()
            .zip(normalised)
            .map(|(line, text)| MessageReading {
                original: &line.text,
                budget: self.money.find(&text, default_currency, budget_requested),
                authority: self.authority.find(&text),
                need: self.need.find(&text),
                timeline: self.timeline.find(&text, now),
                signals: self.intent.signals(&line.text, &text),
                text,
            })
            .collect();

        let is_requested = |key: &str| {
            request
                .criteria
                .iter()
                .any(|criterion| criterion.key == key)
        };
        let facts: Vec<ExtractedFact> = [BUDGET, AUTHORITY, NEED, TIMELINE]
            .into_iter()
            .filter(|key| is_requested(key))
            .filter_map(|key| readings.iter().rev().find_map(|reading| reading.fact(key)))
            .collect();

        let objection = readings
            .iter()
            .map(|reading| reading.signals.objection)
            .max_by_key(|objection| objection_rank(*objection))
            .unwrap_or_default();
        let intent = if objection == Objection::Clear {
            Intent::ObjectsToMessages
        } else {
            readings
                .iter()
                .rev()
                .map(|reading| decide_intent(&reading.signals, reading.fact_signals()))
                .find(|intent| *intent != Intent::Unclear)
                .unwrap_or(Intent::Unclear)
        };
        let sentiment = sentiment(
            readings.iter().map(|reading| reading.signals.tone).sum(),
            intent,
            objection,
        );
        let next_step = next_step(request, &facts, intent, objection);

        Analysis {
            intent,
            facts,
            sentiment,
            objection,
            next_step,
            language,
        }
    }
}

fn objection_rank(objection: Objection) -> u8 {
    match objection {
        Objection::None => 0,
        Objection::Doubtful => 1,
        Objection::Clear => 2,
    }
}

/// Computes the tone from word evidence, leaning towards the intent.
fn sentiment(tone: i32, intent: Intent, objection: Objection) -> Sentiment {
    let lean = match intent {
        Intent::Interested | Intent::MeetingRequest => 1,
        Intent::NotInterested => -1,
        Intent::ObjectsToMessages => -2,
        Intent::Question | Intent::AsksForHuman | Intent::Unclear => 0,
    };
    let doubt = if objection == Objection::Doubtful {
        -1
    } else {
        0
    };
    match tone.saturating_add(lean).saturating_add(doubt) {
        score if score > 0 => Sentiment::Positive,
        0 => Sentiment::Neutral,
        _ => Sentiment::Negative,
    }
}

/// Picks the suggested step. The first matching rule wins:
///
/// 1. a clear objection: `Wait`, because the engine handles the opt-out;
/// 2. a request for a person or a doubtful objection: `HandOff`;
/// 3. a fact that fails a hard requirement (no need, no budget): `Disqualify`;
/// 4. a decline: `Reply`, for the engine's closing message;
/// 5. a meeting request: `Schedule`;
/// 6. a criterion still unknown: `AskFor` its key, in framework order;
/// 7. otherwise `Reply`.
fn next_step(
    request: &AnalysisRequest,
    facts: &[ExtractedFact],
    intent: Intent,
    objection: Objection,
) -> NextStep {
    let hard_no = facts.iter().any(|fact| match (&fact.key[..], &fact.value) {
        (NEED, FactValue::Bool(false)) => true,
        (BUDGET, FactValue::Money { amount, .. }) => *amount <= 0.0,
        _ => false,
    });
    let missing = request.criteria.iter().find(|criterion| {
        !request
            .known_facts
            .iter()
            .any(|(key, _)| *key == criterion.key)
            && !facts.iter().any(|fact| fact.key == criterion.key)
    });

    if objection == Objection::Clear {
        NextStep::Wait
    } else if intent == Intent::AsksForHuman || objection == Objection::Doubtful {
        NextStep::HandOff
    } else if hard_no {
        NextStep::Disqualify
    } else if intent == Intent::NotInterested {
        NextStep::Reply
    } else if intent == Intent::MeetingRequest {
        NextStep::Schedule
    } else if let Some(criterion) = missing {
        NextStep::AskFor(criterion.key.clone())
    } else {
        NextStep::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalify_core::Timestamp;
    use kalify_core::analysis::{CriterionBrief, TranscriptLine};
    use kalify_core::contact::ChannelKind;
    use kalify_core::conversation::SendPurpose;
    use kalify_core::qualification::Framework;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn line(direction: Direction, text: &str, time: &str) -> TranscriptLine {
        TranscriptLine {
            direction,
            text: text.to_owned(),
            at: at(time),
        }
    }

    fn bant_criteria(locale: Locale) -> Vec<CriterionBrief> {
        Framework::bant()
            .criteria
            .iter()
            .map(|criterion| CriterionBrief {
                key: criterion.key.clone(),
                description: criterion.description.clone(),
                question: criterion.question.get(locale).to_owned(),
            })
            .collect()
    }

    fn request(messages: &[&str]) -> AnalysisRequest {
        AnalysisRequest {
            locale: Locale::En,
            criteria: bant_criteria(Locale::En),
            known_facts: Vec::new(),
            history: Vec::new(),
            new_messages: messages
                .iter()
                .map(|text| line(Direction::Inbound, text, "2025-03-10T09:00:00Z"))
                .collect(),
        }
    }

    fn analyse(request: &AnalysisRequest) -> Analysis {
        rules().unwrap().analyse(request)
    }

    fn fact<'a>(analysis: &'a Analysis, key: &str) -> Option<&'a ExtractedFact> {
        analysis.facts.iter().find(|fact| fact.key == key)
    }

    fn assert_quotes_are_substrings(request: &AnalysisRequest, analysis: &Analysis) {
        for fact in &analysis.facts {
            assert!(!fact.quote.is_empty(), "empty quote for {}", fact.key);
            assert!(
                request
                    .new_messages
                    .iter()
                    .any(|line| line.text.contains(&fact.quote)),
                "quote {:?} for {} is in no new message",
                fact.quote,
                fact.key
            );
            assert!(
                (0.0..=1.0).contains(&fact.confidence),
                "confidence {} for {}",
                fact.confidence,
                fact.key
            );
        }
    }

    #[test]
    fn patterns_compile() {
        assert!(Rules::new().is_ok());
    }

    #[test]
    fn full_bant_reply() {
        let request = request(&[
            "Bonjour, on a un budget de 20k€, c'est moi qui décide. On a besoin d'un outil pour relancer nos leads, idéalement en septembre.",
        ]);
        let analysis = analyse(&request);
        assert_quotes_are_substrings(&request, &analysis);
        assert_eq!(
            fact(&analysis, "budget").map(|fact| &fact.value),
            Some(&FactValue::Money {
                amount: 20_000.0,
                currency: "EUR".into()
            })
        );
        assert_eq!(
            fact(&analysis, "authority").map(|fact| &fact.value),
            Some(&FactValue::Authority(Authority::DecisionMaker))
        );
        assert_eq!(
            fact(&analysis, "need").map(|fact| &fact.value),
            Some(&FactValue::Bool(true))
        );
        assert_eq!(
            fact(&analysis, "timeline").map(|fact| &fact.value),
            Some(&FactValue::Months(6.0))
        );
        assert_eq!(
            fact(&analysis, "budget").map(|fact| fact.quote.as_str()),
            Some("on a un budget de 20k€")
        );
        assert_eq!(
            fact(&analysis, "authority").map(|fact| fact.quote.as_str()),
            Some("c'est moi qui décide")
        );
        assert_eq!(analysis.intent, Intent::Interested);
        assert_eq!(analysis.language, Some(Locale::Fr));
        assert_eq!(analysis.next_step, NextStep::Reply);
        assert_eq!(analysis.sentiment, Sentiment::Positive);
    }

    #[test]
    fn only_requested_criteria() {
        let mut request = request(&["Budget 20k€ and I decide."]);
        request
            .criteria
            .retain(|criterion| criterion.key == "authority");
        request.criteria.push(CriterionBrief {
            key: "team_size".into(),
            description: "Team size".into(),
            question: "How big is your team?".into(),
        });
        let analysis = analyse(&request);
        assert_eq!(analysis.facts.len(), 1);
        assert_eq!(analysis.facts[0].key, "authority");
        assert_eq!(analysis.next_step, NextStep::AskFor("team_size".into()));
    }

    #[test]
    fn asks_for_first_missing_criterion() {
        let mut request = request(&["Budget is $30,000."]);
        request.known_facts.push((
            "authority".into(),
            FactValue::Authority(Authority::DecisionMaker),
        ));
        let analysis = analyse(&request);
        assert_eq!(analysis.next_step, NextStep::AskFor("need".into()));
    }

    #[test]
    fn latest_message_wins_and_quotes_its_own_text() {
        let mut request = request(&["Budget 10k€ for now.", "Actually we can go up to 15k€."]);
        request.new_messages[1].at = at("2025-03-10T10:00:00Z");
        let analysis = analyse(&request);
        assert_quotes_are_substrings(&request, &analysis);
        let budget = fact(&analysis, "budget").unwrap();
        assert_eq!(
            budget.value,
            FactValue::Money {
                amount: 15_000.0,
                currency: "EUR".into()
            }
        );
        assert!(request.new_messages[1].text.contains(&budget.quote));
    }

    #[test]
    fn earlier_message_fills_other_keys() {
        let request = request(&["I'm the owner, I decide.", "Budget around 10k$"]);
        let analysis = analyse(&request);
        assert!(fact(&analysis, "authority").is_some());
        assert!(fact(&analysis, "budget").is_some());
        assert_quotes_are_substrings(&request, &analysis);
    }

    #[test]
    fn objection_in_any_message_wins() {
        let request = request(&["Please stop texting me.", "Can we have a call?"]);
        let analysis = analyse(&request);
        assert_eq!(analysis.intent, Intent::ObjectsToMessages);
        assert_eq!(analysis.objection, Objection::Clear);
        assert_eq!(analysis.next_step, NextStep::Wait);
        assert_eq!(analysis.sentiment, Sentiment::Negative);
    }

    #[test]
    fn next_steps() {
        let cases: &[(&str, NextStep)] = &[
            ("I want to talk to a real person", NextStep::HandOff),
            ("How did you get my number?", NextStep::HandOff),
            ("We don't need it.", NextStep::Disqualify),
            ("pas de budget", NextStep::Disqualify),
            ("Non merci.", NextStep::Reply),
            ("Can we have a call tomorrow?", NextStep::Schedule),
            ("How much does it cost?", NextStep::AskFor("budget".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(&analyse(&request(&[text])).next_step, expected, "{text:?}");
        }
    }

    #[test]
    fn reference_time_is_latest_message() {
        let mut request = request(&["On démarre en septembre."]);
        request.new_messages.insert(
            0,
            line(Direction::Inbound, "Bonjour", "2025-08-01T09:00:00Z"),
        );
        request.new_messages[1].at = at("2025-07-15T09:00:00Z");
        let analysis = analyse(&request);
        assert_eq!(
            fact(&analysis, "timeline").map(|fact| &fact.value),
            Some(&FactValue::Months(1.0))
        );
    }

    #[test]
    fn budget_question_in_history_reads_bare_amount() {
        let mut request = request(&["10 000 je pense"]);
        assert!(fact(&analyse(&request), "budget").is_none());
        request.history.push(line(
            Direction::Outbound,
            "Quel budget avez-vous prévu pour ce projet ?",
            "2025-03-09T09:00:00Z",
        ));
        let analysis = analyse(&request);
        assert_eq!(
            fact(&analysis, "budget").map(|fact| &fact.value),
            Some(&FactValue::Money {
                amount: 10_000.0,
                currency: "EUR".into()
            })
        );
    }

    #[test]
    fn default_currency_follows_language() {
        let analysis = analyse(&request(&["Our budget is around 10K."]));
        assert_eq!(
            fact(&analysis, "budget").map(|fact| &fact.value),
            Some(&FactValue::Money {
                amount: 10_000.0,
                currency: "USD".into()
            })
        );
        let mut french = request(&["Budget 8000 pour le projet"]);
        french.locale = Locale::Fr;
        let analysis = analyse(&french);
        assert_eq!(
            fact(&analysis, "budget").map(|fact| &fact.value),
            Some(&FactValue::Money {
                amount: 8_000.0,
                currency: "EUR".into()
            })
        );
    }

    #[test]
    fn no_new_messages() {
        let analysis = analyse(&request(&[]));
        assert_eq!(analysis, Analysis::empty());
    }

    #[test]
    fn odd_inputs_never_panic() {
        let long_text = format!(
            "{} budget 20k€ {}",
            "é👍 ".repeat(20_000),
            "x".repeat(40_000)
        );
        let mixed = "日本語 العربية עברית\u{202E}stop\u{202C} z\u{0301}\u{0301}\u{0301} 🏳️‍🌈 \u{FEFF}€€€ 1,5,5 ,,, ... $ £ 0 00 000 0000 Q5 T0 in 99999999999 months";
        let mut inputs: Vec<String> = vec![
            String::new(),
            " ".into(),
            "\n\n\n".into(),
            "👍".into(),
            "🙂🙂🙂🙂".into(),
            "?".into(),
            "'".into(),
            "d'".into(),
            "k€".into(),
            "$".into(),
            "1".into(),
            "٣٠٠٠ €".into(),
            "１５０００€".into(),
            "ﬀﬁﬂ ŒUVRE ǅ İstanbul ß".into(),
            mixed.into(),
            long_text,
            "9".repeat(5_000),
            "1 ".repeat(10_000),
            "in ".repeat(10_000),
            "budget ".repeat(10_000),
        ];
        // A fixed pseudo-random stream of characters from several scripts.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200 {
            let mut text = String::new();
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pool = [
                    'a', 'é', '€', '$', '1', '0', ' ', ',', '.', 'k', 'M', '’', '\u{301}', '🙂',
                    '?', '\n', 'ñ', '-', 'Q', 'T',
                ];
                text.push(pool[(seed % pool.len() as u64) as usize]);
            }
            inputs.push(text);
        }
        for input in &inputs {
            let request = request(&[input.as_str()]);
            let analysis = analyse(&request);
            assert_quotes_are_substrings(&request, &analysis);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_gives_grounded_facts(text in "\\PC{0,300}", words in proptest::collection::vec("(budget|20k€|\\$5,000|pas de|besoin|je dois valider avec mon|boss|ASAP|en septembre|Q3|stop|not|n'|,|\\.|\\?| |é|\u{301}|🙂|06 12 34 56 78)", 0..30)) {
            let mixed = format!("{text}{}", words.concat());
            for input in [text.as_str(), mixed.as_str()] {
                let request = request(&[input]);
                let analysis = analyse(&request);
                assert_quotes_are_substrings(&request, &analysis);
            }
        }
    }

    #[test]
    fn hundred_kilobytes_is_fast_enough() {
        let text = "We need a better CRM, budget 20k€, call me at 06 12 34 56 78. ".repeat(1_700);
        assert!(text.len() > 100_000);
        let started = std::time::Instant::now();
        let analysis = analyse(&request(&[text.as_str()]));
        assert!(fact(&analysis, "budget").is_some());
        // Generous bound for a debug build on a loaded machine.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn model_port() {
        let model = RulesModel::new();
        assert_eq!(model.name(), "rules");
        let analysis = model
            .analyse(&request(&["Not interested, thanks."]))
            .await
            .unwrap();
        assert_eq!(analysis.intent, Intent::NotInterested);

        let reply_request = ReplyRequest {
            locale: Locale::Fr,
            channel: ChannelKind::Sms,
            purpose: SendPurpose::Reply,
            persona: "Léa de Acme".into(),
            goal: "réserver une démo".into(),
            first_name: Some("Marc".into()),
            missing: bant_criteria(Locale::Fr),
            history: Vec::new(),
            intent: Intent::Question,
            disclose_automation: true,
            allow_links: false,
            max_chars: 320,
        };
        let draft = model.write_reply(&reply_request).await.unwrap();
        assert_eq!(draft.text, template_reply(&reply_request));
    }
}
