//! The words of code messages, in Japanese, English and Swedish.
//!
//! Every message names the issuer, the merchant, the amount and when the
//! code expires, so the cardholder sees what they are approving; it says
//! never to share the code and that the issuer never asks for it. The code
//! is never in a subject line (lock screens and mail lists show those).

use super::format::{Expiry, format_amount, one_line};
use super::{CodeMessage, Language};

/// How long a code is valid, as the seeds state it.
const VALID_MINUTES: u32 = 10;

/// A rendered email: the same content as plain text and as HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The facts a message states, cleaned for display.
struct Facts {
    issuer: String,
    merchant: String,
    amount: String,
    code: String,
    expiry: Expiry,
}

impl Facts {
    fn of(msg: &CodeMessage) -> Facts {
        Facts {
            issuer: one_line(&msg.issuer_name),
            merchant: one_line(&msg.merchant_name),
            amount: format_amount(msg.amount_minor, msg.exponent, &msg.currency_alpha, msg.language),
            code: one_line(&msg.code),
            expiry: Expiry::new(msg.expires_at_ms, msg.tz_offset_minutes),
        }
    }
}

/// One email's wording; text and HTML are both laid out from it.
struct Wording {
    lang: &'static str,
    subject: String,
    greeting: String,
    intro: String,
    code_label: &'static str,
    merchant_label: &'static str,
    amount_label: &'static str,
    expiry_label: &'static str,
    expiry: String,
    expired: &'static str,
    never_share: String,
    not_you: &'static str,
    closing: &'static str,
    footer: &'static str,
    /// Between a label and its value in the text part.
    colon: &'static str,
}

fn wording(lang: Language, f: &Facts) -> Wording {
    let (issuer, merchant) = (&f.issuer, &f.merchant);
    let (clock, zone, date) = (f.expiry.clock(), f.expiry.zone(), f.expiry.date(lang));
    match lang {
        Language::Ja => Wording {
            lang: "ja",
            subject: format!("【{issuer}】ご本人確認用の認証コードのお知らせ"),
            greeting: format!("いつも{issuer}のカードをご利用いただき、ありがとうございます。"),
            intro: "オンラインでのお買い物にあたり、ご本人確認のための認証コードをお送りします。\
                    お手続き中の画面で、次の6桁の認証コードを入力してください。"
                .to_owned(),
            code_label: "認証コード",
            merchant_label: "ご利用先",
            amount_label: "ご利用金額",
            expiry_label: "有効期限",
            expiry: format!("{date} {clock}（{zone}）まで（発行から{VALID_MINUTES}分間有効です）"),
            expired: "有効期限を過ぎた場合は、加盟店のサイトに戻り、もう一度お手続きをお願いいたします。",
            never_share: format!(
                "この認証コードは、ご家族を含め、ほかの方には絶対にお伝えにならないでください。\
                 {issuer}が、お電話やメールなどで認証コードをお尋ねすることは一切ございません。"
            ),
            not_you: "このお取引にお心当たりがない場合は、認証コードを入力せずに、\
                      カード裏面に記載の電話番号までご連絡ください。",
            closing: "",
            footer: "※このメールは送信専用のアドレスからお送りしています。\
                     ご返信いただいてもお答えできませんので、あらかじめご了承ください。",
            colon: "：",
        },
        Language::En => Wording {
            lang: "en",
            subject: format!("{issuer}: your one-time code for a purchase at {merchant}"),
            greeting: "Hello,".to_owned(),
            intro: "To confirm your online purchase, enter this one-time code in the payment \
                    window:"
                .to_owned(),
            code_label: "One-time code",
            merchant_label: "Merchant",
            amount_label: "Amount",
            expiry_label: "Valid until",
            expiry: format!("{clock} ({zone}) on {date}; the code is valid for {VALID_MINUTES} minutes"),
            expired: "If the code has expired, go back to the merchant's website and start the \
                      purchase again.",
            never_share: format!(
                "Never share this code with anyone. {issuer} will never ask you for it, by \
                 phone or in any other way."
            ),
            not_you: "If you are not making this purchase, do not enter the code; call us on the \
                      number on the back of your card.",
            closing: "Kind regards,",
            footer: "This email was sent automatically; replies to it are not read.",
            colon: ": ",
        },
        Language::Sv => Wording {
            lang: "sv",
            subject: format!("{issuer}: din engångskod för köp hos {merchant}"),
            greeting: "Hej!".to_owned(),
            intro: "För att bekräfta ditt köp på nätet anger du engångskoden nedan i \
                    betalningsfönstret."
                .to_owned(),
            code_label: "Engångskod",
            merchant_label: "Butik",
            amount_label: "Belopp",
            expiry_label: "Giltig till",
            expiry: format!("kl. {clock} ({zone}) den {date}. Koden är giltig i {VALID_MINUTES} minuter."),
            expired: "Har koden hunnit sluta gälla? Gå då tillbaka till butikens webbplats och \
                      gör om köpet.",
            never_share: format!(
                "Lämna aldrig ut koden till någon. {issuer} kommer aldrig att be dig om koden, \
                 varken per telefon eller på något annat sätt."
            ),
            not_you: "Känner du inte igen köpet? Ange inte koden, utan ring oss på numret som \
                      finns på baksidan av ditt kort.",
            closing: "Med vänliga hälsningar",
            footer: "Det här meddelandet har skickats automatiskt och går inte att svara på.",
            colon: ": ",
        },
    }
}

/// The email for a code: subject, plain text and HTML, in the message's
/// language. The subject never contains the code.
pub fn render_email(msg: &CodeMessage) -> EmailContent {
    let facts = Facts::of(msg);
    let w = wording(msg.language, &facts);
    EmailContent { text: text_email(&w, &facts), html: html_email(&w, &facts), subject: w.subject }
}

fn text_email(w: &Wording, f: &Facts) -> String {
    let c = w.colon;
    let signature = if w.closing.is_empty() { f.issuer.clone() } else { format!("{}\n{}", w.closing, f.issuer) };
    format!(
        "{greeting}\n\n{intro}\n\n{code_label}{c}{code}\n\n\
         {merchant_label}{c}{merchant}\n{amount_label}{c}{amount}\n{expiry_label}{c}{expiry}\n\n\
         {expired}\n\n{never_share}\n\n{not_you}\n\n{signature}\n\n-- \n{footer}\n",
        greeting = w.greeting,
        intro = w.intro,
        code_label = w.code_label,
        code = f.code,
        merchant_label = w.merchant_label,
        merchant = f.merchant,
        amount_label = w.amount_label,
        amount = f.amount,
        expiry_label = w.expiry_label,
        expiry = w.expiry,
        expired = w.expired,
        never_share = w.never_share,
        not_you = w.not_you,
        footer = w.footer,
    )
}

const FONT: &str = "-apple-system,'Segoe UI',Helvetica,Arial,'Hiragino Sans','Yu Gothic',\
                    Meiryo,sans-serif";

fn html_email(w: &Wording, f: &Facts) -> String {
    // `value` is HTML already: each caller escapes what it puts in.
    let row = |label: &str, value: String| {
        format!(
            "<tr><th scope=\"row\" style=\"text-align:left;vertical-align:top;white-space:nowrap;padding:4px 16px 4px 0;\
             font-weight:normal;color:#4a4a4a;\">{}</th>\
             <td style=\"padding:4px 0;font-weight:bold;\">{value}</td></tr>\n",
            escape(label),
        )
    };
    let amount = format!("<span style=\"white-space:nowrap;\">{}</span>", escape(&f.amount));
    let signature = if w.closing.is_empty() {
        escape(&f.issuer)
    } else {
        format!("{}<br>{}", escape(w.closing), escape(&f.issuer))
    };
    let p = "margin:0 0 16px;";
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{subject}</title>\n</head>\n\
         <body style=\"margin:0;padding:0;background-color:#f4f5f7;\">\n\
         <div style=\"max-width:560px;margin:0 auto;padding:24px 16px;font-family:{FONT};\
         font-size:16px;line-height:1.6;color:#1a1a1a;\">\n\
         <div style=\"background-color:#ffffff;border:1px solid #d9dce1;border-radius:8px;padding:24px;\">\n\
         <p style=\"{p}font-size:18px;font-weight:bold;\">{issuer}</p>\n\
         <p style=\"{p}\">{greeting}</p>\n\
         <p style=\"{p}\">{intro}</p>\n\
         <p style=\"margin:0;color:#4a4a4a;\">{code_label}</p>\n\
         <p style=\"margin:0 0 16px;font-family:Menlo,Consolas,'Courier New',monospace;font-size:32px;\
         font-weight:bold;letter-spacing:6px;color:#0b3d91;\">{code}</p>\n\
         <table style=\"border-collapse:collapse;margin:0 0 16px;\">\n{merchant_row}{amount_row}{expiry_row}</table>\n\
         <p style=\"{p}\">{expired}</p>\n\
         <p style=\"{p}padding:12px 16px;background-color:#fff4e5;border-left:4px solid #b35900;\">\
         <strong>{never_share}</strong></p>\n\
         <p style=\"{p}\">{not_you}</p>\n\
         <p style=\"margin:0;\">{signature}</p>\n\
         </div>\n\
         <p style=\"margin:16px 0 0;font-size:13px;color:#4a4a4a;\">{footer}</p>\n\
         </div>\n</body>\n</html>\n",
        lang = w.lang,
        subject = escape(&w.subject),
        issuer = escape(&f.issuer),
        greeting = escape(&w.greeting),
        intro = escape(&w.intro),
        code_label = escape(w.code_label),
        code = escape(&f.code),
        merchant_row = row(w.merchant_label, escape(&f.merchant)),
        amount_row = row(w.amount_label, amount),
        expiry_row = row(w.expiry_label, escape(&w.expiry)),
        expired = escape(w.expired),
        never_share = escape(&w.never_share),
        not_you = escape(w.not_you),
        footer = escape(w.footer),
    )
}

/// The SMS for a code: the code first (phones offer to copy it), then the
/// merchant, the amount and the expiry, and a warning, kept short.
pub fn render_sms(msg: &CodeMessage) -> String {
    let f = Facts::of(msg);
    let (issuer, code, merchant, amount) = (&f.issuer, &f.code, &f.merchant, &f.amount);
    let (clock, zone) = (f.expiry.clock(), f.expiry.zone());
    match msg.language {
        Language::Ja => format!(
            "【{issuer}】認証コード：{code}\n{merchant}でのお支払い（{amount}）のご本人確認用です。\
             {clock}（{zone}）まで有効（{VALID_MINUTES}分間）。コードは他人に教えないでください。\
             当社から電話等でお尋ねすることはありません。"
        ),
        Language::En => format!(
            "{issuer}: {code} is your one-time code for {amount} at {merchant}. Valid \
             {VALID_MINUTES} min, until {clock} ({zone}). Never share it. We never ask for it, not \
             even by phone."
        ),
        Language::Sv => format!(
            "{issuer}: {code} är din engångskod för {amount} hos {merchant}. Giltig i \
             {VALID_MINUTES} min, till kl. {clock} ({zone}). Lämna aldrig ut den. Vi frågar aldrig \
             efter koden, inte ens per telefon."
        ),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Channel;
    use super::super::tests::sample;
    use super::*;

    const ALL: [Language; 3] = [Language::Ja, Language::En, Language::Sv];

    #[test]
    fn every_language_names_what_is_approved_and_when_it_expires() {
        for lang in ALL {
            let mut msg = sample(Channel::Email, lang);
            msg.amount_minor = 129_900;
            msg.currency_alpha = "SEK".into();
            msg.exponent = 2;
            let amount = format_amount(129_900, 2, "SEK", lang);
            let email = render_email(&msg);
            let sms = render_sms(&msg);
            for body in [&email.text, &email.html, &sms] {
                for needle in ["482913", "Example Shop", &amount, "15:42", "UTC+9", "10"] {
                    assert!(body.contains(needle), "{lang:?} lacks {needle}: {body}");
                }
                assert!(body.contains("Countersign Demo Bank"), "{lang:?}: {body}");
            }
            for body in [&email.text, &email.html] {
                let date = Expiry::new(msg.expires_at_ms, msg.tz_offset_minutes).date(lang);
                assert!(body.contains(&date), "{lang:?}: {body}");
            }
            assert!(email.html.contains(&format!("<html lang=\"{}\">", lang.as_str())));
        }
    }

    #[test]
    fn wording_per_language() {
        let ja = render_email(&sample(Channel::Email, Language::Ja));
        assert!(ja.subject.contains("認証コード"));
        assert!(ja.text.contains("5,400円"));
        assert!(ja.text.contains("10分間有効"));
        assert!(ja.text.contains("一切ございません"));
        let sv = render_email(&sample(Channel::Email, Language::Sv));
        assert!(sv.subject.contains("engångskod"));
        assert!(sv.text.contains("giltig i 10 minuter"));
        assert!(sv.text.contains("Lämna aldrig ut koden"));
        assert!(sv.text.contains("5 400 JPY"));
        let en = render_email(&sample(Channel::Email, Language::En));
        assert!(en.text.contains("valid for 10 minutes"));
        assert!(en.text.contains("never ask you for it, by phone"));
        let en_sms = render_sms(&sample(Channel::Sms, Language::En));
        assert!(en_sms.starts_with("Countersign Demo Bank: 482913 is your one-time code"));
        assert!(en_sms.chars().count() <= 200, "{}", en_sms.chars().count());
        let ja_sms = render_sms(&sample(Channel::Sms, Language::Ja));
        assert!(ja_sms.chars().count() <= 140, "{}", ja_sms.chars().count());
    }

    #[test]
    fn subjects_carry_neither_code_nor_contact() {
        for lang in ALL {
            for channel in [Channel::Email, Channel::Sms] {
                let msg = sample(channel, lang);
                let email = render_email(&msg);
                assert!(!email.subject.contains(&msg.code), "{}", email.subject);
                assert!(!email.subject.contains(&msg.to), "{}", email.subject);
                assert!(!email.subject.contains("@"), "{}", email.subject);
                for body in [&email.subject, &email.text, &email.html, &render_sms(&msg)] {
                    assert!(!body.contains(&msg.to), "{body}");
                    assert!(!body.contains("12345678"), "{body}");
                }
            }
        }
    }

    #[test]
    fn html_escapes_every_interpolated_value() {
        let mut msg = sample(Channel::Email, Language::En);
        msg.merchant_name = "<script>alert('x')</script> & \"Co\"".into();
        msg.issuer_name = "<b>Bank</b>".into();
        msg.currency_alpha = "<i>".into();
        let email = render_email(&msg);
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(!email.html.contains("<b>") && !email.html.contains("<i>"));
        assert!(email.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"));
        assert!(email.html.contains("&lt;b&gt;Bank&lt;/b&gt;"));
        // The text part is plain text: shown as written.
        assert!(email.text.contains("<script>alert('x')</script>"));
        // No external assets of any kind.
        for needle in ["src=", "href=", "url(", "http"] {
            assert!(!email.html.contains(needle), "{needle}");
        }
    }

    #[test]
    fn names_cannot_break_lines_or_reorder_text() {
        let mut msg = sample(Channel::Email, Language::En);
        msg.merchant_name = "Shop\r\nBcc: evil@example.com\u{202E}".into();
        let email = render_email(&msg);
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
        assert!(!email.subject.contains('\u{202E}'));
        assert!(email.text.contains("Merchant: Shop Bcc: evil@example.com\n"));
    }
}
