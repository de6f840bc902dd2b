//! Numbers as people say them: digits ("1,500", "$2k", "12th"), words ("fifteen hundred",
//! "a dozen", "two grand"), and two of them said as a range.

use serde_json::{Value, json};

use super::{Number, Text};

pub(super) const UNITS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
pub(super) const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

pub(super) fn small_number_word(word: &str) -> Option<f64> {
    if let Some(n) = UNITS.iter().position(|u| *u == word) {
        return Some(n as f64);
    }
    if word == "fourty" {
        return Some(40.0);
    }
    TENS.iter().position(|t| *t == word).map(|n| (n as f64 + 2.0) * 10.0)
}

/// A digit token: `12`, `1,500`, `$2,000`, `2.5`, `1.5k`, `10k`, `12th`.
pub(super) fn digit_token(word: &str) -> Option<(f64, bool)> {
    let money = word.starts_with('$');
    let body = word.trim_start_matches('$').replace(',', "");
    let (body, thousands) = match body.strip_suffix('k') {
        Some(b) => (b.to_owned(), true),
        None => (body, false),
    };
    let body = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| body.strip_suffix(s))
        .unwrap_or(&body)
        .to_owned();
    let value: f64 = body.parse().ok()?;
    Some(if thousands {
        (value * 1000.0, true)
    } else {
        (value, money)
    })
}

/// Reads every number in the words, digits or spelt out ("fifteen hundred", "a dozen",
/// "two grand", "twenty five", "half a dozen", "a couple").
pub(super) fn read_numbers(words: &[String]) -> Vec<Number> {
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let start = i;
        let mut total = 0.0;
        let mut current = 0.0;
        let mut seen = false;
        let mut money = false;
        let mut last_multiplier = 1.0;
        let next_is = |j: usize, set: &[&str]| words.get(j).is_some_and(|w| set.contains(&w.as_str()));
        let fixed = match words[i].as_str() {
            "half" if next_is(i + 1, &["a", "an"]) && next_is(i + 2, &["dozen"]) => Some((6.0, 3)),
            "a" if next_is(i + 1, &["couple"]) => Some((2.0, 2)),
            "couple" => Some((2.0, 1)),
            "a" if next_is(i + 1, &["few"]) => Some((3.0, 2)),
            _ => None,
        };
        let multiplier_after = |j: usize| {
            let j = j + usize::from(next_is(j, &["of"]));
            next_is(j, &["hundred", "thousand", "grand", "k"]).then_some(j)
        };
        if let Some((value, len)) = fixed
            && let Some(multiplier) = multiplier_after(i + len)
        {
            // "a couple hundred", "a few thousand": the count of the multiplier that follows.
            current = value;
            seen = true;
            i = multiplier;
        } else if let Some((value, len)) = fixed {
            numbers.push(Number {
                value,
                start,
                end: i + len,
                money: false,
            });
            i += len;
            continue;
        }
        // "a dozen", "a hundred", "a thousand", "a grand": "a" is one.
        if matches!(words[i].as_str(), "a" | "an") && next_is(i + 1, &["dozen", "hundred", "thousand", "grand"]) {
            current = 1.0;
            seen = true;
            i += 1;
        }
        while i < words.len() {
            let word = words[i].as_str();
            if let Some((value, is_money)) = digit_token(word) {
                if seen {
                    break;
                }
                current = value;
                money |= is_money;
                seen = true;
            } else if let Some(value) = small_number_word(word) {
                // "twenty five", "one hundred fifty", "two thousand five" add up; "five six" are two.
                let extends = !seen
                    || ((20.0..100.0).contains(&current) && current % 10.0 == 0.0 && value < 10.0)
                    || (current >= 100.0 && current % 100.0 == 0.0 && value < 100.0)
                    || (total > 0.0 && current == 0.0);
                if !extends {
                    break;
                }
                current += value;
                seen = true;
            } else if word == "hundred" && (seen || i == start) {
                // A bare "hundred" or "thousand" is one of them ("mil quinientos": a thousand five hundred).
                current = if current == 0.0 { 100.0 } else { current * 100.0 };
                seen = true;
            } else if matches!(word, "thousand" | "grand" | "k") && (seen || (i == start && word == "thousand")) {
                total += if current == 0.0 { 1000.0 } else { current * 1000.0 };
                current = 0.0;
                seen = true;
                money |= word != "thousand";
                last_multiplier = 1000.0;
            } else if seen && word == "and" && next_is(i + 1, &["a"]) && next_is(i + 2, &["half"]) {
                // "three and a half k", "a grand and a half".
                if current > 0.0 {
                    current += 0.5;
                } else {
                    total += last_multiplier / 2.0;
                }
                i += 2;
            } else if seen && word == "dozen" {
                current = if current == 0.0 { 12.0 } else { current * 12.0 };
            } else if seen
                && word == "and"
                && (total > 0.0 || current >= 100.0)
                && words.get(i + 1).is_some_and(|w| small_number_word(w).is_some())
                && !next_is(i + 2, &["thousand", "grand", "k"])
            {
                // "one hundred and fifty": the "and" belongs to the number.
            } else {
                break;
            }
            i += 1;
        }
        if seen {
            // "a hundred dollars", "fifty bucks": said as money, not a count.
            money |= words
                .get(i)
                .is_some_and(|w| matches!(w.as_str(), "dollars" | "dollar" | "bucks" | "usd"));
            numbers.push(Number {
                value: total + current,
                start,
                end: i,
                money,
            });
        } else {
            i = start + 1;
        }
    }
    numbers
}

pub(super) fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 {
        json!(n as i64)
    } else {
        json!((n * 100.0).round() / 100.0)
    }
}

/// Two numbers said as a range: "three or four", "5 to 8", "between 10 and 12", "5-8".
pub(super) fn range_in(text: &Text, candidates: &[Number]) -> Option<(Number, Number)> {
    candidates.windows(2).find_map(|pair| {
        let (a, b) = (pair[0], pair[1]);
        let joined = text.words[a.end..b.start].join(" ");
        let between = a.start > 0 && text.word(a.start - 1) == Some("between") && joined == "and";
        let joiner = matches!(
            joined.as_str(),
            "or" | "to" | "or maybe" | "maybe" | "and" | "up to" | "through"
        );
        ((between || (joiner && joined != "and")) && a.value < b.value).then_some((a, b))
    })
}
