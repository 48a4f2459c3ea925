//! SMS length: which encoding a text needs and how many segments it costs.
//!
//! A text made only of GSM 03.38 characters is sent as GSM-7 (160 septets in
//! one segment, 153 per segment once split; `^{}[]~|€\` and form feed take
//! two septets). Anything else forces UCS-2 (70 UTF-16 units, 67 per part).

use serde::{Deserialize, Serialize};

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    Gsm7,
    Ucs2,
}

/// What a text costs to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsLength {
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub segments: usize,
    /// How many units fit in one segment with this encoding.
    pub single_limit: usize,
}

pub fn measure(text: &str) -> SmsLength {
    let gsm_units = text.chars().try_fold(0usize, |units, c| {
        if GSM_BASIC.contains(c) {
            Some(units + 1)
        } else if GSM_EXTENDED.contains(c) {
            Some(units + 2)
        } else {
            None
        }
    });
    let (encoding, units, single, part) = match gsm_units {
        Some(units) => (SmsEncoding::Gsm7, units, 160, 153),
        None => (SmsEncoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let segments = match units {
        0 => 0,
        n if n <= single => 1,
        n => n.div_ceil(part),
    };
    SmsLength { encoding, units, segments, single_limit: single }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_texts_fit_160_then_153_per_segment() {
        assert_eq!(measure("").segments, 0);
        assert_eq!(measure(&"a".repeat(160)).segments, 1);
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
        assert_eq!(measure("Hi {{ first_name }}").encoding, SmsEncoding::Gsm7);
    }

    #[test]
    fn extended_characters_take_two_septets() {
        let text = format!("{}€", "a".repeat(158));
        assert_eq!(measure(&text).units, 160);
        assert_eq!(measure(&text).segments, 1);
        assert_eq!(measure(&format!("{}[", "a".repeat(159))).segments, 2);
    }

    #[test]
    fn other_characters_force_ucs2() {
        let text = format!("{}é", "a".repeat(69)); // é is GSM
        assert_eq!(measure(&text).encoding, SmsEncoding::Gsm7);
        let text = format!("{}ł", "a".repeat(69));
        assert_eq!(measure(&text).encoding, SmsEncoding::Ucs2);
        assert_eq!(measure(&text).segments, 1);
        assert_eq!(measure(&format!("{}ł", "a".repeat(70))).segments, 2);
        // an emoji is two UTF-16 units
        assert_eq!(measure("😀").units, 2);
    }
}
