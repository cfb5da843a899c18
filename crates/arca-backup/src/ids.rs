//! Ids of the objects the backup layer owns, as their own types so a backup id cannot be
//! passed where a job or pair id is meant. Each is a `u64` underneath: it serialises as the
//! bare number (JSON and on-disk records alike) and displays as one, so messages and
//! encodings are what they were when the ids were plain integers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The number underneath (for keys, arithmetic and wire formats).
            pub const fn get(self) -> u64 {
                self.0
            }

            /// Big-endian bytes: the id in table keys, which sort by it.
            pub const fn to_be_bytes(self) -> [u8; 8] {
                self.0.to_be_bytes()
            }
        }

        impl From<u64> for $name {
            fn from(n: u64) -> $name {
                $name(n)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<$name, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// A job of the [`JobManager`](crate::JobManager); numbered from 1 per daemon run.
    JobId
);

id_type!(
    /// A backup in the catalog: milliseconds since the epoch × [`IDS_PER_MS`](crate::IDS_PER_MS)
    /// plus a sequence, so ids sort by time (see [`BackupRecord`](crate::BackupRecord)).
    BackupId
);

id_type!(
    /// A pair of volumes; a millisecond time when made, above every id in use. It keys the
    /// pair's record and names its snapshots.
    PairId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_and_display_as_the_bare_number() {
        let id = JobId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<JobId>("42").unwrap(), id);
        assert_eq!(
            postcard::to_stdvec(&id).unwrap(),
            postcard::to_stdvec(&42u64).unwrap()
        );
        assert_eq!(id.to_string(), "42");
        assert_eq!("42".parse::<JobId>().unwrap(), id);
        assert!("x".parse::<JobId>().is_err());
        // The same for the others, which the records on disk hold (postcard, varints).
        let n = u64::MAX - 5;
        let bare = postcard::to_stdvec(&n).unwrap();
        assert_eq!(postcard::to_stdvec(&BackupId(n)).unwrap(), bare);
        assert_eq!(postcard::to_stdvec(&PairId(n)).unwrap(), bare);
        assert_eq!(
            postcard::from_bytes::<BackupId>(&bare).unwrap(),
            BackupId(n)
        );
        assert_eq!(serde_json::to_string(&BackupId(n)).unwrap(), n.to_string());
        assert_eq!(BackupId(n).to_be_bytes(), n.to_be_bytes());
    }
}
