//! ISO 4217 currencies (numeric code, alphabetic code, minor-unit exponent).
//!
//! The table is ISO 4217 list one as of 2025: HRK (withdrawn 2023) is gone,
//! ZWG (924) is in, and 532 is listed under its new code XCG. Currencies
//! still listed during a changeover (e.g. SLL, CUC, ZWL, BGN) are kept.
//! Codes without a minor unit (XUA 965, XSU 994) and the non-currency codes
//! 955–964 (bond units, precious metals, SDR, test) and 999 are absent.

/// An active ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    /// Numeric code, e.g. 978.
    pub numeric: u16,
    /// Alphabetic code, e.g. "EUR".
    pub alpha: &'static str,
    /// Minor-unit exponent: 2 for EUR (cents), 0 for JPY, 3 for BHD.
    pub exponent: u8,
}

impl Currency {
    /// Looks up a numeric code in the table.
    pub fn from_numeric(numeric: u16) -> Option<Currency> {
        CURRENCIES.binary_search_by_key(&numeric, |&(n, _, _)| n).ok().map(|i| {
            let (numeric, alpha, exponent) = CURRENCIES[i];
            Currency { numeric, alpha, exponent }
        })
    }

    /// The numeric code as EMV sends it: three digits, zero padded ("036").
    pub fn numeric_str(&self) -> String {
        format!("{:03}", self.numeric)
    }
}

/// True for ISO numeric codes that never denote a currency or country in a
/// purchase: 955–964 (bond market units, gold, SDR, silver, platinum, test
/// code, palladium) and 999 (no currency involved).
pub fn is_reserved_iso_code(numeric: u16) -> bool {
    (955..=964).contains(&numeric) || numeric == 999
}

/// (numeric, alpha, exponent), sorted by numeric code.
const CURRENCIES: &[(u16, &str, u8)] = &[
    (8, "ALL", 2),
    (12, "DZD", 2),
    (32, "ARS", 2),
    (36, "AUD", 2),
    (44, "BSD", 2),
    (48, "BHD", 3),
    (50, "BDT", 2),
    (51, "AMD", 2),
    (52, "BBD", 2),
    (60, "BMD", 2),
    (64, "BTN", 2),
    (68, "BOB", 2),
    (72, "BWP", 2),
    (84, "BZD", 2),
    (90, "SBD", 2),
    (96, "BND", 2),
    (104, "MMK", 2),
    (108, "BIF", 0),
    (116, "KHR", 2),
    (124, "CAD", 2),
    (132, "CVE", 2),
    (136, "KYD", 2),
    (144, "LKR", 2),
    (152, "CLP", 0),
    (156, "CNY", 2),
    (170, "COP", 2),
    (174, "KMF", 0),
    (188, "CRC", 2),
    (192, "CUP", 2),
    (203, "CZK", 2),
    (208, "DKK", 2),
    (214, "DOP", 2),
    (222, "SVC", 2),
    (230, "ETB", 2),
    (232, "ERN", 2),
    (238, "FKP", 2),
    (242, "FJD", 2),
    (262, "DJF", 0),
    (270, "GMD", 2),
    (292, "GIP", 2),
    (320, "GTQ", 2),
    (324, "GNF", 0),
    (328, "GYD", 2),
    (332, "HTG", 2),
    (340, "HNL", 2),
    (344, "HKD", 2),
    (348, "HUF", 2),
    (352, "ISK", 0),
    (356, "INR", 2),
    (360, "IDR", 2),
    (364, "IRR", 2),
    (368, "IQD", 3),
    (376, "ILS", 2),
    (388, "JMD", 2),
    (392, "JPY", 0),
    (398, "KZT", 2),
    (400, "JOD", 3),
    (404, "KES", 2),
    (408, "KPW", 2),
    (410, "KRW", 0),
    (414, "KWD", 3),
    (417, "KGS", 2),
    (418, "LAK", 2),
    (422, "LBP", 2),
    (426, "LSL", 2),
    (430, "LRD", 2),
    (434, "LYD", 3),
    (446, "MOP", 2),
    (454, "MWK", 2),
    (458, "MYR", 2),
    (462, "MVR", 2),
    (480, "MUR", 2),
    (484, "MXN", 2),
    (496, "MNT", 2),
    (498, "MDL", 2),
    (504, "MAD", 2),
    (512, "OMR", 3),
    (516, "NAD", 2),
    (524, "NPR", 2),
    (532, "XCG", 2),
    (533, "AWG", 2),
    (548, "VUV", 0),
    (554, "NZD", 2),
    (558, "NIO", 2),
    (566, "NGN", 2),
    (578, "NOK", 2),
    (586, "PKR", 2),
    (590, "PAB", 2),
    (598, "PGK", 2),
    (600, "PYG", 0),
    (604, "PEN", 2),
    (608, "PHP", 2),
    (634, "QAR", 2),
    (643, "RUB", 2),
    (646, "RWF", 0),
    (654, "SHP", 2),
    (682, "SAR", 2),
    (690, "SCR", 2),
    (694, "SLL", 2),
    (702, "SGD", 2),
    (704, "VND", 0),
    (706, "SOS", 2),
    (710, "ZAR", 2),
    (728, "SSP", 2),
    (748, "SZL", 2),
    (752, "SEK", 2),
    (756, "CHF", 2),
    (760, "SYP", 2),
    (764, "THB", 2),
    (776, "TOP", 2),
    (780, "TTD", 2),
    (784, "AED", 2),
    (788, "TND", 3),
    (800, "UGX", 0),
    (807, "MKD", 2),
    (818, "EGP", 2),
    (826, "GBP", 2),
    (834, "TZS", 2),
    (840, "USD", 2),
    (858, "UYU", 2),
    (860, "UZS", 2),
    (882, "WST", 2),
    (886, "YER", 2),
    (901, "TWD", 2),
    (924, "ZWG", 2),
    (925, "SLE", 2),
    (926, "VED", 2),
    (927, "UYW", 4),
    (928, "VES", 2),
    (929, "MRU", 2),
    (930, "STN", 2),
    (931, "CUC", 2),
    (932, "ZWL", 2),
    (933, "BYN", 2),
    (934, "TMT", 2),
    (936, "GHS", 2),
    (938, "SDG", 2),
    (940, "UYI", 0),
    (941, "RSD", 2),
    (943, "MZN", 2),
    (944, "AZN", 2),
    (946, "RON", 2),
    (947, "CHE", 2),
    (948, "CHW", 2),
    (949, "TRY", 2),
    (950, "XAF", 0),
    (951, "XCD", 2),
    (952, "XOF", 0),
    (953, "XPF", 0),
    (967, "ZMW", 2),
    (968, "SRD", 2),
    (969, "MGA", 2),
    (970, "COU", 2),
    (971, "AFN", 2),
    (972, "TJS", 2),
    (973, "AOA", 2),
    (975, "BGN", 2),
    (976, "CDF", 2),
    (977, "BAM", 2),
    (978, "EUR", 2),
    (979, "MXV", 2),
    (980, "UAH", 2),
    (981, "GEL", 2),
    (984, "BOV", 2),
    (985, "PLN", 2),
    (986, "BRL", 2),
    (990, "CLF", 4),
    (997, "USN", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_sane() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].1, pair[1].1);
        }
        let mut alphas: Vec<&str> = CURRENCIES.iter().map(|c| c.1).collect();
        alphas.sort_unstable();
        alphas.dedup();
        assert_eq!(alphas.len(), CURRENCIES.len());
        for &(n, a, e) in CURRENCIES {
            assert!((1..=998).contains(&n));
            assert!(!is_reserved_iso_code(n), "{a}");
            assert!(a.len() == 3 && a.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(e <= 4);
        }
    }

    #[test]
    fn lookups() {
        let eur = Currency::from_numeric(978).unwrap();
        assert_eq!((eur.alpha, eur.exponent), ("EUR", 2));
        assert_eq!(Currency::from_numeric(392).unwrap().exponent, 0);
        assert_eq!(Currency::from_numeric(48).unwrap().exponent, 3);
        assert_eq!(Currency::from_numeric(990).unwrap().exponent, 4);
        assert_eq!(Currency::from_numeric(36).unwrap().numeric_str(), "036");
        for missing in [0, 191, 955, 959, 960, 963, 964, 965, 994, 999, 1000] {
            assert_eq!(Currency::from_numeric(missing), None, "{missing}");
        }
    }

    #[test]
    fn reserved_codes() {
        assert!(is_reserved_iso_code(955));
        assert!(is_reserved_iso_code(964));
        assert!(is_reserved_iso_code(999));
        assert!(!is_reserved_iso_code(954));
        assert!(!is_reserved_iso_code(965));
        assert!(!is_reserved_iso_code(978));
    }
}
