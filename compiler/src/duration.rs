//! Durations as plans write them: a whole number and a unit (`500ms`, `30s`, `2m`, `1h`).

/// Longest duration accepted: a week. Anything longer is a typo, and the runtime's timers
/// need a bound.
pub const MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// Milliseconds of a duration such as `30s`, or why it is not one.
pub fn parse(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!("`{text}` is not a duration; write a whole number and a unit: 500ms, 30s, 2m or 1h"));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write a whole number and a unit: 500ms, 30s, 2m or 1h"))?;
    let ms = n
        .checked_mul(scale)
        .filter(|&ms| ms <= MAX_MS)
        .ok_or_else(|| format!("`{text}` is longer than the 7-day maximum"))?;
    if ms == 0 {
        return Err(format!("`{text}` is zero; a timeout must be longer than that"));
    }
    Ok(ms)
}

/// Whether `text` has the shape the schemas accept (`^[0-9]+(ms|s|m|h)$`). Malformed text is
/// reported by schema validation; only a well-formed duration out of range is reported again.
pub fn is_well_formed(text: &str) -> bool {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&text[digits..], "ms" | "s" | "m" | "h")
}

/// The shortest exact spelling of a duration, for summaries.
pub fn format(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_the_rest() {
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("30s"), Ok(30_000));
        assert_eq!(parse("2m"), Ok(120_000));
        assert_eq!(parse("1h"), Ok(3_600_000));
        assert!(parse("0s").unwrap_err().contains("zero"));
        assert!(parse("99999999999999999999h").is_err());
        assert!(parse("200h").unwrap_err().contains("7-day"));
        assert!(parse("5 min").is_err());
        assert!(parse("m").is_err());
        assert_eq!(format(120_000), "2m");
        assert_eq!(format(1500), "1500ms");
        assert!(is_well_formed("0s") && is_well_formed("10ms") && !is_well_formed("5 min") && !is_well_formed("s"));
    }
}
