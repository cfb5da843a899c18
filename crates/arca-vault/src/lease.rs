//! The writer lease: one array at a time writes a vault prefix (copies, gc, verify's
//! state). Two arrays may share a bucket under different prefixes; on one prefix, a second
//! array is refused with the holder's name until the lease expires.
//!
//! Object stores here offer one conditional write everywhere (a directory and S3 alike):
//! create-if-absent. So a lease is a chain of generations, `upkeep/lease/<generation, 16
//! hex>`, each written once: taking, renewing or releasing the lease creates the next
//! generation, and of two writers racing for one generation exactly one succeeds. The
//! newest generation says who holds the vault and until when; older ones are deleted.

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, LEASE_DIR, MAGIC_LEASE, Reader};
use crate::vault::{Vault, get_bytes, now_unix_s};
use crate::writer::put_once;

/// Why a lease was not given or kept. Kept apart from `Error` so that callers' exhaustive
/// matches on the vault's errors stay as they are.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another writer (array) holds the vault's lease: two arrays never write one prefix.
    #[error(
        "vault is leased to {holder} until {expires_unix_s} (Unix seconds): another array writes this vault"
    )]
    Held { holder: String, expires_unix_s: u64 },
    /// A lease could not be renewed: it expired and `holder` took the vault over.
    #[error("the vault's lease was lost to {holder}: stop writing")]
    Lost { holder: String },
    #[error(transparent)]
    Vault(#[from] Error),
}

pub type LeaseResult<T> = std::result::Result<T, LeaseError>;

/// A held lease; renew it well before `expires_unix_s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub generation: u64,
    pub expires_unix_s: u64,
}

struct Record {
    owner: String,
    expires_unix_s: u64,
}

fn lease_name(generation: u64) -> String {
    format!("{LEASE_DIR}/{generation:016x}")
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.owner.len());
        out.extend_from_slice(&(self.owner.len() as u16).to_le_bytes());
        out.extend_from_slice(self.owner.as_bytes());
        out.extend_from_slice(&self.expires_unix_s.to_le_bytes());
        out
    }

    fn decode(name: &str, payload: &[u8]) -> Result<Record> {
        let bad = || Error::corrupt(name, None, "malformed lease");
        let mut r = Reader::new(payload);
        let len = u16::from_le_bytes(r.array().ok_or_else(bad)?) as usize;
        let owner = String::from_utf8(r.bytes(len).ok_or_else(bad)?.to_vec()).map_err(|_| bad())?;
        let expires_unix_s = r.u64().ok_or_else(bad)?;
        if r.remaining() != 0 {
            return Err(bad());
        }
        Ok(Record {
            owner,
            expires_unix_s,
        })
    }
}

impl Vault {
    /// Takes the vault's lease for `owner` (an array's id) for `ttl`. Refused with
    /// `LeaseError::Held` naming the holder while another owner's lease runs; the same owner may
    /// take it again (a restarted array).
    pub fn acquire_lease(&self, owner: &str, ttl: Duration) -> LeaseResult<Lease> {
        if owner.is_empty() || owner.len() > 1024 {
            let why = "a lease owner is 1 to 1024 bytes".to_string();
            return Err(Error::InvalidSpec(why).into());
        }
        loop {
            let (generation, current) = self.newest_lease()?;
            if let Some(cur) = current
                && cur.owner != owner
                && cur.expires_unix_s > now_unix_s()
            {
                return Err(LeaseError::Held {
                    holder: cur.owner,
                    expires_unix_s: cur.expires_unix_s,
                });
            }
            // Lost a race for this generation: read who won, and decide again.
            if let Some(lease) = self.write_lease(generation + 1, owner, ttl)? {
                return Ok(lease);
            }
        }
    }

    /// Extends a held lease; `LeaseError::Lost` when another owner took the vault meanwhile.
    pub fn renew_lease(&self, lease: &mut Lease, ttl: Duration) -> LeaseResult<()> {
        match self.next_lease(lease, ttl)? {
            Some(next) => {
                *lease = next;
                Ok(())
            }
            None => Err(self.lost()),
        }
    }

    /// Gives the lease up (writes a generation that has already expired).
    pub fn release_lease(&self, lease: Lease) -> LeaseResult<()> {
        match self.next_lease(&lease, Duration::ZERO)? {
            Some(_) => Ok(()),
            None => Err(self.lost()),
        }
    }

    /// The generation after `lease`, if `lease` is still the newest (generation numbers of
    /// deleted old leases must not be written again).
    fn next_lease(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        if self.newest_lease()?.0 != lease.generation {
            return Ok(None);
        }
        self.write_lease(lease.generation + 1, &lease.owner, ttl)
    }

    fn lost(&self) -> LeaseError {
        match self.newest_lease() {
            Ok((_, Some(r))) => LeaseError::Lost { holder: r.owner },
            Ok((_, None)) => LeaseError::Lost {
                holder: "(unknown)".into(),
            },
            Err(e) => e.into(),
        }
    }

    /// Creates generation `generation`; `None` when it exists already (another writer).
    fn write_lease(&self, generation: u64, owner: &str, ttl: Duration) -> Result<Option<Lease>> {
        let expires_unix_s = now_unix_s().saturating_add(ttl.as_secs());
        let record = Record {
            owner: owner.to_string(),
            expires_unix_s,
        };
        let name = lease_name(generation);
        let bytes = format::seal_object(MAGIC_LEASE, &self.inner.sealer, &name, &record.encode());
        match put_once(self, &name, bytes) {
            Ok(()) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => return Ok(None),
            Err(e) => return Err(Error::store(&name, None, e)),
        }
        // Older generations say nothing any more; a failed delete only leaves litter.
        for old in self
            .lease_generations()?
            .into_iter()
            .filter(|&g| g < generation)
        {
            let _ = self
                .rt
                .block_on(self.inner.store.delete(&Path::from(lease_name(old))));
        }
        Ok(Some(Lease {
            owner: owner.to_string(),
            generation,
            expires_unix_s,
        }))
    }

    fn lease_generations(&self) -> Result<Vec<u64>> {
        Ok(self
            .list_names(LEASE_DIR)?
            .iter()
            .filter_map(|n| n.rsplit('/').next())
            .filter_map(|g| u64::from_str_radix(g, 16).ok())
            .collect())
    }

    /// The newest generation and its record (generation 0 and none before any lease).
    fn newest_lease(&self) -> Result<(u64, Option<Record>)> {
        let Some(generation) = self.lease_generations()?.into_iter().max() else {
            return Ok((0, None));
        };
        let name = lease_name(generation);
        let bytes = match self.rt.block_on(get_bytes(&self.inner, &name)) {
            Ok(b) => b,
            // Deleted by a newer writer between the listing and the read: look again.
            Err(object_store::Error::NotFound { .. }) => return self.newest_lease(),
            Err(e) => return Err(Error::store(&name, None, e)),
        };
        let payload = format::open_object(MAGIC_LEASE, &self.inner.sealer, &name, &bytes)?;
        Ok((generation, Some(Record::decode(&name, &payload)?)))
    }
}
