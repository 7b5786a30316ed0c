//! `Config::upstream_registry`: GitLab in front of a third-party registry. The
//! third-party registry here is a second emulator configured like Docker
//! Distribution 2.8 (no tag delete, no `/gitlab/v1`, no referential
//! integrity); both sign and check JWTs with the same default key, as
//! `scripts/real-registry-test.sh` arranges for the real Distribution.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use gitlab_emulator::{Config, Emulator, Listen};
use reqwest::{Client, Method, Response};
use serde_json::Value;

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// (third-party registry, GitLab in front of it)
fn pair() -> (Emulator, Emulator) {
    let upstream = Emulator::start(Config {
        tag_delete: false,
        gitlab_v1: false,
        ..Config::default()
    });
    let front = Emulator::start_on(
        Config {
            upstream_registry: Some(upstream.registry_url()),
            keyset: false,
            grant_push: true,
            ..Config::default()
        },
        Listen {
            registry: None,
            registry_host: Some(upstream.registry_host()),
            ..Listen::default()
        },
    )
    .expect("the front emulator starts");
    (upstream, front)
}

/// A push token from the front's /jwt/auth, as a CI job's `docker push` gets one:
/// GitLab creates the repository record then.
async fn push_token(front: &Emulator, path: &str) {
    let response = client()
        .get(format!("{}/jwt/auth", front.gitlab_url()))
        .query(&[
            ("service", "container_registry".to_string()),
            ("scope", format!("repository:{path}:pull,push")),
        ])
        .basic_auth("gitlab-ci-token", Some(front.config().job_token))
        .send()
        .await
        .expect("/jwt/auth answers");
    assert_eq!(response.status(), 200);
}

async fn rest(front: &Emulator, method: Method, path: &str) -> Response {
    client()
        .request(method, format!("{}/api/v4{path}", front.gitlab_url()))
        .header("JOB-TOKEN", front.config().job_token)
        .send()
        .await
        .expect("REST answers")
}

async fn json(response: Response) -> Value {
    assert_eq!(response.status(), 200, "{:?}", response.url().to_string());
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn rest_reads_the_third_party_registry() {
    let (upstream, front) = pair();
    let built = Utc
        .with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
        .single()
        .expect("date");
    let repo = upstream.repository("app");
    let image = repo.push_image(Some("1.0.0"), Some(built));
    repo.tag("1.0.0-copy", &image);
    let amd64 = repo.push_platform_image(None, "linux", "amd64", Some(built));
    let index = repo.push_index("2.0.0", &[&amd64]);
    repo.push_signature(&image, "sig");
    // Pushed to the registry, but GitLab never issued a push token for it.
    upstream.repository("elsewhere").push_image(Some("x"), None);

    push_token(&front, "group/project/app").await;
    push_token(&front, "group/project/empty").await;
    let repositories = json(
        rest(
            &front,
            Method::GET,
            "/projects/1/registry/repositories?tags_count=true",
        )
        .await,
    )
    .await;
    let listed: Vec<(String, u64)> = repositories
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["path"].as_str().expect("path").to_string(),
                r["tags_count"].as_u64().expect("tags_count"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("group/project/app".to_string(), 4),
            ("group/project/empty".to_string(), 0)
        ]
    );
    assert_eq!(
        repositories[0]["location"],
        format!("{}/group/project/app", upstream.registry_host())
    );
    let rid = repositories[0]["id"].as_u64().expect("id");
    let tags = format!("/projects/1/registry/repositories/{rid}/tags");

    // Sorted by name, offset pagination; keyset needs the metadata database.
    let page = rest(&front, Method::GET, &format!("{tags}?per_page=3")).await;
    assert_eq!(page.headers()["x-next-page"], "2");
    assert_eq!(page.headers()["x-total"], "4");
    let names: Vec<String> = json(page)
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    let signature = gitlab_emulator::referrer_tag(&image, Some("sig"));
    assert_eq!(names, ["1.0.0", "1.0.0-copy", "2.0.0"]);
    let second = json(rest(&front, Method::GET, &format!("{tags}?per_page=3&page=2")).await).await;
    assert_eq!(second[0]["name"], signature.as_str());
    let keyset = rest(&front, Method::GET, &format!("{tags}?pagination=keyset")).await;
    assert_eq!(keyset.status(), 405);

    // Details: the config's `created`; null for an index and a `{}` config.
    let details = json(rest(&front, Method::GET, &format!("{tags}/1.0.0")).await).await;
    assert_eq!(details["digest"], image.as_str());
    assert_eq!(details["created_at"], "2024-05-01T10:00:00.000+00:00");
    assert_eq!(details["path"], "group/project/app:1.0.0");
    assert!(details["total_size"].is_u64(), "{details}");
    let details = json(rest(&front, Method::GET, &format!("{tags}/2.0.0")).await).await;
    assert_eq!(details["digest"], index.as_str());
    assert!(details["created_at"].is_null(), "{details}");
    assert!(details["total_size"].is_null(), "{details}");
    let details = json(rest(&front, Method::GET, &format!("{tags}/{signature}")).await).await;
    assert!(details["created_at"].is_null(), "{details}");
    let missing = rest(&front, Method::GET, &format!("{tags}/nope")).await;
    assert_eq!(missing.status(), 404);

    // Another project's path is never a repository of ours.
    let other = rest(&front, Method::GET, "/projects/2/registry/repositories").await;
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn single_tag_delete_moves_the_tag_onto_a_dummy_manifest_first() {
    let (upstream, front) = pair();
    let repo = upstream.repository("app");
    let shared = repo.push_image(Some("a"), None);
    repo.tag("b", &shared);
    let amd64 = repo.push_platform_image(None, "linux", "amd64", None);
    let index = repo.push_index("2.0.0", &[&amd64]);
    repo.tag("2.0.0-amd64", &amd64);
    push_token(&front, "group/project/app").await;
    let rid = front
        .repositories()
        .into_iter()
        .find(|(_, path)| path == "group/project/app")
        .expect("the repository record")
        .0;
    let tags = format!("/projects/group%2Fproject/registry/repositories/{rid}/tags");
    upstream.reset_requests();

    let deleted = rest(&front, Method::DELETE, &format!("{tags}/a")).await;
    assert_eq!(deleted.status(), 200);
    let deleted = rest(&front, Method::DELETE, &format!("{tags}/2.0.0-amd64")).await;
    assert_eq!(deleted.status(), 200);

    // Only the tags went: their manifests stay for the other tag and the index.
    let after = repo.tags();
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["2.0.0", "b"]
    );
    assert_eq!(after["b"], shared);
    assert_eq!(after["2.0.0"], index);
    assert!(
        repo.manifest(&amd64).is_some(),
        "the index's child survives"
    );
    // GitLab's way: PUT the dummy on the tag, DELETE the dummy by digest.
    assert_eq!(upstream.count("PUT", "/manifests/a"), 1);
    assert_eq!(upstream.count("PUT", "/manifests/2.0.0-amd64"), 1);
    assert_eq!(upstream.count("DELETE", "/manifests/sha256:"), 2);
    assert_eq!(upstream.count("DELETE", "/manifests/a"), 0);

    let missing = rest(&front, Method::DELETE, &format!("{tags}/a")).await;
    assert_eq!(missing.status(), 404);
}
