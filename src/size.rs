//! Byte counts as people write them in flags and CONFIG SET: `256mb`, `2gb`, `65536`.

/// A byte count given as `<n>[b|kb|mb|gb]` (case-insensitive; powers of 1024, as Redis reads
/// maxmemory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory(pub u64);

pub fn parse_memory(text: &str) -> Result<Memory, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 256mb"))?;
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(format!("unknown unit in '{text}': use b, kb, mb or gb")),
    };
    n.checked_mul(mult)
        .map(Memory)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_units_in_powers_of_1024() {
        assert_eq!(parse_memory("65536"), Ok(Memory(65536)));
        assert_eq!(parse_memory("64KB"), Ok(Memory(64 << 10)));
        assert_eq!(parse_memory("32mb"), Ok(Memory(32 << 20)));
        assert_eq!(parse_memory("2g"), Ok(Memory(2 << 30)));
        assert!(parse_memory("1xb").is_err());
        assert!(parse_memory("-1").is_err());
        assert!(parse_memory("").is_err());
        assert!(parse_memory("99999999999999gb").is_err());
    }
}
