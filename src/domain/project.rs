//! What the planner knows of a repository's project besides its tags: the
//! project's git refs (for `when_ref` rules) and its commits in use (for
//! `protect_in_use`), each where the policy asks for it and it was listed.

use crate::domain::in_use::InUse;
use crate::domain::model::Refs;

/// A project's facts, as a run lists them once per project or an
/// inventory records them (its `refs` and `in_use` sections).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectFacts {
    /// `None`: not listed (no rule looks at refs) or not recorded.
    pub refs: Option<Refs>,
    /// `None`: not listed (the policy has no `protect_in_use`) or not recorded.
    pub in_use: Option<InUse>,
}

impl ProjectFacts {
    /// Just the refs (what a policy without `protect_in_use` needs).
    pub fn with_refs(refs: Refs) -> Self {
        ProjectFacts {
            refs: Some(refs),
            in_use: None,
        }
    }
}
