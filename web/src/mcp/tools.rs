//! The corpus tools of `/mcp` and what every tool shares: its description, the
//! access it runs with, and the errors a model can act on. Access checks happen
//! before a tool runs, so a tool only shapes its result to the access it is given.

use serde_json::{json, Map, Value};
use ucca_actors::catalog::{Capability, Catalog, FreeTier};
use ucca_actors::corpus::{Entry, Qualification};

use crate::corpus_api::unit_summary;
use crate::middleware::Principal;
use crate::state::AppState;

/// Maximum length of a search query, in bytes.
const MAX_QUERY_LEN: usize = 200;
/// Search results when the caller names no limit, and the most it may ask for.
const DEFAULT_SEARCH_LIMIT: u64 = 10;
const MAX_SEARCH_LIMIT: u64 = 100;
/// Maximum length of a unit or qualification code, in bytes.
const MAX_CODE_LEN: usize = 12;

/// One tool as `tools/list` shows it, with what it needs and the function that runs it.
pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    /// Description of what the tool does. The access it needs is appended when listed.
    pub description: &'static str,
    pub capability: Capability,
    /// Callable without a credential, at the catalog's free tier.
    pub keyless: bool,
    pub input_schema: fn() -> Value,
    pub run: fn(&AppState, &Access, &Map<String, Value>) -> Result<Value, ToolError>,
}

impl Tool {
    /// Rejects arguments the input schema does not name, as its
    /// `additionalProperties: false` promises, so that a misspelt argument is
    /// reported instead of silently ignored.
    pub fn check_arguments(&self, arguments: &Map<String, Value>) -> Result<(), ToolError> {
        let schema = (self.input_schema)();
        let known = schema["properties"].as_object().cloned().unwrap_or_default();
        match arguments.keys().find(|name| !known.contains_key(*name)) {
            None => Ok(()),
            Some(unknown) => {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                Err(ToolError::invalid(format!("unknown argument {unknown}; {} takes {}", self.name, names.join(", "))))
            }
        }
    }

    /// Builds the `Tool` object of `tools/list`, naming the scope that opens it.
    pub fn describe(&self, catalog: &Catalog) -> Value {
        let scope = catalog.scope_for(self.capability).unwrap_or("(none issued)");
        let access = if self.keyless {
            format!(" Works without signing in at the free tier, with less detail; full results need the scope {scope}.")
        } else {
            format!(" Needs OAuth sign-in with the scope {scope}.")
        };
        json!({
            "name": self.name,
            "title": self.title,
            "description": format!("{}{access}", self.description),
            "inputSchema": (self.input_schema)(),
            "annotations": { "readOnlyHint": true, "openWorldHint": false },
        })
    }
}

/// The access a call runs with: a credential's scopes, or the free tier for a keyless caller.
pub struct Access<'a> {
    pub catalog: &'a Catalog,
    pub principal: Option<&'a Principal>,
    pub free_tier: &'a FreeTier,
}

impl Access<'_> {
    /// Checks whether this call may see what `capability` covers.
    pub fn grants(&self, capability: Capability) -> bool {
        match self.principal {
            Some(principal) => self.catalog.grants(&principal.scopes, capability),
            None => match capability {
                Capability::Search | Capability::Lookup => true,
                Capability::Components => self.free_tier.components,
                Capability::EmploymentSignals => self.free_tier.labour_market,
                _ => false,
            },
        }
    }

    /// Returns the maximum number of results of one call: the free tier's cap for a keyless caller.
    fn result_cap(&self) -> Option<usize> {
        self.principal.is_none().then_some(self.free_tier.results_per_call)
    }

    fn is_keyless(&self) -> bool {
        self.principal.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolErrorKind {
    InvalidArguments,
    NotFound,
}

/// A failure the model can correct, returned as a result with `isError: true`.
#[derive(Debug)]
pub struct ToolError {
    pub kind: ToolErrorKind,
    pub message: String,
}

impl ToolError {
    pub fn invalid(message: impl Into<String>) -> ToolError {
        ToolError { kind: ToolErrorKind::InvalidArguments, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> ToolError {
        ToolError { kind: ToolErrorKind::NotFound, message: message.into() }
    }
}

/// Reads a required string argument, trimmed, of 1 to `max_len` bytes.
pub fn required_text<'a>(arguments: &'a Map<String, Value>, name: &str, max_len: usize) -> Result<&'a str, ToolError> {
    let value = match arguments.get(name) {
        None | Some(Value::Null) => return Err(ToolError::invalid(format!("the argument {name} is missing"))),
        Some(Value::String(text)) => text.trim(),
        Some(_) => return Err(ToolError::invalid(format!("the argument {name} must be a string"))),
    };
    if value.is_empty() || value.len() > max_len {
        return Err(ToolError::invalid(format!("the argument {name} must be 1 to {max_len} bytes of text")));
    }
    Ok(value)
}

/// Reads a unit or qualification code argument: 1 to 12 letters and digits.
fn required_code<'a>(arguments: &'a Map<String, Value>, name: &str) -> Result<&'a str, ToolError> {
    let code = required_text(arguments, name, MAX_CODE_LEN)?;
    if !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ToolError::invalid(format!("the argument {name} must be a code of letters and digits, such as BSB30120")));
    }
    Ok(code)
}

fn code_schema(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description, "maxLength": MAX_CODE_LEN } },
        "required": [name],
        "additionalProperties": false,
    })
}

fn unknown_code(code: &str) -> ToolError {
    ToolError::not_found(format!("no unit or qualification has the code {code}; the search tool finds codes by title"))
}

pub static CORPUS_TOOLS: &[Tool] = &[
    Tool {
        name: "search",
        title: "Search the training corpus",
        description: "Finds units of competency and qualifications whose code or title contains every word of the query, exact code match first.",
        capability: Capability::Search,
        keyless: true,
        input_schema: search_schema,
        run: search,
    },
    Tool {
        name: "lookup",
        title: "Look up a unit or qualification",
        description: "Returns one unit or qualification by its code. Units include their elements and performance criteria when the access covers components.",
        capability: Capability::Lookup,
        keyless: true,
        input_schema: || code_schema("code", "Unit or qualification code, such as BSBWHS311 or BSB30120"),
        run: lookup,
    },
    Tool {
        name: "ladder",
        title: "Qualification ladder",
        description: "Lists the qualifications of the same family as a qualification, ordered by AQF level.",
        capability: Capability::Ladder,
        keyless: false,
        input_schema: || code_schema("code", "Qualification code, such as BSB30120"),
        run: ladder,
    },
    Tool {
        name: "components",
        title: "Unit components",
        description: "Returns the elements of a unit of competency and the performance criteria of each element.",
        capability: Capability::Components,
        keyless: false,
        input_schema: || code_schema("code", "Unit code, such as BSBWHS311"),
        run: components,
    },
    Tool {
        name: "employment_signals",
        title: "Employment signals (demo data)",
        description: "Returns demo employment signals for a qualification, computed from the demo corpus and not from labour-market sources.",
        capability: Capability::EmploymentSignals,
        keyless: false,
        input_schema: || code_schema("code", "Qualification code, such as ICT40120"),
        run: employment_signals,
    },
    Tool {
        name: "pathway",
        title: "Pathway between qualifications",
        description: "Compares two qualifications for a learner moving from one to the other: the units that carry over and the core units still to complete.",
        capability: Capability::Pathway,
        keyless: false,
        input_schema: pathway_schema,
        run: pathway,
    },
];

fn search_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "query": { "type": "string", "description": "Words to find in codes and titles, such as \"work safely\"", "maxLength": MAX_QUERY_LEN },
            "limit": { "type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "default": DEFAULT_SEARCH_LIMIT, "description": "Most results to return" },
        },
        "required": ["query"],
        "additionalProperties": false,
    })
}

fn search(state: &AppState, access: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let query = required_text(arguments, "query", MAX_QUERY_LEN)?;
    let requested = match arguments.get("limit") {
        None | Some(Value::Null) => DEFAULT_SEARCH_LIMIT,
        Some(value) => value
            .as_u64()
            .filter(|limit| (1..=MAX_SEARCH_LIMIT).contains(limit))
            .ok_or_else(|| ToolError::invalid(format!("the argument limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}")))?,
    };
    let requested = usize::try_from(requested).unwrap_or(usize::MAX);
    let limit = access.result_cap().map_or(requested, |cap| requested.min(cap));

    let results = state.corpus.search(query, limit);
    let mut answer = json!({ "query": query, "count": results.len(), "results": results });
    if access.is_keyless() {
        answer["free_tier"] = json!(format!(
            "Keyless calls return at most {} result(s); sign in for up to {MAX_SEARCH_LIMIT}.",
            access.free_tier.results_per_call
        ));
    }
    Ok(answer)
}

fn lookup(state: &AppState, access: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let code = required_code(arguments, "code")?;
    match state.corpus.lookup(code) {
        Some(Entry::Unit(unit)) if access.grants(Capability::Components) => Ok(json!(Entry::Unit(unit))),
        Some(Entry::Unit(unit)) => Ok(unit_summary(&unit, access.catalog, "the components tool returns them")),
        Some(entry @ Entry::Qualification(_)) => Ok(json!(entry)),
        None => Err(unknown_code(code)),
    }
}

fn ladder(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let code = required_code(arguments, "code")?;
    match state.corpus.ladder(code) {
        Some(qualifications) => {
            let family = qualifications.first().map(|qualification| qualification.family.clone());
            Ok(json!({ "code": code.to_ascii_uppercase(), "family": family, "qualifications": qualifications }))
        }
        None if state.corpus.lookup(code).is_some() => {
            Err(ToolError::invalid(format!("{code} is a unit; a ladder starts from a qualification code such as BSB30120")))
        }
        None => Err(unknown_code(code)),
    }
}

fn components(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let code = required_code(arguments, "code")?;
    match state.corpus.lookup(code) {
        Some(Entry::Unit(unit)) => Ok(json!({ "code": unit.code, "title": unit.title, "elements": unit.elements })),
        Some(Entry::Qualification(qualification)) => Err(ToolError::invalid(format!(
            "{} is a qualification; components belong to units. Its core units are {}.",
            qualification.code,
            qualification.core_units.join(", ")
        ))),
        None => Err(unknown_code(code)),
    }
}

fn employment_signals(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let code = required_code(arguments, "code")?;
    let qualification = match state.corpus.lookup(code) {
        Some(Entry::Qualification(qualification)) => qualification,
        Some(Entry::Unit(unit)) => {
            return Err(ToolError::invalid(format!(
                "{} is a unit; employment signals are computed for qualifications, such as ICT40120",
                unit.code
            )))
        }
        None => return Err(unknown_code(code)),
    };
    let ladder = state.corpus.ladder(&qualification.code).unwrap_or_default();
    Ok(demo_signals(&qualification, &ladder))
}

/// Demo employment signals: a fixed formula over the qualification's place in the
/// demo corpus, labelled as such in the output. No labour-market data is involved.
fn demo_signals(qualification: &Qualification, ladder: &[Qualification]) -> Value {
    let position = ladder.iter().position(|step| step.code == qualification.code).map_or(1, |index| index + 1);
    let next = ladder.iter().find(|step| step.aqf_level > qualification.aqf_level).map(|step| step.code.clone());
    let unit_count = qualification.core_units.len() + qualification.elective_units.len();
    let demand_index = (30 + 8 * u64::from(qualification.aqf_level) + 2 * unit_count as u64).min(100);
    json!({
        "data_notice": "DEMO DATA: computed from the structure of the demo corpus by a fixed formula; not labour-market data.",
        "code": qualification.code,
        "title": qualification.title,
        "family": qualification.family,
        "aqf_level": qualification.aqf_level,
        "ladder_position": format!("{position} of {}", ladder.len()),
        "next_step_up": next,
        "demo_demand_index": demand_index,
        "demo_formula": "demo_demand_index = min(100, 30 + 8 x AQF level + 2 x number of core and elective units)",
    })
}

fn pathway_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "from": { "type": "string", "description": "Qualification the learner holds, such as BSB30120", "maxLength": MAX_CODE_LEN },
            "to": { "type": "string", "description": "Qualification the learner aims for, such as BSB40120", "maxLength": MAX_CODE_LEN },
        },
        "required": ["from", "to"],
        "additionalProperties": false,
    })
}

fn pathway(state: &AppState, _: &Access, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
    let from = required_code(arguments, "from")?;
    let to = required_code(arguments, "to")?;
    match state.corpus.pathway(from, to) {
        Some(pathway) => Ok(json!(pathway)),
        None => Err(ToolError::not_found(format!("{from} and {to} must both be qualification codes; the search tool finds them"))),
    }
}
