//! "Did you mean ...?" for unknown keys, enum values, disk ids, service names and includes.

/// The closest candidate to `input`, when one is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input_lower = input.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != input)
        .map(|c| (strsim::jaro_winkler(&input_lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

/// `Some("did you mean `x`?")` when a candidate is close.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(closest("servies", ["services", "actions", "logs"]), Some("services"));
        assert_eq!(closest("Stop", ["start", "stop", "readiness"]), Some("stop"));
        assert_eq!(closest("timout", ["timing", "timeout"]), Some("timeout"));
        assert_eq!(closest("zzzz", ["services", "actions"]), None);
    }
}
