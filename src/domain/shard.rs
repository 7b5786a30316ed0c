//! Which shard of a group or instance cleanup a repository belongs to.
//!
//! `N` jobs (GitLab CI's `parallel: N`) each take the repositories whose
//! full path hashes to their index: FNV-1a 64-bit of the path's UTF-8
//! bytes, modulo `N`, plus one. The function is part of the product's
//! contract — changing it would make shards of different versions overlap
//! or leave repositories out — so it is tested against fixed vectors.

use serde::{Deserialize, Serialize};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64-bit: for each byte, xor then multiply (wrapping).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard (1-based) of `total` that the repository at `path` belongs to.
pub fn shard_of(path: &str, total: u32) -> u32 {
    debug_assert!(total >= 1);
    (fnv1a64(path.as_bytes()) % u64::from(total.max(1))) as u32 + 1
}

/// Shard `index` of `total` (1 ≤ index ≤ total), as reports record it.
/// Read from a report only when in range (`report merge` trusts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RecordedShard")]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

/// A shard as a report file has it, before its range is checked.
#[derive(Deserialize)]
struct RecordedShard {
    index: u32,
    total: u32,
}

impl TryFrom<RecordedShard> for Shard {
    type Error = String;

    fn try_from(recorded: RecordedShard) -> Result<Shard, String> {
        let RecordedShard { index, total } = recorded;
        if (1..=total).contains(&index) {
            Ok(Shard { index, total })
        } else {
            Err(format!(
                "shard {index}/{total}: the index must be from 1 to the number of shards"
            ))
        }
    }
}

/// Why a shard was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{0:?} is not a shard: write it as I/N, e.g. 2/4 (shard 2 of 4)")]
    Syntax(String),
    #[error("{0:?}: the shard index must be from 1 to the number of shards")]
    OutOfRange(String),
}

impl Shard {
    /// `I/N`, with 1 ≤ I ≤ N.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let text = text.trim();
        let (index, total) = text
            .split_once('/')
            .ok_or_else(|| ShardError::Syntax(text.to_string()))?;
        Shard::new(index, total).ok_or_else(|| {
            if index.trim().parse::<u32>().is_ok() && total.trim().parse::<u32>().is_ok() {
                ShardError::OutOfRange(text.to_string())
            } else {
                ShardError::Syntax(text.to_string())
            }
        })
    }

    /// From separate index and total texts (`CI_NODE_INDEX`, `CI_NODE_TOTAL`).
    pub fn new(index: &str, total: &str) -> Option<Shard> {
        let index: u32 = index.trim().parse().ok()?;
        let total: u32 = total.trim().parse().ok()?;
        (1..=total)
            .contains(&index)
            .then_some(Shard { index, total })
    }

    /// Whether the repository at `path` is this shard's to clean.
    pub fn contains(&self, path: &str) -> bool {
        shard_of(path, self.total) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_shard_out_of_range_is_refused() {
        let read = |json: &str| serde_json::from_str::<Shard>(json);
        assert_eq!(
            read(r#"{"index": 2, "total": 4}"#).expect("valid"),
            Shard { index: 2, total: 4 }
        );
        for bad in [
            r#"{"index": 0, "total": 0}"#,
            r#"{"index": 0, "total": 4}"#,
            r#"{"index": 5, "total": 4}"#,
        ] {
            let err = read(bad).expect_err(bad);
            assert!(err.to_string().contains("must be from 1"), "{err}");
        }
    }

    /// Reference values computed independently of this code:
    ///
    /// ```python
    /// def fnv1a64(b):
    ///     h = 0xcbf29ce484222325
    ///     for c in b:
    ///         h ^= c
    ///         h = (h * 0x100000001b3) % 2**64
    ///     return h
    /// for s in ['', 'a', 'foobar', 'group/project', 'group/project/api', 'platform/tools/builder']:
    ///     h = fnv1a64(s.encode()); print(repr(s), hex(h), [h % n + 1 for n in (1, 2, 3, 4, 7)])
    /// ```
    ///
    /// The first three are FNV's published test vectors.
    const VECTORS: &[(&str, u64, [u32; 5])] = &[
        ("", 0xcbf29ce484222325, [1, 2, 3, 2, 3]),
        ("a", 0xaf63dc4c8601ec8c, [1, 1, 2, 1, 6]),
        ("foobar", 0x85944171f73967e8, [1, 1, 1, 1, 7]),
        ("group/project", 0xe0459c03a95ee152, [1, 1, 3, 3, 4]),
        ("group/project/api", 0x472ff4bf6d7d7d3d, [1, 2, 2, 2, 5]),
        (
            "platform/tools/builder",
            0xbcfbf1474730947a,
            [1, 1, 1, 3, 5],
        ),
    ];

    #[test]
    fn hashes_and_shards_match_the_fixed_vectors() {
        for (text, hash, shards) in VECTORS {
            assert_eq!(fnv1a64(text.as_bytes()), *hash, "{text:?}");
            for (total, shard) in [1, 2, 3, 4, 7].into_iter().zip(shards) {
                assert_eq!(shard_of(text, total), *shard, "{text:?} of {total}");
            }
        }
    }

    #[test]
    fn every_path_is_in_exactly_one_shard() {
        for (text, _, _) in VECTORS {
            for total in 1..=9 {
                let owners = (1..=total)
                    .filter(|index| {
                        Shard {
                            index: *index,
                            total,
                        }
                        .contains(text)
                    })
                    .count();
                assert_eq!(owners, 1, "{text:?} of {total}");
            }
        }
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse(" 2/4 "), Ok(Shard { index: 2, total: 4 }));
        assert_eq!(Shard::parse("1/1").map(|s| s.to_string()), Ok("1/1".into()));
        for bad in ["0/4", "5/4", "0/0"] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::OutOfRange(_))),
                "{bad}"
            );
        }
        for bad in ["", "2", "2/", "/4", "a/b", "-1/4", "2/4/8", "1.5/4"] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
    }
}
