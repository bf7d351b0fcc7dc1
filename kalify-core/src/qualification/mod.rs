//! Qualification: facts, frameworks and scores. Everything here is pure.

mod fact;
mod framework;
mod score;

pub use fact::{Authority, Evidence, Fact, FactValue, merge_facts};
pub use framework::{Band, Condition, Criterion, Framework, Localized, Requirement};
pub use score::{CriterionScore, Score, score};
