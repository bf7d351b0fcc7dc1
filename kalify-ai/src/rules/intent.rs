//! Intent, objection and tone signals of one message.
//!
//! The signals are combined with the facts in [`decide_intent`], in this
//! order: a clear objection to being messaged, a request for a person, an
//! explicit decline ("not interested", "non merci, pas maintenant"), a
//! meeting request, a question, a hard "no" fact (no need, no budget), and
//! finally interest or any other fact. "Stop by tomorrow" is a meeting
//! request, not an objection: an objection needs "stop" alone or "stop"
//! followed by a messaging verb.

use regex::Regex;

use kalify_core::analysis::{Intent, Objection};
use kalify_core::keywords::{Keyword, classify};

use super::matching::{clause_start, compile, is_negated};
use super::normalise::Normalised;

/// Signals read from one message, before its facts are taken into account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Signals {
    /// The objection to being messaged.
    pub(crate) objection: Objection,
    /// Asks to talk to a person.
    pub(crate) asks_for_human: bool,
    /// Declines the offer.
    pub(crate) declines: bool,
    /// Asks for a call or a meeting.
    pub(crate) meeting: bool,
    /// Asks a question.
    pub(crate) question: bool,
    /// Shows interest or agreement.
    pub(crate) interest: bool,
    /// Positive words minus negative words.
    pub(crate) tone: i32,
}

/// Facts of a message that bear on its intent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FactSignals {
    /// A fact that fails a hard requirement: no need, or a budget of 0.
    pub(crate) hard_no: bool,
    /// A fact that moves qualification on: a budget, a need, a timeline, a role.
    pub(crate) engaged: bool,
}

/// The compiled intent patterns.
#[derive(Debug)]
pub(crate) struct IntentPatterns {
    clear_objection: Regex,
    bare_stop: Regex,
    do_not_contact: Regex,
    do_not_contact_exception: Regex,
    doubtful_objection: Regex,
    human: Regex,
    declines: Regex,
    bare_no: Regex,
    meeting: Regex,
    question: Regex,
    interest: Regex,
    positive: Regex,
    negative: Regex,
}

impl IntentPatterns {
    /// Compiles the patterns.
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let clear_objection = compile(&format!(
            r"\b(?:{})\b",
            [
                // English
                r"(?:stop|quit|cease) (?:texting|messaging|writing|emailing|e-mailing|contacting|calling|spamming|harassing|sending|bothering|bugging)",
                r"(?:remove|take|delete|erase) (?:me|us) (?:from|off)",
                r"(?:remove|delete|erase) (?:my|our) (?:number|details|data|contact|email|info)",
                r"unsubscribe (?:me|us)",
                r"opt (?:me|us) out",
                r"leave (?:me|us) alone",
                r"lose my number",
                r"no more (?:texts|messages|emails|sms)",
                r"i (?:don'?t|do not) want (?:to receive )?(?:any )?(?:more )?(?:texts|messages|emails|sms)",
                // French
                r"(?:arretez|arrete|arreter|cessez|stoppez) (?:de |d')(?:m'ecrire|m'envoyer|me contacter|m'appeler|me harceler|me spammer|me relancer|m'embeter|me deranger|nous ecrire|nous contacter|nous envoyer|nous appeler|nous relancer)",
                r"ne (?:me|m'|nous) ?(?:contactez|ecrivez|appelez|relancez|envoyez|derangez|sollicitez) plus",
                r"ne plus (?:me |m'|nous )(?:contacter|ecrire|appeler|relancer|envoyer|deranger|solliciter)",
                r"(?:retirez|supprimez|enlevez|effacez|desinscrivez|radiez|sortez)(?:-| )?(?:moi|nous)",
                r"(?:supprimez|effacez) (?:mon numero|mes donnees|mes coordonnees|mon contact)",
                r"laissez(?:-| )?(?:moi|nous) tranquilles?",
                r"(?:foutez|fichez)(?:-| )?(?:moi|nous) la paix",
                r"je ne (?:veux|souhaite) (?:plus|pas) (?:etre (?:re)?(?:contactee?|derangee?|sollicitee?|appelee?|relancee?)|recevoir|de (?:vos )?(?:messages|sms|mails|appels|relances)|vos)",
                r"(?:me|nous) (?:retirer|supprimer|desinscrire|enlever|radier|effacer|sortir) (?:de|des|du) (?:vos|votre|la|les|ce|cette|ces) (?:fichiers?|listes?|bases?|mailing|contacts)",
                r"stop (?:aux|les|a vos|vos) (?:sms|messages|mails|relances|appels)",
            ]
            .join("|")
        ))?;

        let bare_stop = compile(
            r"^(?:please |merci de |svp )?(?:stop|arret|arrete|arretez|stopall|unsubscribe|desinscri\w*|desabonne\w*|opt ?out)(?: (?:please|pls|plz|merci|svp|stp|now|it|maintenant|sms|thanks|thank you|immediatement|all|tout))*$",
        )?;

        let do_not_contact = compile(
            r"\b(?:don'?t|do not|dont|never) (?:ever )?(?:text|message|email|e-mail|contact|call|write to|sms|bother) (?:me|us)\b",
        )?;

        // "Don't call me before 5pm" limits the timing, it does not object.
        let do_not_contact_exception = compile(
            r"^ (?:before|after|at|on|until|tomorrow|today|this|next|between|in the|during)\b",
        )?;

        let doubtful_objection = compile(&format!(
            r"\b(?:{})\b",
            [
                r"why (?:do|are|did|does|would) you (?:keep )?(?:writing|texting|messaging|contacting|emailing|calling|write|text|message|contact|email|call)",
                r"(?:how|where) did you (?:get|find|obtain) (?:my|this|our) (?:number|email|contact|details|info)",
                r"who gave you (?:my|this|our)",
                r"why (?:am i|are you) (?:getting|receiving|sending)",
                r"is this spam",
                r"c'est (?:du|un) spam",
                r"(?:qui|comment) vous a (?:donne|transmis|communique) (?:mon|mes|notre|ce)",
                r"comment avez(?:-| )vous (?:eu|obtenu|trouve) (?:mon|mes|notre|ce)",
                r"ou avez(?:-| )vous (?:eu|trouve|obtenu) (?:mon|mes)",
                r"pourquoi (?:vous )?(?:m'ecrivez|me contactez|m'envoyez|m'appelez|me relancez|me harcelez|je recois)",
                r"i (?:never|didn'?t|did not) (?:give|gave|share|shared|sign up|signed up|subscribe|subscribed|opt in|opted in|agree|agreed)",
                r"(?:avez|avez-vous|vous avez) (?:eu|obtenu|trouve|recupere) (?:mon|mes|notre) (?:numero|coordonnees|contact|mail|email|adresse)",
                r"je (?:ne )?vous (?:ai )?(?:jamais|rien) (?:donne|communique|transmis)",
                r"m'avez (?:trouvee?|eue?|contactee?) (?:ou|comment)",
                r"(?:too many|so many|another|third|fourth|fifth) (?:messages?|texts?|emails?|sms)",
                r"(?:encore un|trop de|combien de) (?:messages?|sms|mails?|relances?)",
            ]
            .join("|")
        ))?;

        let human = compile(&format!(
            r"\b(?:{})\b",
            [
                r"(?:talk|speak|chat|deal) (?:to|with) (?:a |an )?(?:real |actual |live |human )?(?:person|human|human being|agent|salesperson|sales ?rep|representative|advisor|adviser|consultant)",
                r"(?:talk|speak|chat) (?:to|with) (?:someone|somebody) (?:from|at|on|of|in) your",
                r"(?:real|actual|live) (?:person|human|people)",
                r"human being",
                r"is this a (?:bot|robot|machine)",
                r"am i (?:talking|speaking|chatting) (?:to|with) a (?:bot|robot|machine)",
                r"are you (?:a )?(?:bot|robot|real|human)",
                r"une? (?:vraie? )?(?:conseill(?:er|ere)|humaine?|personne (?:reelle|physique)|etre humain|commerciale?|interlocut(?:eur|rice))",
                r"une vraie personne",
                r"quelqu'un de (?:reel|vrai|chez vous|votre equipe)",
                r"(?:parler|echanger) (?:a|avec) (?:une personne|quelqu'un|un etre)",
                r"(?:vous etes|c'est|etes-vous) un (?:robot|bot)",
            ]
            .join("|")
        ))?;

        let declines = compile(&format!(
            r"\b(?:{})\b",
            [
                r"not (?:really |very |at all )?interested",
                r"no,? thanks?",
                r"no,? thank you",
                r"not for (?:us|me)",
                r"not (?:right )?now",
                r"not at the moment",
                r"not a priority",
                r"not (?:the right|a good|the best|a great) (?:time|moment)",
                r"(?:we'?re|we are|i'?m|i am) not (?:in the market|buying|looking)",
                r"(?:we'?re|we are|i'?m|i am) (?:good|fine|all set|ok|okay),? (?:thanks|thank you|for now)",
                r"nah",
                r"(?:we|i)'?ll pass",
                r"pass(?:ing)? on this",
                r"(?:we'?re|we are) all set",
                r"no interest",
                r"non,? merci",
                r"pas interessee?s?",
                r"(?:ne|n') ?(?:m'|nous |me )?interesse (?:pas|plus|guere)",
                r"(?:ca|cela) (?:m'|nous |me )interesse (?:pas|plus|guere)",
                r"pas pour (?:nous|moi)",
                r"pas maintenant",
                r"pas pour (?:le moment|l'instant)",
                r"pas le (?:bon )?moment",
                r"pas prioritaire",
                r"pas d'interet",
                r"je passe mon tour",
                r"(?:non,? )?(?:ca|cela) ira,? merci",
                r"aucun interet",
                r"trop cher",
                r"too expensive",
                r"(?:can'?t|cannot) afford",
            ]
            .join("|")
        ))?;

        let bare_no = compile(r"^(?:no|nope|nah|non|no way|certainly not|surely not)$")?;

        let meeting = compile(&format!(
            r"\b(?:{})\b",
            [
                // English
                r"(?:call|ring|phone) (?:me|us)",
                r"(?:give me|gimme) a (?:call|ring|buzz)",
                r"(?:can|could|shall|should) (?:we|you|i) (?:have|set up|schedule|book|arrange|organi[sz]e|do|get|jump on|hop on|plan) (?:a |an )?(?:quick |short |brief )?(?:call|meeting|demo|chat|phone call|video call|zoom|teams call|appointment|catch[- ]up)",
                r"(?:let'?s|lets) (?:talk|meet|chat|have a call|schedule|set up|book|do a call|jump on|hop on|catch up|discuss)",
                r"(?:set up|schedule|book|arrange) (?:a |an )?(?:quick |short )?(?:call|meeting|demo|appointment|slot)",
                r"(?:meeting|call|demo|appointment) (?:on|at|for) [^.!?\n]{0,30}(?:works|suits|is fine|is good|sounds good|ok) (?:for )?(?:me|us)",
                r"(?:stop|come|drop|swing) by",
                r"(?:available|free) (?:for a call|to talk|to chat|tomorrow|next week|this week|on (?:monday|tuesday|wednesday|thursday|friday))",
                r"(?:i'?d|we'?d|i would|we would) (?:like|love) (?:a|to (?:have|see|book|schedule|get)) (?:a )?(?:demo|call|meeting)",
                r"(?:like|love|want) a demo",
                r"demo please",
                r"(?:for|book|have|schedule|do|get) a (?:quick |short |brief )?(?:call|meeting|demo|chat|catch-?up)",
                r"what (?:time|times|day|days|slot|slots) (?:work|works|suit|suits|would work)",
                r"(?:book|put|pencil) (?:me|us) (?:in|down)",
                // French
                r"(?:appelez|rappelez|appelle|rappelle|telephonez|contactez)(?:-| )moi",
                r"(?:m'appeler|me rappeler|me telephoner|me joindre)",
                r"(?:un|une|le|la|prendre|fixer|caler|planifier|organiser|programmer|avoir) (?:petit |petite |court |courte )?(?:rendez-vous|rendez vous|rdv|appel|visio|demo|reunion|echange telephonique|creneau|entretien)",
                r"on (?:peut|pourrait) (?:s'appeler|se parler|se voir|echanger|se call)",
                r"passez(?:-| )me voir",
                r"je (?:vous|te) (?:rappelle|appelle|telephone)",
                r"je suis (?:dispo|disponible)",
                r"(?:dispo|disponible) (?:demain|lundi|mardi|mercredi|jeudi|vendredi|cette semaine|la semaine|pour un|pour en)",
            ]
            .join("|")
        ))?;

        let question = compile(
            r"\?|\b(?:how much|how many|how does|what(?:'s| is) the (?:price|cost|pricing)|combien|quel(?:le)?s? (?:est|sont) (?:le|la|les) (?:prix|tarifs?|cout)|comment (?:ca|cela) (?:marche|fonctionne))\b",
        )?;

        let interest = compile(
            r"\b(?:yes|yeah|yep|yup|sure|ok|okay|sounds (?:good|great|interesting)|great|perfect|absolutely|definitely|of course|why not|let'?s do it|go ahead|tell me more|more info|interested|count me in|i'?m in|love to|happy to|oui|d'accord|dac|volontiers|avec plaisir|parfait|super|genial|top|pourquoi pas|allons-y|interessee?s?|interesse|partant|partante|bien sur|carrement|en savoir plus|plus d'infos)\b|\b(?:send|email)(?: me| us)? (?:a |an |the |some |more |your )?(?:proposal|quote|info|information|details|deck|brochure|pricing|offer)\b|\b(?:envoyez|envoyer|m'envoyer|transmettre)\b[^.!?\n]{0,20}\b(?:proposition|devis|documentation|doc|plaquette|offre|tarifs|infos|informations)\b|[👍👌✅🙏]",
        )?;

        let positive = compile(
            r"\b(?:thanks|thank you|great|perfect|awesome|excellent|love|happy|glad|super|genial|parfait|top|cool|avec plaisir|with pleasure|volontiers|merci beaucoup|ravie?)\b|[👍👌🙂😊😀🙏✅]",
        )?;

        let negative = compile(
            r"\b(?:annoying|spam|harass\w*|ridiculous|stupid|angry|waste of time|fed up|agacant|penible|marre|relou|harcel\w*|arnaque|scam|ras le bol|insupportable)\b|!!!|[😡😠👎🤬]",
        )?;
        Ok(IntentPatterns {
            clear_objection,
            bare_stop,
            do_not_contact,
            do_not_contact_exception,
            doubtful_objection,
            human,
            declines,
            bare_no,
            meeting,
            question,
            interest,
            positive,
            negative,
        })
    }

    /// Reads the signals of one message.
    pub(crate) fn signals(&self, original: &str, text: &Normalised) -> Signals {
        let text = text.text.as_str();
        let bare = bare_words(text);

        let clear = classify(original) == Some(Keyword::OptOut)
            || self.bare_stop.is_match(&bare)
            || self.clear_objection.is_match(text)
            || self
                .do_not_contact
                .find_iter(text)
                .any(|found| !self.do_not_contact_exception.is_match(&text[found.end()..]));
        let objection = if clear {
            Objection::Clear
        } else if self.doubtful_objection.is_match(text) {
            Objection::Doubtful
        } else {
            Objection::None
        };

        let positive = i32::try_from(self.positive.find_iter(text).take(100).count()).unwrap_or(0);
        let negative = i32::try_from(self.negative.find_iter(text).take(100).count()).unwrap_or(0);
        Signals {
            objection,
            asks_for_human: self.human.is_match(text),
            declines: self.declines.is_match(text) || self.bare_no.is_match(&bare),
            meeting: self.meeting.is_match(text),
            question: self.question.is_match(text),
            interest: self
                .interest
                .find_iter(text)
                .any(|found| !is_negated(text, clause_start(text, found.start()), found.start())),
            tone: positive - negative,
        }
    }
}

/// Joins the words of `text` with single spaces, dropping punctuation and emoji.
fn bare_words(text: &str) -> String {
    let mut bare = String::with_capacity(text.len().min(256));
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|word| !word.is_empty())
    {
        if !bare.is_empty() {
            bare.push(' ');
        }
        bare.push_str(word);
    }
    bare
}

/// Combines the signals and the facts of one message into its intent.
pub(crate) fn decide_intent(signals: &Signals, facts: FactSignals) -> Intent {
    if signals.objection == Objection::Clear {
        Intent::ObjectsToMessages
    } else if signals.asks_for_human {
        Intent::AsksForHuman
    } else if signals.declines {
        Intent::NotInterested
    } else if signals.meeting {
        Intent::MeetingRequest
    } else if signals.question {
        Intent::Question
    } else if facts.hard_no {
        Intent::NotInterested
    } else if signals.interest || facts.engaged {
        Intent::Interested
    } else {
        Intent::Unclear
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(text: &str) -> (Intent, Objection) {
        let patterns = IntentPatterns::new().unwrap();
        let signals = patterns.signals(text, &Normalised::new(text));
        (
            decide_intent(&signals, FactSignals::default()),
            signals.objection,
        )
    }

    #[test]
    fn clear_objections() {
        for text in [
            "please stop texting me",
            "arrêtez de m'écrire",
            "ne me contactez plus",
            "Ne m'écrivez plus !",
            "remove me from your list",
            "STOP",
            "Stop please",
            "stop merci",
            "Merci de ne plus m'envoyer de messages.",
            "retirez moi de votre liste svp",
            "Please don't contact me again.",
            "Laissez-moi tranquille avec vos SMS !",
            "unsubscribe me pls",
            "Not interested, stop texting me",
            "Merci de me retirer de vos fichiers.",
            "Take me off this list now.",
            "Stop, je ne veux plus de vos messages.",
            "Je ne veux pas être recontacté.",
        ] {
            assert_eq!(
                intent(text),
                (Intent::ObjectsToMessages, Objection::Clear),
                "{text:?}"
            );
        }
    }

    #[test]
    fn not_objections() {
        assert_eq!(
            intent("non merci, pas maintenant"),
            (Intent::NotInterested, Objection::None)
        );
        assert_eq!(
            intent("stop by tomorrow"),
            (Intent::MeetingRequest, Objection::None)
        );
        assert_eq!(
            intent("don't call me before 5pm, I'm in meetings").1,
            Objection::None
        );
        assert_eq!(intent("we need to stop losing leads").1, Objection::None);
    }

    #[test]
    fn doubtful_objections() {
        for text in [
            "why do you keep writing?",
            "How did you get my number?",
            "Qui vous a donné mon numéro ?",
            "Pourquoi vous m'écrivez encore ?",
            "Vous avez eu mon numéro comment ?",
            "Vous m'avez trouvé où ?",
        ] {
            assert_eq!(
                intent(text),
                (Intent::Question, Objection::Doubtful),
                "{text:?}"
            );
        }
    }

    #[test]
    fn asks_for_human() {
        for text in [
            "I want to talk to a real person",
            "je veux parler à un conseiller",
            "une vraie personne svp",
            "Vous êtes un robot ? Je veux un humain.",
            "I'd rather speak with someone from your sales team.",
            "Is this a bot? I'd like to speak to a human please.",
        ] {
            assert_eq!(intent(text).0, Intent::AsksForHuman, "{text:?}");
        }
    }

    #[test]
    fn declines() {
        for text in [
            "not interested",
            "Non merci",
            "pas intéressé",
            "No thanks",
            "Not now, maybe in 6 months.",
            "non",
            "ça ne nous intéresse pas",
            "ça m'intéresse pas du tout",
            "Nah, we're good thanks.",
            "It's not a good time",
            "Non, ça ira, merci.",
            "Trop cher pour nous, désolé.",
            "Aucun intérêt.",
            "We're not in the market right now.",
            "We're in the middle of a merger, not a good moment.",
        ] {
            assert_eq!(intent(text).0, Intent::NotInterested, "{text:?}");
        }
    }

    #[test]
    fn meetings() {
        for text in [
            "can we have a call?",
            "un rendez-vous la semaine prochaine ?",
            "appelez-moi",
            "Call me at 06 12 34 56 78 after 6pm.",
            "Vous pouvez me rappeler au 01.23.45.67.89 ?",
            "The meeting on 12/05 at 14:30 works for me.",
            "Let's set up a demo next week.",
            "Sure, what times work for a quick call?",
            "Je vous rappelle demain vers 10h.",
            "Sounds good, book me in for Thursday.",
        ] {
            assert_eq!(intent(text).0, Intent::MeetingRequest, "{text:?}");
        }
    }

    #[test]
    fn questions_and_interest() {
        assert_eq!(intent("How much does it cost?").0, Intent::Question);
        assert_eq!(intent("combien").0, Intent::Question);
        assert_eq!(intent("Yes please, tell me more!").0, Intent::Interested);
        assert_eq!(intent("👍").0, Intent::Interested);
        assert_eq!(
            intent("Je vous laisse m'envoyer une proposition commerciale.").0,
            Intent::Interested
        );
        assert_eq!(
            intent("I'm not interested and I never gave you my number.").1,
            Objection::Doubtful
        );
        assert_eq!(
            intent("This is the third message this week, enough.").1,
            Objection::Doubtful
        );
        assert_eq!(
            intent("Please send pricing for 25 seats.").0,
            Intent::Interested
        );
        assert_eq!(
            intent("I'm not sure we need this, to be honest.").0,
            Intent::Unclear
        );
        assert_eq!(intent("pas super convaincu").0, Intent::Unclear);
        assert_eq!(intent("").0, Intent::Unclear);
        assert_eq!(intent("Hi! I'm off until the 15th").0, Intent::Unclear);
    }

    #[test]
    fn facts_decide_when_words_do_not() {
        let signals = Signals::default();
        assert_eq!(
            decide_intent(
                &signals,
                FactSignals {
                    hard_no: true,
                    engaged: false
                }
            ),
            Intent::NotInterested
        );
        assert_eq!(
            decide_intent(
                &signals,
                FactSignals {
                    hard_no: false,
                    engaged: true
                }
            ),
            Intent::Interested
        );
    }
}
