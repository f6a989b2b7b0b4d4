use super::RiskOutcome::{Challenge, Frictionless};
use super::RiskReason::*;
use super::*;

const EUR: u16 = 978;
const USD: u16 = 840;
const JPY: u16 = 392;
const SEK: u16 = 752;
const CHF: u16 = 756; // not configured by default

fn buy(amount_minor: u64, currency: u16) -> RiskInput {
    RiskInput { amount_minor, currency, ..RiskInput::default() }
}

impl RiskInput {
    fn mandated(mut self) -> Self {
        self.challenge_mandated_by_requestor = true;
        self
    }
    fn previous(mut self, n: u64) -> Self {
        self.history.previous_authentications = n;
        self
    }
    fn recent(mut self, n: u32) -> Self {
        self.history.recent_authentications = n;
        self
    }
    fn tally(mut self, count: u32, sum_minor: u64) -> Self {
        self.history.low_value_since_challenge = LowValueTally { count, sum_minor };
        self
    }
}

fn config(edit: impl FnOnce(&mut RiskConfig)) -> RiskConfig {
    let mut config = RiskConfig::default();
    edit(&mut config);
    config.validate().expect("test config is valid");
    config
}

struct Case {
    name: String,
    config: RiskConfig,
    input: RiskInput,
    outcome: RiskOutcome,
    reasons: &'static [RiskReason],
}

fn case(
    name: impl Into<String>,
    config: &RiskConfig,
    input: RiskInput,
    outcome: RiskOutcome,
    reasons: &'static [RiskReason],
) -> Case {
    Case { name: name.into(), config: config.clone(), input, outcome, reasons }
}

/// Runs every case and reports all the failures at once.
fn check(cases: &[Case]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = assess(&c.config, &c.input);
            let want = RiskAssessment { outcome: c.outcome, reasons: c.reasons.to_vec() };
            (got != want).then(|| format!("{}: got {got:?}, want {want:?}", c.name))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn requestor_mandate_beats_every_exemption() {
    let first_two = config(|c| c.first_purchases_exempt = 2);
    let default = RiskConfig::default();
    check(&[
        case("over first-purchase exemption", &first_two, buy(100, EUR).mandated(), Challenge, &[RequestorMandate]),
        case("over low-value exemption", &default, buy(1000, EUR).mandated(), Challenge, &[RequestorMandate]),
        case("over low risk", &default, buy(100, USD).mandated(), Challenge, &[RequestorMandate]),
        case(
            "alone even when amount and velocity fire",
            &default,
            buy(1_000_000, EUR).mandated().recent(50),
            Challenge,
            &[RequestorMandate],
        ),
        case("unknown currency", &default, buy(100, CHF).mandated(), Challenge, &[RequestorMandate]),
    ]);
}

#[test]
fn first_purchases_exemption() {
    let first_two = config(|c| c.first_purchases_exempt = 2);
    let off = RiskConfig::default();
    let big = || buy(1_000_000, EUR).recent(50);
    check(&[
        case("0 previous, exempt", &first_two, big().previous(0), Frictionless, &[FirstPurchaseExemption]),
        case("1 previous, exempt", &first_two, big().previous(1), Frictionless, &[FirstPurchaseExemption]),
        case(
            "2 previous, evaluated normally (amount and velocity)",
            &first_two,
            big().previous(2),
            Challenge,
            &[AmountAboveThreshold, VelocityExceeded],
        ),
        case("2 previous, small amount", &first_two, buy(100, USD).previous(2), Frictionless, &[LowRisk]),
        case("2 previous, low value", &first_two, buy(100, EUR).previous(2), Frictionless, &[LowValueExemption]),
        case("beats low-value", &first_two, buy(100, EUR).previous(0), Frictionless, &[FirstPurchaseExemption]),
        case("beats unknown currency", &first_two, buy(100, CHF).previous(1), Frictionless, &[FirstPurchaseExemption]),
        case("off by default", &off, buy(1_000_000, EUR), Challenge, &[AmountAboveThreshold]),
    ]);
}

#[test]
fn low_value_limits_for_each_mode() {
    // A EUR threshold of 20.00 makes a refused exemption visible: those
    // purchases (30.00) are then challenged for their amount.
    let refused: &[RiskReason] = &[AmountAboveThreshold];
    let granted: &[RiskReason] = &[LowValueExemption];
    // (name, amount, tally count, tally sum, granted? for [amount, count, both])
    let rows: &[(&str, u64, u32, u64, [bool; 3])] = &[
        ("single exactly 30.00", 3000, 0, 0, [true, true, true]),
        ("single 30.01", 3001, 0, 0, [false, false, false]),
        ("cumulative exactly 100.00", 3000, 1, 7000, [true, true, true]),
        ("cumulative 100.01", 3000, 1, 7001, [false, true, false]),
        ("5th exemption", 3000, 4, 4000, [true, true, true]),
        ("6th exemption", 3000, 5, 5000, [true, false, false]),
        ("6th exemption over 100.00", 3000, 5, 9000, [false, false, false]),
    ];
    let mut cases = Vec::new();
    for (mode_index, mode) in [LimitBy::Amount, LimitBy::Count, LimitBy::Both].into_iter().enumerate() {
        let cfg = config(|c| {
            c.low_value.limit_by = mode;
            c.challenge_above.insert("978".into(), 2000);
        });
        for &(name, amount, count, sum, expect) in rows {
            let ok = expect[mode_index];
            let name = format!("{mode:?}: {name}");
            let input = buy(amount, EUR).previous(3).tally(count, sum);
            cases.push(case(
                name,
                &cfg,
                input,
                if ok { Frictionless } else { Challenge },
                if ok { granted } else { refused },
            ));
        }
    }
    check(&cases);
}

#[test]
fn low_value_eligibility() {
    let default = RiskConfig::default();
    let strict_usd = config(|c| {
        c.challenge_above.insert("840".into(), 1000);
    });
    let disabled = config(|c| c.low_value.enabled = false);
    let with_sek = config(|c| {
        c.low_value.currencies.insert("752".into(), LowValueLimits { single_limit: 30_000, cumulative_limit: 100_000 });
    });
    check(&[
        case("EUR eligible by default", &default, buy(1000, EUR), Frictionless, &[LowValueExemption]),
        case("USD not eligible", &default, buy(1000, USD), Frictionless, &[LowRisk]),
        case("USD not eligible, over its threshold", &strict_usd, buy(2000, USD), Challenge, &[AmountAboveThreshold]),
        case("SEK not eligible by default", &default, buy(1000, SEK), Frictionless, &[LowRisk]),
        case("SEK eligible once listed", &with_sek, buy(30000, SEK), Frictionless, &[LowValueExemption]),
        case("SEK over its own single limit", &with_sek, buy(30001, SEK), Frictionless, &[LowRisk]),
        case("disabled", &disabled, buy(1000, EUR), Frictionless, &[LowRisk]),
        case("beats velocity", &default, buy(1000, EUR).recent(50), Frictionless, &[LowValueExemption]),
        case(
            "refused: velocity still evaluated",
            &default,
            buy(1000, EUR).tally(5, 5000).recent(50),
            Challenge,
            &[VelocityExceeded],
        ),
    ]);
}

#[test]
fn amount_thresholds() {
    let default = RiskConfig::default();
    let with_default = config(|c| c.default_challenge_above = Some(5000));
    check(&[
        case("EUR equal to threshold", &default, buy(5000, EUR).tally(5, 0), Frictionless, &[LowRisk]),
        case("EUR above threshold", &default, buy(5001, EUR), Challenge, &[AmountAboveThreshold]),
        case("USD equal", &default, buy(5000, USD), Frictionless, &[LowRisk]),
        case("USD above", &default, buy(5001, USD), Challenge, &[AmountAboveThreshold]),
        case("JPY equal", &default, buy(10000, JPY), Frictionless, &[LowRisk]),
        case("JPY above", &default, buy(10001, JPY), Challenge, &[AmountAboveThreshold]),
        case("SEK equal", &default, buy(50000, SEK), Frictionless, &[LowRisk]),
        case("SEK above", &default, buy(50001, SEK), Challenge, &[AmountAboveThreshold]),
        case("zero amount", &default, buy(0, USD), Frictionless, &[LowRisk]),
        case("unknown currency, no default", &default, buy(1, CHF), Challenge, &[NoThresholdForCurrency]),
        case("currency 0, no default", &default, buy(1, 0), Challenge, &[NoThresholdForCurrency]),
        case("currency above 999, no default", &default, buy(1, 1978), Challenge, &[NoThresholdForCurrency]),
        case("unknown currency, default, equal", &with_default, buy(5000, CHF), Frictionless, &[LowRisk]),
        case("unknown currency, default, above", &with_default, buy(5001, CHF), Challenge, &[AmountAboveThreshold]),
        case("listed currency ignores default", &with_default, buy(10000, JPY), Frictionless, &[LowRisk]),
    ]);
}

#[test]
fn velocity() {
    let default = RiskConfig::default();
    let three = config(|c| c.velocity.max_authentications = 3);
    check(&[
        case("none recent", &default, buy(100, USD), Frictionless, &[LowRisk]),
        case("this one is the 10th (at max)", &default, buy(100, USD).recent(9), Frictionless, &[LowRisk]),
        case("this one is the 11th (max + 1)", &default, buy(100, USD).recent(10), Challenge, &[VelocityExceeded]),
        case("far over", &default, buy(100, USD).recent(u32::MAX), Challenge, &[VelocityExceeded]),
        case("max 3: at max", &three, buy(100, USD).recent(2), Frictionless, &[LowRisk]),
        case("max 3: max + 1", &three, buy(100, USD).recent(3), Challenge, &[VelocityExceeded]),
    ]);
}

#[test]
fn rules_four_and_five_report_together() {
    let default = RiskConfig::default();
    check(&[
        case(
            "amount and velocity",
            &default,
            buy(6000, EUR).recent(10),
            Challenge,
            &[AmountAboveThreshold, VelocityExceeded],
        ),
        case(
            "unknown currency and velocity",
            &default,
            buy(100, CHF).recent(10),
            Challenge,
            &[NoThresholdForCurrency, VelocityExceeded],
        ),
    ]);
}

#[test]
fn assessment_helpers() {
    let default = RiskConfig::default();
    let granted = assess(&default, &buy(1000, EUR));
    assert!(granted.grants_low_value_exemption() && !granted.is_challenge());
    let challenged = assess(&default, &buy(6000, EUR));
    assert!(!challenged.grants_low_value_exemption() && challenged.is_challenge());
}

#[test]
fn reason_codes_are_stable_and_serialise_as_as_str() {
    let codes: Vec<&str> = RiskReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        codes,
        [
            "requestor_mandate",
            "first_purchase_exemption",
            "low_value_exemption",
            "amount_above_threshold",
            "no_threshold_for_currency",
            "velocity_exceeded",
            "low_risk",
        ]
    );
    for reason in RiskReason::ALL {
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{reason}\""));
        assert_eq!(serde_json::from_str::<RiskReason>(&json).unwrap(), reason);
    }
    let json = serde_json::to_value(assess(&RiskConfig::default(), &buy(6000, EUR).recent(10))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"outcome": "challenge", "reasons": ["amount_above_threshold", "velocity_exceeded"]})
    );
    assert_eq!(Frictionless.to_string(), "frictionless");
}

// ---- configuration ----

/// The server's file embeds the config as its `[risk]` table.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    risk: RiskConfig,
}

fn parse(text: &str) -> Result<RiskConfig, String> {
    toml::from_str::<File>(text).map(|f| f.risk).map_err(|e| e.to_string())
}

#[test]
fn defaults() {
    let c = RiskConfig::default();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.first_purchases_exempt, 0);
    assert_eq!(c.default_challenge_above, None);
    let thresholds: Vec<(&str, u64)> = c.challenge_above.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(thresholds, [("392", 10000), ("752", 50000), ("826", 5000), ("840", 5000), ("978", 5000)]);
    assert_eq!(c.velocity, VelocityConfig { window_secs: 86_400, max_authentications: 10 });
    assert!(c.low_value.enabled);
    assert_eq!(c.low_value.limit_by, LimitBy::Both);
    assert_eq!(c.low_value.max_count, 5);
    let low: Vec<_> = c.low_value.currencies.iter().collect();
    assert_eq!(low, [(&"978".to_owned(), &LowValueLimits { single_limit: 3000, cumulative_limit: 10000 })]);
    // A file without [risk], or with an empty one, gets the defaults.
    assert_eq!(parse("").unwrap(), c);
    assert_eq!(parse("[risk]\n").unwrap(), c);
}

#[test]
fn parses_full_example() {
    let text = r#"
[risk]
first_purchases_exempt = 2
default_challenge_above = 2500

[risk.challenge_above]
"978" = 5000
"840" = 5000
"826" = 5000
"392" = 10000
"752" = 50000

[risk.velocity]
window_secs = 3600
max_authentications = 4

[risk.low_value]
enabled = true
limit_by = "count"
max_count = 5

[risk.low_value.currencies."978"]
single_limit = 3000
cumulative_limit = 10000

[risk.low_value.currencies."752"]
single_limit = 30000
cumulative_limit = 100000
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.first_purchases_exempt, 2);
    assert_eq!(c.default_challenge_above, Some(2500));
    assert_eq!(c.challenge_above.len(), 5);
    assert_eq!(c.challenge_threshold(SEK), Some(50000));
    assert_eq!(c.challenge_threshold(CHF), Some(2500));
    assert_eq!(c.velocity, VelocityConfig { window_secs: 3600, max_authentications: 4 });
    assert_eq!(c.low_value.limit_by, LimitBy::Count);
    assert_eq!(c.low_value.limits_for(SEK), Some(&LowValueLimits { single_limit: 30_000, cumulative_limit: 100_000 }));
    assert_eq!(c.low_value.limits_for(USD), None);
}

#[test]
fn partial_tables_keep_other_defaults() {
    let c =
        parse("[risk.velocity]\nmax_authentications = 3\n[risk.low_value.currencies.\"978\"]\nsingle_limit = 2000\n")
            .unwrap();
    assert_eq!(c.velocity.window_secs, 86_400);
    assert_eq!(c.velocity.max_authentications, 3);
    assert_eq!(c.low_value.currencies["978"], LowValueLimits { single_limit: 2000, cumulative_limit: 10000 });
    assert_eq!(c.challenge_above, RiskConfig::default().challenge_above);
    // Listing a map replaces its defaults.
    let c = parse("[risk.challenge_above]\n\"978\" = 100\n").unwrap();
    assert_eq!(c.challenge_above.len(), 1);
    assert_eq!(c.challenge_threshold(USD), None);
}

#[test]
fn serialises_and_reads_back() {
    for c in [RiskConfig::default(), config(|c| c.default_challenge_above = Some(1))] {
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<RiskConfig>(&text).unwrap(), c, "{text}");
    }
}

#[test]
fn unknown_keys_are_rejected_naming_the_key() {
    for (text, key) in [
        ("[risk]\nfirst_purchase_exempt = 2\n", "first_purchase_exempt"),
        ("[risk.velocity]\nwindow = 60\n", "window"),
        ("[risk.low_value]\nmax_amount = 5\n", "max_amount"),
        ("[risk.low_value.currencies.\"978\"]\nsingle = 5\n", "single"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(err.contains(&format!("unknown field `{key}`")), "{text}: {err}");
    }
    let err = parse("[risk.low_value]\nlimit_by = \"sum\"\n").unwrap_err();
    assert!(err.contains("sum"), "{err}");
}

#[test]
fn validate_refuses_nonsense_naming_the_key() {
    let cases: Vec<(RiskConfig, &str)> = vec![
        (bad(|c| c.velocity.window_secs = 0), "risk.velocity.window_secs"),
        (bad(|c| c.velocity.max_authentications = 0), "risk.velocity.max_authentications"),
        (bad(|c| c.low_value.max_count = 0), "risk.low_value.max_count"),
        (
            bad(|c| {
                c.low_value
                    .currencies
                    .insert("978".into(), LowValueLimits { single_limit: 5000, cumulative_limit: 4000 });
            }),
            "risk.low_value.currencies.\"978\": single_limit (5000) is above cumulative_limit (4000)",
        ),
    ];
    for key in ["97", "0978", "EUR", "000", "9 8", ""] {
        let mut thresholds = RiskConfig::default();
        thresholds.challenge_above.insert(key.into(), 1);
        let mut low = RiskConfig::default();
        low.low_value.currencies.insert(key.into(), LowValueLimits::default());
        for (c, prefix) in [(thresholds, "risk.challenge_above"), (low, "risk.low_value.currencies")] {
            let err = c.validate().unwrap_err();
            assert!(err.contains(&format!("{prefix}.\"{key}\": not a 3-digit")), "{err}");
        }
    }
    for (c, key) in cases {
        let err = c.validate().unwrap_err();
        assert!(err.contains(key), "{key}: {err}");
    }
    // max_count is irrelevant when only the amount is limited.
    let amount_only = bad(|c| {
        c.low_value.limit_by = LimitBy::Amount;
        c.low_value.max_count = 0;
    });
    assert_eq!(amount_only.validate(), Ok(()));
    // Every problem is reported at once.
    let two = bad(|c| {
        c.velocity.window_secs = 0;
        c.challenge_above.insert("EUR".into(), 1);
    });
    let err = two.validate().unwrap_err();
    assert!(err.contains("window_secs") && err.contains("\"EUR\""), "{err}");
}

fn bad(edit: impl FnOnce(&mut RiskConfig)) -> RiskConfig {
    let mut config = RiskConfig::default();
    edit(&mut config);
    config
}
