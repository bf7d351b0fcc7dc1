//! Need extraction: whether the prospect has a problem the offer solves.
//!
//! A stated problem ("we're struggling to follow up leads", "on perd trop
//! de leads"), a search ("on cherche une solution") or a stated need ("we
//! need a better way") is a need; stated interest ("ça m'intéresse") is a
//! weaker one. "We don't need it", "pas besoin", "we already have a tool"
//! and "already signed with a competitor" are no need. "Not interested" on
//! its own gives an intent but no need fact. The last
//! statement wins: "we already have a CRM but we're struggling" is a need.

use regex::Regex;

use super::matching::{Found, after, clause_start, compile, is_negated};
use super::normalise::Normalised;

/// Verbs a need statement may continue with ("we need to improve …").
const IMPROVEMENT_VERBS: &str = r"improve|automate|find|fix|solve|speed|follow|qualify|boost|increase|reduce|save|handle|scale|replace|streamline|convert|respond|reply|stop|organi[sz]e|manage|structure|track|sort out|get (?:better|more|on top)";

/// Words that, right after "need" or "besoin", make the phrase a request
/// for something other than the offer: "we need a call", "besoin de réfléchir".
const NOT_A_NEED: &[&str] = &[
    "demo",
    "call",
    "meeting",
    "quote",
    "chat",
    "word",
    "brochure",
    "information",
    "info",
    "infos",
    "informations",
    "pricing",
    "price",
    "prices",
    "proposal",
    "moment",
    "minute",
    "minutes",
    "break",
    "week",
    "weeks",
    "month",
    "months",
    "day",
    "days",
    "discount",
    "callback",
    "appointment",
    "approval",
    "sign-off",
    "time",
    "details",
    "reflechir",
    "valider",
    "voir",
    "demander",
    "parler",
    "consulter",
    "verifier",
    "savoir",
    "confirmer",
    "discuter",
    "temps",
    "details",
    "devis",
    "rdv",
    "rendez-vous",
    "rappel",
    "rappeler",
    "appeler",
    "attendre",
    "repondre",
    "relancer",
    "insister",
    "faire",
    "prendre",
    "envoyer",
    "me",
    "m'",
    "vous",
    "nous",
    "l'accord",
    "l'aval",
    "autorisation",
    "l'autorisation",
    "signer",
    "deplacer",
    "venir",
    "passer",
    "preciser",
    "expliquer",
    "documentation",
    "doc",
    "tarif",
    "tarifs",
    "prix",
    "plus",
];

/// The compiled need patterns.
#[derive(Debug)]
pub(crate) struct NeedPatterns {
    problem: Regex,
    interest: Regex,
    stated_need: Regex,
    no_need: Regex,
    satisfied_with: Regex,
    uncertain: Regex,
}

impl NeedPatterns {
    /// Compiles the patterns.
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let problem = compile(&format!(
            r"\b(?:{})",
            [
                // English
                r"(?:we|i|they|the team|our team)(?:'re| are|'m| am| is)? (?:really |currently |constantly |always |still )?(?:struggling|struggle|having (?:a hard time|trouble|issues|problems|difficulties)|drowning|missing out|falling behind|can'?t keep up|can'?t follow|can'?t handle|don'?t have (?:the )?time)\b",
                r"(?:we|i|they|the team|our team)(?:'re| are|'m| am| is)? (?:really |currently |constantly |always |still |keep )?(?:losing|lose|lost|missing|miss|missed|forgetting|forget|dropping|drop|wasting|waste) (?:[\w-]+ ){0,2}(?:leads|deals|opportunit\w+|prospects|customers|clients|sales|calls|track|time|money|revenue|business|inquiries|enquiries|contacts)\b",
                r"(?:evaluating|comparing|exploring|reviewing|considering) (?:\w+ )?(?:options|solutions|tools|vendors|providers|alternatives)\b",
                r"(?:on|nous) (?:compare|comparons|etudie|etudions|evalue|evaluons) (?:des|plusieurs|les|differentes) (?:solutions|outils|offres|options|prestataires)\b",
                r"(?:looking|searching|shopping around|on the lookout) for (?:a |an |some |something|ways?\b|solutions?\b|tools?\b|help\b|better\b|options?\b|alternatives?\b)",
                r"(?:our|the) (?:main |biggest |real |big )?(?:problem|issue|challenge|pain(?: point)?|bottleneck) (?:is|are|being|:)",
                r"(?:our|the|my) (?:current |existing )?(?:[\w-]+ ){0,2}(?:process|system|tool|setup|crm|follow-?up|workflow|pipeline|software|solution)\b[^.!?\n]{0,40}\b(?:is|are|it'?s) (?:broken|a mess|terrible|not working|too slow|chaotic|painful|manual|a nightmare|a disaster|rubbish|useless|awful|bad|a joke|a pain|inefficient|outdated|clunky)\b",
                r"(?:leads|requests|inquiries|enquiries|prospects|customers|clients) (?:never|don'?t|do not|rarely) get (?:a |any )?(?:reply|replies|response|answer|follow-?up|call ?back|called back)\b",
                r"it'?s a (?:mess|nightmare|pain)\b",
                r"nobody (?:calls|follows up|answers|replies|gets back)\b",
                r"(?:spend|spends|spending|waste|wastes|wasting) (?:hours|days|ages|too much time|a lot of time|so much time)\b",
                r"(?:passe|passons|passent|perd|perdons|perdent) (?:des heures|trop de temps|un temps fou|beaucoup de temps)\b",
                r"need\s*:\s*\w",
                // French
                r"(?:on|nous|je) (?:cherche|cherchons|recherche|recherchons|cherchais|cherchions)\b",
                r"(?:on|nous|je) (?:galere|galerons|perd|perdons|rate|ratons|loupe|loupons|manque|manquons|croule|croulons|passe trop|passons trop|n'arrive pas|n'arrivons pas|ne parvenons pas|ne parviens pas|n'arrive plus)\b",
                r"(?:on|nous|je) (?:n'avons|n'a|n'ai) (?:pas|plus) le temps de\b",
                r"(?:un|des) (?:vrai |gros |reel |serieux )?(?:probleme|souci|difficulte)s? (?:de|d'|avec|pour|sur)\b",
                r"personne ne (?:rappelle|relance|repond|suit|rappellent)\b",
                r"(?:notre |le (?:gros |vrai |principal )?|gros |vrai )(?:probleme|souci|difficulte|point faible|casse-tete)(?: (?:c'est|est|:))",
                r"(?:du mal a|de la peine a|des difficultes a|des difficultes pour)\b",
                r"(?:outil|logiciel|crm|systeme|process|processus|solution|fichier|excel|organisation|suivi)(?: [\w']+){0,2} (?:ne marche pas|ne fonctionne pas|marche mal|fonctionne mal|est un cauchemar|n'est pas adapte|ne suit pas)\b",
                r"c'est le (?:bazar|bordel|chaos)\b",
            ]
            .join("|")
        ))?;
        let interest = compile(&format!(
            r"\b(?:{})\b",
            [
                r"(?:i'm|i am|im|we're|we are|were) (?:very |really |quite |definitely |super )?interested",
                r"interested in (?:your|this|the|a|learning|knowing|hearing)",
                r"^\W*(?:very |really )?interested",
                r"^\W*(?:tres )?interessee?s?",
                r"(?:ca|cela|ceci|votre offre|votre solution|votre outil) (?:m'|nous |me |vous )?interesse",
                r"je suis (?:tres |vraiment |assez )?interessee?",
                r"(?:nous sommes|on est) (?:tres |vraiment )?interessee?s?",
                r"(?:m'|nous )interesse (?:beaucoup|bien)",
            ]
            .join("|")
        ))?;
        let stated_need = compile(&format!(
            r"\b(?:{})",
            [
                &format!(r"(?:we|i) (?:really |definitely |urgently |also )?need (?:a |an |some |help\b|better\b|more |something\b|it\b|this\b|to (?:{IMPROVEMENT_VERBS})\b)"),
                &format!(r"(?:we|i)(?:'d| would)? (?:really )?(?:want|like|wanna) (?:a better\b|better\b|more |to (?:{IMPROVEMENT_VERBS})\b)"),
                r"(?:nous avons|on a|j'ai|nous aurions|on aurait|j'aurais|nous aurons) (?:vraiment |bien |clairement |aussi |grandement |absolument )?(?:un (?:vrai |gros |reel )?)?besoin\b",
                r"il (?:nous|me) faut (?:un|une|des|absolument|vraiment)\b",
                r"(?:on|nous|je) (?:voudrait|voudrions|aimerait|aimerions|souhaite|souhaitons|souhaiterait|souhaiterions|voudrais|aimerais|souhaiterais|veut|voulons|veux) (?:bien |vraiment |absolument )?(?:ameliorer|automatiser|trouver|mieux|gagner|structurer|accelerer|relancer|suivre|qualifier|gerer|organiser|arreter de perdre|un outil|une solution|un logiciel|un crm|mettre en place|optimiser|digitaliser|centraliser)\b",
            ]
            .join("|")
        ))?;
        let no_need = compile(&format!(
            r"\b(?:{})",
            [
                // English
                r"(?:we|i) (?:really |honestly |just )?(?:don'?t|do not|dont|doesn'?t) (?:really |actually )?need (?:it|this|that|a|an|any|your|another|more|one|such|anything|something|the|new|these|those)\b",
                r"no need\b",
                r"(?:we|i)(?:'ve| have)? (?:already|allready|alredy) (?:have|has|got|use|using|work with|working with|signed|chose|chosen|picked|went with|found|bought|invested in|run|rely on|built|switched|moved|migrated|changed)\b",
                r"switched to (?:a |an |another )?(?:competitor|provider|vendor|tool|solution)\b",
                r"(?:stick|stay|staying|sticking) with (?:what we have|our current|our existing|the current|our)\b",
                r"(?:just |recently )?(?:renewed|extended) (?:our |a |the )?(?:contract|subscription|licen[cs]e)\b",
                r"(?:signed|gone|went|going|partnered) with (?:a |another |one of your )?(?:competitor|provider|vendor|someone else|another (?:company|provider|vendor|tool|solution|agency))",
                r"(?:happy|satisfied|content) with (?:our|what we|the current|the existing|my current|the tool we|the solution we)\b",
                r"built (?:something|our own|it|one|ours) in-?house\b",
                r"our own (?:in-?house )?(?:tool|solution|system|crm|software|platform)\b",
                r"(?:notre|nos) propres? (?:outils?|solutions?|logiciels?|crm|systemes?)\b",
                r"(?:developpee?s?|fait|faite|faits) (?:en interne|maison)\b",
                r"(?:no|zero) (?:use|need) for (?:it|this|that)\b",
                r"(?:locked|tied) into (?:a |an )?(?:[\w-]+ ){0,3}contract\b",
                r"under contract with\b",
                r"sous contrat avec\b",
                r"(?:renouvele|prolonge) (?:notre|le|un|nos) (?:contrat|abonnement)\b",
                r"(?:on|nous|j') (?:utilise|utilisons|garde|gardons) deja\b",
                r"(?:ca|cela|il|elle) nous (?:convient|suffit)\b",
                // French
                r"(?:pas|aucun|plus) (?:vraiment |du tout )?(?:de |d')?besoin\b",
                r"n'(?:avons|ai|a|en avons|en ai|en a|y a) (?:pas|plus|aucun|aucunement)(?: vraiment)? (?:de |d')?besoin\b",
                r"(?:on est|nous sommes|je suis) (?:tres |deja |plutot |bien )*equipee?s?\b",
                r"(?:on est|nous sommes|je suis) (?:tres |deja |plutot |bien )*(?:satisfaite?s?|contente?s?) (?:de|par|avec) (?:notre|nos|mon|ma|l'outil|la solution|leur|leurs|ce|cet|cette)\b",
                r"(?:on a|nous avons|j'ai|on utilise|nous utilisons|j'utilise|on travaille|nous travaillons|je travaille|on bosse) deja (?:un|une|des|notre|nos|ce qu'il|tout ce qu'il|avec|chez|signe|choisi|trouve|opte|en place|sous contrat|le notre)\b",
                r"(?:signe|engage|engages|partis?) (?:avec|chez) (?:un |une |le |la )?(?:concurrent|autre prestataire|autre fournisseur|autre solution|autre agence)",
                r"dont (?:nous sommes|on est) (?:tres )?satisfaite?s?\b",
                r"(?:on|nous|je) ne (?:cherche|cherchons|recherche|recherchons) (?:pas|rien|plus)\b",
            ]
            .join("|")
        ))?;
        let satisfied_with = compile(
            r"\b(?:we'?re|we are|i'?m|i am) (?:very |quite |really |pretty )?(?:happy|satisfied|content) with (?P<what>[\w'-]+)",
        )?;
        let uncertain = compile(
            r"\b(?:not sure|unsure|don'?t know if|not certain|pas sure?|sais pas si|pas certaine?)\b",
        )?;
        Ok(NeedPatterns {
            problem,
            interest,
            stated_need,
            no_need,
            satisfied_with,
            uncertain,
        })
    }

    /// Finds whether the prospect has the need.
    pub(crate) fn find(&self, text: &Normalised) -> Option<Found<bool>> {
        let text = text.text.as_str();
        let mut statements: Vec<Found<bool>> = Vec::new();

        for found in self
            .problem
            .find_iter(text)
            .chain(self.stated_need.find_iter(text))
        {
            // "I'm not sure we need this" states no need either way.
            let clause_before = &text[clause_start(text, found.start())..found.start()];
            if self.uncertain.is_match(clause_before) {
                continue;
            }
            let ends_with_need_word = found.as_str().ends_with("need ")
                || found.as_str().ends_with("besoin")
                || found.as_str().ends_with(' ');
            if ends_with_need_word && continues_with_other_request(text, found.end()) {
                continue;
            }
            let negated = is_negated(text, clause_start(text, found.start()), found.start());
            statements.push(Found {
                value: !negated,
                range: found.range(),
                confidence: if negated { 0.7 } else { 0.8 },
            });
        }
        for found in self.interest.find_iter(text) {
            // "ça m'intéresse pas", spoken French without "ne".
            let denied = matches!(
                after(text, found.end(), 12).split_whitespace().next(),
                Some("pas" | "plus" | "guere" | "not")
            );
            if !denied && !is_negated(text, clause_start(text, found.start()), found.start()) {
                statements.push(Found {
                    value: true,
                    range: found.range(),
                    confidence: 0.6,
                });
            }
        }
        for found in self.no_need.find_iter(text) {
            // "no need to ask", "pas besoin de valider": about something else.
            let following = after(text, found.end(), 8).trim_start();
            let ends_with_need_word =
                found.as_str().ends_with("need") || found.as_str().ends_with("besoin");
            if ends_with_need_word
                && (following.starts_with("to ") || continues_with_other_request(text, found.end()))
            {
                continue;
            }
            statements.push(Found {
                value: false,
                range: found.range(),
                confidence: 0.85,
            });
        }

        // "We're happy with HubSpot" is no need, "happy with your offer" is not.
        for captures in self.satisfied_with.captures_iter(text) {
            let (Some(whole), Some(what)) = (captures.get(0), captures.name("what")) else {
                continue;
            };
            if !matches!(
                what.as_str(),
                "your" | "you" | "the" | "that" | "this" | "it" | "a" | "an" | "what" | "how"
            ) {
                statements.push(Found {
                    value: false,
                    range: whole.range(),
                    confidence: 0.75,
                });
            }
        }

        let last = statements
            .iter()
            .max_by_key(|statement| statement.range.start)?;
        let confidence = statements
            .iter()
            .filter(|statement| statement.value == last.value)
            .map(|statement| statement.confidence)
            .fold(last.confidence, f32::max);
        Some(Found {
            value: last.value,
            range: last.range.clone(),
            confidence,
        })
    }
}

/// Checks whether the words after a need phrase make it about something else:
/// "no need to ask", "pas besoin de valider", "we need a call".
fn continues_with_other_request(text: &str, end: usize) -> bool {
    let following = after(text, end, 40);
    let words: Vec<&str> = following
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?'))
        .filter(|word| !word.is_empty())
        .take(2)
        .collect();
    let skip_article = |word: &str| {
        matches!(
            word,
            "a" | "an" | "some" | "the" | "de" | "d'un" | "d'une" | "un" | "une" | "des" | "du"
        )
    };
    let first = words.first().copied().unwrap_or("");
    if first == "d'en" {
        return true;
    }
    let first = first
        .strip_prefix("d'")
        .filter(|rest| !rest.is_empty())
        .unwrap_or(first);
    if NOT_A_NEED.contains(&first) {
        return true;
    }
    let first_is_article =
        skip_article(first) || words.first().is_some_and(|word| word.starts_with("d'"));
    first_is_article
        && words
            .get(1)
            .is_some_and(|second| NOT_A_NEED.contains(second))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(text: &str) -> Option<bool> {
        NeedPatterns::new()
            .unwrap()
            .find(&Normalised::new(text))
            .map(|found| found.value)
    }

    #[test]
    fn stated_needs() {
        for text in [
            "we're struggling to follow up leads",
            "on cherche une solution pour relancer nos prospects",
            "we need a better way to qualify leads",
            "nous avons besoin d'un outil",
            "on a besoin d un crm simple",
            "We lose track of leads in spreadsheets",
            "On galère à suivre nos leads",
            "Notre outil actuel ne marche pas",
            "our follow-up process is broken",
            "Oui ça m'intéresse !",
            "I'm interested, what are the next steps?",
            "We need something to handle follow-ups",
            "ASAP please, we're losing deals every week.",
            "We already have a CRM but we're struggling with follow-up",
            "Need: automated follow-up for trade show leads",
            "Notre problème c'est le suivi des leads",
            "our lead follow-up is a disaster",
            "half our inbound requests never get a reply",
            "We're currently evaluating options",
            "On a un vrai souci de relance, personne ne rappelle.",
            "On n'a plus le temps de rappeler tous nos prospects.",
            "We have 2 reps and they spend hours chasing leads manually.",
            "Interested! What's the next step?",
        ] {
            assert_eq!(need(text), Some(true), "{text:?}");
        }
    }

    #[test]
    fn no_need() {
        for text in [
            "we don't need it",
            "Pas besoin, on est déjà équipés.",
            "We already have a tool and we're happy with it.",
            "We signed with a competitor last month",
            "On a déjà signé avec un concurrent.",
            "Nous sommes satisfaits de notre solution actuelle",
            "nous travaillons déjà avec un prestataire dont nous sommes satisfaits",
            "On a aucun budget pour ça et aucun besoin.",
            "we're not looking for a new tool",
            "no need, thanks",
            "We're locked into a 2-year contract with another vendor.",
            "Thanks but we'll stick with what we have.",
            "we just renewed our contract with Salesforce",
            "We already switched to a competitor in January.",
            "Nous utilisons déjà Pipedrive et ça nous convient.",
            "We're happy with HubSpot for now.",
            "On a notre propre outil développé en interne, merci.",
        ] {
            assert_eq!(need(text), Some(false), "{text:?}");
        }
    }

    #[test]
    fn other_uses_of_need_say_nothing() {
        for text in [
            "I need to check with my boss",
            "No need to ask anyone, I'm the one who decides.",
            "pas besoin de valider avec mon associé",
            "J'ai besoin de réfléchir et d'en parler à mon associé.",
            "we'd like a demo",
            "I need some information about pricing",
            "Not interested, thanks.",
            "Sorry, I missed your call",
            "pas besoin de me rappeler",
            "ça ne nous intéresse pas",
            "ça m'intéresse pas du tout",
            "I'm not sure we need this, to be honest.",
            "We're happy with your proposal",
            "We'd like to start in September",
            "",
        ] {
            assert_eq!(need(text), None, "{text:?}");
        }
    }
}
