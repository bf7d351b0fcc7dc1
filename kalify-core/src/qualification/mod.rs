//! Qualification: facts, frameworks and scores. Everything here is pure.

mod columns;
mod fact;
mod framework;
mod score;

pub use columns::{ColumnBand, ColumnRule, ColumnScorer, NumberTest};
pub use fact::{Authority, Evidence, Fact, FactValue, merge_facts};
pub use framework::{
    Band, Condition, Criterion, FixedReplies, Framework, Localized, ReplyTemplates, Requirement,
};
pub use score::{CriterionScore, Score, score};
