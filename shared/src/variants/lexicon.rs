//! The small radiology lexicon behind the synonym rule and the box importers' question template.
//!
//! A group lists phrases a radiologist would accept as interchangeable in a closed question
//! ("Is there cardiomegaly?" / "Is there cardiac enlargement?"). Each phrase says whether it
//! takes an article, so that "a pneumothorax" becomes "air in the pleural space", not "a air".

/// One phrase of a synonym group: its text (as written in questions) and whether it is a
/// countable noun that takes "a"/"an".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phrase {
    pub text: &'static str,
    pub countable: bool,
}

const fn c(text: &'static str) -> Phrase {
    Phrase { text, countable: true }
}

const fn u(text: &'static str) -> Phrase {
    Phrase { text, countable: false }
}

/// Groups of interchangeable phrases. No phrase of one group contains a phrase of another
/// group, so a replacement never lands inside another term; within a group the longest match
/// wins ("mass lesion" before "mass").
pub const SYNONYMS: &[&[Phrase]] = &[
    &[c("chest X-ray"), c("chest radiograph"), c("chest film")],
    &[u("cardiomegaly"), u("cardiac enlargement"), c("enlarged heart")],
    &[c("pleural effusion"), u("pleural fluid")],
    &[c("pneumothorax"), u("air in the pleural space")],
    &[c("nodule"), c("nodular opacity")],
    &[c("mass lesion"), c("mass")],
    &[u("edema"), u("oedema")],
    &[u("pneumonia"), u("pulmonary infection")],
    &[u("atelectasis"), u("partial lung collapse")],
];

/// The noun phrase a box importer's template puts in "Is there <phrase> in this chest X-ray?"
/// for a dataset's finding label (NIH ChestX-ray14, VinDr-CXR and MS-CXR spellings). Unknown
/// labels are used as written, lower-cased, without an article.
pub fn finding_phrase(label: &str) -> String {
    let known: &[(&str, &str)] = &[
        ("atelectasis", "atelectasis"),
        ("cardiomegaly", "cardiomegaly"),
        ("effusion", "a pleural effusion"),
        ("pleural effusion", "a pleural effusion"),
        ("infiltrate", "an infiltrate"),
        ("infiltration", "an infiltrate"),
        ("mass", "a mass"),
        ("nodule", "a nodule"),
        // "a nodule or mass" would offer an alternative ("or"), which is not a yes/no question.
        ("nodule/mass", "a nodule/mass"),
        ("pneumonia", "pneumonia"),
        ("pneumothorax", "a pneumothorax"),
        ("consolidation", "consolidation"),
        ("edema", "edema"),
        ("emphysema", "emphysema"),
        ("fibrosis", "fibrosis"),
        ("pulmonary fibrosis", "pulmonary fibrosis"),
        ("pleural thickening", "pleural thickening"),
        ("pleural_thickening", "pleural thickening"),
        ("hernia", "a hernia"),
        ("aortic enlargement", "aortic enlargement"),
        ("calcification", "calcification"),
        ("ild", "interstitial lung disease"),
        ("lung opacity", "a lung opacity"),
        ("other lesion", "a lesion"),
    ];
    let key = label.trim().to_lowercase();
    known.iter().find(|(k, _)| *k == key).map_or(key.clone(), |(_, p)| (*p).to_string())
}

/// "a" or "an" before `word` (by its first letter: good enough for this lexicon).
pub fn article_for(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::is_yes_no_question;

    #[test]
    fn every_template_question_is_a_yes_no_question() {
        for label in ["Effusion", "Nodule/Mass", "ILD", "Other lesion", "Infiltrate", "Some New Label"] {
            let q = format!("Is there {} in this chest X-ray?", finding_phrase(label));
            assert!(is_yes_no_question(&q), "{q}");
        }
        assert_eq!(finding_phrase("Effusion"), "a pleural effusion");
        assert_eq!(finding_phrase("Some New Label"), "some new label");
    }

    #[test]
    fn no_phrase_contains_a_phrase_of_another_group() {
        for (i, g) in SYNONYMS.iter().enumerate() {
            for (j, h) in SYNONYMS.iter().enumerate().filter(|(j, _)| *j != i) {
                for p in g.iter() {
                    for q in h.iter() {
                        let (p, q) = (p.text.to_lowercase(), q.text.to_lowercase());
                        assert!(!format!(" {p} ").contains(&format!(" {q} ")), "group {i} {p:?} contains group {j} {q:?}");
                    }
                }
            }
        }
    }
}
