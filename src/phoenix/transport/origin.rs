//! `check_origin`: which browser origins may open a socket (both transports, before connect).
//!
//! * no `Origin` header → allowed (non-browser clients);
//! * [`CheckOrigin::Off`] → allowed;
//! * [`CheckOrigin::SameHost`] (default) → the origin's host must equal the request's own
//!   `Host` (scheme and port ignored);
//! * [`CheckOrigin::List`] → one entry must match: `"https://example.com"`,
//!   `"//another.com:888"`, `"//*.other.com"` (a missing scheme or port matches anything;
//!   `*.x.com` matches `x.com` and every subdomain).
//!
//! An origin without a host (`Origin: null`) is refused unless the check is off.

/// The origin policy of a socket mount.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CheckOrigin {
    /// Accept every origin.
    Off,
    /// Accept origins whose host equals the request's `Host` header.
    #[default]
    SameHost,
    /// Accept origins matching one of these patterns.
    List(Vec<String>),
}

#[derive(Debug, PartialEq)]
struct Origin {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

fn parse(s: &str, fill_default_port: bool) -> Option<Origin> {
    let s = s.trim();
    let (scheme, rest) = match s.split_once("//") {
        Some((scheme, rest)) => {
            let scheme = scheme.strip_suffix(':').unwrap_or(scheme);
            (
                (!scheme.is_empty()).then(|| scheme.to_ascii_lowercase()),
                rest,
            )
        }
        None => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return None;
    }
    let port = port.or(match (fill_default_port, scheme.as_deref()) {
        (true, Some("http" | "ws")) => Some(80),
        (true, Some("https" | "wss")) => Some(443),
        _ => None,
    });
    Some(Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal.
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (authority, None),
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(base) => {
            host == base
                || host
                    .strip_suffix(base)
                    .is_some_and(|pre| pre.ends_with('.'))
        }
        None => pattern == host,
    }
}

impl CheckOrigin {
    /// Whether a request with this `Origin` header and `Host` header may connect.
    pub fn allows(&self, origin: Option<&str>, request_host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if *self == CheckOrigin::Off {
            return true;
        }
        let Some(o) = parse(origin, true) else {
            return false;
        };
        match self {
            CheckOrigin::Off => true,
            CheckOrigin::SameHost => {
                let Some(host) = request_host else {
                    return false;
                };
                split_host_port(host).0.eq_ignore_ascii_case(&o.host)
            }
            CheckOrigin::List(patterns) => patterns.iter().any(|p| {
                let Some(p) = parse(p, false) else {
                    return false;
                };
                p.scheme
                    .as_ref()
                    .is_none_or(|s| Some(s) == o.scheme.as_ref())
                    && host_matches(&p.host, &o.host)
                    && p.port.is_none_or(|port| Some(port) == o.port)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CheckOrigin;

    #[test]
    fn missing_origin_is_allowed_and_null_origin_is_refused() {
        let list = CheckOrigin::List(vec!["//example.com".into()]);
        assert!(list.allows(None, None));
        assert!(!list.allows(Some("null"), None));
        assert!(CheckOrigin::Off.allows(Some("null"), None));
    }

    #[test]
    fn same_host_ignores_scheme_and_port() {
        let c = CheckOrigin::SameHost;
        assert!(c.allows(Some("https://app.test:8443"), Some("app.test:4000")));
        assert!(!c.allows(Some("https://evil.test"), Some("app.test:4000")));
    }

    #[test]
    fn list_entries_match_scheme_host_port_and_wildcards() {
        let c = CheckOrigin::List(vec![
            "https://example.com".into(),
            "//another.com:888".into(),
            "//*.other.com".into(),
        ]);
        assert!(c.allows(Some("https://example.com"), None));
        assert!(!c.allows(Some("http://example.com"), None));
        assert!(c.allows(Some("http://another.com:888"), None));
        assert!(!c.allows(Some("http://another.com"), None));
        assert!(c.allows(Some("https://other.com"), None));
        assert!(c.allows(Some("https://a.b.other.com"), None));
        assert!(!c.allows(Some("https://notother.com"), None));
    }
}
