//! The window's HTML (maud escapes every value). One layout; a block per
//! screen; every form carries the session's capability and CSRF token.

use maud::{DOCTYPE, Markup, html};

use super::i18n::{self, LANGUAGES, Strings};
use super::{Outcome, Screen, Window, creq::CRes};
use crate::delivery::{self, Language};
use crate::emv::Currency;
use crate::storage::{ContactChannel, DeliveryState};

#[derive(Debug, Clone)]
pub struct Notice {
    pub error: bool,
    pub text: String,
}

impl Notice {
    pub fn info(text: String) -> Self {
        Self { error: false, text }
    }

    pub fn error(text: String) -> Self {
        Self { error: true, text }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) }
            link rel="stylesheet" href="/challenge/assets/window.css";
            script src="/challenge/assets/window.js" defer {}
        }
    }
}

fn minutes(secs: i64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// The window for one screen.
pub fn window(w: &Window, csrf: &str, issuer: &str, screen: &Screen, notice: Option<&Notice>) -> Markup {
    let s = i18n::strings(w.language);
    let hidden = |action: &str| {
        html! {
            input type="hidden" name="session" value=(w.token);
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value=(action);
        }
    };
    let heading = match screen {
        Screen::Waiting { .. } => s.waiting_heading,
        Screen::Code { .. } => s.code_heading,
        Screen::Questions { .. } | Screen::NoQuestions => s.questions_heading,
        Screen::Contact => s.contact_heading,
        Screen::Final(Outcome::Success) => s.success_heading,
        Screen::Final(Outcome::Denied) => s.denied_heading,
        Screen::Final(Outcome::Cancelled) => s.cancelled_heading,
        Screen::Final(Outcome::Expired) => s.expired_heading,
        Screen::Final(Outcome::Blocked) => s.blocked_heading,
    };
    let pending = !matches!(screen, Screen::Final(_));
    let currency = Currency::from_numeric(w.auth.currency);
    let alpha = currency.map_or_else(|| format!("{:03}", w.auth.currency), |c| c.alpha.to_owned());
    let amount = delivery::format_amount(w.auth.amount_minor, w.auth.exponent, &alpha, w.language);
    html! {
        (DOCTYPE)
        html lang=(w.language.as_str()) {
            (head(s.title))
            body class={ "size-" (w.session.window_size) } data-screen=(screen.kind()) {
                header class="bar" {
                    span class="issuer" { (issuer) }
                    form method="post" action="/challenge/act" class="languages" aria-label=(s.language_label) {
                        (hidden("lang"))
                        @for lang in LANGUAGES {
                            button type="submit" name="lang" value=(lang.as_str()) lang=(lang.as_str())
                                aria-pressed=(if lang == w.language { "true" } else { "false" }) {
                                (i18n::strings(lang).language_name)
                            }
                        }
                    }
                }
                main id="main" {
                    h1 tabindex="-1" { (heading) }
                    dl class="purchase" {
                        div { dt { (s.merchant) } dd { (w.auth.merchant_name) } }
                        div { dt { (s.amount) } dd class="amount" { (amount) } }
                    }
                    @if let Some(n) = notice {
                        p class={ "notice" @if n.error { " error" } } role=(if n.error { "alert" } else { "status" }) { (n.text) }
                    }
                    (body(w, s, screen, &hidden))
                }
                @if pending {
                    footer {
                        form method="post" action="/challenge/act" id="refresh" class="refresh" data-poll=(screen.kind()) {
                            (hidden("show"))
                            button type="submit" class="link" { (s.check_again) }
                        }
                        form method="post" action="/challenge/act" {
                            (hidden("cancel"))
                            button type="submit" class="link" { (s.cancel) }
                        }
                    }
                }
            }
        }
    }
}

fn body(w: &Window, s: &Strings, screen: &Screen, hidden: &dyn Fn(&str) -> Markup) -> Markup {
    match screen {
        Screen::Waiting { remaining_secs } => html! {
            p { (s.waiting_body) }
            @if let Some(n) = w.view.challenge.number_match {
                div class="number" {
                    p id="number-label" { (s.number_match) }
                    p class="digits" aria-labelledby="number-label" data-number=(n) { (n) }
                }
            }
            (countdown(s, *remaining_secs))
            form method="post" action="/challenge/act" {
                (hidden("code"))
                button type="submit" class="primary" { (s.code_instead) }
            }
        },
        Screen::Code { code, remaining_secs } => html! {
            p { (s.code_sent_to) }
            ul class="destinations" {
                @for d in &code.destinations {
                    li {
                        span class="channel" { (match d.channel { ContactChannel::Email => s.channel_email, ContactChannel::Sms => s.channel_sms }) }
                        " "
                        span class="masked" { (d.masked) }
                        " "
                        span class="state" { "(" (delivery_state(s, d.state)) ")" }
                    }
                }
            }
            @if code.undeliverable {
                p class="notice error" role="alert" { (s.undeliverable) }
            }
            form method="post" action="/challenge/act" class="code" {
                (hidden("verify"))
                label for="code" { (s.code_label) }
                input id="code" name="code" type="text" inputmode="numeric" pattern="[0-9]*" maxlength="6"
                    autocomplete="one-time-code" required autofocus aria-describedby="attempts code-hint";
                p id="attempts" class="hint" { (i18n::with_n(s.attempts_left, code.attempts_left)) }
                button type="submit" class="primary" { (s.code_submit) }
            }
            p id="code-hint" class="hint" { (s.code_hint) }
            (countdown(s, *remaining_secs))
            @if code.resends_left > 0 {
                form method="post" action="/challenge/act" {
                    (hidden("resend"))
                    button type="submit" class="secondary" { (s.resend) }
                }
            }
        },
        Screen::Questions { questions } => html! {
            p { (s.questions_body) }
            form method="post" action="/challenge/act" class="questions" {
                (hidden("answers"))
                @for (i, q) in questions.iter().enumerate() {
                    label for={ "answer" (i) } { (q) }
                    input id={ "answer" (i) } name={ "answer" (i) } type="text" autocomplete="off" required;
                }
                button type="submit" class="primary" { (s.answers_submit) }
            }
        },
        Screen::NoQuestions => html! {
            p class="notice error" role="alert" { (s.no_questions) }
        },
        Screen::Contact => html! {
            p { (s.contact_body) }
            form method="post" action="/challenge/act" class="contact" {
                (hidden("contact"))
                label for="email" { (s.email_label) }
                input id="email" name="email" type="email" autocomplete="email";
                label for="phone" { (s.phone_label) }
                input id="phone" name="phone" type="tel" autocomplete="tel" aria-describedby="phone-hint";
                p id="phone-hint" class="hint" { (s.phone_hint) }
                button type="submit" class="primary" { (s.contact_submit) }
            }
        },
        Screen::Final(outcome) => final_body(w, s, *outcome),
    }
}

fn delivery_state(s: &Strings, state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => s.delivery_pending,
        DeliveryState::Sent => s.delivery_sent,
        DeliveryState::Failed | DeliveryState::Skipped => s.delivery_failed,
        DeliveryState::Restricted => s.delivery_restricted,
    }
}

fn countdown(s: &Strings, remaining_secs: i64) -> Markup {
    html! {
        p class="countdown" {
            (s.time_left) " "
            span data-countdown=(remaining_secs) role="timer" { (minutes(remaining_secs)) }
        }
    }
}

/// The result, and the CRes posted to the requestor: at once after
/// success or a cancel, after a pause to read the message otherwise.
fn final_body(w: &Window, s: &Strings, outcome: Outcome) -> Markup {
    let (text, delay_ms) = match outcome {
        Outcome::Success => (s.success_body, 1500),
        Outcome::Cancelled => (s.cancelled_body, 1500),
        Outcome::Denied => (s.denied_body, 10_000),
        Outcome::Expired => (s.expired_body, 10_000),
        Outcome::Blocked => (s.blocked_body, 15_000),
    };
    let status = if outcome == Outcome::Success { "Y" } else { "N" };
    let cres = CRes::new(&w.auth.message_version, &w.auth.ds_trans_id, &w.auth.acs_trans_id, status).encode();
    html! {
        p class={ "result " (if outcome == Outcome::Success { "ok" } else { "failed" }) } role="status" {
            (text)
            @if delay_ms <= 1500 { " " span class="returning" { (s.returning) } }
        }
        form method="post" action=(w.auth.notification_url) id="cres" data-autosubmit=(delay_ms) {
            input type="hidden" name="cres" value=(cres);
            @if let Some(data) = &w.session.three_ds_session_data {
                input type="hidden" name="threeDSSessionData" value=(data);
            }
            button type="submit" class="primary" { (s.return_to_shop) }
        }
    }
}

/// A readable page for a window that cannot be shown.
pub fn error(language: Language, issuer: &str, heading: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(language.as_str()) {
            (head(heading))
            body class="size-05" data-screen="error" {
                header class="bar" { span class="issuer" { (issuer) } }
                main id="main" {
                    h1 { (heading) }
                    p class="notice error" role="alert" { (text) }
                }
            }
        }
    }
}
