//! The inventory file read one repository at a time, for `plan`: a serde
//! visitor over the `repositories` array hands each repository over as soon
//! as it is parsed, so memory holds one repository, not the file.
//!
//! The `refs` and `in_use` sections may come before or after `repositories`
//! (`inventory` writes them after). A policy with `when_ref` rules or
//! `protect_in_use` needs a repository's project facts when it is planned,
//! so then the file is read twice: once for those sections alone (skipping
//! the repositories unparsed), once for the repositories. A policy without
//! either plans the same without them, so one pass does. The checks are
//! [`Inventory::parse`]'s, with the same messages: a repository listed
//! twice, a tag listed twice, a `refs` or `in_use` key that is not a
//! project id, any syntax or schema error with the file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::io::BufReader;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::domain::config_error::ConfigError;
use crate::domain::in_use::InUse;
use crate::domain::model::Refs;
use crate::domain::names::RepositoryPath;
use crate::domain::project::ProjectFacts;
use crate::output::inventory::{Inventory, InventoryRepository};

/// Files up to this size are read whole and parsed from memory (faster);
/// larger ones through a buffered reader, so memory does not grow with them.
const IN_MEMORY_LIMIT: u64 = 32 * 1024 * 1024;

/// Why streaming stopped: the file (exit 2), or what the caller did with a
/// repository (its own error, passed through).
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Inventory(#[from] ConfigError),
    #[error(transparent)]
    Caller(E),
}

/// Reads only the `refs` and `in_use` sections (the repositories are
/// skipped unparsed): each project's facts, keyed by project id.
pub fn read_facts(path: &Path) -> Result<BTreeMap<String, ProjectFacts>, ConfigError> {
    let mut found = Found::default();
    let mut ignore = |_: InventoryRepository, _: Option<&ProjectFacts>| Ok::<(), Infallible>(());
    run(path, Pass::FactsOnly, None, &mut found, &mut ignore).map_err(|err| match err {
        StreamError::Inventory(err) => err,
        StreamError::Caller(never) => match never {},
    })?;
    Ok(found.facts)
}

/// Calls `each` with every repository of the inventory, in file order, and
/// its project's facts: from `facts` when given (read beforehand with
/// [`read_facts`]), else from `refs` and `in_use` sections found before the
/// repository, if any.
pub fn for_each_repository<E: std::error::Error + 'static>(
    path: &Path,
    facts: Option<&BTreeMap<String, ProjectFacts>>,
    mut each: impl FnMut(InventoryRepository, Option<&ProjectFacts>) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let mut found = Found::default();
    run(path, Pass::Repositories, facts, &mut found, &mut each)
}

/// What the caller does with each repository and its project's facts.
type Each<'f, E> = dyn FnMut(InventoryRepository, Option<&ProjectFacts>) -> Result<(), E> + 'f;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    FactsOnly,
    Repositories,
}

/// The project sections read so far, merged by project id.
#[derive(Default)]
struct Found {
    facts: BTreeMap<String, ProjectFacts>,
    refs: bool,
    in_use: bool,
}

fn run<E: std::error::Error + 'static>(
    path: &Path,
    pass: Pass,
    given_facts: Option<&BTreeMap<String, ProjectFacts>>,
    found: &mut Found,
    each: &mut Each<'_, E>,
) -> Result<(), StreamError<E>> {
    let origin = path.display().to_string();
    let cannot_read = |err: std::io::Error| {
        ConfigError::file(
            origin.to_string(),
            format!("cannot read inventory file {origin}: {err}"),
        )
    };
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let size = file.metadata().map_err(cannot_read)?.len();
    let mut state = State {
        pass,
        given_facts,
        found,
        each,
        caller_error: None,
        check_error: None,
        origin: &origin,
    };
    let parsed = if size <= IN_MEMORY_LIMIT {
        let bytes = std::fs::read(path).map_err(cannot_read)?;
        let text = std::str::from_utf8(&bytes).map_err(|err| {
            cannot_read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stream did not contain valid UTF-8 ({err})"),
            ))
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        InventorySeed(&mut state)
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
    } else {
        let mut deserializer =
            serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, file));
        InventorySeed(&mut state)
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
    };
    if let Some(err) = state.caller_error.take() {
        return Err(StreamError::Caller(err));
    }
    if let Some(err) = state.check_error.take() {
        return Err(err.into());
    }
    parsed.map_err(|err| Inventory::syntax_error(&origin, &err))?;
    Ok(())
}

struct State<'a, 'f, E> {
    pass: Pass,
    given_facts: Option<&'a BTreeMap<String, ProjectFacts>>,
    found: &'a mut Found,
    each: &'f mut Each<'f, E>,
    /// The caller's error that stopped the stream (serde only carries text).
    caller_error: Option<E>,
    /// A check that failed, with its own message (no line and column).
    check_error: Option<ConfigError>,
    origin: &'a str,
}

/// Stops the parser after the caller or a check failed; the real error is
/// in [`State`].
fn stop<D: de::Error>() -> D {
    D::custom("stopped")
}

struct InventorySeed<'s, 'a, 'f, E>(&'s mut State<'a, 'f, E>);

impl<'de, E> DeserializeSeed<'de> for InventorySeed<'_, '_, '_, E> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_struct("Inventory", &["repositories", "refs", "in_use"], self)
    }
}

impl<'de, E> Visitor<'de> for InventorySeed<'_, '_, '_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an inventory object with a repositories array")
    }

    /// serde_json offers a struct an array too; an inventory is an object.
    fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<(), S::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let state = self.0;
        let mut seen_repositories = false;
        while let Some(key) = map.next_key::<FieldName>()? {
            match key {
                FieldName::Repositories => {
                    if seen_repositories {
                        return Err(de::Error::duplicate_field("repositories"));
                    }
                    seen_repositories = true;
                    match state.pass {
                        Pass::FactsOnly => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Pass::Repositories => map.next_value_seed(RepositoriesSeed(&mut *state))?,
                    }
                }
                FieldName::Refs => {
                    if state.found.refs {
                        return Err(de::Error::duplicate_field("refs"));
                    }
                    state.found.refs = true;
                    let refs: BTreeMap<String, Refs> = map.next_value()?;
                    if let Err(err) = Inventory::check_refs_keys(state.origin, &refs) {
                        state.check_error = Some(err);
                        return Err(stop());
                    }
                    for (project, refs) in refs {
                        state.found.facts.entry(project).or_default().refs = Some(refs);
                    }
                }
                FieldName::InUse => {
                    if state.found.in_use {
                        return Err(de::Error::duplicate_field("in_use"));
                    }
                    state.found.in_use = true;
                    let in_use: BTreeMap<String, InUse> = map.next_value()?;
                    if let Err(err) = Inventory::check_project_keys(state.origin, "in_use", &in_use)
                    {
                        state.check_error = Some(err);
                        return Err(stop());
                    }
                    for (project, in_use) in in_use {
                        state.found.facts.entry(project).or_default().in_use = Some(in_use);
                    }
                }
            }
        }
        if !seen_repositories {
            return Err(de::Error::missing_field("repositories"));
        }
        Ok(())
    }
}

/// The inventory's top-level keys; any other is an error (as with
/// `deny_unknown_fields`).
enum FieldName {
    Repositories,
    Refs,
    InUse,
}

impl<'de> serde::Deserialize<'de> for FieldName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl Visitor<'_> for Names {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`repositories`, `refs` or `in_use`")
            }
            fn visit_str<X: de::Error>(self, key: &str) -> Result<FieldName, X> {
                match key {
                    "repositories" => Ok(FieldName::Repositories),
                    "refs" => Ok(FieldName::Refs),
                    "in_use" => Ok(FieldName::InUse),
                    other => Err(de::Error::unknown_field(
                        other,
                        &["repositories", "refs", "in_use"],
                    )),
                }
            }
        }
        deserializer.deserialize_identifier(Names)
    }
}

struct RepositoriesSeed<'s, 'a, 'f, E>(&'s mut State<'a, 'f, E>);

impl<'de, E> DeserializeSeed<'de> for RepositoriesSeed<'_, '_, '_, E> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, E> Visitor<'de> for RepositoriesSeed<'_, '_, '_, E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let state = self.0;
        let mut seen_paths: HashSet<RepositoryPath> = HashSet::new();
        while let Some(repository) = seq.next_element::<InventoryRepository>()? {
            if let Err(err) = Inventory::check_repository(state.origin, &repository) {
                state.check_error = Some(err);
                return Err(stop());
            }
            if !seen_paths.insert(repository.path.clone()) {
                state.check_error = Some(ConfigError::file(
                    state.origin.to_string(),
                    format!(
                        "{}: repository {} is listed twice",
                        state.origin, repository.path
                    ),
                ));
                return Err(stop());
            }
            let facts = repository.project_id.and_then(|project| {
                let key = project.to_string();
                match state.given_facts {
                    Some(facts) => facts.get(&key),
                    None => state.found.facts.get(&key),
                }
            });
            if let Err(err) = (state.each)(repository, facts) {
                state.caller_error = Some(err);
                return Err(stop());
            }
        }
        Ok(())
    }
}
