//! Fixed reply texts in English and French: compliance confirmations and
//! the template replies used by the offline model and as a fallback when a
//! model fails.

use crate::analysis::{Intent, ReplyRequest};
use crate::conversation::SendPurpose;
use crate::prospect::Locale;

/// The confirmation sent once after an opt-out: the sender's identity and nothing promotional.
pub fn opt_out_confirmation(locale: Locale, sender: &str) -> String {
    match locale {
        Locale::En => format!(
            "{sender}: you are unsubscribed and will receive no more messages. Reply START to resubscribe."
        ),
        Locale::Fr => format!(
            "{sender} : votre désinscription est prise en compte, vous ne recevrez plus de messages. Répondez START pour vous réinscrire."
        ),
    }
}

/// The confirmation sent after an opt-in.
pub fn opt_in_confirmation(locale: Locale, sender: &str) -> String {
    match locale {
        Locale::En => {
            format!("{sender}: you are subscribed again. Reply STOP to unsubscribe, HELP for help.")
        }
        Locale::Fr => format!(
            "{sender} : vous êtes de nouveau inscrit. Répondez STOP pour vous désinscrire, AIDE pour de l'aide."
        ),
    }
}

/// The answer to a help keyword.
pub fn help_text(locale: Locale, sender: &str) -> String {
    match locale {
        Locale::En => format!(
            "{sender}: automated messages about our offer. Reply STOP to unsubscribe. A person can reply if you ask for one."
        ),
        Locale::Fr => format!(
            "{sender} : messages automatiques à propos de notre offre. Répondez STOP pour vous désinscrire. Un conseiller peut vous répondre sur demande."
        ),
    }
}

/// The acknowledgement sent when a member takes over.
pub fn handoff_ack(locale: Locale, sender: &str) -> String {
    match locale {
        Locale::En => {
            format!("{sender}: thank you, a member of our team will get back to you shortly.")
        }
        Locale::Fr => {
            format!("{sender} : merci, un membre de notre équipe revient vers vous très vite.")
        }
    }
}

/// The sentence that tells the prospect the message is automated.
pub fn automation_notice(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "(Automated message.)",
        Locale::Fr => "(Message automatique.)",
    }
}

/// Writes a reply from fixed templates: thanks, then the question for the
/// first missing fact, or the next step when nothing is missing.
pub fn template_reply(request: &ReplyRequest) -> String {
    let locale = request.locale;
    let greeting = match (&request.first_name, locale) {
        (Some(name), Locale::En) if !name.is_empty() => format!("Thanks {name}!"),
        (Some(name), Locale::Fr) if !name.is_empty() => format!("Merci {name} !"),
        (_, Locale::En) => "Thanks!".to_owned(),
        (_, Locale::Fr) => "Merci !".to_owned(),
    };
    let body = match request.purpose {
        SendPurpose::Closing => match locale {
            Locale::En => "Understood, we will not insist. Have a good day.".to_owned(),
            Locale::Fr => "C'est bien noté, nous n'insisterons pas. Bonne journée.".to_owned(),
        },
        SendPurpose::Qualified => match locale {
            Locale::En => format!(
                "This sounds like a good fit. A member of our team will contact you to {}.",
                request.goal
            ),
            Locale::Fr => format!(
                "Votre projet correspond bien à notre offre. Un membre de l'équipe vous contacte pour {}.",
                request.goal
            ),
        },
        _ => {
            let answer = match (request.intent, locale) {
                (Intent::Question, Locale::En) => {
                    "Good question, a teammate will give you the details. "
                }
                (Intent::Question, Locale::Fr) => {
                    "Bonne question, un conseiller vous donnera les détails. "
                }
                (Intent::MeetingRequest, Locale::En) => "Happy to set up a call. ",
                (Intent::MeetingRequest, Locale::Fr) => "Avec plaisir pour un échange. ",
                _ => "",
            };
            match request.missing.first() {
                Some(criterion) => format!("{answer}{}", criterion.question),
                None => match locale {
                    Locale::En => format!("{answer}Would you like to {}?", request.goal),
                    Locale::Fr => format!("{answer}Souhaitez-vous {} ?", request.goal),
                },
            }
        }
    };
    let mut text = format!("{greeting} {body}");
    if request.disclose_automation {
        text.push(' ');
        text.push_str(automation_notice(locale));
    }
    truncate_chars(&text, request.max_chars)
}

/// Cuts `text` to at most `max` characters on a character boundary.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if max == 0 || text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
