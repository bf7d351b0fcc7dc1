//! Criterion micro-benchmarks of the pieces every turn runs: one state
//! transition, the score of one prospect, opt-out keyword normalisation,
//! campaign template rendering and the rules model's extraction of one reply.
//!
//! ```sh
//! cargo bench --bench micro
//! ```

#![allow(
    missing_docs,
    reason = "criterion_group! defines an undocumented public function"
)]

use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kalify::OrgId;
use kalify::ai::RulesModel;
use kalify::analysis::{AnalysisRequest, TranscriptLine};
use kalify::campaign::{Campaign, CampaignSettings, CampaignStatus, Step};
use kalify::contact::ChannelKind;
use kalify::conversation::{
    ConversationState, Direction, Event, Policy, ReplyOutcome, ScoreBand, transition,
};
use kalify::{CampaignId, MessageId};

use kalify::keywords;
use kalify::ports::LanguageModel;
use kalify::prospect::{Locale, Prospect};
use kalify::qualification::{Authority, Evidence, Fact, FactValue, Framework, Localized, score};

fn state_transition(c: &mut Criterion) {
    let policy = Policy::default();
    let event = Event::ReplyAnalysed(ReplyOutcome {
        band: ScoreBand::Qualifying,
        disqualified: false,
        wants_human: false,
        not_interested: false,
        negative: false,
    });
    c.bench_function("transition_engaged_reply", |b| {
        b.iter(|| {
            transition(
                black_box(ConversationState::Engaged),
                black_box(event),
                &policy,
            )
        })
    });
}

fn fact(key: &str, value: FactValue) -> Fact {
    Fact {
        key: key.to_owned(),
        value,
        evidence: Evidence {
            message_id: MessageId::new(),
            quote: "quote".to_owned(),
            confidence: 0.9,
        },
        extracted_at: Utc::now(),
    }
}

fn score_one_prospect(c: &mut Criterion) {
    let framework = Framework::bant();
    let facts = vec![
        fact(
            "budget",
            FactValue::Money {
                amount: 20_000.0,
                currency: "EUR".to_owned(),
            },
        ),
        fact("authority", FactValue::Authority(Authority::NeedsApproval)),
        fact("need", FactValue::Bool(true)),
        fact("timeline", FactValue::Months(4.0)),
    ];
    c.bench_function("score_bant_four_facts", |b| {
        b.iter(|| score(&framework, black_box(&facts)))
    });
}

fn opt_out_normalisation(c: &mut Criterion) {
    c.bench_function("opt_out_classify_keyword", |b| {
        b.iter(|| keywords::classify(black_box(" Désinscrire ! ")))
    });
    c.bench_function("opt_out_classify_sentence", |b| {
        b.iter(|| keywords::classify(black_box("Merci de ne plus me contacter.")))
    });
}

fn template_rendering(c: &mut Criterion) {
    let template = "Bonjour {{ first_name or 'à vous' }}, {{ sender }} ici. Votre équipe chez {{ company }} \
                    cherche-t-elle à qualifier ses leads plus vite ?";
    let campaign = Campaign {
        id: CampaignId::new(),
        org_id: OrgId::new(),
        name: "bench".to_owned(),
        persona: "Léa de Acme".to_owned(),
        goal: "réserver une démo".to_owned(),
        channels: vec![ChannelKind::Sms],
        steps: vec![Step::new(0, Localized::new(template, template))],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: Utc::now(),
        settings: CampaignSettings::default(),
    };
    let mut prospect = Prospect::new(campaign.org_id, Utc::now());
    prospect.first_name = Some("Camille".to_owned());
    prospect.company = Some("Boulangeries Martin".to_owned());
    c.bench_function("campaign_render_step", |b| {
        b.iter(|| campaign.render(0, black_box(&prospect), Locale::Fr))
    });
}

fn rules_extraction(c: &mut Criterion) {
    let model = RulesModel::new();
    let framework = Framework::bant();
    let request = AnalysisRequest {
        locale: Locale::En,
        criteria: framework
            .criteria
            .iter()
            .map(|criterion| kalify::analysis::CriterionBrief {
                key: criterion.key.clone(),
                description: criterion.description.clone(),
                question: criterion.question.en.clone(),
            })
            .collect(),
        known_facts: Vec::new(),
        history: Vec::new(),
        new_messages: vec![TranscriptLine {
            direction: Direction::Inbound,
            text: "I'm the CTO, budget is around 25k EUR and we want to start next quarter."
                .to_owned(),
            at: Utc::now(),
        }],
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("failed to start the tokio runtime: {error}");
            return;
        }
    };
    c.bench_function("rules_analyse_mixed_reply", |b| {
        b.iter(|| runtime.block_on(model.analyse(black_box(&request))))
    });
}

criterion_group!(
    benches,
    state_transition,
    score_one_prospect,
    opt_out_normalisation,
    template_rendering,
    rules_extraction
);
criterion_main!(benches);
