//! Outbound HTTP to addresses a marketer typed (webhooks, data append,
//! attachments), behind an SSRF guard: every range in the IANA IPv4 and IPv6
//! special-purpose address registries that the registry does not mark
//! globally reachable (loopback, private, link-local, CGNAT, unique-local,
//! unspecified, documentation, benchmarking, Teredo, ...), and multicast,
//! reserved, broadcast and site-local addresses, are refused unless an admin
//! allowlisted them. An IPv6 address carrying an IPv4 one (IPv4-mapped,
//! IPv4-translated, NAT64, 6to4) is judged as that IPv4 address.
//!
//! The guard checks the address actually connected to: IP literals before
//! the request, names inside the client's DNS resolver (so no second lookup
//! can answer differently), and every redirect, which are followed here by
//! hand rather than by the client. Proxies from the environment are ignored,
//! since a proxy would do its own resolving.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode};
use url::{Host, Url};

use super::settings::Http;

/// The most redirects followed for one call.
const MAX_REDIRECTS: usize = 5;

/// One allowlist entry: a host name, or an address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowEntry {
    Host(String),
    Net(IpNet),
}

impl AllowEntry {
    pub fn parse(entry: &str) -> Option<AllowEntry> {
        let entry = entry.trim();
        if let Ok(net) = entry.parse::<IpNet>() {
            return Some(AllowEntry::Net(net));
        }
        if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Some(AllowEntry::Net(IpNet::from(ip)));
        }
        let valid = !entry.is_empty()
            && entry.len() <= 253
            && entry.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        valid.then(|| AllowEntry::Host(entry.to_ascii_lowercase()))
    }
}

/// Decides which hosts and addresses may be reached.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl Guard {
    pub fn new(allowlist: &[String]) -> Guard {
        let mut guard = Guard::default();
        for entry in allowlist.iter().filter_map(|e| AllowEntry::parse(e)) {
            match entry {
                AllowEntry::Host(host) => guard.hosts.push(host),
                AllowEntry::Net(net) => guard.nets.push(net),
            }
        }
        guard
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether `ip` may be connected to; the refusal says why not.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.nets.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match judge(ip) {
            None => Ok(()),
            Some(Refusal { what, carrier: None }) => Err(format!("{ip} is {what}, which outbound calls may not reach")),
            Some(Refusal { what, carrier: Some((range, v4)) }) => {
                Err(format!("{ip} is {range} carrying {v4}, {what}, which outbound calls may not reach"))
            }
        }
    }

    /// Checks a URL before it is requested: scheme, credentials, and an IP
    /// literal host. Names are checked when they are resolved.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("only http and https URLs may be called, not {}:", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with a user name or password in them (user@host) are refused".into());
        }
        match url.host() {
            None => Err("the URL has no host".into()),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
        }
    }
}

/// What the guard does with the addresses of one special-purpose range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Never reached from here.
    Refuse,
    /// The registry marks the range globally reachable.
    Allow,
    /// Judged as the IPv4 address in the last 32 bits.
    CarriesV4Low,
    /// Judged as the IPv4 address in bits 16..48 (6to4).
    CarriesV4At16,
}

use Rule::{Allow, CarriesV4At16, CarriesV4Low, Refuse};

/// The special-purpose ranges: prefix, the registry's name for it as the
/// refusal says it, and the rule. The most specific prefix that holds an
/// address decides; an address in none of them is public.
///
/// Follows the IANA IPv4 Special-Purpose Address Registry and the IANA IPv6
/// Special-Purpose Address Registry (iana-ipv4-special-registry,
/// iana-ipv6-special-registry; RFC 6890), checked 2026-12-07 against stored
/// copies of both (the IPv6 one last updated 2025-10-09, with 100:0:0:1::/64
/// from RFC 9780 its newest entry), plus the multicast ranges (RFC 5771,
/// RFC 4291 §2.7), IPv6 site-local (RFC 3879), IPv4-compatible (RFC 4291
/// §2.5.5.1) and IPv4-translated (RFC 2765 §2.1) addresses, which those
/// registries do not list. A range is allowed only where the registry says
/// "Globally Reachable: True"; "False", "N/A" and blank are refused.
const SPECIAL: &[(&str, &str, Rule)] = &[
    // IPv4 Special-Purpose Address Registry
    ("0.0.0.0/8", "a \"this network\" address", Refuse),
    ("0.0.0.0/32", "the \"this host on this network\" address", Refuse),
    ("10.0.0.0/8", "a private-use address", Refuse),
    ("100.64.0.0/10", "a shared address space (CGNAT) address", Refuse),
    ("127.0.0.0/8", "a loopback address", Refuse),
    ("169.254.0.0/16", "a link-local address", Refuse),
    ("172.16.0.0/12", "a private-use address", Refuse),
    ("192.0.0.0/24", "an IETF protocol assignments address", Refuse),
    ("192.0.0.0/29", "an IPv4 service continuity prefix address", Refuse),
    ("192.0.0.8/32", "the IPv4 dummy address", Refuse),
    // Globally reachable in the registry, but anycast to the nearest PCP or
    // TURN server, which is the operator's own: refused with the rest of
    // 192.0.0.0/24.
    ("192.0.0.9/32", "the Port Control Protocol anycast address", Refuse),
    ("192.0.0.10/32", "the Traversal Using Relays around NAT anycast address", Refuse),
    ("192.0.0.170/32", "a NAT64/DNS64 discovery address", Refuse),
    ("192.0.0.171/32", "a NAT64/DNS64 discovery address", Refuse),
    ("192.0.2.0/24", "a documentation (TEST-NET-1) address", Refuse),
    ("192.31.196.0/24", "an AS112-v4 address", Allow),
    ("192.52.193.0/24", "an AMT address", Allow),
    ("192.88.99.0/24", "a deprecated 6to4 relay anycast address", Refuse),
    ("192.88.99.2/32", "the 6a44-relay anycast address", Refuse),
    ("192.168.0.0/16", "a private-use address", Refuse),
    ("192.175.48.0/24", "a Direct Delegation AS112 Service address", Allow),
    ("198.18.0.0/15", "a benchmarking address", Refuse),
    ("198.51.100.0/24", "a documentation (TEST-NET-2) address", Refuse),
    ("203.0.113.0/24", "a documentation (TEST-NET-3) address", Refuse),
    ("240.0.0.0/4", "a reserved address", Refuse),
    ("255.255.255.255/32", "the limited broadcast address", Refuse),
    // IPv4 Multicast Address Space Registry
    ("224.0.0.0/4", "a multicast address", Refuse),
    // IPv6 Special-Purpose Address Registry
    ("::1/128", "the loopback address", Refuse),
    ("::/128", "the unspecified address", Refuse),
    ("::ffff:0:0/96", "an IPv4-mapped address", CarriesV4Low),
    ("64:ff9b::/96", "an IPv4-IPv6 translation (NAT64) address", CarriesV4Low),
    ("64:ff9b:1::/48", "a local-use IPv4-IPv6 translation (NAT64) address", Refuse),
    ("100::/64", "a discard-only address", Refuse),
    ("100:0:0:1::/64", "a dummy IPv6 prefix address", Refuse),
    ("2001::/23", "an IETF protocol assignments address", Refuse),
    // The Teredo client's IPv4 address is obfuscated, and the relay is
    // whoever answers: refused outright.
    ("2001::/32", "a Teredo address", Refuse),
    ("2001:1::1/128", "the Port Control Protocol anycast address", Allow),
    ("2001:1::2/128", "the Traversal Using Relays around NAT anycast address", Allow),
    ("2001:1::3/128", "the DNS-SD Service Registration Protocol anycast address", Allow),
    ("2001:2::/48", "a benchmarking address", Refuse),
    ("2001:3::/32", "an AMT address", Allow),
    ("2001:4:112::/48", "an AS112-v6 address", Allow),
    ("2001:10::/28", "a deprecated ORCHID address", Refuse),
    ("2001:20::/28", "an ORCHIDv2 address", Allow),
    ("2001:30::/28", "a Drone Remote ID Protocol Entity Tag (DET) address", Allow),
    ("2001:db8::/32", "a documentation address", Refuse),
    ("2002::/16", "a 6to4 address", CarriesV4At16),
    ("2620:4f:8000::/48", "a Direct Delegation AS112 Service address", Allow),
    ("3fff::/20", "a documentation address", Refuse),
    ("5f00::/16", "a Segment Routing (SRv6) SID", Refuse),
    ("fc00::/7", "a unique-local address", Refuse),
    ("fe80::/10", "a link-local address", Refuse),
    // Not in the IPv6 registry
    ("::/96", "a deprecated IPv4-compatible address", Refuse),
    ("::ffff:0:0:0/96", "an IPv4-translated address", CarriesV4Low),
    ("fec0::/10", "a site-local address", Refuse),
    ("ff00::/8", "a multicast address", Refuse),
];

/// One entry of [`SPECIAL`], parsed.
#[derive(Debug)]
struct Range {
    net: IpNet,
    what: &'static str,
    rule: Rule,
}

/// [`SPECIAL`] parsed, most specific first, so the first match decides.
static RANGES: LazyLock<Vec<Range>> = LazyLock::new(|| {
    let mut ranges: Vec<Range> = SPECIAL
        .iter()
        .map(|&(prefix, what, rule)| Range {
            net: prefix.parse().unwrap_or_else(|err| panic!("special-purpose prefix {prefix}: {err}")),
            what,
            rule,
        })
        .collect();
    ranges.sort_by_key(|range| std::cmp::Reverse(range.net.prefix_len()));
    ranges
});

/// The most specific special-purpose range holding `ip`.
fn range(ip: IpAddr) -> Option<&'static Range> {
    RANGES.iter().find(|range| range.net.contains(&ip))
}

/// Why an address may not be reached.
struct Refusal {
    /// What kind of address is refused.
    what: &'static str,
    /// The IPv6 range and the IPv4 address carried in it, when the IPv4
    /// address is what was refused.
    carrier: Option<(&'static str, Ipv4Addr)>,
}

fn judge(ip: IpAddr) -> Option<Refusal> {
    let range = range(ip)?;
    let carried = match (range.rule, ip) {
        (Allow, _) => return None,
        (CarriesV4Low, IpAddr::V6(v6)) => Ipv4Addr::from(v6.to_bits() as u32),
        (CarriesV4At16, IpAddr::V6(v6)) => Ipv4Addr::from((v6.to_bits() >> 80) as u32),
        // Refuse, or (a mistake in the table) an IPv4 range said to carry one.
        _ => return Some(Refusal { what: range.what, carrier: None }),
    };
    let inner = range_v4(carried)?;
    Some(Refusal { what: inner, carrier: Some((range.what, carried)) })
}

/// What kind of refused address an IPv4 address is, or `None` if allowed.
fn range_v4(ip: Ipv4Addr) -> Option<&'static str> {
    range(IpAddr::V4(ip)).filter(|range| range.rule != Allow).map(|range| range.what)
}

/// What kind of internal address `ip` is, or `None` for a public one. For an
/// IPv6 address carrying an IPv4 one (mapped, translated, NAT64, 6to4) it is
/// what the IPv4 address is.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    judge(ip).map(|refusal| refusal.what)
}

/// Why a name was refused, found again in reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The client's resolver: the system's answers, checked by the guard.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !guard.host_allowed(&host) {
                for addr in &addrs {
                    guard.check_ip(addr.ip()).map_err(|why| Refused(format!("{host} resolves to a forbidden address: {why}")))?;
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok::<Addrs, Box<dyn std::error::Error + Send + Sync>>(addrs)
        })
    }
}

/// A client for marketer-supplied URLs.
pub struct Client {
    guard: Arc<Guard>,
    inner: reqwest::Client,
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than the limit and was cut.
    pub truncated: bool,
    pub url: Url,
}

/// Why a call did not get a reply.
#[derive(Debug)]
pub enum CallError {
    /// The guard refused it; never worth retrying.
    Refused(String),
    /// The request could not be built (bad header, bad URL); never worth retrying.
    Invalid(String),
    /// Network trouble or a timeout: worth trying again.
    Network(String),
}

impl CallError {
    pub fn reason(&self) -> &str {
        match self {
            CallError::Refused(r) | CallError::Invalid(r) | CallError::Network(r) => r,
        }
    }
}

/// A request to make: redirects re-send it to the new location.
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<(&'static str, Vec<u8>)>,
}

impl Client {
    pub fn new(settings: &Http) -> Client {
        let guard = Arc::new(Guard::new(&settings.allowlist));
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.min(10)))
            .timeout(Duration::from_secs(settings.timeout_secs))
            .user_agent(concat!("Waymark/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Client { guard, inner }
    }

    /// Sends `request`, following up to five redirects, each checked by the
    /// guard; reads at most `limit` bytes of the final body.
    pub async fn send(&self, request: Request, limit: usize) -> Result<Reply, CallError> {
        let mut url = Url::parse(&request.url).map_err(|err| CallError::Invalid(format!("“{}” is not a URL: {err}", request.url)))?;
        let mut method = request.method;
        let mut body = request.body;
        let mut headers = request.headers;
        for _ in 0..=MAX_REDIRECTS {
            self.guard.check_url(&url).map_err(CallError::Refused)?;
            let mut builder = self.inner.request(method.clone(), url.clone());
            for (name, value) in &headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some((content_type, bytes)) = &body {
                builder = builder.header(reqwest::header::CONTENT_TYPE, *content_type).body(bytes.clone());
            }
            let request = builder.build().map_err(|err| CallError::Invalid(chain(&err)))?;
            let response = self.inner.execute(request).await.map_err(|err| classify(&err, &url))?;
            let status = response.status();
            if status.is_redirection() {
                if let Some(location) = response.headers().get(reqwest::header::LOCATION) {
                    let location = location.to_str().map_err(|_| CallError::Invalid("a redirect's Location is not text".into()))?;
                    let next = url.join(location).map_err(|err| CallError::Invalid(format!("bad redirect to “{location}”: {err}")))?;
                    if status == StatusCode::SEE_OTHER
                        || ((status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND) && method == Method::POST)
                    {
                        method = Method::GET;
                        body = None;
                    }
                    if next.host_str() != url.host_str() {
                        // Credentials meant for one host are not handed to another.
                        headers.retain(|(name, _)| !matches!(name.to_ascii_lowercase().as_str(), "authorization" | "cookie"));
                    }
                    url = next;
                    continue;
                }
            }
            return read(response, limit, url).await;
        }
        Err(CallError::Refused(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

async fn read(mut response: reqwest::Response, limit: usize, url: Url) -> Result<Reply, CallError> {
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await.map_err(|err| classify(&err, &url))? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply { status, headers, body, truncated, url })
}

fn classify(err: &reqwest::Error, url: &Url) -> CallError {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return CallError::Refused(refused.0.clone());
        }
        source = e.source();
    }
    let host = url.host_str().unwrap_or_default();
    if err.is_timeout() {
        CallError::Network(format!("{host} did not answer in time"))
    } else if err.is_connect() {
        CallError::Network(format!("could not connect to {host}: {}", chain(err)))
    } else {
        CallError::Network(format!("the call to {host} failed: {}", chain(err)))
    }
}

/// An error with its causes, the way a person reads them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &Guard, url: &str) -> bool {
        guard.check_url(&Url::parse(url).unwrap()).is_err()
    }

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[ff02::1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://user@example.com/",
            "http://user:pw@example.com/",
            "ftp://example.com/",
            "file:///etc/passwd",
        ] {
            assert!(refused(&guard, url), "{url} should be refused");
        }
        for url in ["http://93.184.215.14/", "https://[2606:4700::1111]/", "http://172.32.0.1/", "https://example.com/x"] {
            assert!(!refused(&guard, url), "{url} should pass");
        }
    }

    /// How a range in the registries should be decided, written out apart
    /// from [`SPECIAL`] so that losing or changing an entry there fails.
    enum Expect {
        /// Refused, with an address inside the range that no more specific
        /// range holds.
        Refused(&'static str),
        /// Allowed, likewise.
        Allowed(&'static str),
        /// Judged by a carried IPv4 address: one carrying a private IPv4
        /// address (10.0.0.1) and one carrying a public one (8.8.8.8).
        Carries { private: &'static str, public: &'static str },
    }

    use Expect::{Allowed, Carries, Refused};

    const EXPECTED: &[(&str, Expect)] = &[
        ("0.0.0.0/8", Refused("0.1.2.3")),
        ("0.0.0.0/32", Refused("0.0.0.0")),
        ("10.0.0.0/8", Refused("10.20.30.40")),
        ("100.64.0.0/10", Refused("100.127.255.254")),
        ("127.0.0.0/8", Refused("127.1.2.3")),
        ("169.254.0.0/16", Refused("169.254.169.254")),
        ("172.16.0.0/12", Refused("172.31.0.1")),
        ("192.0.0.0/24", Refused("192.0.0.200")),
        ("192.0.0.0/29", Refused("192.0.0.1")),
        ("192.0.0.8/32", Refused("192.0.0.8")),
        ("192.0.0.9/32", Refused("192.0.0.9")),
        ("192.0.0.10/32", Refused("192.0.0.10")),
        ("192.0.0.170/32", Refused("192.0.0.170")),
        ("192.0.0.171/32", Refused("192.0.0.171")),
        ("192.0.2.0/24", Refused("192.0.2.1")),
        ("192.31.196.0/24", Allowed("192.31.196.1")),
        ("192.52.193.0/24", Allowed("192.52.193.1")),
        ("192.88.99.0/24", Refused("192.88.99.1")),
        ("192.88.99.2/32", Refused("192.88.99.2")),
        ("192.168.0.0/16", Refused("192.168.1.1")),
        ("192.175.48.0/24", Allowed("192.175.48.6")),
        ("198.18.0.0/15", Refused("198.19.255.1")),
        ("198.51.100.0/24", Refused("198.51.100.7")),
        ("203.0.113.0/24", Refused("203.0.113.9")),
        ("240.0.0.0/4", Refused("250.1.2.3")),
        ("255.255.255.255/32", Refused("255.255.255.255")),
        ("224.0.0.0/4", Refused("239.255.255.250")),
        ("::1/128", Refused("::1")),
        ("::/128", Refused("::")),
        ("::ffff:0:0/96", Carries { private: "::ffff:10.0.0.1", public: "::ffff:8.8.8.8" }),
        ("64:ff9b::/96", Carries { private: "64:ff9b::a00:1", public: "64:ff9b::808:808" }),
        ("64:ff9b:1::/48", Refused("64:ff9b:1::808:808")),
        ("100::/64", Refused("100::1")),
        ("100:0:0:1::/64", Refused("100:0:0:1::1")),
        ("2001::/23", Refused("2001:100::1")),
        ("2001::/32", Refused("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
        ("2001:1::1/128", Allowed("2001:1::1")),
        ("2001:1::2/128", Allowed("2001:1::2")),
        ("2001:1::3/128", Allowed("2001:1::3")),
        ("2001:2::/48", Refused("2001:2::1")),
        ("2001:3::/32", Allowed("2001:3::1")),
        ("2001:4:112::/48", Allowed("2001:4:112::1")),
        ("2001:10::/28", Refused("2001:10::1")),
        ("2001:20::/28", Allowed("2001:20::1")),
        ("2001:30::/28", Allowed("2001:30::1")),
        ("2001:db8::/32", Refused("2001:db8::1")),
        ("2002::/16", Carries { private: "2002:a00:1::1", public: "2002:808:808::1" }),
        ("2620:4f:8000::/48", Allowed("2620:4f:8000::1")),
        ("3fff::/20", Refused("3fff:fff::1")),
        ("5f00::/16", Refused("5f00::1")),
        ("fc00::/7", Refused("fdff::1")),
        ("fe80::/10", Refused("febf::1")),
        ("::/96", Refused("::8.8.8.8")),
        ("::ffff:0:0:0/96", Carries { private: "::ffff:0:a00:1", public: "::ffff:0:808:808" }),
        ("fec0::/10", Refused("fec0::1")),
        ("ff00::/8", Refused("ff02::1")),
    ];

    fn entry(prefix: &str) -> Option<&'static (&'static str, &'static str, Rule)> {
        SPECIAL.iter().find(|(p, _, _)| *p == prefix)
    }

    #[test]
    fn every_special_range_is_decided_as_the_registries_say() {
        let mut wrong = Vec::new();
        for (prefix, expect) in EXPECTED {
            let Some(&(_, what, rule)) = entry(prefix) else {
                wrong.push(format!("{prefix}: not in the table"));
                continue;
            };
            let net: IpNet = prefix.parse().unwrap();
            let check = |addr: &str, refused: bool, wrong: &mut Vec<String>| {
                let ip: IpAddr = addr.parse().unwrap();
                if !net.contains(&ip) {
                    wrong.push(format!("{prefix}: the test address {addr} is outside it"));
                }
                if let Some(most_specific) = range(ip).filter(|r| r.net != net) {
                    wrong.push(format!("{prefix}: {addr} is decided by {} instead", most_specific.net));
                }
                let got = Guard::default().check_ip(ip);
                if got.is_err() != refused {
                    wrong.push(format!("{prefix}: {addr} should be {}, got {got:?}", if refused { "refused" } else { "allowed" }));
                }
                got
            };
            match *expect {
                Refused(addr) => {
                    if rule != Refuse {
                        wrong.push(format!("{prefix}: the table says {rule:?}, not Refuse"));
                    }
                    if let Err(why) = check(addr, true, &mut wrong) {
                        if !why.contains(what) {
                            wrong.push(format!("{prefix}: the refusal “{why}” does not name {what}"));
                        }
                    }
                }
                Allowed(addr) => {
                    if rule != Allow {
                        wrong.push(format!("{prefix}: the table says {rule:?}, not Allow"));
                    }
                    check(addr, false, &mut wrong).ok();
                }
                Carries { private, public } => {
                    if !matches!(rule, CarriesV4Low | CarriesV4At16) {
                        wrong.push(format!("{prefix}: the table says {rule:?}, not an IPv4 carrier"));
                    }
                    if let Err(why) = check(private, true, &mut wrong) {
                        if !why.contains(what) || !why.contains("10.0.0.1") || !why.contains("a private-use address") {
                            wrong.push(format!("{prefix}: the refusal “{why}” does not say what carried what"));
                        }
                    }
                    check(public, false, &mut wrong).ok();
                }
            }
        }
        for (prefix, _, _) in SPECIAL {
            if !EXPECTED.iter().any(|(p, _)| p == prefix) {
                wrong.push(format!("{prefix}: in the table but not tested"));
            }
        }
        assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn the_special_range_table_is_well_formed() {
        let mut seen = Vec::new();
        for &(prefix, what, rule) in SPECIAL {
            let net: IpNet = prefix.parse().unwrap_or_else(|err| panic!("{prefix}: {err}"));
            assert_eq!(net, net.trunc(), "{prefix} has host bits set");
            assert!(!seen.contains(&net), "{prefix} is listed twice");
            assert!(!what.is_empty(), "{prefix} has no name");
            match rule {
                CarriesV4Low => assert!(matches!(net, IpNet::V6(_)) && net.prefix_len() == 96, "{prefix} cannot carry IPv4 in its last 32 bits"),
                CarriesV4At16 => assert!(matches!(net, IpNet::V6(_)) && net.prefix_len() == 16, "{prefix} cannot carry IPv4 in bits 16..48"),
                Refuse | Allow => {}
            }
            seen.push(net);
        }
        assert_eq!(RANGES.len(), SPECIAL.len());
    }

    #[test]
    fn the_audit_cases_are_decided_right() {
        let guard = Guard::default();
        for url in [
            "http://[::ffff:0:7f00:1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:c0a8:101::1]/",
            "http://[2001:0:4136:e378::1]/",
            "http://[100::1]/",
            "http://[3fff::1]/",
            "http://192.0.2.1/",
        ] {
            assert!(refused(&guard, url), "{url} should be refused");
        }
        for url in ["http://[64:ff9b::808:808]/", "http://[2002:808:808::1]/", "http://192.31.196.1/"] {
            assert!(!refused(&guard, url), "{url} should pass");
        }
        let why = guard.check_url(&Url::parse("http://[::ffff:0:7f00:1]/").unwrap()).unwrap_err();
        assert_eq!(why, "::ffff:0:7f00:1 is an IPv4-translated address carrying 127.0.0.1, a loopback address, which outbound calls may not reach");
        assert_eq!(internal("::ffff:0:7f00:1".parse().unwrap()), Some("a loopback address"));
        assert_eq!(
            guard.check_ip("127.0.0.2".parse().unwrap()),
            Err("127.0.0.2 is a loopback address, which outbound calls may not reach".into())
        );
    }

    #[test]
    fn the_allowlist_lets_named_hosts_and_ranges_through() {
        let guard = Guard::new(&["127.0.0.1".into(), "10.0.0.0/8".into(), "Hooks.Internal".into()]);
        assert!(!refused(&guard, "http://127.0.0.1:8080/"));
        assert!(!refused(&guard, "http://10.9.9.9/"));
        assert!(refused(&guard, "http://127.0.0.2/"));
        assert!(guard.host_allowed("hooks.internal"));
        assert!(AllowEntry::parse("not a host!").is_none());
        assert_eq!(AllowEntry::parse("[::1]"), Some(AllowEntry::Net("::1/128".parse().unwrap())));
    }
}
