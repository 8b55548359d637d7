//! JSON structured variables (Octopus's "Structured Configuration Variables" for JSON): a variable
//! whose name is a path of keys joined by `:` (`Logging:LogLevel:Default`, `Servers:0:Name` for
//! array elements) replaces the value at that path when the file has it. Keys match
//! case-insensitively, as Octopus does; the order of keys in the file is kept. The replacement
//! keeps the JSON type of the old value when the new one parses as that type (a number stays a
//! number, `true` a boolean), replaces objects and arrays when the value is JSON of that shape, and
//! is a string otherwise.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, in file order.
    Object(Vec<(String, Json)>),
}

/// Applies `variables` to the JSON `text`; returns the new text and the variables used, or `None`
/// when nothing changed.
pub fn apply<'a>(
    text: &str,
    variables: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<(String, Vec<String>)>, serde_json::Error> {
    let mut doc: Json = serde_json::from_str(text.trim_start_matches('\u{feff}'))?;
    let mut used = Vec::new();
    for (name, value) in variables {
        if !name.contains(':')
            && !matches!(&doc, Json::Object(o) if o.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)))
        {
            continue;
        }
        let keys: Vec<&str> = name.split(':').collect();
        if let Some(slot) = find(&mut doc, &keys) {
            *slot = replacement(slot, value);
            used.push(name.to_owned());
        }
    }
    if used.is_empty() {
        return Ok(None);
    }
    let mut out = serde_json::to_string_pretty(&doc)?;
    out.push('\n');
    Ok(Some((out, used)))
}

fn find<'j>(doc: &'j mut Json, keys: &[&str]) -> Option<&'j mut Json> {
    let Some((key, rest)) = keys.split_first() else {
        return Some(doc);
    };
    let next = match doc {
        Json::Object(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)?,
        Json::Array(items) => items.get_mut(key.parse::<usize>().ok()?)?,
        _ => return None,
    };
    find(next, rest)
}

fn replacement(old: &Json, value: &str) -> Json {
    let parsed = || serde_json::from_str::<Json>(value).ok();
    match old {
        Json::Number(_) => {
            if let Some(n @ Json::Number(_)) = parsed() {
                return n;
            }
        }
        Json::Bool(_) => match value.trim().to_ascii_lowercase().as_str() {
            "true" => return Json::Bool(true),
            "false" => return Json::Bool(false),
            _ => {}
        },
        Json::Object(_) | Json::Array(_) | Json::Null => match parsed() {
            Some(v @ (Json::Object(_) | Json::Array(_))) => return v,
            Some(v) if matches!(old, Json::Null) && !matches!(v, Json::String(_)) => return v,
            _ => {}
        },
        Json::String(_) => {}
    }
    Json::String(value.to_owned())
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries: Vec<(String, Json)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            match entries.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => entries.push((k, v)),
            }
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_existing_paths_keeping_order_and_types() {
        let text = r#"{
  "Zeta": 1,
  "Logging": { "LogLevel": { "Default": "Warning", "Microsoft": "Error" } },
  "Port": 80,
  "Enabled": false,
  "Servers": [ { "Name": "a" }, { "Name": "b" } ],
  "Alpha": "x"
}"#;
        let (out, used) = apply(
            text,
            [
                ("Logging:LogLevel:Default", "Debug"),
                ("logging:loglevel:microsoft", "Information"),
                ("Port", "8080"),
                ("Enabled", "True"),
                ("Servers:1:Name", "c"),
                ("Missing:Key", "ignored"),
                ("Octopus.Environment.Name", "Production"),
            ],
        )
        .unwrap()
        .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["Logging"]["LogLevel"]["Default"], "Debug");
        assert_eq!(doc["Logging"]["LogLevel"]["Microsoft"], "Information");
        assert_eq!(doc["Port"], 8080);
        assert_eq!(doc["Enabled"], true);
        assert_eq!(doc["Servers"][1]["Name"], "c");
        assert!(out.find("Zeta").unwrap() < out.find("Alpha").unwrap());
        assert_eq!(used.len(), 5);
    }

    #[test]
    fn type_kept_only_when_it_parses() {
        let (out, _) = apply(r#"{"Port": 80}"#, [("Port", "eighty")])
            .unwrap()
            .unwrap();
        assert!(out.contains("\"eighty\""));
        let (out, _) = apply(r#"{"List": [1]}"#, [("List", "[1,2]")])
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["List"], serde_json::json!([1, 2]));
    }

    #[test]
    fn nothing_matching_is_no_change() {
        assert!(apply(r#"{"a": 1}"#, [("b", "2")]).unwrap().is_none());
        assert!(apply("not json", [("b", "2")]).is_err());
    }
}
