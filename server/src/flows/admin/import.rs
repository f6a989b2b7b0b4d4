//! Importing many cards at once, from CSV or JSON Lines (the CLI) or a
//! JSON batch (the admin API). Each row is a card as `POST /v1/admin/cards`
//! takes it. Importing is idempotent per card: a number already registered
//! is updated with the row's language and contacts (a field the row leaves
//! empty keeps the card's own), or left alone if nothing differs — so an
//! import can simply be run again. A bad row is reported by its number and
//! why, never with its card number, and writes nothing; the good rows of a
//! batch are written together in one transaction.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{NewCardRequest, action, new_card, record};
use crate::app::App;
use crate::error::{ApiError, mask_digit_runs};
use crate::storage::CardImported;

/// The most rows one API request (or one CLI batch) may carry.
pub const MAX_IMPORT_BATCH: usize = 500;

/// A batch for `POST /v1/admin/cards/import`. Each row is read on its own,
/// so one malformed row fails alone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Up to 500 cards, each `{acctNumber, language?, email?, phone?}` as
    /// `createCard` takes it. Each is read on its own: one that is not a
    /// card fails alone, in the report's `failed`.
    #[schema(max_items = 500, value_type = Vec<Value>)]
    pub cards: Vec<serde_json::Value>,
}

/// A row and where it came from: its line in a file, or its position
/// (from 1) in an API batch.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub number: u64,
    /// The card, or why the row could not be read as one.
    pub card: Result<NewCardRequest, String>,
}

/// What an import did. Failures name their row and why, never the number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: Vec<RowFailure>,
}

/// A row that was not imported: its number (its line in a file, its
/// position from 1 in an API batch) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowFailure {
    pub row: u64,
    pub error: String,
}

impl ImportReport {
    /// Adds another batch's counts to these.
    pub fn add(&mut self, other: ImportReport) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed.extend(other.failed);
    }
}

/// Imports one batch of at most [`MAX_IMPORT_BATCH`] rows.
pub async fn import_cards(app: &App, rows: Vec<ImportRow>, actor: &str) -> Result<ImportReport, ApiError> {
    if rows.len() > MAX_IMPORT_BATCH {
        return Err(ApiError::bad_request(format!("cards: at most {MAX_IMPORT_BATCH} per batch")));
    }
    let mut report = ImportReport::default();
    let mut cards = Vec::with_capacity(rows.len());
    for row in rows {
        let card = match row.card {
            Ok(card) => new_card(app, card).await,
            Err(error) => Err(ApiError::bad_request(error)),
        };
        match card {
            Ok(card) => cards.push(card),
            // The database failing is the batch's failure, not the row's.
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => report.failed.push(RowFailure { row: row.number, error: mask_digit_runs(&e.message) }),
        }
    }
    let template = action(app, "card.imported", actor);
    for imported in app.storage.import_cards(&cards, &template).await? {
        match imported {
            CardImported::Created(_) => report.created += 1,
            CardImported::Updated(_) => report.updated += 1,
            CardImported::Unchanged(_) => report.unchanged += 1,
        }
    }
    let mut audit = action(app, "cards.imported", actor);
    audit.outcome = if report.failed.is_empty() { "ok" } else { "partial" }.into();
    audit.detail = serde_json::json!({
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failedRows": report.failed.iter().map(|f| f.row).collect::<Vec<_>>(),
    });
    record(app, audit).await?;
    Ok(report)
}

/// The rows of an API batch, numbered from 1.
pub fn batch_rows(request: ImportRequest) -> Vec<ImportRow> {
    (1..)
        .zip(request.cards)
        .map(|(number, value)| ImportRow {
            number,
            card: serde_json::from_value(value).map_err(|e| format!("not a card: {e}")),
        })
        .collect()
}

/// How a file of cards is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// A header line naming the columns (`acctNumber,language,email,phone`;
    /// only `acctNumber` is required), then one card per line.
    Csv,
    /// One JSON object per line; blank lines are skipped.
    JsonLines,
}

impl ImportFormat {
    /// The format a file name says (`.csv`, `.jsonl`, `.ndjson`).
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// The rows of a file, read a line at a time as they are needed, numbered
/// by line. Both formats are one card per line, so a row's number is
/// always the line a person opening the file sees.
pub struct CardRows<R: BufRead> {
    reader: R,
    /// A CSV file's columns; `None` for JSON Lines.
    columns: Option<csv::StringRecord>,
    line: u64,
    bytes: u64,
}

impl<R: BufRead> CardRows<R> {
    /// Starts reading; a CSV file's header line is read (and checked) now.
    pub fn new(reader: R, format: ImportFormat) -> Result<Self, String> {
        let mut rows = Self { reader, columns: None, line: 0, bytes: 0 };
        if format == ImportFormat::Csv {
            let header = rows.next_line().ok_or("the file is empty")?.map_err(|e| format!("line 1: {e}"))?;
            let columns = csv_record(&header).map_err(|e| format!("line 1: {e}"))?;
            if !columns.iter().any(|c| c == "acctNumber") {
                return Err("line 1: expected a header line naming the columns, with acctNumber".into());
            }
            rows.columns = Some(columns);
        }
        Ok(rows)
    }

    /// How far into the input reading has got, in bytes (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn next_line(&mut self) -> Option<Result<String, String>> {
        let mut text = String::new();
        let read = self.reader.read_line(&mut text);
        self.line += 1;
        match read {
            Ok(0) => None,
            Ok(n) => {
                self.bytes += n as u64;
                Some(Ok(text))
            }
            Err(e) => Some(Err(format!("unreadable: {e}"))),
        }
    }
}

impl<R: BufRead> Iterator for CardRows<R> {
    type Item = ImportRow;

    fn next(&mut self) -> Option<ImportRow> {
        loop {
            let text = match self.next_line()? {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => text,
                Err(e) => return Some(ImportRow { number: self.line, card: Err(e) }),
            };
            let card = match &self.columns {
                Some(columns) => csv_record(&text).and_then(|record| {
                    if record.len() > columns.len() {
                        return Err(format!("{} values for {} columns", record.len(), columns.len()));
                    }
                    record.deserialize(Some(columns)).map_err(|e| format!("not a card: {}", csv_reason(&e)))
                }),
                None => serde_json::from_str(&text).map_err(|e| format!("not a card: {e}")),
            };
            return Some(ImportRow { number: self.line, card });
        }
    }
}

/// One line of CSV as its fields, trimmed.
fn csv_record(line: &str) -> Result<csv::StringRecord, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(_) => Ok(record),
        Err(e) => Err(csv_reason(&e)),
    }
}

/// Why CSV could not be read, without its position (the row's number says where).
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: ImportFormat, text: &str) -> Vec<(u64, Result<String, String>)> {
        CardRows::new(text.as_bytes(), format)
            .unwrap()
            .map(|r| (r.number, r.card.map(|c| format!("{}/{:?}/{:?}", c.acct_number, c.language, c.email))))
            .collect()
    }

    #[test]
    fn csv_rows_are_numbered_by_line_with_empty_fields_absent() {
        let text = "acctNumber,language,email\n378282246310005,ja,\n\n371449635398431,,a@b.se\n\n \n3714,sv\n";
        let got = rows(ImportFormat::Csv, text);
        assert_eq!(got[0], (2, Ok("378282246310005/Some(\"ja\")/None".into())));
        assert_eq!(got[1], (4, Ok("371449635398431/None/Some(\"a@b.se\")".into())));
        assert_eq!(got[2], (7, Ok("3714/Some(\"sv\")/None".into())), "a short row leaves the rest empty");
        assert_eq!(got.len(), 3);
        let shifted = rows(ImportFormat::Csv, "acctNumber,language\n378282246310005,ja,taro@example.jp\n");
        assert_eq!(shifted, [(2, Err("3 values for 2 columns".into()))]);
    }

    #[test]
    fn csv_needs_a_header_naming_the_card_number() {
        let Err(e) = CardRows::new(&b"378282246310005,ja\n"[..], ImportFormat::Csv) else { panic!("accepted") };
        assert!(e.starts_with("line 1:") && !e.contains("378282246310005"), "{e}");
        let unknown = rows(ImportFormat::Csv, "acctNumber,cardholder\n378282246310005,Taro\n");
        assert!(unknown[0].1.as_ref().is_err_and(|e| e.contains("cardholder")), "{unknown:?}");
    }

    #[test]
    fn json_lines_skip_blank_lines_and_report_bad_ones() {
        let text = "{\"acctNumber\":\"378282246310005\"}\n\n{\"acctNumber\":378282246310005}\nnot json\n";
        let got = rows(ImportFormat::JsonLines, text);
        assert_eq!(got[0], (1, Ok("378282246310005/None/None".into())));
        assert_eq!((got[1].0, got[2].0), (3, 4));
        assert!(got[1].1.is_err() && got[2].1.is_err());
    }
}
