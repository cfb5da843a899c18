//! The one image copier: copy backups, digests, restores and pair copies all walk an image and
//! copy or hash it through here.
//!
//! [`walk`] hands out an image's pieces in order: data in runs of contiguous allocated extents
//! of up to [`WALK_CHUNK_BYTES`] (one read each), holes as holes; it costs what is allocated,
//! not the size. [`copy`] walks the image, or a list of its extents, with [`Options`]: into a
//! destination or not (a digest only reads), hashing (the digest's extent hashes), pacing,
//! writing only what differs, holding a lock over each run (a pair's mirror), and the job's
//! cancellation and progress.
//!
//! Progress counts every byte of the range the copy settles: data, holes and, with
//! [`Options::dest_size`], the destination beyond the image's end; a job's total is that range
//! ([`listed_bytes`] for a list of extents).

use std::time::{Duration, Instant};

use arca_store::{Error, Export};
use parking_lot::RwLock;

use crate::digest::{self, ExtentHash};
use crate::jobs::{JobContext, JobError};

/// Bytes read per request while walking an image.
pub const WALK_CHUNK_BYTES: u64 = 1 << 20;
/// Longest sleep of a paced copy: a cancel is seen within one.
const PACE_NAP: Duration = Duration::from_millis(100);

/// What a walk reports for each piece of the image.
pub enum Piece<'a> {
    /// Allocated bytes at `offset` (extent-aligned, whole extents except at the image's end).
    Data { offset: u64, data: &'a [u8] },
    /// A hole (reads as zeros).
    Hole { offset: u64, len: u64 },
    /// Extent-aligned bytes that could not be read.
    Unreadable {
        offset: u64,
        len: u64,
        error: arca_store::Error,
    },
}

/// Walks `size` bytes of an image in order: holes as [`Piece::Hole`], data in runs of
/// contiguous allocated extents of up to [`WALK_CHUNK_BYTES`]. With `tolerate_read_errors`, a
/// failed read is retried extent by extent and what still fails is reported as
/// [`Piece::Unreadable`]; otherwise the error stops the walk. `visit` returning an error stops
/// it too.
pub fn walk<E: From<Error>>(
    export: &Export,
    size: u64,
    es: u64,
    tolerate_read_errors: bool,
    mut visit: impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut runs = Runs {
        export,
        es,
        chunk_bytes: WALK_CHUNK_BYTES,
        hold: None,
    };
    runs.allocated(size, tolerate_read_errors, &mut || Ok(()), &mut visit)
}

/// How a walk goes over the image: its reads, and the lock each run holds.
struct Runs<'a> {
    export: &'a Export,
    es: u64,
    /// Longest run (rounded down to whole extents, at least one).
    chunk_bytes: u64,
    /// Held exclusively over each run, from its reads to the end of its visits.
    hold: Option<&'a RwLock<()>>,
}

impl Runs<'_> {
    fn per_chunk(&self) -> u64 {
        (self.chunk_bytes / self.es).max(1)
    }

    /// Every allocated extent below `size`, holes between. `pause` runs before each run, with
    /// no lock held.
    fn allocated<E: From<Error>>(
        &mut self,
        size: u64,
        tolerate_read_errors: bool,
        pause: &mut dyn FnMut() -> Result<(), E>,
        visit: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let es = self.es;
        let per_chunk = self.per_chunk();
        let mut buf = vec![0u8; (per_chunk * es) as usize];
        let extents = self.export.allocated_extents()?;
        let mut pos = 0u64;
        let mut i = 0;
        while i < extents.len() {
            // A run of consecutive extents, at most one chunk long.
            let first = extents[i];
            let n = run_length(&extents[i..], per_chunk, u64::MAX);
            i += n as usize;
            let at = first * es;
            if at >= size {
                break;
            }
            pause()?;
            let _held = self.hold.map(|l| l.write());
            if at > pos {
                visit(Piece::Hole {
                    offset: pos,
                    len: at - pos,
                })?;
            }
            let len = (n * es).min(size - at);
            let b = &mut buf[..len as usize];
            match self.export.read(at, b) {
                Ok(()) => visit(Piece::Data {
                    offset: at,
                    data: b,
                })?,
                Err(e) if !tolerate_read_errors => return Err(e.into()),
                Err(_) => {
                    let mut o = at;
                    while o < at + len {
                        let m = es.min(at + len - o);
                        let eb = &mut buf[..m as usize];
                        match self.export.read(o, eb) {
                            Ok(()) => visit(Piece::Data {
                                offset: o,
                                data: eb,
                            })?,
                            Err(error) => visit(Piece::Unreadable {
                                offset: o,
                                len: m,
                                error,
                            })?,
                        }
                        o += m;
                    }
                }
            }
            pos = at + len;
        }
        if pos < size {
            pause()?;
            let _held = self.hold.map(|l| l.write());
            visit(Piece::Hole {
                offset: pos,
                len: size - pos,
            })?;
        }
        Ok(())
    }

    /// The listed extents (ascending) below `end`: data where the image has it below
    /// `image_size`, holes elsewhere (beyond the image too). Consecutive extents go in runs.
    fn listed<E: From<Error>>(
        &mut self,
        extents: &[u64],
        image_size: u64,
        end: u64,
        pause: &mut dyn FnMut() -> Result<(), E>,
        visit: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(
            extents.windows(2).all(|w| w[0] < w[1]),
            "extent lists are ascending"
        );
        let es = self.es;
        let per_chunk = self.per_chunk();
        let mut buf = vec![0u8; (per_chunk * es) as usize];
        let limit = end.div_ceil(es);
        let mut i = 0;
        while i < extents.len() && extents[i] < limit {
            let first = extents[i];
            let n = run_length(&extents[i..], per_chunk, limit);
            i += n as usize;
            let off = first * es;
            let stop = ((first + n) * es).min(end);
            pause()?;
            let _held = self.hold.map(|l| l.write());
            let in_image = stop.min(image_size).saturating_sub(off);
            let mut at = off;
            if in_image > 0 {
                for run in self.export.block_status(off, in_image)? {
                    if run.allocated {
                        let b = &mut buf[..run.length as usize];
                        self.export.read(at, b)?;
                        visit(Piece::Data {
                            offset: at,
                            data: b,
                        })?;
                    } else {
                        visit(Piece::Hole {
                            offset: at,
                            len: run.length,
                        })?;
                    }
                    at += run.length;
                }
            }
            if stop > at {
                visit(Piece::Hole {
                    offset: at,
                    len: stop - at,
                })?;
            }
        }
        Ok(())
    }
}

/// How many of `extents` (from the first) are consecutive, at most `max`, all below `limit`.
fn run_length(extents: &[u64], max: u64, limit: u64) -> u64 {
    let first = extents[0];
    let mut n = 1;
    while (n as usize) < extents.len()
        && extents[n as usize] == first + n
        && n < max
        && first + n < limit
    {
        n += 1;
    }
    n
}

/// Bytes of the listed extents below `end` (the last may be short): the progress total of a
/// copy of them.
pub fn listed_bytes(extents: &[u64], end: u64, es: u64) -> u64 {
    extents
        .iter()
        .map(|&l| end.saturating_sub(l * es).min(es))
        .sum()
}

/// Which part of the image a copy goes over.
#[derive(Debug, Clone, Copy, Default)]
pub enum Extents<'a> {
    /// Every allocated extent, holes between (the whole image).
    #[default]
    Allocated,
    /// These extents (ascending), data or hole as the image has them.
    Listed(&'a [u64]),
}

/// What a copy does beside walking the image.
#[derive(Default, Clone, Copy)]
pub struct Options<'a> {
    /// Where the image goes; `None` only reads it (a digest).
    pub to: Option<&'a Export>,
    pub extents: Extents<'a>,
    /// The range the destination gets, when longer than the image: beyond the image's end it
    /// is zeroed (with [`Extents::Allocated`]) or the listed extents there are.
    pub dest_size: Option<u64>,
    /// The destination holds only holes (a volume made for the copy): holes need no writes.
    pub fresh: bool,
    /// Hash every allocated extent (the digest's list); with [`Extents::Allocated`] only.
    pub hash: bool,
    /// Read the destination first and write only extents whose bytes differ; a hole unmaps
    /// only what the destination has allocated there. For restores and copies into a
    /// destination that is mostly the same already: identical extents stay as they are (and
    /// stay shared with the destination's snapshots).
    pub differs_only: bool,
    /// Longest read and write (whole extents, at least one); [`WALK_CHUNK_BYTES`] when `None`.
    pub chunk_bytes: Option<u64>,
    /// Stay under this rate (bytes of progress per second).
    pub pace_bytes_per_second: Option<u64>,
    /// Held exclusively over each run, from its read to its write (a pair's copy lock, so a
    /// mirrored write never lands between them). Pacing waits without it.
    pub exclusive: Option<&'a RwLock<()>>,
}

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Progress: bytes of the range settled.
    pub bytes_done: u64,
    /// Allocated bytes read from the image.
    pub data_bytes: u64,
    /// Bytes written or zeroed in the destination.
    pub written_bytes: u64,
    /// With [`Options::hash`]: every allocated extent's hash, in order.
    pub hashes: Vec<ExtentHash>,
}

/// Walks `image` (its first `size` bytes) as `opts` say, checking `ctx` for cancellation
/// before every piece and adding each piece to its progress. Read and write errors stop it.
pub fn copy(
    image: &Export,
    size: u64,
    opts: &Options<'_>,
    ctx: &JobContext,
) -> Result<Copied, JobError> {
    let es = image.pool().extent_size();
    assert!(
        !opts.hash || matches!(opts.extents, Extents::Allocated),
        "a digest covers the whole image"
    );
    let end = opts.dest_size.unwrap_or(size).max(size);
    let mut out = Copied::default();
    let mut scratch = Vec::new();
    let started = Instant::now();
    // Shared by the visits, which add to it, and the pauses, which pace by it.
    let done = std::cell::Cell::new(0u64);
    let mut pause = || -> Result<(), JobError> {
        ctx.check()?;
        if let Some(pace) = opts.pace_bytes_per_second {
            pace_wait(ctx, started, done.get(), pace)?;
        }
        Ok(())
    };
    let mut visit = |p: Piece<'_>| -> Result<(), JobError> {
        ctx.check()?;
        let n = match p {
            Piece::Data { offset, data } => {
                if opts.hash {
                    digest::hash_data(offset, data, es, &mut out.hashes);
                }
                out.data_bytes += data.len() as u64;
                if let Some(to) = opts.to {
                    out.written_bytes += if opts.differs_only {
                        write_differing(to, offset, data, es, &mut scratch)?
                    } else {
                        to.write(offset, data, false)?;
                        data.len() as u64
                    };
                }
                data.len() as u64
            }
            Piece::Hole { offset, len } => {
                if let Some(to) = opts.to
                    && !opts.fresh
                {
                    out.written_bytes += zero(to, offset, len, opts.differs_only)?;
                }
                len
            }
            Piece::Unreadable { error, .. } => return Err(error.into()),
        };
        done.set(done.get() + n);
        ctx.add_done(n);
        Ok(())
    };
    let mut runs = Runs {
        export: image,
        es,
        chunk_bytes: opts.chunk_bytes.unwrap_or(WALK_CHUNK_BYTES),
        hold: opts.exclusive,
    };
    match opts.extents {
        Extents::Allocated => {
            runs.allocated(size, false, &mut pause, &mut visit)?;
            if end > size {
                // Beyond the image: a larger destination keeps no old data.
                pause()?;
                let _held = opts.exclusive.map(|l| l.write());
                visit(Piece::Hole {
                    offset: size,
                    len: end - size,
                })?;
            }
        }
        Extents::Listed(list) => runs.listed(list, size, end, &mut pause, &mut visit)?,
    }
    out.bytes_done = done.get();
    Ok(out)
}

/// Sleeps until `done` bytes are due at `pace` bytes per second since `started`, in short
/// naps with a cancellation check before each.
fn pace_wait(ctx: &JobContext, started: Instant, done: u64, pace: u64) -> Result<(), JobError> {
    let due = Duration::from_secs_f64(done as f64 / pace as f64);
    while let Some(wait) = due.checked_sub(started.elapsed()) {
        ctx.check()?;
        std::thread::sleep(wait.min(PACE_NAP));
    }
    Ok(())
}

/// Writes the extents of `data` whose bytes differ from the destination's, in runs; returns
/// the bytes written.
fn write_differing(
    to: &Export,
    offset: u64,
    data: &[u8],
    es: u64,
    scratch: &mut Vec<u8>,
) -> arca_store::Result<u64> {
    scratch.resize(data.len(), 0);
    to.read(offset, scratch)?;
    let es = es as usize;
    let extents = data.len().div_ceil(es);
    let differs = |i: usize| {
        let r = i * es..((i + 1) * es).min(data.len());
        data[r.clone()] != scratch[r]
    };
    let mut written = 0;
    let mut i = 0;
    while i < extents {
        if !differs(i) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < extents && differs(j) {
            j += 1;
        }
        let (a, b) = (i * es, (j * es).min(data.len()));
        to.write(offset + a as u64, &data[a..b], false)?;
        written += (b - a) as u64;
        i = j;
    }
    Ok(written)
}

/// Makes `len` bytes at `offset` read as zeros (unmapped where whole extents allow); with
/// `differs_only` only where the destination has something allocated. Returns the bytes
/// zeroed.
fn zero(to: &Export, offset: u64, len: u64, differs_only: bool) -> arca_store::Result<u64> {
    if !differs_only {
        to.write_zeroes(offset, len, arca_store::ZeroOptions::UNMAP)?;
        return Ok(len);
    }
    let mut zeroed = 0;
    let mut at = offset;
    for run in to.block_status(offset, len)? {
        if run.allocated {
            to.write_zeroes(at, run.length, arca_store::ZeroOptions::UNMAP)?;
            zeroed += run.length;
        }
        at += run.length;
    }
    Ok(zeroed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::{Receiver, channel};

    use arca_store::sim::{PowerDomain, SimDevice};
    use arca_store::{BlockDevice, Pool, PoolConfig};

    use super::*;
    use crate::jobs::{Job, JobManager, JobState};

    const ES: u64 = 4096;
    const WAIT: Duration = Duration::from_secs(20);

    fn pool() -> Pool {
        let dev = Arc::new(SimDevice::new("sim0", 32 << 20, PowerDomain::new()));
        let config = PoolConfig {
            extent_size: ES as u32,
            meta_len: Some(4 << 20),
        };
        Pool::create(vec![dev as Arc<dyn BlockDevice>], &config).unwrap()
    }

    /// Extent `l` of an image: its own byte pattern.
    fn extent(l: u64, seed: u8) -> Vec<u8> {
        (0..ES).map(|i| (i as u8) ^ (l as u8) ^ seed).collect()
    }

    /// A volume of `extents` extents with data in those listed.
    fn image(pool: &Pool, name: &str, extents: u64, data: &[u64]) {
        pool.create_volume(name, extents * ES, None).unwrap();
        let e = pool.export(name).unwrap();
        for &l in data {
            e.write(l * ES, &extent(l, 7), false).unwrap();
        }
    }

    fn read_all(pool: &Pool, name: &str) -> Vec<u8> {
        let e = pool.export(name).unwrap();
        let mut b = vec![0u8; e.size().unwrap() as usize];
        e.read(0, &mut b).unwrap();
        b
    }

    /// Runs one copy from `from` to `to` as a job, of the `listed` extents or the whole image,
    /// with options made by `opts`.
    fn run_listed(
        pool: &Pool,
        from: &str,
        to: Option<&str>,
        listed: Option<Vec<u64>>,
        opts: impl FnOnce(&mut Options<'_>) + Send + 'static,
    ) -> (Arc<Job>, Receiver<Copied>) {
        let jobs = JobManager::new();
        let (tx, rx) = channel();
        let image = pool.export(from).unwrap();
        let size = image.size().unwrap();
        let dest = to.map(|t| pool.export_unguarded(t).unwrap());
        let job = jobs
            .start(crate::jobs::JobKind::BackupCopy, from, move |ctx| {
                let mut o = Options {
                    to: dest.as_ref(),
                    ..Options::default()
                };
                if let Some(l) = &listed {
                    o.extents = Extents::Listed(l);
                }
                opts(&mut o);
                let c = copy(&image, size, &o, ctx)?;
                tx.send(c).unwrap();
                Ok(None)
            })
            .unwrap();
        (job, rx)
    }

    fn run(
        pool: &Pool,
        from: &str,
        to: Option<&str>,
        opts: impl FnOnce(&mut Options<'_>) + Send + 'static,
    ) -> (Arc<Job>, Receiver<Copied>) {
        run_listed(pool, from, to, None, opts)
    }

    fn finish(job: &Job, rx: &Receiver<Copied>) -> Copied {
        assert_eq!(job.wait(WAIT), JobState::Succeeded, "{:?}", job.snapshot());
        rx.recv().unwrap()
    }

    #[test]
    fn copies_data_and_holes_and_counts_progress() {
        let p = pool();
        image(&p, "a", 64, &[0, 1, 2, 10, 40, 63]);
        p.create_volume("b", 80 * ES, None).unwrap();
        // Old data in b where a has holes, and beyond a's end.
        let e = p.export("b").unwrap();
        for l in [5, 20, 70] {
            e.write(l * ES, &extent(l, 1), false).unwrap();
        }
        let (job, rx) = run(&p, "a", Some("b"), |o| {
            o.dest_size = Some(80 * ES);
            o.hash = true;
        });
        let c = finish(&job, &rx);
        let mut want = read_all(&p, "a");
        want.resize((80 * ES) as usize, 0);
        assert_eq!(read_all(&p, "b"), want);
        // Progress counts the whole destination range, holes and the tail included.
        assert_eq!(c.bytes_done, 80 * ES);
        assert_eq!(job.snapshot().bytes_done, 80 * ES);
        assert_eq!(c.data_bytes, 6 * ES);
        let hashed: Vec<u64> = c.hashes.iter().map(|h| h.0).collect();
        assert_eq!(hashed, [0, 1, 2, 10, 40, 63]);
        assert_eq!(c.hashes[3].1, digest::hash_extent(&extent(10, 7)));
    }

    #[test]
    fn a_fresh_destination_gets_no_writes_for_holes() {
        let p = pool();
        image(&p, "a", 64, &[3, 4]);
        p.create_volume("b", 64 * ES, None).unwrap();
        let (job, rx) = run(&p, "a", Some("b"), |o| o.fresh = true);
        let c = finish(&job, &rx);
        assert_eq!(c.written_bytes, 2 * ES);
        assert_eq!(c.bytes_done, 64 * ES);
        assert_eq!(read_all(&p, "b"), read_all(&p, "a"));
        assert_eq!(p.volume("b").unwrap().referenced_bytes, 2 * ES);
    }

    #[test]
    fn differs_only_writes_nothing_on_identical_images() {
        let p = pool();
        let data = [0, 1, 2, 3, 9, 17, 18, 40];
        image(&p, "a", 48, &data);
        image(&p, "b", 48, &data);
        // Any write to b would show as a change against this snapshot.
        p.create_snapshot("b", "before").unwrap();
        let (job, rx) = run(&p, "a", Some("b"), |o| o.differs_only = true);
        let c = finish(&job, &rx);
        assert_eq!(c.written_bytes, 0);
        assert_eq!(c.data_bytes, data.len() as u64 * ES);
        assert_eq!(
            c.bytes_done,
            48 * ES,
            "identical extents still count as progress"
        );
        assert_eq!(p.changed_extents("b", "before").unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn differs_only_writes_just_the_extents_that_differ() {
        let p = pool();
        image(&p, "a", 48, &[0, 1, 2, 3, 9]);
        image(&p, "b", 48, &[0, 1, 2, 3, 9, 30]);
        let e = p.export("b").unwrap();
        e.write(2 * ES, &extent(2, 99), false).unwrap();
        p.create_snapshot("b", "before").unwrap();
        let (job, rx) = run(&p, "a", Some("b"), |o| o.differs_only = true);
        let c = finish(&job, &rx);
        // Extent 2 rewritten, extent 30 (a hole in a) unmapped; nothing else touched.
        assert_eq!(c.written_bytes, 2 * ES);
        assert_eq!(p.changed_extents("b", "before").unwrap(), [2, 30]);
        assert_eq!(read_all(&p, "b"), read_all(&p, "a"));
    }

    #[test]
    fn listed_extents_copy_data_and_holes_up_to_the_destination_range() {
        let p = pool();
        image(&p, "a", 32, &[1, 2, 3, 8]);
        image(&p, "b", 40, &[]);
        let e = p.export("b").unwrap();
        for l in [4, 9, 35, 36] {
            e.write(l * ES, &extent(l, 3), false).unwrap();
        }
        // 2 and 3 are data, 4 and 9 holes in a, 35 beyond a's end; 36 and 50 are not listed
        // or beyond the range.
        let list = [2, 3, 4, 9, 35, 50];
        let (job, rx) = run_listed(&p, "a", Some("b"), Some(list.to_vec()), |o| {
            o.dest_size = Some(40 * ES)
        });
        let c = finish(&job, &rx);
        assert_eq!(c.bytes_done, listed_bytes(&list, 40 * ES, ES));
        assert_eq!(c.bytes_done, 5 * ES);
        assert_eq!(c.data_bytes, 2 * ES);
        let (a, b) = (read_all(&p, "a"), read_all(&p, "b"));
        let at = |l: u64| (l * ES) as usize..((l + 1) * ES) as usize;
        for l in [2, 3, 4, 9] {
            assert_eq!(b[at(l)], a[at(l)], "extent {l}");
        }
        assert!(b[at(35)].iter().all(|&x| x == 0));
        assert_eq!(b[at(36)], extent(36, 3)[..], "not listed: left alone");
        assert!(b[at(1)].iter().all(|&x| x == 0), "not listed: not copied");
    }

    #[test]
    fn listed_bytes_counts_the_short_last_extent() {
        assert_eq!(listed_bytes(&[0, 1, 2], 2 * ES + 100, ES), 2 * ES + 100);
        assert_eq!(listed_bytes(&[5], 2 * ES, ES), 0);
    }

    #[test]
    fn cancel_stops_a_paced_copy_before_it_ends() {
        let p = pool();
        // Every other extent: runs of one extent, each paced.
        let data: Vec<u64> = (0..256).step_by(2).collect();
        image(&p, "a", 256, &data);
        image(&p, "b", 256, &[]);
        // One extent a second: the copy would take minutes.
        let (job, _rx) = run(&p, "a", Some("b"), |o| o.pace_bytes_per_second = Some(ES));
        let deadline = Instant::now() + WAIT;
        while job.snapshot().bytes_done == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(job.snapshot().bytes_done > 0, "the copy started");
        assert!(job.cancel());
        assert_eq!(job.wait(WAIT), JobState::Cancelled);
        let done = job.snapshot().bytes_done;
        assert!(done < 256 * ES, "stopped part way: {done}");
        // What was not reached is still a hole.
        assert!(p.volume("b").unwrap().referenced_bytes < 256 * ES);
    }

    #[test]
    fn a_digest_only_reads() {
        let p = pool();
        image(&p, "a", 16, &[0, 5]);
        p.create_snapshot("a", "s").unwrap();
        let (job, rx) = run(&p, "a@s", None, |o| o.hash = true);
        let c = finish(&job, &rx);
        assert_eq!(c.written_bytes, 0);
        assert_eq!(c.hashes.len(), 2);
        assert_eq!(c.bytes_done, 16 * ES);
    }
}
