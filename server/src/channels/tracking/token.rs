//! The tokens in tracked links, pixels and unsubscribe links: what they
//! are about (a message, one of its links, a contact) and an HMAC-SHA256
//! over that with the installation's tracking key, cut to 128 bits. A token
//! names records by id, never a URL or an address; changing one character
//! makes it a different, unsigned token, answered like an unknown page.
//!
//! Written as lowercase hex, so it reads the same in a URL path and in the
//! local part of a `mailto:` address (which some mail systems lower-case).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The tracking key's length.
pub const KEY_LEN: usize = 32;
/// How much of the HMAC a token carries.
const MAC_LEN: usize = 16;
/// Bound into every MAC: a key used for something else one day signs nothing here.
const DOMAIN: &[u8] = b"waymark-tracking-v1\0";

/// What a token is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The open pixel of a message (a conversation record).
    Open { conversation: i64 },
    /// The `link`-th tracked link of a message.
    Click { conversation: i64, link: u16 },
    /// The unsubscribe link and preference page, through a message.
    Unsubscribe { conversation: i64 },
    /// The preference page of a contact (a link handed out by the app).
    Preferences { contact: i64 },
}

impl Token {
    fn kind(self) -> u8 {
        match self {
            Token::Open { .. } => b'o',
            Token::Click { .. } => b'c',
            Token::Unsubscribe { .. } => b'u',
            Token::Preferences { .. } => b'p',
        }
    }

    fn payload(self) -> Vec<u8> {
        let mut out = vec![self.kind()];
        match self {
            Token::Open { conversation } | Token::Unsubscribe { conversation } => out.extend_from_slice(&conversation.to_be_bytes()),
            Token::Preferences { contact } => out.extend_from_slice(&contact.to_be_bytes()),
            Token::Click { conversation, link } => {
                out.extend_from_slice(&conversation.to_be_bytes());
                out.extend_from_slice(&link.to_be_bytes());
            }
        }
        out
    }

    /// The signed token, as it goes into a URL or an address.
    pub fn sign(self, key: &[u8; KEY_LEN]) -> String {
        let mut bytes = self.payload();
        let tag = mac(key, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_LEN]);
        hex::encode(bytes)
    }

    /// The token `text` stands for, if it is one this key signed. Anything
    /// else (bad hex, a wrong length, a changed byte) is `None`, all alike.
    pub fn verify(key: &[u8; KEY_LEN], text: &str) -> Option<Token> {
        if text.len() > 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let bytes = hex::decode(text).ok()?;
        let (payload, tag) = bytes.split_at(bytes.len().checked_sub(MAC_LEN)?);
        mac(key, payload).verify_truncated_left(tag).ok()?;
        let id = |at: usize| payload.get(at..at + 8).map(|b| i64::from_be_bytes(b.try_into().expect("eight bytes")));
        let token = match (payload.first()?, payload.len()) {
            (b'o', 9) => Token::Open { conversation: id(1)? },
            (b'u', 9) => Token::Unsubscribe { conversation: id(1)? },
            (b'p', 9) => Token::Preferences { contact: id(1)? },
            (b'c', 11) => Token::Click { conversation: id(1)?, link: u16::from_be_bytes([payload[9], payload[10]]) },
            _ => return None,
        };
        Some(token)
    }
}

fn mac(key: &[u8; KEY_LEN], payload: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(payload);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    #[test]
    fn tokens_round_trip_and_say_only_what_they_are_about() {
        for token in [
            Token::Open { conversation: 1 },
            Token::Click { conversation: 42, link: 3 },
            Token::Unsubscribe { conversation: i64::MAX },
            Token::Preferences { contact: 9 },
        ] {
            let text = token.sign(&KEY);
            assert!(text.len() <= 54 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{text}");
            assert_eq!(Token::verify(&KEY, &text), Some(token));
            assert_eq!(Token::verify(&[8; KEY_LEN], &text), None, "another key's token is nothing");
        }
        assert_eq!(Token::Click { conversation: 42, link: 3 }.sign(&KEY), Token::Click { conversation: 42, link: 3 }.sign(&KEY), "stable");
    }

    #[test]
    fn any_change_to_a_token_makes_it_nothing() {
        let text = Token::Click { conversation: 42, link: 3 }.sign(&KEY);
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(Token::verify(&KEY, std::str::from_utf8(&bytes).unwrap()), None, "changed at {i}");
        }
        // Another link of the same message cannot be reached by editing the index.
        let other = format!("{}0004{}", &text[..18], &text[22..]);
        assert_eq!(Token::verify(&KEY, &other), None);
        for bad in ["", "00", &text[..text.len() - 2], &format!("{text}00"), &text.to_uppercase(), "zz", &"0".repeat(200)] {
            assert_eq!(Token::verify(&KEY, bad), None, "{bad}");
        }
    }
}
