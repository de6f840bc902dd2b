//! Yes or no, as people say it ("yeah I sign off on it", "not really", "my boss does").

use serde_json::{Value, json};

use super::Text;

pub(super) fn yes_no(text: &Text) -> Option<Value> {
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
