//! TwiML, the XML that tells Twilio what to do on a call. Written with quick-xml, so every text a
//! lead gave us (a name such as `<Say>& "Bob"`) is escaped, never spliced into markup.

use std::io;

use quick_xml::Writer;
use quick_xml::events::BytesText;

/// The verbs leadq uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    Say(String),
    /// Listens for speech and posts `SpeechResult` and `Confidence` to `action`; `prompt` is said
    /// while listening.
    Gather {
        action: String,
        hints: Vec<String>,
        prompt: Vec<String>,
        /// Also takes one key press (`Digits`), as a rep answering the whisper may.
        keypad: bool,
    },
    /// Puts the call through to `number` (`answerOnBridge`: the lead hears ringing, not silence,
    /// until the rep takes it). `whisper` is the TwiML the rep hears first; `action` is posted
    /// when the dial ends, with `DialCallStatus`.
    Dial {
        caller_id: Option<String>,
        timeout_secs: u32,
        action: String,
        number: String,
        whisper: String,
    },
    Pause(u32),
    Redirect(String),
    Hangup,
}

use crate::domain::language::Language;

/// The voice of every `<Say>` and the language of it and of speech recognition, by the call's language.
fn voice(language: Language) -> (&'static str, &'static str) {
    match language {
        Language::En => ("Polly.Joanna", "en-US"),
        Language::Es => ("Polly.Lupe", "es-US"),
    }
}

/// Characters XML 1.0 cannot carry even escaped (most control characters): dropped, so a script
/// or a name that holds one still makes a valid document.
fn xml_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let allowed =
        |c: char| (!c.is_control() || matches!(c, '\t' | '\n' | '\r')) && !matches!(c, '\u{fffe}' | '\u{ffff}');
    if text.chars().all(allowed) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.chars().filter(|c| allowed(*c)).collect())
    }
}

fn write_say(writer: &mut Writer<Vec<u8>>, text: &str, language: Language) -> io::Result<()> {
    let (voice, language) = voice(language);
    writer
        .create_element("Say")
        .with_attributes([("voice", voice), ("language", language)])
        .write_text_content(BytesText::new(&xml_safe(text)))?;
    Ok(())
}

fn write_verb(writer: &mut Writer<Vec<u8>>, verb: &Verb, language: Language) -> io::Result<()> {
    match verb {
        Verb::Say(text) => write_say(writer, text, language)?,
        Verb::Gather {
            action,
            hints,
            prompt,
            keypad,
        } => {
            let hints = hints.join(", ");
            let mut gather = writer.create_element("Gather").with_attributes([
                ("input", if *keypad { "dtmf speech" } else { "speech" }),
                ("action", action.as_str()),
                ("method", "POST"),
                ("language", voice(language).1),
                ("speechTimeout", "auto"),
                ("actionOnEmptyResult", "true"),
            ]);
            if !hints.is_empty() {
                gather = gather.with_attribute(("hints", hints.as_str()));
            }
            if *keypad {
                gather = gather.with_attribute(("numDigits", "1"));
            }
            gather.write_inner_content(|w| prompt.iter().try_for_each(|text| write_say(w, text, language)))?;
        }
        Verb::Dial {
            caller_id,
            timeout_secs,
            action,
            number,
            whisper,
        } => {
            let timeout = timeout_secs.to_string();
            let mut dial = writer.create_element("Dial").with_attributes([
                ("timeout", timeout.as_str()),
                ("answerOnBridge", "true"),
                ("action", action.as_str()),
                ("method", "POST"),
            ]);
            if let Some(caller_id) = caller_id {
                dial = dial.with_attribute(("callerId", caller_id.as_str()));
            }
            dial.write_inner_content(|w| {
                w.create_element("Number")
                    .with_attributes([("url", whisper.as_str()), ("method", "POST")])
                    .write_text_content(BytesText::new(number))?;
                Ok::<_, io::Error>(())
            })?;
        }
        Verb::Pause(seconds) => {
            writer
                .create_element("Pause")
                .with_attribute(("length", seconds.to_string().as_str()))
                .write_empty()?;
        }
        Verb::Redirect(url) => {
            writer
                .create_element("Redirect")
                .with_attribute(("method", "POST"))
                .write_text_content(BytesText::new(url))?;
        }
        Verb::Hangup => {
            writer.create_element("Hangup").write_empty()?;
        }
    }
    Ok(())
}

/// A whole `<Response>` document, in English.
pub fn render(verbs: &[Verb]) -> String {
    render_in(verbs, Language::En)
}

/// A whole `<Response>` document, spoken and listened to in `language`.
pub fn render_in(verbs: &[Verb], language: Language) -> String {
    let mut writer = Writer::new(Vec::new());
    let written = writer
        .write_event(quick_xml::events::Event::Decl(quick_xml::events::BytesDecl::new(
            "1.0",
            Some("UTF-8"),
            None,
        )))
        .and_then(|()| {
            writer
                .create_element("Response")
                .write_inner_content(|w| verbs.iter().try_for_each(|v| write_verb(w, v, language)))
        });
    // Writing into a Vec cannot fail; keep the type honest rather than unwrap.
    if let Err(err) = written {
        tracing::error!(%err, "TwiML rendering failed");
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>".into();
    }
    String::from_utf8_lossy(&writer.into_inner()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_a_lead_is_escaped() {
        let xml = render(&[Verb::Say(r#"Hi <Say>& "Bob""#.into()), Verb::Hangup]);
        assert!(xml.contains("Hi &lt;Say&gt;&amp; &quot;Bob&quot;"), "{xml}");
        assert_eq!(xml.matches("<Say").count(), 1, "{xml}");
        assert!(xml.ends_with("<Hangup/></Response>"), "{xml}");
    }

    #[test]
    fn control_characters_never_reach_the_document() {
        let xml = render(&[Verb::Say("Hi Ada\u{1}\u{8} Lovelace\u{fffe}".into())]);
        assert!(xml.contains(">Hi Ada Lovelace</Say>"), "{xml}");
        assert!(!xml.chars().any(|c| c.is_control()), "{xml:?}");
    }

    #[test]
    fn a_gather_listens_for_speech_and_posts_to_its_action() {
        let xml = render(&[Verb::Gather {
            action: "https://x.test/webhooks/twilio/answer/1?lead=a&b=c".into(),
            hints: vec!["private office".into(), "hot desk".into()],
            prompt: vec!["What kind of space?".into()],
            keypad: false,
        }]);
        assert!(xml.contains(r#"input="speech""#), "{xml}");
        assert!(
            xml.contains(r#"action="https://x.test/webhooks/twilio/answer/1?lead=a&amp;b=c""#),
            "{xml}"
        );
        assert!(xml.contains(r#"hints="private office, hot desk""#), "{xml}");
        assert!(xml.contains("What kind of space?</Say></Gather>"), "{xml}");
    }

    #[test]
    fn a_dial_rings_the_rep_with_a_whisper_and_reports_its_end() {
        let xml = render(&[Verb::Dial {
            caller_id: Some("+15005550006".into()),
            timeout_secs: 20,
            action: "https://x.test/webhooks/twilio/transfer/dial-end?lead=a".into(),
            number: "+12125550199".into(),
            whisper: "https://x.test/webhooks/twilio/transfer/whisper?lead=a".into(),
        }]);
        assert!(xml.contains(r#"<Dial timeout="20" answerOnBridge="true" action="https://x.test/webhooks/twilio/transfer/dial-end?lead=a" method="POST" callerId="+15005550006">"#), "{xml}");
        assert!(xml.contains(r#"<Number url="https://x.test/webhooks/twilio/transfer/whisper?lead=a" method="POST">+12125550199</Number></Dial>"#), "{xml}");
    }

    #[test]
    fn a_spanish_call_is_spoken_and_heard_in_spanish() {
        let xml = render_in(
            &[Verb::Gather {
                action: "https://x.test/a".into(),
                hints: Vec::new(),
                prompt: vec!["¿Cuántas personas?".into()],
                keypad: false,
            }],
            Language::Es,
        );
        assert!(
            xml.contains(r#"language="es-US""#) && xml.contains(r#"voice="Polly.Lupe""#),
            "{xml}"
        );
        assert!(!xml.contains("en-US"), "{xml}");
    }
}
