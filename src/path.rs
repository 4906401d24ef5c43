//! One spelling per path: how forward-auth turns the path a gateway reports into the endpoint
//! it charges.
//!
//! A gateway passes the path as the client wrote it, and most applications answer many
//! spellings of one path alike (`/api//users`, `/api/./users`, `/api/users/`, `/api/%75sers`,
//! `/api/users;x`). Were each spelling its own endpoint, each would have its own allowance, and
//! a client could multiply its limit by rewriting the path. [`normalize_into`] maps them all to
//! `/api/users`, by these rules, in this order:
//!
//! 1. The path is split into segments at `/`; empty segments are dropped, so repeated slashes
//!    are one.
//! 2. Each segment loses its matrix parameters: everything from its first `;`.
//! 3. Percent-encodings of unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are
//!    decoded; the others stay encoded, with their hex in upper case (`%2f` is `%2F`), so an
//!    encoded `/` (`%2F`) never becomes a separator. A `%` that is not followed by two hex
//!    digits is a literal percent sign and is written `%25`; a byte that may not appear in a
//!    path segment as it is (a space, a quote, a byte above 0x7E) is written percent-encoded.
//! 4. Dot segments are removed (RFC 3986 §5.2.4), after the decoding, so `%2e%2e` is `..`; a
//!    `..` at the root stays at the root.
//! 5. The result starts with `/` and has no trailing `/`, except the root itself: `/api/users/`
//!    is `/api/users`.
//!
//! Case is kept: paths are case-sensitive (RFC 3986 §6.2.2.1), so `/api/Users` is another
//! endpoint. The output is at most three times the input's length plus one byte (step 3 can
//! triple a byte; every other step shortens), and the work is linear in the input.

/// The percent-encoding of a byte's hex digits, upper case.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// What a path segment may hold unencoded (RFC 3986 §3.3 `pchar`, less `%`, which step 3
/// handles, and `;`, which step 2 has cut): unreserved, sub-delims, `:` and `@`.
fn segment_byte(b: u8) -> bool {
    unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_encoded(b: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Steps 2 and 3 for one segment: its bytes up to the first `;`, percent-encodings in their
/// one spelling, appended to `out`.
fn push_segment(segment: &[u8], out: &mut Vec<u8>) {
    let segment = match segment.iter().position(|&b| b == b';') {
        Some(i) => &segment[..i],
        None => segment,
    };
    let mut i = 0;
    while i < segment.len() {
        let b = segment[i];
        if b == b'%' {
            let hi = segment.get(i + 1).copied().and_then(hex_value);
            let lo = segment.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                let decoded = (hi << 4) | lo;
                if unreserved(decoded) {
                    out.push(decoded);
                } else {
                    push_encoded(decoded, out);
                }
                i += 3;
                continue;
            }
            push_encoded(b'%', out);
        } else if segment_byte(b) {
            out.push(b);
        } else {
            push_encoded(b, out);
        }
        i += 1;
    }
}

/// Append the one spelling of `path` (a request path without its query or fragment) to `out`.
/// See the module's documentation for the rules.
pub fn normalize_into(path: &[u8], out: &mut Vec<u8>) {
    let root = out.len();
    // Where each segment written so far starts (at its `/`), for `..` to take it back.
    let mut starts: Vec<usize> = Vec::new();
    for raw in path.split(|&b| b == b'/') {
        let start = out.len();
        out.push(b'/');
        push_segment(raw, out);
        match &out[start + 1..] {
            // Step 1: an empty segment (`//`, a trailing `/`, or only parameters) is dropped.
            b"" | b"." => out.truncate(start),
            b".." => {
                out.truncate(start);
                if let Some(previous) = starts.pop() {
                    out.truncate(previous);
                }
            }
            _ => starts.push(start),
        }
    }
    if out.len() == root {
        out.push(b'/');
    }
}

/// The one spelling of `path`, as a new vector.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    normalize_into(path, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        String::from_utf8(normalize(path.as_bytes())).expect("the output is ASCII")
    }

    #[test]
    fn spellings_of_one_path_are_one() {
        for (input, want) in [
            ("/api/users", "/api/users"),
            ("/api//users", "/api/users"),
            ("//api///users//", "/api/users"),
            ("/api/./users", "/api/users"),
            ("/api/users/", "/api/users"),
            ("/api/users/.", "/api/users"),
            ("/api/%75sers", "/api/users"),
            ("/api/%55sers", "/api/Users"),
            ("/api/users;x", "/api/users"),
            ("/api;v=1/users;jsessionid=abc", "/api/users"),
            ("/api/v2/../users", "/api/users"),
            ("/api/v2/..", "/api"),
            ("/api/v2/%2e%2E/users", "/api/users"),
            ("/api/v2/..;x/users", "/api/users"),
            ("/api/%7Eme/%2d%2E%5f", "/api/~me/-._"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
        ] {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn reserved_encodings_stay_encoded_in_upper_case() {
        for (input, want) in [
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%3bb", "/a%3Bb"),
            ("/a%3fb", "/a%3Fb"),
            ("/%25", "/%25"),
            ("/%e2%82%ac", "/%E2%82%AC"),
            ("/%00", "/%00"),
            ("/a%2f..%2fb", "/a%2F..%2Fb"),
        ] {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn bytes_a_segment_cannot_hold_are_encoded_and_a_lone_percent_is_a_percent() {
        for (input, want) in [
            ("/a b", "/a%20b"),
            ("/a%20b", "/a%20b"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\"<>\\^`{|}", "/a%22%3C%3E%5C%5E%60%7B%7C%7D"),
            ("/100%", "/100%25"),
            ("/%zz", "/%25zz"),
            ("/%2", "/%252"),
            ("/%%41", "/%25A"),
            ("/keep!$&'()*+,=:@", "/keep!$&'()*+,=:@"),
        ] {
            assert_eq!(norm(input), want, "{input}");
        }
        assert_eq!(normalize(b"/\x00\xff\r\n"), b"/%00%FF%0D%0A");
    }

    #[test]
    fn case_is_kept() {
        assert_eq!(norm("/API/Users"), "/API/Users");
        assert_ne!(norm("/api/Users"), norm("/api/users"));
    }

    #[test]
    fn hostile_paths_stay_under_the_root() {
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("//////", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/../../../etc", "/etc"),
            ("%2e%2e/", "/"),
            ("/%2e%2e/%2e%2e/etc", "/etc"),
            ("..", "/"),
            ("api/users", "/api/users"),
            (";", "/"),
            ("/;/;x/", "/"),
            ("*", "/*"),
        ] {
            assert_eq!(norm(input), want, "{input:?}");
        }
    }

    #[test]
    fn output_is_bounded_and_idempotent() {
        let long_dots = "/..".repeat(100_000);
        let long_slashes = "/".repeat(100_000);
        let long_segment = format!("/{}", "\u{ff}".repeat(50_000));
        let deep = "/a".repeat(100_000);
        for input in [&long_dots, &long_slashes, &long_segment, &deep] {
            let out = normalize(input.as_bytes());
            assert!(out.len() <= 3 * input.len() + 1);
            assert_eq!(normalize(&out), out, "normalising twice changes nothing");
        }
        assert_eq!(normalize(long_dots.as_bytes()), b"/");
        assert_eq!(normalize(deep.as_bytes()).len(), deep.len());
    }

    #[test]
    fn appends_after_what_the_buffer_holds() {
        let mut out = b"GET ".to_vec();
        normalize_into(b"/a/../../b/", &mut out);
        assert_eq!(out, b"GET /b");
        let mut out = b"GET ".to_vec();
        normalize_into(b"/..", &mut out);
        assert_eq!(out, b"GET /");
    }
}
