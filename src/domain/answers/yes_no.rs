//! Yes or no, as people say it ("yeah I sign off on it", "not really", "my boss does"), from the
//! phrase tables in `speech.toml`.

use serde_json::{Value, json};

use super::Text;
use super::speech::PHRASES;

pub(super) fn yes_no(text: &Text) -> Option<Value> {
    let said = &PHRASES.yes_no;
    if text.has_any_of(&said.joint) || text.has_any_of(&said.i_decide) {
        return Some(json!(true));
    }
    if text.has_any_of(&said.someone_else) {
        return Some(json!(false));
    }
    if text.has_any_of(&said.unsure) {
        return Some(Value::Null);
    }
    if text.has_any_of(&said.no) {
        return Some(json!(false));
    }
    if text.has_any_of(&said.yes) {
        return Some(json!(true));
    }
    if text.has_any(&["no", "not"]) {
        return Some(json!(false));
    }
    None
}
