//! Landing-page notification emails ("A new lead has been captured from your Unbounce page!") to
//! [`Lead`]s. The email may carry the form as plain text (each field name on one line, its value on
//! the next lines, blocks apart by blank lines), as HTML table rows, or both. Both parts are read;
//! the HTML table wins when it holds the form, because its rows cannot be misread, while a blank
//! line inside a plain-text value looks like the start of a new field.

use mail_parser::{MessageParser, PartType};
use phonenumber::country;
use scraper::{ElementRef, Html, Node, Selector};
use time::OffsetDateTime;

use super::lead::{Lead, LeadError, PageDetails};

const FORM_HEADING: &str = "submitted form data";
const PAGE_HEADING: &str = "landing page details";

/// The form as one part of the email shows it.
#[derive(Debug, Default, PartialEq)]
struct Form {
    page: PageDetails,
    fields: Vec<(String, String)>,
}

impl Form {
    fn set_page_detail(&mut self, key: &str, value: String) {
        let value = Some(value).filter(|v| !v.is_empty());
        match key.trim().to_ascii_lowercase().as_str() {
            "page name" | "page" => self.page.page_name = value,
            "url" | "page url" => self.page.page_url = value,
            "variant" => self.page.variant = value,
            _ => {}
        }
    }
}

/// Parses one raw email (RFC 5322 bytes) into a lead, reading phone numbers without a country code
/// as numbers of `region`.
pub fn parse_notification(raw: &[u8], region: country::Id) -> Result<Lead, LeadError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| LeadError::NotALead("not an email message".into()))?;
    let mut html_form = None;
    let mut text_form = None;
    for part in &message.parts {
        match &part.body {
            PartType::Html(html) if html_form.is_none() => html_form = form_from_html(html),
            PartType::Text(text) if text_form.is_none() => text_form = form_from_text(text),
            _ => {}
        }
    }
    let form = html_form
        .filter(|f| !f.fields.is_empty())
        .or(text_form)
        .ok_or_else(|| LeadError::NotALead("no \"Submitted Form Data\" section".into()))?;
    let mut lead = Lead::from_form(form.fields, form.page, region)?;
    lead.message_id = message.message_id().map(|id| id.trim_matches(['<', '>']).to_owned());
    lead.received_at = message
        .date()
        .and_then(|date| OffsetDateTime::from_unix_timestamp(date.to_timestamp()).ok());
    Ok(lead)
}

/// A form field name as landing pages send them (`fname`, `campaignid`, `what_kind_of_...`); a
/// line with spaces is a value's continuation, not a new field.
fn looks_like_field_name(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty()
        && line.len() <= 100
        && line
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'))
}

fn form_from_text(text: &str) -> Option<Form> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let heading = |name: &str| lines.iter().position(|l| l.trim().eq_ignore_ascii_case(name));
    let form_start = heading(FORM_HEADING)?;
    let mut form = Form::default();
    if let Some(page_start) = heading(PAGE_HEADING).filter(|&p| p < form_start) {
        for block in blocks(&lines[page_start + 1..form_start]) {
            if let Some((key, rest)) = block.split_first() {
                form.set_page_detail(key, rest.join("\n").trim().to_owned());
            }
        }
    }
    for block in blocks(&lines[form_start + 1..]) {
        let Some((first, rest)) = block.split_first() else {
            continue;
        };
        match form.fields.last_mut() {
            Some((_, value)) if !looks_like_field_name(first) => {
                // A blank line inside a value (a long message): the block continues it.
                value.push_str("\n\n");
                value.push_str(block.join("\n").trim());
            }
            _ => form
                .fields
                .push((first.trim().to_owned(), rest.join("\n").trim().to_owned())),
        }
    }
    Some(form)
}

/// Runs of non-blank lines.
fn blocks<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    lines
        .split(|line| line.trim().is_empty())
        .filter(|block| !block.is_empty())
        .map(<[&str]>::to_vec)
        .collect()
}

fn selector(css: &str) -> Selector {
    // Only called with the constant selectors below, which parse.
    Selector::parse(css).unwrap_or_else(|e| unreachable!("selector {css}: {e}"))
}

fn form_from_html(html: &str) -> Option<Form> {
    let document = Html::parse_document(html);
    let markers = selector("h1, h2, h3, h4, h5, h6, p, div, span, strong, b, th, caption, tr");
    let cells = selector("td, th");
    #[derive(PartialEq)]
    enum Section {
        None,
        Page,
        Form,
    }
    let mut section = Section::None;
    let mut form = Form::default();
    for element in document.select(&markers) {
        if element.value().name() == "tr" {
            let row: Vec<ElementRef> = element.select(&cells).collect();
            if let [key, value, ..] = row.as_slice() {
                let (key, value) = (cell_text(*key), cell_text(*value));
                match section {
                    Section::Page => form.set_page_detail(&key, value),
                    Section::Form if !key.is_empty() => form.fields.push((key, value)),
                    _ => {}
                }
            }
            continue;
        }
        let text = collapse_whitespace(&element.text().collect::<String>());
        if text.eq_ignore_ascii_case(PAGE_HEADING) {
            section = Section::Page;
        } else if text.eq_ignore_ascii_case(FORM_HEADING) {
            section = Section::Form;
        }
    }
    (section == Section::Form).then_some(form)
}

/// The text of a table cell as a person reads it: `<br>` and blocks break lines, other whitespace
/// collapses.
fn cell_text(cell: ElementRef) -> String {
    let mut out = String::new();
    for node in cell.descendants() {
        match node.value() {
            Node::Text(text) => out.push_str(&text.replace(['\n', '\r', '\t'], " ")),
            Node::Element(e) if matches!(e.name(), "br" | "p" | "div" | "li") => out.push('\n'),
            _ => {}
        }
    }
    out.lines()
        .map(collapse_whitespace)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_owned()
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Lead, LeadError> {
        parse_notification(raw.as_bytes(), country::Id::US)
    }

    const HEADERS: &str = "From: Unbounce <notifications@unbounce.com>\r\nSubject: A new lead has been captured from your Unbounce page!\r\nDate: Tue, 24 Nov 2026 14:03:11 +0000\r\nMessage-ID: <t1@example.com>\r\n";

    #[test]
    fn a_message_with_a_blank_line_stays_one_field() {
        let raw = format!(
            "{HEADERS}Content-Type: text/plain; charset=UTF-8\r\n\r\nSubmitted Form Data\r\n\r\nfname\r\nAda\r\n\r\nphone\r\n4155550142\r\n\r\nmessage\r\nFirst paragraph.\r\n\r\nSecond paragraph here.\r\n\r\ncampaignid\r\n42\r\n"
        );
        let lead = parse(&raw).expect("lead");
        assert_eq!(
            lead.message.as_deref(),
            Some("First paragraph.\n\nSecond paragraph here.")
        );
        assert_eq!(lead.campaign_id.as_deref(), Some("42"));
    }

    #[test]
    fn unknown_fields_are_kept_as_extras_from_html() {
        let raw = format!(
            "{HEADERS}Content-Type: text/html; charset=UTF-8\r\n\r\n<h3>Submitted Form Data</h3><table><tr><td>fname</td><td>Bo &amp; Co</td></tr><tr><td>phone</td><td>212 555 0199</td></tr><tr><td>company_size</td><td>11-50</td></tr></table>"
        );
        let lead = parse(&raw).expect("lead");
        assert_eq!(lead.name.as_deref(), Some("Bo & Co"));
        assert_eq!(lead.extras.get("company_size").map(String::as_str), Some("11-50"));
    }

    #[test]
    fn a_latin1_quoted_printable_body_decodes() {
        let raw = format!(
            "{HEADERS}Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSubmitted Form Data\r\n\r\nfname\r\nJos=E9\r\n\r\nphone\r\n4155550142\r\n"
        );
        assert_eq!(parse(&raw).expect("lead").name.as_deref(), Some("José"));
    }

    #[test]
    fn junk_and_empty_input_are_not_leads() {
        for raw in [
            &b""[..],
            b"\x00\x01\x02\xff\xfe",
            b"Subject: hi\r\n\r\n",
            b"--broken\r\n--boundary",
        ] {
            assert!(matches!(
                parse_notification(raw, country::Id::US),
                Err(LeadError::NotALead(_))
            ));
        }
    }

    #[test]
    fn broken_mime_boundaries_do_not_panic() {
        let raw = format!(
            "{HEADERS}Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSubmitted Form Data\r\n\r\nphone\r\n4155550142\r\n--b2--\r\n--b1"
        );
        let _ = parse(&raw);
    }
}
