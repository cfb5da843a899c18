//! Vault upkeep against a directory and a real S3 server (s3s-fs on loopback): garbage
//! collection beside copies, verification with memory, status.

mod common;

use std::time::Duration;

use std::sync::Arc;

use arca_vault::{
    CopyWriter, Error, GcOptions, LeaseError, Tuning, Vault, VaultSpec, VerifyOptions,
};
use common::{CHUNK, Image, Place, block_on, copy, restore};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Tiny packs (four 4 KiB chunks) so that a small image makes many packs.
fn tiny_tuning() -> Tuning {
    Tuning {
        pack_target_bytes: 16 << 10,
        ..Tuning::default()
    }
}

/// A vault of its own under the place (a subdirectory or a sub-prefix).
fn sub_spec(place: &Place, name: &str) -> VaultSpec {
    VaultSpec {
        url: format!("{}/{name}", place.spec.url),
        ..place.spec.clone()
    }
}

fn create(spec: &VaultSpec) -> Vault {
    let mut v = Vault::create(spec, None, CHUNK).unwrap();
    v.set_tuning(tiny_tuning());
    v
}

fn now_gc() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

/// Gives chunk `i` of `image` to a copy in progress.
fn step(w: &mut CopyWriter<'_>, image: &Image, i: usize) {
    if image.holes[i] {
        w.hole(i as u64).unwrap();
    } else {
        w.data(i as u64, &image.bytes[common::range(image.bytes.len(), i)])
            .unwrap();
    }
}

fn object_count(place: &Place) -> usize {
    place.all_files().len()
}

/// Deleting a backup frees nothing by itself; gc marks its unused packs, a dry run reports
/// them without touching anything, the grace period holds them, and the next run after it
/// deletes exactly them. Shared packs and the other backup stay whole.
fn gc_removes_only_unused_packs_after_grace(place: &Place) {
    let spec = sub_spec(place, "v");
    let vault = create(&spec);
    let a = Image::new(60, 0, 21);
    let b = Image::new(60, 0, 22);
    let sa = copy(&vault, 1, &a, None).unwrap();
    copy(&vault, 2, &b, None).unwrap();
    let files = object_count(place);
    vault.delete_manifest(1).unwrap();

    let dry = vault
        .gc(&GcOptions {
            dry_run: true,
            ..now_gc()
        })
        .unwrap();
    assert!(dry.dry_run && dry.marked_packs > 0, "{dry:?}");
    assert_eq!(dry.deleted_packs, 0);
    // Every pack and index object of the deleted copy: all it stored but its manifest.
    let range = sa.bytes_stored - 4096..sa.bytes_stored;
    assert!(range.contains(&dry.reclaimable_bytes), "{dry:?} {sa:?}");
    assert_eq!(object_count(place), files - 1, "a dry run changes nothing");

    let long = GcOptions {
        grace: Duration::from_secs(3600),
        ..GcOptions::default()
    };
    let marked = vault.gc(&long).unwrap();
    assert_eq!(marked.marked_packs, dry.marked_packs);
    assert_eq!(marked.marked_bytes, dry.marked_bytes);
    let waiting = vault.gc(&long).unwrap();
    assert!(waiting.sweep_due_unix_s.is_some(), "{waiting:?}");
    assert_eq!((waiting.deleted_packs, waiting.marked_packs), (0, 0));
    let preview = vault
        .gc(&GcOptions {
            dry_run: true,
            ..long.clone()
        })
        .unwrap();
    assert_eq!(preview.deleted_packs, marked.marked_packs, "{preview:?}");

    let swept = vault.gc(&now_gc()).unwrap();
    assert_eq!(swept.deleted_packs, marked.marked_packs, "{swept:?}");
    assert_eq!(swept.deleted_bytes, marked.marked_bytes);
    assert_eq!(swept.rescued_packs, 0);
    assert_eq!(swept.marked_packs, 0, "nothing unused is left");
    assert!(restore(&vault, 2).unwrap().0 == b.bytes);
    let again = vault.gc(&now_gc()).unwrap();
    assert_eq!((again.marked_packs, again.deleted_packs), (0, 0));
    assert_eq!(again.reclaimable_bytes, 0, "{again:?}");
    // A fresh copy of the deleted image stores its chunks again, and restores.
    let other = Vault::open(&spec, None).unwrap();
    let s = copy(&other, 3, &a, None).unwrap();
    assert_eq!(s.chunks_new, sa.chunks_new, "{s:?}");
    assert!(restore(&other, 3).unwrap().0 == a.bytes);
}
both!(gc_removes_only_unused_packs_after_grace);

/// A copy that began before gc marked the packs it dedups against, marked at every step of
/// the copy: the sweep after it lands keeps every pack the copy uses.
fn gc_marking_at_every_step_of_a_running_copy(place: &Place) {
    let image = Image::new(24, 100, 23);
    for k in 0..=image.chunks() {
        let vault = create(&sub_spec(place, &format!("mark{k}")));
        copy(&vault, 1, &image, None).unwrap();
        vault.delete_manifest(1).unwrap();
        let mut w = vault.begin_copy(2, image.bytes.len() as u64, None).unwrap();
        for i in 0..image.chunks() {
            if i == k {
                assert!(vault.gc(&now_gc()).unwrap().marked_packs > 0, "step {k}");
            }
            step(&mut w, &image, i);
        }
        if k == image.chunks() {
            assert!(vault.gc(&now_gc()).unwrap().marked_packs > 0);
        }
        let stats = w.finish(vec![]).unwrap();
        assert_eq!(
            stats.chunks_new, 0,
            "step {k}: dedup against the unused packs"
        );
        let swept = vault.gc(&now_gc()).unwrap();
        assert_eq!(swept.deleted_packs, 0, "step {k}: {swept:?}");
        assert!(swept.rescued_packs > 0, "step {k}: {swept:?}");
        assert!(restore(&vault, 2).unwrap().0 == image.bytes, "step {k}");
    }
}
both!(gc_marking_at_every_step_of_a_running_copy);

/// A copy that began after gc marked packs never uses them, so the sweep (run at every
/// step of the copy) deletes them under it and the copy still lands and restores.
fn gc_sweeping_at_every_step_of_a_running_copy(place: &Place) {
    let image = Image::new(24, 100, 24);
    for k in 0..=image.chunks() {
        let vault = create(&sub_spec(place, &format!("sweep{k}")));
        let first = copy(&vault, 1, &image, None).unwrap();
        vault.delete_manifest(1).unwrap();
        let marked = vault.gc(&now_gc()).unwrap();
        assert!(marked.marked_packs > 0);
        let mut w = vault.begin_copy(2, image.bytes.len() as u64, None).unwrap();
        let mut swept = None;
        for i in 0..image.chunks() {
            if i == k {
                swept = Some(vault.gc(&now_gc()).unwrap());
            }
            step(&mut w, &image, i);
        }
        if k == image.chunks() {
            swept = Some(vault.gc(&now_gc()).unwrap());
        }
        let swept = swept.unwrap();
        assert_eq!(swept.deleted_packs, marked.marked_packs, "step {k}");
        let stats = w.finish(vec![]).unwrap();
        assert_eq!(
            stats.chunks_new, first.chunks_new,
            "step {k}: marked packs unused"
        );
        let after = vault.gc(&now_gc()).unwrap();
        assert_eq!(after.deleted_packs, 0, "step {k}: {after:?}");
        assert!(restore(&vault, 2).unwrap().0 == image.bytes, "step {k}");
    }
}
both!(gc_sweeping_at_every_step_of_a_running_copy);

/// An incremental copy whose base was deleted and whose packs are marked is refused
/// clearly (the caller copies in full); with a live base it works.
fn base_in_marked_packs_is_refused(place: &Place) {
    let vault = create(&sub_spec(place, "v"));
    let image = Image::new(30, 0, 25);
    copy(&vault, 1, &image, None).unwrap();
    let base = vault.read_manifest(1).unwrap();
    vault.delete_manifest(1).unwrap();
    vault.gc(&now_gc()).unwrap();
    let err = copy(&vault, 2, &image, Some((&base, &[]))).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidCopy(m) if m.contains("base backup 1")),
        "{err}"
    );
    copy(&vault, 2, &image, None).unwrap();
    let base = vault.read_manifest(2).unwrap();
    copy(&vault, 3, &image, Some((&base, &[]))).unwrap();
    assert!(restore(&vault, 3).unwrap().0 == image.bytes);
}
both!(base_in_marked_packs_is_refused);

fn objects(store: &Arc<dyn ObjectStore>, dir: &str) -> Vec<(String, u64)> {
    use futures::TryStreamExt;
    let mut out: Vec<(String, u64)> = block_on(
        store
            .list(Some(&ObjPath::from(dir)))
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect(),
    )
    .unwrap();
    out.sort();
    out
}

/// Flips one byte of an object through the store (as bit rot or an attacker would).
fn flip(store: &Arc<dyn ObjectStore>, name: &str, at: usize) {
    let path = ObjPath::from(name);
    let mut bytes = block_on(async { store.get(&path).await?.bytes().await })
        .unwrap()
        .to_vec();
    bytes[at] ^= 0x20;
    block_on(store.put(&path, PutPayload::from(bytes))).unwrap();
}

fn full() -> VerifyOptions {
    VerifyOptions {
        data_budget_bytes: Some(u64::MAX),
    }
}

/// A flipped byte in a pack is found by the data check (not by the structural one) and
/// named with its chunk and the backups it breaks; a missing index is found structurally.
fn verify_names_damaged_chunks_and_backups(place: &Place) {
    let spec = sub_spec(place, "v");
    let vault = create(&spec);
    let image = Image::new(40, 0, 26);
    copy(&vault, 1, &image, None).unwrap();
    copy(&vault, 2, &image, None).unwrap(); // all deduped: both use every pack
    let clean = vault.verify(&full()).unwrap();
    assert!(clean.clean(), "{clean:?}");
    assert_eq!((clean.manifests, clean.packs_never_checked), (2, 0));
    assert_eq!(clean.packs_read, clean.packs);

    let store = spec.build_store(false).unwrap();
    let packs = objects(&store, "packs");
    let (victim, len) = packs[packs.len() / 2].clone();
    flip(&store, &victim, len as usize - 10); // inside the pack's last blob
    let structural = vault.verify(&VerifyOptions::default()).unwrap();
    assert!(
        structural.clean() && structural.bytes_read == 0,
        "{structural:?}"
    );
    let report = vault.verify(&full()).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    let d = &report.damage[0];
    assert_eq!(d.object, victim);
    assert!(d.chunk.as_ref().is_some_and(|c| c.len() == 64), "{d:?}");
    assert_eq!(d.backups, vec![1, 2]);
    assert_eq!(
        report.packs_never_checked, 1,
        "a damaged pack keeps no date"
    );
    assert!(
        restore(&vault, 1).is_err(),
        "restore refuses the damaged chunk too"
    );

    let victim_id = victim.rsplit('/').next().unwrap();
    let index = format!("index/{victim_id}");
    block_on(store.delete(&ObjPath::from(index.as_str()))).unwrap();
    let report = vault.verify(&VerifyOptions::default()).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].object, index);
    assert_eq!(report.damage[0].backups, vec![1, 2]);
}
both!(verify_names_damaged_chunks_and_backups);

/// A budgeted verify reads at most its budget plus one pack, least recently checked packs
/// first, so repeated runs cover the whole vault; status reports the runs.
fn budgeted_verify_covers_the_vault(place: &Place) {
    let spec = sub_spec(place, "v");
    drop(create(&spec));
    let store = spec.build_store(false).unwrap();
    let counted = Arc::new(common::FailingStore::new(store.clone(), u64::MAX));
    let mut vault = Vault::open_in(counted.clone(), &spec.url, None).unwrap();
    vault.set_tuning(tiny_tuning());
    let image = Image::new(120, 0, 27);
    copy(&vault, 1, &image, None).unwrap();
    let packs = objects(&store, "packs");
    let total: u64 = packs.iter().map(|p| p.1).sum();
    let largest = packs.iter().map(|p| p.1).max().unwrap();
    // What a run reads besides pack data: indexes (twice), the manifest, the state.
    let small: u64 = ["index", "manifests", "upkeep"]
        .iter()
        .flat_map(|d| objects(&store, d))
        .map(|o| o.1)
        .sum();
    let before = vault.status().unwrap();
    assert_eq!(before.packs_never_checked, packs.len() as u64);
    assert_eq!(
        (before.last_verify_unix_s, before.last_gc_unix_s),
        (None, None)
    );
    let budget = total / 5;
    let mut read = 0;
    let mut runs = 0;
    loop {
        let at = counted.read_bytes();
        let r = vault
            .verify(&VerifyOptions {
                data_budget_bytes: Some(budget),
            })
            .unwrap();
        assert!(r.clean(), "{r:?}");
        let fetched = counted.read_bytes() - at;
        assert!(
            fetched <= budget + largest + 2 * small,
            "{fetched} for {budget}"
        );
        assert!(r.bytes_read <= budget + largest, "{r:?} budget {budget}");
        assert!(r.bytes_read >= budget.min(total - read), "{r:?}");
        read += r.bytes_read;
        runs += 1;
        if r.packs_never_checked == 0 {
            break;
        }
        assert!(runs < 8, "{r:?}");
    }
    // The last run spends what its budget has left on the oldest checked packs.
    assert!(
        read >= total && read <= total + budget + largest,
        "{read} of {total}"
    );
    assert!((5..=6).contains(&runs), "{runs}");
    // The next run starts again with the least recently checked packs.
    let next = vault
        .verify(&VerifyOptions {
            data_budget_bytes: Some(1),
        })
        .unwrap();
    assert_eq!(next.packs_read, 1);
    vault.delete_manifest(1).unwrap();
    vault.gc(&now_gc()).unwrap();
    let s = vault.status().unwrap();
    assert!(
        s.last_verify_unix_s.is_some() && s.last_gc_unix_s.is_some(),
        "{s:?}"
    );
    assert_eq!(
        (s.manifests, s.packs, s.packs_never_checked),
        (0, packs.len() as u64, 0)
    );
    assert_eq!(s.unique_bytes, Some(0));
    assert_eq!(
        s.reclaimable_bytes,
        Some(total + objects(&store, "index").iter().map(|i| i.1).sum::<u64>())
    );
    assert_eq!(s.gc_marked_packs, packs.len() as u64);
    assert!(s.bytes_stored > total && s.objects > 2 * s.packs, "{s:?}");
}
both!(budgeted_verify_covers_the_vault);

/// One writer per vault prefix: a second array is refused with the holder's name; the
/// holder renews and re-takes its own lease; after release or expiry another array takes
/// it, and the old holder's renewal then fails naming the new one. Of racing takers,
/// exactly one wins.
fn lease_keeps_one_writer_per_prefix(place: &Place) {
    let spec = sub_spec(place, "v");
    let a = create(&spec);
    let b = Vault::open(&spec, None).unwrap();
    let minute = Duration::from_secs(60);
    let mut held = a.acquire_lease("array-a", minute).unwrap();
    let err = b.acquire_lease("array-b", minute).unwrap_err();
    assert!(
        matches!(&err, LeaseError::Held { holder, .. } if holder == "array-a"),
        "{err}"
    );
    assert!(err.to_string().contains("array-a"), "{err}");
    a.renew_lease(&mut held, minute).unwrap();
    let again = a.acquire_lease("array-a", minute).unwrap();
    assert!(again.generation > held.generation);
    a.release_lease(again).unwrap();
    let mut by_b = b.acquire_lease("array-b", Duration::ZERO).unwrap();
    let err = a.renew_lease(&mut held, minute).unwrap_err();
    assert!(
        matches!(&err, LeaseError::Lost { holder } if holder == "array-b"),
        "{err}"
    );
    // array-b's lease (no time to live) has expired: array-a may take the vault.
    let by_a = a.acquire_lease("array-a", minute).unwrap();
    assert!(b.renew_lease(&mut by_b, minute).is_err());
    a.release_lease(by_a).unwrap();
    let names: Vec<_> = objects(&spec.build_store(false).unwrap(), "upkeep/lease");
    assert_eq!(names.len(), 1, "older generations are removed: {names:?}");
    // Concurrent takers rely on the store's create-if-absent being atomic, as S3's is;
    // the test server's is not (s3s-fs 0.14 checks for the object, then writes it).
    if place.backend == common::Backend::S3 {
        return;
    }

    let winners: Vec<bool> = std::thread::scope(|s| {
        let takers: Vec<_> = (0..4)
            .map(|i| {
                let spec = &spec;
                s.spawn(move || {
                    let v = Vault::open(spec, None).unwrap();
                    v.acquire_lease(&format!("racer-{i}"), minute).is_ok()
                })
            })
            .collect();
        takers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
}
both!(lease_keeps_one_writer_per_prefix);

/// Behind a proxy that answers one request in four with a 503 or drops the connection
/// after reading the request, every operation rides the faults out by retrying with
/// backoff: copies, an incremental, restores, gc, a full verify and the lease.
#[test]
fn s3_retries_ride_out_503s_and_dropped_connections() {
    common::with_place(common::Backend::S3, |place| {
        let port = place.server.as_ref().unwrap().port;
        let proxy = common::proxy::FaultProxy::start(port, 14, 4, false);
        let spec = VaultSpec {
            endpoint: Some(format!("http://127.0.0.1:{}", proxy.port)),
            ..sub_spec(place, "faulty")
        };
        let vault = create(&spec);
        let mut image = Image::new(150, 10, 28);
        let first = image.clone();
        copy(&vault, 1, &first, None).unwrap();
        let changed = image.change(10, 3);
        let base = vault.read_manifest(1).unwrap();
        copy(&vault, 2, &image, Some((&base, &changed))).unwrap();
        assert!(restore(&vault, 1).unwrap().0 == first.bytes);
        assert!(restore(&vault, 2).unwrap().0 == image.bytes);
        vault.delete_manifest(2).unwrap(); // its new chunks' packs become unused
        vault.gc(&now_gc()).unwrap();
        assert!(vault.gc(&now_gc()).unwrap().deleted_packs > 0);
        assert!(vault.verify(&full()).unwrap().clean());
        assert!(restore(&vault, 1).unwrap().0 == first.bytes);
        vault
            .acquire_lease("array-a", Duration::from_secs(60))
            .unwrap();
        assert!(proxy.faults() >= 20, "{} faults", proxy.faults());
        eprintln!("{} faults injected and retried", proxy.faults());
    });
}

/// A manifest that cannot be read could name any pack: gc stops and deletes nothing, and
/// verify names the manifest as damage to its backup.
fn unreadable_manifest_stops_gc_and_is_named(place: &Place) {
    let spec = sub_spec(place, "v");
    let vault = create(&spec);
    let image = Image::new(30, 0, 29);
    copy(&vault, 1, &image, None).unwrap();
    copy(&vault, 2, &Image::new(30, 0, 30), None).unwrap();
    vault.delete_manifest(2).unwrap();
    let store = spec.build_store(false).unwrap();
    flip(&store, "manifests/0000000000000001", 40);
    let before = objects(&store, "");
    let err = vault.gc(&now_gc()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(objects(&store, ""), before, "nothing written or deleted");
    let report = vault.verify(&VerifyOptions::default()).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].object, "manifests/0000000000000001");
    assert_eq!(report.damage[0].backups, vec![1]);
}
both!(unreadable_manifest_stops_gc_and_is_named);

/// Behind a harsh proxy (503s, drops, responses cut half-way, resets after the server
/// acted; one request in five), copies, restores, deletions and gc runs each finish or fail
/// with an error; afterwards, read directly, every backup in the vault restores bit-exact
/// and a full verify is clean.
#[test]
fn s3_faults_anywhere_leave_complete_backups_whole() {
    common::with_place(common::Backend::S3, |place| {
        let port = place.server.as_ref().unwrap().port;
        let proxy = common::proxy::FaultProxy::start(port, 99, 5, true);
        let direct = sub_spec(place, "harsh");
        drop(create(&direct));
        let spec = VaultSpec {
            endpoint: Some(format!("http://127.0.0.1:{}", proxy.port)),
            ..direct.clone()
        };
        let mut vault = Vault::open(&spec, None).unwrap();
        vault.set_tuning(tiny_tuning());
        let mut image = Image::new(60, 10, 31);
        let mut images = std::collections::HashMap::new();
        let (mut ok, mut failed) = (0, 0);
        let mut base: Option<(arca_vault::Manifest, Vec<usize>)> = None;
        for id in 1..=12u64 {
            let changed = image.change(4, id);
            let given = base.as_ref().map(|(m, _)| (m, changed.as_slice()));
            images.insert(id, image.clone());
            match copy(&vault, id, &image, given) {
                Ok(_) => ok += 1,
                Err(e) => {
                    eprintln!("copy {id} failed: {e}");
                    failed += 1;
                }
            }
            base = vault.read_manifest(id).ok().map(|m| (m, vec![]));
            if let Ok((bytes, _)) = restore(&vault, id) {
                assert!(bytes == image.bytes, "backup {id} restored through faults");
            }
            if id % 3 == 0 {
                let _ = vault.delete_manifest(id - 2);
                let _ = vault.gc(&now_gc());
            }
        }
        eprintln!(
            "{ok} copies landed, {failed} failed, {} faults",
            proxy.faults()
        );
        assert!(ok >= 4 && proxy.faults() >= 20, "{ok} {}", proxy.faults());
        let clean = Vault::open(&direct, None).unwrap();
        let ids = clean.list_manifests().unwrap();
        assert!(!ids.is_empty());
        for id in &ids {
            let (bytes, _) = restore(&clean, *id).unwrap();
            assert!(bytes == images[id].bytes, "backup {id}");
        }
        for _ in 0..2 {
            clean.gc(&now_gc()).unwrap();
        }
        let report = clean.verify(&full()).unwrap();
        assert!(report.clean(), "{report:?}");
        for id in &ids {
            assert!(restore(&clean, *id).unwrap().0 == images[id].bytes);
        }
    });
}
