//! Parsing and printing sizes (`64KiB`), file modes (`0660`) and durations.

/// Parses a byte count: a plain number, or one followed by a binary suffix
/// (`K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB`, any case; `KB` etc. are
/// also powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let bad = || format!("{s:?} is not a size (use a number of bytes, or e.g. 64KiB, 1MiB)");
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a permission mode in octal: `0660`, `660` or `0o660`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")).unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if !digits.is_empty() && m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not a permission mode in octal between 0 and 0777 (e.g. 0660)")),
    }
}

/// Parses a non-negative number of seconds (`2`, `0.5`).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// `1048576` as `1 MiB`, `1000` as `1000 B`, `98304` as `96 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut v = n;
    while unit + 1 < UNITS.len() && v >= 1024 && v.is_multiple_of(1024) {
        v /= 1024;
        unit += 1;
    }
    if unit == 0 && n >= 10 * 1024 {
        // Not a whole number of KiB: one decimal is enough to read it.
        let mut f = n as f64;
        let mut u = 0;
        while u + 1 < UNITS.len() && f >= 1024.0 {
            f /= 1024.0;
            u += 1;
        }
        return format!("{f:.1} {}", UNITS[u]);
    }
    format!("{v} {}", UNITS[unit])
}

/// A byte count with its readable form: `65536 (64 KiB)`.
pub fn bytes_both(n: u64) -> String {
    if n >= 1024 {
        format!("{n} ({})", human_bytes(n))
    } else {
        n.to_string()
    }
}

/// A size as given on the command line, with its readable form when that
/// helps: `6000 bytes (5.9 KiB)`, `0 bytes`, `65536 bytes (64 KiB)`.
pub fn size_arg(n: u64) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    let exact = human_bytes(n);
    let readable = if exact.ends_with(" B") {
        // Not a whole number of KiB and under 10 KiB: human_bytes keeps bytes.
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        exact
    };
    format!("{n} bytes ({readable})")
}

/// Nanoseconds for a person: `850 ns`, `12.3 µs`, `4.10 ms`.
pub fn human_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

/// A rate for a person: `950`, `12.4 k`, `3.21 M`.
pub fn human_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else if per_sec >= 1e4 {
        format!("{:.1} k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("12 apples").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(bytes_both(65536), "65536 (64 KiB)");
        assert_eq!(human_ns(850), "850 ns");
        assert_eq!(human_ns(12_345), "12.3 µs");
        assert_eq!(size_arg(6000), "6000 bytes (5.9 KiB)");
        assert_eq!(size_arg(0), "0 bytes");
        assert_eq!(size_arg(1 << 20), "1048576 bytes (1 MiB)");
    }
}
