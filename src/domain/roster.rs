//! Who takes a warm transfer: the reps' numbers with the days and hours each is on duty, in the
//! roster's time zone. Written as `Sam Rivera +15550001111 mon-fri 09:00-17:00` (one rep per line
//! or `;`), which is also how the settings give it; the Settings page edits the same list.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::lead::Phone;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rep {line}: {reason}")]
pub struct RosterError {
    /// Which rep (1-based), as the admin counts them.
    pub line: usize,
    pub reason: String,
}

/// One person who can take a lead, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rep {
    pub name: String,
    /// E.164.
    pub phone: String,
    /// `mon-fri`, `sat,sun`, `daily`.
    pub days: String,
    /// `09:00-17:00`; `24:00` ends at midnight.
    pub hours: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Roster {
    pub reps: Vec<Rep>,
    /// IANA zone the days and hours are in; empty: the calling hours' fallback zone.
    pub time_zone: String,
    /// How long the rep's phone rings before the lead is told they will get a link instead.
    pub ring_secs: u32,
}

impl Default for Roster {
    fn default() -> Self {
        Self {
            reps: Vec::new(),
            time_zone: String::new(),
            ring_secs: 20,
        }
    }
}

const WEEK: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn weekday(name: &str) -> Option<usize> {
    let name = name.trim().to_lowercase();
    let short = name.get(..3)?;
    WEEK.iter().position(|(day, _)| *day == short)
}

/// The weekdays `days` names, Monday first.
fn read_days(days: &str) -> Result<[bool; 7], String> {
    let mut on = [false; 7];
    let days = days.trim().to_lowercase();
    if matches!(days.as_str(), "daily" | "every day" | "all") {
        return Ok([true; 7]);
    }
    for part in days.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let unknown = || format!("`{part}` is not a day or a range of days such as mon-fri");
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (weekday(from).ok_or_else(unknown)?, weekday(to).ok_or_else(unknown)?);
                // A range may wrap the week's end (fri-mon).
                let mut day = from;
                loop {
                    on[day] = true;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => on[weekday(part).ok_or_else(unknown)?] = true,
        }
    }
    if !on.contains(&true) {
        return Err("no days given (write mon-fri, sat,sun or daily)".into());
    }
    Ok(on)
}

/// The start and end of `hours`; `None` for an end of `24:00`.
fn read_hours(hours: &str) -> Result<(Time, Option<Time>), String> {
    let (from, until) = hours
        .split_once('-')
        .ok_or_else(|| format!("`{hours}` is not a span of hours such as 09:00-17:00"))?;
    let time = |t: &str| {
        t.trim()
            .parse::<Time>()
            .map_err(|_| format!("`{}` is not a time such as 09:00", t.trim()))
    };
    let from = time(from)?;
    let until = if until.trim() == "24:00" {
        None
    } else {
        Some(time(until)?)
    };
    if until.is_some_and(|until| until <= from) {
        return Err(format!("`{hours}` ends before it starts"));
    }
    Ok((from, until))
}

impl Rep {
    /// Reads `Sam Rivera +15550001111 mon-fri 09:00-17:00`: the name is everything before the number.
    fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [name @ .., phone, days, hours] = words.as_slice() else {
            return Err(format!("`{text}` is not `name +phone days hours`"));
        };
        let rep = Self {
            name: name.join(" "),
            phone: (*phone).to_owned(),
            days: (*days).to_owned(),
            hours: (*hours).to_owned(),
        };
        rep.checked()
    }

    /// The rep with the number in E.164, or what is wrong with it.
    fn checked(&self) -> Result<Self, String> {
        let name = super::lead::clean_text(&self.name, 80, false);
        if name.is_empty() {
            return Err("a rep needs a name (the lead hears nothing of it; the record does)".into());
        }
        let phone = Phone::parse(&self.phone, phonenumber::country::Id::US).map_err(|e| format!("{name}: {e}"))?;
        read_days(&self.days).map_err(|e| format!("{name}: {e}"))?;
        read_hours(&self.hours).map_err(|e| format!("{name}: {e}"))?;
        Ok(Self {
            name,
            phone: phone.as_str().to_owned(),
            days: self.days.trim().to_lowercase(),
            hours: self.hours.trim().to_owned(),
        })
    }

    fn on_duty_at(&self, local: &jiff::ZonedDateTime) -> bool {
        let (Ok(days), Ok((from, until))) = (read_days(&self.days), read_hours(&self.hours)) else {
            return false;
        };
        let day = local.weekday().to_monday_zero_offset() as usize;
        let time = local.time();
        days[day] && from <= time && until.is_none_or(|until| time < until)
    }
}

impl fmt::Display for Rep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.name, self.phone, self.days, self.hours)
    }
}

impl Roster {
    /// Reads the settings' form: reps separated by new lines or `;`.
    pub fn parse(text: &str) -> Result<Vec<Rep>, RosterError> {
        text.split(['\n', ';'])
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .enumerate()
            .map(|(i, line)| Rep::parse(line).map_err(|reason| RosterError { line: i + 1, reason }))
            .collect()
    }

    /// The roster with every rep's number in E.164 and the zone known, or the first fault.
    pub fn checked(&self) -> Result<Self, RosterError> {
        let reps = self
            .reps
            .iter()
            .enumerate()
            .map(|(i, rep)| rep.checked().map_err(|reason| RosterError { line: i + 1, reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let time_zone = self.time_zone.trim().to_owned();
        if !time_zone.is_empty() && TimeZone::get(&time_zone).is_err() {
            return Err(RosterError {
                line: 0,
                reason: format!("`{time_zone}` is not an IANA time zone"),
            });
        }
        if !(5..=60).contains(&self.ring_secs) {
            return Err(RosterError {
                line: 0,
                reason: format!("ring_secs {} is not between 5 and 60", self.ring_secs),
            });
        }
        Ok(Self {
            reps,
            time_zone,
            ring_secs: self.ring_secs,
        })
    }

    /// The first rep on duty at `at`, if any.
    pub fn on_duty(&self, at: Timestamp, fallback: &TimeZone) -> Option<&Rep> {
        let zone = TimeZone::get(&self.time_zone).unwrap_or_else(|_| fallback.clone());
        let local = at.to_zoned_datetime(zone);
        self.reps.iter().find(|rep| rep.on_duty_at(&local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(civil: &str) -> Timestamp {
        civil
            .parse::<jiff::civil::DateTime>()
            .expect("datetime")
            .in_tz("America/New_York")
            .expect("zoned")
            .timestamp()
    }

    fn roster(text: &str) -> Roster {
        Roster {
            reps: Roster::parse(text).expect("parses"),
            ..Roster::default()
        }
    }

    #[test]
    fn the_settings_form_reads_names_numbers_days_and_hours() {
        let reps = Roster::parse("Sam Rivera (415) 555-0142 mon-fri 09:00-17:00; Kim +12125550199 sat,sun 10:00-24:00")
            .expect_err("a number with spaces is not one word");
        assert_eq!(reps.line, 1);
        let reps = Roster::parse("Sam Rivera +14155550142 mon-fri 09:00-17:00\nKim +12125550199 sat,sun 10:00-24:00")
            .expect("parses");
        assert_eq!(reps[0].name, "Sam Rivera");
        assert_eq!(reps[0].phone, "+14155550142");
        assert_eq!(reps[1].to_string(), "Kim +12125550199 sat,sun 10:00-24:00");
    }

    #[test]
    fn bad_reps_are_refused_with_the_rep_named() {
        for bad in [
            "Sam +14155550142 funday 09:00-17:00",
            "Sam +14155550142 mon-fri 17:00-09:00",
            "Sam +1415 mon-fri 09:00-17:00",
            "Sam +14155550142 mon-fri nine-five",
            "+14155550142 mon-fri 09:00-17:00",
        ] {
            let err = Roster::parse(bad).expect_err(bad);
            assert_eq!(err.line, 1, "{bad}");
        }
        let bad_zone = Roster {
            time_zone: "Mars/Olympus".into(),
            ..roster("Sam +14155550142 daily 00:00-24:00")
        };
        assert!(bad_zone.checked().is_err());
    }

    #[test]
    fn the_rep_on_duty_is_the_first_whose_day_and_hours_hold_now() {
        let two = roster("Sam +14155550142 mon-fri 09:00-17:00; Kim +12125550199 fri-sun 12:00-24:00");
        let ny = TimeZone::get("America/New_York").expect("tz");
        // 2026-12-04 is a Friday.
        assert_eq!(
            two.on_duty(at("2026-12-04T10:00"), &ny).map(|r| r.name.as_str()),
            Some("Sam")
        );
        assert_eq!(
            two.on_duty(at("2026-12-04T17:00"), &ny).map(|r| r.name.as_str()),
            Some("Kim")
        );
        assert_eq!(
            two.on_duty(at("2026-12-04T23:59"), &ny).map(|r| r.name.as_str()),
            Some("Kim")
        );
        assert_eq!(two.on_duty(at("2026-12-07T08:59"), &ny), None, "Monday before nine");
        assert_eq!(two.on_duty(at("2026-12-06T11:00"), &ny), None, "Sunday before noon");
        // The roster's own zone: 10:00 in Los Angeles is 13:00 in New York.
        let west = Roster {
            time_zone: "America/Los_Angeles".into(),
            ..roster("Sam +14155550142 mon-fri 09:00-10:00")
        };
        assert_eq!(
            west.on_duty(at("2026-12-04T12:30"), &ny).map(|r| r.name.as_str()),
            Some("Sam")
        );
        assert_eq!(west.on_duty(at("2026-12-04T09:30"), &ny), None);
    }
}
