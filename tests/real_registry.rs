//! The real binary against a real registry: Docker Distribution 2.8 (no delete by
//! tag; a digest delete removes every tag sharing the manifest) with the
//! gitlab-emulator binary as its token realm. `scripts/real-registry-test.sh`
//! starts both, sets the `REAL_REGISTRY_*` variables and runs these tests,
//! which are `#[ignore]`d otherwise. Run without those variables, they fail
//! when `CI` is set and say they checked nothing elsewhere. With them, a
//! registry that does not answer is a failure.
//!
//! `delete` runs with registry credentials only (no `CI_JOB_TOKEN`, no
//! `GITLAB_TOKEN`), so it must use the registry-only fallbacks: delete a digest
//! only when no other tag shares it, else move the tag onto a throw-away
//! manifest first. `run` needs GitLab's REST API: it gets the job token too,
//! and the emulator answers REST as GitLab in front of a third-party registry
//! (`--upstream-registry`: repositories it issued push tokens for, tags read from
//! this registry, single-tag delete by GitLab's dummy-manifest trick).

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
        self.cleanup_with(args, &[])
    }

    /// Runs the real binary as a CI job: registry credentials, the job token
    /// and the REST API (the emulator in front of this registry).
    fn cleanup_with_api(&self, args: &[&str]) -> Output {
        let api = format!("{}/api/v4", self.gitlab_url);
        self.cleanup_with(
            args,
            &[("CI_JOB_TOKEN", &self.job_token), ("CI_API_V4_URL", &api)],
        )
    }

    fn cleanup_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
            .args(args)
            .env_clear()
            .envs(extra_env.iter().copied())
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

// ------------------------------------------------------------ supply chain
//
// Signed and multi-arch content pushed over plain HTTP (the recipe in
// environment.md), and what the tool promises on a registry that cannot delete by tag: referrer tags follow their
// subject, an index child is never deleted while a kept index lists it.

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What [`Real::push_supply_chain`] pushed.
struct SupplyChain {
    /// `1.0.0` … `1.0.4` (built a day apart, oldest first) → digest.
    images: Vec<(String, String)>,
    /// The index `2.0.0` and its (amd64, arm64) children; amd64 is also `2.0.0-amd64`.
    index: Option<(String, String, String)>,
    /// A `.sig` whose subject no tag points at.
    orphan: String,
}

/// `sha256-<hex>` (referrers tag schema) or `sha256-<hex>.<suffix>` (cosign).
fn referrer_tag(subject: &str, suffix: Option<&str>) -> String {
    let base = subject.replacen(':', "-", 1);
    suffix.map_or(base.clone(), |suffix| format!("{base}.{suffix}"))
}

impl SupplyChain {
    fn digest(&self, tag: &str) -> &str {
        self.images
            .iter()
            .find(|(name, _)| name == tag)
            .map(|(_, digest)| digest.as_str())
            .unwrap_or_else(|| panic!("no image {tag}"))
    }

    /// An image's tag and every referrer tag of it that was pushed.
    fn with_referrers(&self, tag: &str) -> Vec<String> {
        let digest = self.digest(tag);
        let mut tags = vec![tag.to_string(), referrer_tag(digest, Some("sig"))];
        if ["1.0.1", "1.0.3"].contains(&tag) {
            tags.push(referrer_tag(digest, Some("att")));
        }
        if ["1.0.0", "1.0.4"].contains(&tag) {
            tags.push(referrer_tag(digest, None));
        }
        tags
    }
}

/// Tag names of a snapshot, sorted.
fn names(snapshot: &BTreeMap<String, String>) -> Vec<String> {
    snapshot.keys().cloned().collect()
}

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

/// A policy file for `run`, limited to one repository: the registry is shared
/// by every test of this file.
fn policy_file(repository: &str, rule: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".yml")
        .tempfile()
        .expect("a temporary policy file");
    let escaped = regex::escape(repository);
    std::fs::write(
        file.path(),
        format!("rules:\n  - repositories: '{escaped}'\n    {rule}\n"),
    )
    .expect("policy written");
    file
}

impl Real {
    /// `PUT /v2/<path>/manifests/<reference>`; returns the digest, checked
    /// against the body's sha256.
    async fn put_manifest(
        &self,
        path: &str,
        token: &str,
        reference: &str,
        media_type: &str,
        body: &Value,
    ) -> String {
        let body = body.to_string();
        let digest = sha256(body.as_bytes());
        let response = self
            .http
            .put(format!(
                "{}/v2/{path}/manifests/{reference}",
                self.registry_url
            ))
            .bearer_auth(token)
            .header("Content-Type", media_type)
            .body(body)
            .send()
            .await
            .expect("manifest PUT answers");
        assert_eq!(
            response.status(),
            201,
            "pushing {reference} to {path}: {:?}",
            response.text().await
        );
        let returned = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        assert_eq!(returned.as_deref(), Some(digest.as_str()), "{reference}");
        digest
    }

    /// An OCI image for one platform, built at `created`, under `tag` or by
    /// digest only; returns its digest.
    async fn push_oci_image(
        &self,
        path: &str,
        token: &str,
        label: &str,
        platform: (&str, &str),
        created: &str,
        tag: Option<&str>,
    ) -> String {
        let (os, architecture) = platform;
        let layer = format!("layer of {label} {os}/{architecture}\n").into_bytes();
        let config = json!({
            "architecture": architecture,
            "os": os,
            "created": created,
            "config": {"Labels": {"test": label}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        })
        .to_string()
        .into_bytes();
        let config_digest = self.upload_blob(path, token, &config).await;
        let layer_digest = self.upload_blob(path, token, &layer).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
        });
        let digest = sha256(manifest.to_string().as_bytes());
        self.put_manifest(path, token, tag.unwrap_or(&digest), OCI_MANIFEST, &manifest)
            .await
    }

    /// A cosign-style signature (`sig`) or attestation (`att`) of `subject`:
    /// an OCI image manifest, config `{}`, one layer, tagged
    /// `sha256-<hex>.<suffix>`. The subject need not exist.
    async fn push_signature(&self, path: &str, token: &str, subject: &str, suffix: &str) -> String {
        let layer_type = if suffix == "sig" {
            "application/vnd.dev.cosign.simplesigning.v1+json"
        } else {
            "application/vnd.dsse.envelope.v1+json"
        };
        let payload = json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/{path}", self.registry_host)},
                "image": {"docker-manifest-digest": subject},
                "type": format!("cosign container image {suffix}"),
            },
            "optional": null,
        })
        .to_string()
        .into_bytes();
        let config = b"{}".to_vec();
        let config_digest = self.upload_blob(path, token, &config).await;
        let layer_digest = self.upload_blob(path, token, &payload).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{
                "mediaType": layer_type,
                "size": payload.len(),
                "digest": layer_digest,
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ-test"},
            }],
        });
        let tag = referrer_tag(subject, Some(suffix));
        self.put_manifest(path, token, &tag, OCI_MANIFEST, &manifest)
            .await
    }

    /// An OCI 1.1 artifact with `artifactType` and `subject`, pushed by digest,
    /// and the referrers tag schema's index listing it, tagged
    /// `sha256-<hex of subject>`; returns the artifact's digest.
    async fn push_artifact(
        &self,
        path: &str,
        token: &str,
        subject: &str,
        artifact_type: &str,
    ) -> String {
        let (digest, artifact_size) = self
            .push_artifact_manifest(path, token, None, subject, artifact_type)
            .await;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "size": artifact_size, "digest": digest, "artifactType": artifact_type}],
        });
        self.put_manifest(path, token, &referrer_tag(subject, None), OCI_INDEX, &index)
            .await;
        digest
    }

    /// The artifact manifest alone, under `tag` (as `oras push REPO:TAG
    /// --subject …` leaves it) or by digest: (digest, size).
    async fn push_artifact_manifest(
        &self,
        path: &str,
        token: &str,
        tag: Option<&str>,
        subject: &str,
        artifact_type: &str,
    ) -> (String, usize) {
        let subject_size = self
            .http
            .head(format!(
                "{}/v2/{path}/manifests/{subject}",
                self.registry_url
            ))
            .bearer_auth(token)
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
            .await
            .expect("HEAD answers")
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
            .expect("the subject exists");
        let empty = self.upload_blob(path, token, b"{}").await;
        let content = format!("{artifact_type} about {subject}\n").into_bytes();
        let layer = self.upload_blob(path, token, &content).await;
        let artifact = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": empty},
            "layers": [{"mediaType": "application/octet-stream", "size": content.len(), "digest": layer}],
            "subject": {"mediaType": OCI_MANIFEST, "size": subject_size, "digest": subject},
        });
        let artifact_size = artifact.to_string().len();
        let digest = sha256(artifact.to_string().as_bytes());
        self.put_manifest(path, token, tag.unwrap_or(&digest), OCI_MANIFEST, &artifact)
            .await;
        (digest, artifact_size)
    }

    /// A multi-arch OCI index `2.0.0` over linux/amd64 and linux/arm64
    /// children pushed by digest first, the amd64 child also tagged
    /// `2.0.0-amd64`. Children are built 2024-04-01 and -02, before every
    /// 1.0.x image. Returns (index, amd64, arm64).
    async fn push_multiarch(&self, path: &str, token: &str) -> (String, String, String) {
        let amd64 = self
            .push_oci_image(
                path,
                token,
                "2.0.0",
                ("linux", "amd64"),
                "2024-04-01T10:00:00Z",
                None,
            )
            .await;
        let arm64 = self
            .push_oci_image(
                path,
                token,
                "2.0.0",
                ("linux", "arm64"),
                "2024-04-02T10:00:00Z",
                None,
            )
            .await;
        let mut children = Vec::new();
        for (digest, architecture) in [(&amd64, "amd64"), (&arm64, "arm64")] {
            let size = self
                .http
                .head(format!(
                    "{}/v2/{path}/manifests/{digest}",
                    self.registry_url
                ))
                .bearer_auth(token)
                .header("Accept", ALL_MANIFEST_TYPES)
                .send()
                .await
                .expect("HEAD answers")
                .headers()
                .get("content-length")
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                .expect("the child exists");
            children.push(json!({
                "mediaType": OCI_MANIFEST, "size": size, "digest": digest,
                "platform": {"os": "linux", "architecture": architecture},
            }));
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children});
        let index = self
            .put_manifest(path, token, "2.0.0", OCI_INDEX, &index)
            .await;
        // The per-arch tag: the same bytes as the child, under a tag.
        let (_, body) = self.get_manifest(path, token, &amd64).await;
        let body: Value = serde_json::from_slice(&body).expect("JSON child");
        let tagged = self
            .put_manifest(path, token, "2.0.0-amd64", OCI_MANIFEST, &body)
            .await;
        assert_eq!(tagged, amd64, "2.0.0-amd64 is the amd64 child");
        (index, amd64, arm64)
    }

    /// The supply-chain fixture: five images `1.0.0`…`1.0.4` (OCI, built
    /// 2024-05-01…05), each with a cosign `.sig`, `1.0.1` and `1.0.3` with an
    /// `.att`, OCI 1.1 artifacts on `1.0.0` and `1.0.4` (found through the
    /// referrers tag schema), an orphaned `.sig`, and with `multiarch` the
    /// index `2.0.0` (see [`Real::push_multiarch`]).
    async fn push_supply_chain(&self, path: &str, multiarch: bool) -> SupplyChain {
        let token = self.token(path, "pull,push").await;
        let mut images = Vec::new();
        for day in 1..=5 {
            let tag = format!("1.0.{}", day - 1);
            let created = format!("2024-05-0{day}T10:00:00Z");
            let digest = self
                .push_oci_image(path, &token, &tag, ("linux", "amd64"), &created, Some(&tag))
                .await;
            self.push_signature(path, &token, &digest, "sig").await;
            if day == 2 || day == 4 {
                self.push_signature(path, &token, &digest, "att").await;
            }
            if day == 1 || day == 5 {
                self.push_artifact(path, &token, &digest, "application/spdx+json")
                    .await;
            }
            images.push((tag, digest));
        }
        let nobody = sha256(format!("an image nobody has, {path}").as_bytes());
        self.push_signature(path, &token, &nobody, "sig").await;
        let index = match multiarch {
            true => Some(self.push_multiarch(path, &token).await),
            false => None,
        };
        let chain = SupplyChain {
            images,
            index,
            orphan: referrer_tag(&nobody, Some("sig")),
        };
        let mut expected: Vec<String> = chain
            .images
            .iter()
            .flat_map(|(tag, _)| chain.with_referrers(tag))
            .collect();
        expected.push(chain.orphan.clone());
        if multiarch {
            expected.extend(["2.0.0".to_string(), "2.0.0-amd64".to_string()]);
        }
        assert_eq!(
            names(&self.snapshot(path).await),
            sorted(expected),
            "the fixture"
        );
        chain
    }

    async fn get_manifest(&self, path: &str, token: &str, reference: &str) -> (u16, Vec<u8>) {
        let response = self
            .http
            .get(format!(
                "{}/v2/{path}/manifests/{reference}",
                self.registry_url
            ))
            .bearer_auth(token)
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
            .await
            .expect("manifest GET answers");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body").to_vec())
    }

    /// Asserts that `tag` resolves (to `digest` when given) and, when it is an
    /// index, that every child it lists still resolves by digest.
    async fn assert_resolves(&self, path: &str, tag: &str, digest: Option<&str>) {
        let token = self.token(path, "pull").await;
        let resolved = self
            .head_digest(path, &token, tag)
            .await
            .unwrap_or_else(|| panic!("{tag} no longer resolves in {path}"));
        if let Some(digest) = digest {
            assert_eq!(resolved, digest, "{tag} moved");
        }
        let (status, body) = self.get_manifest(path, &token, tag).await;
        assert_eq!(status, 200, "GET {tag}");
        assert_eq!(sha256(&body), resolved, "{tag}'s body hashes to its digest");
        let manifest: Value = serde_json::from_slice(&body).expect("JSON manifest");
        for child in manifest["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let child = child["digest"].as_str().expect("child digest");
            assert_eq!(
                self.head_digest(path, &token, child).await.as_deref(),
                Some(child),
                "{tag} lists {child}, which no longer resolves: the index dangles"
            );
        }
    }
}

/// The supply-chain reproductions: signatures follow their images, keep_n
/// counts images, a kept index keeps its children, a dry run writes nothing.
mod supply_chain {
    use super::*;

    /// The repository relative to the project, as users pass `--repository`.
    fn relative(real: &Real, path: &str) -> String {
        path.strip_prefix(&format!("{}/", real.project_path))
            .expect("under the project")
            .to_string()
    }

    #[tokio::test]
    #[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
    async fn keep_n_keeps_the_newest_signed_images_with_their_signatures() {
        let Some(real) = real_registry().await else {
            return;
        };
        let path = unique_repository(&real, "signed-keep-n");
        let chain = real.push_supply_chain(&path, false).await;
        let policy = policy_file(&path, "delete: '.*'\n    keep_n: 3");

        let output =
            real.cleanup_with_api(&["run", "--policy", &policy.path().display().to_string()]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "exit code; stdout:\n{stdout}stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let mut expected: Vec<String> = ["1.0.2", "1.0.3", "1.0.4"]
            .iter()
            .flat_map(|tag| chain.with_referrers(tag))
            .collect();
        expected.push(chain.orphan.clone());
        let after = real.snapshot(&path).await;
        assert_eq!(
            names(&after),
            sorted(expected),
            "the 3 newest images with their referrers, and the orphan (orphaned_referrers: keep)"
        );
        for tag in ["1.0.2", "1.0.3", "1.0.4"] {
            real.assert_resolves(&path, tag, Some(chain.digest(tag)))
                .await;
        }
    }

    #[tokio::test]
    #[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
    async fn deleted_images_take_their_signatures_and_attestations_along() {
        let Some(real) = real_registry().await else {
            return;
        };
        let path = unique_repository(&real, "signed-regex");
        let chain = real.push_supply_chain(&path, true).await;
        let before = real.snapshot(&path).await;
        let policy = policy_file(&path, "delete: '1\\.0\\.\\d+'\n    keep_n: 3");

        let output =
            real.cleanup_with_api(&["run", "--policy", &policy.path().display().to_string()]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "exit code; stdout:\n{stdout}stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let gone: Vec<String> = ["1.0.0", "1.0.1"]
            .iter()
            .flat_map(|tag| chain.with_referrers(tag))
            .collect();
        let expected: Vec<String> = names(&before)
            .into_iter()
            .filter(|tag| !gone.contains(tag))
            .collect();
        let after = real.snapshot(&path).await;
        assert_eq!(
            names(&after),
            expected,
            "1.0.0 and 1.0.1 went with every referrer tag"
        );
        // No referrer tag is left without its subject, but the orphan from before.
        let token = real.token(&path, "pull").await;
        for tag in after.keys().filter(|tag| tag.starts_with("sha256-")) {
            if *tag == chain.orphan {
                continue;
            }
            let hex = tag
                .trim_start_matches("sha256-")
                .split('.')
                .next()
                .expect("hex");
            let subject = format!("sha256:{hex}");
            assert!(
                real.head_digest(&path, &token, &subject).await.is_some(),
                "{tag} was left behind without its subject"
            );
        }
        let (index, _, _) = chain.index.as_ref().expect("multi-arch");
        real.assert_resolves(&path, "2.0.0", Some(index)).await;
    }

    #[tokio::test]
    #[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
    async fn deleting_a_per_arch_tag_spares_the_child_a_kept_index_lists() {
        let Some(real) = real_registry().await else {
            return;
        };
        let path = unique_repository(&real, "index-child");
        let chain = real.push_supply_chain(&path, true).await;
        let (index, amd64, arm64) = chain.index.clone().expect("multi-arch");
        let before = real.snapshot(&path).await;

        let output = real.cleanup(&[
            "delete",
            "--repository",
            &relative(&real, &path),
            "2.0.0-amd64",
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();

        // Whatever the tool chose, the kept index and both children survive.
        real.assert_resolves(&path, "2.0.0", Some(&index)).await;
        let token = real.token(&path, "pull").await;
        for child in [&amd64, &arm64] {
            assert_eq!(
                real.head_digest(&path, &token, child).await.as_deref(),
                Some(child.as_str()),
                "the child {child} of the kept index 2.0.0 was deleted"
            );
        }
        let after = real.snapshot(&path).await;
        let mut others = before.clone();
        others.remove("2.0.0-amd64");
        match output.status.code() {
            // Refused, with a reason naming the index.
            Some(1) => {
                assert_eq!(after, before, "a refusal changes nothing");
                let line = line_for(&stdout, "2.0.0-amd64");
                assert!(
                line.contains("index") || stderr.contains("index"),
                "the refusal should say the digest is part of an image index:\n{stdout}{stderr}"
            );
            }
            // Moved onto a throw-away manifest and deleted: only the tag is gone.
            Some(0) => {
                assert!(
                    line_for(&stdout, "2.0.0-amd64").contains("deleted"),
                    "{stdout}"
                );
                assert_eq!(after, others, "only 2.0.0-amd64 is gone");
            }
            other => panic!("exit code {other:?}; stdout:\n{stdout}{stderr}"),
        }
    }

    #[tokio::test]
    #[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
    async fn a_supply_chain_dry_run_changes_nothing() {
        let Some(real) = real_registry().await else {
            return;
        };
        let path = unique_repository(&real, "signed-dry-run");
        real.push_supply_chain(&path, true).await;
        let before = real.snapshot(&path).await;
        let policy = policy_file(&path, "delete: '.*'\n    keep_n: 3");

        let output = real.cleanup_with_api(&[
            "run",
            "--dry-run",
            "--policy",
            &policy.path().display().to_string(),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(
            output.status.code(),
            Some(0),
            "exit code; stdout:\n{stdout}stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("would delete"),
            "the dry run should plan deletions:\n{stdout}"
        );
        assert_eq!(
            real.snapshot(&path).await,
            before,
            "a dry run changed the registry"
        );
        real.assert_resolves(&path, "2.0.0", None).await;
    }

    /// Issue 25 (2) on Distribution: an OCI 1.1 artifact tagged by name
    /// (`sbom-1.0.0`) names `1.0.0` as subject in its manifest only. Deleting
    /// `1.0.0` with registry credentials only (digest deletes) must leave the
    /// image's manifest for the kept artifact: moved off, or refused.
    #[tokio::test]
    #[ignore = "needs a real registry: run scripts/real-registry-test.sh"]
    async fn deleting_an_image_spares_it_for_a_tagged_artifact_naming_it() {
        let Some(real) = real_registry().await else {
            return;
        };
        let path = unique_repository(&real, "tagged-artifact");
        let token = real.token(&path, "pull,push").await;
        let image = real
            .push_oci_image(
                &path,
                &token,
                "1.0.0",
                ("linux", "amd64"),
                "2024-05-01T10:00:00Z",
                Some("1.0.0"),
            )
            .await;
        let (sbom, _) = real
            .push_artifact_manifest(
                &path,
                &token,
                Some("sbom-1.0.0"),
                &image,
                "application/spdx+json",
            )
            .await;
        let before = real.snapshot(&path).await;
        assert_eq!(names(&before), ["1.0.0", "sbom-1.0.0"]);

        let output = real.cleanup(&["delete", "--repository", &relative(&real, &path), "1.0.0"]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();

        let pull = real.token(&path, "pull").await;
        assert_eq!(
            real.head_digest(&path, &pull, &image).await.as_deref(),
            Some(image.as_str()),
            "the subject of the kept artifact sbom-1.0.0 was deleted:\n{stdout}"
        );
        real.assert_resolves(&path, "sbom-1.0.0", Some(&sbom)).await;
        match output.status.code() {
            Some(0) => {
                assert!(line_for(&stdout, "1.0.0").contains("deleted"), "{stdout}");
                assert_eq!(names(&real.snapshot(&path).await), ["sbom-1.0.0"]);
            }
            Some(1) => {
                assert!(
                    stdout.contains("sbom-1.0.0 names it as subject"),
                    "{stdout}"
                );
                assert_eq!(
                    real.snapshot(&path).await,
                    before,
                    "a refusal changes nothing"
                );
            }
            other => panic!("exit code {other:?}; stdout:\n{stdout}"),
        }
    }
}

/// The pull ledger fed by this registry's own notifications
/// (`scripts/ledger-test.sh` configures them: `REAL_REGISTRY_NOTIFY_URL`,
/// `REAL_REGISTRY_NOTIFY_TOKEN`). The test runs `ledger serve` on that
/// address itself, once per store (SQLite; PostgreSQL too with
/// `LEDGER_TEST_POSTGRES`), so that it can stop and restart it.
mod ledger {
    use super::*;

    use std::io::{BufRead, BufReader};
    use std::process::{Child, Stdio};

    /// A user agent as Docker's: its pulls count.
    const DOCKER: &str = "docker/27.3.1 go/go1.22.7 os/linux arch/amd64";

    struct Served {
        child: Child,
    }

    impl Served {
        fn start(listen: &str, db: &str, token: &str) -> Served {
            let mut child = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
                .env_clear()
                .env("CLEANUP_LEDGER_TOKEN", token)
                .args(["ledger", "serve", "--listen", listen, "--db", db])
                .stdout(Stdio::piped())
                .spawn()
                .expect("ledger serve starts");
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().expect("stdout"))
                .read_line(&mut line)
                .expect("the address line");
            assert!(line.contains(listen), "{line:?}");
            Served { child }
        }

        /// SIGTERM: stops accepting, finishes what is in flight, exits 0.
        fn stop(mut self) {
            let status = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
            let code = self.child.wait().expect("exits").code();
            assert_eq!(code, Some(0), "ledger serve after SIGTERM");
        }
    }

    impl Drop for Served {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Real {
        /// A pull as a client makes it: `GET` the manifest by tag or digest.
        async fn pull(&self, path: &str, token: &str, reference: &str) {
            let response = self
                .http
                .get(format!(
                    "{}/v2/{path}/manifests/{reference}",
                    self.registry_url
                ))
                .bearer_auth(token)
                .header("Accept", ALL_MANIFEST_TYPES)
                .header("User-Agent", DOCKER)
                .send()
                .await
                .expect("manifest GET answers");
            assert_eq!(response.status(), 200, "pulling {reference}");
        }
    }

    /// The ledger's record of `path` (`GET …/pulls`), once `until` holds,
    /// polling for up to a minute: the registry delivers asynchronously,
    /// and after a restart only after its backoff.
    async fn record_until(
        http: &Client,
        ledger: &str,
        token: &str,
        path: &str,
        until: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            if let Ok(response) = http
                .get(format!("{ledger}/v1/repositories/{path}/pulls"))
                .bearer_auth(token)
                .send()
                .await
            {
                if response.status() == 200 {
                    last = response.json().await.expect("JSON");
                    if until(&last) {
                        return last;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the ledger never showed what was expected; last answer: {last}");
    }

    fn pulled(record: &Value, digest: &str) -> Option<u64> {
        record["pulls"]
            .as_array()?
            .iter()
            .find(|entry| entry["digest"] == digest)
            .and_then(|entry| entry["count"].as_u64())
    }

    #[tokio::test]
    #[ignore = "needs a real registry notifying the ledger: run scripts/ledger-test.sh"]
    async fn ledger_keeps_exactly_the_pulled_images() {
        let Some(real) = real_registry().await else {
            return;
        };
        let (Ok(notify), Ok(token)) = (
            std::env::var("REAL_REGISTRY_NOTIFY_URL"),
            std::env::var("REAL_REGISTRY_NOTIFY_TOKEN"),
        ) else {
            // scripts/real-registry-test.sh alone: the registry notifies
            // nobody. scripts/ledger-test.sh runs this test with both set.
            eprintln!("SKIPPED: the registry has no notification endpoint (scripts/ledger-test.sh sets one)");
            return;
        };
        let ledger = notify.trim_end_matches("/events").to_string();
        let listen = ledger.trim_start_matches("http://").to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut stores = vec![dir.path().join("ledger.db").display().to_string()];
        stores.extend(std::env::var("LEDGER_TEST_POSTGRES").ok());
        for db in stores {
            let store = if db.starts_with("postgres") {
                "PostgreSQL"
            } else {
                "SQLite"
            };
            println!("=== the ledger on {store}");
            scenario(&real, &ledger, &listen, &db, &token).await;
        }
    }

    async fn scenario(real: &Real, ledger: &str, listen: &str, db: &str, token: &str) {
        let served = Served::start(listen, db, token);
        let path = unique_repository(real, "ledger");
        let push = real.token(&path, "pull,push").await;
        let created = "2024-05-01T10:00:00Z";
        let image = |label: &'static str| {
            let (real, path, push) = (real, path.clone(), push.clone());
            async move {
                real.push_oci_image(
                    &path,
                    &push,
                    label,
                    ("linux", "amd64"),
                    created,
                    Some(label),
                )
                .await
            }
        };
        let by_tag = image("by-tag").await;
        let by_digest = image("by-digest").await;
        let after_restart = image("after-restart").await;
        let never = image("never").await;
        // Two multi-arch images: `multi` pulled as Docker does (the index
        // by tag, then its amd64 child by digest), `multi-child` only
        // through its arm64 child, by digest.
        let mut indexes = BTreeMap::new();
        for name in ["multi", "multi-child"] {
            let amd64 = real
                .push_oci_image(&path, &push, name, ("linux", "amd64"), created, None)
                .await;
            let arm64 = real
                .push_oci_image(&path, &push, name, ("linux", "arm64"), created, None)
                .await;
            let index = json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "size": 1, "digest": amd64, "platform": {"os": "linux", "architecture": "amd64"}},
                    {"mediaType": OCI_MANIFEST, "size": 1, "digest": arm64, "platform": {"os": "linux", "architecture": "arm64"}},
                ],
            });
            let digest = real
                .put_manifest(&path, &push, name, OCI_INDEX, &index)
                .await;
            indexes.insert(name, (digest, amd64, arm64));
        }
        let pull = real.token(&path, "pull").await;

        // First batch of pulls.
        real.pull(&path, &pull, "by-tag").await;
        real.pull(&path, &pull, &by_digest).await;
        let (multi, multi_amd64, _) = &indexes["multi"];
        real.pull(&path, &pull, "multi").await;
        real.pull(&path, &pull, multi_amd64).await;
        let (_, _, child_arm64) = &indexes["multi-child"];
        real.pull(&path, &pull, child_arm64).await;
        let first = [&by_tag, &by_digest, multi, multi_amd64, child_arm64];
        let record = record_until(&real.http, ledger, token, &path, |record| {
            first.iter().all(|digest| pulled(record, digest).is_some())
        })
        .await;
        println!("after the first batch: {record}");

        // The ledger goes down; a pull happens meanwhile; it comes back.
        served.stop();
        real.pull(&path, &pull, "after-restart").await;
        let served = Served::start(listen, db, token);
        let record = record_until(&real.http, ledger, token, &path, |record| {
            pulled(record, &after_restart).is_some()
        })
        .await;
        println!("after the restart: {record}");
        for digest in first {
            assert_eq!(
                pulled(&record, digest),
                Some(1),
                "{digest} counted once: {record}"
            );
        }
        assert_eq!(pulled(&record, &never), None, "{record}");

        // Watched for long enough: an event dated 200 days ago, as the
        // registry would have sent it had the ledger run then.
        let long_ago = (chrono::Utc::now() - chrono::Duration::days(200)).to_rfc3339();
        let response = real
            .http
            .post(format!("{ledger}/events"))
            .bearer_auth(token)
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(
                json!({"events": [{
                    "id": format!("{path}-first"),
                    "timestamp": long_ago,
                    "action": "push",
                    "target": {"mediaType": OCI_MANIFEST, "digest": never, "repository": path},
                    "request": {"useragent": DOCKER}
                }]})
                .to_string(),
            )
            .send()
            .await
            .expect("POST /events");
        assert_eq!(response.status(), 200);

        // `inventory --ledger`, then `plan`, offline: only `never` goes.
        let inventory = tempfile::NamedTempFile::new().expect("inventory file");
        let inventory_path = inventory.path().display().to_string();
        let relative = path
            .strip_prefix(&format!("{}/", real.project_path))
            .expect("under the project")
            .to_string();
        let output = real.cleanup_with(
            &[
                "inventory",
                "--repository",
                &relative,
                "--ledger",
                ledger,
                "--output",
                &inventory_path,
            ],
            &[
                ("CI_JOB_TOKEN", &real.job_token),
                ("CI_API_V4_URL", &format!("{}/api/v4", real.gitlab_url)),
                ("CLEANUP_LEDGER_TOKEN", token),
            ],
        );
        assert!(output.status.success(), "inventory --ledger failed");
        let policy = policy_file(&path, "delete: '.*'\n    unpulled_for: 90d");
        let report = tempfile::NamedTempFile::new().expect("report file");
        let report_path = report.path().display().to_string();
        let output = real.cleanup(&[
            "plan",
            "--inventory",
            &inventory_path,
            "--policy",
            &policy.path().display().to_string(),
            "--report",
            &report_path,
        ]);
        assert!(output.status.success(), "plan failed");
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(report.path()).expect("report"))
                .expect("JSON report");
        let repository = &report["repositories"][0];
        let deleted: Vec<&str> = repository["deleted"]
            .as_array()
            .expect("deleted")
            .iter()
            .map(|d| d["tag"].as_str().expect("tag"))
            .collect();
        assert_eq!(deleted, ["never"], "{report}");
        let kept: BTreeMap<&str, &str> = repository["kept_tags"]
            .as_array()
            .expect("kept_tags")
            .iter()
            .map(|k| {
                (
                    k["tag"].as_str().expect("tag"),
                    k["kind"].as_str().expect("kind"),
                )
            })
            .collect();
        let expected: BTreeMap<&str, &str> = [
            "after-restart",
            "by-digest",
            "by-tag",
            "multi",
            "multi-child",
        ]
        .into_iter()
        .map(|tag| (tag, "pulled_recently"))
        .collect();
        assert_eq!(kept, expected, "{report}");
        served.stop();
    }
}

/// Issue 21 on Distribution 2.8: `restore` puts back what a real run
/// deleted, at the same digests. Run last and alone (the script's last
/// phase): its garbage collection stops the registry and sweeps every
/// repository.
///
/// `run` needs GitLab's REST API, and GitLab deletes a tag on a registry
/// that cannot delete by tag by moving it onto a dummy manifest and
/// deleting that by digest: the deleted tag's own manifest stays, untagged,
/// until the garbage collector runs (`--delete-untagged`). That is the undo
/// window here, and what this checks on both sides.
mod undo {
    use super::*;

    /// Three rules: the old releases (with their signatures, attestations
    /// and referrers index, deleted with their subject), the per-arch tag
    /// of the kept index 2.0.0, and every plain build.
    fn policy(repository: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .suffix(".yml")
            .tempfile()
            .expect("a temporary policy file");
        let escaped = regex::escape(repository);
        let rule = |name: &str, delete: &str| {
            format!("  - name: {name}\n    repositories: '{escaped}'\n    delete: '{delete}'\n")
        };
        let text = format!(
            "rules:\n{}{}{}",
            rule("old releases", r"1\.0\.[0-2]"),
            rule("per-arch tags", r"2\.0\.0-amd64"),
            rule("builds", "build-.*"),
        );
        std::fs::write(file.path(), text).expect("policy written");
        file
    }

    /// The script's garbage collection hook; `None` when not set (a
    /// failure under CI).
    fn garbage_collection_hook() -> Option<String> {
        let hook = std::env::var("REAL_REGISTRY_COLLECT_GARBAGE").ok();
        if hook.is_none() {
            common::missing_prerequisite(
                "REAL_REGISTRY_COLLECT_GARBAGE is not set (scripts/real-registry-test.sh sets it for the undo test, run alone)",
            );
        }
        hook
    }

    /// `docker-registry garbage-collect ARGS` through the script's hook,
    /// which stops the registry first and starts it again after; (manifests,
    /// blobs) it deleted, across the whole registry.
    fn collect_garbage(hook: &str, args: &[&str]) -> (usize, usize) {
        let output = Command::new(hook)
            .args(args)
            .output()
            .expect("the garbage collection hook runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        println!(
            "$ garbage-collect {}\n{stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "the garbage collection hook failed"
        );
        let count = |what: &str| -> usize {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(what))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {what:?} count:\n{stdout}"))
        };
        (count("manifests deleted:"), count("blobs deleted:"))
    }

    fn exit_code(output: &Output) -> Option<i32> {
        output.status.code()
    }

    fn stdout(output: &Output) -> String {
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn read_json(path: &std::path::Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("written")).expect("JSON")
    }

    /// A run deletes 21 tags — signatures, attestations and a referrers
    /// index with their images, the per-arch tag of a kept index, plain
    /// builds; one of them is pushed again elsewhere; `restore` puts the 20
    /// others back at their digests, leaves that one as pushed and says so,
    /// and every kept tag is as it was throughout. Then, in another
    /// repository, the garbage collector takes one deleted tag's manifest:
    /// that tag alone fails, "gone: garbage-collected", exit 1.
    #[tokio::test]
    #[ignore = "needs a real registry and its garbage collector: run scripts/real-registry-test.sh"]
    async fn a_run_is_undone_until_the_garbage_collector_runs() {
        let Some(real) = real_registry().await else {
            return;
        };
        let Some(hook) = garbage_collection_hook() else {
            return;
        };
        let path = unique_repository(&real, "undo");
        let chain = real.push_supply_chain(&path, true).await;
        let token = real.token(&path, "pull,push").await;
        real.push_image(&path, &token, "main", &["main"]).await;
        real.push_image(&path, &token, "stable", &["stable"]).await;
        for build in 1..=12 {
            let tag = format!("build-{build:02}");
            real.push_image(&path, &token, &tag, &[&tag]).await;
        }
        let before = real.snapshot(&path).await;

        let mut deleted: Vec<String> = ["1.0.0", "1.0.1", "1.0.2"]
            .iter()
            .flat_map(|tag| chain.with_referrers(tag))
            .collect();
        deleted.push("2.0.0-amd64".to_string());
        deleted.extend((1..=12).map(|build| format!("build-{build:02}")));
        let deleted = sorted(deleted);
        assert_eq!(deleted.len(), 21, "{deleted:?}");
        let kept: BTreeMap<String, String> = before
            .iter()
            .filter(|(tag, _)| !deleted.contains(tag))
            .map(|(tag, digest)| (tag.clone(), digest.clone()))
            .collect();
        assert_eq!(kept.len(), 10, "{kept:?}");

        let dir = tempfile::tempdir().expect("tempdir");
        let report = dir.path().join("r.json");
        let report_arg = report.to_str().expect("path");
        let policy = policy(&path);
        let output = real.cleanup_with_api(&[
            "run",
            "--policy",
            policy.path().to_str().expect("path"),
            "--report",
            report_arg,
        ]);
        assert_eq!(exit_code(&output), Some(0), "{}", stdout(&output));
        let written = read_json(&report);
        assert_eq!(written["totals"]["deleted"], 21, "{}", written["totals"]);
        assert_eq!(
            written["totals"]["referrers_deleted"], 5,
            "{}",
            written["totals"]
        );
        assert_eq!(
            real.snapshot(&path).await,
            kept,
            "the run deleted exactly those 21"
        );
        // The journal beside the report: each deletion announced (once per
        // way tried: the first tag also by tag delete, which 2.8 refuses),
        // then its outcome: each tag's last line says `deleted`.
        let journal = std::fs::read_to_string(format!("{report_arg}.journal")).expect("journal");
        let mut last = BTreeMap::new();
        for line in journal.lines() {
            let entry: Value = serde_json::from_str(line).expect("a JSON line");
            let outcome = entry["outcome"].as_str().expect("outcome").to_string();
            last.insert(entry["tag"].as_str().expect("tag").to_string(), outcome);
        }
        assert_eq!(names(&last), deleted, "the journal's tags");
        assert!(
            last.values().all(|outcome| outcome == "deleted"),
            "{last:?}"
        );

        // Pushed again, as another image, before the restore.
        let again = real
            .push_image(&path, &token, "build-05 again", &["build-05"])
            .await;
        assert_ne!(again, before["build-05"]);

        let restored_json = dir.path().join("restored.json");
        let output = real.cleanup_with_api(&[
            "restore",
            "--report",
            report_arg,
            "--output",
            restored_json.to_str().expect("path"),
        ]);
        let out = stdout(&output);
        assert_eq!(exit_code(&output), Some(0), "{out}");
        assert!(
            out.contains("restore: 21 tags, 20 restored, 1 left alone (pushed again since)\n"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{path}:build-05@{}: left alone: pushed again since, now {again}\n",
                before["build-05"]
            )),
            "{out}"
        );
        let totals = &read_json(&restored_json)["totals"];
        assert_eq!(
            (
                &totals["restored"],
                &totals["left_alone"],
                &totals["failed"]
            ),
            (&json!(20), &json!(1), &json!(0)),
            "{totals}"
        );
        // Every tag at its digest again (HEAD, and the GET's body hashes to
        // it; an index's children resolve), build-05 as pushed.
        let mut expected = before.clone();
        expected.insert("build-05".to_string(), again.clone());
        let restored = real.snapshot(&path).await;
        assert_eq!(restored, expected);
        for (tag, digest) in &restored {
            real.assert_resolves(&path, tag, Some(digest)).await;
        }

        // The garbage collector's turn, in another repository: `rc-1` and
        // `rc-3` name images kept tags name too; `rc-2`'s image is its own.
        let gc_path = unique_repository(&real, "undo-gc");
        let gc_token = real.token(&gc_path, "pull,push").await;
        let shared = real
            .push_image(&gc_path, &gc_token, "stable", &["stable", "rc-1"])
            .await;
        let own = real
            .push_image(&gc_path, &gc_token, "rc-2", &["rc-2"])
            .await;
        let nightly = real
            .push_image(&gc_path, &gc_token, "nightly", &["nightly", "rc-3"])
            .await;
        let gc_report = dir.path().join("gc.json");
        let gc_report_arg = gc_report.to_str().expect("path");
        let gc_policy = policy_file(&gc_path, "delete: 'rc-.*'");
        let output = real.cleanup_with_api(&[
            "run",
            "--policy",
            gc_policy.path().to_str().expect("path"),
            "--report",
            gc_report_arg,
        ]);
        assert_eq!(exit_code(&output), Some(0), "{}", stdout(&output));
        assert_eq!(names(&real.snapshot(&gc_path).await), ["nightly", "stable"]);

        let (manifests, blobs) = collect_garbage(&hook, &["--delete-untagged"]);
        assert!(
            manifests >= 1 && blobs >= 2,
            "rc-2's manifest, config and layer at least"
        );
        let pull = real.token(&gc_path, "pull").await;
        assert_eq!(
            real.head_digest(&gc_path, &pull, &own).await,
            None,
            "collected"
        );

        let output = real.cleanup_with_api(&["restore", "--report", gc_report_arg]);
        let out = stdout(&output);
        assert_eq!(exit_code(&output), Some(1), "{out}");
        assert!(
            out.contains(&format!(
                "{gc_path}:rc-2@{own}: FAILED: gone: garbage-collected"
            )),
            "{out}"
        );
        assert!(
            out.contains("restore: 3 tags, 2 restored, 1 failed\n"),
            "{out}"
        );
        let after = real.snapshot(&gc_path).await;
        let expected: BTreeMap<String, String> = [
            ("nightly", &nightly),
            ("rc-1", &shared),
            ("rc-3", &nightly),
            ("stable", &shared),
        ]
        .into_iter()
        .map(|(tag, digest)| (tag.to_string(), digest.clone()))
        .collect();
        assert_eq!(after, expected);
        // The collection took no tag of the first repository: every one
        // was back. (Distribution 2.8's `--delete-untagged` does take the
        // untagged children of the kept index 2.0.0 — its own known
        // behaviour, whatever deleted or restored — so they are not
        // checked here.)
        assert_eq!(real.snapshot(&path).await, restored);
    }
}
