//! The call script as data: what the agent says, the questions it asks (each with the kind of answer
//! it expects and speech-recognition hints), the voicemail and the closing. Admins edit it; the
//! default suits a coworking space.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum AnswerType {
    /// One of `options` (ids), said in any of many ways.
    Choice {
        options: Vec<String>,
    },
    Number,
    Date,
    /// Money per month.
    Money,
    YesNo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub prompt: String,
    pub answer: AnswerType,
    /// Phrases that help Twilio's recognizer (`<Gather hints>`).
    #[serde(default)]
    pub hints: Vec<String>,
    /// Said when words were heard that do not answer the question; without one, "Sorry, " and
    /// the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reask: Option<String>,
    /// An admin's own phrases for this question, each read as the words it maps to before the
    /// answer is read: `{"a room with a door": "private office", "a handful": "five"}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub synonyms: std::collections::BTreeMap<String, String>,
}

impl Question {
    /// The one short re-ask after an answer that did not read: "Sorry, how many people ...?".
    pub fn reask_words(&self) -> String {
        if let Some(reask) = self.reask.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            return reask.to_owned();
        }
        let mut prompt = self.prompt.trim().chars();
        match prompt.next() {
            Some(first) => format!("Sorry, {}{}", first.to_lowercase(), prompt.as_str()),
            None => "Sorry, could you say that again?".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// `{name}` is replaced by the lead's name (or left out when there is none).
    pub greeting: String,
    pub questions: Vec<Question>,
    /// Said before a question is asked the second time.
    pub reprompt: String,
    pub voicemail: String,
    pub closing: String,
    /// Said when the person asks not to be called again.
    pub opt_out: String,
    /// The warm transfer's words (a script saved before it existed gets the defaults).
    #[serde(default)]
    pub transfer: TransferWords,
    /// Said when the lead asks for this script's language on the call, before the question again.
    #[serde(default)]
    pub language_switch: String,
}

/// What the lead and the rep hear around a warm transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferWords {
    /// Asked after the last question when the lead would be qualified and a rep is on duty.
    pub offer: String,
    /// What speech recognition is told to expect after the offer.
    pub offer_hints: Vec<String>,
    pub connecting: String,
    /// When the rep does not answer or declines: the lead is left with the booking link.
    pub unavailable: String,
    /// What the rep hears before taking the call; `{name}` is the lead's name, `{summary}` their answers.
    pub whisper: String,
}

impl Default for TransferWords {
    fn default() -> Self {
        Self {
            offer: "Would you like me to connect you to our community manager now?".into(),
            offer_hints: ["yes", "no", "sure", "not now"].map(String::from).to_vec(),
            connecting: "Great, connecting you now. One moment.".into(),
            unavailable: "They couldn't pick up just now. I'll text you a link to pick a time. Have a great day!"
                .into(),
            whisper: "A qualified lead, {name}, is on the line: {summary}. Press 1 or say yes to take the call.".into(),
        }
    }
}

impl Script {
    pub fn greeting_for(&self, name: Option<&str>) -> String {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        match name {
            Some(name) => self.greeting.replace("{name}", name),
            None => self.greeting.replace(" {name}", "").replace("{name}", ""),
        }
    }

    /// The question at 1-based position `n`, as the webhooks number them.
    pub fn question(&self, n: usize) -> Option<&Question> {
        n.checked_sub(1).and_then(|i| self.questions.get(i))
    }
}

fn question(id: &str, prompt: &str, reask: &str, answer: AnswerType, hints: &[&str]) -> Question {
    Question {
        id: id.into(),
        prompt: prompt.into(),
        answer,
        hints: hints.iter().map(|h| (*h).to_owned()).collect(),
        reask: Some(reask.into()),
        synonyms: Default::default(),
    }
}

impl Default for Script {
    fn default() -> Self {
        let space_types = [
            "private_office",
            "dedicated_desk",
            "hot_desk",
            "meeting_room",
            "virtual_office",
        ];
        Self {
            greeting: "Hi {name}, this is Mesh Cowork calling about the request you just sent us. \
                       I have five quick questions to find the right space for you."
                .into(),
            questions: vec![
                question(
                    "space_type",
                    "What kind of space are you looking for: a private office, a dedicated desk, a hot desk, \
                     a meeting room, or a virtual office?",
                    "Sorry, which kind of space: a private office, a desk of your own, a hot desk, \
                     a meeting room, or a virtual office?",
                    AnswerType::Choice {
                        options: space_types.map(String::from).to_vec(),
                    },
                    &[
                        "private office",
                        "dedicated desk",
                        "hot desk",
                        "meeting room",
                        "virtual office",
                    ],
                ),
                question(
                    "team_size",
                    "How many people will be using the space?",
                    "Sorry, how many people would use the space?",
                    AnswerType::Number,
                    &["just me", "two", "five", "ten", "twenty"],
                ),
                question(
                    "move_in",
                    "When would you like to move in?",
                    "Sorry, when would you like to move in? A month is fine.",
                    AnswerType::Date,
                    &["as soon as possible", "next month", "in two weeks", "January"],
                ),
                question(
                    "budget",
                    "What is your monthly budget for the space?",
                    "Sorry, roughly how much would you like to spend a month?",
                    AnswerType::Money,
                    &["dollars a month", "per month", "thousand"],
                ),
                question(
                    "decision_maker",
                    "And are you the person who makes the decision on the space?",
                    "Sorry, are you the one who decides on the space, yes or no?",
                    AnswerType::YesNo,
                    &["yes", "no", "I am", "my boss"],
                ),
            ],
            reprompt: "Sorry, I didn't catch that.".into(),
            voicemail: "Hi, this is Mesh Cowork returning your request for a workspace. \
                        We'll text you a link to book a tour at a time that suits you. Talk soon!"
                .into(),
            closing: "Thank you! We'll text you a link to book your tour. Have a great day!".into(),
            opt_out: "Understood, we won't call you again. Goodbye.".into(),
            transfer: TransferWords::default(),
            language_switch: "Sure, let's go on in English.".into(),
        }
    }
}

impl Script {
    /// The default script in Spanish: the same questions (ids, answer types), in Spanish words.
    pub fn spanish() -> Self {
        // Prompt, re-ask and recognizer hints of each question, in the default script's order.
        let words: [(&str, &str, &[&str]); 5] = [
            (
                "¿Qué tipo de espacio busca: una oficina privada, un escritorio fijo, un escritorio flexible, \
                 una sala de reuniones o una oficina virtual?",
                "Perdón, ¿qué tipo de espacio: una oficina privada, un escritorio fijo, un escritorio flexible, \
                 una sala de reuniones o una oficina virtual?",
                &[
                    "oficina privada",
                    "escritorio fijo",
                    "escritorio flexible",
                    "sala de reuniones",
                    "oficina virtual",
                ],
            ),
            (
                "¿Cuántas personas usarán el espacio?",
                "Perdón, ¿cuántas personas usarían el espacio?",
                &["solo yo", "dos", "cinco", "diez", "veinte"],
            ),
            (
                "¿Cuándo le gustaría mudarse?",
                "Perdón, ¿cuándo le gustaría mudarse? Un mes aproximado está bien.",
                &["lo antes posible", "el mes que viene", "en dos semanas", "enero"],
            ),
            (
                "¿Cuál es su presupuesto mensual para el espacio?",
                "Perdón, ¿cuánto le gustaría gastar al mes, más o menos?",
                &["dólares al mes", "al mes", "mil"],
            ),
            (
                "¿Y es usted quien toma la decisión sobre el espacio?",
                "Perdón, ¿es usted quien decide sobre el espacio, sí o no?",
                &["sí", "no", "yo decido", "mi jefe"],
            ),
        ];
        let questions = Self::default()
            .questions
            .into_iter()
            .zip(words)
            .map(|(question, (prompt, reask, hints))| Question {
                prompt: prompt.into(),
                reask: Some(reask.into()),
                hints: hints.iter().map(|h| (*h).to_owned()).collect(),
                ..question
            })
            .collect();
        Self {
            greeting: "Hola {name}, le llamamos de Mesh Cowork por la solicitud que nos acaba de enviar. \
                       Tengo cinco preguntas rápidas para encontrar el espacio ideal."
                .into(),
            questions,
            reprompt: "Perdón, no le entendí.".into(),
            voicemail: "Hola, le llamamos de Mesh Cowork por su solicitud de un espacio de trabajo. \
                        Le enviaremos un mensaje con un enlace para reservar una visita. ¡Hasta pronto!"
                .into(),
            closing:
                "¡Gracias! Le enviaremos un mensaje con un enlace para reservar su visita. ¡Que tenga un buen día!"
                    .into(),
            opt_out: "Entendido, no le volveremos a llamar. Adiós.".into(),
            transfer: TransferWords {
                offer: "¿Quiere que le comunique ahora con nuestro community manager?".into(),
                offer_hints: ["sí", "no", "claro", "ahora no"].map(String::from).to_vec(),
                connecting: "Perfecto, le comunico ahora. Un momento.".into(),
                unavailable:
                    "No pudo atender ahora. Le enviaré un enlace para elegir una hora. ¡Que tenga un buen día!".into(),
                // The rep hears English: the roster's reps are the team's.
                whisper: TransferWords::default().whisper,
            },
            language_switch: "¡Claro! Seguimos en español.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spanish_script_asks_the_same_questions_in_spanish() {
        let (english, spanish) = (Script::default(), Script::spanish());
        let ids = |s: &Script| {
            s.questions
                .iter()
                .map(|q| (q.id.clone(), q.answer.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&english), ids(&spanish));
        assert!(spanish.greeting_for(Some("Ana")).starts_with("Hola Ana, le llamamos"));
        assert!(spanish.questions.iter().all(|q| q.prompt.starts_with('¿')));
        assert!(spanish.transfer.offer.starts_with('¿') && spanish.transfer.offer_hints.contains(&"sí".to_owned()));
    }

    #[test]
    fn the_default_script_asks_the_five_agreed_questions() {
        let ids: Vec<_> = Script::default().questions.iter().map(|q| q.id.clone()).collect();
        assert_eq!(ids, ["space_type", "team_size", "move_in", "budget", "decision_maker"]);
    }

    #[test]
    fn the_greeting_names_the_lead_or_reads_well_without() {
        let script = Script::default();
        assert!(script.greeting_for(Some("Ada")).starts_with("Hi Ada, this"));
        assert!(script.greeting_for(None).starts_with("Hi, this"));
        assert!(script.greeting_for(Some("  ")).starts_with("Hi, this"));
    }

    #[test]
    fn questions_are_numbered_from_one() {
        let script = Script::default();
        assert_eq!(script.question(1).map(|q| q.id.as_str()), Some("space_type"));
        assert!(script.question(0).is_none() && script.question(6).is_none());
    }
}
