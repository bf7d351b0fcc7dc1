//! One conversation qualified by an OpenAI-compatible model.
//!
//! It enrolls one prospect in an in-memory store, prints the first message
//! as the console channel sends it, feeds one reply to the engine, and
//! prints the extracted facts, the score and the token usage; the console
//! channel prints the reply as it sends it.
//! The offline `rules` model stands by as the fallback when the hosted
//! model fails. Outside the French SMS sending hours (Monday to Saturday,
//! 08:00 to 20:00 in Paris) the compliance gate defers both messages, so the
//! console prints none. Without `OPENAI_API_KEY` it prints what to set and
//! sends nothing.
//!
//! ```text
//! OPENAI_API_KEY=sk-... cargo run --example openai --features openai -- ["reply text"]
//!
//!   OPENAI_API_KEY        the API key (required)
//!   OPENAI_BASE_URL       another server, such as http://127.0.0.1:11434/v1 for Ollama
//!   KALIFY_OPENAI_MODEL   the model name (default gpt-4o-mini)
//!   OPENAI_ORG_ID, OPENAI_PROJECT_ID   the organisation and project headers
//! ```
//!
//! The reply and the campaign texts are sent to the configured server.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use kalify::ai::RulesModel;
use kalify::ai::openai::{OpenAiModelBuilder, UsageScope, with_usage_scope};
use kalify::campaign::{Campaign, CampaignSettings, CampaignStatus, Step};
use kalify::channels::ConsoleChannel;
use kalify::contact::{ChannelKind, ContactPoint, PhoneNumber, Region};
use kalify::engine::Engine;
use kalify::ports::{InboundMessage, Store};
use kalify::prospect::{Consent, ConsentBasis, Prospect};
use kalify::qualification::Localized;
use kalify::store::MemoryStore;
use kalify::{CampaignId, OrgId};

const DEFAULT_REPLY: &str = "Hi! We lose half of our inbound leads. I run sales and decide on tools; we have about 15k€ and would like to start next month.";

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        println!("OPENAI_API_KEY is not set, so nothing was sent.");
        println!(
            "Set OPENAI_API_KEY, and optionally OPENAI_BASE_URL and KALIFY_OPENAI_MODEL, then run:"
        );
        println!("  cargo run --example openai --features openai -- \"your reply text\"");
        return ExitCode::SUCCESS;
    }
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> kalify::Result<()> {
    let reply = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_REPLY.to_owned());
    let model = Arc::new(OpenAiModelBuilder::from_env().build()?);
    println!("model: {model}");

    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(model.clone())
        .with_fallback_model(Arc::new(RulesModel::new()))
        .with_channel(Arc::new(ConsoleChannel::new(ChannelKind::Sms)))
        .build()?;

    // One prospect with a recorded consent, enrolled in a one-step campaign.
    let org = OrgId::new();
    let now = Utc::now();
    let mut prospect = Prospect::new(org, now);
    prospect.first_name = Some("Camille".to_owned());
    prospect.phone = Some(PhoneNumber::parse("+33 6 12 34 56 78", Region::FR)?);
    prospect.consents.push(Consent {
        channel: ChannelKind::Sms,
        basis: ConsentBasis::Consent,
        collected_at: now,
        source: "example".to_owned(),
        wording_version: None,
        withdrawn_at: None,
    });
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await?;
    let text = "Hello {{ first_name }}, Léa from Acme here. Do you follow up on every inbound lead? STOP to opt out.";
    let campaign = Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: "example".to_owned(),
        persona: "Léa from Acme".to_owned(),
        goal: "book a demo".to_owned(),
        channels: vec![ChannelKind::Sms],
        steps: vec![Step::new(0, Localized::new(text, text))],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: now,
        settings: CampaignSettings::default(),
    };
    store.put_campaign(&campaign).await?;
    let enrollment = engine.enroll(org, prospect.id, campaign.id).await?;
    engine.run_due().await?;

    // The prospect replies, and usage is charged to this org and conversation.
    println!("prospect: {reply}");
    let inbound = InboundMessage {
        channel: ChannelKind::Sms,
        provider: "example".to_owned(),
        provider_message_id: "example-1".to_owned(),
        from: ContactPoint::Phone(
            prospect
                .phone
                .clone()
                .unwrap_or_else(|| unreachable!("set above")),
        ),
        text: reply,
        at: Utc::now(),
    };
    let scope = UsageScope {
        org: Some(org),
        conversation: Some(enrollment.conversation_id),
    };
    let report = with_usage_scope(scope, engine.handle_inbound(org, inbound)).await?;

    let conversation = store.get_conversation(org, report.conversation_id).await?;
    println!("state: {}", report.state);
    for fact in &conversation.facts {
        println!(
            "fact {}: {} (\"{}\", confidence {:.2})",
            fact.key, fact.value, fact.evidence.quote, fact.evidence.confidence
        );
    }
    if let Some(score) = &conversation.score {
        println!("score {}: {}", score.value, score.explain());
    }
    let usage = model.ledger().org(org);
    println!(
        "usage: {} calls, {} prompt and {} completion tokens",
        usage.calls, usage.prompt_tokens, usage.completion_tokens
    );
    Ok(())
}
