//! `group_commit` in the plugin configuration.

use serde::Deserialize;

/// How updates for one zone are coalesced into shared backend writes (docs/group-commit.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Most hosts one backend write carries (one PowerDNS PATCH, one RFC 2136 UPDATE).
    /// `1` turns group commit off: every update is its own write, sent at once.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest an update waits behind its zone's write in flight; past it, it goes out in a
    /// write of its own beside the one in flight.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

/// Far below RFC 2136's 64 KiB message (a name with two RRsets is under 200 bytes signed) and
/// PowerDNS's body limit; large enough that a storm needs few writes.
pub const MAX_BATCH_LIMIT: usize = 200;

fn default_max_batch() -> usize {
    100
}
fn default_max_wait_ms() -> u64 {
    500
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        GroupCommitSettings {
            max_batch: default_max_batch(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

impl GroupCommitSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch == 0 || self.max_batch > MAX_BATCH_LIMIT {
            return Err(format!(
                "max_batch must be between 1 and {MAX_BATCH_LIMIT}, not {}",
                self.max_batch
            ));
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.max_batch > 1
    }
}
