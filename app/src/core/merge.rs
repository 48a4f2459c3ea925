//! Merge tags: `{{ first_name }}` in subjects, bodies, SMS text and field
//! values, filled from the contact.
//!
//! Values are escaped for HTML where the output is HTML (email bodies), so a
//! contact whose name is `<script>` cannot inject markup. A tag naming a
//! field the contact lacks renders empty; `{{ name | default: "there" }}`
//! gives a fallback.

use crate::core::contact::Contact;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Plain text: subjects, SMS, field values.
    None,
    /// HTML bodies.
    Html,
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
        let mut value = contact.field_text(field);
        if value.is_empty() {
            value = fallback.unwrap_or_default();
        }
        match escape {
            Escape::Html => out.push_str(&escape_html(&value)),
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
    fn missing_fields_are_empty_or_their_default() {
        let c = contact();
        assert_eq!(render("Hi {{ nickname }}.", &c, Escape::None), "Hi .");
        assert_eq!(render("Hi {{ nickname | default: \"there\" }}.", &c, Escape::None), "Hi there.");
        assert_eq!(render("unclosed {{ tag", &c, Escape::None), "unclosed {{ tag");
        assert_eq!(tags("{{a}} {{ b | default: x }} {{a}}"), ["a", "b"]);
    }
}
