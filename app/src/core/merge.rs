//! Merge tags: `{{ first_name }}` in subjects, bodies, SMS text and field
//! values, filled from the contact.
//!
//! Values are escaped for where they land ([`Escape`]): HTML-escaped in
//! HTML (email bodies), so a contact whose name is `<script>` cannot inject
//! markup; percent-encoded in URLs (webhook and data append addresses), so
//! a name `bob&admin=true#` cannot add a query parameter or cut the URL
//! short; encoded as one path segment in S3 keys and FTP paths, so a value
//! cannot add folders or climb out of one; unchanged in plain text. Only
//! the filled-in values are escaped, never the template's own text. A tag
//! naming a field the contact lacks renders empty;
//! `{{ name | default: "there" }}` gives a fallback (escaped like a value).
//!
//! JSON bodies need no escape here: a webhook body is a JSON value whose
//! strings are filled one by one (`engine::render_value`, with
//! [`Escape::None`]) and serialised by serde, which escapes quotes; form
//! bodies are encoded by the form serialiser. Header values are plain text:
//! one with a line break is refused when the call is made (a permanent
//! failure), never sent as two headers.

use crate::core::contact::Contact;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Plain text: subjects, SMS, field values.
    None,
    /// HTML bodies.
    Html,
    /// Anywhere in a URL (webhook and data append addresses): every byte
    /// outside RFC 3986's unreserved characters (`A-Za-z0-9-._~`) is
    /// percent-encoded, UTF-8 byte by byte, so `/ ? # & = + % @`, spaces
    /// and line breaks in a value are data, never URL syntax. The same
    /// encoding is right in a path, a query value and a fragment.
    ///
    /// A value that is exactly `.` or `..` placed as a whole path segment
    /// still reads as a dot segment to URL parsers (`%2E%2E` does too, by
    /// the WHATWG URL rules), so it can move the call one folder up on the
    /// template's own host; it cannot change the host or add segments.
    Url,
    /// One segment of an S3 object key or an FTP path: a value stays inside
    /// the segment it is placed in. Kept as written: the unreserved
    /// characters, `@` and RFC 3986's sub-delimiters (`!$&'()*+,;=`), none
    /// of which separates anything in a key or an FTP path; everything else
    /// is percent-encoded, notably `/` (`%2F`), `\` (`%5C`), `%`, `:`,
    /// `?`, `#`, spaces, line breaks (which could end an FTP command) and
    /// non-ASCII. A value made only of dots (`.`, `..`) is encoded whole
    /// (`%2E%2E`) so it cannot be a dot segment. The stored key or file
    /// name holds the encoded text (`../x` is stored as `..%2Fx`); decode
    /// it once to get the value back.
    PathSegment,
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Percent-encodes every byte outside RFC 3986's unreserved characters.
pub fn escape_url(text: &str) -> String {
    percent_encode(text, |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Encodes `text` to stay one path segment of an S3 key or FTP path (see
/// [`Escape::PathSegment`]).
pub fn escape_path_segment(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b == b'.') {
        return "%2E".repeat(text.len());
    }
    percent_encode(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
    })
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.extend(['%', HEX[(b >> 4) as usize] as char, HEX[(b & 0xf) as usize] as char]);
        }
    }
    out
}

/// The merge tag of a message's unsubscribe and preference page link.
pub const UNSUBSCRIBE_FIELD: &str = "unsubscribe_url";
/// How [`render`] leaves `{{ unsubscribe_url }}` in email bodies, subjects
/// and SMS text: the link is signed for the message's own record, which
/// only exists when it is sent, so the sender puts it in then (elsewhere,
/// in URLs and paths, the tag renders empty).
pub const UNSUBSCRIBE_TAG: &str = "{{ unsubscribe_url }}";

/// Fills every `{{ tag }}` in `template`. Text outside tags is kept as written.
pub fn render(template: &str, contact: &Contact, escape: Escape) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        out.push_str(&rest[..open]);
        let tag = rest[open + 2..open + 2 + close].trim();
        let (field, fallback) = match tag.split_once('|') {
            Some((field, filter)) => {
                let filter = filter.trim();
                let fallback = filter
                    .strip_prefix("default:")
                    .map(|value| value.trim().trim_matches('"').trim_matches('\'').to_owned());
                (field.trim(), fallback)
            }
            None => (tag, None),
        };
        if field == UNSUBSCRIBE_FIELD && matches!(escape, Escape::Html | Escape::None) {
            // Filled when the message is sent: the link names its record.
            out.push_str(UNSUBSCRIBE_TAG);
            rest = &rest[open + 2 + close + 2..];
            continue;
        }
        let mut value = contact.field_text(field);
        if value.is_empty() {
            value = fallback.unwrap_or_default();
        }
        match escape {
            Escape::Html => out.push_str(&escape_html(&value)),
            Escape::Url => out.push_str(&escape_url(&value)),
            Escape::PathSegment => out.push_str(&escape_path_segment(&value)),
            Escape::None => out.push_str(&value),
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The field names a template's tags use, for merge-tag help and checks.
pub fn tags(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        let tag = rest[open + 2..open + 2 + close].trim();
        let field = tag.split('|').next().unwrap_or_default().trim().to_owned();
        if !field.is_empty() && !found.contains(&field) {
            found.push(field);
        }
        rest = &rest[open + 2 + close + 2..];
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contact() -> Contact {
        serde_json::from_value(json!({"email": "a@b.c", "fields": {"first_name": "<img src=x onerror=alert(1)>", "city": "Zürich"}}))
            .unwrap()
    }

    #[test]
    fn fills_tags_and_escapes_html_only_where_asked() {
        let c = contact();
        assert_eq!(render("Hi {{first_name}}!", &c, Escape::Html), "Hi &lt;img src=x onerror=alert(1)&gt;!");
        assert_eq!(render("Hi {{ first_name }}", &c, Escape::None), "Hi <img src=x onerror=alert(1)>");
        assert_eq!(render("From {{ city }} ({{email}})", &c, Escape::Html), "From Zürich (a@b.c)");
    }

    #[test]
    fn the_unsubscribe_link_is_left_for_the_sender_in_text_and_html_only() {
        let c = contact();
        assert_eq!(render("<a href=\"{{unsubscribe_url}}\">stop</a>", &c, Escape::Html), "<a href=\"{{ unsubscribe_url }}\">stop</a>");
        assert_eq!(render("Stop: {{ unsubscribe_url }}", &c, Escape::None), "Stop: {{ unsubscribe_url }}");
        assert_eq!(render("https://h.test/?u={{ unsubscribe_url }}", &c, Escape::Url), "https://h.test/?u=");
    }

    #[test]
    fn missing_fields_are_empty_or_their_default() {
        let c = contact();
        assert_eq!(render("Hi {{ nickname }}.", &c, Escape::None), "Hi .");
        assert_eq!(render("Hi {{ nickname | default: \"there\" }}.", &c, Escape::None), "Hi there.");
        assert_eq!(render("unclosed {{ tag", &c, Escape::None), "unclosed {{ tag");
        assert_eq!(tags("{{a}} {{ b | default: x }} {{a}}"), ["a", "b"]);
    }

    /// Percent-decoding, to check that an encoded value reads back whole.
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn named(first_name: &str) -> Contact {
        serde_json::from_value(json!({"email": "ada@example.com", "fields": {"first_name": first_name}})).unwrap()
    }

    #[test]
    fn url_values_are_percent_encoded_outside_rfc3986_unreserved() {
        assert_eq!(escape_url("bob&admin=true#x"), "bob%26admin%3Dtrue%23x");
        assert_eq!(escape_url("a b/c?d+e%f@g\\h\r\n"), "a%20b%2Fc%3Fd%2Be%25f%40g%5Ch%0D%0A");
        assert_eq!(escape_url("Zürich"), "Z%C3%BCrich");
        assert_eq!(escape_url("AZaz09-._~"), "AZaz09-._~", "unreserved characters are kept");
        assert_eq!(decode(&escape_url("a b/c?d+e%f@g\\h\r\nZürich")), "a b/c?d+e%f@g\\h\r\nZürich");
        // only the value is encoded, never the template's own URL syntax
        let url = render("https://h.test/p/{{ first_name }}?name={{first_name}}&x=1#top", &named("bob&admin=true#x"), Escape::Url);
        assert_eq!(url, "https://h.test/p/bob%26admin%3Dtrue%23x?name=bob%26admin%3Dtrue%23x&x=1#top");
        // read back the way a URL parser splits it: path ? query # fragment, & between pairs
        let (before, fragment) = url.split_once('#').unwrap();
        let (path, query) = before.split_once('?').unwrap();
        assert_eq!((path, fragment), ("https://h.test/p/bob%26admin%3Dtrue%23x", "top"));
        let pairs: Vec<(&str, String)> = query.split('&').map(|pair| pair.split_once('=').unwrap()).map(|(k, v)| (k, decode(v))).collect();
        assert_eq!(pairs, [("name", "bob&admin=true#x".to_owned()), ("x", "1".to_owned())]);
        assert_eq!(render("https://h.test/?q={{ nick | default: \"a b\" }}", &named(""), Escape::Url), "https://h.test/?q=a%20b", "fallbacks too");
    }

    #[test]
    fn path_segment_values_stay_inside_their_segment() {
        let key = render("exports/{{ first_name }}/contact.json", &named("../x/y"), Escape::PathSegment);
        assert_eq!(key, "exports/..%2Fx%2Fy/contact.json");
        assert_eq!(key.split('/').collect::<Vec<_>>(), ["exports", "..%2Fx%2Fy", "contact.json"], "one segment, not three");
        assert_eq!(escape_path_segment("../../etc"), "..%2F..%2Fetc");
        assert_eq!(escape_path_segment(".."), "%2E%2E", "never a dot segment");
        assert_eq!(escape_path_segment("."), "%2E");
        assert_eq!(escape_path_segment("..\\win"), "..%5Cwin");
        assert_eq!(escape_path_segment("a b%c?d#e:f\r\nDELE x"), "a%20b%25c%3Fd%23e%3Af%0D%0ADELE%20x");
        assert_eq!(escape_path_segment("ada@x.test"), "ada@x.test", "RFC 3986 path characters are kept");
        assert_eq!(escape_path_segment("a+b,c;d=e&f!g$h'i(j)k*l"), "a+b,c;d=e&f!g$h'i(j)k*l");
        assert_eq!(escape_path_segment("Zürich"), "Z%C3%BCrich");
        assert_eq!(escape_path_segment(""), "");
        assert_eq!(decode(&escape_path_segment("../x/y Zürich")), "../x/y Zürich", "decoding once gives the value back");
    }

    #[test]
    fn plain_text_and_html_are_unchanged_by_the_new_contexts() {
        let c = named("bob&admin=true#");
        assert_eq!(render("Hi {{ first_name }}", &c, Escape::None), "Hi bob&admin=true#");
        assert_eq!(render("<p>{{ first_name }}</p>", &c, Escape::Html), "<p>bob&amp;admin=true#</p>");
    }

    /// Through the engine: the effects a step hands the shell carry their
    /// merge values escaped for where they land.
    mod engine_effects {
        use jiff::Timestamp;
        use serde_json::{json, Value};

        use crate::core::contact::Contact;
        use crate::core::engine::{advance, Effect, Event, Participant};
        use crate::core::FlowDocument;

        fn first_effect(step: Value, contact: Value) -> Effect {
            let flow = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "T",
                "steps": [{"id": "s", "kind": "start"}, step], "edges": [{"from": "s", "port": "next", "to": "x"}]}))
            .unwrap();
            let contact: Contact = serde_json::from_value(contact).unwrap();
            let now: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
            let out = advance(&flow, &Participant::new(1), &contact, Event::Enroll, now);
            out.commands.into_iter().next().expect("the step sends something").effect
        }

        #[test]
        fn engine_webhook_url_values_are_percent_encoded_and_body_strings_stay_strings() {
            let effect = first_effect(
                json!({"id": "x", "kind": "webhook", "settings": {"url": "https://hooks.test/in?name={{first_name}}",
                    "headers": {"X-Name": "{{ first_name }}"}, "body": {"note": "{{ last_name }}", "n": 1}}}),
                json!({"fields": {"first_name": "bob&admin=true#", "last_name": "\"},\"admin\":true,\"x\":\""}}),
            );
            let Effect::Webhook { url, headers, body, .. } = effect else { panic!("a webhook: {effect:?}") };
            assert_eq!(url, "https://hooks.test/in?name=bob%26admin%3Dtrue%23");
            assert_eq!(headers["X-Name"], "bob&admin=true#", "header values are plain text");
            // the body goes out as serde's serialisation of this value
            let sent: Value = serde_json::from_str(&body.to_string()).unwrap();
            assert_eq!(sent, json!({"note": "\"},\"admin\":true,\"x\":\"", "n": 1}), "one string, no admin key");
        }

        #[test]
        fn engine_data_append_s3_and_ftp_targets_are_escaped() {
            let contact = json!({"email": "ada@x.test", "fields": {"first_name": "../../etc/passwd?a=b#"}});
            let Effect::DataAppend { url, .. } = first_effect(
                json!({"id": "x", "kind": "data_append", "settings": {"url": "https://enrich.test/p?email={{ email }}&n={{ first_name }}"}}),
                contact.clone(),
            ) else { panic!("a data append") };
            assert_eq!(url, "https://enrich.test/p?email=ada%40x.test&n=..%2F..%2Fetc%2Fpasswd%3Fa%3Db%23");
            let Effect::S3Upload { key, .. } =
                first_effect(json!({"id": "x", "kind": "s3_upload", "settings": {"bucket": "b", "key": "in/{{ first_name }}.json"}}), contact.clone())
            else { panic!("an S3 upload") };
            assert_eq!(key, "in/..%2F..%2Fetc%2Fpasswd%3Fa=b%23.json");
            let Effect::FtpUpload { path, .. } =
                first_effect(json!({"id": "x", "kind": "ftp_upload", "settings": {"path": "/in/{{ first_name }}/{{ email }}.csv"}}), contact)
            else { panic!("an FTP upload") };
            assert_eq!(path, "/in/..%2F..%2Fetc%2Fpasswd%3Fa=b%23/ada@x.test.csv");
        }
    }
}
