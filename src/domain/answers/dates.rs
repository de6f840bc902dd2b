//! "When would you move in?": a date from "next month", "in two weeks", "mid March", "Monday".

use jiff::ToSpan;
use jiff::civil::Date;
use serde_json::{Value, json};

use super::speech::PHRASES;
use super::{Number, Text};

pub(super) fn move_in(text: &Text, today: Date) -> Option<Value> {
    let date = |d: Date| Some(json!(d.to_string()));
    if text.has_any_of(&PHRASES.dates.unsure) {
        return Some(Value::Null);
    }
    if text.has("tomorrow") {
        return date(today.saturating_add(1.day()));
    }
    if let Some(day) = counted_from_weekday(text, today) {
        return date(day);
    }
    // "in two weeks", "in 3 months", "within a month", "a couple of weeks from now".
    // "in two months", "in a couple of months".
    let unit_after = |n: &Number| {
        let skip = usize::from(text.word(n.end) == Some("of"));
        text.word(n.end + skip).map(str::to_owned)
    };
    for n in &text.numbers {
        let amount = n.value.round() as i64;
        let step = match unit_after(n).as_deref() {
            Some("day" | "days") => Some(amount.days()),
            Some("week" | "weeks") => Some(amount.weeks()),
            Some("month" | "months") => Some(amount.months()),
            Some("year" | "years") => Some(amount.years()),
            _ => None,
        };
        if let Some(step) = step {
            return date(today.saturating_add(step));
        }
    }
    for (phrase, step) in [
        ("a week", 1.week()),
        ("a month", 1.month()),
        ("a year", 1.year()),
        ("a fortnight", 2.weeks()),
    ] {
        // "in a month", "in about a month", "within the next month", "a month from now".
        let lead_in = text
            .position(phrase)
            .is_some_and(|at| (at.saturating_sub(3)..at).any(|i| matches!(text.word(i), Some("in" | "within"))));
        if lead_in || text.has(&format!("{phrase} from now")) {
            return date(today.saturating_add(step));
        }
    }
    if text.has("next week") {
        return date(today.saturating_add(1.week()));
    }
    if text.has_any(&["end of the month", "end of this month", "later this month"]) {
        return date(today.last_of_month());
    }
    if text.has("next month") {
        return date(today.first_of_month().saturating_add(1.month()));
    }
    if text.has("this month") {
        return date(today);
    }
    if text.has_any(&[
        "end of the year",
        "end of this year",
        "year end",
        "end of year",
        "before christmas",
        "by christmas",
    ]) {
        return Date::new(today.year(), 12, 31).ok().and_then(date);
    }
    if let Some(day) = weekday(text, today) {
        return date(day);
    }
    if text.has_any(&[
        "next year",
        "new year",
        "the new year",
        "beginning of next year",
        "start of next year",
        "first of the year",
        "start of the year",
        "beginning of the year",
        "january first",
    ]) {
        return Date::new(today.year() + 1, 1, 1).ok().and_then(date);
    }
    if let Some(found) = month_date(text, today) {
        return date(found);
    }
    for (season, month) in [("spring", 3), ("summer", 6), ("fall", 9), ("autumn", 9), ("winter", 12)] {
        if text.has(season) {
            let year = if month > today.month() {
                today.year()
            } else {
                today.year() + 1
            };
            return Date::new(year, month, 1).ok().and_then(date);
        }
    }
    if text.has_any_of(&PHRASES.dates.now) {
        return date(today);
    }
    None
}

/// "a week from Monday", "two weeks from Friday": that long after the next such day.
fn counted_from_weekday(text: &Text, today: Date) -> Option<Date> {
    let from = text.position("from")?;
    let after = Text::from_words(text.words[from + 1..].to_vec());
    let day = weekday(&after, today)?;
    let before = &text.words[..from];
    let amount = text
        .numbers
        .iter()
        .find(|n| n.end < from)
        .map(|n| n.value.round() as i64)
        .or_else(|| before.iter().any(|w| w == "a").then_some(1))?;
    match before.last().map(String::as_str) {
        Some("week" | "weeks") => Some(day.saturating_add(amount.weeks())),
        Some("day" | "days") => Some(day.saturating_add(amount.days())),
        _ => None,
    }
}

/// "Monday", "next Friday": the next such day after today.
pub(super) fn weekday(text: &Text, today: Date) -> Option<Date> {
    use jiff::civil::Weekday::*;
    let days = [
        ("monday", Monday),
        ("tuesday", Tuesday),
        ("wednesday", Wednesday),
        ("thursday", Thursday),
        ("friday", Friday),
        ("saturday", Saturday),
        ("sunday", Sunday),
    ];
    let (_, wanted) = days.iter().find(|(name, _)| text.has(name))?;
    let ahead = (wanted.to_monday_zero_offset() - today.weekday().to_monday_zero_offset()).rem_euclid(7);
    let ahead = if ahead == 0 { 7 } else { ahead };
    Some(today.saturating_add(i64::from(ahead).days()))
}

pub(super) const MONTHS: [(&str, &str); 12] = [
    ("january", "jan"),
    ("february", "feb"),
    ("march", "mar"),
    ("april", "apr"),
    ("may", "may"),
    ("june", "jun"),
    ("july", "jul"),
    ("august", "aug"),
    ("september", "sept"),
    ("october", "oct"),
    ("november", "nov"),
    ("december", "dec"),
];

/// "January", "mid March", "the 15th of April", "May 3rd 2027": the next such date.
pub(super) fn month_date(text: &Text, today: Date) -> Option<Date> {
    // "May" is a month only with a date word near it ("in May", "May 3rd"), not in "we may move".
    let may_is_a_month = |i: usize| {
        i > 0
            && matches!(
                text.word(i - 1),
                Some("in" | "early" | "mid" | "late" | "of" | "by" | "until" | "before")
            )
            || text.numbers.iter().any(|n| n.start == i + 1)
            || text.words.len() == 1
    };
    let (index, month) = text.words.iter().enumerate().find_map(|(i, w)| {
        let month = MONTHS
            .iter()
            .position(|(full, short)| w == full || w == short || (w == "sep" && *full == "september"))?
            as i8
            + 1;
        (month != 5 || may_is_a_month(i)).then_some((i, month))
    })?;
    let explicit_year = text
        .numbers
        .iter()
        .find(|n| (2000.0..2100.0).contains(&n.value))
        .map(|n| n.value as i16);
    let day = text
        .numbers
        .iter()
        .find(|n| (1.0..=31.0).contains(&n.value) && (n.start == index + 1 || n.end == index || n.end + 1 == index))
        .map(|n| n.value as i8);
    let year = explicit_year.unwrap_or_else(|| {
        if month > today.month() || (month == today.month() && day.is_none_or(|d| d >= today.day())) {
            today.year()
        } else {
            today.year() + 1
        }
    });
    let first = Date::new(year, month, 1).ok()?;
    let day = day.unwrap_or_else(|| {
        if text.has_any(&["mid", "middle of", "halfway through"]) {
            15
        } else if text.has_any(&["end of", "late"]) {
            first.days_in_month()
        } else {
            1
        }
    });
    Date::new(year, month, day.min(first.days_in_month())).ok()
}
