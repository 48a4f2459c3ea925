//! How long each stored text may be. Every write path checks these (the
//! REST API, the pages' server functions, CSV imports, flow documents) and
//! refuses a longer text with 422 `too_long`, naming the field; nothing is
//! cut short silently. The README lists them. Lengths are in characters
//! (Unicode scalar values), so a limit means the same in every script.

use crate::core::contact::Contact;

/// Names: flows, lists, users, API tokens, steps.
pub const NAME: usize = 200;
/// An email address (RFC 5321's path limit).
pub const EMAIL: usize = 254;
/// An email address's local part, before the `@` (RFC 5321).
pub const EMAIL_LOCAL: usize = 64;
/// A mobile number as typed (it is stored as at most 16 characters, E.164).
pub const MOBILE: usize = 32;
/// A time zone name (`America/Argentina/ComodRivadavia` is 32).
pub const ZONE: usize = 64;
/// A contact's owner (a user's email).
pub const OWNER: usize = EMAIL;
/// A custom field's name.
pub const FIELD_NAME: usize = 64;
/// A custom field's value.
pub const FIELD_VALUE: usize = 4_096;
/// How many custom fields one contact may have.
pub const FIELDS: usize = 200;
/// A step's id.
pub const STEP_ID: usize = 64;
/// Any other text in a flow document: subjects, email and SMS bodies,
/// URLs, scripts. (A whole request is at most 2 MiB.)
pub const DOCUMENT_TEXT: usize = 256 * 1024;
/// Notes: admins' acknowledgements, agents' dispositions.
pub const NOTE: usize = 2_000;

/// A custom event's name (`purchase`, `form_submitted`).
pub const EVENT_NAME: usize = 64;
/// The caller's id of an event (for idempotency).
pub const EVENT_ID: usize = 128;
/// A custom event's properties, as JSON text.
pub const EVENT_PROPERTIES: usize = 16 * 1024;
/// A clicked link's URL in an event.
pub const EVENT_URL: usize = 2_048;
/// Events in one `POST /api/v1/events` batch.
pub const EVENTS_PER_BATCH: usize = 1_000;

/// A tracked link's URL (longer ones go out as written, untracked).
pub const TRACKED_URL: usize = EVENT_URL;
/// Links tracked in one email; the ones after go out as written.
pub const TRACKED_LINKS: usize = 200;
/// A DKIM selector (one DNS label).
pub const DKIM_SELECTOR: usize = 63;
/// A DKIM signing domain (a DNS name).
pub const DKIM_DOMAIN: usize = 253;
/// A DKIM private key as pasted (PEM of an RSA-4096 key is about 3,300).
pub const DKIM_PRIVATE_KEY: usize = 16 * 1024;
/// An inbound SMS's text as the provider posts it (Twilio: 1,600).
pub const SMS_INBOUND_TEXT: usize = 1_600;
/// A consent change's detail (the SMS keyword, the page's note).
pub const CONSENT_DETAIL: usize = NAME;

/// Text received from outside (bounces, replies) is kept on the
/// conversation record up to these lengths and cut there (marked with
/// `…`): it is not ours to refuse.
/// A reply's text, without the quoted message.
pub const REPLY_EXCERPT: usize = 2_000;
/// A bounce's diagnostic (the receiving server's words).
pub const BOUNCE_DIAGNOSTIC: usize = 1_000;
/// What the mailbox found in one message, as its log keeps it.
pub const MAILBOX_NOTE: usize = 500;
/// The bounce mailbox's settings: host name (RFC 1035), user, folder.
pub const MAILBOX_HOST: usize = 253;
pub const MAILBOX_USER: usize = EMAIL;
pub const MAILBOX_FOLDER: usize = 200;
/// A password, token or signing key of a mailbox or provider webhook.
pub const INTEGRATION_SECRET: usize = 4_096;
/// An Amazon SNS topic ARN, and how many may be listed.
pub const TOPIC_ARN: usize = 256;
pub const TOPIC_ARNS: usize = 20;

/// A text over its limit: which field, and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLong {
    pub field: String,
    pub limit: usize,
    pub length: usize,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} may be at most {} characters; this one has {}.", self.field, self.limit, self.length)
    }
}

/// Refuses `text` in `field` when it is longer than `limit` characters.
pub fn check(field: &str, text: &str, limit: usize) -> Result<(), TooLong> {
    // Counting stops at the limit: a 2 MB text is not walked twice.
    if text.len() <= limit {
        return Ok(());
    }
    let length = text.chars().count();
    if length <= limit {
        Ok(())
    } else {
        Err(TooLong { field: field.to_owned(), limit, length })
    }
}

/// Every text of a contact against its limit.
pub fn check_contact(contact: &Contact) -> Result<(), TooLong> {
    let optional = |field: &str, value: &Option<String>, limit: usize| check(field, value.as_deref().unwrap_or_default(), limit);
    optional("email", &contact.email, EMAIL)?;
    if let Some((local, _)) = contact.email.as_deref().and_then(|e| e.rsplit_once('@')) {
        check("email's local part", local, EMAIL_LOCAL)?;
    }
    optional("mobile", &contact.mobile, MOBILE)?;
    optional("timezone", &contact.timezone, ZONE)?;
    optional("owner", &contact.owner, OWNER)?;
    if contact.fields.len() > FIELDS {
        return Err(TooLong { field: "fields (how many)".into(), limit: FIELDS, length: contact.fields.len() });
    }
    for (name, value) in &contact.fields {
        check("a custom field's name", name, FIELD_NAME)?;
        let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        check(&format!("fields.{name}"), &text, FIELD_VALUE)?;
    }
    for list in &contact.lists {
        check("a list's name", list, NAME)?;
    }
    for channel in &contact.opted_out {
        check("opted_out", channel, NAME)?;
    }
    Ok(())
}

/// The texts of a flow document (as JSON) against their limits: the flow's
/// name, each step's id and name, and any other text anywhere in it.
/// Returns the JSON path of the first one over.
pub fn check_document(document: &serde_json::Value) -> Result<(), TooLong> {
    use serde_json::Value;
    fn walk(value: &Value, path: &mut String, limit_for: &dyn Fn(&str) -> usize) -> Result<(), TooLong> {
        match value {
            Value::String(text) => check(path, text, limit_for(path)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, limit_for)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, item) in map {
                    check(&format!("a key in {}", if path.is_empty() { "the document" } else { path.as_str() }), key, NAME)?;
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    walk(item, path, limit_for)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    let limit_for = |path: &str| match path.strip_prefix("steps[").and_then(|rest| rest.split_once("].")).map(|(_, field)| field) {
        Some("id") => STEP_ID,
        Some("name") => NAME,
        _ if path == "name" => NAME,
        _ => DOCUMENT_TEXT,
    };
    walk(document, &mut String::new(), &limit_for)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn limits_count_characters_and_name_the_field() {
        assert!(check("name", &"é".repeat(NAME), NAME).is_ok(), "200 two-byte characters are 200 characters");
        let err = check("name", &"x".repeat(NAME + 1), NAME).unwrap_err();
        assert_eq!((err.field.as_str(), err.limit, err.length), ("name", NAME, NAME + 1));
        assert_eq!(err.to_string(), "name may be at most 200 characters; this one has 201.");
    }

    #[test]
    fn a_contact_is_checked_field_by_field() {
        let mut contact: Contact = serde_json::from_value(json!({"email": "a@b.test", "fields": {"city": "Oslo"}})).unwrap();
        assert!(check_contact(&contact).is_ok());
        contact.email = Some(format!("{}@b.test", "a".repeat(65)));
        assert_eq!(check_contact(&contact).unwrap_err().field, "email's local part");
        contact.email = Some("a@b.test".into());
        contact.fields.insert("bio".into(), json!("x".repeat(FIELD_VALUE + 1)));
        assert_eq!(check_contact(&contact).unwrap_err().field, "fields.bio");
    }

    #[test]
    fn a_document_names_the_path_of_its_long_text() {
        let long = "x".repeat(NAME + 1);
        let doc = json!({"name": long, "steps": []});
        assert_eq!(check_document(&doc).unwrap_err().field, "name");
        let doc = json!({"name": "ok", "steps": [{"id": "s", "name": long}]});
        assert_eq!(check_document(&doc).unwrap_err().field, "steps[0].name");
        let doc = json!({"name": "ok", "steps": [{"id": "x".repeat(STEP_ID + 1)}]});
        assert_eq!(check_document(&doc).unwrap_err().field, "steps[0].id");
        let body = "b".repeat(DOCUMENT_TEXT + 1);
        let doc = json!({"name": "ok", "steps": [{"id": "e", "settings": {"body": body}}]});
        assert_eq!(check_document(&doc).unwrap_err().field, "steps[0].settings.body");
        let fine = json!({"name": "ok", "steps": [{"id": "e", "name": "n", "settings": {"body": "b".repeat(10_000)}}]});
        assert!(check_document(&fine).is_ok());
    }
}
