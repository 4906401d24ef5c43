//! The HTTP listener (`--http-port`): Prometheus metrics, health checks, and the rate-limit
//! check for callers that speak HTTP rather than RESP — API gateways in forward-auth mode
//! (nginx `auth_request`, Traefik ForwardAuth, Envoy ext_authz over HTTP) and plain services.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text format (src/metrics.rs) |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once limits, log and snapshot are loaded (on a replica: and its link to the primary is up); 503 during shutdown |
//! | `GET\|POST /v1/check?client=&endpoint=&cost=` | 200 allowed / 429 denied, JSON body; 503 on a replica (READONLY) or a primary short of good replicas (NOREPLICAS) |
//! | `ANY /v1/forward-auth[/original/path]` | 200 / 429 for a gateway; client and endpoint from headers, the path in one spelling (src/path.rs); 503 as above |
//!
//! With `--http-tls yes` the listener serves HTTPS with the TLS listeners' certificates and
//! client-certificate rule (src/tls.rs); the handshake runs on the connection's task, within
//! the handshake timeout, holding its connection slot.
//!
//! Why hyper: HTTP/1.1 parsing (chunked bodies, pipelining, keep-alive, header limits, slow
//! clients) is where hand-written servers go wrong, and hyper is small, maintained and already
//! tokio-based. Every input is bounded: the request head by `max_buf_size` (16 KiB, hyper answers
//! 431 beyond it) and `max_headers` (64), a POST body by [`MAX_BODY`] (413 beyond), the time to
//! send a head by `header_read_timeout` and then a body by a timeout of the same length (408),
//! and simultaneous connections by `--http-maxclients`.
//!
//! Rate-limit headers follow draft-ietf-httpapi-ratelimit-headers-10 (the structured-field
//! `RateLimit-Policy` / `RateLimit` pair of drafts 08 and later, not the older
//! `RateLimit-Limit/-Remaining/-Reset` trio): `RateLimit-Policy: "endpoint";q=5;w=60` and
//! `RateLimit: "endpoint";r=4;t=12`. The policy is named after the kind of scope that applied.

mod auth;

use crate::counters::LocalCounters;
use crate::path;
use crate::state::Shared;
use crate::stream::Stream;
use crate::text::shorten;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ratelimitd_engine::CheckResult;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Largest request head (request line and headers together).
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;
/// Largest POST body for /v1/check.
pub const MAX_BODY: usize = 8 * 1024;
/// Time a client has to send a request head, and then its body.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Forward-auth path; anything after it is the original path (Envoy's `path_prefix`).
const FORWARD_AUTH: &str = "/v1/forward-auth";

type Reply = Response<Full<Bytes>>;

/// Accept HTTP connections until shutdown; each is served by hyper on its own task.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let most = shared.config.http_maxclients;
    let slots = Arc::new(Semaphore::new(most));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!("HTTP connection from {peer} refused: {most} open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match shared.config.http_tls == "yes" {
                true => match shared.tls_accept(stream, peer).await {
                    Some(tls) => tls,
                    None => return,
                },
                false => Stream::Plain(stream),
            };
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .max_buf_size(MAX_HEAD)
                .max_headers(MAX_HEADERS)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("HTTP connection from {peer}: {e}");
            }
        });
    }
}

/// Route one request, and count it by route and status.
async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let forward = path == FORWARD_AUTH || path.starts_with("/v1/forward-auth/");
    let class = match path.as_str() {
        "/metrics" => auth::Route::Metrics,
        "/v1/check" => auth::Route::Check,
        _ if forward => auth::Route::Check,
        _ => auth::Route::Open,
    };
    if class != auth::Route::Open && shared.refuses(peer) {
        let reply = error(StatusCode::FORBIDDEN, crate::state::DENIED);
        shared.counters.http("other", reply.status().as_u16());
        return reply;
    }
    let access = match auth::access(shared, class, req.headers(), forward) {
        Ok(access) => access,
        Err(refusal) => {
            let reply = refused(refusal);
            shared.counters.http("other", reply.status().as_u16());
            return reply;
        }
    };
    let (route, reply) = match (req.method(), path.as_str()) {
        // HEAD is GET without the body (RFC 9110 9.3.2; hyper leaves the body out), which
        // health checkers and monitors probe with. Not on /v1/check, where a GET charges.
        (&Method::GET | &Method::HEAD, "/metrics") => (
            "metrics",
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                shared.render_metrics(),
            ),
        ),
        (&Method::GET | &Method::HEAD, "/healthz") => ("healthz", text(StatusCode::OK, "text/plain", "ok\n".into())),
        (&Method::GET | &Method::HEAD, "/readyz") => (
            "readyz",
            if shared.is_ready() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".into())
            },
        ),
        (&Method::GET | &Method::POST, "/v1/check") => ("check", check(shared, req, &access).await),
        (_, "/metrics" | "/healthz" | "/readyz") => ("other", not_allowed("GET, HEAD")),
        (_, "/v1/check") => ("other", not_allowed("GET, POST")),
        (_, p) if p == FORWARD_AUTH || p.starts_with("/v1/forward-auth/") => {
            ("forward_auth", forward_auth(shared, peer, &req, &access))
        }
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, "not found: the routes are /metrics, /healthz, /readyz, /v1/check and /v1/forward-auth"),
        ),
    };
    shared.counters.http(route, reply.status().as_u16());
    reply
}

/// 401 (with a challenge for Basic credentials) or 403.
fn refused(refusal: auth::Refusal) -> Reply {
    match refusal {
        auth::Refusal::Unauthenticated(why) => {
            let mut r = error(StatusCode::UNAUTHORIZED, why);
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ratelimitd\""),
            );
            r
        }
        auth::Refusal::Forbidden(why) => error(StatusCode::FORBIDDEN, &why),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, value: serde_json::Value) -> Reply {
    let mut r = text(status, "application/json", value.to_string());
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `{"error": "..."}` with the status.
fn error(status: StatusCode, message: &str) -> Reply {
    json(status, serde_json::json!({ "error": message }))
}

/// A check is a write: a replica, or a primary short of good replicas
/// (--min-replicas-to-write), answers 503 with the RESP refusal's text, as it would over RESP.
/// Charging the key here would fork this node's state from the primary's.
fn refused_write(shared: &Shared) -> Reply {
    let why = shared.repl.write_refusal().unwrap_or("unavailable");
    error(StatusCode::SERVICE_UNAVAILABLE, why)
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// The parameters of /v1/check.
#[derive(Debug, Default)]
struct CheckParams {
    client: Option<Vec<u8>>,
    endpoint: Option<Vec<u8>>,
    cost: Option<u64>,
}

/// A 400 with its message.
struct BadRequest(String);

/// One `application/x-www-form-urlencoded` component as raw bytes: `+` is a space, `%XX` the
/// byte XX, and a `%` not followed by two hex digits stands for itself.
///
/// Why not `form_urlencoded::parse`: it decodes into UTF-8 lossily, so every invalid sequence
/// became U+FFFD, and distinct binary client ids (`%FE`, `%80`) shared one allowance over
/// HTTP while RESP kept them apart.
fn form_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

impl CheckParams {
    fn set(&mut self, key: &str, value: Vec<u8>) -> Result<(), BadRequest> {
        match key {
            "client" => self.client = Some(value),
            "endpoint" => self.endpoint = Some(value),
            "cost" => {
                // Read as RL.CHECK reads COST: digits only, no sign, no spaces.
                let cost = ratelimitd_protocol::parse::parse_u64(&value).ok_or_else(|| {
                    BadRequest(format!(
                        "cost must be an integer from 0 to 18446744073709551615, got '{}'",
                        shorten(&value, 32)
                    ))
                })?;
                self.cost = Some(cost);
            }
            other => {
                return Err(BadRequest(format!(
                    "unknown parameter '{}': expected client, endpoint, cost",
                    shorten(other.as_bytes(), 32)
                )))
            }
        }
        Ok(())
    }

    /// Form or query-string pairs (`a=1&b=2`, percent-decoded to the exact bytes).
    fn add_form(&mut self, bytes: &[u8]) -> Result<(), BadRequest> {
        for pair in bytes.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            self.set(&String::from_utf8_lossy(&form_decode(k)), form_decode(v))?;
        }
        Ok(())
    }

    /// A JSON object: `{"client": "...", "endpoint": "...", "cost": 1}`.
    fn add_json(&mut self, bytes: &[u8]) -> Result<(), BadRequest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| BadRequest(format!("body is not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| BadRequest("JSON body must be an object".into()))?;
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                serde_json::Value::Number(n) => n.to_string().into_bytes(),
                _ => {
                    return Err(BadRequest(format!(
                        "'{}' must be a string or a number",
                        shorten(k.as_bytes(), 32)
                    )))
                }
            };
            self.set(k, v)?;
        }
        Ok(())
    }
}

/// GET or POST /v1/check.
async fn check(shared: &Shared, req: Request<Incoming>, access: &auth::Access) -> Reply {
    match check_params(req).await {
        Ok(_) if shared.repl.write_refusal().is_some() => refused_write(shared),
        Ok((client, endpoint, cost)) => {
            if let Err(refusal) = access.may_check(&client) {
                return refused(refusal);
            }
            let result = shared.engine.check(&client, &endpoint, cost);
            let (reply, _) = decision(
                shared,
                &client,
                &endpoint,
                &result,
                StatusCode::TOO_MANY_REQUESTS,
            );
            reply
        }
        Err((status, BadRequest(msg))) => error(status, &msg),
    }
}

async fn check_params(
    req: Request<Incoming>,
) -> Result<(Vec<u8>, Vec<u8>, u64), (StatusCode, BadRequest)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, BadRequest(m));
    let query = req.uri().query().map(|q| q.as_bytes().to_vec());
    let mut body = None;
    if req.method() == Method::POST {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // The head has HEAD_TIMEOUT; the body gets as long. Without a deadline, connections
        // that announce a body and never finish it would hold HTTP slots for good (4096 of
        // them would lock every other HTTP client out).
        let bytes = tokio::time::timeout(
            HEAD_TIMEOUT,
            Limited::new(req.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| {
            (
                StatusCode::REQUEST_TIMEOUT,
                BadRequest(format!("body not received within {HEAD_TIMEOUT:?}")),
            )
        })?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    BadRequest(format!("body larger than {MAX_BODY} bytes")),
                )
            } else {
                bad(format!("reading the body: {e}"))
            }
        })?
        .to_bytes();
        body = Some((content_type, bytes));
    }
    parse_check(
        query.as_deref(),
        body.as_ref().map(|(t, b)| (t.as_str(), &b[..])),
    )
    .map_err(bad)
}

/// The client, endpoint and cost of a /v1/check request, from its query string and, for a
/// POST, its content type (lower case) and body; `Err` is the 400's message. Pure, so the
/// fuzz target `http_params` runs the same code as the listener.
pub fn parse_check(
    query: Option<&[u8]>,
    body: Option<(&str, &[u8])>,
) -> Result<(Vec<u8>, Vec<u8>, u64), String> {
    let mut params = CheckParams::default();
    if let Some(q) = query {
        params.add_form(q).map_err(|e| e.0)?;
    }
    if let Some((content_type, body)) = body {
        if content_type.starts_with("application/json") {
            params.add_json(body).map_err(|e| e.0)?;
        } else if content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded")
        {
            params.add_form(body).map_err(|e| e.0)?;
        } else {
            return Err(format!(
                "unsupported content type '{}': use application/x-www-form-urlencoded or application/json",
                shorten(content_type.as_bytes(), 64)
            ));
        }
    }
    let client = params
        .client
        .filter(|c| !c.is_empty())
        .ok_or_else(|| "missing parameter 'client'".to_string())?;
    let endpoint = params
        .endpoint
        .filter(|e| !e.is_empty())
        .ok_or_else(|| "missing parameter 'endpoint'".to_string())?;
    Ok((client, endpoint, params.cost.unwrap_or(1)))
}

/// Seconds, rounded up, of a millisecond figure (-1 stays "unknown").
fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        ms.max(0)
    } else {
        (ms + 999) / 1000
    }
}

/// The response for a decision: 200, or `deny` with Retry-After; RateLimit headers and the
/// RL.CHECK fields as JSON. Also counts the check. Returns the reply and whether it allowed.
fn decision(
    shared: &Shared,
    client: &[u8],
    endpoint: &[u8],
    r: &CheckResult,
    deny: StatusCode,
) -> (Reply, bool) {
    let body = serde_json::json!({
        "allowed": r.allowed,
        "limit": r.limit,
        "remaining": r.remaining,
        "retry_after_ms": r.retry_after_ms,
        "reset_after_ms": r.reset_after_ms,
    });
    let status = if r.allowed { StatusCode::OK } else { deny };
    let mut reply = json(status, body);
    let mut counters = LocalCounters::default();
    counters.check(r.allowed, r.scope);
    shared.flush(&mut counters);
    // The window that applied: one more lookup, which HTTP's own cost dwarfs.
    let explained = shared.engine.explain(client, endpoint);
    let headers = reply.headers_mut();
    if r.limit >= 0 {
        let name = r.scope.name();
        // The window the reply describes: by index, since two windows can share a capacity.
        let window = explained
            .windows
            .get(usize::from(r.window))
            .or(explained.windows.first());
        let mut policy = format!("\"{name}\";q={}", r.limit);
        if let Some(w) = window {
            policy.push_str(&format!(
                ";w={}",
                ceil_secs(w.window.period_ms() as i64).max(1)
            ));
        }
        // `t` is the named policy's own reset, as the draft defines it, not the longest over
        // all windows (which is the JSON's `reset_after_ms`).
        let reset_ms = window.map_or(r.reset_after_ms, |w| w.reset_after_ms);
        let state = format!(
            "\"{name}\";r={};t={}",
            r.remaining.max(0),
            ceil_secs(reset_ms)
        );
        for (h, v) in [("ratelimit-policy", policy), ("ratelimit", state)] {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(HeaderName::from_static(h), v);
            }
        }
    }
    if !r.allowed && r.retry_after_ms >= 0 {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(ceil_secs(r.retry_after_ms).max(1)),
        );
    }
    (reply, r.allowed)
}

/// Forward-auth: a gateway asks on behalf of a request it holds.
///
/// - client: the `--http-client-header` (default X-Api-Key); without it, `ip:<address>`, the
///   address from `--http-ip-header` if configured and present, else the TCP peer.
/// - endpoint: `<METHOD> <path>` (or `<path>` with `--forward-auth-endpoint path`), the path
///   from X-Forwarded-Uri (Traefik) or X-Original-URI (nginx), else the request's own path
///   after /v1/forward-auth (Envoy's `path_prefix`); the method from X-Forwarded-Method or
///   X-Original-Method, else the request's own. The query string and fragment are dropped and
///   the path is written in its one spelling ([`path::normalize_into`]: no dot segments, no
///   repeated or trailing slashes, no `;params`, one percent-encoding): one path is one
///   allowance, however it is spelt (which clients could otherwise vary to dodge a limit).
/// - the denial status is 429, or what the `X-RateLimit-Deny-Status` request header asks for
///   (401, 403 or 429: nginx's auth_request only understands 401 and 403).
fn forward_auth(
    shared: &Shared,
    peer: SocketAddr,
    req: &Request<Incoming>,
    access: &auth::Access,
) -> Reply {
    if shared.repl.write_refusal().is_some() {
        return refused_write(shared);
    }
    let headers = req.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
    };
    let deny = match header("x-ratelimit-deny-status") {
        None => StatusCode::TOO_MANY_REQUESTS,
        Some(b"429") => StatusCode::TOO_MANY_REQUESTS,
        Some(b"403") => StatusCode::FORBIDDEN,
        Some(b"401") => StatusCode::UNAUTHORIZED,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "X-RateLimit-Deny-Status must be 401, 403 or 429",
            )
        }
    };
    let client = match header(&shared.config.http_client_header.to_ascii_lowercase()) {
        Some(id) => id.to_vec(),
        None => {
            let from_header = shared
                .config
                .http_ip_header
                .as_deref()
                .and_then(|h| header(&h.to_ascii_lowercase()))
                // A list (X-Forwarded-For): the last entry is the one the proxy itself added;
                // the ones before it are whatever the client claimed.
                .map(|v| {
                    let v = String::from_utf8_lossy(v);
                    v.rsplit(',').next().unwrap_or("").trim().to_string()
                })
                .filter(|v| !v.is_empty());
            let ip = from_header.unwrap_or_else(|| peer.ip().to_string());
            format!("ip:{ip}").into_bytes()
        }
    };
    let own_path = req
        .uri()
        .path()
        .strip_prefix(FORWARD_AUTH)
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let uri = header("x-forwarded-uri")
        .or_else(|| header("x-original-uri"))
        .unwrap_or(own_path.as_bytes());
    let path = uri
        .split(|b| *b == b'?' || *b == b'#')
        .next()
        .unwrap_or(uri);
    let method = header("x-forwarded-method")
        .or_else(|| header("x-original-method"))
        .unwrap_or(req.method().as_str().as_bytes());
    let mut endpoint = Vec::with_capacity(method.len() + 2 + path.len());
    if shared.config.forward_auth_endpoint != "path" {
        endpoint.extend(method.iter().map(|b| b.to_ascii_uppercase()));
        endpoint.push(b' ');
    }
    path::normalize_into(path, &mut endpoint);
    if let Err(refusal) = access.may_check(&client) {
        return refused(refusal);
    }
    let result = shared.engine.check(&client, &endpoint, 1);
    let (mut reply, allowed) = decision(shared, &client, &endpoint, &result, deny);
    if allowed {
        // Gateways ignore an allow's body; an empty one saves bytes on every request.
        *reply.body_mut() = Full::new(Bytes::new());
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(-1), 0);
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1000), 1);
        assert_eq!(ceil_secs(1001), 2);
    }

    #[test]
    fn form_values_keep_their_exact_bytes() {
        // Two binary client ids must stay two clients, as they are over RESP.
        let client = |q: &[u8]| {
            let mut p = CheckParams::default();
            assert!(p.add_form(q).is_ok());
            p.client
        };
        assert_eq!(client(b"client=%FE&endpoint=e"), Some(vec![0xFE]));
        assert_eq!(client(b"client=%80&endpoint=e"), Some(vec![0x80]));
        assert_eq!(client(b"client=a+b%2Bc"), Some(b"a b+c".to_vec()));
        assert_eq!(
            client(b"client=%e2%82%ac"),
            Some("\u{20ac}".as_bytes().to_vec())
        );
        // A `%` without two hex digits stands for itself.
        assert_eq!(client(b"client=50%"), Some(b"50%".to_vec()));
        assert_eq!(client(b"client=50%25%2"), Some(b"50%%2".to_vec()));
        assert_eq!(client(b"&&client=a&"), Some(b"a".to_vec()));
    }

    #[test]
    fn check_params_come_from_the_query_and_a_form_or_json_body() {
        let ok = |query: Option<&[u8]>, body: Option<(&str, &[u8])>| parse_check(query, body);
        assert_eq!(
            ok(Some(b"client=a&endpoint=%2Fe"), None),
            Ok((b"a".to_vec(), b"/e".to_vec(), 1))
        );
        assert_eq!(
            ok(Some(b"cost=2"), Some(("", b"client=a&endpoint=e"))),
            Ok((b"a".to_vec(), b"e".to_vec(), 2))
        );
        assert_eq!(
            ok(
                None,
                Some((
                    "application/json; charset=utf-8",
                    br#"{"client":"a","endpoint":"e"}"#
                ))
            ),
            Ok((b"a".to_vec(), b"e".to_vec(), 1))
        );
        assert!(ok(None, Some(("text/plain", b"client=a&endpoint=e"))).is_err());
        assert!(ok(Some(b"client=a&endpoint="), None).is_err());
        assert!(ok(Some(b"endpoint=e"), None).is_err());
    }

    #[test]
    fn params_reject_unknown_names_and_bad_costs() {
        let mut p = CheckParams::default();
        assert!(p.add_form(b"client=a%20b&endpoint=%2Fx&cost=3").is_ok());
        assert_eq!(p.client.as_deref(), Some(&b"a b"[..]));
        assert_eq!(p.endpoint.as_deref(), Some(&b"/x"[..]));
        assert_eq!(p.cost, Some(3));
        assert!(CheckParams::default().add_form(b"clinet=a").is_err());
        assert!(CheckParams::default().add_form(b"cost=-1").is_err());
        // As RL.CHECK's COST: digits only, no sign and no spaces.
        for bad in [
            &b"cost=%2B3"[..],
            b"cost=%203%20",
            b"cost=",
            b"cost=3.0",
            b"cost=0x1",
        ] {
            assert!(CheckParams::default().add_form(bad).is_err(), "{bad:?}");
        }
        assert!(CheckParams::default().add_json(br#"{"cost":3.0}"#).is_err());
        assert!(CheckParams::default()
            .add_form(b"cost=99999999999999999999")
            .is_err());
        assert!(CheckParams::default().add_json(b"[1]").is_err());
        assert!(CheckParams::default()
            .add_json(b"{\"client\": {}}")
            .is_err());
        let mut p = CheckParams::default();
        assert!(p
            .add_json(br#"{"client":"c","endpoint":"/e","cost":2}"#)
            .is_ok());
        assert_eq!(p.cost, Some(2));
    }
}
