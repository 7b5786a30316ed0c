//! The emulator against docs/gitlab-protocol.md, over real HTTP.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{TimeZone, Utc};
use gitlab_emulator::{Config, Emulator, Faults, RateLimit, TagSpec};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_TYPES: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| value.to_str().expect("ascii header").to_string())
}

fn day(n: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, n, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn sha256(content: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(content))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

async fn jwt(emulator: &Emulator, user: &str, password: &str, scopes: &[&str]) -> String {
    let mut url = format!(
        "{}/jwt/auth?service=container_registry",
        emulator.gitlab_url()
    );
    for scope in scopes {
        url.push_str(&format!("&scope={}", scope.replace(',', "%2C")));
    }
    let response = client()
        .get(url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("/jwt/auth answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body.as_object().expect("object").len(),
        1,
        "only a token: {body}"
    );
    body["token"].as_str().expect("token").to_string()
}

async fn job_jwt(emulator: &Emulator, scope: &str) -> String {
    let token = emulator.config().job_token;
    jwt(emulator, "gitlab-ci-token", &token, &[scope]).await
}

async fn rest(emulator: &Emulator, method: Method, path: &str) -> Response {
    client()
        .request(method, format!("{}/api/v4{path}", emulator.gitlab_url()))
        .header("PRIVATE-TOKEN", emulator.config().access_token)
        .send()
        .await
        .expect("REST answers")
}

async fn registry(
    emulator: &Emulator,
    method: Method,
    path: &str,
    token: &str,
    accept: &str,
) -> Response {
    client()
        .request(method, format!("{}{path}", emulator.registry_url()))
        .bearer_auth(token)
        .header("Accept", accept)
        .send()
        .await
        .expect("registry answers")
}

fn tags(names: impl IntoIterator<Item = String>) -> Vec<TagSpec> {
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| TagSpec::new(name).created(day(1) + chrono::Duration::minutes(i as i64)))
        .collect()
}

// ---------------------------------------------------------------- REST

#[tokio::test]
async fn rest_needs_a_valid_token_and_accepts_the_project_path() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("api");
    let url = format!(
        "{}/api/v4/projects/1/registry/repositories",
        emulator.gitlab_url()
    );

    let response = client().get(&url).send().await.expect("answer");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"message": "401 Unauthorized"})
    );
    let response = client()
        .get(&url)
        .header("JOB-TOKEN", "wrong")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);

    let response = client()
        .get(&url)
        .header("JOB-TOKEN", emulator.config().job_token)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body[0]["id"], rid);
    assert_eq!(body[0]["name"], "api");
    assert_eq!(body[0]["path"], "group/project/api");
    assert_eq!(body[0]["project_id"], 1);
    assert_eq!(
        body[0]["location"],
        format!("{}/group/project/api", emulator.registry_host())
    );
    assert!(body[0]["status"].is_null() && body[0]["cleanup_policy_started_at"].is_null());
    assert!(body[0].get("tags_count").is_none());

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/group%2Fproject/registry/repositories?tags_count=true",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json")[0]["tags_count"],
        0
    );
    let response = rest(&emulator, Method::GET, "/projects/2/registry/repositories").await;
    assert_eq!(response.status(), 404);

    // The group endpoint takes access tokens, not job tokens.
    let group = format!(
        "{}/api/v4/groups/group/registry/repositories",
        emulator.gitlab_url()
    );
    let response = client()
        .get(&group)
        .header("JOB-TOKEN", emulator.config().job_token)
        .send()
        .await
        .expect("answer");
    assert!(
        matches!(response.status().as_u16(), 401 | 403),
        "{}",
        response.status()
    );
    let response = rest(
        &emulator,
        Method::GET,
        "/groups/group/registry/repositories",
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = rest(
        &emulator,
        Method::GET,
        &format!("/registry/repositories/{rid}?tags=true"),
    )
    .await;
    assert_eq!(
        response.json::<Value>().await.expect("json")["tags"],
        json!([])
    );
}

#[tokio::test]
async fn offset_pagination_headers() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("");
    emulator.add_tags("", tags((0..45).map(|i| format!("t{i:03}"))));
    let base = format!("/projects/1/registry/repositories/{rid}/tags");

    let response = rest(&emulator, Method::GET, &base).await;
    let h = response.headers().clone();
    assert_eq!(header(&h, "x-page").as_deref(), Some("1"));
    assert_eq!(header(&h, "x-per-page").as_deref(), Some("20"));
    assert_eq!(header(&h, "x-next-page").as_deref(), Some("2"));
    assert_eq!(header(&h, "x-prev-page").as_deref(), Some(""));
    assert_eq!(header(&h, "x-total").as_deref(), Some("45"));
    assert_eq!(header(&h, "x-total-pages").as_deref(), Some("3"));
    let link = header(&h, "link").expect("Link");
    assert!(link.contains("page=2&per_page=20>; rel=\"next\""), "{link}");
    assert!(
        link.contains("rel=\"first\"") && link.contains("page=3&per_page=20>; rel=\"last\""),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{}/api/v4{base}?", emulator.gitlab_url())),
        "absolute: {link}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body.as_array().expect("array").len(), 20);
    assert_eq!(
        body[0],
        json!({"name": "t000", "path": "group/project:t000", "location": format!("{}/group/project:t000", emulator.registry_host())})
    );

    let response = rest(&emulator, Method::GET, &format!("{base}?page=3")).await;
    let h = response.headers().clone();
    assert_eq!(header(&h, "x-next-page").as_deref(), Some(""));
    assert_eq!(header(&h, "x-prev-page").as_deref(), Some("2"));
    assert!(!header(&h, "link").expect("Link").contains("rel=\"next\""));
    assert_eq!(
        response
            .json::<Value>()
            .await
            .expect("json")
            .as_array()
            .expect("array")
            .len(),
        5
    );

    let response = rest(&emulator, Method::GET, &format!("{base}?per_page=500")).await;
    assert_eq!(
        header(response.headers(), "x-per-page").as_deref(),
        Some("100")
    );
    assert_eq!(
        response
            .json::<Value>()
            .await
            .expect("json")
            .as_array()
            .expect("array")
            .len(),
        45
    );
}

#[tokio::test]
async fn above_ten_thousand_records_the_totals_are_omitted() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("big");
    emulator.add_tags(
        "big",
        (0..10_001).map(|i| TagSpec::new(format!("t{i:05}")).digest("sha256:shared")),
    );
    let response = rest(
        &emulator,
        Method::GET,
        &format!("/projects/1/registry/repositories/{rid}/tags?per_page=100"),
    )
    .await;
    let h = response.headers().clone();
    assert_eq!(header(&h, "x-total"), None);
    assert_eq!(header(&h, "x-total-pages"), None);
    assert_eq!(header(&h, "x-next-page").as_deref(), Some("2"));
    let link = header(&h, "link").expect("Link");
    assert!(
        link.contains("rel=\"next\"") && !link.contains("rel=\"last\""),
        "{link}"
    );
    let last = rest(
        &emulator,
        Method::GET,
        &format!("/projects/1/registry/repositories/{rid}/tags?per_page=100&page=101"),
    )
    .await;
    assert_eq!(header(last.headers(), "x-next-page").as_deref(), Some(""));
    assert_eq!(
        last.json::<Value>()
            .await
            .expect("json")
            .as_array()
            .expect("array")
            .len(),
        1
    );
}

#[tokio::test]
async fn keyset_pagination_follows_link_only_and_405_without_it() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("");
    emulator.add_tags("", tags((0..45).map(|i| format!("t{i:03}"))));
    let mut url = format!(
        "{}/api/v4/projects/1/registry/repositories/{rid}/tags?pagination=keyset&per_page=20&sort=desc",
        emulator.gitlab_url()
    );
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response = client()
            .get(&url)
            .header("PRIVATE-TOKEN", emulator.config().access_token)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 200);
        pages += 1;
        let h = response.headers().clone();
        assert!(
            h.keys().all(|name| !name.as_str().starts_with("x-")),
            "no x-* headers: {h:?}"
        );
        let body: Value = response.json().await.expect("json");
        seen.extend(
            body.as_array()
                .expect("array")
                .iter()
                .map(|tag| tag["name"].as_str().expect("name").to_string()),
        );
        match header(&h, "link") {
            Some(link) => {
                assert!(link.ends_with("; rel=\"next\""), "{link}");
                url = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("url")
                    .to_string();
                assert!(url.starts_with("http://"), "absolute: {url}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..45).rev().map(|i| format!("t{i:03}")).collect();
    assert_eq!(seen, expected);

    emulator.set_config(|config| config.keyset = false);
    let response = rest(
        &emulator,
        Method::GET,
        &format!("/projects/1/registry/repositories/{rid}/tags?pagination=keyset"),
    )
    .await;
    assert_eq!(response.status(), 405);
    // Keyset is only for tags.
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/registry/repositories?pagination=keyset",
    )
    .await;
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn tag_details_delete_protection_and_null_dates() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("");
    emulator.add_tags(
        "",
        [
            TagSpec::new("dated").created(day(2)),
            TagSpec::new("multiarch"),
            TagSpec::new("v1.0.0").created(day(3)).protected(),
        ],
    );
    let base = format!("/projects/1/registry/repositories/{rid}/tags");
    let dated: Value = rest(&emulator, Method::GET, &format!("{base}/dated"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(dated["path"], "group/project:dated");
    assert_eq!(dated["created_at"], "2024-01-02T12:00:00.000+00:00");
    assert_eq!(dated["digest"], emulator.tags("")["dated"]);
    let revision = dated["revision"].as_str().expect("revision");
    assert_eq!(revision.len(), 64);
    assert_eq!(dated["short_revision"], revision[..9]);
    assert!(dated["total_size"].as_u64().expect("size") > 0);

    let undated: Value = rest(&emulator, Method::GET, &format!("{base}/multiarch"))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        undated["created_at"].is_null() && undated["total_size"].is_null(),
        "{undated}"
    );

    let missing = rest(&emulator, Method::GET, &format!("{base}/nope")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.expect("json"),
        json!({"message": "404 Tag Not Found"})
    );

    let protected = rest(&emulator, Method::DELETE, &format!("{base}/v1.0.0")).await;
    assert_eq!(protected.status(), 403);
    assert_eq!(
        protected.json::<Value>().await.expect("json"),
        json!({"message": "403 Forbidden - cannot delete protected tag(s)"})
    );
    let deleted = rest(&emulator, Method::DELETE, &format!("{base}/dated")).await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.text().await.expect("body"), "");
    assert_eq!(
        rest(&emulator, Method::DELETE, &format!("{base}/dated"))
            .await
            .status(),
        404
    );
    emulator.set_config(|config| config.missing_tag_delete_status = 403);
    assert_eq!(
        rest(&emulator, Method::DELETE, &format!("{base}/dated"))
            .await
            .status(),
        403
    );
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["multiarch", "v1.0.0"]
    );
}

async fn bulk(emulator: &Emulator, rid: u64, body: &str) -> (u16, Value) {
    let response = client()
        .delete(format!(
            "{}/api/v4/projects/1/registry/repositories/{rid}/tags",
            emulator.gitlab_url()
        ))
        .header("JOB-TOKEN", emulator.config().job_token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn bulk_delete_validation_anchoring_and_hourly_lock() {
    let emulator = Emulator::start(Config::default());
    let rid = emulator.add_repository("");
    emulator.add_tags(
        "",
        tags(["mr-1", "mr-2", "mr-10", "x-mr-2", "keep", "latest"].map(String::from)),
    );

    let (status, body) = bulk(&emulator, rid, "keep_n=1").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "name_regex, name_regex_delete are missing, at least one parameter must be provided"})
    );
    let (status, body) = bulk(&emulator, rid, "name_regex_delete=%28").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("name_regex_delete is an invalid regexp: "),
        "{body}"
    );

    // A top-level alternation, anchored as GitLab does: \Amr-1|mr-2\z.
    let (status, _) = bulk(&emulator, rid, "name_regex_delete=mr-1%7Cmr-2").await;
    assert_eq!(status, 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["keep", "latest"]
    );

    let (status, body) = bulk(&emulator, rid, "name_regex_delete=.*").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "This request has already been made. You can run this at most once an hour for a given container repository"
    );
    assert_eq!(emulator.tags("").len(), 2);

    let calls = emulator.bulk_calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[2].raw_body, "name_regex_delete=mr-1%7Cmr-2");
    assert_eq!(
        calls[2].params,
        vec![("name_regex_delete".to_string(), "mr-1|mr-2".to_string())]
    );
    assert_eq!(calls[2].content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        calls.iter().map(|call| call.status).collect::<Vec<_>>(),
        [400, 400, 202, 400]
    );

    // latest is never deleted, even by `.*`.
    emulator.reset_bulk_locks();
    let (status, _) = bulk(&emulator, rid, "name_regex_delete=.*").await;
    assert_eq!(status, 202);
    assert_eq!(emulator.tags("").keys().collect::<Vec<_>>(), ["latest"]);
}

#[tokio::test]
async fn bulk_delete_keep_n_older_than_protection_and_plus_decoding() {
    let emulator = Emulator::start(Config::default());
    let now = Utc::now();
    let rid = emulator.add_repository("");
    emulator.add_tags(
        "",
        [
            TagSpec::new("v1").created(now - chrono::Duration::days(30)),
            TagSpec::new("v2").created(now - chrono::Duration::days(20)),
            TagSpec::new("v3").created(now - chrono::Duration::days(10)),
            TagSpec::new("v4").created(now - chrono::Duration::days(1)),
            TagSpec::new("v5"), // undated: newest, and never "older than"
            TagSpec::new("v0")
                .created(now - chrono::Duration::days(40))
                .protected(),
            TagSpec::new("v 6").created(now - chrono::Duration::days(50)),
        ],
    );
    // keep_n=2 keeps v5 (undated) and v4; older_than=7d spares nothing else
    // but the protected v0 and the space-named tag (regex "v+" decodes to "v ").
    let (status, _) = bulk(
        &emulator,
        rid,
        "name_regex_delete=v%5Cd&keep_n=2&older_than=7d",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["v 6", "v0", "v4", "v5"]
    );

    // An unencoded `+` is a space in a form body: "v+.*" means "v .*".
    emulator.reset_bulk_locks();
    let (status, _) = bulk(&emulator, rid, "name_regex_delete=v+.*").await;
    assert_eq!(status, 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["v0", "v4", "v5"]
    );
    assert_eq!(emulator.bulk_calls()[1].params[0].1, "v .*");

    // older_than only deletes dated tags; keep overrides delete.
    emulator.reset_bulk_locks();
    let (status, _) = bulk(
        &emulator,
        rid,
        "name_regex_delete=.*&name_regex_keep=v4&older_than=1h",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["v0", "v4", "v5"]
    );
}

// ---------------------------------------------------------------- /jwt/auth

#[tokio::test]
async fn jwt_auth_drops_what_is_not_allowed() {
    let emulator = Emulator::start(Config {
        deploy_token: Some(("deployer".to_string(), "deploy-s3cr3t".to_string())),
        ..Config::default()
    });
    let host = emulator.registry_host();
    let token = jwt(
        &emulator,
        "gitlab-ci-token",
        "jobtoken-s3cr3t-0000",
        &[
            "repository:group/project:pull,delete,push,*",
            "repository:group/project/api:pull",
            "repository:other/project:pull,delete",
            &format!("repository:{host}/group/project:pull,delete"),
            "registry:catalog:*",
        ],
    )
    .await;
    let claims = claims(&token);
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "group/project", "actions": ["pull", "delete"],
             "meta": {"project_path": "group/project", "project_id": 1, "root_namespace_id": 1001,
                      "tag_deny_access_patterns": {"push": [], "delete": []},
                      "tag_immutable_patterns": []}},
            {"type": "repository", "name": "group/project/api", "actions": ["pull"],
             "meta": {"project_path": "group/project", "project_id": 1, "root_namespace_id": 1001}},
        ])
    );
    assert_eq!(claims["iss"], "gitlab-issuer");
    assert_eq!(claims["aud"], "container_registry");
    let (iat, exp, nbf) = (
        claims["iat"].as_i64(),
        claims["exp"].as_i64(),
        claims["nbf"].as_i64(),
    );
    assert_eq!(exp.zip(iat).map(|(exp, iat)| exp - iat), Some(300));
    assert!(nbf <= iat && claims["jti"].is_string() && claims["sub"].is_string());

    // Only a host-prefixed scope: access is empty, still 200.
    let token = jwt(
        &emulator,
        "gitlab-ci-token",
        "jobtoken-s3cr3t-0000",
        &[&format!("repository:{host}/group/project:pull")],
    )
    .await;
    assert_eq!(claims_of(&token), json!([]));
    // A deploy token never gets delete; an access token works with any user.
    let token = jwt(
        &emulator,
        "deployer",
        "deploy-s3cr3t",
        &["repository:group/project:pull,delete"],
    )
    .await;
    assert_eq!(claims_of(&token)[0]["actions"], json!(["pull"]));
    let token = jwt(
        &emulator,
        "anyone",
        "glpat-s3cr3t-1111",
        &["repository:group/project:pull,delete"],
    )
    .await;
    assert_eq!(claims_of(&token)[0]["actions"], json!(["pull", "delete"]));
    emulator.set_config(|config| {
        config.grant_delete = false;
        config.grant_push = true;
    });
    let token = jwt(
        &emulator,
        "gitlab-ci-token",
        "jobtoken-s3cr3t-0000",
        &["repository:group/project:pull,push,delete"],
    )
    .await;
    assert_eq!(claims_of(&token)[0]["actions"], json!(["pull", "push"]));

    for (user, password) in [
        ("gitlab-ci-token", "wrong"),
        ("someone", "jobtoken-s3cr3t-0000"),
    ] {
        let response = client()
            .get(format!(
                "{}/jwt/auth?service=container_registry&scope=repository:group/project:pull",
                emulator.gitlab_url()
            ))
            .basic_auth(user, Some(password))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied"}]})
        );
    }
    let anonymous = client()
        .get(format!(
            "{}/jwt/auth?service=container_registry",
            emulator.gitlab_url()
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(emulator.issued_jwts(), 5);
    let secrets = emulator.secrets();
    assert!(
        secrets.contains(&"deploy-s3cr3t".to_string())
            && secrets.contains(&token)
            && secrets.len() == 8
    );
}

fn claims_of(token: &str) -> Value {
    claims(token)["access"].clone()
}

#[tokio::test]
async fn jwt_header_kid_and_signature() {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;

    let emulator = Emulator::start(Config::default());
    // Computed independently: openssl pkey -pubout -outform DER | sha256 | first
    // 30 bytes | base32 | groups of 4.
    assert_eq!(
        emulator.kid(),
        "DQUH:QI44:7YZU:RLHI:FXIR:EX7N:RGBY:SGLV:7VU3:526P:UTBX:UEAA"
    );
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": emulator.kid()})
    );
    let key =
        rsa::RsaPublicKey::from_public_key_pem(&emulator.public_key_pem()).expect("public key");
    let verifying = VerifyingKey::<Sha256>::new(key);
    let signature = Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).expect("b64").as_slice())
        .expect("sig");
    verifying
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the signature verifies with the public key");
}

// ---------------------------------------------------------------- registry

#[tokio::test]
async fn registry_challenges_expiry_and_scope() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tag("", TagSpec::new("t").created(day(1)));
    let response = client()
        .get(format!("{}/v2/", emulator.registry_url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(response.headers(), "www-authenticate").as_deref(),
        Some(
            format!(
                "Bearer realm=\"{}/jwt/auth\",service=\"container_registry\"",
                emulator.gitlab_url()
            )
            .as_str()
        )
    );
    let pull = job_jwt(&emulator, "repository:group/project:pull").await;
    let ok = registry(&emulator, Method::GET, "/v2/", &pull, "*/*").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.expect("json"), json!({}));

    let denied = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/t",
        &pull,
        "*/*",
    )
    .await;
    assert_eq!(denied.status(), 401);
    let challenge = header(denied.headers(), "www-authenticate").expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"repository:group/project:delete\""),
        "{challenge}"
    );
    let body: Value = denied.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(emulator.tags("").len(), 1);

    let forged = format!("{}x", pull);
    let invalid = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/tags/list",
        &forged,
        "*/*",
    )
    .await;
    assert!(header(invalid.headers(), "www-authenticate")
        .expect("challenge")
        .contains("error=\"invalid_token\""));

    emulator.set_config(|config| config.jwt_lifetime = Duration::ZERO);
    let expired = job_jwt(&emulator, "repository:group/project:pull").await;
    let response = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/tags/list",
        &expired,
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(header(response.headers(), "www-authenticate")
        .expect("challenge")
        .contains("error=\"invalid_token\""));

    emulator.set_config(|config| {
        config.realm_override = Some("https://elsewhere.example/jwt/auth".to_string())
    });
    let response = client()
        .get(format!("{}/v2/", emulator.registry_url()))
        .send()
        .await
        .expect("answer");
    assert!(header(response.headers(), "www-authenticate")
        .expect("challenge")
        .contains("realm=\"https://elsewhere.example/jwt/auth\""));
}

#[tokio::test]
async fn manifests_resolve_by_accept_and_hash_to_their_digest() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tags(
        "",
        [TagSpec::new("image").created(day(1)), TagSpec::new("index")],
    );
    let state = emulator.tags("");
    let token = job_jwt(&emulator, "repository:group/project:pull").await;

    let response = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/manifests/image",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type").as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let digest = header(response.headers(), "docker-content-digest").expect("digest");
    assert_eq!(digest, state["image"]);
    assert_eq!(sha256(&response.bytes().await.expect("body")), digest);

    let head = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/manifests/index",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(head.headers(), "docker-content-digest").as_deref(),
        Some(state["index"].as_str())
    );
    let length: usize = header(head.headers(), "content-length")
        .expect("Content-Length")
        .parse()
        .expect("number");
    assert!(
        length > 100,
        "HEAD announces the manifest's length: {length}"
    );
    assert_eq!(
        header(head.headers(), "content-type").as_deref(),
        Some("application/vnd.oci.image.index.v1+json")
    );
    // Without the OCI types an OCI index is unknown.
    let head = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/manifests/index",
        &token,
        DOCKER_TYPES,
    )
    .await;
    assert_eq!(head.status(), 404);
    let missing = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/manifests/nope",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.expect("json")["errors"][0]["code"],
        "MANIFEST_UNKNOWN"
    );
    let unknown_repo = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/nope/manifests/x",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(
        unknown_repo.status(),
        401,
        "the token has no scope for another repository"
    );
}

#[tokio::test]
async fn docker_manifest_list_resolves_to_its_child_without_list_accept() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tag("", TagSpec::new("single").created(day(1)));
    let child = emulator.tags("")["single"].clone();
    let list = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1, "digest": child, "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string();
    let list_digest = emulator
        .put_manifest(
            "",
            "multi",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            list.as_bytes(),
        )
        .expect("stored");
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    let head = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/manifests/multi",
        &token,
        "application/vnd.docker.distribution.manifest.v2+json",
    )
    .await;
    assert_eq!(header(head.headers(), "docker-content-digest"), Some(child));
    let head = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/manifests/multi",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(
        header(head.headers(), "docker-content-digest"),
        Some(list_digest)
    );
}

#[tokio::test]
async fn tag_delete_removes_one_tag_or_is_digest_invalid() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tags(
        "",
        [
            TagSpec::new("a").digest("sha256:1111").created(day(1)),
            TagSpec::new("b").digest("sha256:1111").created(day(1)),
            TagSpec::new("locked").created(day(1)).protected(),
        ],
    );
    let token = job_jwt(&emulator, "repository:group/project:pull,delete").await;
    let response = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/a",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["b", "locked"]
    );
    let again = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/a",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.expect("json")["errors"][0]["code"],
        "MANIFEST_UNKNOWN"
    );
    let protected = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/locked",
        &token,
        "*/*",
    )
    .await;
    // As GitLab's registry refuses a tag its rules protect.
    assert_eq!(protected.status(), 401);
    assert_eq!(
        protected.json::<Value>().await.expect("json")["errors"][0]["code"],
        "PROTECTED_TAG"
    );

    emulator.set_config(|config| config.tag_delete = false);
    let response = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/b",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.expect("json")["errors"][0]["code"],
        "DIGEST_INVALID"
    );
    assert_eq!(emulator.tags("").len(), 2);
}

#[tokio::test]
async fn digest_delete_removes_every_tag_sharing_it() {
    let emulator = Emulator::start(Config {
        tag_delete: false,
        ..Config::default()
    });
    emulator.add_tags(
        "",
        [
            TagSpec::new("a").digest("sha256:aaaa").created(day(1)),
            TagSpec::new("b").digest("sha256:aaaa").created(day(2)),
            TagSpec::new("c").created(day(3)),
        ],
    );
    let token = job_jwt(&emulator, "repository:group/project:pull,delete").await;
    // Tags sharing an explicit digest share one manifest, fetchable by digest.
    let by_digest = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/manifests/sha256:aaaa",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(by_digest.status(), 200);
    let response = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/sha256:aaaa",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(response.status(), 202);
    assert_eq!(emulator.tags("").keys().collect::<Vec<_>>(), ["c"]);
    let again = registry(
        &emulator,
        Method::DELETE,
        "/v2/group/project/manifests/sha256:aaaa",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn push_blobs_and_manifests_then_move_a_tag() {
    let emulator = Emulator::start(Config {
        grant_push: true,
        tag_delete: false,
        ..Config::default()
    });
    emulator.add_tags(
        "",
        [
            TagSpec::new("a").digest("sha256:shared").created(day(1)),
            TagSpec::new("b").digest("sha256:shared").created(day(1)),
        ],
    );
    let pull_only = job_jwt(&emulator, "repository:group/project:pull").await;
    let refused = registry(
        &emulator,
        Method::POST,
        "/v2/group/project/blobs/uploads/",
        &pull_only,
        "*/*",
    )
    .await;
    assert_eq!(refused.status(), 401);
    assert!(header(refused.headers(), "www-authenticate")
        .expect("challenge")
        .contains("scope=\"repository:group/project:pull,push\""));

    let token = job_jwt(&emulator, "repository:group/project:pull,push,delete").await;
    let config = br#"{"architecture":"amd64","os":"linux","created":"2024-02-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha256(config);
    let start = registry(
        &emulator,
        Method::POST,
        "/v2/group/project/blobs/uploads/",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(start.status(), 202);
    let location = header(start.headers(), "location").expect("Location");
    let bad = client()
        .put(format!("{location}?digest=sha256:0000"))
        .bearer_auth(&token)
        .body(config.to_vec())
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<Value>().await.expect("json")["errors"][0]["code"],
        "DIGEST_INVALID"
    );
    // A failed upload is cancelled, as in Distribution.
    let start = registry(
        &emulator,
        Method::POST,
        "/v2/group/project/blobs/uploads/",
        &token,
        "*/*",
    )
    .await;
    let location = header(start.headers(), "location").expect("Location");
    let done = client()
        .put(format!("{location}?digest={config_digest}"))
        .bearer_auth(&token)
        .body(config.to_vec())
        .send()
        .await
        .expect("answer");
    assert_eq!(done.status(), 201);
    let head = registry(
        &emulator,
        Method::HEAD,
        &format!("/v2/group/project/blobs/{config_digest}"),
        &token,
        "*/*",
    )
    .await;
    assert_eq!(head.status(), 200);
    let missing = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/blobs/sha256:0000",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(missing.status(), 404);

    let manifest = |layer: &str| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
            "layers": if layer.is_empty() { json!([]) } else { json!([{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}]) },
        })
        .to_string()
    };
    let put = |body: String| {
        client()
            .put(format!(
                "{}/v2/group/project/manifests/a",
                emulator.registry_url()
            ))
            .bearer_auth(&token)
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .body(body)
            .send()
    };
    let unknown_blob = put(manifest("sha256:0000")).await.expect("answer");
    assert_eq!(unknown_blob.status(), 400);
    assert_eq!(
        unknown_blob.json::<Value>().await.expect("json")["errors"][0]["code"],
        "MANIFEST_BLOB_UNKNOWN"
    );
    let body = manifest("");
    let pushed = put(body.clone()).await.expect("answer");
    assert_eq!(pushed.status(), 201);
    let digest = header(pushed.headers(), "docker-content-digest").expect("digest");
    assert_eq!(digest, sha256(body.as_bytes()));

    // The throw-away trick: `a` now has a unique digest; deleting it spares `b`.
    let tags = emulator.tags("");
    assert_eq!(tags["a"], digest);
    assert_eq!(tags["b"], "sha256:shared");
    let deleted = registry(
        &emulator,
        Method::DELETE,
        &format!("/v2/group/project/manifests/{digest}"),
        &token,
        "*/*",
    )
    .await;
    assert_eq!(deleted.status(), 202);
    assert_eq!(emulator.tags("").keys().collect::<Vec<_>>(), ["b"]);
    let details: Value = rest(
        &emulator,
        Method::GET,
        "/projects/1/registry/repositories/1/tags/b",
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(details["digest"], "sha256:shared");
    assert_eq!(emulator.writes(), 8, "{:#?}", emulator.requests());
}

#[tokio::test]
async fn registry_tags_list_and_gitlab_v1_listing() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tags(
        "api",
        [
            TagSpec::new("a1").created(day(5)),
            TagSpec::new("a2").created(day(1)),
            TagSpec::new("b1"),
            TagSpec::new("b2").created(day(3)),
            TagSpec::new("c1").created(day(2)),
        ],
    );
    let token = job_jwt(&emulator, "repository:group/project/api:pull").await;

    let response = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/api/tags/list?n=2",
        &token,
        "*/*",
    )
    .await;
    assert_eq!(
        header(response.headers(), "link").as_deref(),
        Some("</v2/group/project/api/tags/list?last=a2&n=2>; rel=\"next\"")
    );
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"name": "group/project/api", "tags": ["a1", "a2"]})
    );

    let v1 = "/gitlab/v1/repositories/group/project/api/tags/list/";
    let response = registry(&emulator, Method::GET, &format!("{v1}?n=2"), &token, "*/*").await;
    assert_eq!(response.status(), 200);
    let link = header(response.headers(), "link").expect("Link");
    assert_eq!(
        link,
        "</gitlab/v1/repositories/group/project/api/tags/list/?last=a2&n=2>; rel=\"next\""
    );
    let page: Value = response.json().await.expect("json");
    assert_eq!(page[0]["name"], "a1");
    assert_eq!(page[0]["created_at"], "2024-01-05T12:00:00.000+00:00");
    assert_eq!(page[0]["digest"], emulator.tags("api")["a1"]);
    assert_eq!(
        page[0]["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(page[0]["config_digest"]
        .as_str()
        .expect("config")
        .starts_with("sha256:"));
    for field in ["size_bytes", "updated_at", "published_at"] {
        assert!(page[0].get(field).is_some(), "{field}");
    }
    let second: Value = registry(
        &emulator,
        Method::GET,
        &format!("{v1}?last=a2&n=2"),
        &token,
        "*/*",
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(second[0]["name"], "b1");
    // An index has no config; its tag still has the database's times:
    // `created_at` is the first push (never null), no re-push yet.
    assert!(second[0]["config_digest"].is_null());
    assert_eq!(second[0]["created_at"], second[0]["published_at"]);
    assert!(second[0]["updated_at"].is_null());

    // Follow the Link through a published_at sort, newest first.
    let mut url = format!("{v1}?n=2&sort=-published_at");
    let mut names = Vec::new();
    loop {
        let response = registry(&emulator, Method::GET, &url, &token, "*/*").await;
        let next = header(response.headers(), "link");
        let body: Value = response.json().await.expect("json");
        names.extend(
            body.as_array()
                .expect("array")
                .iter()
                .map(|tag| tag["name"].as_str().expect("name").to_string()),
        );
        match next {
            Some(link) => {
                url = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .expect("url")
                    .to_string()
            }
            None => break,
        }
    }
    assert_eq!(
        names,
        ["b1", "a1", "b2", "c1", "a2"],
        "undated b1 was published now"
    );

    let filtered: Value = registry(
        &emulator,
        Method::GET,
        &format!("{v1}?name=1&sort=-name"),
        &token,
        "*/*",
    )
    .await
    .json()
    .await
    .expect("json");
    let filtered: Vec<&str> = filtered
        .as_array()
        .expect("array")
        .iter()
        .map(|tag| tag["name"].as_str().expect("name"))
        .collect();
    assert_eq!(filtered, ["c1", "b1", "a1"]);
    for bad in ["n=0", "n=1001", "sort=size"] {
        assert_eq!(
            registry(
                &emulator,
                Method::GET,
                &format!("{v1}?{bad}"),
                &token,
                "*/*"
            )
            .await
            .status(),
            400,
            "{bad}"
        );
    }
    let no_slash = registry(
        &emulator,
        Method::GET,
        v1.trim_end_matches('/'),
        &token,
        "*/*",
    )
    .await;
    assert_eq!(no_slash.status(), 404);
    let anonymous = client()
        .get(format!("{}{v1}", emulator.registry_url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401);
    emulator.set_config(|config| config.gitlab_v1 = false);
    assert_eq!(
        registry(&emulator, Method::GET, v1, &token, "*/*")
            .await
            .status(),
        404
    );
}

// ---------------------------------------------------------------- faults, limits, accounting

async fn fault_run(seed: u64) -> Vec<(u16, Option<String>)> {
    let emulator = Emulator::start(Config {
        faults: Some(Faults {
            seed,
            rate: 0.5,
            slow: Duration::from_millis(10),
        }),
        ..Config::default()
    });
    emulator.add_repository("");
    for _ in 0..40 {
        let _ = client()
            .get(format!(
                "{}/api/v4/projects/1/registry/repositories",
                emulator.gitlab_url()
            ))
            .header("PRIVATE-TOKEN", "glpat-s3cr3t-1111")
            .send()
            .await;
    }
    emulator
        .requests()
        .into_iter()
        .map(|request| (request.status, request.fault))
        .collect()
}

#[tokio::test]
async fn faults_are_seeded_and_varied() {
    let first = fault_run(7).await;
    assert_eq!(first, fault_run(7).await, "same seed, same faults");
    assert_ne!(first, fault_run(8).await, "another seed, other faults");
    let faulted = first.iter().filter(|(_, fault)| fault.is_some()).count();
    assert!((8..=32).contains(&faulted), "about half of 40: {faulted}");
    assert!(
        first
            .iter()
            .any(|(status, fault)| *status == 0 && fault.as_deref() == Some("drop")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .all(|(status, fault)| fault.is_some() || *status == 200),
        "{first:?}"
    );
}

#[tokio::test]
async fn after_effect_faults_apply_the_change_and_lose_the_answer() {
    let emulator = Emulator::start(Config {
        faults: Some(Faults {
            seed: 3,
            rate: 1.0,
            slow: Duration::ZERO,
        }),
        ..Config::default()
    });
    let rid = emulator.add_repository("");
    let names: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    emulator.add_tags("", tags(names.clone()));
    let mut after_effects = 0;
    let mut drops = 0;
    for name in &names {
        let result = client()
            .delete(format!(
                "{}/api/v4/projects/1/registry/repositories/{rid}/tags/{name}",
                emulator.gitlab_url()
            ))
            .header("PRIVATE-TOKEN", "glpat-s3cr3t-1111")
            .send()
            .await;
        let recorded = emulator.requests().pop().expect("recorded");
        let fault = recorded.fault.expect("every request is faulted at rate 1");
        let gone = !emulator.tags("").contains_key(name);
        assert_eq!(
            gone,
            fault.ends_with("after-effect") || fault == "slow",
            "{name}: {fault}"
        );
        if fault.ends_with("after-effect") {
            after_effects += 1;
        }
        if fault.starts_with("drop") {
            drops += 1;
            assert!(
                result.is_err(),
                "a dropped connection is a client error: {result:?}"
            );
            assert_eq!(recorded.status, 0);
        } else {
            let response = result.expect("an answer");
            let expected_status = if fault == "slow" {
                200
            } else {
                response.status().as_u16().max(429)
            };
            assert_eq!(response.status().as_u16(), expected_status, "{fault}");
            assert_eq!(
                recorded.retry_after_sent,
                response.headers().contains_key("retry-after")
            );
        }
    }
    assert!(
        (8..=22).contains(&after_effects),
        "about half: {after_effects}"
    );
    assert!(drops > 0);
    assert_eq!(emulator.writes(), 30);
}

#[tokio::test]
async fn rate_limit_headers_and_429() {
    let emulator = Emulator::start(Config {
        rate_limit: Some(RateLimit {
            limit: 3,
            window: Duration::from_secs(60),
        }),
        ..Config::default()
    });
    for expected_remaining in ["2", "1", "0"] {
        let response = rest(&emulator, Method::GET, "/projects/1/registry/repositories").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(response.headers(), "ratelimit-limit").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(response.headers(), "ratelimit-remaining").as_deref(),
            Some(expected_remaining)
        );
        let reset: i64 = header(response.headers(), "ratelimit-reset")
            .expect("reset")
            .parse()
            .expect("unix time");
        assert!(reset > Utc::now().timestamp());
    }
    let limited = rest(&emulator, Method::GET, "/projects/1/registry/repositories").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = header(limited.headers(), "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after));
    assert!(httpdate::parse_http_date(
        &header(limited.headers(), "ratelimit-resettime").expect("ResetTime")
    )
    .is_ok());
    assert_eq!(
        header(limited.headers(), "ratelimit-observed").as_deref(),
        Some("4")
    );
    assert!(
        emulator
            .requests()
            .last()
            .expect("recorded")
            .retry_after_sent
    );
}

#[tokio::test]
async fn latency_env_and_accounting() {
    let emulator = Emulator::start(Config {
        latency: Duration::from_millis(60),
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let _ = rest(&emulator, Method::GET, "/projects/1/registry/repositories").await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    let _ = rest(
        &emulator,
        Method::DELETE,
        "/projects/1/registry/repositories/9/tags/x",
    )
    .await;
    assert_eq!(emulator.count("delete", "/tags/x"), 1);
    assert_eq!(emulator.writes(), 1);
    emulator.reset_requests();
    assert!(emulator.requests().is_empty());

    let ci: std::collections::HashMap<_, _> = emulator.ci_env().into_iter().collect();
    assert_eq!(
        ci["CI_REGISTRY_IMAGE"],
        format!("{}/group/project", emulator.registry_host())
    );
    assert_eq!(ci["CI_REGISTRY_PASSWORD"], ci["CI_JOB_TOKEN"]);
    assert_eq!(
        ci["CI_API_V4_URL"],
        format!("{}/api/v4", emulator.gitlab_url())
    );
    let laptop: std::collections::HashMap<_, _> = emulator.laptop_env().into_iter().collect();
    assert!(!laptop.contains_key("CI_JOB_TOKEN"));
    assert_eq!(laptop["GITLAB_TOKEN"], "glpat-s3cr3t-1111");
}

#[tokio::test]
async fn counts_the_most_requests_in_flight_at_once_across_origins() {
    // Latency keeps each request open long enough for the ones sent together
    // to overlap at the server.
    let emulator = Emulator::start(Config {
        latency: Duration::from_millis(200),
        ..Config::default()
    });
    assert_eq!(emulator.max_in_flight(), 0);
    for _ in 0..3 {
        let _ = rest(&emulator, Method::GET, "/projects/1/registry/repositories").await;
    }
    assert_eq!(emulator.max_in_flight(), 1, "one after another");

    // REST, /jwt/auth and the registry at once: one count for all of them.
    let token = emulator.config().job_token;
    let registry = format!("{}/v2/", emulator.registry_url());
    let jwt_url = format!(
        "{}/jwt/auth?service=container_registry&scope=repository:group/project:pull",
        emulator.gitlab_url()
    );
    let (_, _, _, _, _) = tokio::join!(
        rest(&emulator, Method::GET, "/projects/1/registry/repositories"),
        rest(&emulator, Method::GET, "/projects/1/registry/repositories"),
        client().get(&registry).send(),
        client().get(&registry).send(),
        client()
            .get(&jwt_url)
            .basic_auth("gitlab-ci-token", Some(&token))
            .send(),
    );
    assert_eq!(emulator.max_in_flight(), 5);
    assert_eq!(emulator.requests().len(), 8);

    // Control endpoints are not requests of the client under test.
    emulator.reset_requests();
    assert_eq!(emulator.max_in_flight(), 0);
    let state: Value = client()
        .get(format!("{}/_emulator/state", emulator.gitlab_url()))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("JSON");
    assert_eq!(state["max_in_flight"], 0);
    assert_eq!(emulator.max_in_flight(), 0);
}

#[test]
fn usable_from_sync_tests_and_inventory_loading() {
    let emulator = Emulator::start(Config::default());
    emulator.load_inventory_json(
        r#"{"repositories": [
            {"path": "group/project", "id": 7, "tags": [{"name": "v1", "digest": "sha256:abc", "created_at": "2024-05-01T10:00:00Z"}, {"name": "v2", "digest": "sha256:abc", "protected": true}]},
            {"path": "group/project/api", "tags": [{"name": "latest", "created_at": null}]}
        ]}"#,
    );
    assert_eq!(
        emulator.repositories(),
        vec![
            (7, "group/project".to_string()),
            (8, "group/project/api".to_string())
        ]
    );
    assert_eq!(emulator.tags("group/project")["v2"], "sha256:abc");
    assert_eq!(emulator.tags("api").len(), 1);
    let refused = emulator.try_load_inventory_json(r#"{"repositories": [{"path": "other/x"}]}"#);
    assert!(refused
        .expect_err("outside the project")
        .contains("other/x"));
}

#[test]
fn binary_prints_its_addresses_and_serves_state() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = std::env::temp_dir().join(format!("gitlab-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let inventory = dir.join("inventory.json");
    std::fs::write(&inventory, r#"{"repositories": [{"path": "g/p/api", "tags": [{"name": "x", "created_at": "2024-05-01T10:00:00Z"}]}]}"#)
        .expect("inventory written");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gitlab-emulator"))
        .args(["--project-path", "g/p", "--inventory"])
        .arg(&inventory)
        .args(["--no-tag-delete", "--grant-push"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("one line");
    let info: Value = serde_json::from_str(&line).expect("JSON line");
    let gitlab = info["gitlab_url"]
        .as_str()
        .expect("gitlab_url")
        .trim_start_matches("http://")
        .to_string();
    assert!(info["registry_url"]
        .as_str()
        .expect("registry_url")
        .starts_with("http://127.0.0.1:"));
    assert_eq!(info["job_token"], "jobtoken-s3cr3t-0000");

    let mut stream = std::net::TcpStream::connect(&gitlab).expect("connect");
    write!(
        stream,
        "GET /_emulator/state HTTP/1.1\r\nHost: {gitlab}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let body = answer.split("\r\n\r\n").nth(1).expect("body");
    let state: Value = serde_json::from_str(body).expect("state JSON");
    assert_eq!(state["repositories"][0]["path"], "g/p/api");
    assert!(state["repositories"][0]["tags"]["x"]
        .as_str()
        .expect("digest")
        .starts_with("sha256:"));

    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().expect("exits");
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- supply chain

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// GET (not HEAD) with every manifest type accepted: (status, digest header,
/// content type, body).
async fn get_manifest(
    emulator: &Emulator,
    repository: &str,
    reference: &str,
    token: &str,
) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let response = registry(
        emulator,
        Method::GET,
        &format!("/v2/{repository}/manifests/{reference}"),
        token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    let status = response.status().as_u16();
    let digest = header(response.headers(), "docker-content-digest");
    let content_type = header(response.headers(), "content-type");
    let body = response.bytes().await.expect("body").to_vec();
    (status, digest, content_type, body)
}

async fn delete_manifest(emulator: &Emulator, repository: &str, reference: &str) -> Response {
    let token = job_jwt(emulator, &format!("repository:{repository}:delete")).await;
    registry(
        emulator,
        Method::DELETE,
        &format!("/v2/{repository}/manifests/{reference}"),
        &token,
        "*/*",
    )
    .await
}

/// A multi-arch OCI index `2.0.0` over two images (amd64 built day 2, arm64
/// day 3), the amd64 child also tagged `2.0.0-amd64`. Returns (index, amd64, arm64).
fn multiarch(emulator: &Emulator) -> (String, String, String) {
    let repository = emulator.repository("");
    let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(day(2)));
    let arm64 = repository.push_platform_image(None, "linux", "arm64", Some(day(3)));
    let index = repository.push_index("2.0.0", &[&amd64, &arm64]);
    repository.tag("2.0.0-amd64", &amd64);
    (index, amd64, arm64)
}

#[tokio::test]
async fn index_and_children_are_real_json_hashing_to_their_digests() {
    let emulator = Emulator::start(Config::default());
    let (index, amd64, arm64) = multiarch(&emulator);
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    emulator.reset_requests();

    let (status, digest, content_type, body) =
        get_manifest(&emulator, "group/project", "2.0.0", &token).await;
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), Some(index.as_str()));
    assert_eq!(content_type.as_deref(), Some(OCI_INDEX));
    assert_eq!(sha256(&body), index, "the index body hashes to its digest");
    let parsed: Value = serde_json::from_slice(&body).expect("an index is JSON");
    assert_eq!(parsed["mediaType"], OCI_INDEX);
    let children: Vec<(&str, &str)> = parsed["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|child| {
            (
                child["digest"].as_str().expect("digest"),
                child["platform"]["architecture"].as_str().expect("arch"),
            )
        })
        .collect();
    assert_eq!(
        children,
        [(amd64.as_str(), "amd64"), (arm64.as_str(), "arm64")]
    );

    // One manifest and one config fetch per child: real bodies, real dates.
    for (child, built) in [(&amd64, day(2)), (&arm64, day(3))] {
        let (status, digest, content_type, body) =
            get_manifest(&emulator, "group/project", child, &token).await;
        assert_eq!(status, 200);
        assert_eq!(digest.as_deref(), Some(child.as_str()));
        assert_eq!(
            content_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(&sha256(&body), child);
        let manifest: Value = serde_json::from_slice(&body).expect("JSON manifest");
        let config_digest = manifest["config"]["digest"].as_str().expect("config");
        let config = registry(
            &emulator,
            Method::GET,
            &format!("/v2/group/project/blobs/{config_digest}"),
            &token,
            "*/*",
        )
        .await;
        assert_eq!(config.status(), 200);
        let config = config.bytes().await.expect("config blob");
        assert_eq!(sha256(&config), config_digest);
        let config: Value = serde_json::from_slice(&config).expect("JSON config");
        assert_eq!(
            config["created"],
            built.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    // The per-arch tag is the child itself.
    let head = registry(
        &emulator,
        Method::HEAD,
        "/v2/group/project/manifests/2.0.0-amd64",
        &token,
        ALL_MANIFEST_TYPES,
    )
    .await;
    assert_eq!(
        header(head.headers(), "docker-content-digest"),
        Some(amd64.clone())
    );
    // Every fetch is recorded, by digest and by blob.
    assert_eq!(emulator.count("GET", "/manifests/2.0.0"), 1);
    assert_eq!(emulator.count("GET", "/manifests/sha256:"), 2);
    assert_eq!(emulator.count("GET", "/blobs/sha256:"), 2);
    assert_eq!(emulator.count("HEAD", "/manifests/"), 1);

    // A Docker manifest list over Docker images is served the same way.
    let repository = emulator.repository("legacy");
    let child = repository.push_docker_image(None, Some(day(4)));
    let list = repository.push_index_of(
        Some("multi"),
        gitlab_emulator::DOCKER_MANIFEST_LIST,
        &[&child],
    );
    let (status, digest, content_type, body) =
        get_manifest(&emulator, "group/project/legacy", "multi", &{
            job_jwt(&emulator, "repository:group/project/legacy:pull").await
        })
        .await;
    assert_eq!(status, 200);
    assert_eq!(digest.as_deref(), Some(list.as_str()));
    assert_eq!(
        content_type.as_deref(),
        Some("application/vnd.docker.distribution.manifest.list.v2+json")
    );
    assert_eq!(sha256(&body), list);
    let parsed: Value = serde_json::from_slice(&body).expect("JSON list");
    assert_eq!(parsed["manifests"][0]["digest"], child);
}

#[tokio::test]
async fn rest_details_of_an_index_have_no_date_and_an_image_its_build_time() {
    let emulator = Emulator::start(Config::default());
    let (index, amd64, _) = multiarch(&emulator);
    let rid = emulator.add_repository("");
    let base = format!("/projects/1/registry/repositories/{rid}/tags");
    let details: Value = rest(&emulator, Method::GET, &format!("{base}/2.0.0"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(details["digest"], index);
    assert!(
        details["created_at"].is_null() && details["total_size"].is_null(),
        "GitLab shows an index without date or size: {details}"
    );
    let details: Value = rest(&emulator, Method::GET, &format!("{base}/2.0.0-amd64"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(details["digest"], amd64);
    assert_eq!(details["created_at"], "2024-01-02T12:00:00.000+00:00");
    assert!(details["total_size"].as_u64().expect("size") > 0);
}

#[tokio::test]
async fn cosign_signature_and_attestation_tags() {
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("");
    let image = repository.push_image(Some("1.0.0"), Some(day(1)));
    let signature = repository.push_signature(&image, "sig");
    let attestation = repository.push_signature(&image, "att");
    let orphan_subject = format!("sha256:{}", "ab".repeat(32));
    let orphan = repository.push_signature(&orphan_subject, "sig");
    let hex = image.trim_start_matches("sha256:");
    assert_eq!(
        repository.tags(),
        [
            ("1.0.0".to_string(), image.clone()),
            (format!("sha256-{}.sig", "ab".repeat(32)), orphan),
            (format!("sha256-{hex}.att"), attestation.clone()),
            (format!("sha256-{hex}.sig"), signature.clone()),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        gitlab_emulator::referrer_tag(&image, Some("sig")),
        format!("sha256-{hex}.sig")
    );
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    for (tag, digest, layer_type) in [
        (
            format!("sha256-{hex}.sig"),
            &signature,
            "application/vnd.dev.cosign.simplesigning.v1+json",
        ),
        (
            format!("sha256-{hex}.att"),
            &attestation,
            "application/vnd.dsse.envelope.v1+json",
        ),
    ] {
        let (status, got, content_type, body) =
            get_manifest(&emulator, "group/project", &tag, &token).await;
        assert_eq!(status, 200);
        assert_eq!(got.as_deref(), Some(digest.as_str()));
        assert_eq!(
            content_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(&sha256(&body), digest);
        let manifest: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(manifest["layers"][0]["mediaType"], layer_type);
        assert!(
            manifest.get("subject").is_none(),
            "cosign tags have no subject"
        );
        let config = registry(
            &emulator,
            Method::GET,
            &format!(
                "/v2/group/project/blobs/{}",
                manifest["config"]["digest"].as_str().expect("config")
            ),
            &token,
            "*/*",
        )
        .await;
        assert_eq!(config.text().await.expect("config"), "{}");
    }
    // A signature is an image without a date, as GitLab shows it.
    let rid = emulator.add_repository("");
    let details: Value = rest(
        &emulator,
        Method::GET,
        &format!("/projects/1/registry/repositories/{rid}/tags/sha256-{hex}.sig"),
    )
    .await
    .json()
    .await
    .expect("json");
    assert!(details["created_at"].is_null(), "{details}");
    assert_eq!(details["digest"], signature);
}

#[tokio::test]
async fn artifacts_are_found_by_the_tag_schema_and_gitlab_v1_referrers() {
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("");
    let image = repository.push_image(Some("1.0.0"), Some(day(1)));
    let other = repository.push_image(Some("1.0.1"), Some(day(2)));
    let sbom = repository.push_artifact(&image, "application/spdx+json");
    let provenance = repository.push_artifact(&image, "application/vnd.in-toto+json");
    let schema_tag = gitlab_emulator::referrer_tag(&image, None);
    let tags = repository.tags();
    assert_eq!(
        tags.len(),
        3,
        "artifacts are untagged; one schema tag: {tags:?}"
    );
    let token = job_jwt(&emulator, "repository:group/project:pull").await;

    // The referrers tag schema: an index listing both, with their types.
    let (status, digest, content_type, body) =
        get_manifest(&emulator, "group/project", &schema_tag, &token).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some(OCI_INDEX));
    assert_eq!(digest.as_deref(), Some(tags[&schema_tag].as_str()));
    assert_eq!(sha256(&body), tags[&schema_tag]);
    let index: Value = serde_json::from_slice(&body).expect("JSON");
    let listed: Vec<(&str, &str)> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|entry| {
            (
                entry["digest"].as_str().expect("digest"),
                entry["artifactType"].as_str().expect("artifactType"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (sbom.as_str(), "application/spdx+json"),
            (provenance.as_str(), "application/vnd.in-toto+json")
        ]
    );
    assert_eq!(
        repository
            .manifest(&tags[&schema_tag])
            .map(|body| sha256(&body)),
        Some(tags[&schema_tag].clone()),
        "the index it replaced is gone, the new one stored"
    );
    let (_, _, _, body) = get_manifest(&emulator, "group/project", &sbom, &token).await;
    let artifact: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(artifact["artifactType"], "application/spdx+json");
    assert_eq!(artifact["subject"]["digest"], image);
    assert_eq!(
        artifact["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );

    // /gitlab/v1 with referrers=true: each tag carries its referrers.
    let list = |query: &'static str| {
        let emulator = &emulator;
        let token = token.clone();
        async move {
            let response = registry(
                emulator,
                Method::GET,
                &format!("/gitlab/v1/repositories/group/project/tags/list/{query}"),
                &token,
                "application/json",
            )
            .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("JSON")
        }
    };
    let plain = list("").await;
    assert!(
        plain
            .as_array()
            .expect("array")
            .iter()
            .all(|tag| tag.get("referrers").is_none()),
        "no referrers without referrers=true: {plain}"
    );
    let with = list("?referrers=true").await;
    let by_name = |listing: &Value, name: &str| -> Value {
        listing
            .as_array()
            .expect("array")
            .iter()
            .find(|tag| tag["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    let mut expected = vec![
        json!({"artifactType": "application/spdx+json", "digest": sbom}),
        json!({"artifactType": "application/vnd.in-toto+json", "digest": provenance}),
    ];
    expected.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    assert_eq!(by_name(&with, "1.0.0")["referrers"], json!(expected));
    assert_eq!(by_name(&with, "1.0.0")["digest"], image);
    assert_eq!(
        by_name(&with, "1.0.0")["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(by_name(&with, "1.0.1")["referrers"], json!([]));
    assert_eq!(by_name(&with, "1.0.1")["digest"], other);
    assert_eq!(by_name(&with, &schema_tag)["media_type"], OCI_INDEX);
    let filtered = list("?referrers=true&referrer_type=application/spdx%2Bjson").await;
    assert_eq!(
        by_name(&filtered, "1.0.0")["referrers"],
        json!([{"artifactType": "application/spdx+json", "digest": sbom}])
    );
    let exact = list("?name_exact=1.0.0").await;
    assert_eq!(exact.as_array().expect("array").len(), 1);
}

#[tokio::test]
async fn a_pushed_subject_must_exist_on_gitlab_but_not_on_distribution() {
    for gitlab in [true, false] {
        let emulator = Emulator::start(Config {
            grant_push: true,
            gitlab_v1: gitlab,
            tag_delete: gitlab,
            ..Config::default()
        });
        let empty = emulator.put_blob("", b"{}");
        let missing = format!("sha256:{}", "cd".repeat(32));
        let body = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": empty},
            "layers": [],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10, "digest": missing},
        })
        .to_string();
        let digest = sha256(body.as_bytes());
        let token = job_jwt(&emulator, "repository:group/project:pull,push").await;
        let response = client()
            .put(format!(
                "{}/v2/group/project/manifests/{digest}",
                emulator.registry_url()
            ))
            .bearer_auth(&token)
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .expect("PUT answers");
        if gitlab {
            assert_eq!(response.status(), 400, "GitLab: the subject must exist");
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID");
        } else {
            assert_eq!(response.status(), 201, "Distribution ignores the subject");
        }
    }
}

#[tokio::test]
async fn gitlab_refuses_to_delete_an_index_child_and_cascades_referrers() {
    let emulator = Emulator::start(Config::default());
    let (index, amd64, arm64) = multiarch(&emulator);
    let repository = emulator.repository("");
    let image = repository.push_image(Some("1.0.0"), Some(day(1)));
    let signature = repository.push_signature(&image, "sig");
    let sbom = repository.push_artifact(&image, "application/spdx+json");
    let loose = repository.push_image(None, Some(day(5)));
    let note = repository.push_artifact(&loose, "application/vnd.example.note");
    let note_index = repository.tags()[&gitlab_emulator::referrer_tag(&loose, None)].clone();

    // A child an index lists: 409 MANIFEST_REFERENCED, nothing changes.
    let refused = delete_manifest(&emulator, "group/project", &amd64).await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_REFERENCED");
    assert_eq!(body["errors"][0]["detail"]["referenced_by"], json!([index]));
    assert!(repository.manifest(&amd64).is_some());
    assert_eq!(repository.tags()["2.0.0-amd64"], amd64);
    // So is an artifact the referrers tag schema's index lists.
    let refused = delete_manifest(&emulator, "group/project", &note).await;
    assert_eq!(refused.status(), 409);

    // A tag delete removes the tag only, never a manifest: no conflict.
    let untagged = delete_manifest(&emulator, "group/project", "2.0.0-amd64").await;
    assert_eq!(untagged.status(), 202);
    assert!(!repository.tags().contains_key("2.0.0-amd64"));
    assert!(repository.manifest(&amd64).is_some(), "the child stays");

    // Deleting the subject takes its untagged referrers with it; the cosign
    // tag (no `subject`, a tag of its own) and the schema tag stay.
    let deleted = delete_manifest(&emulator, "group/project", &image).await;
    assert_eq!(deleted.status(), 202);
    assert!(repository.manifest(&image).is_none());
    assert!(
        repository.manifest(&sbom).is_none(),
        "untagged referrer cascaded"
    );
    let hex = image.trim_start_matches("sha256:");
    let tags = repository.tags();
    assert_eq!(tags[&format!("sha256-{hex}.sig")], signature);
    assert!(tags.contains_key(&format!("sha256-{hex}")));
    assert!(!tags.contains_key("1.0.0"));

    // Once the index is gone, its children may go.
    assert_eq!(
        delete_manifest(&emulator, "group/project", &index)
            .await
            .status(),
        202
    );
    assert_eq!(
        delete_manifest(&emulator, "group/project", &arm64)
            .await
            .status(),
        202
    );
    // The schema index gone, its artifact may go too.
    assert_eq!(
        delete_manifest(&emulator, "group/project", &note_index)
            .await
            .status(),
        202
    );
    assert_eq!(
        delete_manifest(&emulator, "group/project", &note)
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn distribution_deletes_an_index_child_and_leaves_the_index_dangling() {
    let emulator = Emulator::start(Config {
        tag_delete: false,
        gitlab_v1: false,
        ..Config::default()
    });
    let (index, amd64, arm64) = multiarch(&emulator);
    let repository = emulator.repository("");
    let image = repository.push_image(Some("1.0.0"), Some(day(1)));
    let sbom = repository.push_artifact(&image, "application/spdx+json");

    let by_tag = delete_manifest(&emulator, "group/project", "2.0.0-amd64").await;
    assert_eq!(by_tag.status(), 400, "no tag delete on Distribution");
    let deleted = delete_manifest(&emulator, "group/project", &amd64).await;
    assert_eq!(
        deleted.status(),
        202,
        "no referential check on Distribution"
    );
    let tags = repository.tags();
    assert!(
        !tags.contains_key("2.0.0-amd64"),
        "the child's tag went with it"
    );
    assert_eq!(tags["2.0.0"], index, "the index is still tagged");
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    let (status, _, _, body) = get_manifest(&emulator, "group/project", "2.0.0", &token).await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(listed["manifests"][0]["digest"], amd64, "still listed…");
    let (status, _, _, _) = get_manifest(&emulator, "group/project", &amd64, &token).await;
    assert_eq!(status, 404, "…but gone: the index dangles");
    let (status, _, _, _) = get_manifest(&emulator, "group/project", &arm64, &token).await;
    assert_eq!(status, 200);

    // No cascade either: the artifact outlives its subject.
    assert_eq!(
        delete_manifest(&emulator, "group/project", &image)
            .await
            .status(),
        202
    );
    assert!(repository.manifest(&sbom).is_some());
}

/// Push time and build time apart (gitlab-protocol.md §7 "Ages"): REST
/// `created_at` is the image config's `created`; `/gitlab/v1` lists the
/// database's times — `created_at` the first push, `updated_at` the last
/// re-push (null before), `published_at` = `updated_at || created_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_times_are_apart_from_the_build_time() {
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("api");
    let built = Utc
        .with_ymd_and_hms(1980, 1, 1, 0, 0, 1)
        .single()
        .expect("date");
    repository.push_image(Some("ko"), Some(built));
    repository.set_pushed_at("ko", day(2));
    emulator.add_tags(
        "api",
        [TagSpec::new("seeded").created(day(1)).pushed(day(3))],
    );
    let rid = repository.id();
    let token = job_jwt(&emulator, "repository:group/project/api:pull").await;
    async fn list(emulator: &Emulator, token: &str) -> Value {
        let v1 = "/gitlab/v1/repositories/group/project/api/tags/list/";
        registry(emulator, Method::GET, v1, token, "*/*")
            .await
            .json::<Value>()
            .await
            .expect("json")
    }
    let page = list(&emulator, &token).await;
    let (ko, seeded) = (&page[0], &page[1]);
    assert_eq!(ko["name"], "ko");
    assert_eq!(ko["created_at"], "2024-01-02T12:00:00.000+00:00");
    assert!(ko["updated_at"].is_null());
    assert_eq!(ko["published_at"], ko["created_at"]);
    assert_eq!(seeded["created_at"], "2024-01-03T12:00:00.000+00:00");

    repository.set_repushed_at("ko", day(4));
    let page = list(&emulator, &token).await;
    assert_eq!(page[0]["created_at"], "2024-01-02T12:00:00.000+00:00");
    assert_eq!(page[0]["updated_at"], "2024-01-04T12:00:00.000+00:00");
    assert_eq!(page[0]["published_at"], page[0]["updated_at"]);

    // REST tag details: the build time, whatever the push time.
    for (tag, created) in [
        ("ko", "1980-01-01T00:00:01.000+00:00"),
        ("seeded", "2024-01-01T12:00:00.000+00:00"),
    ] {
        let details: Value = rest(
            &emulator,
            Method::GET,
            &format!("/projects/1/registry/repositories/{rid}/tags/{tag}"),
        )
        .await
        .json()
        .await
        .expect("json");
        assert_eq!(details["created_at"], created, "{tag}");
    }
}

// ------------------------------------------------- tag rules (§7)

fn ruled() -> Config {
    Config {
        tag_rules: gitlab_emulator::TagRules {
            delete_deny: vec!["^v".into()],
            immutable: vec!["rel-".into()],
        },
        ..Config::default()
    }
}

async fn code_of(response: Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let challenge = header(response.headers(), "www-authenticate");
    let body: Value = response.json().await.expect("json");
    let code = body["errors"][0]["code"].as_str().unwrap_or("").to_string();
    (status, challenge, code)
}

#[tokio::test]
async fn jwt_meta_carries_the_tag_rules_with_delete_or_push_only() {
    let emulator = Emulator::start(ruled());
    let token = job_jwt(&emulator, "repository:group/project:pull,delete").await;
    let meta = &claims(&token)["access"][0]["meta"];
    assert_eq!(meta["project_path"], "group/project");
    assert_eq!(meta["project_id"], 1);
    assert!(meta["root_namespace_id"].is_number());
    assert_eq!(
        meta["tag_deny_access_patterns"],
        json!({"push": [], "delete": ["^v"]})
    );
    assert_eq!(meta["tag_immutable_patterns"], json!(["rel-"]));
    // A pull-only token: the project, no patterns.
    let token = job_jwt(&emulator, "repository:group/project:pull").await;
    let meta = &claims(&token)["access"][0]["meta"];
    assert_eq!(meta["project_path"], "group/project");
    assert!(meta.get("tag_deny_access_patterns").is_none(), "{meta}");
    assert!(meta.get("tag_immutable_patterns").is_none(), "{meta}");
}

#[tokio::test]
async fn registry_refuses_rule_covered_tags_and_every_digest_delete_with_401() {
    let emulator = Emulator::start(ruled());
    emulator.add_tags(
        "",
        [
            TagSpec::new("v1").created(day(1)),
            TagSpec::new("x-rel-2").created(day(1)),
            TagSpec::new("mr-1").digest("sha256:2222").created(day(1)),
            TagSpec::new("mr-2").created(day(1)),
        ],
    );
    let (status, challenge, code) =
        code_of(delete_manifest(&emulator, "group/project", "v1").await).await;
    assert_eq!((status, code.as_str()), (401, "PROTECTED_TAG"));
    let challenge = challenge.expect("a challenge");
    assert!(
        !challenge.contains("error="),
        "not a token problem: {challenge}"
    );
    // Unanchored: `rel-` anywhere in the name.
    let (status, _, code) =
        code_of(delete_manifest(&emulator, "group/project", "x-rel-2").await).await;
    assert_eq!((status, code.as_str()), (401, "IMMUTABLE_TAG"));
    // Any digest delete while the token carries a rule, matching or not.
    let digest = emulator.tags("")["mr-1"].clone();
    let (status, _, code) =
        code_of(delete_manifest(&emulator, "group/project", &digest).await).await;
    assert_eq!((status, code.as_str()), (401, "PROTECTED_MANIFEST"));
    // Tag delete of an uncovered tag works.
    assert_eq!(
        delete_manifest(&emulator, "group/project", "mr-2")
            .await
            .status(),
        202
    );
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["mr-1", "v1", "x-rel-2"]
    );

    // A token issued before the rules (no meta) meets a registry that knows them.
    emulator.set_config(|config| config.tag_rules_in_jwt = false);
    let token = job_jwt(&emulator, "repository:group/project:pull,delete").await;
    assert!(claims(&token)["access"][0]["meta"]
        .get("tag_immutable_patterns")
        .is_none());
    let (status, _, code) =
        code_of(delete_manifest(&emulator, "group/project", "x-rel-2").await).await;
    assert_eq!((status, code.as_str()), (401, "IMMUTABLE_TAG"));

    // Without rules, the digest delete goes through.
    emulator.set_config(|config| {
        config.tag_rules = gitlab_emulator::TagRules::default();
        config.tag_rules_in_jwt = true;
    });
    assert_eq!(
        delete_manifest(&emulator, "group/project", &digest)
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn rest_and_bulk_delete_respect_tag_rules() {
    let emulator = Emulator::start(ruled());
    emulator.add_tags(
        "",
        [
            TagSpec::new("v1").created(day(1)),
            TagSpec::new("rel-1").created(day(1)),
            TagSpec::new("mr-1").created(day(1)),
            TagSpec::new("mr-2").created(day(1)),
        ],
    );
    let rid = emulator.repository("").id();
    for (tag, word) in [("v1", "protected"), ("rel-1", "immutable")] {
        let response = rest(
            &emulator,
            Method::DELETE,
            &format!("/projects/1/registry/repositories/{rid}/tags/{tag}"),
        )
        .await;
        assert_eq!(response.status(), 403, "{tag}");
        let body: Value = response.json().await.expect("json");
        assert!(
            body["message"].as_str().expect("message").contains(word),
            "{body}"
        );
    }
    let response = rest(
        &emulator,
        Method::DELETE,
        &format!("/projects/1/registry/repositories/{rid}/tags/mr-1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (status, _) = bulk(&emulator, rid, "name_regex_delete=.*").await;
    assert_eq!(status, 202);
    assert_eq!(
        emulator.tags("").keys().collect::<Vec<_>>(),
        ["rel-1", "v1"]
    );
}

/// As GitLab's registry: the capability headers come from the base handler,
/// which only an authorized `GET /v2/` reaches; the challenge carries none.
#[tokio::test]
async fn v2_names_gitlab_capabilities_in_headers() {
    for (config, features, database) in [
        (Config::default(), Some("tag_delete"), Some("true")),
        (
            Config {
                gitlab_v1: false,
                ..Config::default()
            },
            Some("tag_delete"),
            Some("false"),
        ),
        (
            Config {
                tag_delete: false,
                gitlab_v1: false,
                ..Config::default()
            },
            None,
            None,
        ),
        (
            Config {
                capability_headers: false,
                ..Config::default()
            },
            None,
            None,
        ),
    ] {
        let emulator = Emulator::start(config);
        let anonymous = client()
            .get(format!("{}/v2/", emulator.registry_url()))
            .send()
            .await
            .expect("answers");
        assert_eq!(anonymous.status(), 401);
        for name in [
            "gitlab-container-registry-features",
            "gitlab-container-registry-database-enabled",
        ] {
            assert_eq!(
                header(anonymous.headers(), name),
                None,
                "{name} on the challenge"
            );
        }
        // Any token the realm issues, of no scope at all (as `docker login`).
        let job_token = emulator.config().job_token;
        let token = jwt(&emulator, "gitlab-ci-token", &job_token, &[]).await;
        let response = client()
            .get(format!("{}/v2/", emulator.registry_url()))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(
            header(headers, "gitlab-container-registry-features").as_deref(),
            features
        );
        assert_eq!(
            header(headers, "gitlab-container-registry-database-enabled").as_deref(),
            database
        );
    }
}

// ---------------------------------------------------------------- git refs

async fn names(response: Response, key: &str) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    response
        .json::<Value>()
        .await
        .expect("json")
        .as_array()
        .expect("array")
        .iter()
        .map(|item| item[key].clone())
        .collect()
}

#[tokio::test]
async fn branches_and_git_tags_are_listed_with_offset_pagination() {
    let emulator = Emulator::start(Config::default());
    for i in 0..150 {
        emulator.add_branch(&format!("feature/{i:03}"));
    }
    emulator.add_branch("main");
    emulator.add_git_tag("v1.0.0");
    emulator.add_git_tag("v1.1.0");

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/repository/branches?per_page=100",
    )
    .await;
    let h = response.headers().clone();
    assert_eq!(header(&h, "x-next-page").as_deref(), Some("2"));
    assert_eq!(header(&h, "x-total").as_deref(), Some("151"));
    assert!(header(&h, "link")
        .expect("Link")
        .contains("page=2&per_page=100>; rel=\"next\""));
    let first = names(response, "name").await;
    assert_eq!(first.len(), 100);
    assert_eq!(first[0], json!("feature/000"));

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/group%2Fproject/repository/branches?per_page=100&page=2",
    )
    .await;
    assert_eq!(
        header(response.headers(), "x-next-page").as_deref(),
        Some("")
    );
    let second = names(response, "name").await;
    assert_eq!(second.len(), 51);
    assert_eq!(second.last(), Some(&json!("main")));

    let response = rest(&emulator, Method::GET, "/projects/1/repository/tags").await;
    assert_eq!(
        names(response, "name").await,
        vec![json!("v1.0.0"), json!("v1.1.0")]
    );
    assert_eq!(emulator.count("GET", "/repository/branches"), 2);
    assert_eq!(emulator.count("GET", "/repository/tags"), 1);

    let response = rest(&emulator, Method::GET, "/projects/2/repository/branches").await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn merge_requests_filter_by_state_and_show_forks() {
    let emulator = Emulator::start(Config::default());
    emulator.add_merge_request(12, "feature-x", "opened", false);
    emulator.add_merge_request(13, "fix/Typo", "opened", true);
    emulator.add_merge_request(14, "old", "merged", false);
    emulator.add_merge_request(15, "gone", "closed", false);

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/merge_requests?state=opened&per_page=100",
    )
    .await;
    let body: Value = response.json().await.expect("json");
    let opened = body.as_array().expect("array");
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[0]["iid"], json!(13), "newest first");
    assert_eq!(opened[0]["source_branch"], json!("fix/Typo"));
    assert_ne!(opened[0]["source_project_id"], json!(1), "from a fork");
    assert_eq!(opened[0]["target_project_id"], json!(1));
    assert_eq!(opened[1]["iid"], json!(12));
    assert_eq!(opened[1]["source_project_id"], json!(1));

    let response = rest(&emulator, Method::GET, "/projects/1/merge_requests").await;
    assert_eq!(names(response, "iid").await.len(), 4, "all by default");
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/merge_requests?state=merged",
    )
    .await;
    assert_eq!(names(response, "iid").await, vec![json!(14)]);
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/merge_requests?state=nope",
    )
    .await;
    assert_eq!(response.status(), 400);

    let response = rest(&emulator, Method::GET, "/projects/1/merge_requests/15").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["state"], json!("closed"));
    let response = rest(&emulator, Method::GET, "/projects/1/merge_requests/99").await;
    assert_eq!(response.status(), 404);
    assert_eq!(emulator.count("GET", "/merge_requests"), 6);
}

#[tokio::test]
async fn git_refs_can_refuse_the_job_token() {
    let emulator = Emulator::start(Config::default());
    emulator.add_branch("main");
    let job_get = |path: &str| {
        client()
            .get(format!("{}/api/v4{path}", emulator.gitlab_url()))
            .header("JOB-TOKEN", emulator.config().job_token)
            .send()
    };
    let response = job_get("/projects/1/repository/branches")
        .await
        .expect("answer");
    assert_eq!(
        response.status(),
        200,
        "GitLab 18.x: the job token reads them"
    );

    emulator.set_config(|config| config.refs_refuse_job_token = true);
    for path in [
        "/projects/1/repository/branches",
        "/projects/1/repository/tags",
        "/projects/1/merge_requests?state=opened",
        "/projects/1/merge_requests/1",
    ] {
        let response = job_get(path).await.expect("answer");
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["message"], json!("403 Forbidden"));
    }
    // An access token still reads them; the registry endpoints still take the job token.
    let response = rest(&emulator, Method::GET, "/projects/1/repository/branches").await;
    assert_eq!(names(response, "name").await, vec![json!("main")]);
    let response = job_get("/projects/1/registry/repositories")
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    // A wrong job token is still a 401.
    let response = client()
        .get(format!(
            "{}/api/v4/projects/1/repository/branches",
            emulator.gitlab_url()
        ))
        .header("JOB-TOKEN", "wrong")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 401);
}

// ---------------------------------------------------------------- in use

fn commit(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

async fn job_get(emulator: &Emulator, path: &str) -> Response {
    client()
        .get(format!("{}/api/v4{path}", emulator.gitlab_url()))
        .header("JOB-TOKEN", emulator.config().job_token)
        .send()
        .await
        .expect("answer")
}

#[tokio::test]
async fn environments_filter_by_state_name_and_search_with_offset_pagination() {
    use gitlab_emulator::DeploymentSpec;
    let emulator = Emulator::start(Config::default());
    let production = emulator.add_environment("production", "available");
    emulator.add_environment("staging", "stopping");
    emulator.add_environment("review/old", "stopped");
    for i in 0..120 {
        emulator.add_environment(&format!("review/{i:03}"), "available");
    }
    // A deployment to a new environment creates it, available.
    emulator.add_deployment(DeploymentSpec::new("qa", &commit(1)));

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/environments?states=available&per_page=100",
    )
    .await;
    let h = response.headers().clone();
    assert_eq!(header(&h, "x-next-page").as_deref(), Some("2"));
    assert_eq!(header(&h, "x-total").as_deref(), Some("122"));
    assert!(header(&h, "link").expect("Link").contains("rel=\"next\""));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body[0]["id"], json!(production));
    assert_eq!(body[0]["name"], json!("production"));
    assert_eq!(body[0]["state"], json!("available"));
    assert!(
        body[0].get("last_deployment").is_none(),
        "the list has none"
    );
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/environments?states=available&per_page=100&page=2",
    )
    .await;
    assert_eq!(
        header(response.headers(), "x-next-page").as_deref(),
        Some("")
    );
    let second = names(response, "name").await;
    assert_eq!(second.last(), Some(&json!("qa")));

    for (query, expected) in [
        ("states=stopping", vec![json!("staging")]),
        ("states=stopped", vec![json!("review/old")]),
        ("name=staging", vec![json!("staging")]),
        ("search=stag", vec![json!("staging")]),
    ] {
        let response = rest(
            &emulator,
            Method::GET,
            &format!("/projects/1/environments?{query}"),
        )
        .await;
        assert_eq!(names(response, "name").await, expected, "{query}");
    }
    for (query, error) in [
        ("states=gone", "states does not have a valid value"),
        ("name=a&search=abc", "name, search cannot be used together"),
        (
            "search=ab",
            "400 Bad request - Search query is less than 3 characters",
        ),
    ] {
        let response = rest(
            &emulator,
            Method::GET,
            &format!("/projects/1/environments?{query}"),
        )
        .await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("json");
        let text = body["error"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or("");
        assert_eq!(text, error, "{query}");
    }
    // Before GitLab knew `stopping`.
    emulator.set_config(|config| config.legacy_statuses = true);
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/environments?states=stopping",
    )
    .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn deployments_filter_sort_and_check_as_gitlab_does() {
    use gitlab_emulator::DeploymentSpec;
    let emulator = Emulator::start(Config::default());
    let first =
        emulator.add_deployment(DeploymentSpec::new("production", &commit(1)).finished(day(1)));
    let failed = emulator.add_deployment(
        DeploymentSpec::new("production", &commit(2))
            .status("failed")
            .finished(day(2)),
    );
    let api = emulator.add_deployment(
        DeploymentSpec::new("production", &commit(3))
            .git_ref("v1.0.0")
            .finished(day(3))
            .via_api(),
    );
    let staging =
        emulator.add_deployment(DeploymentSpec::new("staging", &commit(4)).finished(day(4)));
    let running =
        emulator.add_deployment(DeploymentSpec::new("production", &commit(5)).status("running"));

    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/deployments?environment=production&status=success&order_by=id&sort=desc&per_page=3",
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let listed = body.as_array().expect("array");
    assert_eq!(
        listed.iter().map(|d| d["id"].clone()).collect::<Vec<_>>(),
        vec![json!(api), json!(first)]
    );
    assert_eq!(listed[0]["sha"], json!(commit(3)));
    assert_eq!(listed[0]["ref"], json!("v1.0.0"));
    assert_eq!(listed[0]["status"], json!("success"));
    assert_eq!(listed[0]["environment"]["name"], json!("production"));
    assert_eq!(listed[0]["deployable"], Value::Null, "made through the API");
    assert!(
        listed[0].get("finished_at").is_none(),
        "a deployment has no finished_at"
    );
    assert_eq!(
        listed[1]["deployable"]["finished_at"],
        json!("2024-01-01T12:00:00.000+00:00")
    );
    assert_eq!(
        listed[1]["updated_at"],
        json!("2024-01-01T12:00:00.000+00:00")
    );

    // Defaults: every status, ascending id.
    let response = rest(&emulator, Method::GET, "/projects/1/deployments").await;
    assert_eq!(
        names(response, "id").await,
        vec![
            json!(first),
            json!(failed),
            json!(api),
            json!(staging),
            json!(running)
        ]
    );
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/deployments?status=running",
    )
    .await;
    assert_eq!(names(response, "id").await, vec![json!(running)]);
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/deployments?status=success&order_by=finished_at&sort=desc",
    )
    .await;
    assert_eq!(
        names(response, "id").await,
        vec![json!(staging), json!(api), json!(first)]
    );
    for (query, status, error) in [
        ("order_by=ref", 400, "order_by does not have a valid value"),
        ("sort=newest", 400, "sort does not have a valid value"),
        ("status=done", 400, "status does not have a valid value"),
        (
            "order_by=finished_at",
            400,
            "400 Bad request - `finished_at` sort requires `finished_at` filter or a filter with at least one of the finished statuses.",
        ),
    ] {
        let response = rest(&emulator, Method::GET, &format!("/projects/1/deployments?{query}")).await;
        assert_eq!(response.status(), status, "{query}");
        let body: Value = response.json().await.expect("json");
        let text = body["error"].as_str().or(body["message"].as_str()).unwrap_or("");
        assert_eq!(text, error, "{query}");
    }
}

#[tokio::test]
async fn pipelines_filter_by_gitlabs_statuses() {
    use gitlab_emulator::PipelineSpec;
    let emulator = Emulator::start(Config::default());
    let mut ids = Vec::new();
    for (n, status) in [
        "created",
        "waiting_for_resource",
        "preparing",
        "waiting_for_callback",
        "pending",
        "running",
        "canceling",
        "scheduled",
        "manual",
        "success",
    ]
    .iter()
    .enumerate()
    {
        ids.push(
            emulator.add_pipeline(PipelineSpec::new(&commit(n as u8), status).git_ref("feature/x")),
        );
    }
    for _ in 0..150 {
        emulator.add_pipeline(PipelineSpec::new(&commit(99), "running"));
    }
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/pipelines?status=waiting_for_resource",
    )
    .await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    assert_eq!(body[0]["id"], json!(ids[1]));
    assert_eq!(body[0]["sha"], json!(commit(1)));
    assert_eq!(body[0]["ref"], json!("feature/x"));
    assert_eq!(body[0]["status"], json!("waiting_for_resource"));
    // Newest first by default, paged.
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/pipelines?status=running&per_page=100",
    )
    .await;
    assert_eq!(
        header(response.headers(), "x-next-page").as_deref(),
        Some("2")
    );
    let first = names(response, "id").await;
    assert_eq!(first.len(), 100);
    assert!(first[0].as_u64() > first[1].as_u64());
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/pipelines?scope=pending",
    )
    .await;
    assert_eq!(names(response, "id").await, vec![json!(ids[4])]);
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/pipelines?status=waiting",
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], json!("status does not have a valid value"));
    // Before GitLab 17.x: no waiting_for_callback, no canceling.
    emulator.set_config(|config| config.legacy_statuses = true);
    for status in ["waiting_for_callback", "canceling"] {
        let response = rest(
            &emulator,
            Method::GET,
            &format!("/projects/1/pipelines?status={status}"),
        )
        .await;
        assert_eq!(response.status(), 400, "{status}");
    }
    let response = rest(
        &emulator,
        Method::GET,
        "/projects/1/pipelines?status=preparing",
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn each_in_use_listing_can_refuse_the_job_token() {
    use gitlab_emulator::{DeploymentSpec, InUseListing, PipelineSpec};
    let emulator = Emulator::start(Config::default());
    emulator.add_deployment(DeploymentSpec::new("production", &commit(1)));
    emulator.add_pipeline(PipelineSpec::new(&commit(2), "running"));
    let paths = [
        (
            InUseListing::Environments,
            "/projects/1/environments?states=available",
            "read_environments",
        ),
        (
            InUseListing::Deployments,
            "/projects/1/deployments?status=success",
            "read_deployments",
        ),
        (
            InUseListing::Pipelines,
            "/projects/1/pipelines?status=running",
            "read_pipelines",
        ),
    ];
    for (_, path, _) in paths {
        assert_eq!(job_get(&emulator, path).await.status(), 200, "{path}");
    }
    for (listing, path, permission) in paths {
        emulator.set_config(|config| config.job_token_refused = vec![(listing, 403)]);
        let response = job_get(&emulator, path).await;
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body["message"],
            json!(format!("403 Forbidden - Insufficient permissions to access this resource in project project. The following token permission is required: {permission}."))
        );
        // The others still answer; an access token still reads this one.
        for (other, other_path, _) in paths {
            if other != listing {
                assert_eq!(job_get(&emulator, other_path).await.status(), 200);
            }
        }
        assert_eq!(rest(&emulator, Method::GET, path).await.status(), 200);
        emulator.set_config(|config| config.job_token_refused = vec![(listing, 401)]);
        let response = job_get(&emulator, path).await;
        assert_eq!(response.status(), 401, "{path}");
    }
    // Another project's are not the job token's; the access token reads a
    // group project's.
    assert_eq!(
        job_get(&emulator, "/projects/2/environments")
            .await
            .status(),
        404
    );
}

/// What `registry-cleanup inventory` records, seeded as the registry would
/// hold it (the playground, `scripts/try-live.sh --serve`, runs on it): an
/// index and its children, media types and sizes; a repository of another
/// project makes that project part of the group, with its branches and open
/// merge requests; a protected tag is a tag rule; with `inventory_now` the
/// dates keep their age.
#[tokio::test]
async fn an_inventory_seeds_indexes_sizes_projects_refs_and_floating_dates() {
    let child = format!("sha256:{}", "c".repeat(64));
    let anchor: chrono::DateTime<Utc> = "2026-11-01T00:00:00Z".parse().expect("anchor");
    let emulator = Emulator::start(Config {
        inventory_now: Some(anchor),
        ..Config::default()
    });
    emulator
        .try_load_inventory_json(&format!(
            r#"{{"repositories": [
                {{"path": "group/project/api", "tags": [
                    {{"name": "v1", "digest": "sha256:{a}", "media_type": "application/vnd.oci.image.index.v1+json",
                      "children": ["{child}"], "pushed_at": "2026-10-01T00:00:00Z", "size_bytes": 123456789}},
                    {{"name": "v1.sig", "digest": "sha256:{b}", "media_type": "application/vnd.oci.image.manifest.v1+json"}},
                    {{"name": "hold", "created_at": "2026-10-31T00:00:00Z", "protected": true}}]}},
                {{"path": "group/other/web", "project_id": 5, "tags": [{{"name": "main-1", "created_at": "2026-10-01T00:00:00Z"}}]}}],
              "refs": {{"5": {{"complete": true, "slugs": ["main"], "open_mrs": [12]}}}}}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
        ))
        .expect("loaded");

    let token = jwt(
        &emulator,
        "user",
        &emulator.config().access_token,
        &[
            "repository:group/project/api:pull",
            "repository:group/other/web:pull",
        ],
    )
    .await;
    let list: Value = registry(
        &emulator,
        Method::GET,
        "/gitlab/v1/repositories/group/project/api/tags/list/",
        &token,
        "*/*",
    )
    .await
    .json()
    .await
    .expect("json");
    let tag = |name: &str| {
        list.as_array()
            .expect("tags")
            .iter()
            .find(|t| t["name"] == name)
            .expect("tag")
            .clone()
    };
    let index = tag("v1");
    assert_eq!(
        index["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["size_bytes"], 123456789);
    // Pushed a month before the anchor: a month old now.
    let published: chrono::DateTime<Utc> = index["published_at"]
        .as_str()
        .expect("date")
        .parse()
        .expect("date");
    let age = Utc::now() - published;
    assert!(
        (age - chrono::Duration::days(31)).num_seconds().abs() < 60,
        "{published}"
    );
    // An undated signature is an image (not an index), pushed at the anchor.
    assert_eq!(
        tag("v1.sig")["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The index lists its child, made as an image under that digest.
    let manifest: Value = registry(
        &emulator,
        Method::GET,
        "/v2/group/project/api/manifests/v1",
        &token,
        "application/vnd.oci.image.index.v1+json",
    )
    .await
    .json()
    .await
    .expect("index");
    assert_eq!(manifest["manifests"][0]["digest"], child.as_str());
    let child_answer = registry(
        &emulator,
        Method::HEAD,
        &format!("/v2/group/project/api/manifests/{child}"),
        &token,
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await;
    assert_eq!(child_answer.status(), 200);
    // The protected tag is a tag rule.
    assert_eq!(
        emulator.config().tag_rules.delete_deny,
        vec!["^hold$".to_string()]
    );

    // The other project: in the group, with its refs.
    assert!(emulator
        .config()
        .group_projects
        .contains(&(5, "group/other/web".to_string())));
    let branches: Value = rest(&emulator, Method::GET, "/projects/5/repository/branches")
        .await
        .json()
        .await
        .expect("branches");
    assert_eq!(branches[0]["name"], "main");
    let open: Value = rest(
        &emulator,
        Method::GET,
        "/projects/group%2Fother%2Fweb/merge_requests?state=opened",
    )
    .await
    .json()
    .await
    .expect("merge requests");
    assert_eq!(open[0]["iid"], 12);
    assert_eq!(open[0]["project_id"], 5);
    // A project the inventory gave no refs: no git endpoints, as before.
    let refused = emulator
        .try_load_inventory_json(r#"{"repositories": [{"path": "elsewhere/x", "project_id": 9}]}"#);
    assert!(refused
        .expect_err("not in the group")
        .contains("elsewhere/x"));
}
