//! "What is your monthly budget?": dollars a month, from "two grand", "$1,500", "24k a year".

use serde_json::{Value, json};

use super::numbers::{number_value, range_in};
use super::speech::PHRASES;
use super::{Number, Text};

/// Words that make a number money beyond doubt.
pub(super) const SAID_AS_MONEY: &[&str] = &[
    "dollars", "dollar", "bucks", "usd", "grand", "k", "per", "month", "monthly", "budget",
];

pub(super) const MONEY_WORDS: &[&str] = &[
    "dollars", "dollar", "bucks", "usd", "grand", "k", "a", "per", "month", "monthly", "budget",
];

/// "seven fifty" is 750: a digit then the tens and units, the way prices are said.
fn hundreds_said_short(numbers: Vec<Number>) -> Vec<Number> {
    let whole = |n: &Number, range: std::ops::RangeInclusive<f64>| n.value.fract() == 0.0 && range.contains(&n.value);
    let mut merged: Vec<Number> = Vec::with_capacity(numbers.len());
    for n in numbers {
        match merged.last_mut() {
            Some(last) if last.end == n.start && whole(last, 1.0..=9.0) && whole(&n, 10.0..=99.0) => {
                last.value = last.value * 100.0 + n.value;
                last.end = n.end;
                last.money |= n.money;
            }
            _ => merged.push(n),
        }
    }
    merged
}

pub(super) fn monthly_budget(text: &Text) -> Option<Value> {
    if text.has_any_of(&PHRASES.money.unsure) && text.numbers.is_empty() {
        return Some(Value::Null);
    }
    let per_month = |value: f64| -> f64 {
        if text.has_any(&[
            "a year",
            "per year",
            "per annum",
            "annually",
            "yearly",
            "annual",
            "each year",
            "every year",
            "for the year",
        ]) {
            value / 12.0
        } else if text.has_any(&["a week", "per week", "weekly", "each week", "every week"]) {
            value * 52.0 / 12.0
        } else if text.has_any(&["a day", "per day", "daily", "each day", "every day"]) {
            value * 365.0 / 12.0
        } else if text.has_any(&["a quarter", "per quarter", "quarterly"]) {
            value / 3.0
        } else {
            value
        }
    };
    let candidates: Vec<Number> = text
        .numbers
        .iter()
        .copied()
        .filter(|n| !text.followed_by(n.end, 1, &["people", "person", "of", "desks", "seats", "employees"]))
        .filter(|n| !text.followed_by(n.end, 1, &["years", "months", "weeks", "days"]))
        .collect();
    let candidates = hundreds_said_short(candidates);
    if let Some((mut a, b)) = range_in(text, &candidates) {
        // "one to two thousand": the multiplier said once covers both ends.
        if a.value < 10.0 && b.value >= 1000.0 {
            a.value *= 1000.0;
        }
        return Some(json!({ "min": per_month(a.value).round() as i64, "max": per_month(b.value).round() as i64 }));
    }
    let said_as_money = candidates
        .iter()
        .rev()
        .find(|n| n.money || text.followed_by(n.end, 2, MONEY_WORDS));
    let best = said_as_money.or_else(|| candidates.iter().max_by(|a, b| a.value.total_cmp(&b.value)))?;
    Some(number_value((per_month(best.value) * 100.0).round() / 100.0))
}
