//! Telling people from machines at the pixel and the redirect. Opens by
//! mail-privacy proxies and clicks by link scanners are recorded with
//! `machine: true` (FLOW_FORMAT "Engagement"): they count on the message's
//! record, and reach a flow only where a matcher or criterion says
//! `"include_machine": true`.
//!
//! The rule (a hit is a machine's when any line holds):
//!
//! 1. It is a `HEAD` request: clients fetch images and follow links with
//!    `GET`; scanners probe with `HEAD`.
//! 2. Its user agent is empty, exactly `Mozilla/5.0` (Apple Mail Privacy
//!    Protection's proxy, which loads every image when the message arrives),
//!    or names a known image proxy or scanner: `GoogleImageProxy` (Gmail),
//!    `YahooMailProxy` (Yahoo and AOL), `ms-office` / `Microsoft Office`
//!    and `BingPreview` (Outlook and Microsoft's link checks),
//!    `Barracuda`, `Mimecast`, `Proofpoint`, `Symantec`, `Forcepoint`,
//!    `Trend Micro`, link previewers (`facebookexternalhit`, `Slackbot`,
//!    `WhatsApp`, `Discordbot`), and anything calling itself a bot,
//!    crawler, spider, preview or scanner, or an HTTP library (`curl`,
//!    `Wget`, `python-requests`, `Go-http-client`, `okhttp`, `Java/`,
//!    `HeadlessChrome`).
//! 3. A click came within the scanner window of the message being sent
//!    (integration setting `tracking.scanner_secs`, 10 s by default):
//!    gateways scan links as the message passes; people have not read it yet.
//! 4. A click on a link came within 3 s of a click on another link of the
//!    same message: people do not open two links of one email that fast;
//!    scanners click every link at once. (The first click of such a burst
//!    is caught by rule 3 when the scan is at delivery.)

use jiff::SignedDuration;

/// Rule 4's window.
pub const BURST: SignedDuration = SignedDuration::from_secs(3);

/// Substrings (lower case) of user agents that are not a person's client.
const AGENTS: &[&str] = &[
    "googleimageproxy",
    "ggpht.com",
    "yahoomailproxy",
    "ms-office",
    "microsoft office",
    "bingpreview",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "forcepoint",
    "trend micro",
    "trendmicro",
    "facebookexternalhit",
    "slackbot",
    "whatsapp",
    "discordbot",
    "bot/",
    "bot;",
    "bot-",
    "bot)",
    "crawler",
    "spider",
    "preview",
    "scanner",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "okhttp",
    "java/",
    "headlesschrome",
];

/// Why a hit is a machine's (rules 1 and 2), if it is.
pub fn by_request(head: bool, user_agent: Option<&str>) -> Option<&'static str> {
    if head {
        return Some("HEAD request");
    }
    let agent = user_agent.map(str::trim).unwrap_or_default();
    if agent.is_empty() {
        return Some("no user agent");
    }
    if agent.eq_ignore_ascii_case("Mozilla/5.0") {
        return Some("Apple Mail Privacy Protection");
    }
    let lower = agent.to_ascii_lowercase();
    AGENTS.iter().any(|a| lower.contains(a)).then_some("a known proxy or scanner")
}

/// Why a click is a machine's, if it is: rules 1 and 2, then 3 (`since_sent`:
/// how long after the message was sent; `window` the scanner window) and 4
/// (`since_other_link`: how long since the latest click on another link).
pub fn click(
    head: bool,
    user_agent: Option<&str>,
    since_sent: Option<SignedDuration>,
    window: SignedDuration,
    since_other_link: Option<SignedDuration>,
) -> Option<&'static str> {
    by_timing(by_request(head, user_agent), since_sent, window, since_other_link)
}

/// A click's verdict given rules 1 and 2's (`by_request`, judged where the
/// request came in), then rules 3 and 4 as in [`click`].
pub fn by_timing(
    by_request: Option<&'static str>,
    since_sent: Option<SignedDuration>,
    window: SignedDuration,
    since_other_link: Option<SignedDuration>,
) -> Option<&'static str> {
    by_request
        .or_else(|| since_sent.is_some_and(|d| d < window).then_some("clicked as it was delivered"))
        .or_else(|| since_other_link.is_some_and(|d| d < BURST).then_some("every link at once"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

    #[test]
    fn proxies_scanners_and_head_requests_are_machines() {
        for agent in [
            "Mozilla/5.0",
            " mozilla/5.0 ",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
            "Barracuda Sentinel (EE)",
            "facebookexternalhit/1.1",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Googlebot/2.1",
            "curl/8.5.0",
            "python-requests/2.32",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
        ] {
            assert!(by_request(false, Some(agent)).is_some(), "{agent}");
        }
        assert_eq!(by_request(false, None), Some("no user agent"));
        assert_eq!(by_request(true, Some(FIREFOX)), Some("HEAD request"));
        for person in [FIREFOX, IPHONE, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Thunderbird/128.0", "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"] {
            assert_eq!(by_request(false, Some(person)), None, "{person}");
        }
    }

    #[test]
    fn clicks_at_delivery_or_on_every_link_at_once_are_scanners() {
        let s = SignedDuration::from_secs;
        let window = s(10);
        assert_eq!(click(false, Some(FIREFOX), Some(s(3)), window, None), Some("clicked as it was delivered"));
        assert_eq!(click(false, Some(FIREFOX), Some(s(600)), window, None), None);
        assert_eq!(click(false, Some(FIREFOX), Some(s(600)), window, Some(SignedDuration::from_millis(400))), Some("every link at once"));
        assert_eq!(click(false, Some(FIREFOX), Some(s(600)), window, Some(s(45))), None, "two links a while apart are a person's");
        assert_eq!(click(false, Some(FIREFOX), Some(s(3)), SignedDuration::ZERO, None), None, "no window, no rule 3");
        assert_eq!(click(true, Some(FIREFOX), Some(s(600)), window, None), Some("HEAD request"));
        assert_eq!(click(false, Some("Mozilla/5.0"), None, window, None), Some("Apple Mail Privacy Protection"));
    }
}
