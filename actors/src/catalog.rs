//! The catalog: the scopes this server issues or recognises, the capabilities each grants and
//! implies, and the plans with their limits and prices. Read-only after start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::oauth::parse_scope;

/// An operation a surface checks before serving a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Search,
    Lookup,
    Ladder,
    Components,
    EmploymentSignals,
    Pathway,
    CustomCorpus,
    UccoTools,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Search => "search",
            Capability::Lookup => "lookup",
            Capability::Ladder => "ladder",
            Capability::Components => "components",
            Capability::EmploymentSignals => "employment_signals",
            Capability::Pathway => "pathway",
            Capability::CustomCorpus => "custom_corpus",
            Capability::UccoTools => "ucco_tools",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeDefinition {
    pub name: String,
    /// Plain words shown on the consent page.
    pub description: String,
    pub capabilities: Vec<Capability>,
    /// Scopes whose capabilities this one includes.
    #[serde(default)]
    pub implies: Vec<String>,
    /// False for scopes no token may carry, such as the ops key's `ucca:admin`.
    #[serde(default = "default_true")]
    pub issuable: bool,
    /// Held by every signed-in user without an entitlement.
    #[serde(default)]
    pub held_by_every_user: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The scope a key or subscription of this plan grants.
    pub scope: String,
    /// Calls per calendar month (UTC); `None` is unlimited.
    pub call_limit_monthly: Option<u64>,
    /// Calls per second for one customer; `None` is unlimited.
    pub burst_per_second: Option<u64>,
    pub price_aud_monthly: Option<u32>,
    pub ecosystem_price_aud_monthly: Option<u32>,
    pub includes_labour_market: bool,
    /// Whether this plan is the corpus subscription, whose holders pay ecosystem prices on other plans.
    #[serde(default)]
    pub corpus: bool,
    /// The payment provider's price id for the standard price.
    pub stripe_price_id: Option<String>,
    /// The payment provider's price id for the ecosystem price.
    pub stripe_ecosystem_price_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeTier {
    /// Keyless calls per minute from one client IP address.
    pub calls_per_minute_per_ip: u64,
    pub results_per_call: usize,
    pub components: bool,
    pub labour_market: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    scopes: Vec<ScopeDefinition>,
    #[serde(default)]
    plans: BTreeMap<String, Plan>,
    free_tier: FreeTier,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("catalog {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    scopes: Vec<ScopeDefinition>,
    plans: BTreeMap<String, Plan>,
    free_tier: FreeTier,
    /// Capabilities of each scope including everything it implies, transitively.
    granted: BTreeMap<String, BTreeSet<Capability>>,
    /// Each scope with every scope it implies, transitively, itself included.
    closure: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CatalogError::Read { path: path.display().to_string(), source })?;
        Catalog::from_toml(&path.display().to_string(), &text)
    }

    /// Parses and validates catalog text; `source` names it in error messages.
    pub fn from_toml(source: &str, text: &str) -> Result<Catalog, CatalogError> {
        let invalid = |message: String| CatalogError::Invalid { path: source.to_string(), message };
        let file: CatalogFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;

        let mut names = BTreeSet::new();
        for scope in &file.scopes {
            if parse_scope(&scope.name).is_none_or(|tokens| tokens.len() != 1) {
                return Err(invalid(format!("scope {:?} is not a valid scope name", scope.name)));
            }
            if !names.insert(scope.name.clone()) {
                return Err(invalid(format!("scope {} is defined twice", scope.name)));
            }
            if scope.description.trim().is_empty() {
                return Err(invalid(format!("scope {} has no description", scope.name)));
            }
        }
        for scope in &file.scopes {
            if let Some(unknown) = scope.implies.iter().find(|implied| !names.contains(*implied)) {
                return Err(invalid(format!("scope {} implies {unknown}, which is not defined", scope.name)));
            }
        }

        let mut closure = BTreeMap::new();
        for scope in &file.scopes {
            closure.insert(scope.name.clone(), implied_closure(&file.scopes, &scope.name).map_err(invalid)?);
        }
        let granted = closure
            .iter()
            .map(|(name, members)| {
                let capabilities = file
                    .scopes
                    .iter()
                    .filter(|scope| members.contains(&scope.name))
                    .flat_map(|scope| scope.capabilities.iter().copied())
                    .collect();
                (name.clone(), capabilities)
            })
            .collect();

        if file.plans.values().filter(|plan| plan.corpus).count() > 1 {
            return Err(invalid("only one plan may be the corpus subscription".into()));
        }
        let mut price_ids = BTreeSet::new();
        for plan in file.plans.values() {
            for price_id in [&plan.stripe_price_id, &plan.stripe_ecosystem_price_id].into_iter().flatten() {
                if !price_ids.insert(price_id.clone()) {
                    return Err(invalid(format!("price id {price_id} appears twice; each must buy exactly one plan")));
                }
            }
        }
        for (name, plan) in &file.plans {
            if !names.contains(&plan.scope) {
                return Err(invalid(format!("plan {name} grants scope {}, which is not defined", plan.scope)));
            }
            if plan.price_aud_monthly.is_some() != plan.ecosystem_price_aud_monthly.is_some() {
                return Err(invalid(format!("plan {name} must set both price_aud_monthly and ecosystem_price_aud_monthly, or neither")));
            }
            if let (Some(standard), Some(ecosystem)) = (plan.price_aud_monthly, plan.ecosystem_price_aud_monthly) {
                if ecosystem > standard {
                    return Err(invalid(format!("plan {name} has an ecosystem price above its standard price")));
                }
            }
        }

        Ok(Catalog { scopes: file.scopes, plans: file.plans, free_tier: file.free_tier, granted, closure })
    }

    pub fn scope(&self, name: &str) -> Option<&ScopeDefinition> {
        self.scopes.iter().find(|scope| scope.name == name)
    }

    pub fn is_issuable(&self, name: &str) -> bool {
        self.scope(name).is_some_and(|scope| scope.issuable)
    }

    /// Scopes a token may carry, in catalog order.
    pub fn issuable_scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter(|scope| scope.issuable).map(|scope| scope.name.as_str())
    }

    /// Scopes every signed-in user holds without an entitlement.
    pub fn scopes_held_by_everyone(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter(|scope| scope.held_by_every_user).map(|scope| scope.name.as_str())
    }

    /// Expands a set of scopes with every scope they imply, transitively.
    pub fn expand<'a>(&self, held: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        held.into_iter().filter_map(|name| self.closure.get(name)).flatten().cloned().collect()
    }

    /// Checks whether any of `scopes` grants `capability`, directly or through an implied scope.
    pub fn grants(&self, scopes: &[String], capability: Capability) -> bool {
        scopes.iter().any(|scope| self.granted.get(scope).is_some_and(|capabilities| capabilities.contains(&capability)))
    }

    /// Finds the scope to name in an `insufficient_scope` challenge: the first issuable
    /// scope in catalog order that grants `capability` itself, which is the least powerful one.
    pub fn scope_for(&self, capability: Capability) -> Option<&str> {
        self.scopes
            .iter()
            .find(|scope| scope.issuable && !scope.held_by_every_user && scope.capabilities.contains(&capability))
            .map(|scope| scope.name.as_str())
    }

    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// Finds the plan that a payment provider's price id buys.
    pub fn plan_for_price(&self, price_id: &str) -> Option<&str> {
        self.plans
            .iter()
            .find(|(_, plan)| {
                plan.stripe_price_id.as_deref() == Some(price_id) || plan.stripe_ecosystem_price_id.as_deref() == Some(price_id)
            })
            .map(|(name, _)| name.as_str())
    }

    /// Looks up the monthly price of a plan in AUD: the ecosystem price while the
    /// customer has an active corpus subscription, the standard price otherwise.
    pub fn price(&self, plan: &str, ecosystem: bool) -> Option<u32> {
        let plan = self.plans.get(plan)?;
        if ecosystem {
            plan.ecosystem_price_aud_monthly.or(plan.price_aud_monthly)
        } else {
            plan.price_aud_monthly
        }
    }

    /// Finds the corpus subscription's plan, if the catalog has one.
    pub fn corpus_plan(&self) -> Option<&str> {
        self.plans.iter().find(|(_, plan)| plan.corpus).map(|(name, _)| name.as_str())
    }

    pub fn plans(&self) -> impl Iterator<Item = (&str, &Plan)> {
        self.plans.iter().map(|(name, plan)| (name.as_str(), plan))
    }

    /// Finds the plan a credential with `scopes` counts against: the most powerful
    /// plan whose scope's capabilities the credential has in full. A token of the
    /// first version's `read` scope so counts against the operational plan.
    pub fn plan_for(&self, scopes: &[String]) -> Option<&str> {
        let held: BTreeSet<Capability> =
            scopes.iter().filter_map(|scope| self.granted.get(scope)).flatten().copied().collect();
        self.plans
            .iter()
            .filter_map(|(name, plan)| self.granted.get(&plan.scope).map(|capabilities| (name, capabilities)))
            .filter(|(_, capabilities)| !capabilities.is_empty() && capabilities.is_subset(&held))
            .max_by_key(|(_, capabilities)| capabilities.len())
            .map(|(name, _)| name.as_str())
    }

    pub fn free_tier(&self) -> &FreeTier {
        &self.free_tier
    }
}

/// Follows `implies` from `start`, rejecting cycles.
fn implied_closure(scopes: &[ScopeDefinition], start: &str) -> Result<BTreeSet<String>, String> {
    let mut members = BTreeSet::new();
    let mut path = Vec::new();
    visit(scopes, start, &mut members, &mut path)?;
    Ok(members)
}

fn visit(scopes: &[ScopeDefinition], name: &str, members: &mut BTreeSet<String>, path: &mut Vec<String>) -> Result<(), String> {
    if path.iter().any(|seen| seen == name) {
        return Err(format!("scopes imply each other in a cycle: {} -> {name}", path.join(" -> ")));
    }
    if !members.insert(name.to_string()) {
        return Ok(());
    }
    path.push(name.to_string());
    if let Some(scope) = scopes.iter().find(|scope| scope.name == name) {
        for implied in &scope.implies {
            visit(scopes, implied, members, path)?;
        }
    }
    path.pop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../data/catalog.toml");

    fn shipped() -> Catalog {
        Catalog::from_toml("data/catalog.toml", SHIPPED).unwrap()
    }

    #[test]
    fn professional_implies_operational_capabilities() {
        let catalog = shipped();
        let professional = vec!["rtopacks:professional".to_string()];
        for capability in [Capability::Search, Capability::Components, Capability::Pathway] {
            assert!(catalog.grants(&professional, capability), "{capability:?}");
        }
        assert!(!catalog.grants(&professional, Capability::CustomCorpus));
        assert!(!catalog.grants(&["rtopacks:operational".to_string()], Capability::Pathway));
    }

    #[test]
    fn admin_scope_is_never_issuable() {
        let catalog = shipped();
        assert!(!catalog.is_issuable("ucca:admin"));
        assert!(!catalog.issuable_scopes().any(|scope| scope == "ucca:admin"));
    }

    #[test]
    fn challenge_names_least_powerful_scope() {
        let catalog = shipped();
        assert_eq!(catalog.scope_for(Capability::Search), Some("rtopacks:operational"));
        assert_eq!(catalog.scope_for(Capability::Pathway), Some("rtopacks:professional"));
        assert_eq!(catalog.scope_for(Capability::UccoTools), Some("ucco:framework"));
    }

    #[test]
    fn expansion_includes_implied_scopes() {
        let expanded = shipped().expand(&["rtopacks:developer".to_string()]);
        assert!(expanded.contains("rtopacks:operational"));
        assert!(!expanded.contains("rtopacks:professional"));
    }

    #[test]
    fn credentials_count_against_their_most_powerful_plan() {
        let catalog = shipped();
        let plan = |scopes: &[&str]| catalog.plan_for(&scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(plan(&["read"]), Some("operational"));
        assert_eq!(plan(&["rtopacks:operational"]), Some("operational"));
        assert_eq!(plan(&["rtopacks:developer"]), Some("developer"));
        assert_eq!(plan(&["rtopacks:operational", "rtopacks:professional"]), Some("professional"));
        assert_eq!(plan(&["rtopacks:enterprise"]), Some("enterprise"));
        assert_eq!(plan(&["ucco:framework"]), None);
    }

    #[test]
    fn price_ids_map_to_plans() {
        let catalog = shipped();
        assert_eq!(catalog.plan_for_price("price_ucca_developer_standard"), Some("developer"));
        assert_eq!(catalog.plan_for_price("price_ucca_developer_ecosystem"), Some("developer"));
        assert_eq!(catalog.plan_for_price("price_ucca_corpus"), Some("operational"));
        assert_eq!(catalog.plan_for_price("price_unknown"), None);
        assert_eq!(catalog.corpus_plan(), Some("operational"));
    }

    #[test]
    fn shipped_plans_match_the_price_list() {
        let catalog = shipped();
        let developer = catalog.plan("developer").unwrap();
        assert_eq!((developer.call_limit_monthly, developer.price_aud_monthly, developer.ecosystem_price_aud_monthly), (Some(5_000), Some(199), Some(99)));
        let professional = catalog.plan("professional").unwrap();
        assert_eq!((professional.call_limit_monthly, professional.price_aud_monthly, professional.ecosystem_price_aud_monthly), (Some(25_000), Some(399), Some(299)));
        assert_eq!(catalog.plan("enterprise").unwrap().call_limit_monthly, None);
        assert_eq!(catalog.plan("operational").unwrap().call_limit_monthly, Some(100_000));
    }

    #[test]
    fn invalid_catalogs_name_the_entry() {
        let scope = |name: &str, extra: &str| format!("[[scopes]]\nname = \"{name}\"\ndescription = \"d\"\ncapabilities = []\n{extra}\n");
        let free = "[free_tier]\ncalls_per_minute_per_ip = 5\nresults_per_call = 1\ncomponents = false\nlabour_market = false\n";
        let cases = [
            ("duplicate scope", format!("{}{}{free}", scope("a", ""), scope("a", "")), "scope a is defined twice"),
            ("unknown implied scope", format!("{}{free}", scope("a", "implies = [\"b\"]")), "scope a implies b"),
            ("cycle", format!("{}{}{free}", scope("a", "implies = [\"b\"]"), scope("b", "implies = [\"a\"]")), "cycle"),
            ("bad scope name", format!("{}{free}", scope("a b", "")), "\"a b\""),
            ("unknown capability", format!("[[scopes]]\nname = \"a\"\ndescription = \"d\"\ncapabilities = [\"fly\"]\n{free}"), "fly"),
            ("unknown field", format!("{}{free}", scope("a", "colour = \"red\"")), "colour"),
            ("plan with unknown scope", format!("{}{free}[plans.p]\nscope = \"zz\"\nincludes_labour_market = false\n", scope("a", "")), "plan p grants scope zz"),
            ("empty description", format!("[[scopes]]\nname = \"a\"\ndescription = \" \"\ncapabilities = []\n{free}"), "scope a has no description"),
        ];
        for (description, text, expected) in cases {
            let message = Catalog::from_toml("test.toml", &text).unwrap_err().to_string();
            assert!(message.contains(expected), "{description}: {message}");
            assert!(message.contains("test.toml"), "{description}: {message}");
        }
    }
}
