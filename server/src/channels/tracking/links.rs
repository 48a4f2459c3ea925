//! Rewriting an email's HTML for tracking: each `<a href>` to an http(s)
//! address goes through the click redirect instead, and an open pixel goes
//! before `</body>`. Pure text work: the input is the engine's rendered
//! body (merge values already escaped), the output differs from it only in
//! those `href` values and the one `<img>` added, so what was valid HTML
//! stays valid.
//!
//! Left as written: `mailto:`, `tel:`, `#anchors` and every other scheme;
//! links marked `data-waymark-notrack` (or `notrack`); links still holding a
//! merge tag (`{{ unsubscribe_url }}`, filled later) or pointing at our own
//! unsubscribe and tracking pages; addresses longer than
//! [`limits::TRACKED_URL`]; links after the [`limits::TRACKED_LINKS`]th;
//! and anything inside comments (Outlook's conditional blocks), `<script>`,
//! `<style>`, `<title>` and `<textarea>`.

use app::core::limits;

use crate::channels::email::decode_entities;

/// Attributes that keep a link untracked.
pub const NOTRACK: &[&str] = &["data-waymark-notrack", "notrack"];

/// The rewritten HTML and the links now behind the redirect, by position.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    pub html: String,
    pub links: Vec<String>,
}

/// Rewrites the trackable links of `html`; `tracked(n)` is the redirect
/// address of the `n`-th one. `own` is our public base URL (links into it
/// are not tracked).
pub fn rewrite(html: &str, own: &str, mut tracked: impl FnMut(u16) -> String) -> Rewritten {
    let mut out = String::with_capacity(html.len() + 256);
    let mut links = Vec::new();
    let (mut copied, mut i) = (0, 0);
    while let Some(rel) = html[i..].find('<') {
        let at = i + rel;
        let rest = &html[at..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            i = comment.find("-->").map_or(html.len(), |end| at + 4 + end + 3);
            continue;
        }
        let name_len = rest[1..].bytes().take_while(u8::is_ascii_alphanumeric).count();
        let name = &rest[1..1 + name_len];
        let ends_name = rest[1 + name_len..].bytes().next().is_none_or(|b| b.is_ascii_whitespace() || b == b'>' || b == b'/');
        if !ends_name || name.is_empty() {
            i = at + 1;
            continue;
        }
        if ["script", "style", "title", "textarea"].iter().any(|raw| name.eq_ignore_ascii_case(raw)) {
            // Raw text: nothing inside is a tag.
            let close = format!("</{}", name.to_ascii_lowercase());
            i = html[at + 1..].to_ascii_lowercase().find(&close).map_or(html.len(), |end| at + 1 + end + close.len());
            continue;
        }
        let Some(tag) = start_tag(html, at + 1 + name_len) else { break };
        if name.eq_ignore_ascii_case("a") && links.len() < limits::TRACKED_LINKS {
            let href = tag.attributes.iter().find(|a| a.name.eq_ignore_ascii_case("href"));
            let marked = tag.attributes.iter().any(|a| NOTRACK.iter().any(|n| a.name.eq_ignore_ascii_case(n)));
            if let (Some(href), false) = (href, marked) {
                if let (Some(value), Some(url)) = (href.value.clone(), href.value.as_ref().and_then(|v| trackable(&html[v.clone()], own))) {
                    let position = links.len() as u16;
                    out.push_str(&html[copied..value.start]);
                    out.push('"');
                    out.push_str(&app::core::merge::escape_html(&tracked(position)));
                    out.push('"');
                    copied = value.end;
                    links.push(url);
                }
            }
        }
        i = tag.end;
    }
    out.push_str(&html[copied..]);
    Rewritten { html: out, links }
}

/// The open pixel, before the last `</body>` (or at the end without one).
pub fn add_pixel(html: &str, src: &str) -> String {
    let img = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\">",
        app::core::merge::escape_html(src)
    );
    let at = html.to_ascii_lowercase().rfind("</body").unwrap_or(html.len());
    let mut out = String::with_capacity(html.len() + img.len());
    out.push_str(&html[..at]);
    out.push_str(&img);
    out.push_str(&html[at..]);
    out
}

/// The address a link's raw `href` value (quotes included) leads to, when
/// it is one to track; normalized as a URL, so it is a valid `Location`.
pub fn trackable(raw: &str, own: &str) -> Option<String> {
    let unquoted = raw.strip_prefix(['"', '\'']).and_then(|r| r.strip_suffix(['"', '\''])).unwrap_or(raw);
    let decoded = decode_entities(unquoted);
    let url = decoded.trim_matches(|c: char| c.is_ascii_whitespace());
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.contains("{{") {
        return None;
    }
    if limits::check("url", url, limits::TRACKED_URL).is_err() {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let own = own.trim_end_matches('/');
    if !own.is_empty() && ["/u/", "/t/"].iter().any(|path| parsed.as_str().starts_with(&format!("{own}{path}"))) {
        return None;
    }
    let normalized = parsed.to_string();
    (normalized.len() <= limits::TRACKED_URL).then_some(normalized)
}

/// One attribute of a start tag: its name, and where its value sits
/// (quotes included), if it has one.
struct Attribute<'a> {
    name: &'a str,
    value: Option<std::ops::Range<usize>>,
}

struct StartTag<'a> {
    attributes: Vec<Attribute<'a>>,
    /// Just past its `>`.
    end: usize,
}

/// Reads a start tag's attributes from `from` (just past its name) to its
/// `>`, as HTML parsers do. `None` when the tag never closes.
fn start_tag(html: &str, from: usize) -> Option<StartTag<'_>> {
    let bytes = html.as_bytes();
    let mut attributes = Vec::new();
    let mut p = from;
    let space = |b: u8| b.is_ascii_whitespace();
    loop {
        while p < bytes.len() && (space(bytes[p]) || bytes[p] == b'/') {
            p += 1;
        }
        if *bytes.get(p)? == b'>' {
            return Some(StartTag { attributes, end: p + 1 });
        }
        let start = p;
        // The first character may be `=` (a parse error browsers keep as a name).
        p += 1;
        while p < bytes.len() && !space(bytes[p]) && !matches!(bytes[p], b'/' | b'>' | b'=') {
            p += 1;
        }
        let name = &html[start..p];
        let mut q = p;
        while q < bytes.len() && space(bytes[q]) {
            q += 1;
        }
        if bytes.get(q) != Some(&b'=') {
            attributes.push(Attribute { name, value: None });
            continue;
        }
        q += 1;
        while q < bytes.len() && space(bytes[q]) {
            q += 1;
        }
        let value_start = q;
        match bytes.get(q)? {
            quote @ (b'"' | b'\'') => {
                let close = html[q + 1..].find(*quote as char)?;
                p = q + 1 + close + 1;
            }
            b'>' => {
                attributes.push(Attribute { name, value: None });
                p = q;
                continue;
            }
            _ => {
                p = q;
                while p < bytes.len() && !space(bytes[p]) && bytes[p] != b'>' {
                    p += 1;
                }
            }
        }
        attributes.push(Attribute { name, value: Some(value_start..p) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://wm.test";

    fn redirect(n: u16) -> String {
        format!("https://wm.test/t/c/T{n}")
    }

    /// Every element with its attributes, as a browser's parser builds the
    /// tree (html5ever), hrefs and srcs left out: what must not change.
    fn shape(html: &str) -> Vec<String> {
        let doc = scraper::Html::parse_document(html);
        doc.root_element()
            .descendants()
            .filter_map(|n| n.value().as_element().map(|e| (n, e)))
            .map(|(n, e)| {
                let attrs: Vec<String> = e.attrs().filter(|(k, _)| *k != "href").map(|(k, v)| format!("{k}={v}")).collect();
                let text: String = n.children().filter_map(|c| c.value().as_text().map(|t| t.to_string())).collect();
                format!("{}[{}]{}", e.name(), attrs.join(","), text)
            })
            .collect()
    }

    fn hrefs(html: &str) -> Vec<String> {
        let doc = scraper::Html::parse_document(html);
        doc.select(&scraper::Selector::parse("a").unwrap()).map(|a| a.value().attr("href").unwrap_or("(none)").to_owned()).collect()
    }

    #[test]
    fn http_links_go_through_the_redirect_and_nothing_else_changes() {
        let html = "<html><head><title>a <a href=x></title><style>a[href=\"https://no.test\"]{}</style></head><body>\
            <p>Read <A HREF=\"https://x.test/a?b=1&amp;c=2\" class=\"btn\">the guide</A>, \
            <a class='q' href='http://x.test/plain'>plain</a>, <a href=https://x.test/unquoted title=t>bare</a>\
            <a href=\"mailto:ada@x.test\">mail</a> <a href=\"tel:+15550100\">call</a> <a href=\"#top\">top</a>\
            <a href=\"  https://x.test/spaced  \">spaced</a> <a data-waymark-notrack href=\"https://x.test/private\">no</a>\
            <a notrack=\"1\" href=\"https://x.test/p2\">no</a> <a href=\"{{ unsubscribe_url }}\">unsubscribe</a>\
            <a href=\"https://wm.test/u/abc\">ours</a> <a href=\"javascript:alert(1)\">js</a> <a name=\"anchor\">anchor</a>\
            <!-- <a href=\"https://x.test/comment\">c</a> --><script>var a = '<a href=\"https://x.test/s\">';</script></p>\
            </body></html>";
        let out = rewrite(html, OWN, redirect);
        assert_eq!(out.links, ["https://x.test/a?b=1&c=2", "http://x.test/plain", "https://x.test/unquoted", "https://x.test/spaced"]);
        assert_eq!(
            hrefs(&out.html),
            [
                "https://wm.test/t/c/T0", "https://wm.test/t/c/T1", "https://wm.test/t/c/T2", "mailto:ada@x.test", "tel:+15550100", "#top",
                "https://wm.test/t/c/T3", "https://x.test/private", "https://x.test/p2", "{{ unsubscribe_url }}", "https://wm.test/u/abc",
                "javascript:alert(1)", "(none)"
            ]
        );
        assert_eq!(shape(&out.html), shape(html), "the same tree, attributes and text");
        assert!(out.html.contains("<!-- <a href=\"https://x.test/comment\">c</a> -->") && out.html.contains("'<a href=\"https://x.test/s\">'"));
    }

    #[test]
    fn the_pixel_goes_before_the_body_ends_and_keeps_the_tree() {
        let html = "<html><body><p>Hi</p></BODY></html>";
        let out = add_pixel(html, "https://wm.test/t/o/T");
        assert_eq!(out, "<html><body><p>Hi</p><img src=\"https://wm.test/t/o/T\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\"></BODY></html>");
        assert_eq!(add_pixel("<p>x</p>", "u"), "<p>x</p><img src=\"u\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\">");
        let doc = scraper::Html::parse_document(&out);
        let img = doc.select(&scraper::Selector::parse("body > img").unwrap()).next().expect("the pixel is in the body");
        assert_eq!(img.value().attr("src"), Some("https://wm.test/t/o/T"));
    }

    #[test]
    fn broken_markup_and_long_or_many_links_are_left_as_they_are() {
        for html in ["<a href=\"https://x.test/never-closed", "<a href='https://x.test/a>x", "<", "<<a", "text < more", "<a"] {
            let out = rewrite(html, OWN, redirect);
            assert_eq!((out.html.as_str(), out.links.len()), (html, 0), "{html}");
        }
        let long = format!("<a href=\"https://x.test/{}\">x</a>", "a".repeat(limits::TRACKED_URL));
        assert!(rewrite(&long, OWN, redirect).links.is_empty());
        let many: String = (0..limits::TRACKED_LINKS + 5).map(|n| format!("<a href=\"https://x.test/{n}\">{n}</a>")).collect();
        let out = rewrite(&many, OWN, redirect);
        assert_eq!(out.links.len(), limits::TRACKED_LINKS);
        assert!(out.html.ends_with(&format!("<a href=\"https://x.test/{}\">{}</a>", limits::TRACKED_LINKS + 4, limits::TRACKED_LINKS + 4)));
    }

    #[test]
    fn only_absolute_http_addresses_are_trackable() {
        assert_eq!(trackable("\"https://X.test\"", OWN).as_deref(), Some("https://x.test/"));
        assert_eq!(trackable("'https://x.test/ü?q=a b'", OWN).as_deref(), Some("https://x.test/%C3%BC?q=a%20b"));
        for raw in ["\"/relative\"", "\"//x.test/a\"", "\"ftp://x.test\"", "\"https://\"", "\"HTTPS://wm.test/t/o/x\"", "\"https://x.test/{{ name }}\""] {
            assert_eq!(trackable(raw, OWN), None, "{raw}");
        }
    }
}
