//! The site the pages load (`/pkg`: the wasm modules, their JS, the CSS,
//! with a `.gz` beside each `.wasm` and `.js`; `/favicon.svg`): from the
//! folder `LEPTOS_SITE_ROOT` names, or, in a binary built with the
//! `embed-site` feature (`make dist`) and no `LEPTOS_SITE_ROOT` set, from
//! inside the binary, so that the one file serves everything from any
//! working directory.
//!
//! Why a feature, not always: the site is built for release by its own
//! toolchain (wasm32, wasm-bindgen, the splitter, wasm-opt; minutes), and
//! a debug or test build of the server must not wait for it nor fail
//! without it. The folder is read at build time from `WAYMARK_EMBED_SITE`
//! (build.rs rebuilds when it or its files change).
//!
//! Either way the same answers: the gzipped copy to browsers that take it
//! (`Content-Encoding: gzip`, `Vary: Accept-Encoding`), `Cache-Control:
//! no-cache` (file names are not hashed: a browser asks again each time
//! and gets a 304 while unchanged; from the binary, by `ETag`).

use std::path::{Path, PathBuf};

use axum::http::{header, HeaderValue};
use axum::routing::{get_service, MethodRouter};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// Whether this process serves the site from inside its binary.
pub fn embedded() -> bool {
    cfg!(feature = "embed-site") && std::env::var_os("LEPTOS_SITE_ROOT").is_none()
}

/// The site folder (`LEPTOS_SITE_ROOT`, default `target/site`); when the
/// site is embedded, a name no folder has, so that nothing is read from a
/// `target/site` that happens to be in the working directory.
pub fn root() -> String {
    match std::env::var("LEPTOS_SITE_ROOT") {
        Ok(root) => root,
        Err(_) if embedded() => "(embedded)".into(),
        Err(_) => "target/site".into(),
    }
}

fn no_cache() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
}

/// `/pkg/*`: the browser code.
pub fn pkg(dir: PathBuf) -> MethodRouter {
    #[cfg(feature = "embed-site")]
    {
        if embedded() {
            return axum::routing::get(|request: axum::extract::Request| async move {
                let file = request.uri().path().trim_start_matches('/');
                embed::answer(&format!("pkg/{file}"), request.headers())
            })
            .layer(no_cache());
        }
    }
    get_service(ServeDir::new(dir).precompressed_gzip()).layer(no_cache())
}

/// A file of `public/` at the site's root (`favicon.svg`).
pub fn public(root: &Path, name: &'static str) -> MethodRouter {
    #[cfg(feature = "embed-site")]
    {
        if embedded() {
            return axum::routing::get(move |headers: axum::http::HeaderMap| async move { embed::answer(name, &headers) });
        }
    }
    get_service(ServeFile::new(root.join(name)))
}

/// For the pages' `<head>`: the chunks each lazily loaded route needs, so
/// that the page preloads them. Leptos reads the splitter's manifest from
/// the site folder; when the site is in the binary, it is given here.
pub fn provide_split_manifest() {
    #[cfg(feature = "embed-site")]
    {
        if embedded() {
            if let Some(manifest) = embed::split_manifest() {
                leptos::prelude::provide_context(manifest);
            }
        }
    }
}

#[cfg(feature = "embed-site")]
mod embed {
    use std::sync::OnceLock;

    use axum::body::Body;
    use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};

    #[derive(rust_embed::RustEmbed)]
    #[folder = "$WAYMARK_EMBED_SITE"]
    struct Site;

    fn accepts_gzip(headers: &HeaderMap) -> bool {
        headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim().strip_prefix("q=").map(str::trim), Some("0" | "0.0" | "0.00" | "0.000")));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    }

    /// The embedded file at `path` (its gzipped copy when there is one and
    /// the browser takes it), or 404.
    pub fn answer(path: &str, headers: &HeaderMap) -> Response {
        let Some(plain) = Site::get(path) else { return StatusCode::NOT_FOUND.into_response() };
        let gzipped = Site::get(&format!("{path}.gz"));
        let varies = gzipped.is_some();
        let (file, encoding) = match gzipped {
            Some(gz) if accepts_gzip(headers) => (gz, Some("gzip")),
            _ => (plain.clone(), None),
        };
        let etag = format!("\"{}{}\"", hex::encode(&file.metadata.sha256_hash()[..16]), if encoding.is_some() { "-gz" } else { "" });
        let matches = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*");
        let mut response = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let body = match file.data {
                std::borrow::Cow::Borrowed(bytes) => Body::from(bytes),
                std::borrow::Cow::Owned(bytes) => Body::from(bytes),
            };
            let mut response = Response::new(body);
            let kind = HeaderValue::from_str(plain.metadata.mimetype()).unwrap_or(HeaderValue::from_static("application/octet-stream"));
            response.headers_mut().insert(header::CONTENT_TYPE, kind);
            if let Some(encoding) = encoding {
                response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            }
            response
        };
        response.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a header value"));
        if varies {
            response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        response
    }

    /// The splitter's manifest, as Leptos's `HydrationScripts` would have read it.
    pub fn split_manifest() -> Option<leptos::WasmSplitManifest> {
        static MANIFEST: OnceLock<Option<leptos::WasmSplitManifest>> = OnceLock::new();
        MANIFEST
            .get_or_init(|| {
                let file = Site::get("pkg/__wasm_split_manifest.json")?;
                let preloads = serde_json::from_slice(&file.data).ok()?;
                Some(leptos::WasmSplitManifest(leptos::prelude::ArcStoredValue::new((
                    "/pkg".to_owned(),
                    preloads,
                    "__wasm_split.______________________.js".to_owned(),
                ))))
            })
            .clone()
    }
}
