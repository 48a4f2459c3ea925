//! Outbound HTTP to addresses a marketer typed (webhooks, data append,
//! attachments), behind an SSRF guard: loopback, private, link-local,
//! CGNAT, unique-local, unspecified, multicast and broadcast addresses are
//! refused unless an admin allowlisted them.
//!
//! The guard checks the address actually connected to: IP literals before
//! the request, names inside the client's DNS resolver (so no second lookup
//! can answer differently), and every redirect, which are followed here by
//! hand rather than by the client. Proxies from the environment are ignored,
//! since a proxy would do its own resolving.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
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
        match internal(ip) {
            Some(what) => Err(format!("{ip} is {what}, which outbound calls may not reach")),
            None => Ok(()),
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

/// What kind of internal address `ip` is, or `None` for a public one.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_unspecified() || a == 0 => "an unspecified (0.0.0.0/8) address",
        _ if ip.is_loopback() => "a loopback address",
        (10, _) | (172, 16..=31) | (192, 168) => "a private address",
        (169, 254) => "a link-local address",
        (100, 64..=127) => "a shared (CGNAT) address",
        (192, 0) if c == 0 => "an IETF protocol address",
        (198, 18..=19) => "a benchmarking address",
        _ if ip.is_broadcast() => "the broadcast address",
        (224..=239, _) => "a multicast address",
        (240..=255, _) => "a reserved address",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address carried inside IPv6 is judged as that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let s = ip.segments();
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return internal_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32)); // IPv4-compatible ::a.b.c.d
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return internal_v4(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32)); // NAT64
    }
    if s[0] == 0x2002 {
        return internal_v4(Ipv4Addr::from(((s[1] as u32) << 16) | s[2] as u32)); // 6to4
    }
    Some(match s[0] {
        _ if ip.is_unspecified() => "the unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xfe00 == 0xfc00 => "a unique-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
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
