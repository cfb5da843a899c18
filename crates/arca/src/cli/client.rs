//! The HTTP side of the client: one ureq agent, the bearer token, and the API's error shape
//! turned into one-line messages.

use std::time::Duration;

use anyhow::{Result, anyhow};
use arca_api::types::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::Response;
use ureq::{Body, RequestBuilder};

/// A daemon that accepts the connection but never answers must not hang a script forever;
/// every API call is a short control operation.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    agent: ureq::Agent,
    /// `http://host:port` without a trailing slash.
    base: String,
    token: Option<String>,
}

/// `host:port` becomes `http://host:port`; other schemes than http and https are refused.
pub fn normalize_api_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    if t.is_empty() {
        return Err("the API URL is empty".into());
    }
    match t.split_once("://") {
        None => Ok(format!("http://{t}")),
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            if rest.is_empty() {
                Err(format!("invalid API URL {s:?}: no host"))
            } else {
                Ok(t.to_string())
            }
        }
        Some((scheme, _)) => Err(format!(
            "invalid API URL {s:?}: unsupported scheme {scheme:?} (use http:// or https://)"
        )),
    }
}

/// Percent-encodes one path segment, so a name is never read as more of the path.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(base: String, token: Option<String>, tls: ureq::tls::TlsConfig) -> Client {
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            // Error statuses come back as responses so their JSON body can be read.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, req: RequestBuilder<B>) -> RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let mut req = self.auth(self.agent.get(self.url(path)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let text = self.finish(req.call())?;
        self.decode(&text)
    }

    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let req = self.auth(self.agent.post(self.url(path)));
        let text = self.finish(req.send_json(body))?;
        self.decode(&text)
    }

    pub fn patch_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let req = self.auth(self.agent.patch(self.url(path)));
        let text = self.finish(req.send_json(body))?;
        self.decode(&text)
    }

    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.auth(self.agent.post(self.url(path)));
        let text = self.finish(req.send_empty())?;
        self.decode(&text)
    }

    /// DELETE; the API answers 204 with no body.
    pub fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<()> {
        let mut req = self.auth(self.agent.delete(self.url(path)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.finish(req.call())?;
        Ok(())
    }

    /// DELETE that answers with a JSON body.
    pub fn delete_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let mut req = self.auth(self.agent.delete(self.url(path)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let text = self.finish(req.call())?;
        self.decode(&text)
    }

    fn decode<T: DeserializeOwned>(&self, text: &str) -> Result<T> {
        serde_json::from_str(text)
            .map_err(|e| anyhow!("unexpected answer from the API at {}: {e}", self.base))
    }

    /// The body of a 2xx answer; any other status becomes the API's error message.
    fn finish(&self, sent: Result<Response<Body>, ureq::Error>) -> Result<String> {
        let mut resp = sent.map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => {
                anyhow!("the daemon could not be reached at {}: {e}", self.base)
            }
            other => anyhow!("request to the API at {} failed: {other}", self.base),
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| anyhow!("reading the answer of the API at {}: {e}", self.base))?;
        if status.is_success() {
            return Ok(text);
        }
        let message = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => body.error.message,
            // Not the API's error shape: maybe a proxy or another server on that port.
            Err(_) => {
                let snippet: String = text.trim().chars().take(200).collect();
                format!(
                    "HTTP {} from {}{}",
                    status.as_u16(),
                    self.base,
                    if snippet.is_empty() {
                        String::new()
                    } else {
                        format!(": {snippet}")
                    }
                )
            }
        };
        if status.as_u16() == 401 {
            let hint = if self.token.is_some() {
                "the token given was refused"
            } else {
                "no token given: use --token or ARCA_TOKEN"
            };
            return Err(anyhow!("unauthorized: {message} ({hint})"));
        }
        Err(anyhow!(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_and_segments_encoded() {
        assert_eq!(
            normalize_api_url("127.0.0.1:7410").unwrap(),
            "http://127.0.0.1:7410"
        );
        assert_eq!(normalize_api_url("https://h:1/").unwrap(), "https://h:1");
        assert!(normalize_api_url("ftp://h").is_err());
        assert!(normalize_api_url("").is_err());
        assert_eq!(seg("vol-1.a_b"), "vol-1.a_b");
        assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
    }
}
