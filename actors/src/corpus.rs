//! Read-only training corpus (units of competency and qualifications) with its search,
//! lookup and ladder queries. It has no HTTP or storage code. The corpus is parsed once
//! from a JSON file at start-up and does not change afterwards.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Units and qualifications from one corpus file, indexed by upper-case code.
#[derive(Debug)]
pub struct Corpus {
    notice: String,
    units: BTreeMap<String, Unit>,
    qualifications: BTreeMap<String, Qualification>,
}

/// Unit of competency: one skill, broken into elements with performance criteria.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// Code such as `BSBWHS211`, unique across units and qualifications, ignoring case.
    pub code: String,
    pub title: String,
    /// Register status such as `current` or `superseded`. Any non-empty text is accepted.
    pub status: String,
    pub elements: Vec<Element>,
}

/// Element of a unit: one part of the skill, with the criteria that show it is done well.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Element {
    /// Element number within its unit, such as `"1"`.
    pub number: String,
    pub title: String,
    pub performance_criteria: Vec<PerformanceCriterion>,
}

/// Performance criterion: one observable standard for an element.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceCriterion {
    /// Criterion number within its unit, such as `"1.2"`.
    pub number: String,
    pub text: String,
}

/// Qualification: a set of core and elective units at one AQF level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qualification {
    /// Code such as `BSB30120`, unique across units and qualifications, ignoring case.
    pub code: String,
    pub title: String,
    /// Australian Qualifications Framework level, 1 to 10.
    pub aqf_level: u8,
    /// Family name that groups qualifications into a ladder, compared exactly.
    pub family: String,
    /// Register status such as `current` or `superseded`. Any non-empty text is accepted.
    pub status: String,
    /// Codes of the units that every learner completes.
    pub core_units: Vec<String>,
    /// Codes of the units that a learner may choose from.
    pub elective_units: Vec<String>,
}

/// One search hit, either kind.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SearchHit {
    Unit {
        code: String,
        title: String,
    },
    Qualification {
        code: String,
        title: String,
        aqf_level: u8,
    },
}

/// Result of a lookup by code.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Unit(Unit),
    Qualification(Qualification),
}

/// Failure to load a corpus file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// I/O failure reading the file.
    #[error("cannot read corpus file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON syntax or shape error, such as a missing or unknown field.
    #[error("corpus file {path} is invalid at line {line}, column {column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed JSON with wrong content, such as a duplicate code or a missing unit.
    #[error("corpus file {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

/// Top level of a corpus file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    /// Optional because only the demo file needs to say what it is.
    #[serde(default)]
    notice: String,
    units: Vec<Unit>,
    qualifications: Vec<Qualification>,
}

const MIN_CODE_LENGTH: usize = 3;
const MAX_CODE_LENGTH: usize = 12;
const MIN_AQF_LEVEL: u8 = 1;
const MAX_AQF_LEVEL: u8 = 10;

impl Corpus {
    /// Reads and validates the corpus file at `path`.
    ///
    /// Returns `CorpusError::Read` if the file cannot be read as UTF-8 text, and
    /// otherwise the errors of [`Corpus::from_json`].
    pub fn load(path: &Path) -> Result<Corpus, CorpusError> {
        let shown_path = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Read {
            path: shown_path.clone(),
            source,
        })?;
        Corpus::from_json(&shown_path, &text)
    }

    /// Parses and validates corpus JSON. `path_for_messages` only appears in errors.
    ///
    /// Returns `CorpusError::Parse` for a syntax error, a missing or unknown field or a
    /// value of the wrong type, and `CorpusError::Invalid` for content that breaks a rule.
    pub fn from_json(path_for_messages: &str, text: &str) -> Result<Corpus, CorpusError> {
        let file: CorpusFile =
            serde_json::from_str(text).map_err(|error| parse_error(path_for_messages, &error))?;

        build_index(file).map_err(|message| CorpusError::Invalid {
            path: path_for_messages.to_owned(),
            message,
        })
    }

    /// Returns the file's `notice` text, or an empty string if the file has none.
    pub fn notice(&self) -> &str {
        &self.notice
    }

    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    pub fn qualification_count(&self) -> usize {
        self.qualifications.len()
    }

    /// Searches the codes and titles of units and qualifications, ignoring case.
    ///
    /// Every whitespace-separated term must be a substring of the code or of the title.
    /// An exact code match comes first and the other hits follow in code order, at most
    /// `limit` hits in all. A query with no terms returns no hits.
    pub fn search(&self, query: &str, limit: usize) -> Vec<SearchHit> {
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        if terms.is_empty() {
            return Vec::new();
        }
        let exact_code = query.trim().to_ascii_uppercase();

        let unit_hits = self
            .units
            .iter()
            .filter(|(_, unit)| matches_all_terms(&unit.code, &unit.title, &terms))
            .map(|(key, unit)| {
                let hit = SearchHit::Unit {
                    code: unit.code.clone(),
                    title: unit.title.clone(),
                };
                (key, hit)
            });
        let qualification_hits = self
            .qualifications
            .iter()
            .filter(|(_, qualification)| {
                matches_all_terms(&qualification.code, &qualification.title, &terms)
            })
            .map(|(key, qualification)| {
                let hit = SearchHit::Qualification {
                    code: qualification.code.clone(),
                    title: qualification.title.clone(),
                    aqf_level: qualification.aqf_level,
                };
                (key, hit)
            });
        let mut hits: Vec<(&String, SearchHit)> = unit_hits.chain(qualification_hits).collect();

        // `false` sorts before `true`, so the exact code match comes first.
        hits.sort_by(|(left, _), (right, _)| {
            (**left != exact_code, *left).cmp(&(**right != exact_code, *right))
        });
        hits.into_iter().take(limit).map(|(_, hit)| hit).collect()
    }

    /// Looks up a unit or qualification by code, ignoring case.
    pub fn lookup(&self, code: &str) -> Option<Entry> {
        let key = code.to_ascii_uppercase();
        if let Some(unit) = self.units.get(&key) {
            return Some(Entry::Unit(unit.clone()));
        }
        self.qualifications
            .get(&key)
            .map(|qualification| Entry::Qualification(qualification.clone()))
    }

    /// Returns the qualifications in the same family as qualification `code`, itself
    /// included, ordered by AQF level and then by upper-case code. `code` is matched
    /// ignoring case. Returns `None` if `code` is not a qualification.
    pub fn ladder(&self, code: &str) -> Option<Vec<Qualification>> {
        let start = self.qualifications.get(&code.to_ascii_uppercase())?;

        let mut family: Vec<Qualification> = self
            .qualifications
            .values()
            .filter(|qualification| qualification.family == start.family)
            .cloned()
            .collect();
        // The map yields upper-case code order and the sort is stable, so codes stay ordered within a level.
        family.sort_by_key(|qualification| qualification.aqf_level);
        Some(family)
    }

    /// Compares two qualifications for a learner moving from `from` to `to`:
    /// the units that carry over and the core units still to complete. None if
    /// either code is not a qualification.
    pub fn pathway(&self, from: &str, to: &str) -> Option<Pathway> {
        let from = self.qualifications.get(&from.to_ascii_uppercase())?;
        let to = self.qualifications.get(&to.to_ascii_uppercase())?;

        let held: Vec<&String> = from.core_units.iter().chain(&from.elective_units).collect();
        let carried_over: Vec<String> = to
            .core_units
            .iter()
            .chain(&to.elective_units)
            .filter(|unit| held.iter().any(|owned| owned.eq_ignore_ascii_case(unit)))
            .cloned()
            .collect();
        let core_to_complete: Vec<String> =
            to.core_units.iter().filter(|unit| !carried_over.contains(unit)).cloned().collect();

        Some(Pathway {
            from: from.code.clone(),
            to: to.code.clone(),
            same_family: from.family == to.family,
            aqf_level_change: i16::from(to.aqf_level) - i16::from(from.aqf_level),
            carried_over,
            core_to_complete,
        })
    }
}

/// The result of a pathway analysis between two qualifications.
#[derive(Debug, Clone, Serialize)]
pub struct Pathway {
    pub from: String,
    pub to: String,
    pub same_family: bool,
    pub aqf_level_change: i16,
    /// Units of `to` (core or elective) that `from` already includes.
    pub carried_over: Vec<String>,
    /// Core units of `to` that `from` does not include.
    pub core_to_complete: Vec<String>,
}

/// Converts a `serde_json` error into `CorpusError::Parse`.
fn parse_error(path: &str, error: &serde_json::Error) -> CorpusError {
    let line = error.line();
    let column = error.column();

    // serde_json (checked with 1.0.154) ends its message with " at line L column C". The Parse message
    // states the position itself, so the suffix is removed to avoid saying it twice.
    let full_message = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full_message
        .strip_suffix(&suffix)
        .unwrap_or(&full_message)
        .to_owned();

    CorpusError::Parse {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// Validates the parsed file and indexes its entries by upper-case code.
/// The error is the message for `CorpusError::Invalid`.
fn build_index(file: CorpusFile) -> Result<Corpus, String> {
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    let mut qualifications: BTreeMap<String, Qualification> = BTreeMap::new();

    for (index, unit) in file.units.into_iter().enumerate() {
        validate_code("unit", index, &unit.code)?;
        validate_unit(&unit)?;
        let key = unit.code.to_ascii_uppercase();
        if let Some(existing) = units.get(&key) {
            return Err(duplicate_code_message(
                "unit",
                &unit.code,
                "unit",
                &existing.code,
            ));
        }
        units.insert(key, unit);
    }

    for (index, qualification) in file.qualifications.into_iter().enumerate() {
        validate_code("qualification", index, &qualification.code)?;
        validate_qualification_fields(&qualification)?;
        let key = qualification.code.to_ascii_uppercase();
        if let Some(existing) = units.get(&key) {
            return Err(duplicate_code_message(
                "qualification",
                &qualification.code,
                "unit",
                &existing.code,
            ));
        }
        if let Some(existing) = qualifications.get(&key) {
            return Err(duplicate_code_message(
                "qualification",
                &qualification.code,
                "qualification",
                &existing.code,
            ));
        }
        qualifications.insert(key, qualification);
    }

    for qualification in qualifications.values() {
        validate_unit_references(qualification, &units, &qualifications)?;
    }

    Ok(Corpus {
        notice: file.notice,
        units,
        qualifications,
    })
}

/// Checks that a code is 3 to 12 ASCII letters or digits. `index` counts from 0.
fn validate_code(kind: &str, index: usize, code: &str) -> Result<(), String> {
    if code.trim().is_empty() {
        // The entry has no code to name it by, so the message gives its position.
        return Err(format!(
            "{kind} number {} in the list has an empty code",
            index + 1
        ));
    }

    let length_is_valid = (MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&code.len());
    let characters_are_valid = code.chars().all(|c| c.is_ascii_alphanumeric());
    if !length_is_valid || !characters_are_valid {
        return Err(format!(
            "{kind} code {code:?} is invalid. A code is {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} ASCII letters or digits"
        ));
    }
    Ok(())
}

fn duplicate_code_message(
    kind: &str,
    code: &str,
    existing_kind: &str,
    existing_code: &str,
) -> String {
    format!(
        "{kind} {code} has the same code as {existing_kind} {existing_code}. Codes must be unique across units and qualifications, ignoring case"
    )
}

/// Checks a unit's title, status, elements and performance criteria.
fn validate_unit(unit: &Unit) -> Result<(), String> {
    let code = &unit.code;
    if unit.title.trim().is_empty() {
        return Err(format!("unit {code} has an empty title"));
    }
    if unit.status.trim().is_empty() {
        return Err(format!("unit {code} has an empty status"));
    }
    if unit.elements.is_empty() {
        return Err(format!("unit {code} has no elements"));
    }

    // Readers refer to elements and criteria by number, so each number must be unique within the unit.
    let mut element_numbers: HashSet<&str> = HashSet::new();
    let mut criterion_numbers: HashSet<&str> = HashSet::new();

    for element in &unit.elements {
        let number = element.number.as_str();
        if number.trim().is_empty() {
            return Err(format!("unit {code} has an element with an empty number"));
        }
        if !element_numbers.insert(number) {
            return Err(format!(
                "unit {code} has more than one element numbered {number}"
            ));
        }
        if element.title.trim().is_empty() {
            return Err(format!("unit {code} element {number} has an empty title"));
        }
        if element.performance_criteria.is_empty() {
            return Err(format!(
                "unit {code} element {number} has no performance criteria"
            ));
        }

        for criterion in &element.performance_criteria {
            let criterion_number = criterion.number.as_str();
            if criterion_number.trim().is_empty() {
                return Err(format!(
                    "unit {code} element {number} has a performance criterion with an empty number"
                ));
            }
            if !criterion_numbers.insert(criterion_number) {
                return Err(format!(
                    "unit {code} has more than one performance criterion numbered {criterion_number}"
                ));
            }
            if criterion.text.trim().is_empty() {
                return Err(format!(
                    "unit {code} performance criterion {criterion_number} has empty text"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a qualification's own fields. Unit references are checked once all entries are indexed.
fn validate_qualification_fields(qualification: &Qualification) -> Result<(), String> {
    let code = &qualification.code;
    if qualification.title.trim().is_empty() {
        return Err(format!("qualification {code} has an empty title"));
    }
    if qualification.status.trim().is_empty() {
        return Err(format!("qualification {code} has an empty status"));
    }
    if qualification.family.trim().is_empty() {
        return Err(format!("qualification {code} has an empty family"));
    }

    let level = qualification.aqf_level;
    if !(MIN_AQF_LEVEL..=MAX_AQF_LEVEL).contains(&level) {
        return Err(format!(
            "qualification {code} has AQF level {level}, but AQF levels run from {MIN_AQF_LEVEL} to {MAX_AQF_LEVEL}"
        ));
    }
    Ok(())
}

/// Checks that every core and elective unit code names a unit, and none is listed twice.
fn validate_unit_references(
    qualification: &Qualification,
    units: &BTreeMap<String, Unit>,
    qualifications: &BTreeMap<String, Qualification>,
) -> Result<(), String> {
    let code = &qualification.code;
    let mut listed: HashSet<String> = HashSet::new();
    let references = qualification
        .core_units
        .iter()
        .chain(&qualification.elective_units);

    for unit_code in references {
        if unit_code.trim().is_empty() {
            return Err(format!("qualification {code} lists an empty unit code"));
        }
        let key = unit_code.to_ascii_uppercase();
        if qualifications.contains_key(&key) {
            return Err(format!(
                "qualification {code} lists unit {unit_code}, which is a qualification, not a unit"
            ));
        }
        if !units.contains_key(&key) {
            return Err(format!(
                "qualification {code} lists unit {unit_code}, which is not in the corpus"
            ));
        }
        if !listed.insert(key) {
            return Err(format!(
                "qualification {code} lists unit {unit_code} more than once"
            ));
        }
    }
    Ok(())
}

fn matches_all_terms(code: &str, title: &str, lower_case_terms: &[String]) -> bool {
    let code = code.to_lowercase();
    let title = title.to_lowercase();
    lower_case_terms
        .iter()
        .all(|term| code.contains(term.as_str()) || title.contains(term.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO_JSON: &str = include_str!("../../data/corpus.json");

    fn demo() -> Corpus {
        match Corpus::from_json("data/corpus.json", DEMO_JSON) {
            Ok(corpus) => corpus,
            Err(error) => panic!("demo corpus failed to load: {error}"),
        }
    }

    fn hit_code(hit: &SearchHit) -> &str {
        match hit {
            SearchHit::Unit { code, .. } | SearchHit::Qualification { code, .. } => code,
        }
    }

    fn hit_codes(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(hit_code).collect()
    }

    /// Returns a valid unit object with one element and one criterion.
    fn unit_json(code: &str) -> String {
        format!(
            r#"{{"code": "{code}", "title": "Test unit {code}", "status": "current", "elements": [{{"number": "1", "title": "Do the task", "performance_criteria": [{{"number": "1.1", "text": "Do the task well."}}]}}]}}"#
        )
    }

    /// Returns a unit object whose title is given, for search tests.
    fn titled_unit_json(code: &str, title: &str) -> String {
        unit_json(code).replace(&format!("Test unit {code}"), title)
    }

    /// Returns a valid qualification object in family `Test`. `core_units` is the JSON text
    /// inside the core unit array, such as `"ABC101"`.
    fn qualification_json(code: &str, level: u8, core_units: &str) -> String {
        format!(
            r#"{{"code": "{code}", "title": "Test qualification {code}", "aqf_level": {level}, "family": "Test", "status": "current", "core_units": [{core_units}], "elective_units": []}}"#
        )
    }

    fn corpus_json(units: &[String], qualifications: &[String]) -> String {
        format!(
            r#"{{"notice": "test data", "units": [{}], "qualifications": [{}]}}"#,
            units.join(", "),
            qualifications.join(", ")
        )
    }

    /// Returns a valid corpus of unit `ABC101` and qualification `ABC10101`, the base of the
    /// malformed cases.
    fn valid_test_json() -> String {
        corpus_json(
            &[unit_json("ABC101")],
            &[qualification_json("ABC10101", 1, r#""ABC101""#)],
        )
    }

    #[test]
    fn demo_corpus_parses() {
        let corpus = demo();

        assert_eq!(corpus.unit_count(), 24);
        assert_eq!(corpus.qualification_count(), 8);
        assert!(
            corpus.notice().contains("demo data"),
            "notice: {}",
            corpus.notice()
        );
        assert!(
            corpus.notice().contains("--corpus"),
            "notice: {}",
            corpus.notice()
        );
    }

    #[test]
    fn demo_unit_sizes_are_in_range() {
        let corpus = demo();

        for unit in corpus.units.values() {
            let element_count = unit.elements.len();
            assert!(
                (2..=4).contains(&element_count),
                "{} has {element_count} elements",
                unit.code
            );
            for element in &unit.elements {
                let criterion_count = element.performance_criteria.len();
                assert!(
                    (2..=4).contains(&criterion_count),
                    "{} element {} has {criterion_count} criteria",
                    unit.code,
                    element.number
                );
            }
        }
    }

    #[test]
    fn load_reads_demo_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/corpus.json");

        let corpus = match Corpus::load(&path) {
            Ok(corpus) => corpus,
            Err(error) => panic!("load failed: {error}"),
        };

        assert_eq!(corpus.unit_count(), 24);
        assert_eq!(corpus.qualification_count(), 8);
    }

    #[test]
    fn load_of_missing_file_names_path() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-corpus.json");

        let error = Corpus::load(&path).unwrap_err();

        assert!(matches!(error, CorpusError::Read { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("no-such-corpus.json"), "{message}");
    }

    #[test]
    fn search_finds_partial_title_ignoring_case() {
        let corpus = demo();

        let hits = corpus.search("SMALL OFFICE netw", 10);

        assert_eq!(hit_codes(&hits), ["ICTNWK305"]);
        match &hits[0] {
            SearchHit::Unit { title, .. } => assert_eq!(title, "Set up a small office network"),
            other => panic!("expected a unit hit, got {other:?}"),
        }
    }

    #[test]
    fn search_finds_code_ignoring_case() {
        let corpus = demo();

        let hits = corpus.search("bsb30120", 10);

        assert_eq!(hit_codes(&hits), ["BSB30120"]);
        match &hits[0] {
            SearchHit::Qualification { aqf_level, .. } => assert_eq!(*aqf_level, 3),
            other => panic!("expected a qualification hit, got {other:?}"),
        }
    }

    #[test]
    fn search_finds_partial_code() {
        let corpus = demo();

        let hits = corpus.search("ictcys", 10);

        assert_eq!(hit_codes(&hits), ["ICTCYS407", "ICTCYS610"]);
    }

    #[test]
    fn search_requires_every_term() {
        let corpus = demo();

        let team_hits = corpus.search("team", 50);
        let team_budget_hits = corpus.search("team budget", 50);

        assert!(team_hits.len() > 1, "{:?}", hit_codes(&team_hits));
        assert_eq!(hit_codes(&team_budget_hits), ["BSBFIN401"]);
    }

    #[test]
    fn search_terms_may_match_code_or_title() {
        let corpus = demo();

        let hits = corpus.search("ict security", 50);

        assert_eq!(hit_codes(&hits), ["ICTCYS610"]);
    }

    #[test]
    fn search_returns_units_and_qualifications() {
        let corpus = demo();

        let hits = corpus.search("business", 50);

        let has_unit = hits.iter().any(|hit| matches!(hit, SearchHit::Unit { .. }));
        let has_qualification = hits
            .iter()
            .any(|hit| matches!(hit, SearchHit::Qualification { .. }));
        assert!(has_unit, "{:?}", hit_codes(&hits));
        assert!(has_qualification, "{:?}", hit_codes(&hits));
    }

    #[test]
    fn search_orders_hits_by_code() {
        let corpus = demo();

        let hits = corpus.search("business", 50);

        let codes = hit_codes(&hits);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert!(codes.len() > 2, "{codes:?}");
        assert_eq!(codes, sorted);
    }

    #[test]
    fn search_respects_limit() {
        let corpus = demo();

        let all_hits = corpus.search("business", 50);
        let limited_hits = corpus.search("business", 3);

        assert!(all_hits.len() > 3, "{:?}", hit_codes(&all_hits));
        assert_eq!(hit_codes(&limited_hits), hit_codes(&all_hits)[..3]);
        assert!(corpus.search("business", 0).is_empty());
    }

    #[test]
    fn search_puts_exact_code_first() {
        // AXYZ100 contains the query XYZ100 and sorts before it by code.
        let json = corpus_json(
            &[
                titled_unit_json("AXYZ100", "First by code"),
                titled_unit_json("XYZ100", "Exact match"),
                titled_unit_json("BXYZ1000", "Last by code"),
            ],
            &[],
        );
        let corpus = match Corpus::from_json("test.json", &json) {
            Ok(corpus) => corpus,
            Err(error) => panic!("test corpus failed to load: {error}"),
        };

        let hits = corpus.search(" xyz100 ", 10);

        assert_eq!(hit_codes(&hits), ["XYZ100", "AXYZ100", "BXYZ1000"]);
    }

    #[test]
    fn search_with_blank_query_returns_nothing() {
        let corpus = demo();

        assert!(corpus.search("", 10).is_empty());
        assert!(corpus.search("  \t ", 10).is_empty());
    }

    #[test]
    fn search_without_match_returns_nothing() {
        let corpus = demo();

        assert!(corpus.search("astronomy", 10).is_empty());
    }

    #[test]
    fn lookup_accepts_lower_case_code() {
        let corpus = demo();

        match corpus.lookup("bsbwhs211") {
            Some(Entry::Unit(unit)) => {
                assert_eq!(unit.code, "BSBWHS211");
                assert_eq!(unit.elements.len(), 3);
                assert_eq!(unit.elements[0].performance_criteria[0].number, "1.1");
            }
            other => panic!("expected unit BSBWHS211, got {other:?}"),
        }
        match corpus.lookup("ict40120") {
            Some(Entry::Qualification(qualification)) => {
                assert_eq!(qualification.code, "ICT40120");
                assert_eq!(qualification.aqf_level, 4);
            }
            other => panic!("expected qualification ICT40120, got {other:?}"),
        }
    }

    #[test]
    fn lookup_of_unknown_code_returns_none() {
        let corpus = demo();

        assert!(corpus.lookup("BSBXXX000").is_none());
        assert!(corpus.lookup("").is_none());
    }

    #[test]
    fn ladder_orders_family_by_level() {
        let corpus = demo();

        let ladder = match corpus.ladder("ict50120") {
            Some(ladder) => ladder,
            None => panic!("ICT50120 has no ladder"),
        };

        let codes: Vec<&str> = ladder.iter().map(|q| q.code.as_str()).collect();
        let levels: Vec<u8> = ladder.iter().map(|q| q.aqf_level).collect();
        assert_eq!(codes, ["ICT30120", "ICT40120", "ICT50120", "ICT60120"]);
        assert_eq!(levels, [3, 4, 5, 6]);
    }

    #[test]
    fn ladder_orders_by_level_then_code() {
        // Code order alone would put XYZ20001 last, so this fails unless levels come first.
        let json = corpus_json(
            &[unit_json("ABC101")],
            &[
                qualification_json("ABC30002", 3, r#""ABC101""#),
                qualification_json("XYZ20001", 2, r#""ABC101""#),
                qualification_json("ABC30001", 3, r#""ABC101""#),
            ],
        );
        let corpus = match Corpus::from_json("test.json", &json) {
            Ok(corpus) => corpus,
            Err(error) => panic!("test corpus failed to load: {error}"),
        };

        let codes: Vec<String> = corpus
            .ladder("ABC30002")
            .unwrap_or_default()
            .into_iter()
            .map(|q| q.code)
            .collect();

        assert_eq!(codes, ["XYZ20001", "ABC30001", "ABC30002"]);
    }

    #[test]
    fn ladder_of_unit_code_returns_none() {
        let corpus = demo();

        assert!(corpus.ladder("BSBWHS211").is_none());
        assert!(corpus.ladder("NOSUCH123").is_none());
    }

    #[test]
    fn entries_serialize_with_kind_tag() {
        let corpus = demo();

        let unit = serde_json::to_value(corpus.lookup("BSBWHS211")).unwrap();
        let hit = serde_json::to_value(&corpus.search("BSB30120", 1)[0]).unwrap();

        assert_eq!(unit["kind"], "unit");
        assert_eq!(unit["code"], "BSBWHS211");
        assert_eq!(hit["kind"], "qualification");
        assert_eq!(hit["aqf_level"], 3);
    }

    #[test]
    fn test_helpers_build_valid_corpus() {
        // The malformed cases below edit this corpus, so it must load cleanly.
        let result = Corpus::from_json("test.json", &valid_test_json());

        assert!(result.is_ok(), "{:?}", result.err());
    }

    #[test]
    fn parse_error_states_position_once() {
        let error = Corpus::from_json("test.json", "{\n  \"units\": [,]\n}").unwrap_err();

        let message = error.to_string();
        assert!(
            matches!(error, CorpusError::Parse { line: 2, .. }),
            "{error:?}"
        );
        assert!(message.contains("line 2, column 13"), "{message}");
        assert_eq!(message.matches("line 2").count(), 1, "{message}");
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let valid = valid_test_json();
        let good_qualification = qualification_json("ABC10101", 1, r#""ABC101""#);

        // Each case: description, JSON text, fragment that the error message must contain.
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "syntax error",
                "{\n  \"notice\": \"x\",\n  \"units\": [}\n}".to_owned(),
                "is invalid at line 3, column 13: expected value",
            ),
            ("empty file", String::new(), "is invalid at line 1, column 0: EOF"),
            ("top level is an array", "[]".to_owned(), "is invalid at line 1"),
            (
                "missing units",
                r#"{"qualifications": []}"#.to_owned(),
                "missing field `units`",
            ),
            (
                "unknown top-level field",
                valid.replace(r#""notice""#, r#""notes""#),
                "unknown field `notes`",
            ),
            (
                "unknown unit field",
                valid.replace(r#""title": "Test unit"#, r#""titel": "Test unit"#),
                "unknown field `titel`",
            ),
            (
                "unknown criterion field",
                valid.replace(r#""text""#, r#""txt""#),
                "unknown field `txt`",
            ),
            (
                "AQF level beyond u8",
                valid.replace(r#""aqf_level": 1"#, r#""aqf_level": 300"#),
                "invalid value: integer `300`",
            ),
            (
                "duplicate unit code",
                corpus_json(&[unit_json("ABC101"), unit_json("ABC101")], &[]),
                "is invalid: unit ABC101 has the same code as unit ABC101",
            ),
            (
                "unit codes differ only in case",
                corpus_json(&[unit_json("ABC101"), unit_json("abc101")], &[]),
                "unit abc101 has the same code as unit ABC101",
            ),
            (
                "qualification reuses a unit code",
                corpus_json(
                    &[unit_json("ABC101")],
                    &[qualification_json("ABC101", 1, r#""ABC101""#)],
                ),
                "qualification ABC101 has the same code as unit ABC101",
            ),
            (
                "duplicate qualification code",
                corpus_json(
                    &[unit_json("ABC101")],
                    &[good_qualification.clone(), good_qualification.clone()],
                ),
                "qualification ABC10101 has the same code as qualification ABC10101",
            ),
            (
                "empty unit code",
                corpus_json(&[unit_json("ABC101"), unit_json("")], &[]),
                "unit number 2 in the list has an empty code",
            ),
            (
                "empty qualification code",
                corpus_json(&[unit_json("ABC101")], &[qualification_json(" ", 1, "")]),
                "qualification number 1 in the list has an empty code",
            ),
            (
                "code too short",
                corpus_json(&[unit_json("AB")], &[]),
                r#"unit code "AB" is invalid"#,
            ),
            (
                "code too long",
                corpus_json(&[unit_json("ABCDEFGHIJKLM")], &[]),
                r#"unit code "ABCDEFGHIJKLM" is invalid"#,
            ),
            (
                "code with punctuation",
                corpus_json(&[unit_json("ABC101")], &[qualification_json("ABC-101", 1, "")]),
                r#"qualification code "ABC-101" is invalid"#,
            ),
            (
                "code with non-ASCII letter",
                corpus_json(&[unit_json("ABCÉ01")], &[]),
                r#"unit code "ABCÉ01" is invalid"#,
            ),
            (
                "empty unit title",
                valid.replace("Test unit ABC101", " "),
                "unit ABC101 has an empty title",
            ),
            (
                "empty qualification title",
                valid.replace("Test qualification ABC10101", ""),
                "qualification ABC10101 has an empty title",
            ),
            (
                "empty qualification family",
                valid.replace(r#""family": "Test""#, r#""family": """#),
                "qualification ABC10101 has an empty family",
            ),
            (
                "AQF level 0",
                valid.replace(r#""aqf_level": 1"#, r#""aqf_level": 0"#),
                "qualification ABC10101 has AQF level 0, but AQF levels run from 1 to 10",
            ),
            (
                "AQF level 11",
                valid.replace(r#""aqf_level": 1"#, r#""aqf_level": 11"#),
                "qualification ABC10101 has AQF level 11",
            ),
            (
                "missing unit reference",
                valid.replace(r#"["ABC101"]"#, r#"["ABC101", "BSBXXX000"]"#),
                "qualification ABC10101 lists unit BSBXXX000, which is not in the corpus",
            ),
            (
                "missing elective unit reference",
                valid.replace(r#""elective_units": []"#, r#""elective_units": ["XYZ999"]"#),
                "qualification ABC10101 lists unit XYZ999, which is not in the corpus",
            ),
            (
                "qualification listed as a unit",
                valid.replace(r#"["ABC101"]"#, r#"["ABC10101"]"#),
                "lists unit ABC10101, which is a qualification, not a unit",
            ),
            (
                "unit listed as core and elective",
                valid.replace(r#""elective_units": []"#, r#""elective_units": ["abc101"]"#),
                "qualification ABC10101 lists unit abc101 more than once",
            ),
            (
                "empty unit reference",
                valid.replace(r#"["ABC101"]"#, r#"["ABC101", ""]"#),
                "qualification ABC10101 lists an empty unit code",
            ),
            (
                "unit without elements",
                corpus_json(
                    &[r#"{"code": "ABC101", "title": "T", "status": "current", "elements": []}"#
                        .to_owned()],
                    &[],
                ),
                "unit ABC101 has no elements",
            ),
            (
                "element without performance criteria",
                corpus_json(
                    &[r#"{"code": "ABC101", "title": "T", "status": "current", "elements": [{"number": "1", "title": "E", "performance_criteria": []}]}"#
                        .to_owned()],
                    &[],
                ),
                "unit ABC101 element 1 has no performance criteria",
            ),
            (
                "empty element title",
                valid.replace("Do the task\"", "\""),
                "unit ABC101 element 1 has an empty title",
            ),
            (
                "empty criterion text",
                valid.replace("Do the task well.", ""),
                "unit ABC101 performance criterion 1.1 has empty text",
            ),
            (
                "duplicate element number",
                corpus_json(
                    &[r#"{"code": "ABC101", "title": "T", "status": "current", "elements": [
                        {"number": "1", "title": "E", "performance_criteria": [{"number": "1.1", "text": "C"}]},
                        {"number": "1", "title": "F", "performance_criteria": [{"number": "1.2", "text": "D"}]}]}"#
                        .to_owned()],
                    &[],
                ),
                "unit ABC101 has more than one element numbered 1",
            ),
            (
                "duplicate criterion number",
                corpus_json(
                    &[r#"{"code": "ABC101", "title": "T", "status": "current", "elements": [
                        {"number": "1", "title": "E", "performance_criteria": [{"number": "1.1", "text": "C"}, {"number": "1.1", "text": "D"}]}]}"#
                        .to_owned()],
                    &[],
                ),
                "unit ABC101 has more than one performance criterion numbered 1.1",
            ),
        ];

        for (description, json, expected_fragment) in &cases {
            let error = match Corpus::from_json("test.json", json) {
                Ok(_) => panic!("{description}: expected an error, but the corpus loaded"),
                Err(error) => error,
            };
            let message = error.to_string();
            assert!(
                message.starts_with("corpus file test.json is invalid"),
                "{description}: {message}"
            );
            assert!(
                message.contains(expected_fragment),
                "{description}: expected {expected_fragment:?} in {message:?}"
            );
        }
    }
}
