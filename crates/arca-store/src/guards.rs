//! Guards: typed protections the layers above put on volumes and snapshots.
//!
//! A guard has an owner (whose it is: a backup, a restore, a pair), an effect (what it
//! refuses) and a reason (what refusals say). A volume or snapshot carries any number of
//! guards, at most one per owner; each owner adds, replaces and removes only its own, so two
//! layers protecting one volume cannot lift each other's protection. The effective protection
//! is the union of the effects, and a refusal quotes the reasons of every guard that refuses.
//!
//! The store treats owners as opaque typed keys: it never interprets an owner's id.
//!
//! Guards are stored with the record of the object they protect (records.rs) and change only
//! in a transaction ([`crate::Txn::add_volume_guard`] and friends), so a guard becomes durable
//! in the same commit as the records it protects, and no scan has to set guards again when a
//! pool opens. Every guard persists: each owner keeps a durable record of its own (a backup
//! in the catalog, a restore's state, a pair's record), and whatever ends an owner at open
//! (an interrupted copy marked failed, a restore rolled back) removes its guards in the same
//! transaction that changes that record. A guard that vanished with a restart would leave a
//! window in which hosts could write to a destination before its owner set it again.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// Who set a guard. Each variant holds the owner's own id (opaque to the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GuardOwner {
    /// A backup (catalog id): its destination volume or snapshot, its point-in-time snapshot.
    Backup(u64),
    /// An in-place restore (keyed by the id of the volume it restores).
    Restore(u64),
    /// A copy pair (pair id): its secondary, a primary being restored, its tracking snapshots.
    Pair(u64),
}

impl std::fmt::Display for GuardOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardOwner::Backup(id) => write!(f, "backup {id}"),
            GuardOwner::Restore(id) => write!(f, "restore of volume {id}"),
            GuardOwner::Pair(id) => write!(f, "pair {id}"),
        }
    }
}

/// What a guard refuses: a small set of effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct GuardEffect(u8);

impl GuardEffect {
    /// Hosts get the volume read-only (the owner writes through
    /// [`crate::Pool::export_unguarded`]). Meaningless on a snapshot, which is read-only.
    pub const READ_ONLY_TO_HOSTS: GuardEffect = GuardEffect(1);
    /// Deleting the volume or snapshot is refused (and so is deleting a volume whose snapshot
    /// carries it).
    pub const NO_DELETE: GuardEffect = GuardEffect(2);
    /// Resizing the volume is refused.
    pub const NO_RESIZE: GuardEffect = GuardEffect(4);
    /// Every effect: what protecting a volume's content whole needs.
    pub const ALL: GuardEffect = GuardEffect(7);
    pub const NONE: GuardEffect = GuardEffect(0);

    pub const fn union(self, other: GuardEffect) -> GuardEffect {
        GuardEffect(self.0 | other.0)
    }

    pub const fn contains(self, other: GuardEffect) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: GuardEffect) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From stored bits; bits no effect uses are an error (a newer format).
    pub fn from_bits(bits: u8) -> Option<GuardEffect> {
        (bits & !Self::ALL.0 == 0).then_some(GuardEffect(bits))
    }
}

impl std::ops::BitOr for GuardEffect {
    type Output = GuardEffect;
    fn bitor(self, rhs: GuardEffect) -> GuardEffect {
        self.union(rhs)
    }
}

/// One guard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Guard {
    pub owner: GuardOwner,
    pub effect: GuardEffect,
    /// What refusals quote, e.g. "holds backup 12".
    pub reason: String,
}

impl Guard {
    pub fn new(owner: GuardOwner, effect: GuardEffect, reason: impl Into<String>) -> Guard {
        Guard {
            owner,
            effect,
            reason: reason.into(),
        }
    }
}

/// Longest guard reason, in bytes: reasons are short sentences, and each costs metadata.
pub const GUARD_REASON_MAX: usize = 256;
/// Most guards on one volume or snapshot: owners are few; more is a bug above.
pub const GUARDS_PER_OBJECT_MAX: usize = 16;

pub(crate) fn check_guard(g: &Guard) -> Result<(), Error> {
    if g.reason.is_empty() || g.reason.len() > GUARD_REASON_MAX {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("a guard's reason must be 1 to {GUARD_REASON_MAX} bytes"),
        ));
    }
    if g.effect == GuardEffect::NONE {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "a guard must refuse something",
        ));
    }
    Ok(())
}

/// Adds or replaces `owner`'s guard in a set kept sorted by owner.
pub(crate) fn put(set: &mut Vec<Guard>, g: Guard) -> Result<(), Error> {
    match set.binary_search_by_key(&g.owner, |x| x.owner) {
        Ok(i) => set[i] = g,
        Err(i) => {
            if set.len() >= GUARDS_PER_OBJECT_MAX {
                return Err(Error::new(
                    ErrorKind::NoSpace,
                    format!("at most {GUARDS_PER_OBJECT_MAX} guards per volume or snapshot"),
                ));
            }
            set.insert(i, g);
        }
    }
    Ok(())
}

/// Removes `owner`'s guard, if any.
pub(crate) fn remove(set: &mut Vec<Guard>, owner: GuardOwner) {
    set.retain(|g| g.owner != owner);
}

/// The union of the guards' effects.
pub fn effect_of(set: &[Guard]) -> GuardEffect {
    set.iter().fold(GuardEffect::NONE, |a, g| a | g.effect)
}

/// The reasons of the guards refusing `effect`, joined; `None` when none does.
pub fn reasons_refusing(set: &[Guard], effect: GuardEffect) -> Option<String> {
    let r: Vec<&str> = set
        .iter()
        .filter(|g| g.effect.intersects(effect))
        .map(|g| g.reason.as_str())
        .collect();
    (!r.is_empty()).then(|| r.join("; "))
}

/// The refusal for doing `effect` to `what` (e.g. "volume v"), if any guard refuses it.
pub(crate) fn refusal(what: &str, set: &[Guard], effect: GuardEffect) -> Option<Error> {
    reasons_refusing(set, effect)
        .map(|why| Error::new(ErrorKind::Busy, format!("{what} is protected: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_replace_and_remove_only_their_own() {
        let mut set = Vec::new();
        put(
            &mut set,
            Guard::new(GuardOwner::Pair(1), GuardEffect::ALL, "secondary of pair p"),
        )
        .unwrap();
        put(
            &mut set,
            Guard::new(
                GuardOwner::Backup(9),
                GuardEffect::NO_DELETE,
                "holds backup 9",
            ),
        )
        .unwrap();
        put(
            &mut set,
            Guard::new(GuardOwner::Pair(1), GuardEffect::ALL, "pair p (resync)"),
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            reasons_refusing(&set, GuardEffect::NO_DELETE).unwrap(),
            "holds backup 9; pair p (resync)"
        );
        remove(&mut set, GuardOwner::Pair(1));
        assert_eq!(effect_of(&set), GuardEffect::NO_DELETE);
        assert!(reasons_refusing(&set, GuardEffect::READ_ONLY_TO_HOSTS).is_none());
        remove(&mut set, GuardOwner::Restore(1));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn unknown_effect_bits_are_refused() {
        assert_eq!(GuardEffect::from_bits(7), Some(GuardEffect::ALL));
        assert_eq!(GuardEffect::from_bits(8), None);
    }
}
