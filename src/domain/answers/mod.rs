//! What a spoken answer means. Twilio gives us words ("about a dozen of us", "two grand a month",
//! "I know the budget but my boss signs"); each answer type turns them into a value and keeps the
//! raw text beside it. All matching is on whole words: "10 years" holds no "0", "I know" no "no".

use jiff::civil::Date;
use serde::Serialize;
use serde_json::Value;

use super::script::{AnswerType, Question};

mod choice;
mod dates;
mod money;
mod numbers;
mod people;
mod speech;
mod yes_no;

pub use speech::{Reading, fold};

use choice::choice;
use dates::move_in;
use money::monthly_budget;
use numbers::read_numbers;
use people::people_count;
use yes_no::yes_no;

/// One answer as the finalizer stores it and `leadq script test` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Interpretation {
    pub question: String,
    pub raw: String,
    /// The choice id; an integer or `{"min", "max"}`; a `YYYY-MM-DD` date; dollars per month;
    /// true/false; or null when nothing usable was said (or "not sure").
    pub value: Value,
    /// False when the words held no answer at all; "not sure" is captured, with a null value.
    pub captured: bool,
}

/// Reads `raw` as an answer to `question`, in English or Spanish.
pub fn interpret(question: &Question, raw: &str, today: Date) -> Interpretation {
    interpret_as(question, raw, today, Reading::Either)
}

/// The answer's value as `text` says it, for the question's answer type.
fn value_of(question: &Question, text: &Text, today: Date) -> Option<Value> {
    match &question.answer {
        AnswerType::Choice { options } => choice(text, options),
        AnswerType::Number => people_count(text),
        AnswerType::Date => move_in(text, today),
        AnswerType::Money => monthly_budget(text),
        AnswerType::YesNo => yes_no(text),
    }
}

/// What was said, made readable (see `speech`): the whole answer, and the part after the last
/// correction when there is one.
fn heard(question: &Question, raw: &str, reading: Reading) -> (Text, Option<Text>) {
    let heard = speech::hear(&words_of(raw), &question.synonyms, reading);
    (Text::from_words(heard.whole), heard.corrected.map(Text::from_words))
}

/// As `interpret`, with the languages read chosen (`leadq script test --language`). A correction
/// ("five, no wait, six") is read first; the whole answer only when the correction does not read.
pub fn interpret_as(question: &Question, raw: &str, today: Date, reading: Reading) -> Interpretation {
    let (whole, corrected) = heard(question, raw, reading);
    let value = corrected
        .and_then(|text| value_of(question, &text, today))
        .or_else(|| value_of(question, &whole, today));
    let (value, captured) = match value {
        Some(value) => (value, true),
        None => (Value::Null, false),
    };
    Interpretation {
        question: question.id.clone(),
        raw: raw.to_owned(),
        value,
        captured,
    }
}

/// Whether `raw` answers `question` beyond doubt: it reads as an answer, and is said in that
/// answer's own words (a count with people, money with dollars or a month), so a bare "three"
/// said to "how many people?" is not also taken for the budget. A yes or no never is: a "yes"
/// inside another answer is no decision on the space.
pub fn clearly_answers(question: &Question, raw: &str, today: Date) -> bool {
    let (whole, corrected) = heard(question, raw, Reading::Either);
    let text = corrected.unwrap_or(whole);
    match &question.answer {
        AnswerType::YesNo => false,
        AnswerType::Number => {
            people_count(&text).is_some()
                && (text.numbers.is_empty() || text.numbers.iter().any(|n| text.followed_by(n.end, 3, people::PEOPLE)))
        }
        AnswerType::Money => {
            monthly_budget(&text).is_some_and(|v| !v.is_null())
                && text
                    .numbers
                    .iter()
                    .any(|n| n.money || text.followed_by(n.end, 3, money::SAID_AS_MONEY))
        }
        AnswerType::Date | AnswerType::Choice { .. } => interpret(question, raw, today).captured,
    }
}

/// The answer as lowercase whole words, with number words and digits read as numbers.
struct Text {
    words: Vec<String>,
    /// The words joined by single spaces and padded, so ` phrase ` finds whole words only.
    padded: String,
    numbers: Vec<Number>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Number {
    value: f64,
    /// Word positions the number spans, `start..end`.
    start: usize,
    end: usize,
    /// Said as money: a `$`, "k" or "grand".
    money: bool,
}

/// The answer as lowercase words without accents or punctuation; "1,500" and "2.5" stay one
/// number and "3-4" is "3 to 4".
fn words_of(raw: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(raw.len());
    let chars: Vec<char> = speech::fold(raw).replace(['’', '‘'], "'").chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        match c {
            c if c.is_alphanumeric() || c == '\'' || c == '$' => cleaned.push(c),
            // "1,500" and "2.5" are one number; "3-4" is a range.
            ',' | '.' if prev_digit && next_digit => cleaned.push(c),
            '-' if prev_digit && next_digit => cleaned.push_str(" to "),
            _ => cleaned.push(' '),
        }
    }
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

impl Text {
    fn from_words(words: Vec<String>) -> Self {
        let padded = format!(" {} ", words.join(" "));
        let numbers = read_numbers(&words);
        Self { words, padded, numbers }
    }

    fn has(&self, phrase: &str) -> bool {
        self.padded.contains(&format!(" {phrase} "))
    }

    fn has_any(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| self.has(p))
    }

    /// As `has_any`, for a phrase table read from `speech.toml`.
    fn has_any_of(&self, phrases: &[String]) -> bool {
        phrases.iter().any(|p| self.has(p))
    }

    /// Word position of the first occurrence of `phrase`.
    fn position(&self, phrase: &str) -> Option<usize> {
        let at = self.padded.find(&format!(" {phrase} "))?;
        Some(self.padded[..at].split_whitespace().count())
    }

    fn word(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }

    /// Whether any of `words` is among the `n` words after position `end`.
    fn followed_by(&self, end: usize, n: usize, words: &[&str]) -> bool {
        (end..(end + n).min(self.words.len())).any(|i| words.contains(&self.words[i].as_str()))
    }
}
