//! The daemon's (and Sentinel's) replies read into typed values: `RL.CHECK` into a
//! [`Decision`], `RL.LIMIT GET` into [`Window`]s, `RL.TIER GET` into a tier name, and
//! `SENTINEL get-master-addr-by-name` into a host and port. A reply of another shape is a
//! [`ClientError::Reply`] naming the node, never a panic: the reply comes from the network.

use std::time::Duration;

use redis::Value;

use crate::error::ClientError;
use crate::types::{Decision, Source, Window};

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn opt_u64(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn opt_ms(v: i64) -> Option<Duration> {
    u64::try_from(v).ok().map(Duration::from_millis)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[allowed, limit, remaining, retry_after_ms, reset_after_ms]` from `node`, answered at
/// `address`.
pub(crate) fn parse_check(
    value: &Value,
    node: &str,
    address: String,
) -> Result<Decision, ClientError> {
    let fields: Option<Vec<i64>> = match value {
        Value::Array(items) if items.len() == 5 => items.iter().map(int).collect(),
        _ => None,
    };
    let f = fields.ok_or_else(|| ClientError::Reply {
        node: node.to_string(),
        detail: format!("RL.CHECK replied {value:?}"),
    })?;
    Ok(Decision {
        allowed: f[0] == 1,
        limit: opt_u64(f[1]),
        remaining: opt_u64(f[2]),
        retry_after: opt_ms(f[3]),
        reset_after: opt_ms(f[4]),
        source: Source::Daemon {
            node: node.to_string(),
            address,
        },
    })
}

/// `["RATE", "10/500ms", "BURST", 2, ..., "ALGO", "gcra"]` or nil.
pub(crate) fn parse_limit(value: &Value, node: &str) -> Result<Option<Vec<Window>>, ClientError> {
    let bad = || ClientError::Reply {
        node: node.to_string(),
        detail: format!("RL.LIMIT GET replied {value:?}"),
    };
    let items = match value {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(bad()),
    };
    // The reply ends with `ALGO <name>`; this client manages the windows (GCRA by default)
    // and leaves the algorithm to RL.LIMIT SET ... ALGO, so the pair is accepted and skipped.
    let items = match items.len().checked_sub(2) {
        Some(n) if text(&items[n]).as_deref() == Some("ALGO") => &items[..n],
        _ => &items[..],
    };
    let mut windows = Vec::new();
    for chunk in items.chunks(4) {
        let [rate_kw, rate, burst_kw, burst] = chunk else {
            return Err(bad());
        };
        let (rate_kw, burst_kw) = (text(rate_kw), text(burst_kw));
        if rate_kw.as_deref() != Some("RATE") || burst_kw.as_deref() != Some("BURST") {
            return Err(bad());
        }
        let (n, period) = text(rate)
            .as_deref()
            .and_then(Window::parse_rate)
            .ok_or_else(bad)?;
        let burst = int(burst)
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(bad)?;
        windows.push(Window {
            rate: n,
            period,
            burst,
        });
    }
    Ok(Some(windows))
}

/// A tier name or nil.
pub(crate) fn parse_tier(value: Value, node: String) -> Result<Option<String>, ClientError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Value::SimpleString(s) => Ok(Some(s)),
        other => Err(ClientError::Reply {
            node,
            detail: format!("RL.TIER GET replied {other:?}"),
        }),
    }
}

/// `[host, port]`; `None` for anything else (nil for an unknown master name, an empty host, a
/// port that is not 1–65535).
pub(crate) fn parse_master_addr(value: &Value) -> Option<(String, u16)> {
    match value {
        Value::Array(items) if items.len() == 2 => text(&items[0])
            .zip(text(&items[1]).and_then(|p| p.parse::<u16>().ok()))
            .filter(|(host, port)| !host.is_empty() && *port != 0),
        _ => None,
    }
}
