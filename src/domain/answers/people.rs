//! "How many people?": a head count or a range, never a time ("10 years") or money.

use serde_json::{Value, json};

use super::numbers::{number_value, range_in};
use super::speech::PHRASES;
use super::{Number, Text};

pub(super) const TIME_UNITS: &[&str] = &[
    "year", "years", "yrs", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute", "minutes",
    "am", "pm", "o'clock", "percent",
];
pub(super) const PEOPLE: &[&str] = &[
    "people",
    "person",
    "persons",
    "of",
    "employees",
    "employee",
    "staff",
    "members",
    "member",
    "guys",
    "folks",
    "heads",
    "seats",
    "desks",
    "colleagues",
    "coworkers",
    "developers",
    "engineers",
    "us",
    "team",
    "total",
    "including",
    "others",
    "more",
];

pub(super) fn people_count(text: &Text) -> Option<Value> {
    if text.has_any_of(&PHRASES.people.pair) {
        return Some(json!(2));
    }
    // "me and three others", "me plus 4".
    if let Some(at) = text
        .position("me and")
        .or_else(|| text.position("me plus"))
        .or_else(|| text.position("myself and"))
        && let Some(n) = text
            .numbers
            .iter()
            .find(|n| n.start == at + 2 && text.followed_by(n.end, 2, PEOPLE))
    {
        return Some(number_value(n.value + 1.0));
    }
    let candidates: Vec<Number> = text
        .numbers
        .iter()
        .copied()
        .filter(|n| !n.money && !text.followed_by(n.end, 2, TIME_UNITS) && n.value >= 1.0 && n.value < 100_000.0)
        .collect();
    if let Some((a, b)) = range_in(text, &candidates) {
        return Some(json!({ "min": a.value as i64, "max": b.value as i64 }));
    }
    // "3 full time and 2 part time": everyone who will use the space.
    if text.has_any(&["full time", "fulltime", "full timers"])
        && text.has_any(&["part time", "parttime", "part timers"])
    {
        let total: f64 = candidates.iter().map(|n| n.value).sum();
        if total > 0.0 {
            return Some(number_value(total));
        }
    }
    // "3 of us now, growing to 5": the size today and the size they plan for.
    if text.has_any(&[
        "grow to",
        "growing to",
        "grow into",
        "expand to",
        "expanding to",
        "hiring up to",
    ]) && let [now, .., later] = candidates.as_slice()
        && now.value < later.value
    {
        return Some(json!({ "min": now.value as i64, "max": later.value as i64 }));
    }
    let about_people = candidates.iter().rev().find(|n| text.followed_by(n.end, 3, PEOPLE));
    if let Some(n) = about_people.or(candidates.last()) {
        return Some(number_value(n.value));
    }
    if text.has_any_of(&PHRASES.people.alone) {
        return Some(json!(1));
    }
    None
}
