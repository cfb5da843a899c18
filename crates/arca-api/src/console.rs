//! The web console: static HTML, CSS and JavaScript modules from `crates/arca-api/console/`,
//! embedded in the binary and served at `/` (the page) and `/console/...` (its files). No
//! build step: the files served are the files in the repository.
//!
//! The console talks to the API from the browser with the same bearer token as any client.
//! When the daemon has a token, only the login page's files (the page, its stylesheet, its
//! icon and `login.js`) are served without it; the application's modules under
//! `/console/app/` need the `arca_console` cookie, which `login.js` sets to the token (hex)
//! once the API has accepted it. A browser loads module scripts itself and cannot add an
//! Authorization header to them, hence the cookie; it is scoped to `/console/app/` and the API
//! never reads it, so it authorizes nothing but these static files.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::server::St;

/// No inline script or style, nothing from another origin, no framing, no form posts: the
/// page runs only its own modules and talks only to its own API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The cookie carrying the token (hex of its bytes) to the application's module files.
pub const COOKIE: &str = "arca_console";

/// Files under this prefix are the application: served only with the token when there is one.
const APP_PREFIX: &str = "app/";

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        /// Every file of the console, by its path under `/console/`.
        const FILES: &[(&str, &[u8])] = &[
            $(($name, include_bytes!(concat!("../console/", $name)))),*
        ];
    };
}

files!(
    "index.html",
    "style.css",
    "icon.svg",
    "login.js",
    "app/api.js",
    "app/ui.js",
    "app/main.js",
    "app/overview.js",
    "app/volumes.js",
    "app/volume.js",
    "app/backups.js",
    "app/backup.js",
    "app/prune.js",
    "app/jobs.js",
    "app/policies.js",
    "app/vaults.js",
    "app/copies.js",
);

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// A strong validator for the file's bytes (FNV-1a, 64 bits): a revalidation costs a 304.
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// The token the request's console cookie carries (hex-encoded there), if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let hex = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find_map(|(k, v)| (k == COOKIE).then_some(v))?;
    if hex.len() % 2 != 0 || hex.len() > 1024 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Whether the request's cookies carry a token the API knows (any role may read the
/// console's files; what each call may do is the API's decision).
fn has_token_cookie(headers: &HeaderMap, tokens: &crate::tokens::Tokens) -> bool {
    cookie_token(headers).is_some_and(|t| tokens.identify(&t).is_some())
}

fn serve_file(s: &crate::ApiState, headers: &HeaderMap, name: &str) -> Response {
    let Some(&(_, bytes)) = FILES.iter().find(|(n, _)| *n == name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let gated = name.starts_with(APP_PREFIX);
    if gated && s.tokens.required() && !has_token_cookie(headers, &s.tokens) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in to the console first: its application files need the token",
        )
        .into_response();
    }
    let tag = etag(bytes);
    let static_headers = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Revalidated on every load (a new binary serves new files at the same paths); the
        // ETag makes that a 304. Private: application files depend on the cookie.
        (header::CACHE_CONTROL, "private, no-cache"),
        (header::VARY, "Cookie"),
    ];
    let tag_value = HeaderValue::from_str(&tag).expect("hex in quotes");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            static_headers,
            [(header::ETAG, tag_value)],
        )
            .into_response();
    }
    (
        static_headers,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            ),
            (header::ETAG, tag_value),
        ],
        bytes,
    )
        .into_response()
}

async fn page(State(s): St, headers: HeaderMap) -> Response {
    serve_file(&s, &headers, "index.html")
}

async fn file(State(s): St, headers: HeaderMap, Path(name): Path<String>) -> Response {
    serve_file(&s, &headers, &name)
}

/// `/` and `/console/*`, outside the bearer-token layer (see the module comment).
pub(crate) fn routes() -> axum::Router<Arc<crate::ApiState>> {
    axum::Router::new()
        .route("/", get(page))
        .route("/console/{*name}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_content_type_and_pages_load_only_files_that_exist() {
        for (name, bytes) in FILES {
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
            let text = std::str::from_utf8(bytes).expect("console files are text");
            // Every import and every src/href of the console names one of its own files.
            for quote in ['"', '\''] {
                for part in text.split(quote) {
                    let target = part
                        .strip_prefix("/console/")
                        .or_else(|| part.strip_prefix("./").filter(|_| name.ends_with(".js")));
                    let Some(target) = target else { continue };
                    if !target.ends_with(".js") && !target.ends_with(".css") {
                        continue;
                    }
                    let dir = if part.starts_with("./") {
                        name.rsplit_once('/').map_or("", |(d, _)| d)
                    } else {
                        ""
                    };
                    let full = if dir.is_empty() {
                        target.to_string()
                    } else {
                        format!("{dir}/{target}")
                    };
                    assert!(
                        FILES.iter().any(|(n, _)| *n == full),
                        "{name} refers to {part:?}, which is not embedded"
                    );
                }
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_that_the_policy_would_block() {
        let (_, page) = FILES.iter().find(|(n, _)| *n == "index.html").unwrap();
        let page = std::str::from_utf8(page).unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "inline code"
        );
        // No inline event handler attribute (` onclick=` and the like).
        for (i, _) in page.match_indices(" on") {
            let word: String = page[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            assert!(
                !page[i + 3 + word.len()..].starts_with('='),
                "inline handler on{word}"
            );
        }
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "external origin"
        );
    }

    #[test]
    fn the_token_cookie_is_read_exactly() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; arca_console=736563726574".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("secret"));
        h.insert(header::COOKIE, "arca_console=73656372657".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
        h.insert(header::COOKIE, "arca_console=7g".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
