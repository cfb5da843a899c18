//! The metadata region: a redb database on a fixed byte range of a device.
//!
//! redb sees a growable "file"; the region gives it a bounded one. The file's length is kept in
//! a header at the start of the region, written to two alternating slots so a torn header write
//! leaves the previous one readable:
//!
//! ```text
//! region + 0      header slot 0 (4 KiB)
//! region + 4 KiB  header slot 1 (4 KiB)
//! region + 8 KiB  redb file bytes 0 .. capacity
//!
//! header: 0..8 magic "ARCAMETA", 8..16 sequence number, 16..24 file length,
//!         24..28 CRC-32C of bytes 0..24
//! ```
//!
//! A header reaches stable storage with redb's next `sync_data`, the same as a file's length.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::device::BlockDevice;

const HEADER_SIZE: u64 = 4096;
const HEADER_SLOTS: u64 = 2;
const MAGIC: [u8; 8] = *b"ARCAMETA";
const ZERO_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Header {
    seq: u64,
    len: u64,
}

#[derive(Debug)]
pub struct MetaRegion {
    device: Arc<dyn BlockDevice>,
    offset: u64,
    capacity: u64,
    header: Mutex<Header>,
}

impl MetaRegion {
    /// Opens the region `[offset, offset + region_len)` of `device`. A region that was never
    /// written (all-zero headers) is an empty file.
    pub fn open(
        device: Arc<dyn BlockDevice>,
        offset: u64,
        region_len: u64,
    ) -> io::Result<MetaRegion> {
        let reserved = HEADER_SIZE * HEADER_SLOTS;
        assert!(region_len > reserved, "metadata region too small");
        let mut best: Option<Header> = None;
        let mut bad = 0;
        for slot in 0..HEADER_SLOTS {
            let mut b = [0u8; 28];
            device.read_at(&mut b, offset + slot * HEADER_SIZE)?;
            if b.iter().all(|&x| x == 0) {
                continue;
            }
            let crc = u32::from_le_bytes(b[24..28].try_into().unwrap());
            if b[0..8] != MAGIC || crc != crc32c::crc32c(&b[..24]) {
                bad += 1;
                continue;
            }
            let h = Header {
                seq: u64::from_le_bytes(b[8..16].try_into().unwrap()),
                len: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            };
            if best.is_none_or(|b| h.seq > b.seq) {
                best = Some(h);
            }
        }
        let capacity = region_len - reserved;
        let header = match best {
            Some(h) if h.len <= capacity => h,
            Some(h) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("metadata header length {} exceeds the region", h.len),
                ));
            }
            None if bad == HEADER_SLOTS as usize => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "both metadata region headers are damaged",
                ));
            }
            None => Header { seq: 0, len: 0 },
        };
        Ok(MetaRegion {
            device,
            offset: offset + reserved,
            capacity,
            header: Mutex::new(header),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.header.lock().len
    }

    fn write_header(&self, h: Header) -> io::Result<()> {
        let mut b = [0u8; 28];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..16].copy_from_slice(&h.seq.to_le_bytes());
        b[16..24].copy_from_slice(&h.len.to_le_bytes());
        let crc = crc32c::crc32c(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        let slot = h.seq % HEADER_SLOTS;
        let header_offset = self.offset - HEADER_SIZE * HEADER_SLOTS + slot * HEADER_SIZE;
        self.device.write_at(&b, header_offset)
    }

    fn check(&self, offset: u64, len: usize, file_len: u64) -> io::Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= file_len => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("metadata access at {offset}+{len} past length {file_len}"),
            )),
        }
    }
}

impl redb::StorageBackend for MetaRegion {
    fn len(&self) -> io::Result<u64> {
        Ok(self.header.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.check(offset, out.len(), self.header.lock().len)?;
        self.device.read_at(out, self.offset + offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut h = self.header.lock();
        if len > self.capacity {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "metadata region full: {len} bytes needed, {} available",
                    self.capacity
                ),
            ));
        }
        if len > h.len {
            // redb requires new bytes to read as zero; a region may hold old pages.
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut pos = h.len;
            while pos < len {
                let n = ((len - pos) as usize).min(ZERO_CHUNK);
                self.device.write_at(&zeros[..n], self.offset + pos)?;
                pos += n as u64;
            }
        }
        let next = Header {
            seq: h.seq + 1,
            len,
        };
        self.write_header(next)?;
        *h = next;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.device.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(offset, data.len(), self.header.lock().len)?;
        self.device.write_at(data, self.offset + offset)
    }
}
