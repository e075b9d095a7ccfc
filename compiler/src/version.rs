//! Software versions and version constraints, as plans write them (`versions.from`, a
//! `version` check's `>=15.0.4`): dotted numbers compared component by component, a missing
//! component counting as 0 (`15.0` = `15.0.0`). The compiler checks their syntax; the runtime
//! compares what a platform reports with them.

use std::cmp::Ordering;
use std::fmt;

/// A dotted numeric version (`15.0.4`). Shown as written; compared with missing components as 0.
#[derive(Clone, Debug)]
pub struct Version {
    parts: Vec<u64>,
}

/// Reads a dotted numeric version: one or more decimal numbers separated by dots.
pub fn parse(text: &str) -> Result<Version, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("a version is empty".into());
    }
    let parts = trimmed
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{trimmed:?} is not a version: write dotted numbers, like 15.0.4"));
            }
            part.parse::<u64>().map_err(|_| format!("{trimmed:?} is not a version: {part} is too large"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Version { parts })
}

impl Version {
    /// [`parse`], as an associated function.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse(text)
    }

    /// The first component (`15` of `15.0.4`).
    pub fn major(&self) -> u64 {
        self.parts[0]
    }

    /// The components as written.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }

    /// Whether this version is in the series `series` names: `10.2`, `10.2.0` and `10.2.7` are
    /// in `10.2`; `10.3` and `10` are not (`10` is `10.0`).
    pub fn is_in(&self, series: &Version) -> bool {
        (0..series.parts.len()).all(|i| self.part(i) == series.parts[i])
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        (0..len).map(|i| self.part(i).cmp(&other.part(i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// How a constraint compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AtLeast,
    Above,
    AtMost,
    Below,
    Exactly,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtLeast => ">=",
            Self::Above => ">",
            Self::AtMost => "<=",
            Self::Below => "<",
            Self::Exactly => "=",
        }
    }
}

/// A version constraint: an operator and a version (`>=15.0.4`, `=12.1`, `<3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    pub version: Version,
}

impl Constraint {
    /// Reads `OP VERSION`, `OP` one of `>=`, `>`, `<=`, `<`, `=` (spaces around are allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        // Two-character operators first: `>=` is not `>` followed by `=15`.
        let op = [Op::AtLeast, Op::AtMost, Op::Above, Op::Below, Op::Exactly]
            .into_iter()
            .find(|op| trimmed.starts_with(op.as_str()))
            .ok_or_else(|| {
                format!("{trimmed:?} is not a version constraint: start it with >=, >, <=, < or =, like >=15.0.4")
            })?;
        let version = parse(&trimmed[op.as_str().len()..])
            .map_err(|why| format!("{trimmed:?} is not a version constraint: {why}"))?;
        Ok(Self { op, version })
    }

    /// Whether `version` meets the constraint.
    pub fn matches(&self, version: &Version) -> bool {
        let order = version.cmp(&self.version);
        match self.op {
            Op::AtLeast => order.is_ge(),
            Op::Above => order.is_gt(),
            Op::AtMost => order.is_le(),
            Op::Below => order.is_lt(),
            Op::Exactly => order.is_eq(),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op.as_str(), self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        parse(text).unwrap()
    }

    #[test]
    fn versions_compare_component_by_component_with_missing_components_as_zero() {
        assert!(v("15.0.4") > v("15.0.2"));
        assert!(v("15.10") > v("15.9"), "numbers, not text");
        assert_eq!(v("15.0"), v("15.0.0"));
        assert!(v("15") < v("15.0.1"));
        assert_eq!(v("10.2.3").major(), 10);
        assert_eq!(v(" 10.02 ").to_string(), "10.2");
        assert_eq!(v("7").parts(), [7]);
    }

    #[test]
    fn malformed_versions_are_refused_with_the_reason() {
        for bad in ["", "  ", "1.", ".1", "1..2", "1.x", "v1", "1.2-beta", "-1", "99999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse("1.x").unwrap_err(), "\"1.x\" is not a version: write dotted numbers, like 15.0.4");
        assert_eq!(parse("").unwrap_err(), "a version is empty");
    }

    #[test]
    fn a_series_holds_its_point_releases() {
        assert!(v("10.2").is_in(&v("10.2")));
        assert!(v("10.2.7").is_in(&v("10.2")));
        assert!(v("10.2.0").is_in(&v("10.2")));
        assert!(!v("10.3").is_in(&v("10.2")));
        assert!(!v("10").is_in(&v("10.2")));
        assert!(!v("10.1.3").is_in(&v("10.2")));
        assert!(v("10").is_in(&v("10.0")));
    }

    #[test]
    fn constraints_compare_as_their_operator_says() {
        let cases = [
            (">=15.0.4", "15.0.4", true),
            (">=15.0.4", "15.0.2", false),
            (">=15.0.4", "16", true),
            (">15.0", "15.0.0", false),
            (">15.0", "15.0.1", true),
            ("<=12.1", "12.1.0", true),
            ("<=12.1", "12.1.1", false),
            ("<3", "2.99", true),
            ("<3", "3", false),
            ("=12.1", "12.1.0", true),
            ("=12.1", "12.1.1", false),
            (" >= 1.2 ", "1.2", true),
        ];
        for (constraint, version, expected) in cases {
            let c = Constraint::parse(constraint).unwrap();
            assert_eq!(c.matches(&v(version)), expected, "{constraint} on {version}");
        }
        assert_eq!(Constraint::parse(">= 15.0.4").unwrap().to_string(), ">=15.0.4");
        assert_eq!(Constraint::parse("<3").unwrap().op, Op::Below);
    }

    #[test]
    fn malformed_constraints_are_refused_with_the_reason() {
        assert_eq!(
            Constraint::parse("15.0.4").unwrap_err(),
            "\"15.0.4\" is not a version constraint: start it with >=, >, <=, < or =, like >=15.0.4"
        );
        assert_eq!(Constraint::parse(">=").unwrap_err(), "\">=\" is not a version constraint: a version is empty");
        for bad in ["", "=>15", "~1.2", ">=1.x", "==1"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
