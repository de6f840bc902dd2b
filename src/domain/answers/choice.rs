//! One of the question's options, by its words or a synonym.

use serde_json::{Value, json};

use super::Text;

pub(super) fn choice(text: &Text, options: &[String]) -> Option<Value> {
    // The default script's options and the ways people say them; other ids match their own words.
    let synonyms = |id: &str| -> Vec<String> {
        let known: &[&str] = match id {
            "private_office" => &[
                "private office",
                "own office",
                "an office",
                "office",
                "closed office",
                "office suite",
                "suite",
                "private room",
                "enclosed office",
                "team office",
                "office for my team",
                "office space",
                "lockable office",
                "our own room",
                "private",
                "room for my team",
                "room for our team",
                "room for the team",
                "team room",
                "closed room",
            ],
            "dedicated_desk" => &[
                "dedicated desk",
                "desk",
                "own desk",
                "my own desk",
                "fixed desk",
                "permanent desk",
                "reserved desk",
                "assigned desk",
                "a desk",
                "dedicated",
                "single desk",
                "just a desk",
            ],
            "hot_desk" => &[
                "hot desk",
                "hot desking",
                "hotdesk",
                "hotdesking",
                "hot desks",
                "flexible desk",
                "flex desk",
                "flexible",
                "any desk",
                "shared desk",
                "floating desk",
                "drop in",
                "day pass",
                "open seating",
                "coworking",
                "co working",
                "hot seat",
                "open space",
                "flex",
                "whatever desk is free",
            ],
            "meeting_room" => &[
                "meeting room",
                "conference room",
                "boardroom",
                "board room",
                "meeting space",
                "room for meetings",
                "meeting",
                "meetings",
                "conference",
                "event space",
                "training room",
            ],
            "virtual_office" => &[
                "virtual office",
                "virtual",
                "mailing address",
                "business address",
                "mail handling",
                "an address",
                "registered address",
                "mailbox",
                "mail forwarding",
                "just an address",
                "address",
            ],
            _ => &[],
        };
        let mut all: Vec<String> = known.iter().map(|s| (*s).to_owned()).collect();
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
