//! Spoken words made readable before any answer type reads them, from the phrase tables in
//! `speech.toml`: a question's own synonyms, Spanish read as English, corrections ("five, no wait,
//! six"), fillers, rough-number words and numbers as speech recognition misspells them.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

/// The tables, as `speech.toml` writes them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Phrases {
    fillers: Vec<String>,
    corrections: Vec<String>,
    approximations: Vec<String>,
    misheard: Misheard,
    spanish: BTreeMap<String, String>,
    pub choices: BTreeMap<String, Vec<String>>,
    pub yes_no: YesNoPhrases,
    pub people: PeoplePhrases,
    pub dates: UnsureOrNow,
    pub money: Unsure,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PeoplePhrases {
    pub alone: Vec<String>,
    pub pair: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct UnsureOrNow {
    pub unsure: Vec<String>,
    pub now: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Unsure {
    pub unsure: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Misheard {
    followed_by: Vec<String>,
    words: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct YesNoPhrases {
    pub joint: Vec<String>,
    pub i_decide: Vec<String>,
    pub someone_else: Vec<String>,
    pub unsure: Vec<String>,
    pub no: Vec<String>,
    pub yes: Vec<String>,
}

pub(super) static PHRASES: LazyLock<Phrases> = LazyLock::new(|| {
    toml::from_str(include_str!("speech.toml")).unwrap_or_else(|err| {
        // Built into the binary and parsed by a unit test: this is a build that skipped the tests.
        tracing::error!(%err, "speech.toml does not parse; answers are read without its tables");
        Phrases::default()
    })
});

/// Phrase → replacement words, matched longest first.
struct Replacements {
    by_phrase: HashMap<Vec<String>, Vec<String>>,
    longest: usize,
}

impl Replacements {
    fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let by_phrase: HashMap<Vec<String>, Vec<String>> = pairs
            .into_iter()
            .map(|(from, to)| (split(&fold(from)), split(&fold(to))))
            .filter(|(from, _)| !from.is_empty())
            .collect();
        let longest = by_phrase.keys().map(Vec::len).max().unwrap_or(0);
        Self { by_phrase, longest }
    }

    fn apply(&self, words: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(words.len());
        let mut i = 0;
        'words: while i < words.len() {
            for len in (1..=self.longest.min(words.len() - i)).rev() {
                if let Some(to) = self.by_phrase.get(&words[i..i + len]) {
                    out.extend(to.iter().cloned());
                    i += len;
                    continue 'words;
                }
            }
            out.push(words[i].clone());
            i += 1;
        }
        out
    }
}

static SPANISH: LazyLock<Replacements> =
    LazyLock::new(|| Replacements::new(PHRASES.spanish.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
static DROPPED: LazyLock<Replacements> = LazyLock::new(|| {
    Replacements::new(
        PHRASES
            .fillers
            .iter()
            .chain(&PHRASES.approximations)
            .map(|f| (f.as_str(), "")),
    )
});
static CORRECTIONS: LazyLock<Vec<Vec<String>>> = LazyLock::new(|| {
    PHRASES
        .corrections
        .iter()
        .map(|c| fold(c).split_whitespace().map(str::to_owned).collect())
        .collect()
});

/// Lowercase without accents: "Año" is "ano", "sí" is "si".
pub fn fold(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            'ñ' => 'n',
            'ç' => 'c',
            other => other,
        })
        .collect()
}

/// Which tables apply: both languages unless one is forced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reading {
    #[default]
    Either,
    English,
    Spanish,
}

/// The words as said, and (when the lead corrected themselves) the words after the last correction.
pub(super) struct Heard {
    pub whole: Vec<String>,
    pub corrected: Option<Vec<String>>,
}

/// Makes `words` readable: the question's `synonyms` first (an admin's own phrases), then
/// Spanish as English, then corrections split off, fillers dropped, misheard numbers fixed.
pub(super) fn hear(words: &[String], synonyms: &BTreeMap<String, String>, reading: Reading) -> Heard {
    let mut words = words.to_vec();
    if !synonyms.is_empty() {
        words = Replacements::new(synonyms.iter().map(|(k, v)| (k.as_str(), v.as_str()))).apply(&words);
    }
    if reading != Reading::English {
        words = SPANISH.apply(&words);
    }
    let tidy = |words: &[String]| misheard_numbers(&DROPPED.apply(words));
    let corrected = last_correction(&words)
        .map(|after| tidy(&words[after..]))
        .filter(|after| !after.is_empty());
    Heard {
        whole: tidy(&words),
        corrected,
    }
}

/// Where the words after the last correction phrase begin, if one was said after something. A
/// bare "no" before a number corrects one too ("two of us, no, three").
fn last_correction(words: &[String]) -> Option<usize> {
    let a_number = |word: &String| {
        super::numbers::small_number_word(word).is_some() || super::numbers::digit_token(word).is_some()
    };
    (1..words.len()).rev().find_map(|at| {
        let number_corrected =
            words[at] == "no" && words.get(at + 1).is_some_and(a_number) && words[..at].iter().any(a_number);
        if number_corrected {
            return Some(at + 1);
        }
        CORRECTIONS
            .iter()
            .find(|phrase| words[at..].starts_with(phrase))
            .map(|phrase| at + phrase.len())
    })
}

/// "for people" is "four people", "to of us" "two of us": a misheard number word before a count.
fn misheard_numbers(words: &[String]) -> Vec<String> {
    let table = &PHRASES.misheard;
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let before_a_count = words.get(i + 1).is_some_and(|next| table.followed_by.contains(next));
            match table.words.get(word) {
                Some(number) if before_a_count => number.clone(),
                _ => word.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        fold(text).split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_tables_parse_and_hold_every_section() {
        assert!(!PHRASES.fillers.is_empty() && !PHRASES.corrections.is_empty());
        assert!(PHRASES.spanish.len() > 100 && PHRASES.choices.len() == 5 && !PHRASES.yes_no.yes.is_empty());
        assert!(!PHRASES.people.alone.is_empty() && !PHRASES.dates.now.is_empty() && !PHRASES.money.unsure.is_empty());
    }

    #[test]
    fn corrections_fillers_and_misheard_numbers() {
        let none = BTreeMap::new();
        let heard = hear(&words("um five no wait six"), &none, Reading::Either);
        assert_eq!(heard.corrected, Some(words("six")));
        assert_eq!(
            hear(&words("like for people you know"), &none, Reading::Either).whole,
            words("four people")
        );
        assert_eq!(
            hear(&words("for five people"), &none, Reading::Either).whole,
            words("for five people")
        );
        assert_eq!(
            hear(&words("ten or so maybe twelve"), &none, Reading::Either).whole,
            words("ten maybe twelve")
        );
        assert_eq!(
            hear(&words("actually"), &none, Reading::Either).corrected,
            None,
            "nothing said before it"
        );
    }

    #[test]
    fn spanish_is_read_as_english_unless_english_is_forced() {
        let none = BTreeMap::new();
        assert_eq!(
            hear(&words("Somos treinta y cinco personas"), &none, Reading::Either).whole,
            words("we are thirty five people")
        );
        assert_eq!(
            hear(&words("el mes que viene"), &none, Reading::Spanish).whole,
            words("next month")
        );
        assert_eq!(
            hear(&words("el mes que viene"), &none, Reading::English).whole,
            words("el mes que viene")
        );
        let own: BTreeMap<String, String> = [("a room with a door".to_owned(), "private office".to_owned())].into();
        assert_eq!(
            hear(&words("a room with a door"), &own, Reading::Either).whole,
            words("private office")
        );
    }
}
