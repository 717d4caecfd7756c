//! [`TensorMismatch`]: which named tensors a model has and a file lacks, has in excess, or
//! holds with another shape. Checkpoints, encoder exports and optimiser state are all
//! checked with it before anything is loaded, and its message names what differs.

use std::collections::BTreeMap;
use std::fmt;

/// Tensors that one side has and the other lacks, or has with another shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorMismatch {
    /// Expected, not found.
    pub missing: Vec<String>,
    /// Found, not expected.
    pub unexpected: Vec<String>,
    /// `(name, expected shape, found shape)`.
    pub shapes: Vec<(String, Vec<i64>, Vec<i64>)>,
}

impl TensorMismatch {
    /// Compares `found` against `expected` (names and shapes), each list sorted by name.
    pub fn between(expected: &[(String, Vec<i64>)], found: &[(String, Vec<i64>)]) -> Self {
        let want: BTreeMap<&str, &Vec<i64>> =
            expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let got: BTreeMap<&str, &Vec<i64>> = found.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let mut m = TensorMismatch::default();
        for (name, shape) in &want {
            match got.get(name) {
                None => m.missing.push(name.to_string()),
                Some(s) if s != shape => {
                    m.shapes.push((name.to_string(), (*shape).clone(), (*s).clone()))
                }
                Some(_) => {}
            }
        }
        m.unexpected =
            got.keys().filter(|n| !want.contains_key(*n)).map(|n| n.to_string()).collect();
        m
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shapes.is_empty()
    }
}

/// How many names of each kind a message lists.
const SHOWN: usize = 5;

fn name_list(names: &[String]) -> String {
    let mut s = names.iter().take(SHOWN).map(String::as_str).collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", and {} more", names.len() - SHOWN));
    }
    s
}

impl fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.shapes.is_empty() {
            let shown: Vec<String> = self
                .shapes
                .iter()
                .take(SHOWN)
                .map(|(n, want, got)| format!("{n} is {got:?} there but {want:?} here"))
                .collect();
            let more = self.shapes.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(", and {more} more") } else { String::new() };
            parts.push(format!(
                "{} with another shape ({}{more})",
                self.shapes.len(),
                shown.join("; ")
            ));
        }
        if !self.missing.is_empty() {
            parts.push(format!("{} missing ({})", self.missing.len(), name_list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} not in this model ({})",
                self.unexpected.len(),
                name_list(&self.unexpected)
            ));
        }
        write!(f, "tensors differ: {}", parts.join("; "))
    }
}
