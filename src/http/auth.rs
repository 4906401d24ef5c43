//! Who an HTTP request is, and what it may do: the same users as RESP and memcached.
//!
//! `--http-auth` says which routes need credentials: `none`, `checks` (/v1/check and
//! /v1/forward-auth) or `all` (those and /metrics). Unset, it is `all` while the default user
//! has a password and `none` while it has not. /healthz and /readyz are always open (probes
//! carry no credentials).
//!
//! Credentials: `Authorization: Basic <base64 user:password>`, or `Authorization: Bearer
//! <password>` for the default user (`Bearer <user>:<password>` for another). A gateway's
//! forward-auth request carries the end client's own `Authorization`, so forward-auth reads
//! `X-RateLimit-Authorization` instead, which the gateway sets on its auth request.
//!
//! A check needs the user's permission for RL.CHECK and the client id as a key, as over RESP;
//! /metrics needs INFO's.

use crate::acl::User;
use crate::cmd::COMMANDS;
use crate::state::Shared;
use hyper::header::{HeaderMap, AUTHORIZATION};
use ratelimitd_protocol::memcache::base64_decode;
use std::sync::Arc;

/// Which routes need credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Checks,
    All,
}

impl Mode {
    /// `--http-auth`, or its default: `all` while the default user has a password.
    pub fn of(shared: &Shared) -> Mode {
        match shared.config.http_auth.as_deref() {
            Some("none") => Mode::None,
            Some("checks") => Mode::Checks,
            Some(_) => Mode::All,
            None if shared.users.default_open() => Mode::None,
            None => Mode::All,
        }
    }
}

/// The kind of route, for [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// /healthz, /readyz, and answers that serve nothing (404, 405).
    Open,
    Metrics,
    /// /v1/check and /v1/forward-auth.
    Check,
}

/// What a request may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// No credentials needed for this route.
    Open,
    /// Signed in as this user.
    As(Arc<User>),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or wrong ones (401).
    Unauthenticated(&'static str),
    /// The user may not do this (403), with Redis's text.
    Forbidden(String),
}

fn credentials(headers: &HeaderMap, route_header: &str) -> Option<(Option<String>, String)> {
    let value = headers.get(route_header)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest.as_bytes())?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((Some(user.to_string()), pass.to_string()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        match rest.split_once(':') {
            Some((user, pass)) => Some((Some(user.to_string()), pass.to_string())),
            None => Some((None, rest.to_string())),
        }
    } else {
        None
    }
}

/// Sign the request in, if its route needs it. `forward_auth`: the credentials are in
/// `X-RateLimit-Authorization`.
pub fn access(
    shared: &Shared,
    route: Route,
    headers: &HeaderMap,
    forward_auth: bool,
) -> Result<Access, Refusal> {
    let needed = !matches!(
        (Mode::of(shared), route),
        (_, Route::Open) | (Mode::None, _) | (Mode::Checks, Route::Metrics)
    );
    if !needed {
        return Ok(Access::Open);
    }
    let header = if forward_auth {
        "x-ratelimit-authorization"
    } else {
        AUTHORIZATION.as_str()
    };
    let Some((user, pass)) = credentials(headers, header) else {
        return Err(Refusal::Unauthenticated("credentials required"));
    };
    let user = shared
        .users
        .authenticate(
            Some(user.as_deref().unwrap_or("default").as_bytes()),
            pass.as_bytes(),
        )
        .map_err(|_| {
            Refusal::Unauthenticated("invalid username-password pair or user is disabled")
        })?;
    if route == Route::Metrics && !may(&user, "info", None) {
        return Err(Refusal::Forbidden(format!(
            "NOPERM User {} has no permissions to run the 'info' command",
            user.name
        )));
    }
    Ok(Access::As(user))
}

/// Whether `user` may run the command `name`, with `key` as its key (written).
fn may(user: &User, name: &str, key: Option<&[u8]>) -> bool {
    let run = COMMANDS
        .lookup(name.as_bytes())
        .is_some_and(|f| user.may_run(f.index));
    run && key.is_none_or(|k| user.may_access(k, true))
}

impl Access {
    /// Whether this request may check `client`: as RL.CHECK with that client id.
    pub fn may_check(&self, client: &[u8]) -> Result<(), Refusal> {
        match self {
            Access::Open => Ok(()),
            Access::As(user) if may(user, "rl.check", None) => {
                if may(user, "rl.check", Some(client)) {
                    Ok(())
                } else {
                    Err(Refusal::Forbidden(
                        "NOPERM No permissions to access a key".to_string(),
                    ))
                }
            }
            Access::As(user) => Err(Refusal::Forbidden(format!(
                "NOPERM User {} has no permissions to run the 'rl.check' command",
                user.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header value"));
        h
    }

    #[test]
    fn basic_and_bearer_credentials() {
        // "alice:pw" in base64.
        let h = headers("authorization", "Basic YWxpY2U6cHc=");
        assert_eq!(
            credentials(&h, "authorization"),
            Some((Some("alice".into()), "pw".into()))
        );
        let h = headers("authorization", "Bearer s3cret");
        assert_eq!(
            credentials(&h, "authorization"),
            Some((None, "s3cret".into()))
        );
        let h = headers("authorization", "Bearer bob:pw:x");
        assert_eq!(
            credentials(&h, "authorization"),
            Some((Some("bob".into()), "pw:x".into()))
        );
        for bad in ["Basic !!!", "Basic YWxpY2U=", "Digest x", "Basic"] {
            let h = headers("authorization", bad);
            assert_eq!(credentials(&h, "authorization"), None, "{bad}");
        }
        let h = headers("x-ratelimit-authorization", "Bearer pw");
        assert!(credentials(&h, "authorization").is_none());
        assert!(credentials(&h, "x-ratelimit-authorization").is_some());
    }
}
