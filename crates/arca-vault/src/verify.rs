//! Verification with memory.
//!
//! - The structural check reads every pack index and streams every manifest (see `live`):
//!   every chunk a manifest names must be in its pack's index at that offset, with that id
//!   fingerprint and length; every pack a manifest names must have a readable index and a
//!   pack object of the index's length. It reads no chunk data.
//! - The data check reads whole packs, least recently checked first, until the budget is
//!   spent (it may pass the budget by less than one pack), and opens, decompresses and
//!   re-hashes every blob as a restore does. `upkeep/verify` records when each pack was
//!   last checked clean, so repeated budgeted runs cover the whole vault; a damaged pack
//!   keeps no date and comes first again.
//!
//! Damage is reported with the backups (manifests) it breaks.

use std::collections::HashMap;

use bytes::Bytes;

use crate::crypto::ChunkId;
use crate::error::{Error, Result};
use crate::format::{self, HEADER_LEN, INDEX_DIR, MAGIC_PACK, PACKS_DIR, PackId};
use crate::live::{Flaw, LiveMap};
use crate::manifest::Manifest;
use crate::reader::decode_blob;
use crate::state::VerifyState;
use crate::vault::{Inner, Vault, fetch_index, get_bytes, now_unix_s};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Bytes of pack data to read and check, least recently checked packs first; `None`
    /// checks structure only, `Some(u64::MAX)` every pack.
    pub data_budget_bytes: Option<u64>,
}

/// One damaged object or chunk and the backups whose images it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub object: String,
    /// The damaged chunk's id (hex), when one chunk is named.
    pub chunk: Option<String>,
    pub detail: String,
    /// Backup ids, ascending.
    pub backups: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub manifests: u64,
    pub packs: u64,
    /// The data check: packs read and bytes fetched.
    pub packs_read: u64,
    pub bytes_read: u64,
    pub damage: Vec<Damage>,
    /// Packs whose data no run has checked clean yet (after this run).
    pub packs_never_checked: u64,
    /// Heap bytes of the structural check's live map.
    pub memory_bytes: u64,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// What the data check found in one pack.
struct PackCheck {
    bytes_read: u64,
    /// Damage to the pack as a whole (unreadable header, short object).
    whole: Option<String>,
    chunks: Vec<(ChunkId, u32, String)>,
}

/// Damage being gathered, with keys to attribute backups to it during the walk.
#[derive(Default)]
struct Findings {
    damage: Vec<Damage>,
    by_pack: HashMap<PackId, usize>,
    by_chunk: HashMap<(PackId, u32), usize>,
}

impl Findings {
    fn pack(&mut self, pack: PackId, object: String, detail: String) -> usize {
        *self.by_pack.entry(pack).or_insert_with(|| {
            self.damage.push(Damage {
                object,
                chunk: None,
                detail,
                backups: vec![],
            });
            self.damage.len() - 1
        })
    }

    fn chunk(&mut self, pack: PackId, offset: u32, id: &ChunkId, detail: String) -> usize {
        *self.by_chunk.entry((pack, offset)).or_insert_with(|| {
            self.damage.push(Damage {
                object: format::pack_name(&pack),
                chunk: Some(format::hex(id)),
                detail,
                backups: vec![],
            });
            self.damage.len() - 1
        })
    }

    fn blame(&mut self, at: usize, backup: u64) {
        let b = &mut self.damage[at].backups;
        if b.last() != Some(&backup) {
            b.push(backup);
        }
    }

    /// Attributes what `m` uses among the damage found so far, and its own flaws.
    fn attribute(&mut self, m: &Manifest, flaws: Vec<Flaw>) {
        for pack in &m.packs {
            if let Some(&at) = self.by_pack.get(pack) {
                self.blame(at, m.backup_id);
            }
        }
        for e in m.entries.iter().filter(|e| !e.is_hole()) {
            let pack = m.packs[e.pack as usize];
            if let Some(&at) = self.by_chunk.get(&(pack, e.offset)) {
                self.blame(at, m.backup_id);
            }
        }
        for flaw in flaws {
            let at = match flaw {
                Flaw::NoIndex { pack, .. } => self.pack(
                    pack,
                    format::index_name(&pack),
                    "the pack's index object is missing".into(),
                ),
                Flaw::NotInIndex {
                    pack,
                    offset,
                    chunk,
                    ..
                } => self.chunk(
                    pack,
                    offset,
                    &chunk,
                    "the manifest's chunk is not in its pack's index".into(),
                ),
            };
            self.blame(at, m.backup_id);
        }
    }
}

impl Vault {
    /// Checks the vault's structure and, within a budget, its data; records which packs
    /// were checked. Damage is reported, not an error; errors are failures to ask.
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let now = now_unix_s();
        let mut state = self.read_verify_state()?;
        let mut report = VerifyReport::default();
        let mut found = Findings::default();
        let sizes: HashMap<PackId, u64> = self
            .list_sizes(PACKS_DIR)?
            .into_iter()
            .filter_map(|(n, s)| Some((format::parse_hex::<16>(n.rsplit('/').next()?)?, s)))
            .collect();
        let indexed: Vec<PackId> = self
            .list_names(INDEX_DIR)?
            .iter()
            .filter_map(|n| format::parse_hex::<16>(n.strip_prefix("index/")?))
            .collect();
        state.checked.retain(|p, _| sizes.contains_key(p));
        if let Some(budget) = opts.data_budget_bytes {
            self.check_data(
                budget,
                &indexed,
                &sizes,
                now,
                &mut state,
                &mut report,
                &mut found,
            )?;
        }
        let mut map = self.load_live_map()?;
        self.structure(&map, &sizes, &mut found);
        let manifests = self.walk_manifests(|id, m| {
            match m {
                Ok(m) => {
                    let mut flaws = vec![];
                    map.add_manifest(&m, &mut flaws);
                    found.attribute(&m, flaws);
                }
                Err(e) => found.damage.push(Damage {
                    object: format::manifest_name(id),
                    chunk: None,
                    detail: e.to_string(),
                    backups: vec![id],
                }),
            }
            Ok(())
        })?;
        report.manifests = manifests.len() as u64;
        report.packs = sizes.len() as u64;
        report.memory_bytes = map.memory_bytes();
        report.damage = found.damage;
        report.packs_never_checked = indexed
            .iter()
            .filter(|p| !state.checked.contains_key(*p))
            .count() as u64;
        state.last_verify_unix_s = now;
        self.write_verify_state(&state)?;
        Ok(report)
    }

    /// Pack-level structure: damaged indexes, and pack objects missing or not of the
    /// length their index says.
    fn structure(&self, map: &LiveMap, sizes: &HashMap<PackId, u64>, found: &mut Findings) {
        for (pack, why) in &map.bad_indexes {
            found.pack(*pack, format::index_name(pack), why.clone());
        }
        for (pack, p) in &map.packs {
            let detail = match sizes.get(pack) {
                None => "the pack object is missing".to_string(),
                Some(&s) if s != p.pack_len => {
                    format!(
                        "the pack object has {s} bytes, its index says {}",
                        p.pack_len
                    )
                }
                Some(_) => continue,
            };
            found.pack(*pack, format::pack_name(pack), detail);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_data(
        &self,
        budget: u64,
        indexed: &[PackId],
        sizes: &HashMap<PackId, u64>,
        now: u64,
        state: &mut VerifyState,
        report: &mut VerifyReport,
        found: &mut Findings,
    ) -> Result<()> {
        let mut due: Vec<(u64, PackId)> = indexed
            .iter()
            .filter(|p| sizes.contains_key(*p))
            .map(|p| (state.checked.get(p).copied().unwrap_or(0), *p))
            .collect();
        due.sort_unstable();
        let mut spent = 0u64;
        for (_, pack) in due {
            if spent >= budget {
                break;
            }
            let check = match self.rt.block_on(check_pack(&self.inner, pack)) {
                Ok(c) => c,
                // Its index is damaged or gone: the structural check names it.
                Err(Error::Corrupt { .. } | Error::MissingObject { .. }) => continue,
                Err(e) => return Err(e),
            };
            spent += check.bytes_read;
            report.packs_read += 1;
            report.bytes_read += check.bytes_read;
            let clean = check.whole.is_none() && check.chunks.is_empty();
            if let Some(why) = check.whole {
                found.pack(pack, format::pack_name(&pack), why);
            }
            for (id, offset, why) in check.chunks {
                found.chunk(pack, offset, &id, why);
            }
            if clean {
                state.checked.insert(pack, now);
            } else {
                state.checked.remove(&pack);
            }
        }
        Ok(())
    }
}

/// Reads a whole pack and checks its header and every blob its index lists.
async fn check_pack(inner: &std::sync::Arc<Inner>, pack: PackId) -> Result<PackCheck> {
    let index = fetch_index(inner.clone(), pack).await?;
    let name = format::pack_name(&pack);
    let bytes: Bytes = get_bytes(inner, &name)
        .await
        .map_err(|e| Error::store(&name, None, e))?;
    let mut check = PackCheck {
        bytes_read: bytes.len() as u64,
        whole: None,
        chunks: vec![],
    };
    let header_ok = format::check_header(MAGIC_PACK, &name, &bytes)
        .is_ok_and(|sealed| sealed == inner.sealer.encrypted())
        && bytes.get(HEADER_LEN..HEADER_LEN + 16) == Some(&pack[..]);
    if !header_ok {
        check.whole = Some("the pack header is damaged".into());
    } else if bytes.len() as u64 != index.pack_len {
        check.whole = Some(format!(
            "the pack has {} bytes, its index says {}",
            bytes.len(),
            index.pack_len
        ));
    }
    for (id, blob, raw_len) in &index.entries {
        let (at, len) = (blob.offset as usize, blob.stored_len as usize);
        let why = match bytes.get(at..at + len) {
            None => "the blob lies past the pack's end",
            Some(_) => match decode_blob(inner, id, bytes.slice(at..at + len), *raw_len as usize) {
                Ok(_) => continue,
                Err(why) => why,
            },
        };
        check.chunks.push((*id, blob.offset, why.to_string()));
    }
    Ok(check)
}
