//! Who may open which export: rules naming an export (or a pattern of names), the clients
//! allowed (a verified certificate's CN or subject, a PSK user, a source address or network)
//! and whether they may write. No rules: every client may open every export, as without TLS.
//! With rules, an export no rule grants to a client is closed to it: refused, and not listed.
//!
//! The rules file has one rule a line, `EXPORT MODE CLIENT`, `#` starting a comment:
//!
//! ```text
//! vol1        rw  cn:db-host.example
//! vol1@*      ro  subject:O=Example,CN=backup-host
//! scratch*    rw  addr:192.0.2.0/24
//! db          rw  psk:alice
//! public@*    ro  any
//! ```
//!
//! `EXPORT` is a name with `*` matching any run of characters; `MODE` is `rw` or `ro`; the
//! client (the rest of the line) is `cn:NAME`, `subject:DN` (the certificate's attributes in
//! its order, `KEY=VALUE` separated by commas), `psk:USER`, `addr:IP` or `addr:IP/PREFIX`, or
//! `any`. Several rules may grant one export to one client: any `rw` among them wins.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, X509Certificate};

/// What a client proved about itself, beside its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A client certificate the server's CA verified: its subject's attributes in order, as
    /// (short name or dotted OID, value).
    X509 { subject: Vec<(String, String)> },
    /// A pre-shared key's user name.
    Psk { user: String },
}

impl Identity {
    /// The identity of a verified certificate (DER); `None` when it cannot be parsed.
    pub fn from_certificate(der: &[u8]) -> Option<Identity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let registry = x509_parser::objects::oid_registry();
        let mut subject = Vec::new();
        for attr in cert.subject().iter_attributes() {
            let oid = attr.attr_type();
            let key = x509_parser::objects::oid2abbrev(oid, registry)
                .map(str::to_string)
                .unwrap_or_else(|_| oid.to_id_string());
            let value = attr.as_str().ok()?.to_string();
            subject.push((key, value));
        }
        Some(Identity::X509 { subject })
    }

    fn cn(&self) -> Option<&str> {
        match self {
            Identity::X509 { subject } => subject
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case("CN"))
                .map(|(_, v)| v.as_str()),
            Identity::Psk { .. } => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::X509 { subject } => {
                f.write_str("subject:")?;
                let parts: Vec<String> = subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&parts.join(","))
            }
            Identity::Psk { user } => write!(f, "psk:{user}"),
        }
    }
}

/// A connected client, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub identity: Option<Identity>,
}

/// What a client may do with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    Denied,
    ReadOnly,
    ReadWrite,
}

/// Which clients one rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Any,
    Cn(String),
    Subject(Vec<(String, String)>),
    Psk(String),
    Net { net: IpAddr, prefix: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    export: String,
    write: bool,
    who: Who,
}

/// A set of access rules; empty means everything is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

/// A rules file that could not be read: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for RuleError {}

/// `KEY=VALUE,KEY=VALUE` with blanks around the separators ignored.
fn parse_subject(s: &str) -> Option<Vec<(String, String)>> {
    s.split(',')
        .map(|part| {
            let (k, v) = part.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

fn parse_net(s: &str) -> Result<Who, String> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let net: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an address"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("{p:?} is not a prefix length of 0 to {max}")),
        },
    };
    Ok(Who::Net { net, prefix })
}

impl FromStr for Who {
    type Err = String;
    fn from_str(s: &str) -> Result<Who, String> {
        if s == "any" {
            return Ok(Who::Any);
        }
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| format!("client {s:?}: expected any, cn:, subject:, psk: or addr:"))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("client {s:?} names nobody"));
        }
        match kind {
            "cn" => Ok(Who::Cn(value.to_string())),
            "subject" => parse_subject(value)
                .map(Who::Subject)
                .ok_or_else(|| format!("subject {value:?}: expected KEY=VALUE,KEY=VALUE...")),
            "psk" => Ok(Who::Psk(value.to_string())),
            "addr" => parse_net(value),
            _ => Err(format!(
                "client kind {kind:?}: expected any, cn:, subject:, psk: or addr:"
            )),
        }
    }
}

/// Whether `ip` lies in `net/prefix` (an IPv4-mapped IPv6 client counts as IPv4).
fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (a >> shift) == (b >> shift)
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Who {
    fn matches(&self, client: &Client) -> bool {
        let id = client.identity.as_ref();
        match self {
            Who::Any => true,
            Who::Cn(cn) => id.and_then(Identity::cn) == Some(cn.as_str()),
            Who::Subject(want) => matches!(id, Some(Identity::X509 { subject })
            if subject.len() == want.len()
                && subject.iter().zip(want).all(|((k, v), (wk, wv))| {
                    k.eq_ignore_ascii_case(wk) && v == wv
                })),
            Who::Psk(u) => matches!(id, Some(Identity::Psk { user }) if user == u),
            Who::Net { net, prefix } => in_net(client.ip, *net, *prefix),
        }
    }
}

/// The first blank-separated word of `s` and the rest, trimmed.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    }
}

impl AccessRules {
    /// Everything open.
    pub fn open() -> AccessRules {
        AccessRules::default()
    }

    /// Reads rules in the file format described above.
    pub fn parse(text: &str) -> Result<AccessRules, RuleError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let err = |message: String| RuleError {
                line: i + 1,
                message,
            };
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (export, rest) = first_word(line);
            let (mode, who) = first_word(rest);
            let export = export.to_string();
            let write = match mode {
                "rw" => true,
                "ro" => false,
                _ => return Err(err(format!("mode {mode:?}: expected rw or ro"))),
            };
            if who.is_empty() {
                return Err(err("expected EXPORT MODE CLIENT".to_string()));
            }
            let who = who.parse().map_err(err)?;
            rules.push(Rule { export, write, who });
        }
        Ok(AccessRules { rules })
    }

    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What `client` may do with the export named `export`.
    pub fn grant(&self, client: &Client, export: &str) -> Grant {
        if self.rules.is_empty() {
            return Grant::ReadWrite;
        }
        self.rules
            .iter()
            .filter(|r| glob(&r.export, export) && r.who.matches(client))
            .map(|r| {
                if r.write {
                    Grant::ReadWrite
                } else {
                    Grant::ReadOnly
                }
            })
            .max()
            .unwrap_or(Grant::Denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x509(subject: &[(&str, &str)]) -> Client {
        let subject = subject
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Client {
            ip: "192.0.2.7".parse().unwrap(),
            identity: Some(Identity::X509 { subject }),
        }
    }

    fn plain(ip: &str) -> Client {
        Client {
            ip: ip.parse().unwrap(),
            identity: None,
        }
    }

    #[test]
    fn no_rules_open_everything() {
        let rules = AccessRules::parse("# nothing yet\n\n").unwrap();
        assert!(rules.is_open());
        assert_eq!(rules.grant(&plain("10.0.0.1"), "v"), Grant::ReadWrite);
    }

    #[test]
    fn certificates_match_by_cn_or_whole_subject() {
        let rules = AccessRules::parse(
            "v    rw cn:backup-host\n\
             \tv@*\tro   subject: O=arca , CN=reader  # the reader\n",
        )
        .unwrap();
        let backup = x509(&[("O", "arca"), ("CN", "backup-host")]);
        let reader = x509(&[("O", "arca"), ("CN", "reader")]);
        let other = x509(&[("O", "other"), ("CN", "reader")]);
        assert_eq!(rules.grant(&backup, "v"), Grant::ReadWrite);
        assert_eq!(rules.grant(&backup, "v@s1"), Grant::Denied);
        assert_eq!(rules.grant(&reader, "v@s1"), Grant::ReadOnly);
        assert_eq!(rules.grant(&reader, "v"), Grant::Denied);
        assert_eq!(rules.grant(&other, "v@s1"), Grant::Denied);
        // No certificate, no identity: only address rules can match.
        assert_eq!(rules.grant(&plain("192.0.2.7"), "v"), Grant::Denied);
    }

    #[test]
    fn addresses_match_networks_and_the_widest_grant_wins() {
        let rules = AccessRules::parse(
            "scratch* ro addr:192.0.2.0/24\n\
             scratch1 rw addr:192.0.2.9\n\
             * ro addr:2001:db8::/32\n\
             db rw psk:alice\n",
        )
        .unwrap();
        assert_eq!(
            rules.grant(&plain("192.0.2.9"), "scratch1"),
            Grant::ReadWrite
        );
        assert_eq!(
            rules.grant(&plain("192.0.2.8"), "scratch1"),
            Grant::ReadOnly
        );
        assert_eq!(
            rules.grant(&plain("::ffff:192.0.2.8"), "scratch2"),
            Grant::ReadOnly
        );
        assert_eq!(rules.grant(&plain("192.0.3.1"), "scratch1"), Grant::Denied);
        assert_eq!(rules.grant(&plain("2001:db8::1"), "db"), Grant::ReadOnly);
        let alice = Client {
            ip: "10.1.1.1".parse().unwrap(),
            identity: Some(Identity::Psk {
                user: "alice".into(),
            }),
        };
        assert_eq!(rules.grant(&alice, "db"), Grant::ReadWrite);
        assert_eq!(rules.grant(&alice, "scratch1"), Grant::Denied);
    }

    #[test]
    fn patterns_match_whole_names() {
        assert!(glob("v", "v"));
        assert!(!glob("v", "v@s"));
        assert!(glob("v@*", "v@s"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(!glob("ab*ba", "aba"));
        assert!(in_net(
            "10.0.0.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }

    #[test]
    fn bad_rules_name_their_line() {
        for (text, line) in [
            ("v rw\n", 1),
            ("# c\nv rx any\n", 2),
            ("v ro addr:10.0.0.0/33\n", 1),
            ("v ro addr:host\n", 1),
            ("v ro cn:\n", 1),
            ("v ro subject:CN\n", 1),
            ("v ro user:bob\n", 1),
        ] {
            let e = AccessRules::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
