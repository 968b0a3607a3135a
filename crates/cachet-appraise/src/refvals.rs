//! Reference values: named sets of allowed values (measurements, PCRs,
//! versions) with expiry, that policies look up by name.
//!
//! A policy sees only the values live at the appraisal instant, as
//! `data.reference_values.NAME` = array of strings. A set whose values have
//! all expired stays visible as an empty array, so expiry can only make an
//! appraisal stricter ("value not allowed"), never looser ("no reference
//! values configured").
//!
//! File format (JSON; TOML with the same structure):
//!
//! ```json
//! {"reference_values": {
//!    "mr_td": {"description": "...", "expires": "2027-01-01T00:00:00Z",
//!              "values": ["4f1c…", {"value": "9a0b…", "expires": "2026-12-01T00:00:00Z",
//!                                   "builder_id": "https://…", "source": "prov.json"}]},
//!    "pcr0": ["…"]
//! }}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::UnixTime;

/// Largest reference-value file read (bytes).
pub const MAX_FILE_LEN: u64 = 16 << 20;
/// Most sets in one collection.
pub const MAX_SETS: usize = 10_000;
/// Most values in one collection, all sets together.
pub const MAX_VALUES: usize = 200_000;
/// Longest set name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest value (a SHA-512 digest is 128 hex digits; version strings are short).
pub const MAX_VALUE_LEN: usize = 1024;

/// Why reference values could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reference values: {0}")]
pub struct RefvalError(pub String);

fn err(msg: impl Into<String>) -> RefvalError {
    RefvalError(msg.into())
}

/// One allowed value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefValue {
    /// The value, normalized (see [`normalize_value`]).
    pub value: String,
    /// After this instant (Unix seconds) the value is no longer allowed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub expires: Option<UnixTime>,
    /// The SLSA builder that produced the artefact, for provenance imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_id: Option<String>,
    /// The digest algorithm, for provenance imports (`sha256`, `sha384`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_alg: Option<String>,
    /// Where the value was imported from (file name, subject name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl RefValue {
    /// A bare value with no expiry or provenance.
    pub fn new(value: &str) -> Result<RefValue, RefvalError> {
        Ok(RefValue { value: normalize_value(value)?, expires: None, builder_id: None, digest_alg: None, source: None })
    }

    /// Whether the value is allowed at `at`.
    pub fn live_at(&self, at: UnixTime) -> bool {
        self.expires.is_none_or(|e| at < e)
    }
}

/// A named set of allowed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefSet {
    /// What the set is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// After this instant no value of the set is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub expires: Option<UnixTime>,
    /// The allowed values.
    #[serde(default)]
    pub values: Vec<RefValue>,
}

impl RefSet {
    /// Whether the set as a whole is still valid at `at`.
    pub fn live_at(&self, at: UnixTime) -> bool {
        self.expires.is_none_or(|e| at < e)
    }

    /// Add a value; a value already present is replaced (a newer import
    /// carries newer expiry and provenance).
    pub fn upsert(&mut self, v: RefValue) {
        match self.values.iter_mut().find(|x| x.value == v.value) {
            Some(slot) => *slot = v,
            None => self.values.push(v),
        }
    }
}

/// A collection of named reference-value sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    sets: BTreeMap<String, RefSet>,
    /// SHA-256 over the canonical JSON; identifies the content for caching.
    fingerprint: [u8; 32],
}

impl ReferenceValues {
    /// An empty collection.
    pub fn new() -> ReferenceValues {
        let mut r = ReferenceValues::default();
        r.refresh();
        r
    }

    /// Build from sets, validating names, values and limits.
    pub fn from_sets(sets: BTreeMap<String, RefSet>) -> Result<ReferenceValues, RefvalError> {
        let mut r = ReferenceValues { sets: BTreeMap::new(), fingerprint: [0; 32] };
        for (name, set) in sets {
            r.insert_set(&name, set)?;
        }
        r.refresh();
        Ok(r)
    }

    /// Parse a reference-value document: JSON, or TOML when `toml` is set
    /// (or when the text is not JSON). See the module documentation.
    pub fn parse(text: &str, toml: bool) -> Result<ReferenceValues, RefvalError> {
        let doc: serde_json::Value = if toml || serde_json::from_str::<serde_json::Value>(text).is_err() {
            let table: toml::Table = toml::from_str(text).map_err(|e| err(format!("not JSON, and not TOML: {e}")))?;
            toml_to_json(toml::Value::Table(table))
        } else {
            serde_json::from_str(text).map_err(|e| err(format!("JSON: {e}")))?
        };
        Self::from_document(&doc)
    }

    /// Build from a parsed JSON document (`{"reference_values": {...}}`, or
    /// the map of sets itself).
    pub fn from_document(doc: &serde_json::Value) -> Result<ReferenceValues, RefvalError> {
        let obj = doc.as_object().ok_or_else(|| err("the document must be an object"))?;
        let sets = match obj.get("reference_values") {
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(err("`reference_values` must be an object of named sets")),
            None => obj,
        };
        let mut out = BTreeMap::new();
        for (name, v) in sets {
            out.insert(name.clone(), parse_set(name, v)?);
        }
        Self::from_sets(out)
    }

    /// The canonical JSON document (what [`ReferenceValues::parse`] reads).
    pub fn to_document(&self) -> serde_json::Value {
        let sets: serde_json::Map<_, _> = self.sets.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default())).collect();
        serde_json::json!({ "reference_values": sets })
    }

    /// The sets, by name.
    pub fn sets(&self) -> &BTreeMap<String, RefSet> {
        &self.sets
    }

    /// Number of values over all sets.
    pub fn value_count(&self) -> usize {
        self.sets.values().map(|s| s.values.len()).sum()
    }

    /// Add or replace a whole set.
    pub fn insert_set(&mut self, name: &str, set: RefSet) -> Result<(), RefvalError> {
        check_name(name)?;
        if !self.sets.contains_key(name) && self.sets.len() >= MAX_SETS {
            return Err(err(format!("more than {MAX_SETS} sets")));
        }
        let total = self.value_count() - self.sets.get(name).map_or(0, |s| s.values.len()) + set.values.len();
        if total > MAX_VALUES {
            return Err(err(format!("more than {MAX_VALUES} values")));
        }
        self.sets.insert(name.to_string(), set);
        self.refresh();
        Ok(())
    }

    /// Add values to the named set (created if absent).
    pub fn add_values(&mut self, name: &str, values: Vec<RefValue>) -> Result<(), RefvalError> {
        let mut set = self.sets.get(name).cloned().unwrap_or_default();
        for v in values {
            set.upsert(v);
        }
        self.insert_set(name, set)
    }

    /// Merge another collection into this one: values are added to sets of
    /// the same name; a set-level expiry or description in `other` wins.
    pub fn merge(&mut self, other: &ReferenceValues) -> Result<(), RefvalError> {
        for (name, theirs) in &other.sets {
            let mut set = self.sets.get(name).cloned().unwrap_or_default();
            if theirs.expires.is_some() {
                set.expires = theirs.expires;
            }
            if theirs.description.is_some() {
                set.description = theirs.description.clone();
            }
            for v in &theirs.values {
                set.upsert(v.clone());
            }
            self.insert_set(name, set)?;
        }
        Ok(())
    }

    /// Remove a set; returns whether it existed.
    pub fn remove_set(&mut self, name: &str) -> bool {
        let had = self.sets.remove(name).is_some();
        self.refresh();
        had
    }

    /// SHA-256 of the canonical JSON.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Identifies the content live at `at`: equal keys mean equal
    /// [`ReferenceValues::live_data`], so a prepared policy engine can be
    /// reused without rebuilding the data document.
    pub fn live_key(&self, at: UnixTime) -> [u8; 32] {
        let mut keyed = self.fingerprint.to_vec();
        for (i, set) in self.sets.values().enumerate() {
            let set_live = set.live_at(at);
            for (j, v) in set.values.iter().enumerate() {
                if !(set_live && v.live_at(at)) {
                    keyed.extend_from_slice(&(i as u64).to_le_bytes());
                    keyed.extend_from_slice(&(j as u64).to_le_bytes());
                }
            }
        }
        sha256(&keyed)
    }

    /// What a policy sees at `at`: `{"reference_values": {name: [values]}}`
    /// with expired values (and all values of expired sets) removed and
    /// every set name kept.
    pub fn live_data(&self, at: UnixTime) -> serde_json::Value {
        let sets: serde_json::Map<_, _> = self
            .sets
            .iter()
            .map(|(name, set)| {
                let vals = set
                    .values
                    .iter()
                    .filter(|v| set.live_at(at) && v.live_at(at))
                    .map(|v| serde_json::Value::String(v.value.clone()))
                    .collect();
                (name.clone(), serde_json::Value::Array(vals))
            })
            .collect();
        serde_json::json!({ "reference_values": sets })
    }

    fn refresh(&mut self) {
        let doc = self.to_document();
        self.fingerprint = sha256(doc.to_string().as_bytes());
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Set names: letters, digits, `_`, `-`, `.`; at most [`MAX_NAME_LEN`].
/// They appear in policies as `data.reference_values.NAME` (or
/// `data.reference_values["NAME"]`).
pub fn check_name(name: &str) -> Result<(), RefvalError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(err(format!("set name {name:?} must have 1 to {MAX_NAME_LEN} characters")));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(err(format!("set name {name:?} may only contain letters, digits, '_', '-' and '.'")));
    }
    Ok(())
}

/// Normalize a value as policies compare it: surrounding space removed, and
/// hexadecimal strings (optionally `0x`-prefixed) in lowercase without the
/// prefix — the form the verifiers print measurements in.
pub fn normalize_value(raw: &str) -> Result<String, RefvalError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(err("empty value"));
    }
    if s.len() > MAX_VALUE_LEN {
        return Err(err(format!("value of {} characters is longer than {MAX_VALUE_LEN}", s.len())));
    }
    let hex_body = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if !hex_body.is_empty() && hex_body.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(hex_body.to_ascii_lowercase());
    }
    Ok(s.to_string())
}

fn scalar_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_set(name: &str, v: &serde_json::Value) -> Result<RefSet, RefvalError> {
    check_name(name)?;
    let ctx = |m: String| err(format!("set {name:?}: {m}"));
    let (meta, values) = match v {
        serde_json::Value::Array(a) => (None, a.as_slice()),
        serde_json::Value::Object(o) => {
            for k in o.keys() {
                if !matches!(k.as_str(), "description" | "expires" | "values") {
                    return Err(ctx(format!("unknown field {k:?} (expected description, expires, values)")));
                }
            }
            let vals = match o.get("values") {
                Some(serde_json::Value::Array(a)) => a.as_slice(),
                Some(_) => return Err(ctx("`values` must be an array".into())),
                None => &[],
            };
            (Some(o), vals)
        }
        _ => return Err(ctx("must be an array of values or an object with `values`".into())),
    };
    let mut set = RefSet::default();
    if let Some(o) = meta {
        set.description = o.get("description").and_then(|d| d.as_str()).map(str::to_string);
        set.expires = o.get("expires").map(parse_time_value).transpose().map_err(ctx)?;
    }
    for item in values {
        let rv = match item {
            serde_json::Value::Object(o) => {
                for k in o.keys() {
                    if !matches!(k.as_str(), "value" | "expires" | "builder_id" | "digest_alg" | "source") {
                        return Err(ctx(format!("unknown value field {k:?} (expected value, expires, builder_id, digest_alg, source)")));
                    }
                }
                let raw = o.get("value").and_then(scalar_to_string).ok_or_else(|| ctx("value without `value`".into()))?;
                RefValue {
                    value: normalize_value(&raw).map_err(|e| ctx(e.0))?,
                    expires: o.get("expires").map(parse_time_value).transpose().map_err(ctx)?,
                    builder_id: o.get("builder_id").and_then(|d| d.as_str()).map(str::to_string),
                    digest_alg: o.get("digest_alg").and_then(|d| d.as_str()).map(str::to_string),
                    source: o.get("source").and_then(|d| d.as_str()).map(str::to_string),
                }
            }
            other => {
                let raw = scalar_to_string(other).ok_or_else(|| ctx("values must be strings, numbers or objects".into()))?;
                RefValue::new(&raw).map_err(|e| ctx(e.0))?
            }
        };
        set.upsert(rv);
    }
    Ok(set)
}

fn parse_time_value(v: &serde_json::Value) -> Result<UnixTime, String> {
    match v {
        serde_json::Value::String(s) => parse_time(s),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| format!("bad time {n}")),
        other => Err(format!("bad time {other}")),
    }
}

/// Parse an RFC 3339 instant, or a date (`2027-01-01`, midnight UTC).
pub fn parse_time(s: &str) -> Result<UnixTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| format!("{s:?} is not an RFC 3339 time or a YYYY-MM-DD date"))
}

/// Format Unix seconds as RFC 3339 (UTC).
pub fn format_time(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

fn toml_to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

mod opt_time {
    use super::{format_time, parse_time, UnixTime};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<UnixTime>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&format_time(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UnixTime>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| parse_time(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_toml_alike() {
        let json = r#"{"reference_values": {"mr_td": {"expires": "2027-01-01T00:00:00Z",
            "values": ["0xABCDEF", {"value": "0102", "expires": "2026-01-01"}]}, "isv_prod_id": [1, "2"]}}"#;
        let toml = r#"
            [reference_values.mr_td]
            expires = 2027-01-01T00:00:00Z
            values = ["0xABCDEF", { value = "0102", expires = "2026-01-01" }]
            [reference_values]
            isv_prod_id = [1, "2"]
        "#;
        let a = ReferenceValues::parse(json, false).unwrap();
        let b = ReferenceValues::parse(toml, true).unwrap();
        assert_eq!(a, b);
        let set = &a.sets()["mr_td"];
        assert_eq!(set.values[0].value, "abcdef");
        assert_eq!(set.expires, Some(parse_time("2027-01-01T00:00:00Z").unwrap()));
        assert_eq!(a.sets()["isv_prod_id"].values.iter().map(|v| v.value.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    }

    #[test]
    fn expiry_removes_values_but_keeps_the_set_name() {
        let r = ReferenceValues::parse(
            r#"{"a": {"expires": "2030-01-01", "values": ["aa", {"value": "bb", "expires": "2025-01-01"}]}}"#,
            false,
        )
        .unwrap();
        let t = |s: &str| parse_time(s).unwrap();
        assert_eq!(r.live_data(t("2024-06-01"))["reference_values"]["a"], serde_json::json!(["aa", "bb"]));
        assert_eq!(r.live_data(t("2026-06-01"))["reference_values"]["a"], serde_json::json!(["aa"]));
        assert_ne!(r.live_key(t("2024-06-01")), r.live_key(t("2026-06-01")));
        assert_eq!(r.live_data(t("2030-01-01"))["reference_values"]["a"], serde_json::json!([]));
        // Same live content, same key.
        assert_eq!(r.live_key(t("2026-06-01")), r.live_key(t("2027-06-01")));
    }

    #[test]
    fn refuses_bad_names_fields_and_values() {
        assert!(ReferenceValues::parse(r#"{"bad name": ["aa"]}"#, false).is_err());
        assert!(ReferenceValues::parse(r#"{"a": {"valuez": ["aa"]}}"#, false).is_err());
        assert!(ReferenceValues::parse(r#"{"a": [""]}"#, false).is_err());
        assert!(ReferenceValues::parse(r#"{"a": [[1]]}"#, false).is_err());
        assert!(ReferenceValues::parse(r#"{"a": {"expires": "soon", "values": []}}"#, false).is_err());
        assert!(ReferenceValues::parse("not = [json", false).is_err());
    }

    #[test]
    fn merge_adds_and_replaces_values() {
        let mut a = ReferenceValues::parse(r#"{"x": ["aa"]}"#, false).unwrap();
        let b = ReferenceValues::parse(r#"{"x": [{"value": "AA", "source": "b"}, "bb"], "y": ["cc"]}"#, false).unwrap();
        let fp = a.fingerprint();
        a.merge(&b).unwrap();
        assert_ne!(a.fingerprint(), fp);
        assert_eq!(a.sets()["x"].values.len(), 2);
        assert_eq!(a.sets()["x"].values[0].source.as_deref(), Some("b"));
        let round = ReferenceValues::from_document(&a.to_document()).unwrap();
        assert_eq!(round, a);
    }
}
