//! The language of a call: English, or Spanish when the form or the landing page says so, or when
//! the lead asks for it on the call ("¿en español?").

use serde::{Deserialize, Serialize};

use super::lead::Lead;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Es,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
        }
    }

    /// A language named as people write it in a form: `es`, `es-US`, `Spanish`, `Español`.
    pub fn named(value: &str) -> Option<Self> {
        let value = value.trim().to_lowercase();
        let spanish = ["es", "spa", "spanish", "espanol", "español", "castellano"];
        let english = ["en", "eng", "english", "ingles", "inglés"];
        let base = value.split(['-', '_']).next().unwrap_or_default();
        if spanish.contains(&value.as_str()) || spanish.contains(&base) {
            Some(Self::Es)
        } else if english.contains(&value.as_str()) || english.contains(&base) {
            Some(Self::En)
        } else {
            None
        }
    }

    /// The lead's language: a form field among `fields` naming one, else a landing page whose
    /// URL or name holds one of `page_markers` (`/es/`), else English.
    pub fn of_lead(lead: &Lead, fields: &[String], page_markers: &[String]) -> Self {
        let from_form = fields
            .iter()
            .filter_map(|field| lead.extras.get(&field.to_lowercase()))
            .find_map(|value| Self::named(value));
        if let Some(language) = from_form {
            return language;
        }
        let page = [lead.page.page_url.as_deref(), lead.page.page_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::to_lowercase)
            .collect::<Vec<_>>();
        let spanish_page = page_markers
            .iter()
            .any(|marker| page.iter().any(|p| p.contains(&marker.to_lowercase())));
        if spanish_page { Self::Es } else { Self::En }
    }

    /// The language a lead asks to speak instead, if `speech` asks for one ("¿en español?",
    /// "can we do this in Spanish", "in English please").
    pub fn asked_for(speech: &str) -> Option<Self> {
        let said = super::answers::fold(speech);
        let words: Vec<&str> = said
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        // A request, not a mention ("we're a Spanish company"): the language's name after "in",
        // "en" or a "speak", or said alone with at most a "please".
        const ASKING: &[&str] = &["in", "en", "speak", "habla", "hablas", "hablan", "hablar"];
        const POLITE: &[&str] = &["please", "por", "favor", "si", "yes", "ok", "okay"];
        let asks_in = |names: &[&str]| {
            words.iter().enumerate().any(|(i, word)| {
                names.contains(word)
                    && (i.checked_sub(1).is_some_and(|before| ASKING.contains(&words[before]))
                        || words.iter().all(|w| w == word || POLITE.contains(w)))
            })
        };
        if asks_in(&["espanol", "spanish", "castellano"]) {
            Some(Self::Es)
        } else if asks_in(&["english", "ingles"]) {
            Some(Self::En)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(extras: &[(&str, &str)], page_url: Option<&str>) -> Lead {
        let mut form = vec![("phone".to_owned(), "+14155550142".to_owned())];
        form.extend(extras.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut lead = Lead::from_form(form, Default::default(), phonenumber::country::Id::US).expect("lead");
        lead.page.page_url = page_url.map(str::to_owned);
        lead
    }

    #[test]
    fn the_form_or_the_page_says_spanish() {
        let fields = vec!["language".to_owned(), "idioma".to_owned()];
        let markers = vec!["/es/".to_owned()];
        assert_eq!(
            Language::of_lead(&lead(&[("idioma", "Español")], None), &fields, &markers),
            Language::Es
        );
        assert_eq!(
            Language::of_lead(&lead(&[("language", "es-US")], None), &fields, &markers),
            Language::Es
        );
        assert_eq!(
            Language::of_lead(
                &lead(&[], Some("https://meshcowork.com/es/oficinas")),
                &fields,
                &markers
            ),
            Language::Es
        );
        assert_eq!(
            Language::of_lead(
                &lead(&[("language", "English")], Some("https://x/es/")),
                &fields,
                &markers
            ),
            Language::En
        );
        assert_eq!(Language::of_lead(&lead(&[], None), &fields, &markers), Language::En);
    }

    #[test]
    fn a_lead_can_ask_for_the_other_language() {
        assert_eq!(Language::asked_for("¿En español?"), Some(Language::Es));
        assert_eq!(
            Language::asked_for("can we do this in Spanish please"),
            Some(Language::Es)
        );
        assert_eq!(Language::asked_for("in English please"), Some(Language::En));
        assert_eq!(Language::asked_for("a private office"), None);
        assert_eq!(Language::asked_for("Español, por favor"), Some(Language::Es));
        assert_eq!(Language::asked_for("¿Habla español?"), Some(Language::Es));
        // A mention is not a request.
        assert_eq!(Language::asked_for("we're a Spanish design studio"), None);
        assert_eq!(Language::asked_for("my English is fine, a hot desk"), None);
    }
}
