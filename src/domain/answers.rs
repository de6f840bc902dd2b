//! What a spoken answer means. Twilio gives us words ("about a dozen of us", "two grand a month",
//! "I know the budget but my boss signs"); each answer type turns them into a value and keeps the
//! raw text beside it. All matching is on whole words: "10 years" holds no "0", "I know" no "no".

use jiff::ToSpan;
use jiff::civil::Date;
use serde::Serialize;
use serde_json::{Value, json};

use super::script::{AnswerType, Question};

/// One answer as the finalizer stores it and `leadq script test` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interpretation {
    pub question: String,
    pub raw: String,
    /// The choice id; an integer or `{"min", "max"}`; a `YYYY-MM-DD` date; dollars per month;
    /// true/false; or null when nothing usable was said (or "not sure").
    pub value: Value,
    /// False when the words held no answer at all; "not sure" is captured, with a null value.
    pub captured: bool,
}

pub fn interpret(question: &Question, raw: &str, today: Date) -> Interpretation {
    let text = Text::new(raw);
    let value = match &question.answer {
        AnswerType::Choice { options } => choice(&text, options),
        AnswerType::Number => people_count(&text),
        AnswerType::Date => move_in(&text, today),
        AnswerType::Money => monthly_budget(&text),
        AnswerType::YesNo => yes_no(&text),
    };
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

impl Text {
    fn new(raw: &str) -> Self {
        let mut cleaned = String::with_capacity(raw.len());
        let chars: Vec<char> = raw.to_lowercase().replace(['’', '‘'], "'").chars().collect();
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
        let words: Vec<String> = cleaned
            .split_whitespace()
            .map(|w| w.trim_matches('\'').to_owned())
            .filter(|w| !w.is_empty())
            .collect();
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

const UNITS: [&str; 20] = [
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
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn small_number_word(word: &str) -> Option<f64> {
    if let Some(n) = UNITS.iter().position(|u| *u == word) {
        return Some(n as f64);
    }
    if word == "fourty" {
        return Some(40.0);
    }
    TENS.iter().position(|t| *t == word).map(|n| (n as f64 + 2.0) * 10.0)
}

/// A digit token: `12`, `1,500`, `$2,000`, `2.5`, `1.5k`, `10k`, `12th`.
fn digit_token(word: &str) -> Option<(f64, bool)> {
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
fn read_numbers(words: &[String]) -> Vec<Number> {
    let mut numbers = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let start = i;
        let mut total = 0.0;
        let mut current = 0.0;
        let mut seen = false;
        let mut money = false;
        let next_is = |j: usize, set: &[&str]| words.get(j).is_some_and(|w| set.contains(&w.as_str()));
        let fixed = match words[i].as_str() {
            "half" if next_is(i + 1, &["a", "an"]) && next_is(i + 2, &["dozen"]) => Some((6.0, 3)),
            "a" if next_is(i + 1, &["couple"]) => Some((2.0, 2)),
            "couple" => Some((2.0, 1)),
            "a" if next_is(i + 1, &["few"]) => Some((3.0, 2)),
            _ => None,
        };
        if let Some((value, len)) = fixed {
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
            } else if seen && word == "hundred" {
                current = if current == 0.0 { 100.0 } else { current * 100.0 };
            } else if seen && matches!(word, "thousand" | "grand" | "k") {
                total += if current == 0.0 { 1000.0 } else { current * 1000.0 };
                current = 0.0;
                money |= word != "thousand";
            } else if seen && word == "dozen" {
                current = if current == 0.0 { 12.0 } else { current * 12.0 };
            } else if seen
                && word == "and"
                && (total > 0.0 || current >= 100.0)
                && words.get(i + 1).is_some_and(|w| small_number_word(w).is_some())
            {
                // "one hundred and fifty": the "and" belongs to the number.
            } else {
                break;
            }
            i += 1;
        }
        if seen {
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

fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 {
        json!(n as i64)
    } else {
        json!((n * 100.0).round() / 100.0)
    }
}

/// Two numbers said as a range: "three or four", "5 to 8", "between 10 and 12", "5-8".
fn range_in(text: &Text, candidates: &[Number]) -> Option<(Number, Number)> {
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

const TIME_UNITS: &[&str] = &[
    "year", "years", "yrs", "month", "months", "week", "weeks", "day", "days", "hour", "hours", "minute", "minutes",
    "am", "pm", "o'clock", "percent",
];
const PEOPLE: &[&str] = &[
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

fn people_count(text: &Text) -> Option<Value> {
    const ALONE: &[&str] = &[
        "just me",
        "only me",
        "just myself",
        "myself",
        "me alone",
        "solo",
        "by myself",
        "on my own",
        "just one",
        "one person",
        "only one",
        "just one person",
        "i work alone",
        "me only",
        "single person",
        "freelancer",
    ];
    const PAIR: &[&str] = &[
        "me and my partner",
        "my partner and me",
        "my partner and i",
        "me and my business partner",
        "me and a colleague",
        "me and my cofounder",
        "me and my co founder",
        "the two of us",
        "two of us",
        "me and a friend",
        "me and my wife",
        "me and my husband",
        "a couple of us",
        "couple of us",
    ];
    if text.has_any(PAIR) {
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
    if text.has_any(ALONE) {
        return Some(json!(1));
    }
    None
}

const MONEY_WORDS: &[&str] = &[
    "dollars", "dollar", "bucks", "usd", "grand", "k", "a", "per", "month", "monthly", "budget",
];

fn monthly_budget(text: &Text) -> Option<Value> {
    if text.has_any(&[
        "not sure",
        "don't know",
        "do not know",
        "no idea",
        "no budget",
        "haven't decided",
        "not decided",
        "depends",
    ]) && text.numbers.is_empty()
    {
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

fn yes_no(text: &Text) -> Option<Value> {
    const JOINT: &[&str] = &[
        "me and my partner",
        "my partner and i",
        "my partner and me",
        "we both",
        "both of us",
        "jointly",
        "together",
        "me and my cofounder",
        "my cofounder and i",
        "me and my wife",
        "me and my husband",
        "we decide together",
    ];
    // Said of oneself, these outweigh the third parties named below ("I'm the owner").
    const I_DECIDE: &[&str] = &[
        "i'm the owner",
        "i am the owner",
        "i'm the ceo",
        "i am the ceo",
        "i'm the founder",
        "i am the founder",
        "i'm the boss",
        "i am the boss",
        "i'm the director",
        "i'm the decision maker",
        "i am the decision maker",
        "i'm the one who decides",
        "i own the company",
        "i own the business",
        "i'm the managing director",
        "one of them",
        "one of the decision makers",
        "i'm one of the owners",
        "i'm a partner",
        "i'm a cofounder",
    ];
    const SOMEONE_ELSE: &[&str] = &[
        "my boss",
        "my manager",
        "the boss",
        "my ceo",
        "our ceo",
        "the ceo",
        "my director",
        "our director",
        "the owner",
        "my employer",
        "the board",
        "our board",
        "head office",
        "someone else",
        "somebody else",
        "not me",
        "not my call",
        "not my decision",
        "not up to me",
        "have to ask",
        "need to ask",
        "run it by",
        "check with",
        "my supervisor",
        "management",
        "my team lead",
        "the company decides",
        "above me",
        "our cfo",
        "my cfo",
        "the cfo",
        "procurement",
        "my father",
        "my dad",
        "my mom",
    ];
    const UNSURE: &[&str] = &[
        "not sure",
        "don't know",
        "do not know",
        "dont know",
        "no idea",
        "maybe",
        "depends",
        "it depends",
        "hard to say",
        "unsure",
        "kind of",
        "sort of",
        "partly",
        "not exactly sure",
    ];
    const NO: &[&str] = &[
        "not really",
        "i'm not",
        "i am not",
        "i don't",
        "i do not",
        "nope",
        "nah",
        "negative",
        "not at all",
        "no i'm not",
        "no i am not",
        "definitely not",
        "absolutely not",
        "not the one",
        "i wouldn't",
        "i won't",
        "not the decision maker",
        "i can't decide",
        "i cannot decide",
    ];
    const YES: &[&str] = &[
        "yes",
        "yeah",
        "yep",
        "yup",
        "ya",
        "yea",
        "sure",
        "of course",
        "absolutely",
        "definitely",
        "correct",
        "that's me",
        "that is me",
        "that's right",
        "that would be me",
        "right",
        "i am",
        "i'm the",
        "i do",
        "i decide",
        "my call",
        "my decision",
        "it's me",
        "it is me",
        "me",
        "i think so",
        "probably",
        "i believe so",
        "mostly",
        "indeed",
        "certainly",
        "affirmative",
        "totally",
        "exactly",
        "i make the decisions",
        "i'm in charge",
        "i own",
        "i'm the owner",
        "no doubt",
        "no question",
        "100 percent",
        "i sign",
    ];
    if text.has_any(JOINT) || text.has_any(I_DECIDE) {
        return Some(json!(true));
    }
    if text.has_any(SOMEONE_ELSE) {
        return Some(json!(false));
    }
    if text.has_any(UNSURE) {
        return Some(Value::Null);
    }
    if text.has_any(NO) {
        return Some(json!(false));
    }
    if text.has_any(YES) {
        return Some(json!(true));
    }
    if text.has_any(&["no", "not"]) {
        return Some(json!(false));
    }
    None
}

fn choice(text: &Text, options: &[String]) -> Option<Value> {
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

fn move_in(text: &Text, today: Date) -> Option<Value> {
    let date = |d: Date| Some(json!(d.to_string()));
    const UNSURE: &[&str] = &[
        "not sure",
        "don't know",
        "do not know",
        "dont know",
        "no idea",
        "undecided",
        "unsure",
        "haven't decided",
        "not decided",
        "no rush",
        "whenever",
        "tbd",
        "to be decided",
        "flexible",
        "not yet decided",
        "no timeline",
    ];
    const NOW: &[&str] = &[
        "asap",
        "a s a p",
        "as soon as possible",
        "right away",
        "immediately",
        "right now",
        "now",
        "today",
        "urgently",
        "straight away",
        "this week",
        "as soon as we can",
        "yesterday",
        "straightaway",
    ];
    if text.has_any(UNSURE) {
        return Some(Value::Null);
    }
    if text.has("tomorrow") {
        return date(today.saturating_add(1.day()));
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
    if text.has_any(NOW) {
        return date(today);
    }
    None
}

/// "Monday", "next Friday": the next such day after today.
fn weekday(text: &Text, today: Date) -> Option<Date> {
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

const MONTHS: [(&str, &str); 12] = [
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
fn month_date(text: &Text, today: Date) -> Option<Date> {
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
