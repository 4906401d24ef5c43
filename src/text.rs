//! Client-sent bytes made fit for an error line or a log line.
//!
//! Every listener quotes what a client sent back to it (`unknown command 'x'`, `unknown
//! parameter 'y'`), and a client can send anything: invalid UTF-8, control characters, a
//! megabyte. One function makes all of those quotes safe and short, so that no reply or log
//! line can be split or flooded by its input.

/// `b` as lossy UTF-8, at most `max` characters, control characters (CR, LF, ...) as spaces.
pub fn shorten(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_single_lines() {
        assert_eq!(shorten(b"abc", 2), "ab");
        assert_eq!(shorten(b"a\r\nb", 10), "a  b");
        assert_eq!(shorten(&[0xFF, b'x'], 10), "\u{FFFD}x");
    }
}
