//! The scopes a user has right now, from every source: entitlements set by an
//! operator, active subscriptions, and the scopes every user has. Also the
//! revocation of grants that carry a scope the user no longer has, and the
//! deactivation of API keys whose subscription ended.

use std::collections::BTreeSet;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};

use crate::accounts::GetEntitlements;
use crate::apikeys::DeactivateSubscriptionKeys;
use crate::billing::{CustomerBilling, GetCustomerBilling, SubscriptionRecord};
use crate::catalog::Catalog;
use crate::clock::UnixTime;
use crate::services::Services;
use crate::store::StoreError;
use crate::tokens::RevokeGrantsBeyond;

async fn ask<A, M, T>(address: &Addr<A>, message: M) -> Result<T, StoreError>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message<Result = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    address.send(message).await.map_err(|error| StoreError::Backend(format!("actor mailbox failed: {error}")))?
}

/// Lists the plans a user's active subscriptions grant at `now`.
pub fn active_plans(catalog: &Catalog, billing: &CustomerBilling, now: UnixTime, grace: u64) -> BTreeSet<String> {
    billing
        .subscriptions
        .iter()
        .filter(|subscription| subscription.is_active(now, grace))
        .flat_map(|subscription| subscription.price_ids.iter().filter_map(|price| catalog.plan_for_price(price)))
        .map(str::to_string)
        .collect()
}

/// Checks whether `subscription` buys a plan whose scope, with the scopes it
/// implies, includes the scope of plan `tier`. For example, a professional
/// subscription covers the developer tier. Whether it is active is not checked.
pub fn subscription_covers(catalog: &Catalog, subscription: &SubscriptionRecord, tier: &str) -> bool {
    let Some(tier) = catalog.plan(tier) else { return false };
    let bought: Vec<String> = subscription
        .price_ids
        .iter()
        .filter_map(|price| catalog.plan_for_price(price))
        .filter_map(|plan| catalog.plan(plan))
        .map(|plan| plan.scope.clone())
        .collect();
    catalog.expand(&bought).contains(&tier.scope)
}

/// Collects every scope `user_id` has at `now`, implied scopes included.
pub async fn held_scopes(
    services: &Services,
    catalog: &Catalog,
    user_id: &str,
    now: UnixTime,
) -> Result<BTreeSet<String>, StoreError> {
    let billing = ask(&services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    held_scopes_with(services, catalog, user_id, &billing, now).await
}

/// Collects every scope `user_id` has at `now`, given the user's billing records.
async fn held_scopes_with(
    services: &Services,
    catalog: &Catalog,
    user_id: &str,
    billing: &CustomerBilling,
    now: UnixTime,
) -> Result<BTreeSet<String>, StoreError> {
    let mut held: Vec<String> = ask(&services.accounts, GetEntitlements { user_id: user_id.to_string() }).await?;
    for plan in active_plans(catalog, billing, now, services.billing_grace) {
        if let Some(plan) = catalog.plan(&plan) {
            held.push(plan.scope.clone());
        }
    }
    held.extend(catalog.scopes_held_by_everyone().map(str::to_string));
    Ok(catalog.expand(&held))
}

/// Revokes the user's grants that carry a scope the user no longer holds and
/// deactivates the API keys of the user's ended subscriptions. Returns how many
/// grants were revoked. Repeating it changes nothing more.
pub async fn revoke_grants_beyond_held(
    services: &Services,
    catalog: &Catalog,
    user_id: &str,
    now: UnixTime,
) -> Result<usize, StoreError> {
    let billing = ask(&services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    deactivate_ended_subscription_keys(services, &billing, now).await?;
    let held = held_scopes_with(services, catalog, user_id, &billing, now).await?;
    ask(&services.tokens, RevokeGrantsBeyond { user_id: user_id.to_string(), held }).await
}

/// Deactivates every active API key tied to a subscription in `billing` that
/// no longer grants its plan at `now` (canceled, deleted, or past the grace
/// period after a failed payment), and returns the ids of those keys. Such a
/// key stays deactivated even if the subscription is paid again later.
async fn deactivate_ended_subscription_keys(
    services: &Services,
    billing: &CustomerBilling,
    now: UnixTime,
) -> Result<Vec<String>, StoreError> {
    let ended: Vec<String> = billing
        .subscriptions
        .iter()
        .filter(|subscription| !subscription.is_active(now, services.billing_grace))
        .map(|subscription| subscription.id.clone())
        .collect();
    ask(&services.api_keys, DeactivateSubscriptionKeys { subscription_ids: ended }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(price_ids: &[&str]) -> SubscriptionRecord {
        SubscriptionRecord {
            id: "sub_1".into(),
            customer: "cus_1".into(),
            user_id: "u".into(),
            status: "active".into(),
            price_ids: price_ids.iter().map(|price| price.to_string()).collect(),
            canceled: false,
            payment_failed_at: None,
            last_event_at: 0,
        }
    }

    #[test]
    fn subscription_covers_implied_tiers() {
        let catalog = Catalog::from_toml("data/catalog.toml", include_str!("../../data/catalog.toml")).unwrap();
        let professional = subscription(&["price_ucca_professional_standard"]);
        let corpus = subscription(&["price_ucca_corpus"]);
        let unknown = subscription(&["price_unknown"]);
        let cases = [
            ("professional covers professional", &professional, "professional", true),
            ("professional covers developer", &professional, "developer", true),
            ("professional does not cover enterprise", &professional, "enterprise", false),
            ("corpus covers operational", &corpus, "operational", true),
            ("corpus does not cover developer", &corpus, "developer", false),
            ("unknown price covers nothing", &unknown, "operational", false),
            ("unknown tier is never covered", &professional, "platinum", false),
        ];
        for (description, subscription, tier, expected) in cases {
            assert_eq!(subscription_covers(&catalog, subscription, tier), expected, "{description}");
        }
    }
}
