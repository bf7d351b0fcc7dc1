//! Language detection by word evidence: common English and French function
//! words, plus French accented letters in the original text.

use kalify_core::prospect::Locale;

/// Frequent English words that are not also French words.
const ENGLISH: &[&str] = &[
    "the",
    "and",
    "i",
    "we",
    "you",
    "is",
    "are",
    "not",
    "to",
    "of",
    "it",
    "my",
    "our",
    "for",
    "with",
    "have",
    "has",
    "need",
    "yes",
    "no",
    "thanks",
    "thank",
    "please",
    "this",
    "that",
    "don't",
    "dont",
    "can",
    "would",
    "will",
    "about",
    "what",
    "how",
    "when",
    "who",
    "why",
    "call",
    "be",
    "do",
    "does",
    "at",
    "in",
    "just",
    "but",
    "so",
    "if",
    "your",
    "us",
    "am",
    "was",
    "were",
    "get",
    "want",
    "like",
    "next",
    "month",
    "year",
    "week",
    "interested",
    "hi",
    "hello",
    "hey",
    "sorry",
    "right",
    "now",
    "team",
    "boss",
    "start",
    "already",
    "i'm",
    "we're",
    "it's",
    "there",
    "out",
    "up",
    "any",
    "some",
    "more",
    "all",
    "an",
    "or",
    "by",
    "from",
    "they",
    "he",
    "she",
    "im",
    "we'd",
    "i'd",
    "let's",
    "could",
    "should",
    "send",
    "talk",
    "person",
    "give",
    "price",
    "pricing",
    "cost",
    "sure",
    "tell",
    "leave",
    "alone",
    "pls",
    "unsubscribe",
    "tbd",
    "wrong",
    "number",
    "quit",
    "spamming",
    "texting",
    "messaging",
];

/// Frequent French words that are not also English words.
const FRENCH: &[&str] = &[
    "le",
    "la",
    "les",
    "de",
    "des",
    "du",
    "et",
    "je",
    "nous",
    "vous",
    "est",
    "pas",
    "pour",
    "avec",
    "une",
    "un",
    "mon",
    "ma",
    "mes",
    "notre",
    "nos",
    "oui",
    "non",
    "merci",
    "bonjour",
    "c'est",
    "ce",
    "ca",
    "cette",
    "qui",
    "que",
    "ne",
    "au",
    "aux",
    "dans",
    "sur",
    "tres",
    "bien",
    "mais",
    "ou",
    "il",
    "elle",
    "ils",
    "sont",
    "suis",
    "avons",
    "avez",
    "faut",
    "besoin",
    "peut",
    "moi",
    "plus",
    "qu'il",
    "j'ai",
    "n'est",
    "c'",
    "l'",
    "d'",
    "j'",
    "m'",
    "n'",
    "qu'",
    "s'",
    "y",
    "en",
    "salut",
    "svp",
    "stp",
    "rdv",
    "mois",
    "annee",
    "demain",
    "semaine",
    "cordialement",
    "desole",
    "parler",
    "appelez",
    "rappelez",
    "interesse",
    "equipe",
    "jsuis",
    "c",
    "euros",
    "budjet",
    "combien",
    "tarif",
    "tarifs",
    "quand",
    "ht",
    "ttc",
    "mensuel",
    "par",
];

/// Detects the language of `texts`: the original messages and their
/// normalised forms. `None` when the evidence is absent or tied.
pub(crate) fn detect<'a>(texts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Locale> {
    let mut english = 0.0_f64;
    let mut french = 0.0_f64;
    for (original, normalised) in texts {
        for word in normalised
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|word| !word.is_empty())
            .take(2_000)
        {
            let (head, _) = split_elision(word);
            if ENGLISH.contains(&word) {
                english += 1.0;
            }
            if FRENCH.contains(&word) || (head != word && FRENCH.contains(&head)) {
                french += 1.0;
            }
        }
        let accents = original
            .chars()
            .filter(|c| "éèêëàâçùûîïôœÉÈÊÀÇ".contains(*c))
            .take(4)
            .count();
        french += 0.5 * accents as f64;
    }
    if english > french {
        Some(Locale::En)
    } else if french > english {
        Some(Locale::Fr)
    } else {
        None
    }
}

/// Splits a French elision such as "j'ai" into "j'" and "ai".
fn split_elision(word: &str) -> (&str, &str) {
    match word.find('\'') {
        Some(index) if index <= 3 => word.split_at(index + 1),
        _ => (word, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::normalise::Normalised;

    fn language(text: &str) -> Option<Locale> {
        let normalised = Normalised::new(text);
        detect([(text, normalised.text.as_str())])
    }

    #[test]
    fn detects_languages() {
        assert_eq!(language("Non merci, pas maintenant."), Some(Locale::Fr));
        assert_eq!(
            language("je dois valider avec mon directeur"),
            Some(Locale::Fr)
        );
        assert_eq!(language("Combien ça coûte ?"), Some(Locale::Fr));
        assert_eq!(language("I need to check with my boss"), Some(Locale::En));
        assert_eq!(
            language("Hi Léa, thanks for reaching out, we are a small team."),
            Some(Locale::En)
        );
        assert_eq!(
            language("Give me a call on 0207 946 0958."),
            Some(Locale::En)
        );
        assert_eq!(
            language("On est 50 salariés et on reçoit environ 300 demandes par mois."),
            Some(Locale::Fr)
        );
    }

    #[test]
    fn unknown_without_evidence() {
        assert_eq!(language(""), None);
        assert_eq!(language("👍"), None);
        assert_eq!(language("ASAP"), None);
        assert_eq!(language("12 000"), None);
    }
}
