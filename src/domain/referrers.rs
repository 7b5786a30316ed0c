//! The referrer-tag grammar, in one place: a tag named `sha256-<64 hex>`,
//! optionally followed by `.<suffix>` (cosign's `.sig`, `.att`, `.sbom`; the
//! OCI referrers tag schema), refers to the manifest `sha256:<hex>`. The
//! planner and the deleter parse it ([`referrer_subject`]); the server
//! engine hands GitLab the same grammar as a pattern ([`REFERRER_TAGS`]).

use crate::domain::names::Digest;

/// The grammar as an RE2 pattern (whole-name match), for GitLab's bulk API.
pub const REFERRER_TAGS: &str = r"sha256-[0-9a-f]{64}(?:\.[A-Za-z0-9_.-]+)?";

/// The subject of a referrer tag: `sha256-<64 lower-case hex>`, optionally
/// followed by `.<suffix>` (cosign's `.sig`, `.att`, `.sbom`; the OCI
/// referrers tag schema), refers to `sha256:<hex>`. `None` for other names.
pub fn referrer_subject(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("sha256-")?;
    let (hex, suffix) = match rest.get(..64) {
        Some(hex) => (hex, &rest[64..]),
        None => return None,
    };
    let suffix_ok = suffix.is_empty()
        || suffix.strip_prefix('.').is_some_and(|suffix| {
            !suffix.is_empty()
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if !suffix_ok {
        return None;
    }
    Digest::parse(&format!("sha256:{hex}")).ok()
}
