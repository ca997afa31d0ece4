//! Yes/no answer parsing (spec "Answer parsing") and the logit decision margin.
//!
//! The order of the rules matters: the prototype checked affirmative cues first, so
//! "No evidence of effusion" became yes. Here hedges win, then the first word, then negation,
//! then affirmation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Yes,
    No,
    Unknown,
}

impl Answer {
    /// The answer to the negated question: yes <-> no; unknown stays unknown.
    pub fn invert(self) -> Answer {
        match self {
            Answer::Yes => Answer::No,
            Answer::No => Answer::Yes,
            Answer::Unknown => Answer::Unknown,
        }
    }

    /// Applies a variant's polarity (`+1` same meaning, `-1` negated).
    pub fn with_polarity(self, polarity: i8) -> Answer {
        if polarity < 0 { self.invert() } else { self }
    }

    /// Reads a ground-truth label (`yes`/`no`, any case, surrounding space ignored).
    pub fn from_label(label: &str) -> Option<Answer> {
        match label.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" => Some(Answer::Yes),
            "no" | "n" | "false" | "0" => Some(Answer::No),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEDGES: &[&str] = &[
    "cannot be ruled out",
    "cannot be excluded",
    "can't be excluded",
    "can not be excluded",
    "unable to",
    "cannot provide",
    "cannot determine",
    "difficult to determine",
    "not possible to",
    "indeterminate",
    "uncertain",
];
const FIRST_YES: &[&str] = &["yes", "yeah", "yep", "present", "positive", "true"];
const FIRST_NO: &[&str] = &["no", "nope", "absent", "negative", "false"];
const NEGATION_CUES: &[&str] = &["no", "not", "without", "absent", "negative for", "free of", "ruled out", "excluded", "none"];
const AFFIRMATIVE_CUES: &[&str] = &[
    "yes",
    "present",
    "there is",
    "there are",
    "evidence of",
    "consistent with",
    "suggestive of",
    "shows",
    "show",
    "seen",
    "visible",
    "noted",
    "demonstrates",
    "identified",
];

/// `parse_answer(text) -> yes | no | unknown`, applying the spec's six rules in order.
pub fn parse_answer(text: &str) -> Answer {
    let cleaned = clean(text);
    let words = words(&cleaned);
    let has = |phrase: &str| contains_phrase(&words, phrase);
    if HEDGES.iter().any(|h| has(h)) {
        return Answer::Unknown;
    }
    if let Some(first) = words.first() {
        if FIRST_YES.contains(&first.as_str()) {
            return Answer::Yes;
        }
        if FIRST_NO.contains(&first.as_str()) {
            return Answer::No;
        }
    }
    if NEGATION_CUES.iter().any(|c| has(c)) {
        return Answer::No;
    }
    if AFFIRMATIVE_CUES.iter().any(|c| has(c)) {
        return Answer::Yes;
    }
    Answer::Unknown
}

/// Rule 1: lowercase, drop markdown marks, drop a leading `answer:`/`a:`, trim.
fn clean(text: &str) -> String {
    let lowered: String = text.to_lowercase().chars().filter(|c| !matches!(c, '*' | '_' | '`')).collect();
    let trimmed = trim_punct(&lowered);
    let without_label = ["answer:", "a:"].iter().find_map(|label| trimmed.strip_prefix(label)).unwrap_or(trimmed);
    trim_punct(without_label).to_string()
}

fn trim_punct(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != ':'))
}

/// Whole words: runs of letters, digits and apostrophes (so "can't" stays one word).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('\u{2019}', "'"))
        .collect()
}

fn contains_phrase(words: &[String], phrase: &str) -> bool {
    let needle: Vec<&str> = phrase.split_whitespace().collect();
    !needle.is_empty() && words.windows(needle.len()).any(|window| window.iter().zip(&needle).all(|(w, n)| w == n))
}

/// The decision margin `logit(yes) - logit(no)` at the first answer position: the largest logit
/// over the tokenizer's spellings of each word (`Yes`, `yes`, ` yes`, ...). `None` when either
/// word has no token id inside the vocabulary.
pub fn yes_no_margin(logits: &[f32], yes_ids: &[u32], no_ids: &[u32]) -> Option<f64> {
    let best = |ids: &[u32]| {
        ids.iter()
            .filter_map(|&id| logits.get(id as usize).copied())
            .filter(|v| v.is_finite())
            .map(f64::from)
            .fold(None, |acc: Option<f64>, v| Some(acc.map_or(v, |a| a.max(v))))
    };
    Some(best(yes_ids)? - best(no_ids)?)
}

/// Words a closed yes/no question starts with (English auxiliaries and modals).
const YES_NO_OPENERS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "am",
    "do",
    "does",
    "did",
    "has",
    "have",
    "had",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "doesn't",
    "don't",
    "didn't",
    "hasn't",
    "haven't",
    "can't",
    "cannot",
    "couldn't",
    "won't",
    "wouldn't",
    "shouldn't",
];

/// Whether `question` is a closed yes/no question, by radlens' rule (the yes/no filter of the
/// decision-quality and flip figures): the question, or the clause after its first comma ("On
/// this chest X-ray, is there ...?"), starts with an auxiliary or modal verb (`is`, `are`,
/// `does`, `can`, `should`, ... and their negations) or with `any` ("Any effusion?"), and it
/// offers no alternatives (no word `or`: "Is it on the left or the right?" is not answered by
/// yes or no).
pub fn is_yes_no_question(question: &str) -> bool {
    let lower = question.to_lowercase();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).map(str::to_owned).collect()
    };
    let opens = |text: &str| words(text).first().is_some_and(|w| YES_NO_OPENERS.contains(&w.as_str()) || w == "any");
    let after_comma = lower.split_once(',').map(|(_, rest)| rest);
    (opens(&lower) || after_comma.is_some_and(opens)) && !words(&lower).iter().any(|w| w == "or")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_questions_start_with_an_auxiliary_and_offer_no_alternative() {
        for q in [
            "Is there cardiomegaly?",
            "  are the lungs clear",
            "Does the radiograph show an effusion?",
            "Isn't the heart enlarged?",
            "Can you see a nodule?",
            "Any pneumothorax?",
            "On this chest X-ray, is there a lung mass?",
        ] {
            assert!(is_yes_no_question(q), "{q}");
        }
        for q in [
            "What is the finding?",
            "Is the effusion on the left or the right?",
            "Describe the image.",
            "",
            "Which lung?",
            "Heart size normal?",
            "On this film, where is the effusion?",
        ] {
            assert!(!is_yes_no_question(q), "{q}");
        }
    }

    #[test]
    fn negation_beats_affirmative_substrings() {
        assert_eq!(parse_answer("No evidence of effusion."), Answer::No);
        assert_eq!(parse_answer("There is no pleural effusion."), Answer::No);
    }

    #[test]
    fn hedges_are_unknown_even_when_they_contain_cues() {
        assert_eq!(parse_answer("Pneumothorax can't be excluded."), Answer::Unknown);
        assert_eq!(parse_answer("It is not possible to say."), Answer::Unknown);
    }

    #[test]
    fn cues_are_whole_words() {
        // "nothing" contains "no" and "known" contains "no" but neither is the word.
        assert_eq!(parse_answer("Nothing is known."), Answer::Unknown);
        assert_eq!(parse_answer("Shows cardiomegaly"), Answer::Yes);
    }

    #[test]
    fn polarity_inverts_yes_and_no_only() {
        assert_eq!(Answer::Yes.with_polarity(-1), Answer::No);
        assert_eq!(Answer::Unknown.with_polarity(-1), Answer::Unknown);
        assert_eq!(Answer::No.with_polarity(1), Answer::No);
    }

    #[test]
    fn margin_takes_the_best_spelling_of_each_word() {
        let logits = [0.0f32, 2.0, 5.0, 1.0, -1.0];
        assert_eq!(yes_no_margin(&logits, &[1, 2], &[3, 4]), Some(4.0));
        assert_eq!(yes_no_margin(&logits, &[99], &[3]), None);
    }
}
