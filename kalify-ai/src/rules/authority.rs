//! Authority extraction: whether the prospect decides, needs someone's
//! approval, or takes no part in the decision.
//!
//! A statement that the prospect takes no part ("I'm not the right
//! person", "je ne m'occupe pas de ça") wins over everything else. Otherwise
//! the last statement wins, because a later clause usually corrects an
//! earlier one: "I'm the CEO but the board decides" needs approval. A need
//! for approval that is negated ("I don't need to check with my boss",
//! "pas besoin de valider avec mon associé") makes the prospect a decision
//! maker.

use regex::Regex;

use kalify_core::qualification::Authority;

use super::matching::{Found, any_of, clause_start, compile, is_negated};
use super::normalise::Normalised;

/// People and bodies whose approval a prospect may need.
const APPROVERS: &[&str] = &[
    r"boss(?:es)?",
    r"manager",
    r"ceo",
    r"cfo",
    r"cto",
    r"coo",
    r"cmo",
    r"md",
    r"vp",
    r"director",
    r"directors",
    r"board",
    r"partners?",
    r"co-?founders?",
    r"associates?",
    r"team",
    r"management",
    r"supervisor",
    r"owner",
    r"superiors?",
    r"higher[- ]?ups",
    r"finance(?: team)?",
    r"procurement",
    r"purchasing",
    r"legal",
    r"head office",
    r"hq",
    r"committee",
    r"accountant",
    r"president",
    r"wife",
    r"husband",
    r"head(?: of \w+)?",
    r"directeur",
    r"directrice",
    r"patronne?",
    r"chef",
    r"responsable",
    r"n\+[12]",
    r"associee?s?",
    r"daf",
    r"dg",
    r"pdg",
    r"direction",
    r"comite",
    r"conseil",
    r"hierarchie",
    r"superieure?",
    r"gerante?",
    r"presidente?",
    r"equipe",
    r"achats",
    r"comptable",
    r"femme",
    r"mari",
    r"collegues?",
    r"cofondat\w+",
    r"co-fondat\w+",
    r"actionnaires?",
    r"siege",
];

/// The compiled authority patterns.
#[derive(Debug)]
pub(crate) struct AuthorityPatterns {
    decision_maker: Regex,
    title: Regex,
    needs_approval: Regex,
    no_part: Regex,
}

impl AuthorityPatterns {
    /// Compiles the patterns.
    pub(crate) fn new() -> Result<Self, regex::Error> {
        let approvers = any_of(APPROVERS);
        let decision_maker = compile(&format!(
            r"\b(?:{})\b",
            [
                // English
                r"i (?:alone |solely |personally |usually )?(?:decide|make (?:all )?(?:the )?(?:final )?(?:decisions?|calls?)|sign off|sign the (?:contracts?|checks|cheques|deals?|po)|approve (?:all|the|purchases|budgets?|spending)|have the (?:final|last) (?:say|word)|own (?:the|this|my) (?:company|business|budget|agency)|control the budget|hold the budget|call the shots)",
                r"i(?:'m| am|m) (?:the )?(?:sole |main |final |only )?(?:decision[- ]?maker|one who (?:decides|signs)|person who decides|one making the (?:decision|call))",
                r"i(?:'m| am|m) the only one (?:who (?:decides|signs)|deciding|to decide|making (?:the )?decisions?)",
                r"i(?:'m| am|m) (?:the |a )?(?:ceo|owner|founder|co-?founder|managing director|md|general manager|president|business owner|sole trader|proprietor)",
                r"(?:make|take) the (?:final )?(?:call|decision) (?:myself|alone|on my own)",
                r"decide (?:myself|alone|on my own|by myself)",
                r"(?:just|only) me (?:deciding|who decides|making the decisions?)",
                r"(?:it'?s|it is|that'?s) (?:all )?(?:my|up to me)(?: call| decision)?",
                r"(?:the )?decision is mine",
                r"i run (?:a|an|the|this|my|our) (?:[\w-]+ ){0,2}(?:company|business|shop|agency|firm|store|studio|practice)",
                r"(?:don'?t|do not) need (?:anyone'?s |anybody'?s |any )?(?:approval|permission|sign-?off)",
                r"no need to (?:ask|check with|consult) (?:anyone|anybody)",
                // French
                r"c'?est moi qui (?:decide|signe|valide|tranche|choisis)",
                r"(?:je|j) (?:decide|signe|tranche)(?: seule?)?",
                r"(?:je suis|jsuis|j'suis|chuis) (?:le |la |l')?(?:seule? |unique )?(?:decisionnaire|decideur|decideuse|gerante?|dirigeante?|patronne?|fondat(?:eur|rice)|co-?fondat(?:eur|rice)|pdg|dg|directeur general|directrice generale|presidente?|proprietaire|chef d'entreprise|boss)",
                r"la decision (?:finale )?(?:me revient|m'appartient|est (?:a|pour) moi)",
                r"je suis (?:le |la )?seule? a (?:decider|signer|trancher|valider)",
                r"j'ai le (?:dernier mot|pouvoir de decision|pouvoir de decider)",
                r"c'est (?:ma decision|moi le patron|moi le boss|moi le decisionnaire|ma boite|mon entreprise|ma societe)",
                r"je gere (?:seule?|le budget)",
                r"pas besoin (?:de |d')(?:demander|valider|l'accord|l'aval|autorisation|l'autorisation)",
                r"je n'ai (?:besoin de |a )?demander (?:a )?personne",
            ]
            .join("|")
        ))?;
        let needs_approval = compile(&format!(
            r"\b(?:{})\b",
            [
                // English
                &format!(
                    r"(?:check|talk|speak|discuss|run (?:it|this|that) (?:by|past)|clear (?:it|this|that)|confirm|validate|consult|ask|loop in|involve|bring in|get buy-in from|get (?:it|this|that) approved|get approval|get (?:the )?(?:green light|sign-?off|ok|okay))(?: (?:it|this|that|about it|about this|first|internally|quickly))?\s+(?:(?:with|to|by|past|from) )?(?:my|our|the|his|her) (?:\w+ )?{approvers}"
                ),
                r"needs? (?:to be )?(?:approval|approved|sign-?off|signed off|validat(?:ed|ion)|the green light|a green light|the go-ahead)",
                &format!(
                    r"(?:the|my|our|his|her) (?:\w+ )?{approvers} (?:\w+ )?(?:decides?|makes? (?:the|these|those|all|such|final) (?:final )?(?:decisions?|calls?)|has the (?:final|last) (?:say|word)|signs? off|approves?|will decide|is the decision[- ]?maker|(?:will |would )?(?:have|has|must|needs?|will need) to (?:approve|sign(?: off)?|decide|agree|validate|ok|okay))"
                ),
                &format!(r"(?:need|needs|'d need|would need|will need) (?:my|our|the) (?:\w+ )?{approvers} to (?:agree|approve|sign|validate|ok|okay|decide)"),
                r"(?:check|talk|speak|discuss|run (?:it|this|that) (?:by|past)|clear (?:it|this|that)|consult|ask|loop in|involve)(?: (?:it|this|that|about it|about this|first|internally))?\s+(?:(?:with|to|by|past|from) )?(?:legal|finance|procurement|management|purchasing|accounting|hr)",
                &format!(r"decision (?:will be|is|has to be|must be|gets) (?:made|taken) by (?:my|our|the) (?:\w+ )?{approvers}"),
                &format!(r"(?:decisions?|purchases|purchasing|spending|anything)(?: \w+){{0,3}} (?:go|goes|has to go|have to go|must go|runs?) (?:through|via|past|by) (?:my|our|the) (?:\w+ )?{approvers}"),
                r"(?:my|our|the) (?:boss|manager|ceo|cfo|director|board|partners?|owner|wife|husband) does",
                r"i (?:don'?t|do not|dont|can'?t|cannot) decide(?: alone| on my own| by myself)?",
                r"(?:it'?s|it is|that'?s) not (?:only |just )?(?:my|up to me)(?: call| decision)?",
                r"not (?:my|up to me) (?:call|decision)(?: alone)?",
                r"i(?:'m| am|m) not the (?:only |sole |final |main )?decision[- ]?maker",
                r"i (?:just|only) (?:recommend|advise|make recommendations)",
                // French
                &format!(
                    r"(?:en )?(?:parler|parle|discuter|discute|valider|valide|voir|vois|voie|verifier|verifie|consulter|consulte|demander|demande|soumettre|presenter|referer|checker|definir|decider|arbitrer|fixer|determiner)(?: (?:ca|cela|le projet|le sujet|d'abord|en interne|encore|tout ca))?\s+(?:avec|a|au|aux|aupres de|aupres du|par)\s+(?:mon |ma |mes |notre |nos |le |la |les |l')?{approvers}"
                ),
                r"(?:il (?:me |nous )?faut|il faudra|il faudrait|besoin de|necessite|soumis a|sous reserve de) (?:l'accord|l'aval|la validation|le feu vert|l'autorisation|la signature|le go)",
                &format!(r"(?:validation|accord|aval|feu vert|signature|approbation|go) (?:de|du|des|par)\s+(?:mon |ma |mes |notre |nos |le |la |les |l')?{approvers}"),
                r"pas moi qui (?:decide|signe|valide|tranche)",
                &format!(r"la decision (?:finale )?(?:revient|appartient|incombe) (?:a|au|aux) (?:mon |ma |mes |notre |nos |la |le |l')?{approvers}"),
                &format!(r"(?:la )?decision (?:sera|est|doit etre) prise par (?:mon |ma |mes |notre |nos |la |le |les |l')?{approvers}"),
                &format!(
                    r"(?:mon|ma|le|la|notre|nos|mes|les) {approvers} (?:\w+ )?(?:decide|decident|tranche|tranchent|valide|valident|signe|signent|a le dernier mot|doit valider|doivent valider)"
                ),
                r"je ne (?:decide|signe) pas(?: seule?)?",
                r"je (?:ne )?suis pas (?:le |la )?(?:seule? )?(?:decisionnaire|decideur|decideuse)",
                r"je ne decide pas seule?",
            ]
            .join("|")
        ))?;
        let no_part = compile(&format!(
            r"\b(?:{})\b",
            [
                // English
                r"not the (?:right|correct|best|appropriate) (?:person|contact|guy|people|one)",
                r"wrong (?:person|contact|guy|number)",
                r"i(?:'m| am|m) (?:just |only )?(?:an? )?(?:intern|receptionist|temp|trainee)",
                r"je (?:ne )?suis (?:que |qu')?(?:un |une |l')?(?:stagiaire|alternante?|standardiste|interimaire|assistante?|secretaire)",
                r"i(?:'m| am|m) (?:just |only )the (?:assistant|receptionist|intern)",
                r"i(?:'m| am|m) not (?:in charge of|responsible for|involved in|the one who handles|handling) (?:this|that|it|these|purchasing|marketing|sales)",
                r"not (?:my|our) (?:department|area|job|role|responsibility|field|remit)",
                r"i (?:don'?t|do not|dont) (?:handle|deal with|take care of|manage|work on|look after) (?:this|that|these|those|it|purchasing|sales|marketing)",
                r"(?:i|we) (?:have|has) nothing to do with",
                r"i (?:no longer|don'?t) work (?:there|at|for|with|here)",
                r"i left (?:the|this) company",
                r"no longer with (?:the|this) company",
                r"(?:i|we) (?:have|got) no say",
                // French
                r"je ne m'(?:en )?occupe (?:pas|plus)",
                r"je ne (?:me charge|gere|traite) (?:pas|plus) (?:de )?(?:ca|cela|ces|ce sujet|ce genre|cette partie|les achats)",
                r"je ne suis (?:pas|plus) (?:la bonne personne|le bon interlocuteur|la bonne interlocutrice|concernee?|en charge|responsable)",
                r"pas (?:la bonne personne|le bon interlocuteur|la bonne interlocutrice|mon domaine|mon service|mon role|de mon ressort|mon rayon)",
                r"mauvaise personne",
                r"mauvais interlocuteur",
                r"je n'ai (?:rien a voir|aucun pouvoir|pas mon mot a dire|aucun role)",
                r"je ne travaille (?:plus|pas) (?:dans|chez|pour|ici|la)",
                r"je n'(?:y )?(?:suis|travaille) plus",
            ]
            .join("|")
        ))?;
        let title = compile(
            r"^(?:i(?:'m| am|m)|je suis|jsuis|j'suis|chuis) (?:the |a |le |la |l')?(?:ceo|owner|founder|co-?founder|managing director|md|general manager|president|business owner|sole trader|proprietor|gerante?|dirigeante?|patronne?|fondat(?:eur|rice)|co-?fondat(?:eur|rice)|pdg|dg|directeur general|directrice generale|presidente?|proprietaire|chef d'entreprise|boss)$",
        )?;
        Ok(AuthorityPatterns {
            decision_maker,
            title,
            needs_approval,
            no_part,
        })
    }

    /// Finds the prospect's role in the decision.
    pub(crate) fn find(&self, text: &Normalised) -> Option<Found<Authority>> {
        let text = text.text.as_str();
        if let Some(found) = self.no_part.find(text) {
            return Some(Found {
                value: Authority::None,
                range: found.range(),
                confidence: 0.85,
            });
        }

        let mut statements: Vec<Found<Authority>> = Vec::new();
        for found in self.decision_maker.find_iter(text) {
            // A job title alone is weaker evidence than "I decide".
            let confidence = if self.title.is_match(found.as_str()) {
                0.75
            } else {
                0.9
            };
            statements.push(Found {
                value: Authority::DecisionMaker,
                range: found.range(),
                confidence,
            });
        }
        for found in self.needs_approval.find_iter(text) {
            let value = if is_negated(text, clause_start(text, found.start()), found.start()) {
                Authority::DecisionMaker
            } else {
                Authority::NeedsApproval
            };
            statements.push(Found {
                value,
                range: found.range(),
                confidence: 0.85,
            });
        }
        statements
            .into_iter()
            .max_by_key(|statement| statement.range.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(text: &str) -> Option<Authority> {
        AuthorityPatterns::new()
            .unwrap()
            .find(&Normalised::new(text))
            .map(|found| found.value)
    }

    #[test]
    fn decision_makers() {
        for text in [
            "I'm the CTO and I decide",
            "I sign off on all software purchases",
            "c'est moi qui décide",
            "Je suis le gérant",
            "je suis la directrice générale, la décision m'appartient",
            "jsuis le patron je decide seul",
            "It's my call",
            "I'm the owner",
            "No need to ask anyone, I'm the one who decides.",
            "I don't need to check with my boss",
            "pas besoin de valider avec mon associé",
            "Je suis décisionnaire",
            "Je suis le seul à décider ici.",
            "I'm the only one who decides",
            "I'm the MD here, happy to make the call myself",
            "I run a 3-person agency so it's just me deciding.",
        ] {
            assert_eq!(authority(text), Some(Authority::DecisionMaker), "{text:?}");
        }
    }

    #[test]
    fn needs_approval() {
        for text in [
            "je dois valider avec mon directeur",
            "I need to check with my boss",
            "the board decides",
            "The board makes the final decision.",
            "il faut l'accord de la DAF",
            "i need to talk to my manager about it",
            "I dont decide, my boss does.",
            "Our CFO signs off on budgets",
            "need approval from our MD first",
            "c pas moi qui decide, c mon patron",
            "il faut que j'en parle à mon associé",
            "validation par le comité de direction",
            "faut voir avec le dg",
            "je dois en discuter avec mon boss",
            "I'm the CEO but the board decides",
            "je ne suis pas le décisionnaire",
            "Our sales manager will have to sign off",
            "I'd need my business partner to agree",
            "purchasing decisions go through our COO",
            "la décision finale revient à notre DG",
            "We'd need to loop in our head of IT before committing.",
            "We need to talk to legal before signing anything.",
            "Our boss makes these calls, I'll forward it.",
            "Faut que je voie avec mon associée.",
            "La décision sera prise par le conseil d'administration.",
            "Budget à définir avec la direction.",
        ] {
            assert_eq!(authority(text), Some(Authority::NeedsApproval), "{text:?}");
        }
    }

    #[test]
    fn takes_no_part() {
        for text in [
            "I'm not the right person",
            "je ne m'occupe pas de ça",
            "Je ne suis pas la bonne personne.",
            "Je ne travaille plus dans cette société.",
            "Not my department, sorry",
            "I'm not the right person, my boss decides",
            "I'm just an intern here",
            "wrong number",
            "Je ne suis que l'assistante, je transmets à M. Durand.",
        ] {
            assert_eq!(authority(text), Some(Authority::None), "{text:?}");
        }
    }

    #[test]
    fn nothing_stated() {
        for text in [
            "",
            "We have 50 employees",
            "voyez avec ma collègue",
            "I'm the CTO",
            "bonjour",
            "je valide le rendez-vous",
        ] {
            assert_eq!(authority(text), None, "{text:?}");
        }
    }

    #[test]
    fn titles_are_weaker_evidence() {
        let patterns = AuthorityPatterns::new().unwrap();
        let confidence = |text: &str| {
            patterns
                .find(&Normalised::new(text))
                .map(|found| found.confidence)
        };
        assert_eq!(confidence("I'm the CEO"), Some(0.75));
        assert_eq!(confidence("je suis le gérant"), Some(0.75));
        assert_eq!(confidence("I'm the MD"), Some(0.75));
        assert_eq!(confidence("c'est moi qui décide"), Some(0.9));
        assert_eq!(confidence("Je suis décisionnaire"), Some(0.9));
    }

    #[test]
    fn later_statement_wins() {
        assert_eq!(
            authority("I need to check with my boss, but in the end I decide"),
            Some(Authority::DecisionMaker)
        );
        assert_eq!(
            authority("Je suis le gérant mais je dois valider avec mon associé"),
            Some(Authority::NeedsApproval)
        );
    }
}
