//! Every word the challenge window shows, one file per language. Adding a
//! string means adding a field here, and the compiler then asks for it in
//! every language. `{n}` is filled in by the pages.

mod en;
mod ja;
mod sv;

use crate::delivery::Language;

pub struct Strings {
    /// The language's own name, for the switcher.
    pub language_name: &'static str,
    pub language_label: &'static str,
    pub title: &'static str,
    pub merchant: &'static str,
    pub amount: &'static str,
    pub time_left: &'static str,
    pub cancel: &'static str,
    pub check_again: &'static str,

    pub waiting_heading: &'static str,
    pub waiting_body: &'static str,
    pub number_match: &'static str,
    pub code_instead: &'static str,

    pub code_heading: &'static str,
    pub code_sent_to: &'static str,
    pub code_label: &'static str,
    pub code_hint: &'static str,
    pub code_submit: &'static str,
    pub code_wrong: &'static str,
    pub attempts_left: &'static str,
    pub resend: &'static str,
    pub resend_done: &'static str,
    pub resend_wait: &'static str,
    pub resend_limit: &'static str,
    pub delivery_pending: &'static str,
    pub delivery_sent: &'static str,
    pub delivery_failed: &'static str,
    pub delivery_restricted: &'static str,
    pub channel_email: &'static str,
    pub channel_sms: &'static str,
    pub undeliverable: &'static str,

    pub questions_heading: &'static str,
    pub questions_body: &'static str,
    pub answers_submit: &'static str,
    pub answers_wrong: &'static str,
    pub no_questions: &'static str,
    pub contact_heading: &'static str,
    pub contact_body: &'static str,
    pub email_label: &'static str,
    pub phone_label: &'static str,
    pub phone_hint: &'static str,
    pub contact_submit: &'static str,
    pub contact_invalid: &'static str,

    pub success_heading: &'static str,
    pub success_body: &'static str,
    pub denied_heading: &'static str,
    pub denied_body: &'static str,
    pub cancelled_heading: &'static str,
    pub cancelled_body: &'static str,
    pub expired_heading: &'static str,
    pub expired_body: &'static str,
    pub blocked_heading: &'static str,
    pub blocked_body: &'static str,
    pub return_to_shop: &'static str,
    /// Shown only while the page posts the result by itself (JavaScript on).
    pub returning: &'static str,

    pub error_heading: &'static str,
    pub error_body: &'static str,
    pub session_error_body: &'static str,
}

pub const LANGUAGES: [Language; 3] = [Language::Ja, Language::En, Language::Sv];

pub fn strings(language: Language) -> &'static Strings {
    match language {
        Language::Ja => &ja::STRINGS,
        Language::En => &en::STRINGS,
        Language::Sv => &sv::STRINGS,
    }
}

/// `template` with `{n}` replaced.
pub fn with_n(template: &str, n: impl std::fmt::Display) -> String {
    template.replace("{n}", &n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_in_every_language() {
        for lang in LANGUAGES {
            let s = strings(lang);
            for t in [s.code_wrong, s.attempts_left, s.resend_wait, s.answers_wrong] {
                assert!(t.contains("{n}"), "{}: {t}", lang.as_str());
            }
        }
    }
}
