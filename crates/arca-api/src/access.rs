//! Who may call the API: the Host and Origin rules that keep web pages out, and the bearer
//! token.
//!
//! A page in a browser on this machine can reach a loopback API in two ways:
//! - DNS rebinding: the page's own name (`evil.example`) is made to resolve to 127.0.0.1, so
//!   the browser treats the API as the page's origin and sends `Host: evil.example:PORT`.
//!   Refused by the Host rule: a token-less API answers only requests whose Host is a loopback
//!   name or its bound address, names no page can own.
//! - Plain cross-origin requests (a form post, `fetch` with `mode: "no-cors"`): the browser
//!   sends `Origin: http://evil.example`. Refused by the Origin rule: when present, Origin must
//!   be this API's own origin, `http://` + the request's Host. Browsers send Origin on every
//!   cross-origin request and on same-origin ones other than GET/HEAD; other clients (the CLI,
//!   curl) send none. No CORS allowance headers are ever sent, so browsers also keep the
//!   answers from pages.
//!
//! The Host rule applies only without a token. With a token, a page cannot authenticate (it
//! cannot know the token, and browsers never add a bearer token by themselves), so rebinding
//! gains nothing; while a Host rule there would refuse legitimate remote clients that name the
//! array by DNS name or reach it through a proxy. The Origin rule applies always: no browser
//! page has a reason to drive this API.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::rate::RateKey;
use crate::roles::least_role;
use crate::server::St;
use crate::tokens::Caller;

/// Splits an authority `name[:port]` or `[v6][:port]` into its name (brackets kept) and port;
/// None when malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (name, rest) = authority.split_at(end + 1);
        match rest {
            "" => (name, None),
            r => (name, Some(r.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether `host` (a Host header) names this API bound at `bound`: `localhost` or a loopback
/// IP on any port (a forwarded port still reaches this machine's loopback, and no page can own
/// these names), or the bound address itself (port 80 when none is given).
pub(crate) fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    let Some((name, port)) = split_authority(host) else {
        return false;
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .map_or_else(
            || name.parse::<std::net::Ipv4Addr>().map(IpAddr::V4),
            |n| n.parse::<std::net::Ipv6Addr>().map(IpAddr::V6),
        );
    match literal {
        Ok(ip) if ip.is_loopback() => true,
        Ok(ip) => ip == bound.ip() && port.unwrap_or(80) == bound.port(),
        Err(_) => false,
    }
}

/// The request's Host: the header (exactly one), else the authority of an absolute-form
/// request target.
fn request_host(req: &Request) -> Result<Option<String>, ()> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(()),
        (Some(h), None) => h.to_str().map(|h| Some(h.to_string())).map_err(|_| ()),
        (None, _) => Ok(req.uri().authority().map(|a| a.to_string())),
    }
}

/// The Host and Origin rules (see the module comment): 421 for a Host that does not name this
/// API, 403 for a foreign Origin.
pub(crate) async fn check_host_and_origin(State(s): St, req: Request, next: Next) -> Response {
    let host = match request_host(&req) {
        Ok(h) => h,
        Err(()) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the request has more than one Host header or an unreadable one",
            )
            .into_response();
        }
    };
    if !s.tokens.required() && !host.as_deref().is_some_and(|h| host_allowed(h, s.api_addr)) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!(
                "Host {} does not name this API: without a token it answers only to \
                 http://{} or a loopback name such as localhost",
                host.as_deref()
                    .map_or("(none)".to_string(), |h| format!("{h:?}")),
                s.api_addr
            ),
        )
        .into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        // Either scheme: the port serves only one, so no page of the other can exist there.
        let same = origin
            .to_str()
            .ok()
            .zip(host.as_deref())
            .is_some_and(|(o, h)| {
                ["http://", "https://"]
                    .iter()
                    .any(|scheme| o.eq_ignore_ascii_case(&format!("{scheme}{h}")))
            });
        if !same {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "cross-origin requests are refused: Origin {:?} is not this API's own",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Who the request is (its bearer token, or anonymous when the API needs none), refused
/// with 429 past its rate limit (see [`crate::rate`]; by remote address when it has no valid
/// token), 401 when the token is missing or unknown and 403 when its role is below the
/// route's (see [`crate::roles`]). The caller goes into the request's extensions.
pub(crate) async fn authenticate(State(s): St, mut req: Request, next: Next) -> Response {
    let caller = if s.tokens.required() {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|g| s.tokens.identify(g))
    } else {
        None
    };
    let key = match &caller {
        Some(c) => RateKey::Token(c.name.clone()),
        None => RateKey::Address(crate::audit::remote_addr(&req).map(|a| a.ip())),
    };
    if let Err(wait) = s.rate.admit(key, Instant::now()) {
        let mut r = too_many_requests(wait);
        if let Some(c) = caller {
            r.extensions_mut().insert(c);
        }
        return r;
    }
    let caller = match caller {
        Some(c) => c,
        None if !s.tokens.required() => Caller::anonymous(),
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
            return r;
        }
    };
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    let need = least_role(req.method(), template);
    // The caller goes on the response too, for the audit trail around this check.
    let mut resp = if caller.role < need {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {:?} has role {}; this operation needs {need}",
                caller.name, caller.role
            ),
        )
        .into_response()
    } else {
        req.extensions_mut().insert(caller.clone());
        next.run(req).await
    };
    resp.extensions_mut().insert(caller);
    resp
}

/// 429 with Retry-After in whole seconds (at least 1, as the header cannot say less).
fn too_many_requests(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests: this caller's rate limit is spent; retry in {secs} s"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_bound_address_are_the_only_hosts() {
        let bound: SocketAddr = "127.0.0.1:7410".parse().unwrap();
        for ok in [
            "127.0.0.1:7410",
            "localhost",
            "localhost:7410",
            "LOCALHOST:9000",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:7410",
        ] {
            assert!(host_allowed(ok, bound), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7410",
            "localhost.evil.example:7410",
            "127.0.0.1.evil.example",
            "localhost.:7410",
            "10.0.0.1:7410",
            "[::1",
            "[::1]x",
            "localhost:",
            "localhost:+80",
            "localhost:99999",
            "",
            ":7410",
        ] {
            assert!(!host_allowed(bad, bound), "{bad}");
        }
        let lan: SocketAddr = "192.168.1.5:7410".parse().unwrap();
        assert!(host_allowed("192.168.1.5:7410", lan));
        assert!(!host_allowed("192.168.1.5:7411", lan));
        assert!(!host_allowed("192.168.1.5", lan));
        let v6: SocketAddr = "[fd00::5]:80".parse().unwrap();
        assert!(host_allowed("[fd00::5]", v6));
        assert!(host_allowed("[FD00:0::5]:80", v6));
        assert!(!host_allowed("fd00::5", v6));
    }
}
