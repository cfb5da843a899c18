//! Backups and pairs together: a pair's secondary as a backup destination ready at an instant
//! (the split), and resyncs that would overwrite a backup held on a secondary.

use std::sync::{Arc, OnceLock};

use arca_store::{GuardOwner, Result, VolumeInfo};

use crate::backups::{Backups, busy};
use crate::catalog;
use crate::create::{CreateRequest, Created, Target, stepped_back};
use crate::expire::deletion_refusal;
use crate::ids::{BackupId, JobId};
use crate::pairs::{PairRecord, PairState, Pairs};
use crate::record::{BackupRecord, Destination, Event, Method, Status};

/// Where the backup service finds the pairs (the daemon attaches them after both open).
pub(crate) type PairsSlot = OnceLock<Arc<Pairs>>;

impl Backups {
    /// Lets backups use pair secondaries (once: a second attach is refused).
    pub fn attach_pairs(&self, pairs: Arc<Pairs>) -> Result<()> {
        self.pairs
            .set(pairs)
            .map_err(|_| busy("the pairs are attached already"))
    }

    fn pairs_of(&self, source: &VolumeInfo) -> Vec<PairRecord> {
        self.pairs.get().map_or_else(Vec::new, |p| {
            p.list()
                .into_iter()
                .filter(|r| r.primary_id == source.id)
                .collect()
        })
    }

    /// The volume's pair secondaries in state `pair`, as targets (they come first).
    pub(crate) fn pair_targets(&self, source: &VolumeInfo) -> Vec<Target> {
        self.pairs_of(source)
            .into_iter()
            .filter(|r| r.state == PairState::Pair)
            .filter_map(|r| {
                let v = self.volume_by_id(r.secondary_id)?;
                Some(self.secondary_target(&r.name, source, &v))
            })
            .collect()
    }

    /// The pair to split when a copy of `source` goes to `to`, if `to` is its secondary.
    pub(crate) fn pair_for(&self, source: &VolumeInfo, to: &str) -> Option<PairRecord> {
        let to = self.pool.volume(to).ok()?;
        self.pairs_of(source)
            .into_iter()
            .find(|r| r.secondary_id == to.id)
    }

    /// A copy backup made by splitting a pair: the secondary is the image at the split.
    pub(crate) fn create_from_pair(
        self: &Arc<Self>,
        req: &CreateRequest,
        source: &VolumeInfo,
        pair: PairRecord,
    ) -> Result<Created> {
        if pair.state != PairState::Pair {
            return Err(busy(format!(
                "pair {} is in state {}; a backup on its secondary needs state pair",
                pair.name,
                pair.state.as_str()
            )));
        }
        // Refused before the split when the metadata region is nearly full.
        let room = crate::create::backup_room_bytes(&req.info, self.digest_room_bytes(source));
        self.pool
            .admit_metadata(&format!("backing up {}", source.name), room)?;
        let pairs = self.pairs.get().expect("a pair was found through them");
        let id = self.new_id();
        // The split, the record, and its guard on the secondary in one transaction: a failure
        // leaves the pair as it was and no record, and the secondary is the backup's from the
        // split's instant. The catalog lock comes before the pairs' (as everywhere).
        let catalog_lock = self.catalog_lock.lock();
        let secondary = self
            .volume_by_id(pair.secondary_id)
            .ok_or_else(|| busy(format!("the secondary of pair {} is gone", pair.name)))?;
        let previous = self.pool.app_read(|r| catalog::generation(r, source.id))?;
        let previous_pit = self.point_in_time_of(source.id, previous)?;
        let generation = previous + 1;
        let mut record = None;
        pairs.split_with(&pair.name, &mut |t, split| {
            let pit = split.split_ms.unwrap_or_else(|| self.now_ms());
            let destination = Destination::Volume {
                volume: secondary.name.clone(),
                volume_id: secondary.id,
                device: secondary.placement,
                created: false,
            };
            let mut r =
                self.base_record(id, source, generation, Method::Copy, destination, req, None);
            // Complete at once: the split made the copy.
            r.point_in_time_ms = pit;
            r.stepped_back_from_ms = stepped_back(previous_pit, pit);
            r.started_ms = pit;
            r.completed_ms = Some(self.now_ms());
            r.status = Status::Complete;
            r.allocated_bytes = secondary.referenced_bytes;
            catalog::put(t, None, &r);
            catalog::set_generation(t, source.id, generation);
            self.mark_ids(t);
            // Tags the secondary and guards it for the backup.
            self.tag_destination(t, &r)?;
            record = Some(r);
            Ok(())
        })?;
        drop(catalog_lock);
        let record = record.expect("a split that commits planned the record");
        let job = self.start_digest(record.id)?;
        Ok(Created {
            records: vec![record],
            jobs: vec![job],
        })
    }

    /// Resyncs a pair, refusing while its secondary holds a live backup unless `consume`,
    /// which first records the backup as consumed (and when): the data is about to change.
    /// Consuming gives the backup's image up, so it obeys the deletion rule: never under a
    /// hold or before lock-until; `consume` is the consent that overrides keep-until (as
    /// `--force` does for a deletion). Either way a reverse resync too: the secondary is
    /// mirrored again once it ends.
    pub fn resync_pair(
        self: &Arc<Self>,
        name: &str,
        reverse: bool,
        consume: bool,
    ) -> Result<JobId> {
        let pairs = self
            .pairs
            .get()
            .ok_or_else(|| busy("pairs are not available"))?
            .clone();
        let pair = pairs.get(name)?;
        // A resync the pair's state refuses must consume nothing.
        pairs.check_resync(name, reverse)?;
        let (records, _) = catalog::all(&self.pool)?;
        let held: Vec<&BackupRecord> = records
            .iter()
            .filter(|r| r.on_array())
            .filter(|r| {
                matches!(r.destination, Destination::Volume { volume_id, .. }
                    if volume_id == pair.secondary_id)
            })
            .collect();
        // Every refusal before any consumption, so a refused resync changes nothing.
        let now = self.now_ms();
        for r in &held {
            let why = consume_refusal(r, now).or_else(|| self.in_use_refusal(r.id));
            if let Some(why) = why {
                return Err(busy(format!("cannot resync pair {name}: {why}")));
            }
        }
        if !held.is_empty() && !consume {
            let ids: Vec<String> = held.iter().map(|r| r.id.to_string()).collect();
            return Err(busy(format!(
                "the secondary of pair {name} holds backup {}; resync consuming the backup to \
                 give it up",
                ids.join(", ")
            )));
        }
        for r in held {
            self.consume(r.id, &format!("resync of pair {name}"))?;
        }
        pairs.resync(name, reverse)
    }

    /// Marks a backup consumed: its destination keeps no claim to it. Checked again under the
    /// catalog lock: a hold or lock set since the caller looked still wins.
    fn consume(&self, id: BackupId, by: &str) -> Result<()> {
        let _c = self.catalog_lock.lock();
        let old = self.get(id)?;
        let now = self.now_ms();
        if !old.status.live() {
            return Err(busy(format!("backup {id} is {}", old.status.as_str())));
        }
        if let Some(why) = consume_refusal(&old, now).or_else(|| self.in_use_refusal(id)) {
            return Err(busy(format!("{by} refused: {why}")));
        }
        let mut new = old.clone();
        if old.status == Status::Complete && !old.vault_copies.is_empty() {
            // Its vault copies keep the backup: only the array's image is given up.
            new.off_array_since_ms = Some(now);
        } else {
            new.status = Status::Consumed;
            new.status_reason = Some(format!("consumed by {by}"));
        }
        new.push_history(now, Event::Consumed { by: by.to_string() });
        // The guard goes with the record's change: a failed commit leaves both.
        let mut t = self.pool.transaction();
        if let Destination::Volume { volume_id, .. } = &old.destination
            && let Some(v) = self.volume_by_id(*volume_id)
        {
            t.set_volume_tag(&v.name, None)?;
            t.remove_volume_guard(&v.name, GuardOwner::Backup(id.get()))?;
        }
        catalog::put(&mut t, Some(&old), &new);
        t.commit()
    }
}

/// Why consuming `r` is refused now: the deletion rule, with the consent to consume standing
/// for `--force` (keep-until yields; a hold and a lock never do).
fn consume_refusal(r: &BackupRecord, now_ms: u64) -> Option<String> {
    deletion_refusal(r, now_ms, true)
}
