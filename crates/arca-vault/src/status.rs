//! `Vault::status`: what the vault holds and when it was last collected and verified. One
//! listing of the vault plus the two upkeep state objects; the live and reclaimable
//! figures are those of the last gc (computing them needs a gc's walk).

use crate::error::Result;
use crate::format::{INDEX_DIR, MANIFESTS_DIR, PACKS_DIR};
use crate::vault::Vault;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultStatus {
    /// Every object under the vault's prefix, and their bytes.
    pub objects: u64,
    pub bytes_stored: u64,
    pub manifests: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    /// As of the last gc: stored bytes of the unique chunks manifests use, and bytes gc can
    /// give back. `None` before the first gc.
    pub unique_bytes: Option<u64>,
    pub reclaimable_bytes: Option<u64>,
    /// Packs marked by gc, waiting for their grace period.
    pub gc_marked_packs: u64,
    pub last_gc_unix_s: Option<u64>,
    pub last_verify_unix_s: Option<u64>,
    /// Packs whose data no verify has checked clean yet.
    pub packs_never_checked: u64,
}

impl Vault {
    pub fn status(&self) -> Result<VaultStatus> {
        let mut s = VaultStatus::default();
        let mut indexed = vec![];
        for (name, size) in self.list_sizes("")? {
            s.objects += 1;
            s.bytes_stored += size;
            let dir = name.split('/').next().unwrap_or("");
            if dir == MANIFESTS_DIR {
                s.manifests += 1;
            } else if dir == PACKS_DIR {
                s.packs += 1;
                s.pack_bytes += size;
            } else if dir == INDEX_DIR {
                indexed.push(name);
            }
        }
        let gc = self.read_gc_state()?;
        let ran = |t: u64| (t != 0).then_some(t);
        s.last_gc_unix_s = ran(gc.last_gc_unix_s);
        s.unique_bytes = s.last_gc_unix_s.map(|_| gc.live_bytes);
        s.reclaimable_bytes = s.last_gc_unix_s.map(|_| gc.reclaimable_bytes);
        s.gc_marked_packs = gc.marks.len() as u64;
        let verify = self.read_verify_state()?;
        s.last_verify_unix_s = ran(verify.last_verify_unix_s);
        s.packs_never_checked = indexed
            .iter()
            .filter_map(|n| crate::format::parse_hex::<16>(n.strip_prefix("index/")?))
            .filter(|p| !verify.checked.contains_key(p))
            .count() as u64;
        Ok(s)
    }
}
