//! Campaigns: ordered steps with templates, rendered by minijinja.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::ChannelKind;
use crate::error::{Error, ErrorKind, Result};
use crate::gate::SendingWindow;
use crate::id::{CampaignId, OrgId};
use crate::prospect::{Locale, Prospect};
use crate::qualification::Localized;

/// Variables a template may use. `custom.NAME` reads a custom field.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "first_name",
    "last_name",
    "company",
    "job_title",
    "sender",
    "custom",
];

/// One message of a campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Hours to wait after the previous step (or after enrollment for the
    /// first). Ignored when `business_days` is set.
    #[serde(default)]
    pub delay_hours: u32,
    /// Business days to wait instead (Monday to Friday, skipping French
    /// public holidays for French prospects), at the same local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_days: Option<u32>,
    /// The channel of this step; `None` uses the campaign's channel order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelKind>,
    /// The template in English and French (minijinja syntax).
    pub template: Localized,
}

impl Step {
    /// A step sent `delay_hours` after the previous one, on the campaign's channels.
    pub fn new(delay_hours: u32, template: Localized) -> Self {
        Step {
            delay_hours,
            business_days: None,
            channel: None,
            template,
        }
    }

    /// Waits `days` business days instead of hours.
    pub fn after_business_days(mut self, days: u32) -> Self {
        self.business_days = Some(days);
        self
    }

    /// Sends this step on `channel`, falling back to the campaign's order
    /// when the prospect cannot be reached on it.
    pub fn on_channel(mut self, channel: ChannelKind) -> Self {
        self.channel = Some(channel);
        self
    }
}

/// What ends a prospect's follow-up sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCondition {
    /// Any reply. Without it, a reply restarts the sequence one delay later.
    Reply,
    /// An opt-out or objection (always applies).
    OptOut,
    /// The prospect qualified (always applies).
    Qualified,
    /// A member took over (always applies).
    Handoff,
    /// An e-mail bounce.
    Bounce,
}

/// Campaign settings beyond its messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CampaignSettings {
    /// What ends the follow-up sequence. Opt-outs, qualification and
    /// handoffs end it whatever this list contains.
    pub stop_on: Vec<StopCondition>,
    /// A sending window in the prospect's local time, on top of the
    /// jurisdiction's sending hours.
    pub window: Option<SendingWindow>,
    /// Custom fields the templates read; a prospect without them is not enrolled.
    pub required_custom_fields: Vec<String>,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            stop_on: vec![
                StopCondition::OptOut,
                StopCondition::Qualified,
                StopCondition::Handoff,
                StopCondition::Bounce,
            ],
            window: None,
            required_custom_fields: Vec::new(),
        }
    }
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
    /// Stop conditions, sending window and required custom fields.
    #[serde(default)]
    pub settings: CampaignSettings,
}

/// A campaign as written in a TOML or JSON file.
///
/// ```toml
/// name = "Spring follow-up"
/// persona = "Léa (Acme)"
/// goal = "book a demo"
/// channels = ["sms", "email"]
/// stop_on = ["reply", "opt_out", "qualified", "handoff", "bounce"]
/// required_custom_fields = ["plan"]
///
/// [window]
/// days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
/// start = "09:00:00"
/// end = "18:00:00"
///
/// [[steps]]
/// delay_hours = 0
/// template = { en = "Hi {{ first_name }}, ...", fr = "Bonjour {{ first_name }}, ..." }
///
/// [[steps]]
/// business_days = 2
/// channel = "email"
/// template = { en = "...", fr = "..." }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDefinition {
    /// A name for people.
    pub name: String,
    /// The sender identity shown to prospects.
    pub persona: String,
    /// What the campaign wants.
    pub goal: String,
    /// Channels in order of preference.
    pub channels: Vec<ChannelKind>,
    /// The first message and the follow-ups.
    pub steps: Vec<Step>,
    /// The maximum number of follow-ups after the first message; when set,
    /// it must equal the number of steps after the first.
    #[serde(default)]
    pub max_follow_ups: Option<u32>,
    /// Whether AI replies may contain links.
    #[serde(default)]
    pub allow_links: bool,
    /// What ends the follow-up sequence.
    #[serde(default = "default_stop_on")]
    pub stop_on: Vec<StopCondition>,
    /// A sending window in the prospect's local time.
    #[serde(default)]
    pub window: Option<SendingWindow>,
    /// Custom fields the templates read.
    #[serde(default)]
    pub required_custom_fields: Vec<String>,
}

fn default_stop_on() -> Vec<StopCondition> {
    CampaignSettings::default().stop_on
}

impl Campaign {
    /// Builds a campaign from a definition and checks it.
    ///
    /// # Errors
    /// `ConfigInvalid` as [`Campaign::validate`] describes, or when
    /// `max_follow_ups` disagrees with the steps.
    pub fn from_definition(
        org_id: OrgId,
        definition: CampaignDefinition,
        now: Timestamp,
    ) -> Result<Campaign> {
        let follow_ups = definition.steps.len().saturating_sub(1);
        if let Some(max) = definition.max_follow_ups
            && usize::try_from(max).ok() != Some(follow_ups)
        {
            return Err(Error::new(
                ErrorKind::ConfigInvalid,
                format!("max_follow_ups is {max} but the campaign has {follow_ups} steps after the first; make them agree"),
            )
            .with_context("campaign", &definition.name));
        }
        let campaign = Campaign {
            id: CampaignId::new(),
            org_id,
            name: definition.name,
            persona: definition.persona,
            goal: definition.goal,
            channels: definition.channels,
            steps: definition.steps,
            allow_links: definition.allow_links,
            status: CampaignStatus::Active,
            created_at: now,
            settings: CampaignSettings {
                stop_on: definition.stop_on,
                window: definition.window,
                required_custom_fields: definition.required_custom_fields,
            },
        };
        campaign.validate()?;
        Ok(campaign)
    }

    /// Reads a campaign definition from TOML text.
    ///
    /// # Errors
    /// `ConfigInvalid` with the parser's line and column, or any error of
    /// [`Campaign::from_definition`].
    pub fn from_toml_str(org_id: OrgId, text: &str, now: Timestamp) -> Result<Campaign> {
        let definition: CampaignDefinition = toml::from_str(text).map_err(|error| {
            let location = error.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before
                    .rsplit('\n')
                    .next()
                    .map_or(0, |last| last.chars().count())
                    + 1;
                format!(" at line {line} column {column}")
            });
            Error::new(
                ErrorKind::ConfigInvalid,
                format!(
                    "invalid campaign definition{}: {}",
                    location.unwrap_or_default(),
                    error.message().trim()
                ),
            )
        })?;
        Campaign::from_definition(org_id, definition, now)
    }

    /// Reads a campaign definition from JSON text.
    ///
    /// # Errors
    /// `ConfigInvalid` with the parser's line and column, or any error of
    /// [`Campaign::from_definition`].
    pub fn from_json_str(org_id: OrgId, text: &str, now: Timestamp) -> Result<Campaign> {
        let definition: CampaignDefinition = serde_json::from_str(text).map_err(|error| {
            Error::new(
                ErrorKind::ConfigInvalid,
                format!("invalid campaign definition: {error}"),
            )
        })?;
        Campaign::from_definition(org_id, definition, now)
    }

    /// Checks that `prospect` has every custom field the templates need.
    ///
    /// # Errors
    /// `InvalidInput` naming the missing fields.
    pub fn check_prospect(&self, prospect: &Prospect) -> Result<()> {
        let missing: Vec<&str> = self
            .settings
            .required_custom_fields
            .iter()
            .filter(|name| !prospect.custom_fields.contains_key(name.as_str()))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::invalid_input(format!(
            "the prospect lacks the custom fields {missing:?} that the campaign's templates use"
        ))
        .with_context("prospect_id", prospect.id)
        .with_context("campaign", &self.name))
    }

    /// Whether a reply ends the follow-up sequence.
    pub fn stops_on_reply(&self) -> bool {
        self.settings.stop_on.contains(&StopCondition::Reply)
    }

    /// Checks the campaign: a name, at least one channel and one step, and
    /// templates that parse and use only known variables.
    ///
    /// # Errors
    /// `ConfigInvalid` naming the step and locale at fault.
    pub fn validate(&self) -> Result<()> {
        let config = |message: String| {
            Error::new(ErrorKind::ConfigInvalid, message).with_context("campaign", &self.name)
        };
        if self.name.trim().is_empty() {
            return Err(config("the campaign name is empty".into()));
        }
        if self.channels.is_empty() {
            return Err(config(
                "the campaign has no channel; list at least one of sms, email, messenger".into(),
            ));
        }
        if self.steps.is_empty() {
            return Err(config(
                "the campaign has no step; add the first message".into(),
            ));
        }
        if let Some(window) = &self.settings.window {
            if window.days.is_empty() {
                return Err(config("the sending window has no days, so nothing would ever be sent; list at least one day".into()));
            }
            if window.end <= window.start {
                return Err(config(format!(
                    "the sending window ends at {} but starts at {}; its end must be later than its start",
                    window.end, window.start
                )));
            }
        }
        let env = environment();
        for (index, step) in self.steps.iter().enumerate() {
            for locale in [Locale::En, Locale::Fr] {
                let source = step.template.get(locale);
                if source.trim().is_empty() {
                    return Err(config(format!(
                        "step {index} has an empty {locale} template"
                    )));
                }
                let template = env.template_from_str(source).map_err(|error| {
                    config(format!(
                        "step {index} {locale} template does not parse: {error}"
                    ))
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
                // A custom field a template reads must be declared, so that
                // enrollment can refuse prospects who lack it instead of the
                // send failing later.
                let undeclared: BTreeSet<String> = template
                    .undeclared_variables(true)
                    .into_iter()
                    .filter_map(|name| name.strip_prefix("custom.").map(str::to_owned))
                    .filter(|name| !self.settings.required_custom_fields.contains(name))
                    .collect();
                if !undeclared.is_empty() {
                    return Err(config(format!(
                        "step {index} {locale} template reads custom fields {undeclared:?} that required_custom_fields does not declare"
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
                Error::invalid_input(format!(
                    "failed to render step {index} of campaign {:?}: {error}",
                    self.name
                ))
                .with_context("prospect_id", prospect.id)
            })
    }
}

/// Adds what a marketing SMS must carry when the template left it out: the
/// sender's identity at the start and the STOP mention at the end (CNIL
/// rules on SMS prospecting).
pub fn with_sms_mentions(text: &str, sender: &str, locale: Locale) -> String {
    let mut message = text.trim().to_owned();
    if !sender.is_empty() && !message.contains(sender) {
        message = format!("{sender}: {message}");
    }
    let has_stop = crate::keywords::normalise(&message)
        .split(' ')
        .any(|word| word == "STOP");
    if !has_stop {
        message.push_str(match locale {
            Locale::En => " Reply STOP to opt out.",
            Locale::Fr => " STOP pour se désinscrire.",
        });
    }
    message
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
            steps: vec![Step::new(0, Localized::new(template, template))],
            allow_links: false,
            status: CampaignStatus::Active,
            created_at: chrono::Utc::now(),
            settings: CampaignSettings {
                required_custom_fields: vec!["plan".into()],
                ..Default::default()
            },
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
        prospect.custom_fields.insert(
            "plan".into(),
            crate::prospect::CustomValue::Text("pro".into()),
        );
        let campaign =
            campaign("Hi {{ first_name or 'there' }}, {{ sender }} here ({{ custom.plan }})");
        campaign.validate().unwrap();
        assert_eq!(
            campaign.render(0, &prospect, Locale::En).unwrap(),
            "Hi Camille, Léa from Acme here (pro)"
        );
    }

    #[test]
    fn sms_mentions_added_when_missing() {
        assert_eq!(
            with_sms_mentions("Hello", "Acme", Locale::En),
            "Acme: Hello Reply STOP to opt out."
        );
        assert_eq!(
            with_sms_mentions("Acme ici. STOP au 36111", "Acme", Locale::Fr),
            "Acme ici. STOP au 36111"
        );
        assert_eq!(
            with_sms_mentions("Bonjour", "Acme", Locale::Fr),
            "Acme: Bonjour STOP pour se désinscrire."
        );
    }

    #[test]
    fn undeclared_custom_field_rejected_at_load() {
        let mut campaign = campaign("Plan: {{ custom.tier }}");
        let error = campaign.validate().unwrap_err();
        assert!(error.to_string().contains("tier"), "{error}");
        campaign.settings.required_custom_fields.push("tier".into());
        campaign.validate().unwrap();
    }

    #[test]
    fn loads_toml_definition() {
        let text = r#"
name = "Spring"
persona = "Léa (Acme)"
goal = "book a demo"
channels = ["sms", "email"]
stop_on = ["reply", "opt_out"]

[window]
days = ["Mon", "Tue"]
start = "09:00:00"
end = "18:00:00"

[[steps]]
delay_hours = 0
template = { en = "Hi {{ first_name }}. STOP to opt out.", fr = "Bonjour {{ first_name }}. STOP pour se désinscrire." }

[[steps]]
business_days = 2
channel = "email"
template = { en = "Following up", fr = "Je me permets de relancer" }
"#;
        let campaign = Campaign::from_toml_str(OrgId::new(), text, chrono::Utc::now()).unwrap();
        assert_eq!(campaign.steps.len(), 2);
        assert_eq!(campaign.steps[1].business_days, Some(2));
        assert_eq!(campaign.steps[1].channel, Some(ChannelKind::Email));
        assert!(campaign.stops_on_reply());
        assert_eq!(
            campaign
                .settings
                .window
                .as_ref()
                .map(|window| window.days.len()),
            Some(2)
        );

        let json = serde_json::to_string(&serde_json::json!({
            "name": "Spring", "persona": "Acme", "goal": "demo", "channels": ["sms"],
            "steps": [{"delay_hours": 0, "template": {"en": "Hi {{ frist_name }}", "fr": "Bonjour"}}]
        }))
        .unwrap();
        let error = Campaign::from_json_str(OrgId::new(), &json, chrono::Utc::now()).unwrap_err();
        assert!(error.to_string().contains("frist_name"), "{error}");

        let error =
            Campaign::from_toml_str(OrgId::new(), "name = 3", chrono::Utc::now()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(error.to_string().contains("line 1 column"), "{error}");

        let closed = text.replace(r#"days = ["Mon", "Tue"]"#, "days = []");
        let error = Campaign::from_toml_str(OrgId::new(), &closed, chrono::Utc::now()).unwrap_err();
        assert!(error.to_string().contains("no days"), "{error}");
        let backwards = text.replace(r#"end = "18:00:00""#, r#"end = "08:00:00""#);
        let error =
            Campaign::from_toml_str(OrgId::new(), &backwards, chrono::Utc::now()).unwrap_err();
        assert!(error.to_string().contains("must be later"), "{error}");
    }

    #[test]
    fn missing_custom_field_is_an_error() {
        let prospect = Prospect::new(OrgId::new(), chrono::Utc::now());
        let campaign = campaign("Plan: {{ custom.plan }}");
        let error = campaign.render(0, &prospect, Locale::En).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}
