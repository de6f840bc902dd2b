//! Spanish calls (`LEADQ_SPANISH__*`): which form fields and landing pages say a lead speaks
//! Spanish, and the texts a Spanish-speaking lead gets.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SpanishSettings {
    /// Form fields that name the lead's language (`es`, `Español`, `Spanish`).
    pub form_fields: Vec<String>,
    /// A landing page whose URL or name holds one of these is a Spanish page.
    pub page_markers: Vec<String>,
    /// The text with the booking link (`{name}`, `{link}`).
    pub sms_template: String,
    /// The follow-up text (`{name}`, `{link}`).
    pub followup_template: String,
}

impl Default for SpanishSettings {
    fn default() -> Self {
        Self {
            form_fields: vec!["language".into(), "idioma".into(), "lang".into()],
            page_markers: vec![
                "/es/".into(),
                "/es-".into(),
                "lang=es".into(),
                "espanol".into(),
                "español".into(),
            ],
            sms_template: "Hola {name}, gracias por su interés en Mesh Cowork. Reserve su visita aquí: {link}".into(),
            followup_template: "Hola {name}, ¿sigue interesado en Mesh Cowork? Elija una hora para su visita: {link}"
                .into(),
        }
    }
}
