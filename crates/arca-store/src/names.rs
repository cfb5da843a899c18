//! The naming rule for volumes and snapshots.
//!
//! A name is 1 to 64 bytes of ASCII letters, digits, `.`, `_` and `-`, starting with a letter or
//! digit. `@` is reserved (exports name snapshots `VOLUME@SNAPSHOT`), as are `/` and spaces, so a
//! name is safe in a URI path, a shell word and a file name.

use crate::error::{Error, ErrorKind, Result};

pub const NAME_LEN_MAX: usize = 64;

pub fn validate(what: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid {what} name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > NAME_LEN_MAX {
        return bad(&format!("longer than {NAME_LEN_MAX} characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "{c:?} is not allowed (letters, digits, '.', '_', '-' only)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "vol-1", "db_2.data", "9", &"x".repeat(64)] {
            validate("volume", ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a@b", "a/b", "a b", "é", &"x".repeat(65)] {
            assert_eq!(
                validate("volume", bad).unwrap_err().kind(),
                ErrorKind::InvalidName
            );
        }
    }
}
