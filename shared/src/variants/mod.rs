//! Rule-based paraphrases of closed yes/no questions (`radlens variants`): pure text rules, no
//! I/O, so the dashboard can run them too.
//!
//! Brief overview:
//! - [`Frame::parse`] reads the question forms the rules understand: "Is/Are there X [in this
//!   image]?", "[In this image,] is there X?", "Is X present/seen/visible [...]?", "Does the
//!   image show X?" and "Any X?". X is the finding phrase, kept as written.
//! - [`Strategy`]: synonym (the [`lexicon`]), reorder (the location clause moves to the other
//!   end), hedge ("Could there be X?"), register (clinical: "Is there radiographic evidence of
//!   X?") and negation ([`NegationRule`]: polarity -1, so the correct answer inverts).
//! - [`generate`] applies the chosen strategies; a rule that cannot make a grammatical question
//!   returns a [`Skip`] with its reason instead of a bad sentence. Choices between alternatives
//!   are a hash of (seed, question, strategy): the same inputs give the same variants.

pub mod lexicon;

use crate::answer::is_yes_no_question;
use lexicon::{Phrase, SYNONYMS, article_for};

/// A rephrasing strategy; its `name` is what the study CSV's `strategy` column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    Synonym,
    Reorder,
    Hedge,
    Register,
    Negation,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [Strategy::Synonym, Strategy::Reorder, Strategy::Hedge, Strategy::Register, Strategy::Negation];

    /// The `strategy` column value (the demo CSV's vocabulary where it has one).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Synonym => "synonym replacement",
            Strategy::Reorder => "clause reordering",
            Strategy::Hedge => "hedging",
            Strategy::Register => "register shift",
            Strategy::Negation => "negation",
        }
    }

    /// The flag spelling (`--strategies synonym,reorder,...`).
    pub fn flag(self) -> &'static str {
        match self {
            Strategy::Synonym => "synonym",
            Strategy::Reorder => "reorder",
            Strategy::Hedge => "hedge",
            Strategy::Register => "register",
            Strategy::Negation => "negation",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|k| k.flag() == s.trim().to_lowercase())
    }
}

/// A negation template. Every rule asks whether the finding is *absent*, so the correct answer
/// is the base answer inverted (`polarity = -1`): "yes" exactly when the finding is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegationRule {
    /// "Can X be ruled out [in this image]?"
    RuledOut,
    /// "Is/Are X absent [in this image]?"
    Absent,
    /// "Is this image free of X?" (X without its article)
    FreeOf,
}

impl NegationRule {
    pub const ALL: [NegationRule; 3] = [NegationRule::RuledOut, NegationRule::Absent, NegationRule::FreeOf];

    /// Every negation rule inverts the truth.
    pub fn polarity(self) -> i8 {
        -1
    }
}

/// One written variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub question: String,
    pub strategy: Strategy,
    /// 1: same meaning as the base; -1: negated, the correct answer inverts.
    pub polarity: i8,
}

/// Why a strategy wrote nothing for a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// The question is not in a form the structural rules know.
    FormNotRecognised,
    /// The question already negates its finding; a second negation would not read cleanly.
    AlreadyNegated,
    /// No lexicon phrase occurs in the question.
    NoLexiconTerm,
    /// Reordering needs a location clause ("in this chest X-ray") to move.
    NoClauseToMove,
    /// The result is the base question or an earlier variant again.
    Duplicate,
    /// The result is not a closed yes/no question by radlens' rule.
    NotYesNo,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::FormNotRecognised => "question form not recognised",
            Skip::AlreadyNegated => "question already negated",
            Skip::NoLexiconTerm => "no lexicon term in the question",
            Skip::NoClauseToMove => "no location clause to move",
            Skip::Duplicate => "same as the base or an earlier variant",
            Skip::NotYesNo => "result is not a yes/no question",
        }
    }
}

/// How the base question asks about its finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// "Is/Are there X?"
    ThereIs,
    /// "Is/Are X present/seen/visible?" (the adjective kept)
    Predicate(&'static str),
    /// "Does the image show X?"
    Shows,
    /// "Any X?"
    Any,
}

/// A closed question taken apart: `subject` is the finding phrase as written ("a pleural
/// effusion"), `location` the clause naming the image ("in this chest X-ray"), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub form: Form,
    pub subject: String,
    pub plural: bool,
    pub location: Option<String>,
    /// The location clause came first ("In this image, is there X?").
    pub location_first: bool,
}

const IMAGE_NOUNS: &[&str] =
    &["chest x-ray", "chest radiograph", "chest film", "x-ray", "radiograph", "image", "film", "study", "scan", "cxr", "picture"];
const NEGATION_WORDS: &[&str] = &["no", "not", "without", "absent", "free", "excluded", "ruled", "never", "none"];
const PREDICATES: &[&str] = &["present", "seen", "visible", "evident"];

fn words_lower(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-')).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Whether `clause` is "in|on the|this <image noun>".
fn is_location(clause: &str) -> bool {
    let lower = clause.trim().to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("in ").or_else(|| lower.strip_prefix("on ")) else { return false };
    let Some(noun) = rest.strip_prefix("this ").or_else(|| rest.strip_prefix("the ")) else { return false };
    IMAGE_NOUNS.contains(&noun.trim())
}

/// Splits a trailing location clause off `text` ("a nodule in this image" -> ("a nodule", Some)).
fn split_location(text: &str) -> (String, Option<String>) {
    let lower = text.to_ascii_lowercase();
    for sep in [" in ", " on "] {
        if let Some(at) = lower.rfind(sep) {
            let clause = &text[at + 1..];
            if is_location(clause) {
                return (text[..at].trim().to_string(), Some(clause.trim().to_string()));
            }
        }
    }
    (text.trim().to_string(), None)
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    (text.len() >= prefix.len() && text.is_char_boundary(prefix.len()) && text[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &text[prefix.len()..])
}

impl Frame {
    /// Reads `question` in one of the known forms; `None` for anything else.
    pub fn parse(question: &str) -> Option<Frame> {
        let text = question.trim().trim_end_matches(|c: char| c == '?' || c == '.' || c.is_whitespace());
        let (front, body) = match text.split_once(',') {
            Some((front, body)) if is_location(front) => (Some(front.trim().to_string()), body.trim()),
            Some(_) => return None,
            None => (None, text),
        };
        let (form, plural, rest) = if let Some(rest) = strip_prefix_ci(body, "is there ") {
            (Form::ThereIs, false, rest)
        } else if let Some(rest) = strip_prefix_ci(body, "are there ") {
            (Form::ThereIs, true, rest)
        } else if let Some(rest) = strip_prefix_ci(body, "any ") {
            (Form::Any, false, rest)
        } else if let Some(rest) = ["does the ", "does this "].iter().find_map(|p| strip_prefix_ci(body, p)) {
            let noun = IMAGE_NOUNS.iter().find(|n| strip_prefix_ci(rest, &format!("{n} show ")).is_some())?;
            (Form::Shows, false, strip_prefix_ci(rest, &format!("{noun} show "))?)
        } else {
            let (plural, rest) = match (strip_prefix_ci(body, "is "), strip_prefix_ci(body, "are ")) {
                (Some(r), _) => (false, r),
                (_, Some(r)) => (true, r),
                _ => return None,
            };
            let (core, location) = split_location(rest);
            let lower = core.to_ascii_lowercase();
            let pred = PREDICATES.iter().find(|p| lower.ends_with(&format!(" {p}")))?;
            let subject = core[..core.len() - pred.len() - 1].trim().to_string();
            let first = front_first(&front, &location);
            return Frame::build(Form::Predicate(pred), subject, plural, front.or(location), first);
        };
        let (subject, location) = split_location(rest);
        Frame::build(form, subject, plural, front.clone().or(location.clone()), front_first(&front, &location))
    }

    fn build(form: Form, subject: String, plural: bool, location: Option<String>, location_first: bool) -> Option<Frame> {
        if subject.is_empty() || words_lower(&subject).iter().any(|w| matches!(w.as_str(), "or" | "which" | "where" | "what")) {
            return None;
        }
        // Stored lower-case-first so that the clause reads right at either end.
        let location = location.map(|l| {
            let mut chars = l.chars();
            chars.next().map_or(String::new(), |c| c.to_lowercase().chain(chars).collect())
        });
        Some(Frame { form, subject, plural, location, location_first })
    }

    fn negated(&self) -> bool {
        words_lower(&self.subject).iter().any(|w| NEGATION_WORDS.contains(&w.as_str()))
    }

    fn aux(&self) -> &'static str {
        if self.plural { "are" } else { "is" }
    }

    /// The finding itself: the subject without "evidence of" / "signs of" or a leading "any"
    /// ("evidence of a pneumothorax" -> "a pneumothorax"), so that rules which add their own
    /// frame do not stack two ("radiographic evidence of evidence of ...", "Are any nodules
    /// absent?", which asks something else).
    fn core_subject(&self) -> &str {
        let mut s = self.subject.as_str();
        for prefix in ["radiographic evidence of ", "evidence of ", "signs of ", "any "] {
            if let Some(rest) = strip_prefix_ci(s, prefix) {
                s = rest;
            }
        }
        s
    }

    /// The finding without its article ("a pleural effusion" -> "pleural effusion").
    fn bare_subject(&self) -> &str {
        let core = self.core_subject();
        for article in ["a ", "an ", "the "] {
            if let Some(rest) = strip_prefix_ci(core, article) {
                return rest;
            }
        }
        core
    }

    fn with_location(&self, sentence: &str) -> String {
        match &self.location {
            Some(loc) => format!("{sentence} {loc}"),
            None => sentence.to_string(),
        }
    }

    /// The base question's core, with its location clause at the other end.
    fn reordered(&self) -> Result<String, Skip> {
        let loc = self.location.as_deref().ok_or(Skip::NoClauseToMove)?;
        let core = match self.form {
            Form::ThereIs => format!("{} there {}", self.aux(), self.subject),
            Form::Predicate(p) => format!("{} {} {p}", self.aux(), self.subject),
            Form::Any => format!("any {}", self.subject),
            // "Does the image show X in this image?" has its location in the verb already.
            Form::Shows => return Err(Skip::NoClauseToMove),
        };
        Ok(if self.location_first { format!("{core} {loc}") } else { format!("{loc}, {core}") })
    }

    fn hedged(&self) -> String {
        self.with_location(&format!("could there be {}", self.subject))
    }

    /// The clinical register; `pick` chooses one of two templates.
    fn clinical(&self, pick: u64) -> String {
        if pick.is_multiple_of(2) {
            self.with_location(&format!("is there radiographic evidence of {}", self.core_subject()))
        } else {
            format!("does the radiograph demonstrate {}", self.core_subject())
        }
    }

    /// The question asking whether the finding is absent.
    pub fn negation(&self, rule: NegationRule) -> Result<String, Skip> {
        if self.negated() {
            return Err(Skip::AlreadyNegated);
        }
        Ok(match rule {
            NegationRule::RuledOut => self.with_location(&format!("can {} be ruled out", self.core_subject())),
            NegationRule::Absent => self.with_location(&format!("{} {} absent", self.aux(), self.core_subject())),
            NegationRule::FreeOf => {
                let image = self
                    .location
                    .as_deref()
                    .and_then(|loc| loc.split_once(' ').map(|(_, rest)| rest.to_string()))
                    .unwrap_or_else(|| "the image".to_string());
                format!("is {image} free of {}", self.bare_subject())
            }
        })
    }
}

fn front_first(front: &Option<String>, trailing: &Option<String>) -> bool {
    front.is_some() && trailing.is_none()
}

/// FNV-1a over the seed and the texts: a stable choice that needs no RNG state.
fn pick(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// No letter or digit just before `at` (a word may start there).
fn starts_word(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric())
}

/// No letter or digit at `at` (a word may end there).
fn ends_word(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_none_or(|c| !c.is_alphanumeric())
}

/// Swaps one lexicon phrase for a synonym from its group, fixing the article.
pub fn synonym_swap(question: &str, seed: u64) -> Result<String, Skip> {
    let lower = question.to_ascii_lowercase();
    // (start, end, group, phrase) of every whole-word occurrence.
    let mut found: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (g, group) in SYNONYMS.iter().enumerate() {
        for (p, phrase) in group.iter().enumerate() {
            let needle = phrase.text.to_ascii_lowercase();
            let mut from = 0;
            while let Some(i) = lower[from..].find(&needle) {
                let (s, e) = (from + i, from + i + needle.len());
                if starts_word(&lower, s) && ends_word(&lower, e) {
                    found.push((s, e, g, p));
                }
                from = s + 1;
            }
        }
    }
    // A match inside a longer one ("mass" in "mass lesion") is not a term of its own.
    let kept: Vec<_> = found.iter().copied().filter(|a| !found.iter().any(|b| b != a && b.0 <= a.0 && a.1 <= b.1)).collect();
    if kept.is_empty() {
        return Err(Skip::NoLexiconTerm);
    }
    let (s, e, g, p) = kept[(pick(seed, &[question, "synonym"]) % kept.len() as u64) as usize];
    let others: Vec<&Phrase> = SYNONYMS[g].iter().enumerate().filter(|(i, _)| *i != p).map(|(_, ph)| ph).collect();
    let to = others[(pick(seed, &[question, "synonym-to"]) % others.len() as u64) as usize];
    // The article before the term, if any, is rewritten for the new phrase.
    let before = &question[..s];
    let article_start = ["a ", "an "].iter().find_map(|a| {
        let cut = before.len().checked_sub(a.len())?;
        (before.is_char_boundary(cut) && before[cut..].eq_ignore_ascii_case(a) && starts_word(question, cut)).then_some(cut)
    });
    let from = SYNONYMS[g][p];
    let (start, replacement) = match article_start {
        Some(cut) if to.countable => (cut, format!("{} {}", article_for(to.text), to.text)),
        Some(cut) => (cut, to.text.to_string()),
        // "Is there cardiomegaly?" -> "Is there an enlarged heart?", not "there enlarged heart".
        None if to.countable && !from.countable => (s, format!("{} {}", article_for(to.text), to.text)),
        None => (s, to.text.to_string()),
    };
    Ok(format!("{}{}{}", &question[..start], replacement, &question[e..]))
}

/// Capital first letter, one question mark, single spaces.
fn finish(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let core = joined.trim_end_matches(['?', '.', ' ']);
    let mut chars = core.chars();
    match chars.next() {
        Some(first) => format!("{}{}?", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The variant `strategy` makes of `question`, or why it makes none.
pub fn apply(question: &str, strategy: Strategy, seed: u64) -> Result<Variant, Skip> {
    let frame = Frame::parse(question);
    let (text, polarity) = match strategy {
        Strategy::Synonym => (synonym_swap(question, seed)?, 1),
        Strategy::Reorder => (frame.ok_or(Skip::FormNotRecognised)?.reordered()?, 1),
        Strategy::Hedge => {
            let frame = frame.ok_or(Skip::FormNotRecognised)?;
            (frame.hedged(), 1)
        }
        Strategy::Register => {
            let frame = frame.ok_or(Skip::FormNotRecognised)?;
            (frame.clinical(pick(seed, &[question, "register"])), 1)
        }
        Strategy::Negation => {
            let frame = frame.ok_or(Skip::FormNotRecognised)?;
            let rule = NegationRule::ALL[(pick(seed, &[question, "negation"]) % NegationRule::ALL.len() as u64) as usize];
            (frame.negation(rule)?, rule.polarity())
        }
    };
    let question = finish(&text);
    if !is_yes_no_question(&question) {
        return Err(Skip::NotYesNo);
    }
    Ok(Variant { question, strategy, polarity })
}

/// Every strategy of `strategies` on `question`, in order; duplicates (of the base or of an
/// earlier variant, ignoring case) are skipped.
pub fn generate(question: &str, strategies: &[Strategy], seed: u64) -> Vec<Result<Variant, (Strategy, Skip)>> {
    let mut taken = vec![finish(question).to_lowercase()];
    strategies
        .iter()
        .map(|&s| {
            let v = apply(question, s, seed).map_err(|skip| (s, skip))?;
            let key = v.question.to_lowercase();
            if taken.contains(&key) {
                return Err((s, Skip::Duplicate));
            }
            taken.push(key);
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answer;

    #[test]
    fn the_known_forms_are_taken_apart() {
        let f = Frame::parse("Is there a pleural effusion in this chest X-ray?").unwrap();
        assert_eq!(
            (f.form, f.subject.as_str(), f.location.as_deref(), f.plural),
            (Form::ThereIs, "a pleural effusion", Some("in this chest X-ray"), false)
        );
        let f = Frame::parse("On this image, are there nodules?").unwrap();
        assert_eq!((f.subject.as_str(), f.location.as_deref(), f.plural, f.location_first), ("nodules", Some("on this image"), true, true));
        let f = Frame::parse("Is cardiomegaly present?").unwrap();
        assert_eq!((f.form, f.subject.as_str()), (Form::Predicate("present"), "cardiomegaly"));
        assert_eq!(Frame::parse("Does the radiograph show a pneumothorax?").unwrap().form, Form::Shows);
        assert_eq!(Frame::parse("Any pneumothorax?").unwrap().subject, "pneumothorax");
        for q in ["What is the finding?", "Is the effusion on the left or the right?", "Heart size normal?", "Where, is there a mass?"] {
            assert_eq!(Frame::parse(q), None, "{q}");
        }
    }

    #[test]
    fn every_negation_rule_asks_for_absence_and_inverts_the_truth() {
        let f = Frame::parse("Is there a pleural effusion in this chest X-ray?").unwrap();
        let expected = [
            (NegationRule::RuledOut, "Can a pleural effusion be ruled out in this chest X-ray?"),
            (NegationRule::Absent, "Is a pleural effusion absent in this chest X-ray?"),
            (NegationRule::FreeOf, "Is this chest X-ray free of pleural effusion?"),
        ];
        for (rule, text) in expected {
            assert_eq!(finish(&f.negation(rule).unwrap()), text);
            assert_eq!(rule.polarity(), -1, "{rule:?}");
            // The truth rule: present -> the negated question's answer is no, and back.
            assert_eq!(Answer::Yes.with_polarity(rule.polarity()), Answer::No);
            assert_eq!(Answer::No.with_polarity(rule.polarity()), Answer::Yes);
            assert!(is_yes_no_question(text), "{text}");
        }
        let plural = Frame::parse("Are there nodules?").unwrap();
        assert_eq!(finish(&plural.negation(NegationRule::Absent).unwrap()), "Are nodules absent?");
        assert_eq!(finish(&plural.negation(NegationRule::FreeOf).unwrap()), "Is the image free of nodules?");
    }

    #[test]
    fn rules_that_add_a_frame_use_the_finding_itself() {
        let f = Frame::parse("Is there evidence of a pneumothorax?").unwrap();
        assert_eq!(finish(&f.clinical(0)), "Is there radiographic evidence of a pneumothorax?");
        assert_eq!(finish(&f.negation(NegationRule::RuledOut).unwrap()), "Can a pneumothorax be ruled out?");
        let any = Frame::parse("Are there any nodules in this image?").unwrap();
        assert_eq!(finish(&any.negation(NegationRule::Absent).unwrap()), "Are nodules absent in this image?");
        assert_eq!(finish(&any.negation(NegationRule::FreeOf).unwrap()), "Is this image free of nodules?");
    }

    #[test]
    fn a_negated_base_is_not_negated_again() {
        let v = apply("Is there no pleural effusion?", Strategy::Negation, 0);
        assert_eq!(v, Err(Skip::AlreadyNegated));
    }

    #[test]
    fn each_strategy_writes_a_grammatical_closed_question() {
        let q = "Is there a pneumothorax in this chest X-ray?";
        let got: Vec<String> = Strategy::ALL.iter().map(|&s| apply(q, s, 0).unwrap().question).collect();
        assert!(
            got[0] == "Is there air in the pleural space in this chest X-ray?"
                || got[0] == "Is there a pneumothorax in this chest radiograph?"
                || got[0] == "Is there a pneumothorax in this chest film?",
            "{}",
            got[0]
        );
        assert_eq!(got[1], "In this chest X-ray, is there a pneumothorax?");
        assert_eq!(got[2], "Could there be a pneumothorax in this chest X-ray?");
        assert!(
            got[3] == "Is there radiographic evidence of a pneumothorax in this chest X-ray?"
                || got[3] == "Does the radiograph demonstrate a pneumothorax?"
        );
        for g in &got {
            assert!(is_yes_no_question(g), "{g}");
        }
    }

    #[test]
    fn the_synonym_rule_fixes_articles_and_prefers_the_longest_term() {
        // Only one term: "a pneumothorax" -> uncountable "air in the pleural space" drops "a".
        assert_eq!(synonym_swap("Is there a pneumothorax?", 3).unwrap(), "Is there air in the pleural space?");
        // An uncountable term becoming a countable one gains its article.
        assert_eq!(synonym_swap("Is there pleural fluid?", 3).unwrap(), "Is there a pleural effusion?");
        // A bare countable term (radiology's "Is there pleural effusion?") stays bare.
        assert_eq!(synonym_swap("Is there pleural effusion?", 3).unwrap(), "Is there pleural fluid?");
        let s = synonym_swap("Is there a mass lesion?", 1).unwrap();
        assert_eq!(s, "Is there a mass?");
        assert_eq!(synonym_swap("Is the heart size normal?", 0), Err(Skip::NoLexiconTerm));
    }

    #[test]
    fn reordering_needs_a_location_and_moves_it_both_ways() {
        assert_eq!(apply("Is there a nodule?", Strategy::Reorder, 0), Err(Skip::NoClauseToMove));
        assert_eq!(apply("In this image, is there a nodule?", Strategy::Reorder, 0).unwrap().question, "Is there a nodule in this image?");
    }

    #[test]
    fn the_same_seed_gives_the_same_variants_and_duplicates_are_skipped() {
        let q = "Is there cardiomegaly in this image?";
        assert_eq!(generate(q, &Strategy::ALL, 7), generate(q, &Strategy::ALL, 7));
        let twice = generate(q, &[Strategy::Hedge, Strategy::Hedge], 0);
        assert!(twice[0].is_ok());
        assert_eq!(twice[1], Err((Strategy::Hedge, Skip::Duplicate)));
        let unknown = generate("Heart size normal?", &[Strategy::Hedge, Strategy::Negation], 0);
        assert_eq!(unknown, vec![Err((Strategy::Hedge, Skip::FormNotRecognised)), Err((Strategy::Negation, Skip::FormNotRecognised))]);
    }
}
