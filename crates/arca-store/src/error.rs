//! One error type for the engine: a small matchable [`ErrorKind`] plus a message with context.
//!
//! Operating errors (bad input, device I/O failures, no space) are returned to the caller that met
//! them; programmer errors are assertions.

use std::fmt;
use std::io;

/// What went wrong, coarse enough to match on (the API layer maps these to HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Unknown volume, snapshot or device.
    NotFound,
    /// A volume or snapshot of that name exists already.
    AlreadyExists,
    /// A name breaks the naming rule (see [`crate::names`]).
    InvalidName,
    /// A size that is zero, unaligned, too large, or a shrink.
    InvalidSize,
    /// An argument that is not valid for this pool (device index, extent size, ...).
    InvalidArgument,
    /// I/O outside the volume or snapshot.
    OutOfRange,
    /// Write to a read-only target (a snapshot).
    ReadOnly,
    /// The operation is refused because something depends on the object (clones, snapshots).
    Busy,
    /// No free extent (or no room in the metadata region) for the request.
    NoSpace,
    /// A device failed an I/O request.
    Io,
    /// A device or the metadata is not what it must be (foreign, damaged, mismatched, truncated).
    Corrupt,
    /// A device holds an older copy of itself than the others (see
    /// [`crate::OpenOptions`] to accept one as it is).
    StaleDevice,
}

/// An engine error: a kind to match on and a message that names the object involved.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A device I/O error, with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        let kind = if source.raw_os_error() == Some(libc::ENOSPC) {
            ErrorKind::NoSpace
        } else {
            ErrorKind::Io
        };
        Error {
            kind,
            message: context.into(),
            source: Some(source),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Adds `note` to the message, before the device error if there is one.
    pub(crate) fn with_note(mut self, note: &str) -> Error {
        self.message = format!("{} ({note})", self.message);
        self
    }

    /// The device error behind an [`ErrorKind::Io`] error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }

    /// The errno a block-device protocol should report for this error.
    pub fn errno(&self) -> i32 {
        match self.kind {
            ErrorKind::NoSpace => libc::ENOSPC,
            ErrorKind::ReadOnly => libc::EPERM,
            ErrorKind::OutOfRange | ErrorKind::InvalidArgument | ErrorKind::InvalidSize => {
                libc::EINVAL
            }
            _ => libc::EIO,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.message, source),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

pub(crate) fn not_found(what: impl fmt::Display) -> Error {
    Error::new(ErrorKind::NotFound, format!("{what} not found"))
}
