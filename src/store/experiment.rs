//! The A/B test's figures from the lead records: per script variant, its calls, the calls with
//! every answer read, the qualified and booked leads, and the median call length.

use std::collections::BTreeMap;

use super::reports::median;
use super::{Store, StoreError};
use crate::domain::experiment::VariantFigures;

impl Store {
    /// Every variant's figures, `a` first; both are listed even before a call of one.
    pub async fn variant_figures(&self) -> Result<Vec<VariantFigures>, StoreError> {
        let mut response = self
            .conn
            .run(|db| {
                db.query(
                    "SELECT script_variant AS variant, verdict, booking.state AS booking, answers.captured AS read, \
                     timestamps.call_secs AS call_secs, timestamps.call_placed_at AS placed \
                     FROM lead WHERE script_variant != NONE",
                )
            })
            .await?;
        let rows: Vec<serde_json::Value> = response.take(0)?;
        let none_yet = |variant: &str| {
            let figures = VariantFigures {
                variant: variant.to_owned(),
                ..VariantFigures::default()
            };
            (figures, Vec::new())
        };
        let mut figures: BTreeMap<String, (VariantFigures, Vec<f64>)> =
            ["a", "b"].into_iter().map(|v| (v.to_owned(), none_yet(v))).collect();
        for row in rows.iter().filter(|row| row["placed"].is_string()) {
            let Some(variant) = row["variant"].as_str() else {
                continue;
            };
            let (figures, lengths) = figures.entry(variant.to_owned()).or_insert_with(|| none_yet(variant));
            figures.calls += 1;
            let read = row["read"].as_array();
            let all_read = read.is_some_and(|r| !r.is_empty() && r.iter().all(|c| c.as_bool() == Some(true)));
            figures.complete_calls += u64::from(all_read);
            figures.qualified += u64::from(row["verdict"] == "qualified");
            figures.booked += u64::from(row["booking"] == "booked");
            lengths.extend(row["call_secs"].as_f64());
        }
        Ok(figures
            .into_values()
            .map(|(mut figures, lengths)| {
                figures.median_call_secs = median(lengths);
                figures
            })
            .collect())
    }
}
