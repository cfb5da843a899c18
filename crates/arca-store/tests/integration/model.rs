//! Model-based test: random operations on the engine and on an in-memory model of every volume
//! and snapshot, compared (contents, allocation, accounting) after each step.
//!
//! The model tracks, per image and logical extent, a token standing for a physical extent, and
//! reproduces the engine's sharing rule: a write lands in place only in an extent that no
//! snapshot of the volume and no clone origin shares; otherwise it gets a new token.

use std::collections::{BTreeMap, HashSet};

use arca_store::{ErrorKind, Pool};
use proptest::prelude::*;

use crate::util::*;

const ES: u64 = 4096;
const EXTENTS_MAX: u64 = 24;

#[derive(Debug, Clone)]
enum Op {
    Create {
        extents: u64,
        short_sectors: u64,
    },
    Write {
        v: usize,
        off: u64,
        len: u64,
        seed: u64,
    },
    Zero {
        v: usize,
        off: u64,
        len: u64,
        unmap: bool,
    },
    Snapshot {
        v: usize,
    },
    DeleteSnapshot {
        v: usize,
        s: usize,
    },
    Clone {
        v: usize,
        s: usize,
    },
    DeleteVolume {
        v: usize,
        with_snapshots: bool,
    },
    Grow {
        v: usize,
        extents: u64,
    },
    Rename {
        v: usize,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..8;
    prop_oneof![
        2 => (1..=EXTENTS_MAX, 0u64..8).prop_map(|(extents, short_sectors)| Op::Create { extents, short_sectors }),
        8 => (idx.clone(), any::<u64>(), 1u64..3 * ES, any::<u64>()).prop_map(|(v, off, len, seed)| Op::Write { v, off, len, seed }),
        3 => (idx.clone(), any::<u64>(), 1u64..4 * ES, any::<bool>()).prop_map(|(v, off, len, unmap)| Op::Zero { v, off, len, unmap }),
        3 => idx.clone().prop_map(|v| Op::Snapshot { v }),
        2 => (idx.clone(), idx.clone()).prop_map(|(v, s)| Op::DeleteSnapshot { v, s }),
        1 => (idx.clone(), idx.clone()).prop_map(|(v, s)| Op::Clone { v, s }),
        1 => (idx.clone(), any::<bool>()).prop_map(|(v, with_snapshots)| Op::DeleteVolume { v, with_snapshots }),
        1 => (idx.clone(), 1u64..4).prop_map(|(v, extents)| Op::Grow { v, extents }),
        1 => idx.clone().prop_map(|v| Op::Rename { v }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

type Token = u64;

#[derive(Debug, Clone)]
struct Image {
    data: Vec<u8>,
    tokens: Vec<Option<Token>>,
}

impl Image {
    fn new(size: u64) -> Image {
        Image {
            data: vec![0; size as usize],
            tokens: vec![None; size.div_ceil(ES) as usize],
        }
    }
    fn grow(&mut self, size: u64) {
        self.data.resize(size as usize, 0);
        self.tokens.resize(size.div_ceil(ES) as usize, None);
    }
}

#[derive(Debug, Clone)]
struct MVol {
    live: Image,
    snaps: Vec<(String, Image)>,
    /// (volume, snapshot) names of the clone origin, and its image.
    origin: Option<(String, String, Image)>,
}

#[derive(Default)]
struct Model {
    vols: BTreeMap<String, MVol>,
    next_token: Token,
    next_name: u64,
}

impl Model {
    fn name(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    fn vol_name(&self, v: usize) -> Option<String> {
        (!self.vols.is_empty()).then(|| self.vols.keys().nth(v % self.vols.len()).unwrap().clone())
    }

    /// The volume `v` picks and the range `off`, `len` wrapped and clipped into it.
    fn range_in(&self, v: usize, off: u64, len: u64) -> Option<(String, u64, u64)> {
        let name = self.vol_name(v)?;
        let size = self.vols[&name].live.data.len() as u64;
        let off = off % size;
        Some((name, off, len.min(size - off)))
    }

    /// A token is exclusive to the volume's live image when nothing else of its family or its
    /// origin holds it.
    fn exclusive(&self, vol: &str, t: Token) -> bool {
        let m = &self.vols[vol];
        !m.snaps.iter().any(|(_, s)| s.tokens.contains(&Some(t)))
            && !m
                .origin
                .as_ref()
                .is_some_and(|(_, _, o)| o.tokens.contains(&Some(t)))
    }

    /// Applies a write or zeroing to extent `l` of `vol`'s live image. `bytes = None` zeroes.
    fn write_extent(
        &mut self,
        vol: &str,
        l: usize,
        at: usize,
        bytes: Option<&[u8]>,
        len: usize,
        unmap: bool,
    ) {
        let full = at == 0 && len as u64 == ES;
        let cur = self.vols[vol].live.tokens[l];
        let size = self.vols[vol].live.data.len();
        let base = l * ES as usize;
        // Zeroing with unmap leaves a hole for a whole extent, and leaves a hole a hole.
        let new_token = if bytes.is_none() && unmap && (full || cur.is_none()) {
            None
        } else {
            match cur {
                Some(t) if self.exclusive(vol, t) => Some(t),
                _ => {
                    self.next_token += 1;
                    Some(self.next_token)
                }
            }
        };
        let m = self.vols.get_mut(vol).unwrap();
        m.live.tokens[l] = new_token;
        let end = (base + at + len).min(size);
        match bytes {
            Some(b) => m.live.data[base + at..end].copy_from_slice(&b[..end - base - at]),
            None => m.live.data[base + at..end].fill(0),
        }
    }

    fn images(&self) -> Vec<(String, &Image)> {
        let mut out = Vec::new();
        for (n, m) in &self.vols {
            out.push((n.clone(), &m.live));
            for (s, img) in &m.snaps {
                out.push((format!("{n}@{s}"), img));
            }
        }
        out
    }
}

fn check(pool: &Pool, model: &Model, after_flush: bool) {
    let exports: Vec<String> = pool.exports().into_iter().map(|e| e.name).collect();
    let mut want: Vec<String> = model.images().into_iter().map(|(n, _)| n).collect();
    want.sort();
    let mut have = exports.clone();
    have.sort();
    assert_eq!(have, want, "exports");
    for (name, img) in model.images() {
        let e = pool.export(&name).unwrap();
        assert_eq!(e.size().unwrap(), img.data.len() as u64, "size of {name}");
        let mut buf = vec![0u8; img.data.len()];
        e.read(0, &mut buf).unwrap();
        assert!(buf == img.data, "content of {name}");
        let runs = e.block_status(0, img.data.len() as u64).unwrap();
        let mut pos = 0u64;
        for r in runs {
            for l in pos / ES..(pos + r.length).div_ceil(ES) {
                assert_eq!(
                    img.tokens[l as usize].is_some(),
                    r.allocated,
                    "allocation of {name} extent {l}"
                );
            }
            pos += r.length;
        }
        assert_eq!(pos, img.data.len() as u64);
    }
    // Accounting.
    let mut all: HashSet<Token> = HashSet::new();
    for (vname, m) in &model.vols {
        let info = pool.volume(vname).unwrap();
        let tokens = |img: &Image| img.tokens.iter().flatten().copied().collect::<HashSet<_>>();
        let live = tokens(&m.live);
        let origin = m
            .origin
            .as_ref()
            .map(|(_, _, o)| tokens(o))
            .unwrap_or_default();
        let snaps: Vec<HashSet<Token>> = m.snaps.iter().map(|(_, s)| tokens(s)).collect();
        let in_snaps: HashSet<Token> = snaps.iter().flatten().copied().collect();
        assert_eq!(
            info.referenced_bytes,
            m.live.tokens.iter().flatten().count() as u64 * ES,
            "referenced {vname}"
        );
        let unique = live
            .iter()
            .filter(|t| !in_snaps.contains(t) && !origin.contains(t))
            .count() as u64;
        assert_eq!(info.unique_bytes, unique * ES, "unique {vname}");
        let owned: HashSet<Token> = live
            .union(&in_snaps)
            .copied()
            .filter(|t| !origin.contains(t))
            .collect();
        assert_eq!(info.owned_bytes, owned.len() as u64 * ES, "owned {vname}");
        let sinfo = pool.snapshots(vname).unwrap();
        assert_eq!(sinfo.len(), m.snaps.len());
        for (i, (sname, img)) in m.snaps.iter().enumerate() {
            assert_eq!(&sinfo[i].name, sname);
            assert_eq!(
                sinfo[i].referenced_bytes,
                img.tokens.iter().flatten().count() as u64 * ES,
                "referenced {vname}@{sname}"
            );
            let others: HashSet<Token> = snaps
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, s)| s.iter().copied())
                .chain(live.iter().copied())
                .chain(origin.iter().copied())
                .collect();
            let unique = snaps[i].iter().filter(|t| !others.contains(t)).count() as u64;
            assert_eq!(sinfo[i].unique_bytes, unique * ES, "unique {vname}@{sname}");
        }
        all.extend(live);
        all.extend(in_snaps);
    }
    if after_flush {
        assert_eq!(pool.status().used_bytes, all.len() as u64 * ES, "pool used");
    }
}

fn run(ops: Vec<Op>) {
    let sp = sim_pool(&[24 * MIB, 8 * MIB], &small_config());
    let mut pool = sp.pool.clone();
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        // Data operations leave changes uncommitted; fsck (which commits) runs every few steps.
        let mut committed = true;
        match op {
            Op::Create {
                extents,
                short_sectors,
            } => {
                let size = extents * ES - (short_sectors * 512).min(extents * ES - 512);
                let name = model.name("v");
                pool.create_volume(&name, size, None).unwrap();
                model.vols.insert(
                    name,
                    MVol {
                        live: Image::new(size),
                        snaps: vec![],
                        origin: None,
                    },
                );
            }
            Op::Write { v, off, len, seed } => {
                let Some((name, off, len)) = model.range_in(v, off, len) else {
                    continue;
                };
                let data = pattern(seed, len as usize);
                pool.export(&name)
                    .unwrap()
                    .write(off, &data, false)
                    .unwrap();
                let mut pos = 0usize;
                while (pos as u64) < len {
                    let abs = off + pos as u64;
                    let at = abs % ES;
                    let n = ((ES - at) as usize).min(len as usize - pos);
                    model.write_extent(
                        &name,
                        (abs / ES) as usize,
                        at as usize,
                        Some(&data[pos..pos + n]),
                        n,
                        false,
                    );
                    pos += n;
                }
                committed = false;
            }
            Op::Zero { v, off, len, unmap } => {
                let Some((name, off, len)) = model.range_in(v, off, len) else {
                    continue;
                };
                let size = model.vols[&name].live.data.len() as u64;
                pool.export(&name)
                    .unwrap()
                    .write_zeroes(
                        off,
                        len,
                        arca_store::ZeroOptions {
                            may_unmap: unmap,
                            fua: false,
                        },
                    )
                    .unwrap();
                let mut pos = 0u64;
                while pos < len {
                    let abs = off + pos;
                    let at = abs % ES;
                    // A piece is "full" for the engine when it covers the whole extent, even the
                    // part past a volume's end.
                    let n = (ES - at).min(len - pos);
                    let full_to_end = abs + n == size && at == 0;
                    let n_model = if full_to_end { ES } else { n };
                    model.write_extent(
                        &name,
                        (abs / ES) as usize,
                        at as usize,
                        None,
                        n_model as usize,
                        unmap,
                    );
                    pos += n;
                }
                committed = false;
            }
            Op::Snapshot { v } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let sname = model.name("s");
                pool.create_snapshot(&name, &sname).unwrap();
                let m = model.vols.get_mut(&name).unwrap();
                let img = m.live.clone();
                m.snaps.push((sname, img));
            }
            Op::DeleteSnapshot { v, s } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let m = &model.vols[&name];
                if m.snaps.is_empty() {
                    continue;
                }
                let s = s % m.snaps.len();
                let sname = m.snaps[s].0.clone();
                let has_clones = model.vols.values().any(|x| {
                    x.origin
                        .as_ref()
                        .is_some_and(|(ov, os, _)| *ov == name && *os == sname)
                });
                let r = pool.delete_snapshot(&name, &sname);
                if has_clones {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::Busy);
                } else {
                    r.unwrap();
                    model.vols.get_mut(&name).unwrap().snaps.remove(s);
                }
            }
            Op::Clone { v, s } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let m = &model.vols[&name];
                if m.snaps.is_empty() {
                    continue;
                }
                let (sname, img) = m.snaps[s % m.snaps.len()].clone();
                let cname = model.name("c");
                pool.clone_snapshot(&name, &sname, &cname, None).unwrap();
                model.vols.insert(
                    cname,
                    MVol {
                        live: img.clone(),
                        snaps: vec![],
                        origin: Some((name, sname, img)),
                    },
                );
            }
            Op::DeleteVolume { v, with_snapshots } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let has_clones = model
                    .vols
                    .values()
                    .any(|x| x.origin.as_ref().is_some_and(|(ov, _, _)| *ov == name));
                let has_snaps = !model.vols[&name].snaps.is_empty();
                let r = pool.delete_volume(&name, with_snapshots);
                if has_clones || (has_snaps && !with_snapshots) {
                    assert_eq!(r.unwrap_err().kind(), ErrorKind::Busy);
                } else {
                    r.unwrap();
                    model.vols.remove(&name);
                }
            }
            Op::Grow { v, extents } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let size = model.vols[&name].live.data.len() as u64 + extents * ES;
                pool.resize_volume(&name, size).unwrap();
                model.vols.get_mut(&name).unwrap().live.grow(size);
            }
            Op::Rename { v } => {
                let Some(name) = model.vol_name(v) else {
                    continue;
                };
                let new = model.name("r");
                pool.rename_volume(&name, &new).unwrap();
                let m = model.vols.remove(&name).unwrap();
                model.vols.insert(new.clone(), m);
                for x in model.vols.values_mut() {
                    if let Some((ov, _, _)) = &mut x.origin
                        && *ov == name
                    {
                        *ov = new.clone();
                    }
                }
            }
            Op::Flush => pool.flush().unwrap(),
            Op::Reopen => {
                pool.close().unwrap();
                pool = reopen(&sp);
            }
        }
        let fsck_now = committed || step % 3 == 0;
        if fsck_now {
            assert_clean(&pool);
        }
        check(&pool, &model, fsck_now);
    }
    pool.flush().unwrap();
    drop(pool);
    let pool = reopen(&sp);
    assert_clean(&pool);
    check(&pool, &model, true);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ARCA_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..48)) {
        run(ops);
    }
}
