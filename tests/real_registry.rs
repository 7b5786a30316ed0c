//! The real binary against a real registry: Docker Distribution 2.8 (no delete by
//! tag; a digest delete removes every tag sharing the manifest) with the
//! gitlab-emulator binary as its token realm. `scripts/real-registry-test.sh`
//! starts both, sets the `REAL_REGISTRY_*` variables and runs these tests,
//! which are `#[ignore]`d otherwise. Run without those variables, they fail
//! when `CI` is set and say they checked nothing elsewhere. With them, a
//! registry that does not answer is a failure.
//!
//! The tool runs with registry credentials only (no `CI_JOB_TOKEN`, no
//! `GITLAB_TOKEN`), so it must use the registry-only fallbacks: delete a digest
//! only when no other tag shares it, else move the tag onto a throw-away
//! manifest first.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

struct Real {
    registry_url: String,
    registry_host: String,
    gitlab_url: String,
    job_token: String,
    project_path: String,
    project_id: String,
    http: Client,
}

/// The registry described by the environment, checked to answer; `None` when
/// the variables are not set (a failure under CI).
async fn real_registry() -> Option<Real> {
    let Ok(registry_url) = std::env::var("REAL_REGISTRY_URL") else {
        common::missing_prerequisite(
            "REAL_REGISTRY_URL is not set (scripts/real-registry-test.sh starts a registry and sets it)",
        );
        return None;
    };
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("REAL_REGISTRY_URL is set but {name} is not"))
    };
    let real = Real {
        registry_host: var("REAL_REGISTRY_HOST"),
        gitlab_url: var("REAL_REGISTRY_GITLAB_URL"),
        job_token: var("REAL_REGISTRY_JOB_TOKEN"),
        project_path: var("REAL_REGISTRY_PROJECT_PATH"),
        project_id: var("REAL_REGISTRY_PROJECT_ID"),
        registry_url,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client"),
    };
    let ping = real
        .http
        .get(format!("{}/v2/", real.registry_url))
        .send()
        .await
        .unwrap_or_else(|err| {
            panic!(
                "REAL_REGISTRY_URL={} does not answer: {err}",
                real.registry_url
            )
        });
    assert_eq!(
        ping.status(),
        401,
        "{}/v2/ should ask for a token (is token auth configured?)",
        real.registry_url
    );
    Some(real)
}

fn sha256(content: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(content))
}

/// A repository name no earlier run against the same registry has used.
fn unique_repository(real: &Real, purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{}/{purpose}-{nanos:x}", real.project_path)
}

impl Real {
    /// A JWT from the emulator's /jwt/auth, with the job token as CI uses it.
    async fn token(&self, path: &str, actions: &str) -> String {
        let response = self
            .http
            .get(format!("{}/jwt/auth", self.gitlab_url))
            .query(&[
                ("service", "container_registry".to_string()),
                ("scope", format!("repository:{path}:{actions}")),
            ])
            .basic_auth("gitlab-ci-token", Some(&self.job_token))
            .send()
            .await
            .expect("/jwt/auth answers");
        assert_eq!(response.status(), 200, "/jwt/auth refused the job token");
        let body: Value = response.json().await.expect("JSON token");
        let token = body["token"].as_str().expect("a token").to_string();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("JWT payload"))
                .expect("base64url"),
        )
        .expect("JSON claims");
        let granted = claims["access"][0]["actions"].to_string();
        for action in actions.split(',') {
            assert!(granted.contains(action), "{action} not granted: {claims}");
        }
        token
    }

    async fn upload_blob(&self, path: &str, token: &str, content: &[u8]) -> String {
        let digest = sha256(content);
        let start = self
            .http
            .post(format!("{}/v2/{path}/blobs/uploads/", self.registry_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("upload starts");
        assert_eq!(
            start.status(),
            202,
            "starting an upload: {:?}",
            start.text().await
        );
        let location = start
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .expect("upload Location")
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.registry_url)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .bearer_auth(token)
            .header("Content-Type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .expect("upload completes");
        assert_eq!(
            done.status(),
            201,
            "uploading {digest}: {:?}",
            done.text().await
        );
        digest
    }

    /// Pushes a one-layer schema2 image (config unique to `label`) under `tags`
    /// and returns its manifest digest.
    async fn push_image(&self, path: &str, token: &str, label: &str, tags: &[&str]) -> String {
        let layer = format!("layer of {label}\n").into_bytes();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-05-01T10:00:00Z",
            "config": {"Labels": {"test": label}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        })
        .to_string()
        .into_bytes();
        let config_digest = self.upload_blob(path, token, &config).await;
        let layer_digest = self.upload_blob(path, token, &layer).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": layer_digest}],
        })
        .to_string();
        let digest = sha256(manifest.as_bytes());
        for tag in tags {
            let response = self
                .http
                .put(format!("{}/v2/{path}/manifests/{tag}", self.registry_url))
                .bearer_auth(token)
                .header("Content-Type", DOCKER_MANIFEST)
                .body(manifest.clone())
                .send()
                .await
                .expect("manifest PUT answers");
            assert_eq!(
                response.status(),
                201,
                "pushing {tag}: {:?}",
                response.text().await
            );
            let returned = response
                .headers()
                .get("docker-content-digest")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            assert_eq!(returned.as_deref(), Some(digest.as_str()));
        }
        digest
    }

    /// Every tag of the repository with the digest `HEAD` resolves it to
    /// (all four manifest types accepted).
    async fn snapshot(&self, path: &str) -> BTreeMap<String, String> {
        let token = self.token(path, "pull").await;
        let response = self
            .http
            .get(format!("{}/v2/{path}/tags/list", self.registry_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("tags/list answers");
        assert_eq!(response.status(), 200, "tags/list of {path}");
        let body: Value = response.json().await.expect("JSON tag list");
        let mut tags = BTreeMap::new();
        for tag in body["tags"].as_array().cloned().unwrap_or_default() {
            let tag = tag.as_str().expect("tag name").to_string();
            let digest = self
                .head_digest(path, &token, &tag)
                .await
                .unwrap_or_else(|| panic!("{tag} is listed but does not resolve"));
            tags.insert(tag, digest);
        }
        tags
    }

    async fn head_digest(&self, path: &str, token: &str, tag: &str) -> Option<String> {
        let response = self
            .http
            .head(format!("{}/v2/{path}/manifests/{tag}", self.registry_url))
            .bearer_auth(token)
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
            .await
            .expect("manifest HEAD answers");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "HEAD {tag}");
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }

    /// Runs the real binary with registry credentials only.
    fn cleanup(&self, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CI_SERVER_URL", &self.gitlab_url)
            .env("CI_PROJECT_PATH", &self.project_path)
            .env("CI_PROJECT_ID", &self.project_id)
            .env("CI_REGISTRY", &self.registry_host)
            .env(
                "CI_REGISTRY_IMAGE",
                format!("{}/{}", self.registry_host, self.project_path),
            )
            .env("CLEANUP_REGISTRY_URL", &self.registry_url)
            .env("CI_REGISTRY_USER", "gitlab-ci-token")
            .env("CI_REGISTRY_PASSWORD", &self.job_token)
            .output()
            .expect("registry-cleanup runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("$ registry-cleanup {}\n{stdout}{stderr}", args.join(" "));
        assert!(
            !stdout.contains(&self.job_token) && !stderr.contains(&self.job_token),
            "the job token leaked into the output"
        );
        output
    }
}

fn line_for<'a>(stdout: &'a str, tag: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| {
            line.split(|c: char| c.is_whitespace() || c == ':')
                .any(|word| word == tag)
        })
        .unwrap_or_else(|| panic!("no output line names {tag}:\n{stdout}"))
}

#[tokio::test]
#[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
async fn dry_run_changes_nothing() {
    let Some(real) = real_registry().await else {
        return;
    };
    let path = unique_repository(&real, "dry-run");
    let token = real.token(&path, "pull,push").await;
    real.push_image(&path, &token, "shared", &["shared-a", "shared-b"])
        .await;
    real.push_image(&path, &token, "unique", &["unique"]).await;
    let before = real.snapshot(&path).await;
    assert_eq!(before.len(), 3);

    let output = real.cleanup(&[
        "delete",
        "--repository",
        &path,
        "--dry-run",
        "shared-a",
        "unique",
    ]);
    assert_eq!(output.status.code(), Some(0), "dry run exit code");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        line_for(&stdout, "unique").contains("would delete"),
        "{stdout}"
    );
    assert_eq!(
        real.snapshot(&path).await,
        before,
        "a dry run changed the registry"
    );
}

#[tokio::test]
#[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
async fn delete_spares_tags_sharing_the_digest() {
    let Some(real) = real_registry().await else {
        return;
    };
    let name = unique_repository(&real, "delete");
    // Relative to the project, as users pass it.
    let relative = name
        .strip_prefix(&format!("{}/", real.project_path))
        .expect("under the project")
        .to_string();
    let token = real.token(&name, "pull,push").await;
    let shared = real
        .push_image(&name, &token, "shared", &["shared-a", "shared-b"])
        .await;
    let unique = real.push_image(&name, &token, "unique", &["unique"]).await;
    let keeper = real.push_image(&name, &token, "keeper", &["keeper"]).await;
    let before = real.snapshot(&name).await;
    assert_eq!(before["shared-a"], shared);
    assert_eq!(before["shared-b"], shared);
    assert_eq!(before["unique"], unique);

    // This registry cannot delete by tag, which is the point of the test.
    let delete_token = real.token(&name, "pull,delete").await;
    let by_tag = real
        .http
        .delete(format!("{}/v2/{name}/manifests/unique", real.registry_url))
        .bearer_auth(&delete_token)
        .send()
        .await
        .expect("DELETE answers");
    assert_eq!(
        by_tag.status(),
        400,
        "Distribution 2.8 refuses a tag delete"
    );
    let body: Value = by_tag.json().await.expect("JSON error");
    assert_eq!(body["errors"][0]["code"], "DIGEST_INVALID");

    let output = real.cleanup(&[
        "delete",
        "--repository",
        &relative,
        "shared-a",
        "unique",
        "missing-tag",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "exit code; stdout:\n{stdout}"
    );
    assert!(
        line_for(&stdout, "missing-tag").contains("already absent"),
        "{stdout}"
    );
    assert!(line_for(&stdout, "unique").contains("deleted"), "{stdout}");
    assert!(
        line_for(&stdout, "shared-a").contains("deleted"),
        "{stdout}"
    );

    let after = real.snapshot(&name).await;
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["keeper", "shared-b"],
        "exactly shared-a and unique are gone"
    );
    assert_eq!(
        after["shared-b"], shared,
        "shared-b still resolves to the same manifest"
    );
    assert_eq!(after["keeper"], keeper);
    let pull = real.token(&name, "pull").await;
    let response = real
        .http
        .head(format!(
            "{}/v2/{name}/manifests/shared-b",
            real.registry_url
        ))
        .bearer_auth(&pull)
        .header("Accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("HEAD answers");
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|value| value.to_str().ok());
    assert_eq!(
        digest,
        Some(shared.as_str()),
        "shared-b with a Docker-only Accept"
    );
    // The shared manifest itself is still there, by digest.
    assert_eq!(
        real.head_digest(&name, &pull, &shared).await,
        Some(shared.clone())
    );
    assert_eq!(
        real.head_digest(&name, &pull, &unique).await,
        None,
        "unique's manifest was deleted"
    );
}
