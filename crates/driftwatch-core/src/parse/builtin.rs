//! Parsers written in Rust, for vendors a rule file cannot describe.
//!
//! A rule file selects one with `engine = "rust:NAME"`. The file still says
//! how to recognise the vendor, how its status words map and what type each
//! field has; the Rust code only turns the message into rows of captures,
//! which then go through the same conversion as rule-file captures
//! (`RuleParser::row_to_delta`). So the escape hatch does not fork the rules
//! for statuses, times and types.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::rules::RuleParser;
use super::{ExtractError, Mail, Parser};
use crate::model::DeltaDraft;

/// A row of captures: order_ref, status, event_time and field names → text.
pub type Row = BTreeMap<String, String>;

struct Engine {
    name: &'static str,
    /// The capture names the engine produces (checked against `[fields]` at load).
    captures: &'static [&'static str],
    rows: fn(&Mail<'_>) -> Result<Vec<Row>, ExtractError>,
}

const ENGINES: &[Engine] = &[Engine {
    name: "coastline-json",
    captures: &[
        "order_ref",
        "status",
        "event_time",
        "flood_zone",
        "life_of_loan",
        "property",
    ],
    rows: coastline_json,
}];

pub fn exists(name: &str) -> bool {
    ENGINES.iter().any(|e| e.name == name)
}

pub fn names() -> Vec<&'static str> {
    ENGINES.iter().map(|e| e.name).collect()
}

pub fn captures(name: &str) -> &'static [&'static str] {
    ENGINES
        .iter()
        .find(|e| e.name == name)
        .map_or(&[], |e| e.captures)
}

/// A loaded rule file as a parser: itself, or the Rust engine it names.
pub fn wrap(rules: RuleParser) -> Arc<dyn Parser> {
    match rules
        .engine()
        .and_then(|n| ENGINES.iter().find(|e| e.name == n))
    {
        Some(engine) => Arc::new(CodeParser {
            name: format!("rust:{}:{}", engine.name, rules.vendor()),
            rules,
            engine,
        }),
        None => Arc::new(rules),
    }
}

struct CodeParser {
    rules: RuleParser,
    engine: &'static Engine,
    name: String,
}

impl Parser for CodeParser {
    fn vendor(&self) -> &str {
        self.rules.vendor()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        self.rules.version()
    }
    fn accepts_sender(&self, sender: &str) -> bool {
        self.rules.accepts_sender(sender)
    }
    fn recognises(&self, mail: &Mail<'_>) -> bool {
        self.rules.recognises(mail)
    }
    fn auth_policy(&self) -> super::AuthPolicy {
        self.rules.auth_policy()
    }
    fn declared_fields(&self) -> Vec<String> {
        self.rules.declared_fields()
    }
    fn senders(&self) -> &[String] {
        self.rules.senders()
    }
    fn accepts_forwarder(&self, sender: &str) -> bool {
        self.rules.accepts_forwarder(sender)
    }
    fn forwarders(&self) -> &[String] {
        self.rules.forwarders()
    }
    fn ignores(&self, mail: &Mail<'_>) -> Option<String> {
        self.rules.ignores(mail)
    }
    fn explain(&self, mail: &Mail<'_>) -> Vec<String> {
        let mut lines = self.rules.explain(mail);
        lines.push(format!(
            "extraction by the Rust engine {}",
            self.engine.name
        ));
        lines
    }
    fn priority(&self) -> Option<i32> {
        self.rules.priority()
    }
    fn extract(&self, mail: &Mail<'_>) -> Result<Vec<DeltaDraft>, ExtractError> {
        let rows = (self.engine.rows)(mail)?;
        if rows.is_empty() {
            return Err(ExtractError::NoRows);
        }
        rows.iter()
            .map(|r| self.rules.row_to_delta(mail, r))
            .collect()
    }
}

/// Coastline Flood sends a JSON attachment with nested objects per order:
/// `{"orders": [{"ref": "FZ-1", "state": {"label": "...", "at": "RFC 3339"},
/// "determination": {"zone": "AE", "lifeOfLoan": true},
/// "property": {"line1": "...", "city": "...", "state": "ME"}}]}`.
/// Regexes over JSON break on key order and whitespace; serde does not.
fn coastline_json(mail: &Mail<'_>) -> Result<Vec<Row>, ExtractError> {
    let attachment = mail
        .attachments()
        .find(|a| {
            a.content_type == "application/json"
                || a.name
                    .as_deref()
                    .is_some_and(|n| n.to_ascii_lowercase().ends_with(".json"))
        })
        .ok_or_else(|| ExtractError::Engine("no JSON attachment".into()))?;
    let doc: serde_json::Value = serde_json::from_slice(attachment.bytes)
        .map_err(|e| ExtractError::Engine(format!("JSON attachment does not parse: {e}")))?;
    let orders = doc
        .get("orders")
        .and_then(|o| o.as_array())
        .ok_or_else(|| ExtractError::Engine("JSON attachment has no `orders` array".into()))?;
    let text = |v: Option<&serde_json::Value>| -> Option<String> {
        match v? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    Ok(orders
        .iter()
        .map(|o| {
            let mut row = Row::new();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                    row.insert(k.to_string(), v);
                }
            };
            put("order_ref", text(o.get("ref")));
            put("status", text(o.pointer("/state/label")));
            put("event_time", text(o.pointer("/state/at")));
            put("flood_zone", text(o.pointer("/determination/zone")));
            put("life_of_loan", text(o.pointer("/determination/lifeOfLoan")));
            let address: Vec<String> = ["/property/line1", "/property/city", "/property/state"]
                .iter()
                .filter_map(|p| text(o.pointer(p)))
                .collect();
            put(
                "property",
                (!address.is_empty()).then(|| address.join(", ")),
            );
            row
        })
        .collect())
}
