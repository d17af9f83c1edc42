//! The platform's emission sources and how a BAR group key names one of them.
//!
//! A group key is `orgFullName + " : " + emissionSourceName`; the platform's `EsFullName` writes
//! the same path with `/`. Both are brought to one form before an exact comparison:
//!
//! 1. every `:` becomes `/` (on both sides, so the comparison is symmetric);
//! 2. the text is split at `/` and each segment is trimmed of surrounding whitespace (any
//!    Unicode white space, any amount): `Org : Site : Source 1`, `Org/Site/Source 1` and
//!    ` Org /Site/ Source 1 ` are the same path;
//! 3. nothing else changes: case, and white space inside a name (`Source  1` has two spaces),
//!    are significant, and an empty segment (`Org//Source`) stays empty.
//!
//! The normalised forms must be equal: `Source 1` never matches `Source 10`, and `Site/Source`
//! never matches `Org/Site/Source`. One source matching is a match; none or several are
//! reported as such and never resolved by guessing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An emission source's id exactly as the platform wrote it (a number or a string), sent back
/// unchanged as `esId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EsId(pub Value);

impl std::fmt::Display for EsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Value::String(s) => f.write_str(s),
            other => write!(f, "{other}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmissionSource {
    /// `EsSID`.
    pub id: EsId,
    /// `EsFullName`: the organisation path and the source's name, `/`-separated.
    pub full_name: String,
}

/// Which emission source a group key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    One(EmissionSource),
    None,
    /// Several sources have the same normalised name: they are listed, none is chosen.
    Ambiguous(Vec<EmissionSource>),
}

/// The comparison form of a key or an `EsFullName` (see the module documentation).
pub fn normalise(path: &str) -> String {
    path.split([':', '/'])
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("/")
}

/// The source `key` names among `sources`.
pub fn match_source(key: &str, sources: &[EmissionSource]) -> Match {
    let wanted = normalise(key);
    let mut found: Vec<EmissionSource> = sources
        .iter()
        .filter(|s| normalise(&s.full_name) == wanted)
        .cloned()
        .collect();
    match found.len() {
        0 => Match::None,
        1 => Match::One(found.remove(0)),
        _ => Match::Ambiguous(found),
    }
}

/// Reads `{"GetAllESs":{"Results":{"EmissionSources":[{"EsSID","EsFullName"},…]}}}`. An entry
/// without an id or a name is an error, not skipped: a silently shorter list could turn an
/// ambiguous key into a wrong match.
pub fn parse_emission_sources(v: &Value) -> Result<Vec<EmissionSource>, String> {
    let list = v
        .pointer("/GetAllESs/Results/EmissionSources")
        .ok_or("it has no GetAllESs.Results.EmissionSources")?
        .as_array()
        .ok_or("GetAllESs.Results.EmissionSources is not a list")?;
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let id = match e.get("EsSID") {
                Some(id @ (Value::String(_) | Value::Number(_))) => EsId(id.clone()),
                _ => return Err(format!("emission source {i} has no EsSID")),
            };
            let full_name = e
                .get("EsFullName")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("emission source {i} has no EsFullName"))?
                .to_string();
            Ok(EmissionSource { id, full_name })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(id: i64, name: &str) -> EmissionSource {
        EmissionSource {
            id: EsId(json!(id)),
            full_name: name.into(),
        }
    }

    fn sources() -> Vec<EmissionSource> {
        vec![
            source(1, "Acme/Plant North/Source 1"),
            source(10, "Acme/Plant North/Source 10"),
            source(2, "Acme/Plant South/Boiler"),
            source(3, "Acme/Plant South/Boiler "),
            source(4, "Other/Site/Source 1"),
            source(5, "Acme/Plant  East/Flare"),
        ]
    }

    #[test]
    fn a_key_matches_the_source_with_the_same_path() {
        assert_eq!(
            match_source("Acme : Plant North : Source 1", &sources()),
            Match::One(source(1, "Acme/Plant North/Source 1"))
        );
        assert_eq!(
            match_source("Acme : Plant North : Source 10", &sources()),
            Match::One(source(10, "Acme/Plant North/Source 10"))
        );
        // White space around separators, and at the ends, does not count.
        assert_eq!(
            match_source("  Acme:Plant North  :   Source 1\t", &sources()),
            Match::One(source(1, "Acme/Plant North/Source 1"))
        );
    }

    #[test]
    fn never_by_substring_prefix_or_suffix() {
        assert_eq!(
            match_source("Acme : Plant North : Source", &sources()),
            Match::None
        );
        assert_eq!(
            match_source("Plant North : Source 1", &sources()),
            Match::None
        );
        assert_eq!(
            match_source("Acme : Plant North : Source 100", &sources()),
            Match::None
        );
        assert_eq!(
            match_source("Acme : Plant : Source 1", &sources()),
            Match::None
        );
        assert_eq!(match_source("", &sources()), Match::None);
    }

    #[test]
    fn case_and_inner_white_space_are_significant() {
        assert_eq!(
            match_source("acme : plant north : source 1", &sources()),
            Match::None
        );
        assert_eq!(
            match_source("Acme : Plant North : Source  1", &sources()),
            Match::None
        );
        assert_eq!(
            match_source("Acme : Plant  East : Flare", &sources()),
            Match::One(source(5, "Acme/Plant  East/Flare"))
        );
        assert_eq!(
            match_source("Acme : Plant East : Flare", &sources()),
            Match::None
        );
    }

    #[test]
    fn names_equal_after_normalising_are_ambiguous() {
        match match_source("Acme : Plant South : Boiler", &sources()) {
            Match::Ambiguous(c) => {
                let ids: Vec<String> = c.iter().map(|s| s.id.to_string()).collect();
                assert_eq!(ids, ["2", "3"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_segments_are_kept() {
        assert_eq!(normalise("A//B"), "A//B");
        assert_eq!(normalise("A : : B"), "A//B");
        assert_ne!(normalise("A//B"), normalise("A/B"));
    }

    #[test]
    fn get_all_ess_is_read_with_ids_as_written() {
        let v = json!({"GetAllESs": {"Results": {"EmissionSources": [
            {"EsSID": 17, "EsFullName": "Acme/Source 1"},
            {"EsSID": "es-9", "EsFullName": "Acme/Source 2", "Other": true},
        ]}}});
        let s = parse_emission_sources(&v).unwrap();
        assert_eq!(s[0].id, EsId(json!(17)));
        assert_eq!(s[1].id.to_string(), "es-9");
        assert_eq!(s[1].full_name, "Acme/Source 2");

        let missing = json!({"GetAllESs": {"Results": {"EmissionSources": [{"EsSID": 1}]}}});
        assert!(
            parse_emission_sources(&missing)
                .unwrap_err()
                .contains("EsFullName")
        );
        assert!(parse_emission_sources(&json!({"GetAllESs": {}})).is_err());
    }
}
