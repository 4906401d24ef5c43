//! Limits written back as the RL.LIMIT arguments that make them: what a full sync sends a
//! replica, what a replica compares its own limits with, and how RL.LIMIT GET, LIST and
//! RL.EXPLAIN print a window's rate.

use bytes::Bytes;
use ratelimitd_engine::{EndpointPattern, Limit, Scope, Window};
use ratelimitd_protocol::parse::format_period;

/// A window's rate as RL.LIMIT SET takes it: `10/1s`.
pub fn rate_text(w: &Window) -> String {
    format!("{}/{}", w.count(), format_period(w.period_ms()))
}

/// The arguments of RL.LIMIT SET/DEL naming `scope`.
pub fn scope_args(scope: &Scope) -> Vec<Bytes> {
    let endpoint = |out: &mut Vec<Bytes>, e: &Option<EndpointPattern>| {
        if let Some(p) = e {
            out.push(Bytes::from_static(b"ENDPOINT"));
            out.push(Bytes::copy_from_slice(p.as_bytes()));
        }
    };
    let mut out = Vec::with_capacity(4);
    match scope {
        Scope::Default => out.push(Bytes::from_static(b"DEFAULT")),
        Scope::Client { id, endpoint: e } => {
            out.push(Bytes::from_static(b"CLIENT"));
            out.push(Bytes::copy_from_slice(id));
            endpoint(&mut out, e);
        }
        Scope::Tier { name, endpoint: e } => {
            out.push(Bytes::from_static(b"TIER"));
            out.push(Bytes::copy_from_slice(name));
            endpoint(&mut out, e);
        }
        Scope::Endpoint(p) => {
            out.push(Bytes::from_static(b"ENDPOINT"));
            out.push(Bytes::copy_from_slice(p.as_bytes()));
        }
    }
    out
}

/// `RL.LIMIT SET <scope> RATE n/p BURST b ... ALGO a`: the command that recreates a limit.
pub fn limit_set_args(scope: &Scope, limit: &Limit) -> Vec<Bytes> {
    let mut out = vec![Bytes::from_static(b"RL.LIMIT"), Bytes::from_static(b"SET")];
    out.extend(scope_args(scope));
    for w in limit.windows() {
        out.push(Bytes::from_static(b"RATE"));
        out.push(Bytes::from(rate_text(w)));
        out.push(Bytes::from_static(b"BURST"));
        out.push(Bytes::from(w.burst().to_string()));
    }
    out.push(Bytes::from_static(b"ALGO"));
    out.push(Bytes::from_static(limit.algorithm().name().as_bytes()));
    out
}
