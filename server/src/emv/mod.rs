//! EMV 3-D Secure 2 message handling for the ACS.
//!
//! * [`parse_areq`] turns an AReq body into a validated [`AReq`] or an
//!   [`EmvError`] that renders as an EMV `Erro` (rules in `areq.rs`);
//! * [`Pan`] holds card numbers without ever printing them;
//! * [`Currency`] is the ISO 4217 table;
//! * [`ARes`] and [`RReq`] are the messages the ACS sends;
//! * [`AReqSchema`] describes the AReq for the OpenAPI document.
//!
//! Self-contained: only `super::`/`self::` paths and external crates.

mod areq;
mod areq_schema;
mod currency;
mod error;
mod fields;
mod pan;
mod results;
mod types;
mod validate;

#[cfg(test)]
mod areq_tests;

pub use areq::{AReq, BrowserInfo, CardExpiry, MAX_AREQ_BYTES, Purchase, parse_areq};
pub use areq_schema::AReqSchema;
pub use currency::{Currency, is_reserved_iso_code};
pub use error::{ERRO_FALLBACK_VERSION, EmvError, Erro, ErrorCode};
pub use pan::{PAN_MAX_LEN, PAN_MIN_LEN, PAN_VISIBLE_DIGITS, Pan, PanError, luhn_check_digit, luhn_valid};
pub use results::{ARes, AuthenticationType, ChallengeCancel, RReq, TransStatus, TransStatusReason, YesNo};
pub use types::{ChallengeIndicator, DeviceChannel, MessageCategory, MessageVersion};
