//! The framework tool set of `/mcp` (`ucco:framework`): search and lookup over a
//! small competency framework read from a JSON file at start-up. The file format
//! is checked here; the shipped `data/framework.json` is demo data.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use ucca_actors::catalog::Capability;

use super::tools::{required_text, Access, Tool, ToolError};
use super::McpTools;
use crate::state::AppState;

/// Maximum length of a framework search query, in bytes.
const MAX_QUERY_LEN: usize = 200;
/// Maximum length of a competency or domain id, in bytes.
const MAX_ID_LEN: usize = 32;

/// A competency framework: domains, each with competencies described at levels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// What the file is, such as a note that it is demo data; shown with every answer.
    pub notice: String,
    pub name: String,
    pub version: String,
    pub domains: Vec<Domain>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Id such as `D1`, unique across domains and competencies.
    pub id: String,
    pub title: String,
    pub competencies: Vec<Competency>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Competency {
    /// Id such as `D1.2`, unique across domains and competencies.
    pub id: String,
    pub title: String,
    pub description: String,
    /// Descriptors from the lowest level up; at least one.
    pub levels: Vec<Level>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub level: u8,
    pub descriptor: String,
}

/// Failure to load a framework file; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("cannot read framework file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("framework file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

impl Framework {
    pub fn load(path: &std::path::Path) -> Result<Framework, FrameworkError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FrameworkError::Read { path: shown.clone(), source })?;
        Framework::from_json(&shown, &text)
    }

    /// Parses and checks framework JSON; `source` names it in error messages.
    pub fn from_json(source: &str, text: &str) -> Result<Framework, FrameworkError> {
        let invalid = |message: String| FrameworkError::Invalid { path: source.to_string(), message };
        let framework: Framework = serde_json::from_str(text).map_err(|error| invalid(error.to_string()))?;

        if framework.name.trim().is_empty() || framework.domains.is_empty() {
            return Err(invalid("the framework needs a name and at least one domain".into()));
        }
        let mut ids = BTreeSet::new();
        let mut check_id = |id: &str| {
            if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
                return Err(invalid(format!("id {id:?} must be 1 to {MAX_ID_LEN} letters, digits and dots")));
            }
            if !ids.insert(id.to_ascii_uppercase()) {
                return Err(invalid(format!("id {id} appears twice; ids are unique ignoring case")));
            }
            Ok(())
        };
        for domain in &framework.domains {
            check_id(&domain.id)?;
            if domain.title.trim().is_empty() || domain.competencies.is_empty() {
                return Err(invalid(format!("domain {} needs a title and at least one competency", domain.id)));
            }
            for competency in &domain.competencies {
                check_id(&competency.id)?;
                if competency.title.trim().is_empty() || competency.description.trim().is_empty() || competency.levels.is_empty() {
                    return Err(invalid(format!("competency {} needs a title, a description and at least one level", competency.id)));
                }
            }
        }
        Ok(framework)
    }

    fn competencies(&self) -> impl Iterator<Item = (&Domain, &Competency)> {
        self.domains.iter().flat_map(|domain| domain.competencies.iter().map(move |competency| (domain, competency)))
    }
}

pub static FRAMEWORK_TOOLS: &[Tool] = &[
    Tool {
        name: "framework_search",
        title: "Search the framework",
        description: "Finds competencies whose id, title or description contains every word of the query.",
        capability: Capability::UccoTools,
        keyless: false,
        input_schema: || {
            json!({
                "type": "object",
                "properties": { "query": { "type": "string", "description": "Words to find, such as \"data\"", "maxLength": MAX_QUERY_LEN } },
                "required": ["query"],
                "additionalProperties": false,
            })
        },
        run: framework_search,
    },
    Tool {
        name: "framework_lookup",
        title: "Look up a framework entry",
        description: "Returns a domain with its competencies, or a competency with its level descriptors, by id.",
        capability: Capability::UccoTools,
        keyless: false,
        input_schema: || {
            json!({
                "type": "object",
                "properties": { "id": { "type": "string", "description": "Domain or competency id, such as D2 or D2.1", "maxLength": MAX_ID_LEN } },
                "required": ["id"],
                "additionalProperties": false,
            })
        },
        run: framework_lookup,
    },
];

/// The framework this instance serves; the tools are listed only on an instance that has one.
fn framework(state: &AppState) -> Result<&Framework, ToolError> {
    match &state.config.mcp_tools {
        McpTools::Framework(framework) => Ok(framework),
        McpTools::Corpus => Err(ToolError::not_found("this server has no framework")),
    }
}

fn framework_search(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let framework = framework(state)?;
    let query = required_text(arguments, "query", MAX_QUERY_LEN)?;
    let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let results: Vec<Value> = framework
        .competencies()
        .filter(|(_, competency)| {
            let text = format!("{} {} {}", competency.id, competency.title, competency.description).to_lowercase();
            terms.iter().all(|term| text.contains(term.as_str()))
        })
        .map(|(domain, competency)| json!({ "id": competency.id, "title": competency.title, "domain": domain.title }))
        .collect();
    Ok(json!({ "notice": framework.notice, "query": query, "count": results.len(), "results": results }))
}

fn framework_lookup(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let framework = framework(state)?;
    let id = required_text(arguments, "id", MAX_ID_LEN)?;
    if let Some(domain) = framework.domains.iter().find(|domain| domain.id.eq_ignore_ascii_case(id)) {
        return Ok(json!({ "notice": framework.notice, "kind": "domain", "domain": domain }));
    }
    match framework.competencies().find(|(_, competency)| competency.id.eq_ignore_ascii_case(id)) {
        Some((domain, competency)) => {
            Ok(json!({ "notice": framework.notice, "kind": "competency", "domain": domain.title, "competency": competency }))
        }
        None => Err(ToolError::not_found(format!("no domain or competency has the id {id}; framework_search finds ids by words"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../data/framework.json");

    #[test]
    fn shipped_framework_loads_and_says_it_is_demo_data() {
        let framework = Framework::from_json("data/framework.json", SHIPPED).unwrap();
        assert!(framework.notice.to_lowercase().contains("demo data"), "{}", framework.notice);
        assert!(framework.competencies().count() >= 6);
    }

    #[test]
    fn invalid_frameworks_name_the_fault() {
        let competency = r#"{"id": "A1.1", "title": "T", "description": "D", "levels": [{"level": 1, "descriptor": "x"}]}"#;
        let file = |domains: &str| format!(r#"{{"notice": "n", "name": "F", "version": "1", "domains": [{domains}]}}"#);
        let cases = [
            ("no domains", file(""), "at least one domain"),
            ("duplicate id", file(&format!(r#"{{"id": "A1", "title": "A", "competencies": [{competency}, {competency}]}}"#)), "A1.1 appears twice"),
            ("bad id", file(&format!(r#"{{"id": "A 1", "title": "A", "competencies": [{competency}]}}"#)), "\"A 1\""),
            ("empty domain", file(r#"{"id": "A1", "title": "A", "competencies": []}"#), "domain A1 needs"),
            ("unknown field", file(r#"{"id": "A1", "title": "A", "competencies": [], "colour": "red"}"#), "colour"),
        ];
        for (description, text, expected) in cases {
            let message = Framework::from_json("test.json", &text).unwrap_err().to_string();
            assert!(message.contains(expected), "{description}: {message}");
            assert!(message.contains("test.json"), "{description}: {message}");
        }
    }
}
