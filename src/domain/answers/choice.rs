//! One of the question's options, by its words or a synonym.

use serde_json::{Value, json};

use super::Text;
use super::speech::PHRASES;

pub(super) fn choice(text: &Text, options: &[String]) -> Option<Value> {
    // The default script's options and the ways people say them (`speech.toml`); other ids match
    // their own words.
    let synonyms = |id: &str| -> Vec<String> {
        let mut all = PHRASES.choices.get(id).cloned().unwrap_or_default();
        all.push(id.replace('_', " "));
        all
    };
    // The earliest mention wins; at one position, the longest (most specific) phrase. A mention
    // right after "not"/"no"/"don't need" is what they do not want.
    let mut best: Option<(usize, std::cmp::Reverse<usize>, &String)> = None;
    for option in options {
        for phrase in synonyms(option) {
            let Some(at) = text.position(&phrase) else { continue };
            let negated = (at.saturating_sub(2)..at)
                .any(|i| matches!(text.word(i), Some("not" | "no" | "don't" | "without" | "never")));
            let candidate = (at, std::cmp::Reverse(phrase.len()), option);
            if !negated && best.is_none_or(|b| (candidate.0, candidate.1) < (b.0, b.1)) {
                best = Some(candidate);
            }
        }
    }
    best.map(|(_, _, option)| json!(option))
}
