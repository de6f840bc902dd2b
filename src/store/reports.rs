//! The figures the CMO report, status and dashboard show, counted in the business's time zone.

use std::time::Duration;

use super::{Store, StoreError};

/// A reporting period, counted in the business's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Today,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "today" => Some(Self::Today),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Today => "today",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The start of the period that contains `now` (weeks start on Monday).
    pub fn start(self, now: time::OffsetDateTime, zone: &jiff::tz::TimeZone) -> time::OffsetDateTime {
        let Ok(instant) = jiff::Timestamp::from_second(now.unix_timestamp()) else {
            return now;
        };
        let today = instant.to_zoned_datetime(zone.clone()).date();
        let first = match self {
            Self::Today => today,
            Self::Week => today
                .checked_sub(jiff::ToSpan::days(i64::from(today.weekday().to_monday_zero_offset())))
                .unwrap_or(today),
            Self::Month => today.first_of_month(),
        };
        first
            .to_zoned_datetime(zone.clone())
            .ok()
            .and_then(|start| time::OffsetDateTime::from_unix_timestamp(start.timestamp().as_second()).ok())
            .unwrap_or(now)
    }
}

/// What the CMO agent is told about a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub total_leads: u64,
    pub qualified_leads: u64,
    pub calls_made: u64,
    pub sms_sent: u64,
    /// Leads of the period whose tour is booked now (Calendly's reports).
    pub booked_leads: u64,
    /// The median time from a booked lead's form to its booking.
    pub median_secs_to_booking: Option<f64>,
    /// Leads of the period put through to a rep on the call (a warm transfer that connected).
    pub transferred_leads: u64,
    /// Mean seconds from the lead's submission to the call placed; None before any call.
    pub average_speed_to_lead: Option<f64>,
    pub last_activity: Option<String>,
}

impl Figures {
    /// The figures `agent.status` and the CMO status carry, for a day's figures.
    pub fn as_status_metrics(&self) -> crate::bus::StatusMetrics {
        crate::bus::StatusMetrics {
            calls_today: self.calls_made,
            sms_today: self.sms_sent,
            leads_today: self.total_leads,
            booked_today: self.booked_leads,
            transferred_today: self.transferred_leads,
        }
    }

    /// Qualified leads as a percentage of all leads, one decimal.
    pub fn conversion_rate(&self) -> f64 {
        percent(self.qualified_leads, self.total_leads)
    }

    /// Booked leads as a percentage of all leads, one decimal: conversion to a tour.
    pub fn booking_rate(&self) -> f64 {
        percent(self.booked_leads, self.total_leads)
    }
}

/// The median of `booked - form` over `[{form, booked}]` (RFC 3339 times), whole seconds.
fn median_secs_to_booking(pairs: &serde_json::Value) -> Option<f64> {
    let at = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
    };
    let waits: Vec<f64> = pairs
        .as_array()?
        .iter()
        .filter_map(|pair| Some((at(&pair["booked"])? - at(&pair["form"])?).as_seconds_f64()))
        .filter(|secs| *secs >= 0.0)
        .collect();
    median(waits).map(f64::round)
}

/// The middle value (the mean of the two middle ones for an even count); none of nothing.
pub(super) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// How long computed figures are reused; a CMO agent polling status sees them at most this old.
const FIGURES_FRESH_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// The period's figures, from indexed counts (never a scan of every lead per request).
    pub async fn figures(&self, since: time::OffsetDateTime) -> Result<Figures, StoreError> {
        let since = since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let cached = self.figures_cache.lock().ok().and_then(|cache| {
            cache
                .get(&since)
                .filter(|(at, _)| at.elapsed() < FIGURES_FRESH_FOR)
                .map(|(_, f)| f.clone())
        });
        if let Some(figures) = cached {
            return Ok(figures);
        }
        let figures = self.compute_figures(&since).await?;
        if let Ok(mut cache) = self.figures_cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < FIGURES_FRESH_FOR);
            cache.insert(since, (std::time::Instant::now(), figures.clone()));
        }
        Ok(figures)
    }

    async fn compute_figures(&self, since: &str) -> Result<Figures, StoreError> {
        let since = since.to_owned();
        let mut response = self.conn.run(|db| db.query(
                "LET $leads = SELECT verdict, timestamps, booking, transfer FROM lead WHERE timestamps.finalized_at >= $since; \
                 RETURN { \
                   total: count($leads), \
                   transferred: count($leads[WHERE transfer.outcome = 'transferred']), \
                   booked: count($leads[WHERE booking.state = 'booked']), \
                   qualified: count($leads[WHERE verdict = 'qualified']), \
                   calls: count($leads[WHERE timestamps.call_placed_at != NONE AND timestamps.call_placed_at != NULL]), \
                   speed: math::mean($leads[WHERE timestamps.speed_to_lead_secs != NONE AND timestamps.speed_to_lead_secs != NULL].timestamps.speed_to_lead_secs), \
                   sms: count(SELECT id FROM activity WHERE kind = 'sms.sent' AND at >= <datetime>$since), \
                   bookings: $leads[WHERE booking.state = 'booked'].map(|$l| { \
                     form: $l.timestamps.submitted_at ?? $l.timestamps.seen_at, booked: $l.booking.booked_at }), \
                   last: (SELECT VALUE <string>at FROM activity ORDER BY at DESC LIMIT 1)[0] \
                 };",
            )
            .bind(("since", since.clone()))
            ).await?;
        let row: Option<serde_json::Value> = response.take(1)?;
        let row = row.unwrap_or_default();
        let count = |key: &str| row[key].as_u64().unwrap_or(0);
        Ok(Figures {
            total_leads: count("total"),
            qualified_leads: count("qualified"),
            calls_made: count("calls"),
            sms_sent: count("sms"),
            booked_leads: count("booked"),
            transferred_leads: count("transferred"),
            median_secs_to_booking: median_secs_to_booking(&row["bookings"]),
            average_speed_to_lead: row["speed"]
                .as_f64()
                .filter(|s| s.is_finite())
                .map(|s| (s * 10.0).round() / 10.0),
            last_activity: row["last"].as_str().map(str::to_owned),
        })
    }

    /// Verdict counts and speed-to-lead percentiles of the leads finished since `since`.
    pub async fn dashboard(&self, since: time::OffsetDateTime) -> Result<serde_json::Value, StoreError> {
        let since = since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut response = self.conn.run(|db| db.query(
                "LET $leads = SELECT verdict, timestamps FROM lead WHERE timestamps.finalized_at >= $since; \
                 LET $speeds = $leads[WHERE timestamps.speed_to_lead_secs != NONE AND timestamps.speed_to_lead_secs != NULL].timestamps.speed_to_lead_secs; \
                 RETURN { \
                   verdicts: (SELECT verdict, count() AS count FROM $leads GROUP BY verdict), \
                   p50: IF count($speeds) > 0 THEN math::percentile($speeds, 50) ELSE NULL END, \
                   p95: IF count($speeds) > 0 THEN math::percentile($speeds, 95) ELSE NULL END, \
                   samples: count($speeds) \
                 };",
            )
            .bind(("since", since.clone()))
            ).await?;
        let row: Option<serde_json::Value> = response.take(2)?;
        Ok(row.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_time_to_booking_is_the_middle_wait_and_skips_what_cannot_be_read() {
        let pair = |form: &str, booked: &str| json!({ "form": form, "booked": booked });
        let odd = json!([
            pair("2026-12-08T10:00:00Z", "2026-12-08T10:30:00Z"),
            pair("2026-12-08T10:00:00Z", "2026-12-09T10:00:00Z"),
            pair("2026-12-08T10:00:00Z", "2026-12-08T11:00:00Z"),
            { "form": null, "booked": "2026-12-08T11:00:00Z" },
        ]);
        assert_eq!(median_secs_to_booking(&odd), Some(3600.0));
        let even = json!([
            pair("2026-12-08T10:00:00Z", "2026-12-08T10:00:10Z"),
            pair("2026-12-08T10:00:00Z", "2026-12-08T10:00:20Z"),
        ]);
        assert_eq!(median_secs_to_booking(&even), Some(15.0));
        assert_eq!(median_secs_to_booking(&json!([])), None);
    }
}
