//! Software versions as inventories and plans write them (dotted numbers: `10.2`, `15.0.4`),
//! and the constraints `version` checks state about them (`>=15.0.4`, `=12.1`, `<3`).

use std::cmp::Ordering;
use std::fmt;

/// A dotted numeric version. Missing parts compare as zero: `12` = `12.0` = `12.0.0`.
#[derive(Clone, Debug)]
pub struct Version {
    parts: Vec<u64>,
}

impl Version {
    /// A version such as `15.0.4`, or why it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Option<Vec<u64>> = text
            .split('.')
            .map(|p| if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) { p.parse().ok() } else { None })
            .collect();
        match parts {
            Some(parts) => Ok(Self { parts }),
            None => Err(format!("`{text}` is not a version; write dotted numbers such as 15.0.4")),
        }
    }

    /// The first number.
    pub fn major(&self) -> u64 {
        self.parts[0]
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.parts.len().max(other.parts.len());
        (0..len).map(|i| self.part(i).cmp(&other.part(i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.parts.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// The comparison of a [`Constraint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// `>=15.0.4`: an operator and a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    pub version: Version,
}

impl Constraint {
    /// A constraint such as `>=15.0.4`, or why it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (op, rest) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt), ("=", Op::Eq)]
            .into_iter()
            .find_map(|(prefix, op)| text.strip_prefix(prefix).map(|rest| (op, rest)))
            .ok_or_else(|| format!("`{text}` does not start with one of >=, >, <=, <, ="))?;
        let version = Version::parse(rest.trim()).map_err(|why| format!("in `{text}`: {why}"))?;
        Ok(Self { op, version })
    }

    /// Whether `version` meets the constraint.
    pub fn allows(&self, version: &Version) -> bool {
        let order = version.cmp(&self.version);
        match self.op {
            Op::Ge => order.is_ge(),
            Op::Gt => order.is_gt(),
            Op::Le => order.is_le(),
            Op::Lt => order.is_lt(),
            Op::Eq => order.is_eq(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_part_by_part_and_constraints_read_their_operator() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("10.10") > v("10.9"));
        assert_eq!(v("12"), v("12.0.0"));
        assert_eq!(v("15.0.4").major(), 15);
        for bad in ["", "1.", ".1", "1.x", "v1", "1 .2", "-1"] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
        let c = |s| Constraint::parse(s).unwrap();
        assert!(c(">=15.0.4").allows(&v("15.0.4")) && !c(">=15.0.4").allows(&v("15.0.3")));
        assert!(c(">15").allows(&v("15.0.1")) && !c(">15").allows(&v("15.0")));
        assert!(c("<=3").allows(&v("3.0")) && !c("<3").allows(&v("3")));
        assert!(c("=12.1").allows(&v("12.1.0")) && !c("=12.1").allows(&v("12.2")));
        assert_eq!(c(">= 2.1").op, Op::Ge);
        for bad in ["15", "~1.2", ">=", "=>1", ">=1.2-beta"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
