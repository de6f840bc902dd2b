//! Reads the TwiML a voice application returns, as Twilio would, into the verbs the callee acts on.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    Say(String),
    Gather {
        action: Option<String>,
        prompt: Vec<String>,
        hints: Option<String>,
        input: Option<String>,
        /// The language speech is recognized in (`en-US`, `es-US`).
        language: Option<String>,
    },
    /// Puts the call through to `number`; `url` is the whisper the called party hears first.
    Dial {
        action: Option<String>,
        caller_id: Option<String>,
        timeout: Option<String>,
        answer_on_bridge: bool,
        number: String,
        url: Option<String>,
    },
    Pause,
    Redirect(String),
    Hangup,
}

fn attribute(tag: &BytesStart, name: &str) -> Option<String> {
    tag.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name.as_bytes())
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// Parses a `<Response>` document; an unknown verb or malformed XML is an error, as for Twilio
/// (which would say "an application error has occurred" and hang up).
pub fn parse(xml: &str) -> Result<Vec<Verb>, String> {
    let mut reader = Reader::from_str(xml);
    let mut verbs = Vec::new();
    let mut text = String::new();
    // The verb being read: its name, and for a Gather its start tag and the Says inside.
    let mut gather: Option<OpenGather> = None;
    let mut seen_response = false;
    let mut dial: Option<Verb> = None;
    loop {
        match reader.read_event().map_err(|e| format!("malformed TwiML: {e}"))? {
            Event::Start(tag) => {
                text.clear();
                match tag.name().as_ref() {
                    b"Response" => seen_response = true,
                    b"Gather" => {
                        gather = Some((
                            attribute(&tag, "action"),
                            attribute(&tag, "hints"),
                            attribute(&tag, "input"),
                            attribute(&tag, "language"),
                            Vec::new(),
                        ))
                    }
                    b"Say" | b"Redirect" => {}
                    b"Dial" => {
                        dial = Some(Verb::Dial {
                            action: attribute(&tag, "action"),
                            caller_id: attribute(&tag, "callerId"),
                            timeout: attribute(&tag, "timeout"),
                            answer_on_bridge: attribute(&tag, "answerOnBridge").as_deref() == Some("true"),
                            number: String::new(),
                            url: None,
                        })
                    }
                    b"Number" => match dial.as_mut() {
                        Some(Verb::Dial { url, .. }) => *url = attribute(&tag, "url"),
                        _ => return Err("<Number> outside a <Dial>".into()),
                    },
                    other => return Err(format!("unsupported verb <{}>", String::from_utf8_lossy(other))),
                }
            }
            Event::Empty(tag) => match tag.name().as_ref() {
                b"Hangup" => verbs.push(Verb::Hangup),
                b"Pause" => verbs.push(Verb::Pause),
                b"Gather" => verbs.push(Verb::Gather {
                    action: attribute(&tag, "action"),
                    prompt: Vec::new(),
                    hints: attribute(&tag, "hints"),
                    input: attribute(&tag, "input"),
                    language: attribute(&tag, "language"),
                }),
                b"Response" => seen_response = true,
                other => return Err(format!("unsupported verb <{}/>", String::from_utf8_lossy(other))),
            },
            Event::Text(t) => text.push_str(&t.xml_content().map_err(|e| format!("bad text: {e}"))?),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                    continue;
                }
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let resolved = match name.as_str() {
                    "lt" => "<".to_owned(),
                    "gt" => ">".to_owned(),
                    "amp" => "&".to_owned(),
                    "quot" => "\"".to_owned(),
                    "apos" => "'".to_owned(),
                    other => return Err(format!("unknown entity &{other};")),
                };
                text.push_str(&resolved);
            }
            Event::End(tag) => match tag.name().as_ref() {
                b"Say" => {
                    let said = std::mem::take(&mut text);
                    match gather.as_mut() {
                        Some((.., prompt)) => prompt.push(said),
                        None => verbs.push(Verb::Say(said)),
                    }
                }
                b"Redirect" => verbs.push(Verb::Redirect(std::mem::take(&mut text).trim().to_owned())),
                b"Number" => {
                    if let Some(Verb::Dial { number, .. }) = dial.as_mut() {
                        *number = std::mem::take(&mut text).trim().to_owned();
                    }
                }
                b"Dial" => {
                    let Some(verb) = dial.take() else {
                        return Err("</Dial> without a <Dial>".into());
                    };
                    if matches!(&verb, Verb::Dial { number, .. } if number.is_empty()) {
                        return Err("a <Dial> with no number".into());
                    }
                    verbs.push(verb);
                }
                b"Gather" => {
                    if let Some((action, hints, input, language, prompt)) = gather.take() {
                        verbs.push(Verb::Gather {
                            action,
                            prompt,
                            hints,
                            input,
                            language,
                        });
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_response {
        return Err("no <Response> element".into());
    }
    Ok(verbs)
}

/// A `<Gather>` being read: four of its attributes (as the reader keeps them) and the text of
/// each `<Say>` inside it.
type OpenGather = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<String>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_says_gathers_and_escapes() {
        let verbs = parse(
            r#"<?xml version="1.0"?><Response><Say voice="x">Hi &lt;Say&gt;&amp; &quot;Bob&quot;</Say><Gather input="speech" action="http://a/answer/1?lead=1&amp;x=2" hints="a, b"><Say>Q1?</Say></Gather><Redirect method="POST">http://a/r</Redirect><Hangup/></Response>"#,
        )
        .expect("parses");
        assert_eq!(verbs[0], Verb::Say(r#"Hi <Say>& "Bob""#.into()));
        assert_eq!(
            verbs[1],
            Verb::Gather {
                action: Some("http://a/answer/1?lead=1&x=2".into()),
                prompt: vec!["Q1?".into()],
                hints: Some("a, b".into()),
                input: Some("speech".into()),
                language: None,
            }
        );
        assert_eq!(verbs[2], Verb::Redirect("http://a/r".into()));
        assert_eq!(verbs[3], Verb::Hangup);
    }

    #[test]
    fn reads_a_dial_with_its_number_and_whisper() {
        let verbs = parse(
            r#"<Response><Say>Connecting</Say><Dial timeout="20" answerOnBridge="true" action="http://a/end?lead=1" callerId="+15005550006"><Number url="http://a/whisper?lead=1&amp;x=2">+12125550199</Number></Dial></Response>"#,
        )
        .expect("parses");
        assert_eq!(
            verbs[1],
            Verb::Dial {
                action: Some("http://a/end?lead=1".into()),
                caller_id: Some("+15005550006".into()),
                timeout: Some("20".into()),
                answer_on_bridge: true,
                number: "+12125550199".into(),
                url: Some("http://a/whisper?lead=1&x=2".into()),
            }
        );
        assert!(parse("<Response><Dial></Dial></Response>").is_err());
    }

    #[test]
    fn rejects_what_twilio_rejects() {
        assert!(parse("<Response><Dance/></Response>").is_err());
        assert!(parse("<Say>hi</Say>").is_err());
        assert!(parse("<Response><Say>unclosed</Response>").is_err());
    }
}
