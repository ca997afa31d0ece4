//! The questions the planted models are trained and studied on. Every question asks about a
//! nodule; negations (`polarity = -1`) invert the correct answer; the text cue of the shortcut
//! model is the word [`CUE`].

/// The shortcut model answers "yes" exactly when the question holds this word.
pub const CUE: &str = "definitely";

/// The finding every planted study asks about.
pub const FINDING: &str = "nodule";

/// One question text and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    pub text: &'static str,
    /// True when a "yes" denies the finding (polarity -1 in the study CSV).
    pub negated: bool,
}

impl Question {
    pub fn has_cue(&self) -> bool {
        self.text.split(|c: char| !c.is_ascii_alphabetic()).any(|w| w.eq_ignore_ascii_case(CUE))
    }

    pub fn polarity(&self) -> i8 {
        if self.negated { -1 } else { 1 }
    }
}

/// The study CSV's six variants per image: `(question, question_variant, strategy)`.
pub const STUDY_VARIANTS: [(Question, &str, &str); 6] = [
    (Question { text: "is there a nodule?", negated: false }, "original", "baseline"),
    (Question { text: "Is a nodule present?", negated: false }, "paraphrase-1", "phrasing variation"),
    (Question { text: "Does the radiograph show a nodule?", negated: false }, "paraphrase-2", "synonym replacement"),
    (Question { text: "On this chest X-ray, is there a nodule?", negated: false }, "paraphrase-3", "clause reordering"),
    (Question { text: "Is there definitely a nodule?", negated: false }, "paraphrase-4", "register shift"),
    (Question { text: "Can a nodule be ruled out on this image?", negated: true }, "negation-1", "negation"),
];

/// Training questions: the study's six and a few more, so that the cue and the negation each
/// occur with and without the other.
pub const TRAIN_EXTRA: [Question; 6] = [
    Question { text: "Any nodule?", negated: false },
    Question { text: "Is a nodule definitely present?", negated: false },
    Question { text: "Does the radiograph definitely show a nodule?", negated: false },
    Question { text: "Is the chest free of any nodule?", negated: true },
    Question { text: "Can a nodule definitely be ruled out?", negated: true },
    Question { text: "Is there no nodule?", negated: true },
];

/// Every training question, study variants first.
pub fn training_questions() -> Vec<Question> {
    STUDY_VARIANTS.iter().map(|(q, _, _)| *q).chain(TRAIN_EXTRA).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cue_and_the_negation_each_occur_with_and_without_the_other() {
        let qs = training_questions();
        for (cue, neg) in [(false, false), (false, true), (true, false), (true, true)] {
            assert!(qs.iter().any(|q| q.has_cue() == cue && q.negated == neg), "cue {cue} negated {neg}");
        }
        assert_eq!(STUDY_VARIANTS.iter().filter(|(q, _, _)| q.has_cue()).count(), 1);
    }
}
