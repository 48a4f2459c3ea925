//! The preference page behind every unsubscribe link: a small page of its
//! own (no app shell, no script, no session), rendered on the server with
//! the framework's escaping, under a policy that lets only our stylesheet
//! load and the forms post back here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;

/// What the page shows.
pub struct Preferences {
    /// The token, as the forms post back to `/u/{token}`.
    pub token: String,
    /// The contact's address, partly hidden (`ad•••@example.com`).
    pub address: Option<String>,
    /// Who sends (the From name, else its domain).
    pub sender: String,
    /// email, sms, call: whether each is on.
    pub channels: Vec<(&'static str, bool)>,
    /// Reached through a message (an unsubscribe link): offer its one button.
    pub through_message: bool,
    /// What the last post did, for the notice.
    pub saved: Option<String>,
}

fn label(channel: &str) -> &'static str {
    match channel {
        "email" => "Email",
        "sms" => "Text messages (SMS)",
        _ => "Phone calls",
    }
}

/// `ada@example.com` as `ad•••@example.com`: enough to recognise, not to harvest.
pub fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}•••@{domain}", local.chars().take(2).collect::<String>()),
        None => "•••".into(),
    }
}

pub fn render(p: Preferences) -> Response {
    let action = format!("/u/{}", p.token);
    let email_on = p.channels.iter().any(|(c, on)| *c == "email" && *on);
    let notice = p.saved.map(|text| view! { <p class="notice ok" role="status">{text}</p> });
    let one_button = (p.through_message && email_on).then(|| {
        view! {
            <form method="post" action=action.clone() class="unsubscribe">
                <p>"Stop receiving these emails?"</p>
                <button type="submit" class="primary" name="action" value="unsubscribe">"Unsubscribe"</button>
            </form>
        }
    });
    let boxes = p
        .channels
        .iter()
        .map(|(channel, on)| {
            view! {
                <label class="check">
                    <input type="checkbox" name=*channel value="on" checked=*on/>
                    " " {label(channel)}
                </label>
            }
        })
        .collect_view();
    let title = format!("Your preferences · {}", p.sender);
    let body = view! {
        <main class="page narrow preferences">
            <h1>"Your preferences"</h1>
            <p class="meta">{p.address.map(|a| format!("For {a} · ")).unwrap_or_default()} "from " {p.sender.clone()}</p>
            {notice}
            {one_button}
            <form method="post" action=action.clone() class="stack channels">
                <fieldset>
                    <legend>"What may we send you?"</legend>
                    {boxes}
                </fieldset>
                <input type="hidden" name="form" value="preferences"/>
                <button type="submit" name="action" value="save">"Save preferences"</button>
            </form>
            <form method="post" action=action class="everything">
                <button type="submit" name="action" value="all">"Unsubscribe from everything"</button>
            </form>
        </main>
    }
    .to_html();
    // A title is raw text to the parser: escaped as text, with no markers.
    let title = app::core::merge::escape_html(&title);
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title><link rel=\"stylesheet\" href=\"/pkg/waymark.css\"></head><body>{body}</body></html>"
    );
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_escapes_what_it_shows_and_reflects_consent() {
        let page = Preferences {
            token: "abc123".into(),
            address: Some(masked("<b>x</b>@evil.test")),
            sender: "Shop <script>alert(1)</script>".into(),
            channels: vec![("email", true), ("sms", false), ("call", true)],
            through_message: true,
            saved: Some("Saved.".into()),
        };
        let response = render(page);
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        let doc = scraper::Html::parse_document(&html);
        let select = |css: &str| doc.select(&scraper::Selector::parse(css).unwrap()).collect::<Vec<_>>();
        assert!(select("script").is_empty(), "no script element: {html}");
        assert_eq!(select("title")[0].text().collect::<String>(), "Your preferences · Shop <script>alert(1)</script>");
        assert!(select("p.meta")[0].text().collect::<String>().contains("<b•••@evil.test"));
        let checked: Vec<(String, bool)> = select("input[type=checkbox]")
            .iter()
            .map(|i| (i.value().attr("name").unwrap().to_owned(), i.value().attr("checked").is_some()))
            .collect();
        assert_eq!(checked, [("email".into(), true), ("sms".into(), false), ("call".into(), true)]);
        assert!(select("form").iter().all(|f| f.value().attr("action") == Some("/u/abc123") && f.value().attr("method") == Some("post")));
        assert_eq!(select("button[value=unsubscribe]").len(), 1);
        assert_eq!(masked("ada@example.com"), "ad•••@example.com");
    }
}
