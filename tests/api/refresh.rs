//! Refresh tokens (`grant_type=refresh_token`, RFC 6749 section 6). Covers
//! rotation on every use, a retry after a lost response, reuse detection that
//! revokes the grant, and concurrent use of one token. Also covers revocation
//! (RFC 7009), introspection (RFC 7662), scope narrowing, the client binding
//! and the 30-day lifetime.

use reqwest::StatusCode;

use crate::helpers::*;

const SEARCH: &str = "/v1/search?q=business";
const EMAIL: &str = "ada@example.com";
/// Scopes the test client may request. The test user holds both.
const CLIENT_SCOPES: &str = "read rtopacks:operational";
/// The default refresh token lifetime: 30 days, in seconds.
const REFRESH_TTL: u64 = 30 * 86_400;

/// The access and refresh token of one token response.
#[derive(Debug, Clone)]
struct Pair {
    access: String,
    refresh: String,
}

impl Pair {
    /// Reads the tokens out of a token response that `step` expects to be 200.
    fn from_reply(reply: &JsonReply, step: &str) -> Pair {
        assert_eq!(reply.status, StatusCode::OK, "{step}: status, body {}", reply.text);
        let field = |name: &str| {
            reply.body[name].as_str().unwrap_or_else(|| panic!("{step}: token response has no {name}: {}", reply.text)).to_string()
        };
        Pair { access: field("access_token"), refresh: field("refresh_token") }
    }
}

/// An app with a signed-in user who holds `rtopacks:operational`, and a confidential client.
struct Setup {
    app: TestApp,
    client: TestClient,
    browser: Browser,
}

async fn setup() -> Setup {
    let app = spawn_app().await;
    let entitled = app.put_entitlements(EMAIL, &["rtopacks:operational"]).await;
    assert_eq!(entitled.status, StatusCode::OK, "set entitlements, body {}", entitled.text);
    let client = app.scoped_client(CLIENT_SCOPES).await;
    let browser = app.signed_in_browser(EMAIL).await;
    Setup { app, client, browser }
}

impl Setup {
    /// Runs a new authorization for `scope` and returns its first tokens.
    async fn new_grant(&self, scope: &str) -> Pair {
        let reply = self.app.grant_tokens(&self.browser, &self.client, &[("scope", scope)]).await;
        Pair::from_reply(&reply, "code exchange")
    }

    async fn refresh(&self, refresh_token: &str) -> JsonReply {
        self.app.refresh_grant(&self.client, refresh_token, &[]).await
    }

    async fn api_status(&self, access_token: &str) -> StatusCode {
        self.app.get_with_token(SEARCH, access_token).await.status()
    }
}

/// Reports whether `text` has the shape of a token: 96 lowercase hex characters.
fn is_token_shaped(text: &str) -> bool {
    text.len() == 96 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks that `reply` is a 400 `invalid_grant`, naming `step` on failure.
fn assert_invalid_grant(reply: &JsonReply, step: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{step}: status, body {}", reply.text);
    assert_eq!(reply.body["error"], "invalid_grant", "{step}: error, body {}", reply.text);
    assert!(reply.body.get("access_token").is_none(), "{step}: a rejected refresh issued a token");
}

#[actix_web::test]
async fn refresh_rotates_both_tokens() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;
    assert!(is_token_shaped(&original.refresh), "refresh token {:?} is not 96 hex characters", original.refresh);
    assert_ne!(original.refresh, original.access, "refresh token equals the access token");

    let reply = setup.refresh(&original.refresh).await;

    let rotated = Pair::from_reply(&reply, "refresh");
    assert_eq!(reply.body["token_type"], "Bearer", "token_type");
    assert_eq!(reply.body["scope"], "read", "scope");
    assert_eq!(reply.header("cache-control"), "no-store", "Cache-Control");
    assert!(is_token_shaped(&rotated.access), "new access token {:?}", rotated.access);
    assert!(is_token_shaped(&rotated.refresh), "new refresh token {:?}", rotated.refresh);
    assert_ne!(rotated.access, original.access, "access token was not replaced");
    assert_ne!(rotated.refresh, original.refresh, "refresh token was not rotated");
    assert_eq!(setup.api_status(&rotated.access).await, StatusCode::OK, "API call with the new access token");

    setup.app.stop().await;
}

#[actix_web::test]
async fn lost_response_allows_retry() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;

    // The client never saw the first response, so it presents the original token again.
    let lost = Pair::from_reply(&setup.refresh(&original.refresh).await, "first refresh");
    let retried = Pair::from_reply(&setup.refresh(&original.refresh).await, "retried refresh");

    assert_ne!(lost.refresh, retried.refresh, "the retry returned the same refresh token");
    assert_invalid_grant(&setup.refresh(&lost.refresh).await, "refresh with the replaced successor");
    let next = Pair::from_reply(&setup.refresh(&retried.refresh).await, "refresh with the latest successor");
    assert_eq!(setup.api_status(&next.access).await, StatusCode::OK, "API call after the replaced successor was refused");
    assert_invalid_grant(&setup.refresh(&lost.refresh).await, "replaced successor after the latest was used");

    setup.app.stop().await;
}

#[actix_web::test]
async fn reuse_after_rotation_revokes_grant() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;
    let first = Pair::from_reply(&setup.refresh(&original.refresh).await, "first refresh");
    let second = Pair::from_reply(&setup.refresh(&first.refresh).await, "refresh with the successor");
    assert_eq!(setup.api_status(&second.access).await, StatusCode::OK, "API call before the reuse");

    let reused = setup.refresh(&original.refresh).await;

    assert_invalid_grant(&reused, "reuse of the original refresh token");
    let rows = [
        ("original access token", &original.access),
        ("first successor's access token", &first.access),
        ("second successor's access token", &second.access),
    ];
    for (description, token) in rows {
        let reply = JsonReply::read(setup.app.get_with_token(SEARCH, token).await).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{description}: status, body {}", reply.text);
        let challenge = reply.header("www-authenticate");
        assert!(challenge.contains("error=\"invalid_token\""), "{description}: challenge {challenge:?}");
    }
    assert_invalid_grant(&setup.refresh(&second.refresh).await, "refresh with the latest successor after the reuse");

    setup.app.stop().await;
}

#[actix_web::test]
async fn concurrent_refresh_leaves_one_live_successor() {
    const RACERS: usize = 20;
    let setup = setup().await;
    let original = setup.new_grant("read").await;

    let mut racers = Vec::new();
    for _ in 0..RACERS {
        let http = setup.app.http.clone();
        let url = setup.app.url("/oauth/token");
        let (client_id, secret) = (setup.client.id.clone(), setup.client.secret.clone());
        let token = original.refresh.clone();
        racers.push(actix_web::rt::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", token.as_str())];
            let response = http.post(url).basic_auth(client_id, secret).form(&form).send().await.unwrap();
            JsonReply::read(response).await
        }));
    }
    let mut successors = Vec::new();
    for (index, racer) in racers.into_iter().enumerate() {
        let reply = racer.await.expect("refresh task panicked");
        successors.push(Pair::from_reply(&reply, &format!("concurrent refresh {index}")));
    }

    // A replaced successor is rejected without revoking the grant, so trying them in turn finds the live one.
    let mut live = Vec::new();
    for (index, successor) in successors.iter().enumerate() {
        let reply = setup.refresh(&successor.refresh).await;
        if reply.status == StatusCode::OK {
            live.push((index, Pair::from_reply(&reply, "refresh with the live successor")));
        } else {
            assert_invalid_grant(&reply, &format!("refresh with replaced successor {index}"));
        }
    }
    assert_eq!(live.len(), 1, "successors that refreshed: {:?}", live.iter().map(|(index, _)| index).collect::<Vec<_>>());
    let (_, next) = &live[0];
    assert_eq!(setup.api_status(&next.access).await, StatusCode::OK, "API call with the live successor's access token");

    setup.app.stop().await;
}

#[actix_web::test]
async fn revoking_refresh_token_ends_grant() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;
    let rotated = Pair::from_reply(&setup.refresh(&original.refresh).await, "refresh");
    let unrelated = setup.new_grant("read").await;

    let revoked = setup.app.revoke_token(&setup.client, &rotated.refresh, Some("refresh_token")).await;

    assert_eq!(revoked.status, StatusCode::OK, "revocation, body {}", revoked.text);
    let rows = [
        ("original access token", &original.access, StatusCode::UNAUTHORIZED),
        ("rotated access token", &rotated.access, StatusCode::UNAUTHORIZED),
        ("access token of another grant", &unrelated.access, StatusCode::OK),
    ];
    for (description, token, expected) in rows {
        assert_eq!(setup.api_status(token).await, expected, "{description}");
    }
    assert_invalid_grant(&setup.refresh(&rotated.refresh).await, "refresh with the revoked token");
    assert_invalid_grant(&setup.refresh(&original.refresh).await, "refresh with the revoked token's parent");
    let other = setup.refresh(&unrelated.refresh).await;
    assert_eq!(other.status, StatusCode::OK, "refresh of another grant, body {}", other.text);

    setup.app.stop().await;
}

#[actix_web::test]
async fn refresh_token_introspects_as_refresh() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;

    let described = setup.app.introspect_token(&setup.client, &original.refresh, Some("refresh_token")).await;

    assert_eq!(described.status, StatusCode::OK, "introspection, body {}", described.text);
    assert_eq!(described.body["active"], true, "active");
    assert_eq!(described.body["token_type"], "refresh_token", "token_type");
    assert_eq!(described.body["client_id"], setup.client.id.as_str(), "client_id");
    assert_eq!(described.body["scope"], "read", "scope");

    setup.app.stop().await;
}

#[actix_web::test]
async fn refresh_token_is_not_bearer_token() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;

    let reply = JsonReply::read(setup.app.get_with_token(SEARCH, &original.refresh).await).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "body {}", reply.text);
    assert_eq!(reply.body["error"], "invalid_token", "body error");
    let challenge = reply.header("www-authenticate");
    assert!(challenge.contains("error=\"invalid_token\""), "challenge {challenge:?}");
    let still_usable = setup.refresh(&original.refresh).await;
    assert_eq!(still_usable.status, StatusCode::OK, "refresh after the bearer attempt, body {}", still_usable.text);

    setup.app.stop().await;
}

#[actix_web::test]
async fn refresh_narrows_scope() {
    let setup = setup().await;
    let original = setup.new_grant(CLIENT_SCOPES).await;

    let reply = setup.app.refresh_grant(&setup.client, &original.refresh, &[("scope", "read")]).await;

    let narrowed = Pair::from_reply(&reply, "narrowing refresh");
    assert_eq!(reply.body["scope"], "read", "token response scope");
    let described = setup.app.introspect_token(&setup.client, &narrowed.access, None).await;
    assert_eq!(described.body["scope"], "read", "introspected scope, body {}", described.text);
    assert_eq!(setup.api_status(&narrowed.access).await, StatusCode::OK, "API call with the narrowed token");

    // RFC 6749 section 6: the new refresh token keeps the grant's scope, and a
    // refresh that names no scope gets all of it back.
    let refresh_described = setup.app.introspect_token(&setup.client, &narrowed.refresh, None).await;
    assert_eq!(refresh_described.body["scope"], CLIENT_SCOPES, "introspected refresh token scope, body {}", refresh_described.text);
    let widened = setup.app.refresh_grant(&setup.client, &narrowed.refresh, &[]).await;
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.text);
    assert_eq!(widened.body["scope"], CLIENT_SCOPES, "a refresh without scope returns to the grant's scope");

    setup.app.stop().await;
}

#[actix_web::test]
async fn refresh_rejects_wider_scope() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;
    let rows = [
        ("scope the grant lacks", "read rtopacks:operational"),
        ("admin scope", "ucca:admin"),
        ("unknown scope", "rtopacks:bogus"),
    ];

    for (description, scope) in rows {
        let reply = setup.app.refresh_grant(&setup.client, &original.refresh, &[("scope", scope)]).await;

        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}: status, body {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_scope", "{description}: error");
    }
    let unchanged = setup.refresh(&original.refresh).await;
    assert_eq!(unchanged.status, StatusCode::OK, "refresh after the rejected ones, body {}", unchanged.text);
    assert_eq!(unchanged.body["scope"], "read", "scope after the rejected ones");

    setup.app.stop().await;
}

#[actix_web::test]
async fn other_client_cannot_refresh() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;
    let thief = setup.app.scoped_client(CLIENT_SCOPES).await;

    let stolen = setup.app.refresh_grant(&thief, &original.refresh, &[]).await;

    assert_invalid_grant(&stolen, "refresh by another client");
    assert_eq!(setup.api_status(&original.access).await, StatusCode::OK, "access token after the foreign refresh");
    let own = setup.refresh(&original.refresh).await;
    assert_eq!(own.status, StatusCode::OK, "refresh by the owning client, body {}", own.text);

    setup.app.stop().await;
}

#[actix_web::test]
async fn refresh_token_expires_after_30_days() {
    let setup = setup().await;
    let early = setup.new_grant("read").await;
    let late = setup.new_grant("read").await;

    setup.app.clock.advance(REFRESH_TTL - 1);
    let just_in_time = Pair::from_reply(&setup.refresh(&early.refresh).await, "refresh one second before expiry");

    setup.app.clock.advance(1);
    let expired = setup.refresh(&late.refresh).await;
    assert_invalid_grant(&expired, "refresh at 30 days");
    let explanation = expired.body["error_description"].as_str().unwrap_or("");
    assert!(explanation.contains("expired"), "description {explanation:?}");

    // The successor issued one second before expiry starts its own 30 days.
    let successor = setup.refresh(&just_in_time.refresh).await;
    assert_eq!(successor.status, StatusCode::OK, "refresh with a fresh successor, body {}", successor.text);

    setup.app.stop().await;
}

#[actix_web::test]
async fn narrowed_refresh_can_widen_back_within_grant() {
    let setup = setup().await;
    let original = setup.new_grant("read rtopacks:operational").await;

    let narrowed = setup.app.refresh_grant(&setup.client, &original.refresh, &[("scope", "read")]).await;
    assert_eq!(narrowed.body["scope"], "read", "narrowed scope, body {}", narrowed.text);
    let narrowed = Pair::from_reply(&narrowed, "narrowing refresh");

    // RFC 6749 section 6 bounds a refresh by the original grant, not by the last token.
    let widened = setup.app.refresh_grant(&setup.client, &narrowed.refresh, &[("scope", "read rtopacks:operational")]).await;
    assert_eq!(widened.status, StatusCode::OK, "widening back within the grant, body {}", widened.text);
    assert_eq!(widened.body["scope"], "read rtopacks:operational");

    setup.app.stop().await;
}

#[actix_web::test]
async fn replaced_successor_takes_its_access_token() {
    let setup = setup().await;
    let original = setup.new_grant("read").await;

    let lost = Pair::from_reply(&setup.refresh(&original.refresh).await, "first refresh");
    assert_eq!(setup.api_status(&lost.access).await, StatusCode::OK, "the lost response's access token works until replaced");
    let retried = Pair::from_reply(&setup.refresh(&original.refresh).await, "retried refresh");

    assert_eq!(setup.api_status(&lost.access).await, StatusCode::UNAUTHORIZED, "the replaced response's access token");
    assert_eq!(setup.api_status(&retried.access).await, StatusCode::OK, "the retry's access token");

    setup.app.stop().await;
}

#[actix_web::test]
async fn ending_an_entitlement_revokes_grants_beyond_it() {
    let setup = setup().await;
    let operational = setup.new_grant("rtopacks:operational").await;
    let legacy = setup.new_grant("read").await;

    let ended = setup.app.put_entitlements(EMAIL, &[]).await;
    assert_eq!(ended.status, StatusCode::OK, "remove entitlements, body {}", ended.text);

    assert_eq!(setup.api_status(&operational.access).await, StatusCode::UNAUTHORIZED, "access token of the ended scope");
    assert_invalid_grant(&setup.refresh(&operational.refresh).await, "refresh token of the ended scope");
    // Every user holds `read`, so that grant is untouched.
    assert_eq!(setup.api_status(&legacy.access).await, StatusCode::OK, "access token of a scope still held");
    Pair::from_reply(&setup.refresh(&legacy.refresh).await, "refresh of a scope still held");

    setup.app.stop().await;
}

#[actix_web::test]
async fn code_exchanged_after_consent_withdrawal_is_refused() {
    let setup = setup().await;
    let pkce = Pkce::new();
    let redirect = setup.app.authorize_allowing(&setup.browser, &setup.client, &pkce, &[("scope", "read")]).await;
    let code = query_value(&redirect, "code").expect("a code");

    let withdrawn = setup.app.withdraw_consent(EMAIL, &setup.client.id).await;
    assert_eq!(withdrawn.status, StatusCode::NO_CONTENT, "withdraw consent, body {}", withdrawn.text);

    let reply = JsonReply::read(setup.app.exchange(&setup.client, &code, &pkce.verifier).await).await;
    assert_invalid_grant(&reply, "exchange after withdrawal");

    setup.app.stop().await;
}
