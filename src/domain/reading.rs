//! An interpreted answer as a sales manager reads it: "Private office", "6 people", "$2,000 a
//! month", "not captured". The store keeps values (ids, numbers, ranges, ISO dates) for rules and
//! the CRM; people see these words.

use serde_json::Value;

use super::script::AnswerType;

/// The answer to a question of type `answer` in words; `captured` is false when nothing usable
/// was heard, and a captured null is a "not sure".
pub fn in_words(answer: &AnswerType, value: &Value, captured: bool) -> String {
    if !captured {
        return "not captured".into();
    }
    if value.is_null() {
        return "not sure".into();
    }
    let read = match answer {
        AnswerType::Choice { .. } => value.as_str().map(option_words),
        AnswerType::Number => amount(value, |n| plural(n, "person", "people")),
        AnswerType::Money => amount(value, |n| format!("${}", thousands(n))).map(|m| format!("{m} a month")),
        AnswerType::Date => value.as_str().map(date_words),
        AnswerType::YesNo => value.as_bool().map(|yes| if yes { "Yes" } else { "No" }.into()),
    };
    // A value of another shape (a script changed since the call): show it as it is.
    read.unwrap_or_else(|| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

/// `private_office` → "Private office".
fn option_words(id: &str) -> String {
    let spaced = id.replace('_', " ");
    let mut letters = spaced.chars();
    match letters.next() {
        Some(first) => first.to_uppercase().chain(letters).collect(),
        None => spaced,
    }
}

/// A number or a `{min, max}` range, each bound written by `unit`; the unit is said once for a
/// range ("3–4 people", "$1,500–$2,000").
fn amount(value: &Value, unit: impl Fn(i64) -> String) -> Option<String> {
    if let Some(n) = value.as_f64() {
        return Some(unit(n.round() as i64));
    }
    let (min, max) = (value["min"].as_f64()?, value["max"].as_f64()?);
    let (low, high) = (unit(min.round() as i64), unit(max.round() as i64));
    // "1 person"–"2 people" reads as "1–2 people": the high bound's unit word serves both.
    let low = match (low.split_once(' '), high.contains(' ')) {
        (Some((number, _)), true) => number.to_owned(),
        _ => low,
    };
    Some(format!("{low}–{high}"))
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// 12500 → "12,500".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `2027-01-15` → "15 January 2027" (unambiguous in every locale).
fn date_words(iso: &str) -> String {
    match iso.parse::<jiff::civil::Date>() {
        Ok(date) => date.strftime("%-d %B %Y").to_string(),
        Err(_) => iso.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn choice() -> AnswerType {
        AnswerType::Choice {
            options: vec!["private_office".into(), "hot_desk".into()],
        }
    }

    #[test]
    fn each_answer_type_reads_as_words() {
        assert_eq!(in_words(&choice(), &json!("hot_desk"), true), "Hot desk");
        assert_eq!(in_words(&AnswerType::Number, &json!(6), true), "6 people");
        assert_eq!(in_words(&AnswerType::Number, &json!(1), true), "1 person");
        assert_eq!(
            in_words(&AnswerType::Number, &json!({ "min": 1, "max": 2 }), true),
            "1–2 people"
        );
        assert_eq!(in_words(&AnswerType::Money, &json!(2000), true), "$2,000 a month");
        assert_eq!(
            in_words(&AnswerType::Money, &json!({ "min": 1500, "max": 12500 }), true),
            "$1,500–$12,500 a month"
        );
        assert_eq!(
            in_words(&AnswerType::Date, &json!("2027-01-15"), true),
            "15 January 2027"
        );
        assert_eq!(in_words(&AnswerType::YesNo, &json!(true), true), "Yes");
        assert_eq!(in_words(&AnswerType::YesNo, &json!(false), true), "No");
    }

    #[test]
    fn nothing_heard_and_not_sure_are_told_apart() {
        assert_eq!(in_words(&AnswerType::Number, &Value::Null, false), "not captured");
        assert_eq!(in_words(&AnswerType::Money, &Value::Null, true), "not sure");
    }

    #[test]
    fn a_value_of_another_shape_is_shown_as_it_is() {
        assert_eq!(in_words(&AnswerType::YesNo, &json!("maybe"), true), "maybe");
        assert_eq!(in_words(&AnswerType::Date, &json!(5), true), "5");
    }
}
