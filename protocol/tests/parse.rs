//! Argument parsing: the `Parse` cursor, Redis-compatible integers, rates, periods and glob
//! patterns.

use ratelimitd_protocol::parse::{
    format_period, glob_match, parse_i64, parse_rate, parse_u64, Parse, ParseError, RateSpec,
};

fn args<'a>(list: &[&'a str]) -> Vec<&'a [u8]> {
    list.iter().map(|s| s.as_bytes()).collect()
}

#[test]
fn i64_follows_string2ll() {
    let cases: &[(&str, Option<i64>)] = &[
        ("0", Some(0)),
        ("1", Some(1)),
        ("-1", Some(-1)),
        ("123", Some(123)),
        ("9223372036854775807", Some(i64::MAX)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("9223372036854775808", None),
        ("-9223372036854775809", None),
        ("99999999999999999999999", None),
        ("", None),
        ("-", None),
        ("-0", None),
        ("00", None),
        ("01", None),
        ("-01", None),
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("1a", None),
        ("1.0", None),
        ("0x10", None),
        ("--1", None),
    ];
    for &(input, want) in cases {
        assert_eq!(parse_i64(input.as_bytes()), want, "{input:?}");
    }
}

#[test]
fn rates() {
    let r = |count, period_ms| Some(RateSpec { count, period_ms });
    let cases: &[(&str, Option<RateSpec>)] = &[
        ("5/1s", r(5, 1000)),
        ("10/500ms", r(10, 500)),
        ("1000/1h", r(1000, 3_600_000)),
        ("2/3d", r(2, 259_200_000)),
        ("7/15m", r(7, 900_000)),
        ("7/15M", r(7, 900_000)),
        ("5/1S", r(5, 1000)),
        ("10/500MS", r(10, 500)),
        ("10/500Ms", r(10, 500)),
        ("0/0s", r(0, 0)),
        ("05/01s", r(5, 1000)),
        ("18446744073709551615/1ms", r(u64::MAX, 1)),
        ("18446744073709551616/1ms", None),
        ("1/18446744073709551615s", None),
        ("1/213503982335d", None),
        ("1/213503982334d", r(1, 213_503_982_334 * 86_400_000)),
        ("", None),
        ("5", None),
        ("5/", None),
        ("/1s", None),
        ("5/s", None),
        ("5/1", None),
        ("5/1x", None),
        ("5/1sec", None),
        ("5/1 s", None),
        (" 5/1s", None),
        ("-5/1s", None),
        ("+5/1s", None),
        ("5/-1s", None),
        ("5/1s/", None),
        ("5//1s", None),
        ("5/1.5s", None),
    ];
    for &(input, want) in cases {
        assert_eq!(parse_rate(input.as_bytes()), want, "{input:?}");
    }
}

#[test]
fn periods() {
    let cases: &[(u64, &str)] = &[
        (0, "0ms"),
        (1, "1ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1500ms"),
        (90_000, "90s"),
        (60_000, "1m"),
        (900_000, "15m"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
        (86_400_000, "1d"),
        (259_200_000, "3d"),
        (u64::MAX, "18446744073709551615ms"),
    ];
    for &(ms, want) in cases {
        assert_eq!(format_period(ms), want, "{ms}");
        let rate = format!("1/{want}");
        assert_eq!(
            parse_rate(rate.as_bytes()).map(|r| r.period_ms),
            Some(ms),
            "round trip {ms}"
        );
    }
}

#[test]
fn globs() {
    let cases: &[(&str, &str, bool)] = &[
        ("*", "", true),
        ("*", "anything", true),
        ("", "", true),
        ("", "a", false),
        ("a", "a", true),
        ("a", "A", false),
        ("a*", "abc", true),
        ("*c", "abc", true),
        ("a*c", "ac", true),
        ("a*c", "abxc", true),
        ("a*c", "abxcd", false),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXcYb", false),
        ("**", "x", true),
        ("*?", "", false),
        ("?", "x", true),
        ("?", "", false),
        ("??", "x", false),
        ("h?llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-c]llo", "hbllo", true),
        ("h[a-c]llo", "hdllo", false),
        ("h[c-a]llo", "hbllo", true),
        ("[\\]]", "]", true),
        ("[]", "a", false),
        ("[abc", "a", true),
        ("[abc", "ab", false),
        ("[a-]", "-", false),
        ("[a-]", "a", true),
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("a\\", "a\\", true),
        ("user:*:limit", "user:42:limit", true),
        ("user:*:limit", "user:42:other", false),
        (
            "*a*a*a*a*a*a*a*a*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            false,
        ),
    ];
    for &(pattern, text, want) in cases {
        assert_eq!(
            glob_match(pattern.as_bytes(), text.as_bytes()),
            want,
            "{pattern:?} ~ {text:?}"
        );
    }
}

#[test]
fn glob_pathological_pattern_is_safe() {
    let pattern = "*a".repeat(50_000) + "b";
    let text = "a".repeat(2_000);
    assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
    let pattern = "[".repeat(100_000);
    assert!(!glob_match(pattern.as_bytes(), b"x"));
}

#[test]
fn cursor() {
    let list = args(&["RL.Check", "key", "RATE", "5/1s", "42", "-7", "\u{e9}"]);
    let mut p = Parse::new(&list);
    assert_eq!(p.command_name(), "rl.check");
    assert_eq!(p.remaining(), 6);
    assert_eq!(p.next_string(), Ok("key".to_string()));
    assert!(!p.eat_keyword("burst"));
    assert!(p.eat_keyword("rate"));
    assert_eq!(p.next_bytes(), Ok(&b"5/1s"[..]));
    assert_eq!(p.next_u64(), Ok(42));
    assert_eq!(p.finish(), Err(ParseError::WrongArity("rl.check".into())));
    assert_eq!(p.remaining(), 2);
    assert_eq!(p.next_i64(), Ok(-7));
    assert_eq!(p.next_string(), Ok("\u{e9}".to_string()));
    assert_eq!(p.finish(), Ok(()));
    assert_eq!(p.try_next(), None);
    assert_eq!(
        p.next_bytes(),
        Err(ParseError::WrongArity("rl.check".into()))
    );
    assert_eq!(
        p.arity_error().to_string(),
        "ERR wrong number of arguments for 'rl.check' command"
    );
}

/// `parse_u64`, the one unsigned reading of both protocols: digits only, any number of leading
/// zeros (as `strtoull`, behind memcached's fields and Redis's `string2ull`), within u64.
#[test]
fn u64_reads_digits_with_any_leading_zeros() {
    let max = u64::MAX.to_string();
    let max_padded = format!("{:0>30}", u64::MAX);
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"", None),
        (b"0", Some(0)),
        (b"00", Some(0)),
        (b"7", Some(7)),
        (b"007", Some(7)),
        (b"00000000000000000001", Some(1)),
        (b"000000000000000000001", Some(1)),
        (b"000000000000000000000000001", Some(1)),
        (b"000000000000000000000000000", Some(0)),
        (max.as_bytes(), Some(u64::MAX)),
        (max_padded.as_bytes(), Some(u64::MAX)),
        (b"18446744073709551616", None),
        (b"000000000018446744073709551616", None),
        (b"99999999999999999999", None),
        (b"100000000000000000000", None),
        (b"+5", None),
        (b"-5", None),
        (b"-0", None),
        (b"+", None),
        (b"-", None),
        (b" 5", None),
        (b"5 ", None),
        (b"5\t", None),
        (b" ", None),
        (b"5x", None),
        (b"x", None),
        (b"0x10", None),
        (b"1_000", None),
        (b"1.0", None),
        (b"5\0", None),
        ("\u{663}".as_bytes(), None),
    ];
    for &(text, want) in cases {
        let shown = String::from_utf8_lossy(text);
        assert_eq!(parse_u64(text), want, "parse_u64({shown:?})");
        let list = [&b"cmd"[..], text];
        let got = Parse::new(&list).next_u64();
        assert_eq!(got.ok(), want, "next_u64({shown:?})");
    }
}

#[test]
fn cursor_value_errors() {
    let list = args(&["x", "-1", "01", "abc", "18446744073709551616", "-5"]);
    let mut p = Parse::new(&list);
    assert_eq!(p.next_u64(), Err(ParseError::NotInteger));
    assert_eq!(p.next_i64(), Err(ParseError::NotInteger));
    assert_eq!(p.next_i64(), Err(ParseError::NotInteger));
    assert_eq!(p.next_u64(), Err(ParseError::NotInteger));
    assert_eq!(p.next_i64(), Ok(-5));
    assert_eq!(
        ParseError::NotInteger.to_string(),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(ParseError::Syntax.to_string(), "ERR syntax error");

    let bad: Vec<&[u8]> = vec![b"cmd", b"\xff\xfe"];
    let mut p = Parse::new(&bad);
    assert!(
        matches!(p.next_string(), Err(ParseError::Invalid(m)) if m.starts_with("invalid UTF-8"))
    );

    let empty: Vec<&[u8]> = Vec::new();
    let p = Parse::new(&empty);
    assert_eq!(p.remaining(), 0);
    assert_eq!(p.finish(), Ok(()));
}
