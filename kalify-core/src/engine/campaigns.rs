//! Enrollment by filter, and pausing and resuming campaigns.

use serde::{Deserialize, Serialize};

use crate::campaign::CampaignStatus;
use crate::conversation::ConversationState;
use crate::engine::Engine;
use crate::error::{ErrorKind, Result};
use crate::id::{CampaignId, OrgId, ProspectId};
use crate::ports::ListOptions;
use crate::prospect::{CustomValue, Prospect};

/// A test on one custom field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum Predicate {
    /// The field is set.
    Exists,
    /// The field equals the value.
    Equals(CustomValue),
    /// The field is unset or differs from the value.
    NotEquals(CustomValue),
    /// A number field at or above the value.
    AtLeast(f64),
    /// A number field at or below the value.
    AtMost(f64),
    /// A text field containing the value, ignoring case.
    Contains(String),
}

/// A condition on a named custom field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldPredicate {
    /// The custom field name.
    pub field: String,
    /// The test.
    pub predicate: Predicate,
}

/// Which prospects an enrollment takes. Every condition set must hold; an
/// empty filter takes everyone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProspectFilter {
    /// Prospects in one of these states.
    pub states: Vec<ConversationState>,
    /// A score at or above this (prospects without a score do not match).
    pub min_score: Option<u8>,
    /// A score at or below this (prospects without a score match).
    pub max_score: Option<u8>,
    /// Prospects from one of these sources.
    pub sources: Vec<String>,
    /// Prospects with every one of these tags.
    pub tags: Vec<String>,
    /// Custom-field conditions.
    pub custom: Vec<FieldPredicate>,
}

impl ProspectFilter {
    /// Whether `prospect` passes.
    pub fn matches(&self, prospect: &Prospect) -> bool {
        let score = prospect.score.as_ref().map(|score| score.value);
        (self.states.is_empty() || self.states.contains(&prospect.status))
            && self
                .min_score
                .is_none_or(|min| score.is_some_and(|value| value >= min))
            && self
                .max_score
                .is_none_or(|max| score.is_none_or(|value| value <= max))
            && (self.sources.is_empty()
                || prospect
                    .source
                    .as_ref()
                    .is_some_and(|source| self.sources.iter().any(|wanted| wanted == source)))
            && self.tags.iter().all(|tag| prospect.tags.contains(tag))
            && self
                .custom
                .iter()
                .all(|condition| condition.matches(prospect))
    }
}

impl FieldPredicate {
    fn matches(&self, prospect: &Prospect) -> bool {
        let value = prospect.custom_fields.get(&self.field);
        match (&self.predicate, value) {
            (Predicate::Exists, value) => value.is_some(),
            (Predicate::Equals(expected), Some(value)) => value == expected,
            (Predicate::NotEquals(expected), value) => value != Some(expected),
            (Predicate::AtLeast(min), Some(CustomValue::Number(number))) => number >= min,
            (Predicate::AtMost(max), Some(CustomValue::Number(number))) => number <= max,
            (Predicate::Contains(needle), Some(CustomValue::Text(text))) => {
                text.to_lowercase().contains(&needle.to_lowercase())
            }
            _ => false,
        }
    }
}

/// What [`Engine::enroll_matching`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrollReport {
    /// Prospects the filter matched.
    pub matched: usize,
    /// Newly enrolled.
    pub enrolled: usize,
    /// Already in the campaign; nothing was written.
    pub already_enrolled: usize,
    /// Matched but not enrolled, with the reason (no usable contact point,
    /// opted out, a missing custom field).
    pub skipped: Vec<(ProspectId, String)>,
}

impl Engine {
    /// Enrolls every prospect of `org` that `filter` matches. Enrolling the
    /// same prospect twice does nothing, so the call can be repeated.
    ///
    /// # Errors
    /// `NotFound` for an unknown campaign, and store errors. Per-prospect
    /// refusals are reported in [`EnrollReport::skipped`].
    pub async fn enroll_matching(
        &self,
        org: OrgId,
        campaign: CampaignId,
        filter: &ProspectFilter,
    ) -> Result<EnrollReport> {
        let store = &self.inner.store;
        store.get_campaign(org, campaign).await?;
        let mut report = EnrollReport::default();
        let mut after = None;
        loop {
            let page = store
                .list_prospects(org, ListOptions { after, limit: 500 })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for prospect in page.iter().filter(|prospect| filter.matches(prospect)) {
                report.matched += 1;
                match self.enroll(org, prospect.id, campaign).await {
                    Ok(enrollment) if enrollment.created => report.enrolled += 1,
                    Ok(_) => report.already_enrolled += 1,
                    Err(error)
                        if matches!(
                            error.kind(),
                            ErrorKind::InvalidInput
                                | ErrorKind::RecipientOptedOut
                                | ErrorKind::PermissionDenied
                        ) =>
                    {
                        report
                            .skipped
                            .push((prospect.id, error.message().to_owned()));
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(report)
    }

    /// Pauses a campaign: due steps wait until it resumes.
    ///
    /// # Errors
    /// `NotFound` for an unknown campaign.
    pub async fn pause_campaign(&self, org: OrgId, campaign: CampaignId) -> Result<()> {
        self.set_campaign_status(org, campaign, CampaignStatus::Paused)
            .await
    }

    /// Resumes a paused campaign.
    ///
    /// # Errors
    /// `NotFound` for an unknown campaign.
    pub async fn resume_campaign(&self, org: OrgId, campaign: CampaignId) -> Result<()> {
        self.set_campaign_status(org, campaign, CampaignStatus::Active)
            .await
    }

    async fn set_campaign_status(
        &self,
        org: OrgId,
        campaign: CampaignId,
        status: CampaignStatus,
    ) -> Result<()> {
        let store = &self.inner.store;
        let mut stored = store.get_campaign(org, campaign).await?;
        stored.status = status;
        store.put_campaign(&stored).await
    }
}

impl Engine {
    /// Simulates a campaign over the prospects `filter` matches, as if
    /// nobody replied: sends per day and channel, SMS segments and estimated
    /// cost, and what the gate would defer or block. Nothing is sent or written.
    ///
    /// # Errors
    /// `NotFound` for an unknown campaign, and store errors.
    pub async fn simulate(
        &self,
        org: OrgId,
        campaign: CampaignId,
        filter: &ProspectFilter,
        options: &crate::simulation::SimulationOptions,
    ) -> Result<crate::simulation::SimulationReport> {
        let store = &self.inner.store;
        let campaign = store.get_campaign(org, campaign).await?;
        let mut prospects = Vec::new();
        let mut suppressed = std::collections::HashSet::new();
        let mut after = None;
        loop {
            let page = store
                .list_prospects(org, ListOptions { after, limit: 500 })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for prospect in page.into_iter().filter(|prospect| filter.matches(prospect)) {
                for contact in prospect.contact_points() {
                    if store.is_suppressed(org, &contact).await? {
                        suppressed.insert(contact);
                    }
                }
                prospects.push(prospect);
            }
        }
        Ok(crate::simulation::simulate(
            &campaign,
            &prospects,
            &suppressed,
            options,
        ))
    }
}
