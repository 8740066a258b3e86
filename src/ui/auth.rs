//! Who may talk to the dashboard: whoever has the token `hdev ui` printed (like a notebook
//! server's), asking by the name 127.0.0.1 or localhost. The token is 256 random bits from
//! the kernel, compared in constant time; the Host header is checked so that a web page
//! that rebinds its own DNS name to 127.0.0.1 is still refused; and an action (a POST)
//! must carry the token in a header of its own, which a page of another origin cannot set
//! without the browser asking first (and this server never says yes), so a cookie alone
//! never acts (no cross-site request forgery).

use std::io::Read;

/// The cookie that carries the token after the first page load.
pub(crate) const COOKIE: &str = "hdev_token";
/// The header an action carries the token in.
pub(crate) const HEADER: &str = "x-hdev-token";

/// The dashboard's secret: 32 bytes from `/dev/urandom`, as 64 hex digits.
#[derive(Clone)]
pub(crate) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A new random token.
    pub(crate) fn random() -> std::io::Result<Token> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Token(hex::encode(bytes)))
    }

    #[cfg(test)]
    pub(crate) fn from_text(s: &str) -> Token {
        Token(s.to_string())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token; the time taken does not depend on where they differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// What a request says about itself, as far as the checks go.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub post: bool,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub query: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub header: Option<&'a str>,
}

/// Why a request is refused (each becomes a 403 with this text).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The Host header names another server (a rebound DNS name) or is missing.
    Host,
    /// A page of another origin sent it.
    Origin,
    /// No token, or the wrong one.
    Token,
}

impl Refusal {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            Refusal::Host => "forbidden: the dashboard answers only to 127.0.0.1 and localhost",
            Refusal::Origin => "forbidden: a page of another origin cannot act on the dashboard",
            Refusal::Token => {
                "forbidden: open the address `hdev ui` printed (it carries the dashboard's token)"
            }
        }
    }
}

/// Whether a Host or Origin's host names this machine's loopback address.
fn is_loopback_name(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(
        host.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "localhost"
    )
}

/// The value of `name` in a query string (`a=1&token=x`) or a Cookie header
/// (`a=1; hdev_token=x`).
pub(crate) fn param<'a>(text: &'a str, sep: char, name: &str) -> Option<&'a str> {
    text.split(sep)
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Checks a request: the Host, the Origin when a browser sends one, then the token (for a
/// POST in the header only; otherwise in the query, the cookie or the header).
pub(crate) fn check(token: &Token, a: &Asked<'_>) -> Result<(), Refusal> {
    if !a.host.is_some_and(is_loopback_name) {
        return Err(Refusal::Host);
    }
    if let Some(o) = a.origin {
        let authority = o.strip_prefix("http://").unwrap_or("");
        if !is_loopback_name(authority) {
            return Err(Refusal::Origin);
        }
    }
    let mut given = vec![a.header];
    if !a.post {
        given.push(a.query.and_then(|q| param(q, '&', "token")));
        given.push(a.cookie.and_then(|c| param(c, ';', COOKIE)));
    }
    // Every candidate is compared, so that which one matched takes no different time.
    let ok = given
        .into_iter()
        .flatten()
        .fold(false, |ok, g| token.matches(g) | ok);
    if ok {
        Ok(())
    } else {
        Err(Refusal::Token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::from_text("ab12")
    }

    fn get<'a>(host: &'a str, query: Option<&'a str>) -> Asked<'a> {
        Asked {
            host: Some(host),
            query,
            ..Asked::default()
        }
    }

    #[test]
    fn random_tokens_are_long_and_differ() {
        let (a, b) = (Token::random().unwrap(), Token::random().unwrap());
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.matches(a.as_str()) && !a.matches(b.as_str()));
        assert!(!a.matches("") && !a.matches(&a.as_str()[1..]));
    }

    #[test]
    fn the_token_is_needed_in_the_query_cookie_or_header() {
        let t = token();
        assert_eq!(check(&t, &get("127.0.0.1:8000", None)), Err(Refusal::Token));
        assert_eq!(
            check(&t, &get("127.0.0.1:8000", Some("token=ab13"))),
            Err(Refusal::Token)
        );
        assert_eq!(
            check(&t, &get("127.0.0.1:8000", Some("token=ab12"))),
            Ok(())
        );
        assert_eq!(check(&t, &get("localhost", Some("x=1&token=ab12"))), Ok(()));
        let by_cookie = Asked {
            cookie: Some("theme=dark; hdev_token=ab12"),
            ..get("localhost:1", None)
        };
        assert_eq!(check(&t, &by_cookie), Ok(()));
        let wrong_cookie = Asked {
            cookie: Some("hdev_token=zz"),
            ..get("localhost:1", None)
        };
        assert_eq!(check(&t, &wrong_cookie), Err(Refusal::Token));
    }

    #[test]
    fn an_action_needs_the_token_in_its_header_not_a_cookie() {
        let t = token();
        let cookie_only = Asked {
            post: true,
            cookie: Some("hdev_token=ab12"),
            query: Some("token=ab12"),
            ..get("127.0.0.1:9", None)
        };
        assert_eq!(check(&t, &cookie_only), Err(Refusal::Token));
        let header = Asked {
            header: Some("ab12"),
            ..cookie_only
        };
        assert_eq!(check(&t, &header), Ok(()));
        let foreign = Asked {
            origin: Some("http://evil.example:9"),
            ..header
        };
        assert_eq!(check(&t, &foreign), Err(Refusal::Origin));
        let same = Asked {
            origin: Some("http://127.0.0.1:9"),
            ..header
        };
        assert_eq!(check(&t, &same), Ok(()));
    }

    #[test]
    fn other_host_names_are_refused_even_with_the_token() {
        let t = token();
        for host in [
            "evil.example:8000",
            "127.0.0.1.evil.example",
            "10.0.0.1:8000",
            "localhost.evil:80",
            "",
        ] {
            assert_eq!(
                check(&t, &get(host, Some("token=ab12"))),
                Err(Refusal::Host),
                "{host}"
            );
        }
        let no_host = Asked {
            query: Some("token=ab12"),
            ..Asked::default()
        };
        assert_eq!(check(&t, &no_host), Err(Refusal::Host));
        assert_eq!(
            check(&t, &get("LOCALHOST:8000", Some("token=ab12"))),
            Ok(())
        );
    }
}
