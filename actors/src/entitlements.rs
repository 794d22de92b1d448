//! The scopes a user has right now, from every source: entitlements set by an
//! operator, active subscriptions, and the scopes every user has. Also the
//! revocation of grants that carry a scope the user no longer has.

use std::collections::BTreeSet;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};

use crate::accounts::GetEntitlements;
use crate::billing::{CustomerBilling, GetCustomerBilling};
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

/// Collects every scope `user_id` has at `now`, implied scopes included.
pub async fn held_scopes(
    services: &Services,
    catalog: &Catalog,
    user_id: &str,
    now: UnixTime,
) -> Result<BTreeSet<String>, StoreError> {
    let mut held: Vec<String> = ask(&services.accounts, GetEntitlements { user_id: user_id.to_string() }).await?;
    let billing = ask(&services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    for plan in active_plans(catalog, &billing, now, services.billing_grace) {
        if let Some(plan) = catalog.plan(&plan) {
            held.push(plan.scope.clone());
        }
    }
    held.extend(catalog.scopes_held_by_everyone().map(str::to_string));
    Ok(catalog.expand(&held))
}

/// Revokes the user's grants that carry a scope the user no longer holds; returns how many.
pub async fn revoke_grants_beyond_held(
    services: &Services,
    catalog: &Catalog,
    user_id: &str,
    now: UnixTime,
) -> Result<usize, StoreError> {
    let held = held_scopes(services, catalog, user_id, now).await?;
    ask(&services.tokens, RevokeGrantsBeyond { user_id: user_id.to_string(), held }).await
}
