//! Language models of kalify.
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `rules` | `RulesModel`, the offline English and French extractor | yes |
//! | `openai` | [`openai::OpenAiModel`], chat completions of OpenAI and compatible servers | no |
//!
//! [`eval`] measures any model on a labelled set of conversations.
//!
//! `RulesModel` implements [`kalify_core::ports::LanguageModel`] without
//! any network access. It reads budget, authority, need and timeline facts,
//! the intent, objections to being messaged, the tone and the language of a
//! prospect's replies with fixed rules, quoting each fact from the reply, and
//! writes replies from [`kalify_core::reply::template_reply`]. It suits tests,
//! demos and deployments that must not send replies to a third party, and
//! serves as a fallback when a hosted model fails.
//!
//! What the rules understand, in short:
//!
//! - budget: "20k€", "15 000 euros", "$50,000", "1,5 M€", "between 10 and
//!   20k" (the lower bound) and "pas de budget" (0). A number needs a
//!   currency mark, a budget word nearby or a `k`/`M` suffix, so phone
//!   numbers, years and "50 employees" are not amounts;
//! - authority: "c'est moi qui décide" (decision maker), "I need to check
//!   with my boss" (needs approval), "I'm not the right person" (none);
//! - need: a stated problem, search or interest, or "we don't need it";
//! - timeline: "ASAP" (0), "d'ici 3 mois", "next quarter", "en septembre",
//!   "Q3", "cet été", in months from the latest new message;
//! - intent and objection: declines, meeting requests, questions, requests
//!   for a person, and "stop texting me" (a clear objection) or "how did you
//!   get my number?" (a doubtful one).

#[cfg(feature = "rules")]
pub mod rules;
#[cfg(feature = "rules")]
pub use rules::RulesModel;

pub mod eval;
#[cfg(feature = "openai")]
pub mod openai;
#[cfg(feature = "openai")]
pub use openai::{OpenAiModel, OpenAiModelBuilder};
