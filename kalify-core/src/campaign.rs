//! Campaigns: ordered steps with templates, rendered by minijinja.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::ChannelKind;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CampaignId, OrgId};
use crate::prospect::{Locale, Prospect};
use crate::qualification::Localized;

/// Variables a template may use. `custom.NAME` reads a custom field.
pub const TEMPLATE_VARIABLES: &[&str] = &["first_name", "last_name", "company", "job_title", "sender", "custom"];

/// One message of a campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Hours to wait after the previous step (or after enrollment for the first).
    pub delay_hours: u32,
    /// The template in English and French (minijinja syntax).
    pub template: Localized,
}

/// Whether a campaign is sending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Sending.
    #[default]
    Active,
    /// Paused: due steps wait until it resumes.
    Paused,
}

/// A campaign: who speaks, on which channels, and the messages it sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// The id.
    pub id: CampaignId,
    /// The org.
    pub org_id: OrgId,
    /// A name for people.
    pub name: String,
    /// The sender identity shown to prospects, such as "Léa from Acme".
    pub persona: String,
    /// What the campaign wants, such as "book a demo".
    pub goal: String,
    /// Channels in order of preference; the first the prospect can be reached on is used.
    pub channels: Vec<ChannelKind>,
    /// The first message and the follow-ups.
    pub steps: Vec<Step>,
    /// Whether AI replies may contain links.
    pub allow_links: bool,
    /// Active or paused.
    pub status: CampaignStatus,
    /// Creation time.
    pub created_at: Timestamp,
}

impl Campaign {
    /// Checks the campaign: a name, at least one channel and one step, and
    /// templates that parse and use only known variables.
    ///
    /// # Errors
    /// `ConfigInvalid` naming the step and locale at fault.
    pub fn validate(&self) -> Result<()> {
        let config = |message: String| Error::new(ErrorKind::ConfigInvalid, message).with_context("campaign", &self.name);
        if self.name.trim().is_empty() {
            return Err(config("the campaign name is empty".into()));
        }
        if self.channels.is_empty() {
            return Err(config("the campaign has no channel; list at least one of sms, email, messenger".into()));
        }
        if self.steps.is_empty() {
            return Err(config("the campaign has no step; add the first message".into()));
        }
        let env = environment();
        for (index, step) in self.steps.iter().enumerate() {
            for locale in [Locale::En, Locale::Fr] {
                let source = step.template.get(locale);
                if source.trim().is_empty() {
                    return Err(config(format!("step {index} has an empty {locale} template")));
                }
                let template = env.template_from_str(source).map_err(|error| {
                    config(format!("step {index} {locale} template does not parse: {error}"))
                })?;
                let unknown: BTreeSet<String> = template
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|name| !TEMPLATE_VARIABLES.contains(&name.as_str()))
                    .collect();
                if !unknown.is_empty() {
                    return Err(config(format!(
                        "step {index} {locale} template uses unknown variables {unknown:?}; available: {}",
                        TEMPLATE_VARIABLES.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// The number of follow-ups after the first message.
    pub fn max_follow_ups(&self) -> u32 {
        u32::try_from(self.steps.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Renders step `index` for `prospect` in `locale`.
    ///
    /// # Errors
    /// `InvalidInput` when the step does not exist or the template reads a
    /// custom field the prospect lacks.
    pub fn render(&self, index: usize, prospect: &Prospect, locale: Locale) -> Result<String> {
        let step = self.steps.get(index).ok_or_else(|| {
            Error::invalid_input(format!("campaign {:?} has no step {index}", self.name))
        })?;
        let custom: std::collections::BTreeMap<&str, String> = prospect
            .custom_fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_string()))
            .collect();
        let context = minijinja::context! {
            first_name => prospect.first_name.clone().unwrap_or_default(),
            last_name => prospect.last_name.clone().unwrap_or_default(),
            company => prospect.company.clone().unwrap_or_default(),
            job_title => prospect.job_title.clone().unwrap_or_default(),
            sender => self.persona.clone(),
            custom => custom,
        };
        let env = environment();
        env.render_str(step.template.get(locale), context)
            .map(|text| text.trim().to_owned())
            .map_err(|error| {
                Error::invalid_input(format!("failed to render step {index} of campaign {:?}: {error}", self.name))
                    .with_context("prospect_id", prospect.id)
            })
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(template: &str) -> Campaign {
        Campaign {
            id: CampaignId::new(),
            org_id: OrgId::new(),
            name: "demo".into(),
            persona: "Léa from Acme".into(),
            goal: "book a demo".into(),
            channels: vec![ChannelKind::Sms],
            steps: vec![Step { delay_hours: 0, template: Localized::new(template, template) }],
            allow_links: false,
            status: CampaignStatus::Active,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn unknown_variable_rejected_at_load() {
        let error = campaign("Hi {{ frist_name }}").validate().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(error.to_string().contains("frist_name"), "{error}");
    }

    #[test]
    fn renders_names_and_custom_fields() {
        let mut prospect = Prospect::new(OrgId::new(), chrono::Utc::now());
        prospect.first_name = Some("Camille".into());
        prospect.custom_fields.insert("plan".into(), crate::prospect::CustomValue::Text("pro".into()));
        let campaign = campaign("Hi {{ first_name or 'there' }}, {{ sender }} here ({{ custom.plan }})");
        campaign.validate().unwrap();
        assert_eq!(campaign.render(0, &prospect, Locale::En).unwrap(), "Hi Camille, Léa from Acme here (pro)");
    }

    #[test]
    fn missing_custom_field_is_an_error() {
        let prospect = Prospect::new(OrgId::new(), chrono::Utc::now());
        let campaign = campaign("Plan: {{ custom.plan }}");
        let error = campaign.render(0, &prospect, Locale::En).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}
