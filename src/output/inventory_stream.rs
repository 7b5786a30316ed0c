//! The inventory file read one repository at a time, for `plan`: a serde
//! visitor over the `repositories` array hands each repository over as soon
//! as it is parsed, so memory holds one repository, not the file.
//!
//! The `refs` section may come before or after `repositories` (`inventory`
//! writes it after). A policy with `when_ref` rules needs a repository's
//! refs when it is planned, so then the file is read twice: once for `refs`
//! alone (skipping the repositories unparsed), once for the repositories. A
//! policy without `when_ref` plans the same without refs, so one pass does.
//! The checks are [`Inventory::parse`]'s, with the same messages: a
//! repository listed twice, a tag listed twice, a `refs` key that is not a
//! project id, any syntax or schema error with the file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::io::BufReader;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::domain::config_error::ConfigError;
use crate::domain::model::Refs;
use crate::domain::names::RepositoryPath;
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

/// Reads only the `refs` section (the repositories are skipped unparsed).
pub fn read_refs(path: &Path) -> Result<BTreeMap<String, Refs>, ConfigError> {
    let mut refs = None;
    let mut ignore = |_: InventoryRepository, _: Option<&Refs>| Ok::<(), Infallible>(());
    run(path, Pass::RefsOnly, None, &mut refs, &mut ignore).map_err(|err| match err {
        StreamError::Inventory(err) => err,
        StreamError::Caller(never) => match never {},
    })?;
    Ok(refs.unwrap_or_default())
}

/// Calls `each` with every repository of the inventory, in file order, and
/// its project's refs: from `refs` when given (read beforehand with
/// [`read_refs`]), else from a `refs` section found before the repository,
/// if any.
pub fn for_each_repository<E: std::error::Error + 'static>(
    path: &Path,
    refs: Option<&BTreeMap<String, Refs>>,
    mut each: impl FnMut(InventoryRepository, Option<&Refs>) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let mut found = None;
    run(path, Pass::Repositories, refs, &mut found, &mut each)
}

/// What the caller does with each repository and its project's refs.
type Each<'f, E> = dyn FnMut(InventoryRepository, Option<&Refs>) -> Result<(), E> + 'f;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    RefsOnly,
    Repositories,
}

fn run<E: std::error::Error + 'static>(
    path: &Path,
    pass: Pass,
    given_refs: Option<&BTreeMap<String, Refs>>,
    found_refs: &mut Option<BTreeMap<String, Refs>>,
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
        given_refs,
        found_refs,
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
    given_refs: Option<&'a BTreeMap<String, Refs>>,
    found_refs: &'a mut Option<BTreeMap<String, Refs>>,
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
        deserializer.deserialize_struct("Inventory", &["repositories", "refs"], self)
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
                        Pass::RefsOnly => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Pass::Repositories => map.next_value_seed(RepositoriesSeed(&mut *state))?,
                    }
                }
                FieldName::Refs => {
                    if state.found_refs.is_some() {
                        return Err(de::Error::duplicate_field("refs"));
                    }
                    let refs: BTreeMap<String, Refs> = map.next_value()?;
                    if let Err(err) = Inventory::check_refs_keys(state.origin, &refs) {
                        state.check_error = Some(err);
                        return Err(stop());
                    }
                    *state.found_refs = Some(refs);
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
}

impl<'de> serde::Deserialize<'de> for FieldName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl Visitor<'_> for Names {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`repositories` or `refs`")
            }
            fn visit_str<X: de::Error>(self, key: &str) -> Result<FieldName, X> {
                match key {
                    "repositories" => Ok(FieldName::Repositories),
                    "refs" => Ok(FieldName::Refs),
                    other => Err(de::Error::unknown_field(other, &["repositories", "refs"])),
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
            let refs = repository.project_id.and_then(|project| {
                let key = project.to_string();
                match state.given_refs {
                    Some(refs) => refs.get(&key),
                    None => state.found_refs.as_ref().and_then(|refs| refs.get(&key)),
                }
            });
            if let Err(err) = (state.each)(repository, refs) {
                state.caller_error = Some(err);
                return Err(stop());
            }
        }
        Ok(())
    }
}
