//! Merge tags: `{{ first_name }}` in subjects, bodies, SMS text, URLs and
//! field values, filled from the contact by [minijinja], a well-kept Jinja
//! engine (it builds for wasm, so the editor's preview runs this very code).
//!
//! A template may use what Jinja offers without IO: `{{ field }}`,
//! `{% if vip %}…{% else %}…{% endif %}`, `{% for item in list_field %}`,
//! filters (`upper`, `join`, `default`, `date`…). Templates cannot load
//! other templates or define macros (those features are not compiled in),
//! and each render runs under a fuel budget ([`FUEL`]) and an output limit
//! ([`MAX_OUTPUT`]), so a marketer's loop cannot stall a worker.
//!
//! Values are escaped for where they land ([`Escape`]), by the engine's
//! formatter: HTML-escaped in HTML (email bodies), so a contact whose name
//! is `<script>` cannot inject markup; percent-encoded in URLs (webhook and
//! data append addresses), so a name `bob&admin=true#` cannot add a query
//! parameter or cut the URL short; encoded as one path segment in S3 keys
//! and FTP paths, so a value cannot add folders or climb out of one;
//! unchanged in plain text. Only printed values are escaped, never the
//! template's own text. In URLs and paths even values marked `safe` (or
//! passed through `escape`) are encoded: there a value is always data.
//!
//! Comments are written `{## … ##}`, not Jinja's usual `{# … #}`: `{#` is
//! ordinary CSS in an email's style sheet (`a{#x}`, a nested `{#id .c}`
//! rule), where it would start a comment, swallow the styles up to the
//! next `#}` or make the body unreadable. `{{`, `{%` and `{##` never occur
//! in CSS; to print one of them as text, write it as a string:
//! `{{ "{{" }}`.
//!
//! A tag naming a field the contact lacks renders empty (the validator
//! warns when no contact has it: `unknown_field`); `default` gives a
//! fallback for a missing or empty value, written either way:
//! `{{ name | default("there") }}` or, as before, `{{ name | default: "there" }}`.
//!
//! JSON bodies need no escape here: a webhook body is a JSON value whose
//! strings are filled one by one (`engine::render_value`, with
//! [`Escape::None`]) and serialised by serde, which escapes quotes; form
//! bodies are encoded by the form serialiser. Header values are plain text:
//! one with a line break is refused when the call is made (a permanent
//! failure), never sent as two headers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use minijinja::value::{Rest, Value as Jinja, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior};
use serde_json::Value;

use crate::core::contact::Contact;
use crate::core::flow::Step;
use crate::core::kinds::StepKind;

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

impl Escape {
    /// The name a template is compiled under; the environment picks its
    /// auto-escaping from it.
    fn template_name(self) -> &'static str {
        match self {
            Escape::None => "text",
            Escape::Html => "html",
            Escape::Url => "url",
            Escape::PathSegment => "path",
        }
    }

    fn of(auto: &AutoEscape) -> Escape {
        match auto {
            AutoEscape::Html => Escape::Html,
            AutoEscape::Custom(name) if name == "url" => Escape::Url,
            AutoEscape::Custom(name) if name == "path" => Escape::PathSegment,
            _ => Escape::None,
        }
    }
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

/// The work one render may do: about one unit per instruction run and per
/// 64 bytes of text made. Enough for a long email with loops over every
/// list a contact can hold; a loop that would run away stops here.
pub const FUEL: u64 = 200_000;
/// The most text one render may produce: 1 MiB.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Names every template can use besides the contact's custom fields.
pub const BUILT_IN_NAMES: [&str; 6] = ["email", "mobile", "timezone", "owner", "lists", UNSUBSCRIBE_FIELD];
/// The engine's own functions, which read as names in a template.
const GLOBALS: [&str; 4] = ["range", "dict", "namespace", "debug"];

/// Why a template cannot be read or filled, in a sentence with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub kind: TemplateErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// The text is not a template (an unclosed tag, a bad expression).
    Syntax,
    /// A filter, test or function the engine does not have.
    Unknown,
    /// It ran out of fuel or made more than [`MAX_OUTPUT`].
    Limit,
    /// Anything else while filling it (adding text to a number…).
    Fill,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

impl TemplateError {
    fn from_engine(err: minijinja::Error) -> TemplateError {
        let kind = match err.kind() {
            ErrorKind::SyntaxError | ErrorKind::BadEscape | ErrorKind::InvalidDelimiter => TemplateErrorKind::Syntax,
            ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction | ErrorKind::UnknownMethod => {
                TemplateErrorKind::Unknown
            }
            ErrorKind::OutOfFuel => TemplateErrorKind::Limit,
            _ => TemplateErrorKind::Fill,
        };
        let what = match kind {
            TemplateErrorKind::Limit => "the template does too much work (a loop that runs too long?)".to_owned(),
            _ => {
                let description = err.kind().to_string();
                match err.detail() {
                    Some(detail) => format!("{description}: {detail}"),
                    None => description,
                }
            }
        };
        let message = match err.line() {
            Some(line) => format!("{what} (line {line})"),
            None => what,
        };
        TemplateError { kind, message }
    }

    fn too_long() -> TemplateError {
        TemplateError { kind: TemplateErrorKind::Limit, message: format!("the filled text is longer than {} bytes", MAX_OUTPUT) }
    }
}

/// Where comments start and end: see the module's note on CSS.
const COMMENT: (&str, &str) = ("{##", "##}");

/// Is there anything for the engine to do? Text without `{{`, `{%` or `{##`
/// is kept as written without compiling it (most settings).
fn has_tags(template: &str) -> bool {
    ["{{", "{%", COMMENT.0].iter().any(|start| template.contains(start))
}

/// The one environment every template is compiled in.
fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut env = Environment::new();
        // Text is kept as written, to its last line break; `{#` is text.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .comment_delimiters(COMMENT.0, COMMENT.1)
            .keep_trailing_newline(true)
            .build()
            .expect("distinct start delimiters");
        env.set_syntax(syntax);
        // A missing field, or a missing key of one, is empty: the validator
        // warns about names no contact has, the send goes on.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.set_auto_escape_callback(|name| match name {
            "html" => AutoEscape::Html,
            "url" => AutoEscape::Custom(Cow::Borrowed("url")),
            "path" => AutoEscape::Custom(Cow::Borrowed("path")),
            _ => AutoEscape::None,
        });
        env.set_formatter(format_value);
        env.add_filter("default", default_filter);
        env.add_filter("d", default_filter);
        env.add_filter("date", date_filter);
        env
    })
}

/// Prints a value escaped for its template's context.
fn format_value(out: &mut Output, state: &mut State, value: &Jinja) -> Result<(), minijinja::Error> {
    let escape = Escape::of(state.auto_escape());
    let write = |out: &mut Output, text: &str| out.write_str(text).map_err(|_| minijinja::Error::from(ErrorKind::WriteFailure));
    if value.is_safe() && matches!(escape, Escape::Html | Escape::None) {
        return write(out, value.as_str().unwrap_or_default());
    }
    let text = value_text(value);
    match escape {
        Escape::None => write(out, &text),
        Escape::Html => write(out, &escape_html(&text)),
        Escape::Url => write(out, &escape_url(&text)),
        Escape::PathSegment => write(out, &escape_path_segment(&text)),
    }
}

/// A value as text: nothing for a missing one, a list's items joined with
/// commas (as merge tags always printed lists).
fn value_text(value: &Jinja) -> String {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => String::new(),
        ValueKind::Seq | ValueKind::Iterable => match value.try_iter() {
            Ok(items) => items.map(|item| value_text(&item)).collect::<Vec<_>>().join(", "),
            Err(_) => value.to_string(),
        },
        _ => value.to_string(),
    }
}

fn is_empty(value: &Jinja) -> bool {
    value.is_undefined() || value.is_none() || value.len() == Some(0)
}

/// `default`: the fallback when the value is missing or empty (an empty
/// text or list), as merge tags always meant it; Jinja's own only covers
/// missing values.
fn default_filter(value: &Jinja, fallback: Rest<Jinja>) -> Jinja {
    if is_empty(value) {
        fallback.first().cloned().unwrap_or_else(|| Jinja::from(""))
    } else {
        value.clone()
    }
}

/// `date` and `date("%d %B %Y")` (strftime): a timestamp in the contact's
/// zone (UTC where the zone is unknown, and in the browser, which carries
/// no zone data), a date or a date and time as written. Anything else is
/// kept as it is, so `default` still applies to an empty value.
fn date_filter(state: &State, value: &Jinja, format: Option<String>) -> Result<Jinja, minijinja::Error> {
    if is_empty(value) {
        return Ok(value.clone());
    }
    let format = format.as_deref().unwrap_or("%Y-%m-%d");
    let text = value_text(value);
    let text = text.trim();
    let zone = || {
        state
            .lookup("timezone")
            .and_then(|zone| zone.as_str().and_then(|name| jiff::tz::TimeZone::get(name).ok()))
            .unwrap_or(jiff::tz::TimeZone::UTC)
    };
    let formatted = if let Ok(at) = text.parse::<jiff::Timestamp>() {
        jiff::fmt::strtime::format(format, &at.to_zoned(zone()))
    } else if let Ok(at) = text.parse::<jiff::civil::DateTime>() {
        jiff::fmt::strtime::format(format, at)
    } else if let Ok(day) = text.parse::<jiff::civil::Date>() {
        jiff::fmt::strtime::format(format, day)
    } else if let Some(at) = text.parse::<i64>().ok().and_then(|s| jiff::Timestamp::from_second(s).ok()) {
        jiff::fmt::strtime::format(format, &at.to_zoned(zone()))
    } else {
        return Ok(value.clone());
    };
    formatted.map(Jinja::from).map_err(|err| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("the date format “{format}” cannot be used for {text}: {err}"))
    })
}

/// Rewrites the first syntax's fallback, `{{ name | default: "there" }}`
/// (or unquoted, `default: there`), into Jinja's `default("there")`.
fn legacy(template: &str) -> Cow<'_, str> {
    if !template.contains("default") || !template.contains(':') {
        return Cow::Borrowed(template);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut changed = false;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else { break };
        let tag = &rest[open + 2..open + 2 + close];
        out.push_str(&rest[..open + 2]);
        match legacy_tag(tag) {
            Some(tag) => {
                out.push_str(&tag);
                changed = true;
            }
            None => out.push_str(tag),
        }
        out.push_str("}}");
        rest = &rest[open + 2 + close + 2..];
    }
    if !changed {
        return Cow::Borrowed(template);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One tag's `| default: value` as `| default("value")`, if it has one.
fn legacy_tag(tag: &str) -> Option<String> {
    let (field, filter) = tag.split_once('|')?;
    let argument = filter.trim_start().strip_prefix("default")?.trim_start().strip_prefix(':')?;
    let (argument, after) = match argument.find('|') {
        Some(at) => (&argument[..at], &argument[at..]),
        None => (argument, ""),
    };
    let value = argument.trim();
    let quoted = value.len() >= 2 && (value.starts_with('"') && value.ends_with('"') || value.starts_with('\'') && value.ends_with('\''));
    let literal = if quoted || value.parse::<f64>().is_ok() {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    };
    Some(format!("{field}| default({literal}) {after}"))
}

/// A contact's JSON value as the engine's.
fn to_engine(value: &Value) -> Jinja {
    match value {
        Value::Null => Jinja::from(()),
        Value::Bool(b) => Jinja::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Jinja::from(i),
            (None, Some(u)) => Jinja::from(u),
            _ => Jinja::from(n.as_f64().unwrap_or_default()),
        },
        Value::String(text) => Jinja::from(text.as_str()),
        Value::Array(items) => items.iter().map(to_engine).collect(),
        Value::Object(map) => Jinja::from(map.iter().map(|(k, v)| (k.clone(), to_engine(v))).collect::<BTreeMap<String, Jinja>>()),
    }
}

/// What a template sees: the custom fields, then `email`, `mobile`,
/// `timezone`, `owner` and `lists` (a custom field of that name wins),
/// and the unsubscribe link's placeholder where the sender fills it.
fn context(contact: &Contact, escape: Escape) -> Jinja {
    let mut names: BTreeMap<String, Jinja> = contact.fields.iter().map(|(k, v)| (k.clone(), to_engine(v))).collect();
    for (name, value) in [("email", &contact.email), ("mobile", &contact.mobile), ("timezone", &contact.timezone), ("owner", &contact.owner)] {
        match value {
            Some(text) => names.insert(name.to_owned(), Jinja::from(text.as_str())),
            None => names.remove(name),
        };
    }
    names.entry("lists".to_owned()).or_insert_with(|| contact.lists.iter().map(|l| Jinja::from(l.as_str())).collect());
    if matches!(escape, Escape::Html | Escape::None) {
        // Filled when the message is sent: the link names its record.
        names.insert(UNSUBSCRIBE_FIELD.to_owned(), Jinja::from_safe_string(UNSUBSCRIBE_TAG.to_owned()));
    }
    Jinja::from(names)
}

/// Counts what a render writes and stops it past [`MAX_OUTPUT`].
struct Bounded {
    text: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + bytes.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fills `template` for `contact`, escaping values for `escape`.
pub fn try_render(template: &str, contact: &Contact, escape: Escape) -> Result<String, TemplateError> {
    if !has_tags(template) {
        return Ok(template.to_owned());
    }
    let source = legacy(template);
    let compiled = environment().template_from_named_str(escape.template_name(), &source).map_err(TemplateError::from_engine)?;
    let mut out = Bounded { text: Vec::with_capacity(template.len()), over: false };
    let rendered = compiled.render_captured_to(context(contact, escape), &mut out).map(|_| ());
    match rendered {
        Ok(()) => Ok(String::from_utf8(out.text).expect("the engine writes UTF-8")),
        Err(_) if out.over => Err(TemplateError::too_long()),
        Err(err) => Err(TemplateError::from_engine(err)),
    }
}

/// Fills every tag in `template`, as [`try_render`]. A template that cannot
/// be filled is kept as written: the validator reports it (publishing is
/// blocked) and the engine fails a step whose template cannot be filled
/// ([`step_error`]) before it is carried out, so this text is never sent.
pub fn render(template: &str, contact: &Contact, escape: Escape) -> String {
    try_render(template, contact, escape).unwrap_or_else(|_| template.to_owned())
}

/// Whether the template can be read (compiled), without filling it.
pub fn check(template: &str) -> Result<(), TemplateError> {
    if !has_tags(template) {
        return Ok(());
    }
    let source = legacy(template);
    environment().template_from_str(&source).map(|_| ()).map_err(TemplateError::from_engine)
}

/// The names a template reads from the contact (custom fields and the
/// built-in names), sorted; names it sets itself (`{% for x in … %}`,
/// `{% set %}`) and the engine's functions are left out. Empty for a
/// template that cannot be read.
pub fn tags(template: &str) -> Vec<String> {
    if !has_tags(template) {
        return Vec::new();
    }
    let source = legacy(template);
    let Ok(compiled) = environment().template_from_str(&source) else { return Vec::new() };
    let names: BTreeSet<String> = compiled.undeclared_variables(false).into_iter().filter(|n| !GLOBALS.contains(&n.as_str())).collect();
    names.into_iter().collect()
}

/// One templated setting of a step: where it is (`subject`,
/// `headers.X-Name`, `changes[0].value`), its text and its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templated {
    pub setting: String,
    pub text: String,
    pub escape: Escape,
}

/// Every setting of `step` the engine fills from the contact, with the
/// context it is filled for: what the validator checks and what the
/// engine tries before carrying a step out.
pub fn step_templates(step: &Step) -> Vec<Templated> {
    let mut found = Vec::new();
    let settings = &step.settings;
    let mut text = |name: &str, escape: Escape| {
        if let Some(Value::String(text)) = settings.get(name) {
            found.push(Templated { setting: name.to_owned(), text: text.clone(), escape });
        }
    };
    match step.kind {
        StepKind::SendEmail => {
            text("subject", Escape::None);
            text("body", Escape::Html);
            text("cc", Escape::None);
            text("bcc", Escape::None);
        }
        StepKind::SendSms | StepKind::NotifySms => text("text", Escape::None),
        StepKind::NotifyEmail => {
            text("subject", Escape::None);
            text("text", Escape::None);
        }
        StepKind::Call => text("script", Escape::None),
        StepKind::Task => text("subject", Escape::None),
        StepKind::CreateActivity => text("title", Escape::None),
        StepKind::DataAppend => text("url", Escape::Url),
        StepKind::Webhook => text("url", Escape::Url),
        StepKind::S3Upload => text("key", Escape::PathSegment),
        StepKind::FtpUpload => text("path", Escape::PathSegment),
        _ => {}
    }
    if step.kind == StepKind::Webhook {
        for name in ["headers", "body"] {
            if let Some(value) = settings.get(name) {
                strings(name, value, &mut found);
            }
        }
    }
    for name in ["changes", "updates"] {
        if name == "changes" && step.kind != StepKind::UpdateContact {
            continue;
        }
        if let Some(Value::Array(changes)) = settings.get(name) {
            for (i, change) in changes.iter().enumerate() {
                if let Some(value) = change.get("value") {
                    strings(&format!("{name}[{i}].value"), value, &mut found);
                }
            }
        }
    }
    found
}

/// The strings of a JSON value, each a plain-text template.
fn strings(path: &str, value: &Value, found: &mut Vec<Templated>) {
    match value {
        Value::String(text) => found.push(Templated { setting: path.to_owned(), text: text.clone(), escape: Escape::None }),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| strings(&format!("{path}[{i}]"), v, found)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(&format!("{path}.{k}"), v, found)),
        _ => {}
    }
}

/// Why `step` cannot be carried out for `contact`: the first of its
/// templates that cannot be filled, in a sentence. The engine fails the
/// participant with it rather than send a half-filled message.
pub fn step_error(step: &Step, contact: &Contact) -> Option<String> {
    step_templates(step).into_iter().find_map(|t| {
        try_render(&t.text, contact, t.escape).err().map(|err| format!("the {} of “{}” cannot be filled: {err}", t.setting, step.id))
    })
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

    fn with(fields: serde_json::Value) -> Contact {
        serde_json::from_value(json!({"email": "ada@example.com", "timezone": "Europe/Paris", "lists": ["VIP"], "fields": fields})).unwrap()
    }

    /// The HTML context, read back by an HTML-ish split on tags: a value
    /// never adds an element or an attribute, however it is printed.
    #[test]
    fn html_bodies_escape_values_in_loops_and_conditionals_too() {
        let c = with(json!({"first_name": "<b onclick=x>\"Bo\"</b>", "interests": ["<i>", "a&b"], "vip": true}));
        let out = render(
            "<p>{% if vip %}Dear {{ first_name }}{% else %}Hi{% endif %}</p><ul>{% for i in interests %}<li title=\"{{ i }}\">{{ i }}</li>{% endfor %}</ul>",
            &c,
            Escape::Html,
        );
        assert_eq!(
            out,
            "<p>Dear &lt;b onclick=x&gt;&quot;Bo&quot;&lt;/b&gt;</p><ul><li title=\"&lt;i&gt;\">&lt;i&gt;</li><li title=\"a&amp;b\">a&amp;b</li></ul>"
        );
        let tags: Vec<&str> = out.split('<').skip(1).map(|t| t.split(['>', ' ']).next().unwrap()).collect();
        assert_eq!(tags, ["p", "/p", "ul", "li", "/li", "li", "/li", "/ul"], "only the template's own elements");
        assert_eq!(render("{{ first_name | upper }}", &c, Escape::Html), "&lt;B ONCLICK=X&gt;&quot;BO&quot;&lt;/B&gt;", "filtered values too");
        assert_eq!(render("{{ interests }}", &c, Escape::Html), "&lt;i&gt;, a&amp;b", "a list prints as before: joined");
    }

    /// The security audit's case, through every way a template can print:
    /// a value in a webhook URL's query adds no parameter and no fragment.
    #[test]
    fn url_values_add_no_parameter_or_fragment_however_printed() {
        let c = with(json!({"first_name": "bob&admin=true#", "tags": ["a&b", "c#d"]}));
        for template in [
            "https://h.test/in?name={{ first_name }}&x=1",
            "https://h.test/in?name={{ first_name | trim }}&x=1",
            "https://h.test/in?name={% if first_name %}{{ first_name }}{% endif %}&x=1",
            "https://h.test/in?name={{ first_name | safe }}&x=1",
            "https://h.test/in?name={{ first_name | e }}&x=1",
            "https://h.test/in?name={{ nickname | default(first_name) }}&x=1",
            "https://h.test/in?name={{ nickname | default: \"bob&admin=true#\" }}&x=1",
        ] {
            let url = render(template, &c, Escape::Url);
            assert!(!url.contains('#'), "{template} → {url}");
            let query = url.split_once('?').unwrap().1;
            let pairs: Vec<(&str, String)> = query.split('&').map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k, decode(v))).collect();
            // `e` and `safe` change how the value reads (escaped twice),
            // never the URL's shape
            let name = &pairs[0].1;
            assert!(["bob&admin=true#", "bob&amp;admin=true#", "bob%26admin%3Dtrue%23"].contains(&name.as_str()), "{template} → {url}");
            assert_eq!((pairs.len(), pairs[0].0, pairs[1].clone()), (2, "name", ("x", "1".to_owned())), "{template} → {url}");
        }
        let each = render("https://h.test/t?{% for t in tags %}tag={{ t }}&{% endfor %}end=1", &c, Escape::Url);
        assert_eq!(each, "https://h.test/t?tag=a%26b&tag=c%23d&end=1", "a loop's items one by one");
        assert_eq!(render("https://h.test/?u={{ unsubscribe_url }}", &c, Escape::Url), "https://h.test/?u=");
    }

    #[test]
    fn path_segments_and_plain_text_contexts() {
        let c = with(json!({"first_name": "../../etc/passwd", "tags": ["a/b", ".."]}));
        assert_eq!(render("in/{% for t in tags %}{{ t }}/{% endfor %}x", &c, Escape::PathSegment), "in/a%2Fb/%2E%2E/x");
        assert_eq!(render("in/{{ first_name | safe }}.json", &c, Escape::PathSegment), "in/..%2F..%2Fetc%2Fpasswd.json");
        assert_eq!(render("Hi {{ first_name }} <{{ email }}>", &c, Escape::None), "Hi ../../etc/passwd <ada@example.com>", "plain text as is");
    }

    /// JSON bodies: a value built by a loop or a conditional is still one
    /// string of the body, which serde escapes when it is sent.
    #[test]
    fn json_body_strings_stay_strings_whatever_the_template_does() {
        let c = with(json!({"last_name": "\"},\"admin\":true,\"x\":\"", "tags": ["\"a\"", "b\\"]}));
        let body = serde_json::to_string(&json!({
            "note": render("{{ last_name }}", &c, Escape::None),
            "tags": render("{% for t in tags %}{{ t }};{% endfor %}", &c, Escape::None),
        }))
        .unwrap();
        let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(sent, json!({"note": "\"},\"admin\":true,\"x\":\"", "tags": "\"a\";b\\;"}));
        assert_eq!(sent.as_object().unwrap().len(), 2, "no admin key");
    }

    #[test]
    fn conditionals_loops_lists_and_the_default_filter() {
        let c = with(json!({"first_name": "", "interests": ["sailing", "chess"], "score": 42, "plan": {"name": "Pro"}}));
        assert_eq!(render("{% for i in interests %}{{ loop.index }}. {{ i }}\n{% endfor %}", &c, Escape::None), "1. sailing\n2. chess\n");
        assert_eq!(render("{% if 'VIP' in lists %}VIP{% else %}regular{% endif %}", &c, Escape::None), "VIP");
        assert_eq!(render("{% if score > 40 %}high{% endif %} {{ plan.name }} {{ interests | length }}", &c, Escape::None), "high Pro 2");
        assert_eq!(render("{{ interests | join(' + ') }}", &c, Escape::None), "sailing + chess");
        // default: for a missing field and for an empty one, in both spellings
        assert_eq!(render("Hi {{ first_name | default(\"there\") }}", &c, Escape::None), "Hi there");
        assert_eq!(render("Hi {{ first_name | default: \"there\" }}", &c, Escape::None), "Hi there");
        assert_eq!(render("Hi {{ nick | default: friend }}", &c, Escape::None), "Hi friend");
        assert_eq!(render("Hi {{ nick | d('you') | upper }}", &c, Escape::None), "Hi YOU");
        assert_eq!(render("{{ missing.deeper.still }}|{% for x in missing %}x{% endfor %}|", &c, Escape::None), "||", "missing is empty");
        assert_eq!(render("{{ unsubscribe_url }}\n", &c, Escape::None), "{{ unsubscribe_url }}\n", "text kept to its last line break");
        assert_eq!(tags("{% for i in interests %}{{ i }}{{ first_name }}{% endfor %}{{ range(3) | length }}"), ["first_name", "interests"]);
    }

    #[test]
    fn the_date_filter_reads_timestamps_in_the_contacts_zone_and_dates_as_written() {
        let c = with(json!({"renewal": "2026-12-07T23:30:00Z", "birthday": "1990-05-17", "signed": 1764547200}));
        assert_eq!(render("{{ renewal | date }}", &c, Escape::None), "2026-12-08", "in Europe/Paris it is the 8th");
        assert_eq!(render("{{ renewal | date('%d %B %Y %H:%M') }}", &c, Escape::None), "08 December 2026 00:30");
        assert_eq!(render("{{ birthday | date('%e %b') }}", &c, Escape::None), "17 May");
        assert_eq!(render("{{ signed | date('%Y-%m-%d %H:%M') }}", &c, Escape::None), "2025-12-01 01:00");
        assert_eq!(render("{{ nothing | date | default('soon') }}", &c, Escape::None), "soon");
        assert_eq!(render("{{ 'next week' | date }}", &c, Escape::None), "next week", "not a date: kept");
        let err = try_render("{{ birthday | date('%Q') }}", &c, Escape::None).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Fill, "{err}");
    }

    #[test]
    fn limits_fuel_and_output_size() {
        let c = with(json!({}));
        let err = try_render("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}", &c, Escape::None).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit, "{err}");
        let err = try_render("{{ 'x' * 2000000 }}", &c, Escape::None).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit, "{err}");
        assert_eq!(try_render("{{ 'x' * 1000 }}", &c, Escape::None).unwrap().len(), 1000);
        // no loading other templates, no macros: those parts are not compiled in
        assert!(try_render("{% include 'x' %}", &c, Escape::None).is_err());
        assert!(try_render("{% macro m() %}x{% endmacro %}", &c, Escape::None).is_err());
        let err = try_render("{{ a | nosuchfilter }}", &c, Escape::None).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Unknown, "{err}");
        let err = try_render("Hi {% if %}", &c, Escape::None).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Syntax);
        assert!(err.message.contains("line 1"), "{err}");
    }

    #[test]
    fn css_in_an_html_body_is_text_and_comments_are_double_hashed() {
        let c = named("<Ada>");
        let body = "<style>a{#x} .b{#id .c{color:red}} p{margin:0}</style>\n<p>Hi {{ first_name }}{## a note ##}</p>{#x}";
        let filled = try_render(body, &c, Escape::Html).unwrap();
        assert_eq!(filled, "<style>a{#x} .b{#id .c{color:red}} p{margin:0}</style>\n<p>Hi &lt;Ada&gt;</p>{#x}");
        // a lone `{#` is no tag: kept as written, even with a `#}` after it
        assert_eq!(try_render("a{#x} b #} c", &c, Escape::Html).unwrap(), "a{#x} b #} c");
        assert!(check("<style>{#id .c}</style>").is_ok());
        assert!(tags("<style>{#id .c}</style>{{ plan }}") == ["plan"]);
        // an unclosed comment is still an error; a delimiter is printed as a string
        assert_eq!(check("{## open").unwrap_err().kind, TemplateErrorKind::Syntax);
        assert_eq!(try_render("{{ \"{{\" }} {{ \"{##\" }}", &c, Escape::None).unwrap(), "{{ {##");
    }

    /// Strict undefined as the validator's warning: a tag naming a field
    /// no contact has; a template that cannot be read is an error.
    mod validation {
        use serde_json::{json, Value};

        use crate::core::validate::{validate_value, Code, Context, Level};

        fn flow(step: Value) -> Value {
            json!({"format": "waymark.flow/v1", "name": "T", "steps": [{"id": "s", "kind": "start"}, step],
                "edges": [{"from": "s", "port": "next", "to": "x"}]})
        }

        fn known(fields: &[&str]) -> Context {
            Context { fields: Some(fields.iter().map(|f| f.to_string()).collect()), ..Context::default() }
        }

        #[test]
        fn a_tag_naming_a_field_no_contact_has_is_a_warning() {
            let doc = flow(json!({"id": "x", "kind": "send_email", "settings": {"subject": "Hi {{ frist_name | default: 'you' }}",
                "body": "{% for i in interests %}{{ i }} {{ loop.index }}{% endfor %} {{ email }} {{ unsubscribe_url }} {{ first_name }}"}}));
            let findings = validate_value(&doc, &known(&["first_name", "interests"]));
            let unknown: Vec<_> = findings.warnings.iter().filter(|f| f.code == Code::UnknownField).collect();
            assert_eq!(unknown.len(), 1, "{findings:?}");
            assert_eq!((unknown[0].step.as_deref(), unknown[0].setting.as_deref()), (Some("x"), Some("subject")));
            assert!(unknown[0].message.contains("{{ frist_name }}"), "{}", unknown[0].message);
            assert_eq!(Code::UnknownField.level(), Level::Warning);
            assert!(!findings.blocks_publish());
            // without knowing the contacts (the CLI, the browser), no check
            assert!(validate_value(&doc, &Context::default()).warnings.iter().all(|f| f.code != Code::UnknownField));
            // webhook URLs, headers and bodies, and record updates are templates too
            let hook = flow(json!({"id": "x", "kind": "webhook", "settings": {"url": "https://h.test/?a={{ aa }}",
                "headers": {"X": "{{ bb }}"}, "body": {"list": ["{{ cc }}"]}, "updates": [{"field": "n", "op": "set", "value": "{{ dd }}"}]}}));
            let settings: Vec<_> = validate_value(&hook, &known(&["first_name"]))
                .warnings
                .into_iter()
                .filter(|f| f.code == Code::UnknownField)
                .map(|f| f.setting.unwrap())
                .collect();
            assert_eq!(settings, ["url", "headers.X", "body.list[0]", "updates[0].value"]);
        }

        #[test]
        fn a_template_that_cannot_be_read_or_names_no_filter_is_an_error() {
            for (text, why) in [("Hi {{ first_name ", "syntax"), ("{% if x %}open", "syntax"), ("{{ x | nosuch }}", "unknown filter")] {
                let doc = flow(json!({"id": "x", "kind": "send_sms", "settings": {"text": text}}));
                let findings = validate_value(&doc, &Context::default());
                let errors: Vec<_> = findings.errors.iter().filter(|f| f.code == Code::InvalidSetting).collect();
                assert_eq!(errors.len(), 1, "{text}: {findings:?}");
                assert_eq!(errors[0].setting.as_deref(), Some("text"));
                assert!(errors[0].message.contains(why), "{}", errors[0].message);
            }
        }
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
        fn a_template_that_cannot_be_filled_fails_the_step_before_anything_is_sent() {
            let flow = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "T",
                "steps": [{"id": "s", "kind": "start"}, {"id": "x", "kind": "send_sms", "settings": {"text": "{{ 'x' * 2000000 }}"}}],
                "edges": [{"from": "s", "port": "next", "to": "x"}]}))
            .unwrap();
            let contact: Contact = serde_json::from_value(json!({"mobile": "+15550100"})).unwrap();
            let out = advance(&flow, &Participant::new(1), &contact, Event::Enroll, "2026-11-23T09:00:00Z".parse().unwrap());
            assert!(out.commands.is_empty(), "nothing sent: {:?}", out.commands);
            let reason = out.participant.reason.clone().unwrap_or_default();
            assert_eq!(out.participant.status, crate::core::engine::Status::Failed, "{reason}");
            assert!(reason.contains("the text of “x” cannot be filled"), "{reason}");
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
