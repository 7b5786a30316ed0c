//! The emulator's state: repositories, tags, manifests, blobs, and what it has seen.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::jwt::Keys;
use crate::{BulkCall, Config, RecordedRequest, TagSpec};

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub(crate) fn sha256_digest(content: &[u8]) -> String {
    let hash = Sha256::digest(content);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == DOCKER_LIST || media_type == OCI_INDEX
}

/// GitLab's timestamp format (`2024-05-01T10:00:00.000+00:00`).
pub(crate) fn gitlab_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

pub(crate) struct Manifest {
    pub media_type: String,
    pub body: Bytes,
    pub config_digest: Option<String>,
    /// Config plus layers for an image; `None` for an index (GitLab shows null).
    pub total_size: Option<u64>,
    /// Children of an index: (digest, os, architecture).
    pub children: Vec<(String, String, String)>,
    /// The image config's `created`, if any.
    pub created: Option<DateTime<Utc>>,
    /// OCI 1.1: the manifest this one refers to (`subject.digest`).
    pub subject: Option<String>,
    /// OCI 1.1: `artifactType`, else (for an image manifest with a subject)
    /// the config's media type, as the referrers API reports it.
    pub artifact_type: Option<String>,
}

pub(crate) struct TagEntry {
    pub digest: String,
    /// The image config's `created` (the build time): REST `created_at`
    /// without the metadata database.
    pub created_at: Option<DateTime<Utc>>,
    /// When the tag was first pushed (the database row's `created_at`:
    /// `/gitlab/v1` `created_at`, REST `created_at` with the database).
    pub first_pushed_at: DateTime<Utc>,
    /// When the tag was last pushed: `/gitlab/v1` `published_at`
    /// (`updated_at` when later than the first push, else `created_at`).
    pub published_at: DateTime<Utc>,
    pub protected: bool,
    /// Seeded from an inventory with `Config::inventory_now`: its times are
    /// served moved forward by the time since that instant (see
    /// [`State::shown_time`]), so its ages stay what the inventory says.
    pub floating: bool,
}

pub(crate) struct Repository {
    pub id: u64,
    pub path: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// GitLab's `status`: `delete_scheduled`, `delete_ongoing`, or none.
    pub status: Option<String>,
    pub tags: BTreeMap<String, TagEntry>,
    pub manifests: HashMap<String, Manifest>,
    pub blobs: HashMap<String, Bytes>,
}

/// A tag of an inventory file (`registry-cleanup inventory`'s format).
#[derive(Deserialize)]
pub(crate) struct InventoryTag {
    name: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pushed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    children: Vec<String>,
    #[serde(default)]
    size_bytes: Option<u64>,
}

impl InventoryTag {
    fn is_index(&self) -> bool {
        self.media_type
            .as_deref()
            .is_some_and(|media_type| media_type == OCI_INDEX || media_type == DOCKER_LIST)
    }
}

/// The project's git refs, for the branches, tags and merge requests
/// endpoints (names in seeding order does not matter: listed by name / IID).
#[derive(Default)]
pub(crate) struct GitRefs {
    pub branches: std::collections::BTreeSet<String>,
    pub tags: std::collections::BTreeSet<String>,
    pub merge_requests: BTreeMap<u64, MergeRequest>,
}

pub(crate) struct MergeRequest {
    pub source_branch: String,
    /// `opened`, `closed`, `locked` or `merged`.
    pub state: String,
    /// From a fork: `source_project_id` is another project's.
    pub from_fork: bool,
}

pub(crate) struct Upload {
    pub repository_id: u64,
    pub data: Vec<u8>,
}

/// Why a push was refused, as the registry reports it.
#[derive(Debug)]
pub(crate) enum PushError {
    Invalid(String),
    BlobUnknown(String),
    DigestMismatch(String),
    Protected(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Invalid(why) => write!(f, "manifest invalid: {why}"),
            PushError::BlobUnknown(digest) => write!(f, "blob unknown to registry: {digest}"),
            PushError::DigestMismatch(digest) => {
                write!(f, "digest does not match content: {digest}")
            }
            PushError::Protected(tag) => write!(f, "tag {tag} is protected"),
        }
    }
}

pub(crate) struct State {
    pub config: Config,
    pub keys: Keys,
    pub gitlab_url: String,
    pub registry_host: String,
    pub repositories: BTreeMap<u64, Repository>,
    pub git: GitRefs,
    /// Environments, deployments and pipelines, by project.
    pub in_use: crate::in_use::InUseState,
    /// The git refs of `Config::group_projects` seeded from an inventory's
    /// `refs`: their branches, tags and merge requests endpoints answer.
    pub other_git: BTreeMap<u64, GitRefs>,
    pub uploads: HashMap<String, Upload>,
    pub requests: Vec<RecordedRequest>,
    pub bulk_calls: Vec<BulkCall>,
    pub bulk_leases: HashMap<u64, Instant>,
    pub jwts: Vec<String>,
    pub rng: SplitMix64,
    /// Start of the current rate-limit window and requests seen in it.
    pub rate_window: Option<(Instant, DateTime<Utc>, u32)>,
    /// Makes generated manifests unique.
    counter: u64,
}

fn keys_for(config: &Config) -> Result<Keys, String> {
    Keys::from_pem(
        config
            .signing_key_pem
            .as_deref()
            .unwrap_or(crate::DEFAULT_SIGNING_KEY_PEM),
    )
}

impl State {
    pub(crate) fn new(
        config: Config,
        gitlab_url: String,
        registry_host: String,
    ) -> Result<State, String> {
        let keys = keys_for(&config)?;
        let seed = config.faults.as_ref().map_or(0, |faults| faults.seed);
        Ok(State {
            config,
            keys,
            gitlab_url,
            registry_host,
            repositories: BTreeMap::new(),
            git: GitRefs::default(),
            in_use: crate::in_use::InUseState::default(),
            other_git: BTreeMap::new(),
            uploads: HashMap::new(),
            requests: Vec::new(),
            bulk_calls: Vec::new(),
            bulk_leases: HashMap::new(),
            jwts: Vec::new(),
            rng: SplitMix64(seed),
            rate_window: None,
            counter: 0,
        })
    }

    pub(crate) fn replace_config(&mut self, config: Config) -> Result<(), String> {
        let pem = config
            .signing_key_pem
            .as_deref()
            .unwrap_or(crate::DEFAULT_SIGNING_KEY_PEM);
        if pem != self.keys.source_pem {
            self.keys = keys_for(&config)?;
        }
        let old_seed = self.config.faults.as_ref().map(|faults| faults.seed);
        let new_seed = config.faults.as_ref().map(|faults| faults.seed);
        if new_seed != old_seed {
            self.rng = SplitMix64(new_seed.unwrap_or(0));
        }
        if config.rate_limit.is_none() {
            self.rate_window = None;
        }
        self.config = config;
        Ok(())
    }

    /// The project (id, full path) a full repository path belongs to: the
    /// configured project or one of the group's (`Config::group_projects`),
    /// the longest path that is the repository's or a parent of it.
    pub(crate) fn project_of(&self, path: &str) -> Option<(u64, String)> {
        std::iter::once((self.config.project_id, self.config.project_path.clone()))
            .chain(self.config.group_projects.iter().cloned())
            .filter(|(_, project)| path == project || path.starts_with(&format!("{project}/")))
            .max_by_key(|(_, project)| project.len())
    }

    /// Whether a full path belongs to the configured project or (when
    /// `any_project`) to any project of the group.
    pub(crate) fn in_known_project(&self, path: &str, any_project: bool) -> bool {
        if !any_project || self.config.group_projects.is_empty() {
            return self.in_project(path);
        }
        !path.ends_with('/')
            && !path.contains("//")
            && self
                .project_of(path)
                .is_some_and(|(id, _)| id == self.config.project_id || self.in_group_project(id))
    }

    fn in_group_project(&self, id: u64) -> bool {
        self.config
            .group_projects
            .iter()
            .any(|(known, _)| *known == id)
    }

    /// A full repository path from a full path or a name relative to the project.
    pub(crate) fn full_path(&self, name: &str) -> String {
        let project = &self.config.project_path;
        let name = name.trim_matches('/');
        if self
            .project_of(name)
            .is_some_and(|(id, _)| id != self.config.project_id)
        {
            return name.to_string();
        }
        if name.is_empty() || name == "." {
            project.clone()
        } else if name == project || name.starts_with(&format!("{project}/")) {
            name.to_string()
        } else {
            format!("{project}/{name}")
        }
    }

    /// Whether a full path belongs to the configured project.
    pub(crate) fn in_project(&self, path: &str) -> bool {
        let project = &self.config.project_path;
        path == project
            || (path.starts_with(&format!("{project}/"))
                && !path.ends_with('/')
                && !path.contains("//"))
    }

    pub(crate) fn repository_by_path(&self, path: &str) -> Option<&Repository> {
        self.repositories
            .values()
            .find(|repository| repository.path == path)
    }

    pub(crate) fn repository_id(&self, path: &str) -> Option<u64> {
        self.repository_by_path(path)
            .map(|repository| repository.id)
    }

    pub(crate) fn repository_mut(&mut self, id: u64) -> Option<&mut Repository> {
        self.repositories.get_mut(&id)
    }

    /// The repository with this full path, created if needed (with `wanted_id`
    /// when that id is free).
    pub(crate) fn ensure_repository(&mut self, path: &str, wanted_id: Option<u64>) -> u64 {
        if let Some(id) = self.repository_id(path) {
            return id;
        }
        let id = match wanted_id {
            Some(id) if !self.repositories.contains_key(&id) => id,
            _ => self
                .repositories
                .keys()
                .next_back()
                .map_or(1, |last| last + 1),
        };
        let project = self
            .project_of(path)
            .map_or_else(|| self.config.project_path.clone(), |(_, project)| project);
        let name = path
            .strip_prefix(project.as_str())
            .map(|rest| rest.trim_start_matches('/'))
            .unwrap_or(path)
            .to_string();
        self.repositories.insert(
            id,
            Repository {
                id,
                path: path.to_string(),
                name,
                created_at: Utc::now(),
                status: None,
                tags: BTreeMap::new(),
                manifests: HashMap::new(),
                blobs: HashMap::new(),
            },
        );
        id
    }

    pub(crate) fn put_blob(&mut self, repository_id: u64, content: Bytes) -> String {
        let digest = sha256_digest(&content);
        if let Some(repository) = self.repository_mut(repository_id) {
            repository.blobs.insert(digest.clone(), content);
        }
        digest
    }

    fn next_unique(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Builds and stores an image manifest (config + one layer) and returns its
    /// real digest.
    fn generate_image(
        &mut self,
        repository_id: u64,
        label: &str,
        created: Option<DateTime<Utc>>,
        oci: bool,
    ) -> String {
        let unique = self.next_unique();
        let layer = Bytes::from(format!("emulated layer of {label} #{unique}\n").into_bytes());
        let layer_digest = self.put_blob(repository_id, layer.clone());
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"emulator.image": format!("{label} #{unique}")}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        if let Some(created) = created {
            config["created"] = json!(created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        let config = Bytes::from(config.to_string().into_bytes());
        let config_digest = self.put_blob(repository_id, config.clone());
        let (media_type, config_type, layer_type) = if oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        };
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": layer.len(), "digest": layer_digest}],
        })
        .to_string();
        let body = Bytes::from(body.into_bytes());
        let digest = sha256_digest(&body);
        let manifest = Manifest {
            media_type: media_type.to_string(),
            body,
            config_digest: Some(config_digest),
            total_size: Some((config.len() + layer.len()) as u64),
            children: vec![],
            created,
            subject: None,
            artifact_type: None,
        };
        if let Some(repository) = self.repository_mut(repository_id) {
            repository.manifests.insert(digest.clone(), manifest);
        }
        digest
    }

    /// A dated tag becomes a Docker schema2 image; an undated one an OCI index
    /// over one OCI image (GitLab shows indexes without date or size). Returns
    /// the body and media type; the caller chooses the digest it is stored under.
    fn generate_tag_manifest(
        &mut self,
        repository_id: u64,
        label: &str,
        created: Option<DateTime<Utc>>,
    ) -> Manifest {
        if created.is_some() {
            let digest = self.generate_image(repository_id, label, created, false);
            let repository = self
                .repository_mut(repository_id)
                .expect("repository exists");
            let image = repository.manifests.get(&digest).expect("just stored");
            return Manifest {
                media_type: image.media_type.clone(),
                body: image.body.clone(),
                config_digest: image.config_digest.clone(),
                total_size: image.total_size,
                children: vec![],
                created: image.created,
                subject: None,
                artifact_type: None,
            };
        }
        let child = self.generate_image(repository_id, label, None, true);
        let child_size = self
            .repositories
            .get(&repository_id)
            .and_then(|repository| repository.manifests.get(&child))
            .map_or(0, |manifest| manifest.body.len());
        let body = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "size": child_size,
                "digest": child,
                "platform": {"architecture": "amd64", "os": "linux"},
            }],
        })
        .to_string();
        Manifest {
            media_type: OCI_INDEX.to_string(),
            body: Bytes::from(body.into_bytes()),
            config_digest: None,
            total_size: None,
            children: vec![(child, "linux".to_string(), "amd64".to_string())],
            created: None,
            subject: None,
            artifact_type: None,
        }
    }

    pub(crate) fn seed_tag(&mut self, repository_id: u64, tag: TagSpec) {
        let path = self
            .repositories
            .get(&repository_id)
            .map(|repository| repository.path.clone())
            .unwrap_or_default();
        let existing_shared = tag.digest.as_ref().is_some_and(|digest| {
            self.repositories
                .get(&repository_id)
                .is_some_and(|repository| repository.manifests.contains_key(digest))
        });
        let digest = if existing_shared {
            tag.digest.clone().unwrap_or_default()
        } else {
            let manifest = self.generate_tag_manifest(
                repository_id,
                &format!("{path}:{}", tag.name),
                tag.created_at,
            );
            let digest = tag
                .digest
                .clone()
                .unwrap_or_else(|| sha256_digest(&manifest.body));
            if let Some(repository) = self.repository_mut(repository_id) {
                repository.manifests.insert(digest.clone(), manifest);
            }
            digest
        };
        // Without an explicit push time, a seeded tag was pushed when it was
        // built (or now, if undated).
        let published_at = tag.pushed_at.or(tag.created_at).unwrap_or_else(Utc::now);
        if let Some(repository) = self.repository_mut(repository_id) {
            repository.tags.insert(
                tag.name,
                TagEntry {
                    digest,
                    created_at: tag.created_at,
                    first_pushed_at: published_at,
                    published_at,
                    protected: tag.protected,
                    floating: false,
                },
            );
        }
    }

    /// Seeds an inventory file (`registry-cleanup inventory`'s format) as
    /// the registry would hold it: each tag's digest, dates, size, media
    /// type and an image index's children (made as images where no tag
    /// names them); repositories of other projects (`project_id`) become
    /// projects of the group, each at the common path of its repositories;
    /// `refs` become the projects' branches and open merge requests.
    pub(crate) fn load_inventory(&mut self, json: &str) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Inventory {
            repositories: Vec<InventoryRepository>,
            #[serde(default)]
            refs: BTreeMap<String, InventoryRefs>,
        }
        #[derive(Deserialize)]
        struct InventoryRepository {
            path: String,
            #[serde(default)]
            id: Option<u64>,
            #[serde(default)]
            project_id: Option<u64>,
            #[serde(default)]
            tags: Vec<InventoryTag>,
        }
        #[derive(Deserialize)]
        struct InventoryRefs {
            #[serde(default)]
            slugs: Vec<String>,
            #[serde(default)]
            open_mrs: Vec<u64>,
        }
        let inventory: Inventory =
            serde_json::from_str(json).map_err(|err| format!("inventory is not valid: {err}"))?;
        self.add_inventory_projects(
            &inventory
                .repositories
                .iter()
                .map(|r| (r.path.as_str(), r.project_id))
                .collect::<Vec<_>>(),
        )?;
        for repository in &inventory.repositories {
            if !self.in_known_project(&repository.path, true) {
                return Err(format!(
                    "repository {:?} is not under the project {:?}",
                    repository.path, self.config.project_path
                ));
            }
        }
        for (project, refs) in inventory.refs {
            let project: u64 = project
                .parse()
                .map_err(|_| format!("refs: {project:?} is not a project id"))?;
            let git = if project == self.config.project_id {
                &mut self.git
            } else {
                self.other_git.entry(project).or_default()
            };
            git.branches.extend(refs.slugs);
            for iid in refs.open_mrs {
                git.merge_requests.insert(
                    iid,
                    MergeRequest {
                        source_branch: format!("mr-{iid}-source"),
                        state: "opened".to_string(),
                        from_fork: false,
                    },
                );
            }
        }
        for repository in inventory.repositories {
            // GitLab marks no single tag protected: a protected tag is one a
            // tag rule protects, which registry tokens carry (`meta`), so
            // the tool plans it protected, as `plan` does from the inventory.
            // (The emulator's rules hold for every project of the group.)
            for tag in repository.tags.iter().filter(|tag| tag.protected) {
                let rule = format!("^{}$", regex::escape(&tag.name));
                if !self.config.tag_rules.delete_deny.contains(&rule) {
                    self.config.tag_rules.delete_deny.push(rule);
                }
            }
            let id = self.ensure_repository(&repository.path, repository.id);
            // Images first: an index lists them, and its children that no
            // tag names are made then.
            let (indexes, images): (Vec<InventoryTag>, Vec<InventoryTag>) = repository
                .tags
                .into_iter()
                .partition(InventoryTag::is_index);
            for tag in images.into_iter().chain(indexes) {
                self.seed_inventory_tag(id, tag);
            }
        }
        Ok(())
    }

    /// Makes the projects an inventory's repositories name (`project_id`)
    /// that the emulator does not know: projects of the group at the common
    /// path of their repositories.
    fn add_inventory_projects(
        &mut self,
        repositories: &[(&str, Option<u64>)],
    ) -> Result<(), String> {
        let mut paths: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (path, project) in repositories {
            if let Some(project) = project {
                paths.entry(*project).or_default().push(path);
            }
        }
        for (project, paths) in paths {
            let known = project == self.config.project_id
                || self
                    .config
                    .group_projects
                    .iter()
                    .any(|(id, _)| *id == project);
            if known {
                continue;
            }
            let mut common: Vec<&str> = paths[0].split('/').collect();
            for path in &paths[1..] {
                let shared = common
                    .iter()
                    .zip(path.split('/'))
                    .take_while(|(a, b)| *a == b)
                    .count();
                common.truncate(shared);
            }
            let project_path = common.join("/");
            let group = self
                .config
                .project_path
                .rsplit_once('/')
                .map_or("", |(group, _)| group)
                .to_string();
            if common.len() < 2 || !project_path.starts_with(&format!("{group}/")) {
                return Err(format!(
                    "project {project} ({}) is not a project of the group {group:?}",
                    paths.join(", ")
                ));
            }
            self.config.group_projects.push((project, project_path));
        }
        Ok(())
    }

    /// One inventory tag, as [`State::seed_tag`] does plus what the
    /// inventory says of its manifest: an index's children, a media type,
    /// a size.
    fn seed_inventory_tag(&mut self, repository_id: u64, tag: InventoryTag) {
        let path = self
            .repositories
            .get(&repository_id)
            .map(|repository| repository.path.clone())
            .unwrap_or_default();
        let label = format!("{path}:{}", tag.name);
        let existing_shared = tag.digest.as_ref().is_some_and(|digest| {
            self.repositories
                .get(&repository_id)
                .is_some_and(|repository| repository.manifests.contains_key(digest))
        });
        let digest = if existing_shared {
            tag.digest.clone().unwrap_or_default()
        } else {
            let mut manifest = if tag.is_index() {
                self.index_of(repository_id, &label, &tag)
            } else if let Some(media_type) = tag.media_type.as_deref() {
                let oci = media_type != DOCKER_MANIFEST;
                let digest = self.generate_image(repository_id, &label, tag.created_at, oci);
                self.copy_manifest(repository_id, &digest)
            } else {
                self.generate_tag_manifest(repository_id, &label, tag.created_at)
            };
            if tag.size_bytes.is_some() {
                manifest.total_size = tag.size_bytes;
            }
            let digest = tag
                .digest
                .clone()
                .unwrap_or_else(|| sha256_digest(&manifest.body));
            if let Some(repository) = self.repository_mut(repository_id) {
                repository.manifests.insert(digest.clone(), manifest);
            }
            digest
        };
        // As seed_tag: pushed when built, or (undated) now — the inventory's
        // now, when its dates float.
        let floating = self.config.inventory_now;
        let published_at = tag
            .pushed_at
            .or(tag.created_at)
            .or(floating)
            .unwrap_or_else(Utc::now);
        if let Some(repository) = self.repository_mut(repository_id) {
            repository.tags.insert(
                tag.name,
                TagEntry {
                    digest,
                    created_at: tag.created_at,
                    first_pushed_at: published_at,
                    published_at,
                    protected: tag.protected,
                    floating: floating.is_some(),
                },
            );
        }
    }

    /// A copy of a stored manifest.
    fn copy_manifest(&self, repository_id: u64, digest: &str) -> Manifest {
        let image = self
            .repositories
            .get(&repository_id)
            .and_then(|repository| repository.manifests.get(digest))
            .expect("just stored");
        Manifest {
            media_type: image.media_type.clone(),
            body: image.body.clone(),
            config_digest: image.config_digest.clone(),
            total_size: image.total_size,
            children: image.children.clone(),
            created: image.created,
            subject: None,
            artifact_type: None,
        }
    }

    /// An image index listing the inventory tag's children, each made as an
    /// image (under that digest) where the repository does not hold it.
    fn index_of(&mut self, repository_id: u64, label: &str, tag: &InventoryTag) -> Manifest {
        const ARCHITECTURES: [&str; 4] = ["amd64", "arm64", "s390x", "ppc64le"];
        let mut children = Vec::new();
        let mut entries = Vec::new();
        for (n, child) in tag.children.iter().enumerate() {
            let architecture = ARCHITECTURES[n % ARCHITECTURES.len()];
            let held = self
                .repositories
                .get(&repository_id)
                .and_then(|repository| repository.manifests.get(child))
                .map(|manifest| (manifest.media_type.clone(), manifest.body.len()));
            let (media_type, size) = match held {
                Some(held) => held,
                None => {
                    let made = self.generate_image(
                        repository_id,
                        &format!("{label} ({architecture})"),
                        tag.created_at,
                        true,
                    );
                    let manifest = self.copy_manifest(repository_id, &made);
                    let held = (manifest.media_type.clone(), manifest.body.len());
                    if let Some(repository) = self.repository_mut(repository_id) {
                        repository.manifests.insert(child.clone(), manifest);
                    }
                    held
                }
            };
            entries.push(json!({
                "mediaType": media_type,
                "size": size,
                "digest": child,
                "platform": {"architecture": architecture, "os": "linux"},
            }));
            children.push((child.clone(), "linux".to_string(), architecture.to_string()));
        }
        let media_type = tag
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_INDEX.to_string());
        let body =
            json!({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).to_string();
        Manifest {
            media_type,
            body: Bytes::from(body.into_bytes()),
            config_digest: None,
            total_size: None,
            children,
            created: None,
            subject: None,
            artifact_type: None,
        }
    }

    /// A time as the API shows it: a floating tag's moved forward by the
    /// time since `Config::inventory_now`, so that it is as old now as the
    /// inventory says it was then.
    pub(crate) fn shown_time(&self, tag: &TagEntry, at: &DateTime<Utc>) -> DateTime<Utc> {
        match self.config.inventory_now {
            Some(anchor) if tag.floating => *at + (Utc::now() - anchor),
            _ => *at,
        }
    }

    /// Stores a pushed manifest under a tag or a digest, as the registry's
    /// `PUT /v2/<p>/manifests/<reference>` does. `content_type` wins over the
    /// body's `mediaType`.
    pub(crate) fn push_manifest(
        &mut self,
        repository_id: u64,
        reference: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<String, PushError> {
        let repository = self
            .repositories
            .get(&repository_id)
            .ok_or_else(|| PushError::Invalid("no such repository".to_string()))?;
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|err| PushError::Invalid(format!("not JSON: {err}")))?;
        let body_type = parsed.get("mediaType").and_then(|value| value.as_str());
        let media_type = content_type
            .map(|value| value.split(';').next().unwrap_or("").trim())
            .filter(|value| [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].contains(value))
            .or(body_type)
            .filter(|value| [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].contains(value))
            .ok_or_else(|| PushError::Invalid("unsupported or missing media type".to_string()))?
            .to_string();
        let digest = sha256_digest(&body);
        if reference.contains(':') && reference != digest {
            return Err(PushError::DigestMismatch(reference.to_string()));
        }
        if let Some(tag) = repository.tags.get(reference) {
            if tag.protected {
                return Err(PushError::Protected(reference.to_string()));
            }
        }
        let descriptor_digest = |value: &serde_json::Value| -> Result<String, PushError> {
            value
                .get("digest")
                .and_then(|digest| digest.as_str())
                .map(str::to_string)
                .ok_or_else(|| PushError::Invalid("descriptor without digest".to_string()))
        };
        let subject = match parsed.get("subject") {
            None | Some(serde_json::Value::Null) => None,
            Some(subject) => Some(descriptor_digest(subject)?),
        };
        // GitLab's registry (metadata database) takes a manifest with a subject
        // only when the subject exists; Distribution does not look at it.
        if let Some(subject) = &subject {
            if self.config.gitlab_v1 && !repository.manifests.contains_key(subject) {
                return Err(PushError::Invalid(format!("subject {subject} unknown")));
            }
        }
        let declared_artifact_type = parsed
            .get("artifactType")
            .and_then(|value| value.as_str())
            .map(str::to_string);
        let mut manifest = if is_index(&media_type) {
            let mut children = Vec::new();
            for child in parsed
                .get("manifests")
                .and_then(|value| value.as_array())
                .ok_or_else(|| PushError::Invalid("index without manifests".to_string()))?
            {
                let child_digest = descriptor_digest(child)?;
                if !repository.manifests.contains_key(&child_digest) {
                    return Err(PushError::BlobUnknown(child_digest));
                }
                let platform = child.get("platform");
                let field = |name: &str| {
                    platform
                        .and_then(|platform| platform.get(name))
                        .and_then(|value| value.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                children.push((child_digest, field("os"), field("architecture")));
            }
            Manifest {
                media_type,
                body: body.clone(),
                config_digest: None,
                total_size: None,
                children,
                created: None,
                subject: None,
                artifact_type: declared_artifact_type,
            }
        } else {
            let config = parsed
                .get("config")
                .ok_or_else(|| PushError::Invalid("image manifest without config".to_string()))?;
            let config_digest = descriptor_digest(config)?;
            let config_type = config
                .get("mediaType")
                .and_then(|value| value.as_str())
                .map(str::to_string);
            let config_blob = repository
                .blobs
                .get(&config_digest)
                .ok_or_else(|| PushError::BlobUnknown(config_digest.clone()))?;
            let mut total = config_blob.len() as u64;
            for layer in parsed
                .get("layers")
                .and_then(|value| value.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let layer_digest = descriptor_digest(layer)?;
                let blob = repository
                    .blobs
                    .get(&layer_digest)
                    .ok_or(PushError::BlobUnknown(layer_digest))?;
                total += blob.len() as u64;
            }
            let created = serde_json::from_slice::<serde_json::Value>(config_blob)
                .ok()
                .and_then(|config| {
                    config
                        .get("created")
                        .and_then(|c| c.as_str())
                        .map(str::to_string)
                })
                .and_then(|created| DateTime::parse_from_rfc3339(&created).ok())
                .map(|created| created.with_timezone(&Utc));
            Manifest {
                media_type,
                body: body.clone(),
                config_digest: Some(config_digest),
                total_size: Some(total),
                children: vec![],
                created,
                subject: None,
                artifact_type: declared_artifact_type.or(config_type),
            }
        };
        manifest.subject = subject;
        let created = manifest.created;
        let repository = self.repository_mut(repository_id).expect("checked above");
        repository.manifests.insert(digest.clone(), manifest);
        if !reference.contains(':') {
            let existing = repository.tags.get(reference);
            let protected = existing.is_some_and(|tag| tag.protected);
            let now = Utc::now();
            // A re-push keeps the tag's first push (its database row) and
            // updates it: `/gitlab/v1` `updated_at`.
            let first_pushed_at = existing.map_or(now, |tag| tag.first_pushed_at);
            repository.tags.insert(
                reference.to_string(),
                TagEntry {
                    digest: digest.clone(),
                    created_at: created,
                    first_pushed_at,
                    published_at: now,
                    protected,
                    floating: false,
                },
            );
        }
        Ok(digest)
    }
}

/// cosign's signature layer.
pub(crate) const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// cosign's attestation layer (an in-toto statement in a DSSE envelope).
pub(crate) const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// OCI 1.1's empty descriptor type (`{}`), the config of artifacts.
pub(crate) const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// `sha256-<hex>` (the referrers tag schema) or `sha256-<hex>.<suffix>` (cosign).
pub(crate) fn referrer_tag(subject: &str, suffix: Option<&str>) -> String {
    let base = subject.replacen(':', "-", 1);
    match suffix {
        Some(suffix) => format!("{base}.{suffix}"),
        None => base,
    }
}

/// Seeding through the same path a registry push takes, so every body is real
/// JSON that hashes to its digest. Errors are the push's own.
impl State {
    fn push_value(
        &mut self,
        repository_id: u64,
        reference: &str,
        media_type: &str,
        value: &serde_json::Value,
    ) -> Result<String, PushError> {
        let body = Bytes::from(value.to_string().into_bytes());
        let digest = sha256_digest(&body);
        let reference = if reference.is_empty() {
            digest.as_str()
        } else {
            reference
        };
        self.push_manifest(repository_id, reference, Some(media_type), body)
    }

    fn descriptor(&self, repository_id: u64, digest: &str) -> Result<serde_json::Value, PushError> {
        let manifest = self
            .repositories
            .get(&repository_id)
            .and_then(|repository| repository.manifests.get(digest))
            .ok_or_else(|| PushError::BlobUnknown(digest.to_string()))?;
        Ok(json!({
            "mediaType": manifest.media_type,
            "size": manifest.body.len(),
            "digest": digest,
        }))
    }

    /// An image (config + one layer, unique), pushed by digest and, when
    /// `tag` is given, under that tag. `oci`: OCI media types, else Docker's.
    pub(crate) fn seed_image(
        &mut self,
        repository_id: u64,
        tag: Option<&str>,
        platform: (&str, &str),
        created: Option<DateTime<Utc>>,
        oci: bool,
    ) -> Result<String, PushError> {
        let unique = self.next_unique();
        let (os, architecture) = platform;
        let layer = Bytes::from(format!("emulated layer #{unique} {os}/{architecture}\n"));
        let layer_digest = self.put_blob(repository_id, layer.clone());
        let mut config = json!({
            "architecture": architecture,
            "os": os,
            "config": {"Labels": {"emulator.image": format!("#{unique}")}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        if let Some(created) = created {
            config["created"] = json!(created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        let config = Bytes::from(config.to_string().into_bytes());
        let config_digest = self.put_blob(repository_id, config.clone());
        let (media_type, config_type, layer_type) = if oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": layer.len(), "digest": layer_digest}],
        });
        self.push_value(repository_id, tag.unwrap_or(""), media_type, &manifest)
    }

    /// An index (`OCI_INDEX` or `DOCKER_LIST`) over manifests already in the
    /// repository; each child's platform is read from its config blob.
    pub(crate) fn seed_index(
        &mut self,
        repository_id: u64,
        tag: Option<&str>,
        media_type: &str,
        children: &[&str],
    ) -> Result<String, PushError> {
        let mut descriptors = Vec::new();
        for child in children {
            let mut descriptor = self.descriptor(repository_id, child)?;
            let repository = &self.repositories[&repository_id];
            let config = repository.manifests[*child]
                .config_digest
                .as_ref()
                .and_then(|digest| repository.blobs.get(digest))
                .and_then(|blob| serde_json::from_slice::<serde_json::Value>(blob).ok());
            if let Some(config) = config {
                descriptor["platform"] = json!({
                    "architecture": config.get("architecture").cloned().unwrap_or(json!("")),
                    "os": config.get("os").cloned().unwrap_or(json!("")),
                });
            }
            descriptors.push(descriptor);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": descriptors,
        });
        self.push_value(repository_id, tag.unwrap_or(""), media_type, &index)
    }

    /// Points `tag` at a manifest already in the repository, as a client
    /// re-pushing the same bytes under another tag does.
    pub(crate) fn seed_tag_on(
        &mut self,
        repository_id: u64,
        tag: &str,
        digest: &str,
    ) -> Result<String, PushError> {
        let manifest = self
            .repositories
            .get(&repository_id)
            .and_then(|repository| repository.manifests.get(digest))
            .ok_or_else(|| PushError::BlobUnknown(digest.to_string()))?;
        let (media_type, body) = (manifest.media_type.clone(), manifest.body.clone());
        self.push_manifest(repository_id, tag, Some(&media_type), body)
    }

    /// A cosign signature (`suffix` "sig") or attestation ("att", or any
    /// other suffix such as "sbom"): an OCI image manifest, config `{}`, one
    /// layer, tagged `sha256-<hex of subject>.<suffix>`. The subject need not
    /// exist (cosign tags are plain tags): that is how orphans are made.
    pub(crate) fn seed_signature(
        &mut self,
        repository_id: u64,
        subject: &str,
        suffix: &str,
    ) -> Result<String, PushError> {
        let unique = self.next_unique();
        let path = self
            .repositories
            .get(&repository_id)
            .map(|repository| repository.path.clone())
            .unwrap_or_default();
        let (layer_type, payload, annotations) = if suffix == "sig" {
            (
                COSIGN_SIMPLESIGNING,
                json!({
                    "critical": {
                        "identity": {"docker-reference": format!("{}/{path}", self.registry_host)},
                        "image": {"docker-manifest-digest": subject},
                        "type": "cosign container image signature",
                    },
                    "optional": {"emulator": unique},
                }),
                json!({"dev.cosignproject.cosign/signature": format!("MEUCIQ-emulated-{unique}")}),
            )
        } else {
            (
                DSSE_ENVELOPE,
                json!({
                    "payloadType": "application/vnd.in-toto+json",
                    "payload": format!("emulated in-toto statement #{unique} about {subject}"),
                    "signatures": [],
                }),
                json!({"predicateType": "https://slsa.dev/provenance/v1"}),
            )
        };
        let layer = Bytes::from(payload.to_string().into_bytes());
        let layer_digest = self.put_blob(repository_id, layer.clone());
        let config = Bytes::from_static(b"{}");
        let config_digest = self.put_blob(repository_id, config.clone());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": [{
                "mediaType": layer_type,
                "size": layer.len(),
                "digest": layer_digest,
                "annotations": annotations,
            }],
        });
        let tag = referrer_tag(subject, Some(suffix));
        self.push_value(repository_id, &tag, OCI_MANIFEST, &manifest)
    }

    /// An OCI 1.1 artifact (`artifactType`, `subject`, config the empty
    /// descriptor), pushed by digest, then listed in the referrers tag
    /// schema's index tagged `sha256-<hex of subject>` (created or re-pushed
    /// with it added; the index it replaces is removed, as ORAS does).
    /// An OCI 1.1 artifact manifest of `artifact_type` whose `subject` is
    /// `subject`, pushed under `tag` (`""`: by digest only), and nothing
    /// else: no referrers-schema index, so only its manifest names the subject.
    pub(crate) fn seed_artifact_manifest(
        &mut self,
        repository_id: u64,
        tag: &str,
        subject: &str,
        artifact_type: &str,
    ) -> Result<String, PushError> {
        let unique = self.next_unique();
        let subject_descriptor = self.descriptor(repository_id, subject).or_else(|err| {
            if self.config.gitlab_v1 {
                Err(err)
            } else {
                // Distribution takes any subject; describe it as an image.
                Ok(json!({"mediaType": OCI_MANIFEST, "size": 0, "digest": subject}))
            }
        })?;
        let layer = Bytes::from(format!("emulated {artifact_type} #{unique}\n").into_bytes());
        let layer_digest = self.put_blob(repository_id, layer.clone());
        let empty = Bytes::from_static(b"{}");
        let empty_digest = self.put_blob(repository_id, empty.clone());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": empty_digest},
            "layers": [{"mediaType": "application/octet-stream", "size": layer.len(), "digest": layer_digest}],
            "subject": subject_descriptor,
        });
        self.push_value(repository_id, tag, OCI_MANIFEST, &manifest)
    }

    pub(crate) fn seed_artifact(
        &mut self,
        repository_id: u64,
        subject: &str,
        artifact_type: &str,
    ) -> Result<String, PushError> {
        let digest = self.seed_artifact_manifest(repository_id, "", subject, artifact_type)?;
        // The referrers tag schema: every artifact naming this subject.
        let tag = referrer_tag(subject, None);
        let repository = &self.repositories[&repository_id];
        let previous = repository.tags.get(&tag).map(|entry| entry.digest.clone());
        let mut listed: Vec<serde_json::Value> = previous
            .as_ref()
            .and_then(|digest| repository.manifests.get(digest))
            .and_then(|index| serde_json::from_slice::<serde_json::Value>(&index.body).ok())
            .and_then(|index| index.get("manifests").cloned())
            .and_then(|manifests| manifests.as_array().cloned())
            .unwrap_or_default();
        let mut descriptor = self.descriptor(repository_id, &digest)?;
        descriptor["artifactType"] = json!(artifact_type);
        listed.push(descriptor);
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed});
        self.push_value(repository_id, &tag, OCI_INDEX, &index)?;
        if let Some(previous) = previous {
            let repository = self.repository_mut(repository_id).expect("exists");
            if !repository
                .tags
                .values()
                .any(|entry| entry.digest == previous)
            {
                repository.manifests.remove(&previous);
            }
        }
        Ok(digest)
    }
}

impl Repository {
    /// The indexes of this repository that list `digest` as a child.
    pub(crate) fn indexes_listing(&self, digest: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .manifests
            .iter()
            .filter(|(_, manifest)| {
                manifest
                    .children
                    .iter()
                    .any(|(child, _, _)| child == digest)
            })
            .map(|(index, _)| index.clone())
            .collect();
        found.sort();
        found
    }

    /// Removes a manifest and every tag on it; with `cascade` (GitLab's
    /// metadata database) also its untagged referrers, recursively.
    pub(crate) fn remove_manifest(&mut self, digest: &str, cascade: bool) {
        let mut doomed = vec![digest.to_string()];
        while let Some(digest) = doomed.pop() {
            self.manifests.remove(&digest);
            self.tags.retain(|_, tag| tag.digest != digest);
            if cascade {
                let tagged: std::collections::HashSet<&String> =
                    self.tags.values().map(|tag| &tag.digest).collect();
                doomed.extend(
                    self.manifests
                        .iter()
                        .filter(|(referrer, manifest)| {
                            manifest.subject.as_deref() == Some(digest.as_str())
                                && !tagged.contains(referrer)
                        })
                        .map(|(referrer, _)| referrer.clone()),
                );
            }
        }
    }

    /// A garbage collector's run over this repository: with
    /// `untagged_manifests`, first every manifest no tag reaches (through
    /// index children, and through `subject` for referrers of what stays);
    /// then every blob no remaining manifest names as config or layer.
    /// Returns (manifests, blobs) removed.
    pub(crate) fn garbage_collect(&mut self, untagged_manifests: bool) -> (usize, usize) {
        let mut manifests_removed = 0;
        if untagged_manifests {
            let mut live: std::collections::HashSet<String> =
                self.tags.values().map(|tag| tag.digest.clone()).collect();
            loop {
                let before = live.len();
                for (digest, manifest) in &self.manifests {
                    let reached = live.contains(digest)
                        || manifest
                            .subject
                            .as_ref()
                            .is_some_and(|subject| live.contains(subject));
                    if reached {
                        live.insert(digest.clone());
                        live.extend(manifest.children.iter().map(|(child, _, _)| child.clone()));
                    }
                }
                if live.len() == before {
                    break;
                }
            }
            let count = self.manifests.len();
            self.manifests.retain(|digest, _| live.contains(digest));
            manifests_removed = count - self.manifests.len();
        }
        let mut referenced = std::collections::HashSet::new();
        for manifest in self.manifests.values() {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&manifest.body) else {
                continue;
            };
            let config = body.get("config").and_then(|config| config.get("digest"));
            let layers = body
                .get("layers")
                .and_then(|layers| layers.as_array())
                .into_iter()
                .flatten()
                .filter_map(|layer| layer.get("digest"));
            for digest in config.into_iter().chain(layers) {
                if let Some(digest) = digest.as_str() {
                    referenced.insert(digest.to_string());
                }
            }
        }
        let count = self.blobs.len();
        self.blobs.retain(|digest, _| referenced.contains(digest));
        (manifests_removed, count - self.blobs.len())
    }

    /// `[{artifactType, digest}]` of the manifests whose subject is `digest`,
    /// by digest; `types` (when not empty) keeps those exact artifact types.
    pub(crate) fn referrers_of(&self, digest: &str, types: &[String]) -> Vec<serde_json::Value> {
        let mut found: Vec<(&String, &Manifest)> = self
            .manifests
            .iter()
            .filter(|(_, manifest)| manifest.subject.as_deref() == Some(digest))
            .filter(|(_, manifest)| {
                types.is_empty()
                    || manifest
                        .artifact_type
                        .as_ref()
                        .is_some_and(|kind| types.contains(kind))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(b.0));
        found
            .into_iter()
            .map(|(referrer, manifest)| {
                json!({"artifactType": manifest.artifact_type, "digest": referrer})
            })
            .collect()
    }
}

/// A tiny seeded PRNG (SplitMix64): deterministic fault injection needs no crate.
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
