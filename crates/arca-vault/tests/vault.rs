//! The vault against a directory and a real S3 server (s3s-fs on loopback): round trips,
//! incremental copies, holes, dedup, encryption, keys, damage and failed copies.

mod common;

use std::sync::Arc;

use arca_vault::{ChunkContent, Error, Vault, VaultKey, VaultSpec};
use common::{CHUNK, FailingStore, Image, Place, block_on, copy, restore, small_tuning};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn create(spec: &VaultSpec, key: Option<&VaultKey>) -> Vault {
    let mut v = Vault::create(spec, key, CHUNK).unwrap();
    v.set_tuning(small_tuning());
    v
}

fn open(spec: &VaultSpec, key: Option<&VaultKey>) -> Vault {
    let mut v = Vault::open(spec, key).unwrap();
    v.set_tuning(small_tuning());
    v
}

fn store(spec: &VaultSpec) -> Arc<dyn ObjectStore> {
    spec.build_store(false).unwrap()
}

fn names(spec: &VaultSpec, dir: &str) -> Vec<String> {
    let s = store(spec);
    block_on(async {
        use futures::TryStreamExt;
        s.list(Some(&ObjPath::from(dir)))
            .map_ok(|m| m.location.to_string())
            .try_collect::<Vec<_>>()
            .await
    })
    .unwrap()
}

/// Copy a full image, change 1 % of its chunks, copy incrementally (unchanged chunks from
/// the base manifest), and restore both generations bit-exact from a freshly opened vault.
fn full_then_incremental_round_trip(place: &Place) {
    let vault = create(&place.spec, None);
    let mut image = Image::new(1200, 100, 1);
    let gen1 = image.clone();
    let s1 = copy(&vault, 1, &gen1, None).unwrap();
    let data_chunks = (0..image.chunks()).filter(|&i| !image.holes[i]).count() as u64;
    assert_eq!(
        s1.chunks_new + s1.chunks_reused + s1.chunks_hole,
        image.chunks() as u64
    );
    assert!(
        s1.chunks_hole > image.holes.iter().filter(|h| **h).count() as u64,
        "zero data is a hole"
    );
    assert!(
        s1.bytes_stored > s1.bytes_new,
        "random data does not shrink; headers add"
    );
    assert_eq!(s1.manifest, "manifests/0000000000000001");

    let changed = image.change(12, 7);
    let base = vault.read_manifest(1).unwrap();
    let s2 = copy(&vault, 2, &image, Some((&base, &changed))).unwrap();
    let changed_bytes = (changed.len() * CHUNK as usize) as u64;
    assert_eq!(
        s2.bytes_given, changed_bytes,
        "only the changed chunks were read"
    );
    assert_eq!(s2.bytes_new, changed_bytes);
    assert_eq!(s2.chunks_new, changed.len() as u64);
    assert!(s2.bytes_stored < changed_bytes + 64 * 1024, "{s2:?}");
    assert_eq!(
        s2.chunks_reused + s2.chunks_new + s2.chunks_hole,
        image.chunks() as u64
    );
    assert!(s2.chunks_reused + s2.chunks_new <= data_chunks);

    let reopened = open(&place.spec, None);
    assert_eq!(reopened.list_manifests().unwrap(), vec![1, 2]);
    let (b1, _) = restore(&reopened, 1).unwrap();
    let (b2, _) = restore(&reopened, 2).unwrap();
    assert!(b1 == gen1.bytes, "generation 1 restores bit-exact");
    assert!(b2 == image.bytes, "generation 2 restores bit-exact");
    let m2 = reopened.read_manifest(2).unwrap();
    assert_eq!(m2.meta, b"record of backup 2");
    assert_eq!(m2.image_size, image.bytes.len() as u64);
    assert_ne!(m2.root, base.root);

    // Reads are counted; a manifest restricted to the changed chunks fetches only those, and
    // the vault's chunk id of their data is the manifest's.
    let before = reopened.reads();
    let only = m2.only(|i| changed.binary_search(&(i as usize)).is_ok());
    let mut fetched = 0;
    for c in reopened.reader(&only) {
        let c = c.unwrap();
        if let ChunkContent::Data(d) = &c.content {
            assert_eq!(reopened.chunk_id(d), m2.chunk_id(c.index).unwrap());
            fetched += d.len() as u64;
        }
    }
    assert_eq!(fetched, changed_bytes);
    let after = reopened.reads();
    assert!(after.get_requests > before.get_requests);
    assert!(after.get_requests - before.get_requests <= changed.len() as u64);
    assert!(after.bytes - before.bytes >= changed_bytes);
    assert!(m2.chunk_id(m2.chunk_count()).is_none());
}
both!(full_then_incremental_round_trip);

/// Holes given as holes and all-zero data come back as holes, never as stored data.
fn holes_stay_holes(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(300, 0, 2);
    let stats = copy(&vault, 5, &image, None).unwrap();
    let (bytes, holes) = restore(&vault, 5).unwrap();
    assert!(bytes == image.bytes);
    for (i, &restored_hole) in holes.iter().enumerate() {
        let zero = image.bytes[common::range(image.bytes.len(), i)]
            .iter()
            .all(|&b| b == 0);
        assert_eq!(restored_hole, zero, "chunk {i}");
        if image.holes[i] {
            assert!(restored_hole);
        }
    }
    assert_eq!(
        stats.chunks_hole,
        holes.iter().filter(|h| **h).count() as u64
    );
    let m = vault.read_manifest(5).unwrap();
    assert_eq!(m.hole_chunks(), stats.chunks_hole);
    // An image that is all hole stores no pack at all.
    let empty = Image {
        bytes: vec![0; 64 * CHUNK as usize],
        holes: vec![true; 64],
    };
    let s = copy(&vault, 6, &empty, None).unwrap();
    assert_eq!((s.chunks_new, s.put_requests), (0, 1), "{s:?}");
}
both!(holes_stay_holes);

/// Two volumes with the same data (a clone): the second copy stores nothing new, even from
/// another Vault instance (the index is read back from the vault).
fn dedup_across_volumes(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(500, 10, 3);
    let first = copy(&vault, 10, &image, None).unwrap();
    assert!(first.chunks_new > 0);
    let other = open(&place.spec, None);
    let second = copy(&other, 11, &image, None).unwrap();
    assert_eq!((second.chunks_new, second.bytes_new), (0, 0), "{second:?}");
    assert_eq!(second.chunks_reused, first.chunks_new + first.chunks_reused);
    assert_eq!(second.put_requests, 1, "only the manifest");
    assert_eq!(second.bytes_given, first.bytes_given);
    assert!(restore(&other, 11).unwrap().0 == image.bytes);
    // Repeated data inside one copy is stored once too.
    let mut same = Image::new(40, 0, 4);
    let first_chunk = same.bytes[..CHUNK as usize].to_vec();
    for i in 0..40 {
        same.holes[i] = false;
        let r = common::range(same.bytes.len(), i);
        same.bytes[r].copy_from_slice(&first_chunk);
    }
    let s = copy(&vault, 12, &same, None).unwrap();
    assert_eq!((s.chunks_new, s.chunks_reused), (1, 39), "{s:?}");
    assert_eq!(vault.info().indexed_chunks, first.chunks_new + 1);
}
both!(dedup_across_volumes);

const PATTERN: &[u8] = b"ARCA-PLAINTEXT-PATTERN-0123456789";

fn pattern_image() -> Image {
    let mut image = Image::new(200, 0, 5);
    for i in (0..200).step_by(3) {
        let r = common::range(image.bytes.len(), i);
        for (k, b) in image.bytes[r].iter_mut().enumerate() {
            *b = PATTERN[k % PATTERN.len()];
        }
        image.holes[i] = false;
    }
    image
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// No object of an encrypted vault reveals a written pattern (in data or in the record);
/// the same scan does find the record in a vault without encryption.
fn encryption_hides_written_patterns(place: &Place) {
    let key = VaultKey::generate();
    let vault = create(&place.spec, Some(&key));
    assert!(vault.info().encrypted);
    let image = pattern_image();
    let mut w = vault.begin_copy(1, image.bytes.len() as u64, None).unwrap();
    for i in 0..image.chunks() {
        w.data(i as u64, &image.bytes[common::range(image.bytes.len(), i)])
            .unwrap();
    }
    w.finish(PATTERN.repeat(4)).unwrap();
    let files = place.all_files();
    assert!(
        files.len() >= 4,
        "config, pack, index, manifest: {files:?}",
        files = files.len()
    );
    let short = &PATTERN[..12];
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, short),
            "{} holds plaintext",
            path.display()
        );
        assert!(
            !contains(bytes, &key.as_bytes()[..]),
            "{} holds the key",
            path.display()
        );
        assert!(
            !contains(bytes, key.to_hex().as_bytes()),
            "{} holds the key",
            path.display()
        );
    }
    let (bytes, _) = restore(&open(&place.spec, Some(&key)), 1).unwrap();
    assert!(bytes == image.bytes);
    assert_eq!(
        open(&place.spec, Some(&key)).read_manifest(1).unwrap().meta,
        PATTERN.repeat(4)
    );
}
both!(encryption_hides_written_patterns);

fn plain_vault_scan_finds_the_record(place: &Place) {
    let vault = create(&place.spec, None);
    let image = pattern_image();
    let mut w = vault.begin_copy(1, image.bytes.len() as u64, None).unwrap();
    for i in 0..image.chunks() {
        w.data(i as u64, &image.bytes[common::range(image.bytes.len(), i)])
            .unwrap();
    }
    w.finish(PATTERN.to_vec()).unwrap();
    assert!(
        place
            .all_files()
            .iter()
            .any(|(_, b)| contains(b, &PATTERN[..12])),
        "the scan can fail"
    );
}
both!(plain_vault_scan_finds_the_record);

/// Wrong, missing and unneeded keys are clear errors that never show the key.
fn wrong_or_missing_key_is_a_clear_error(place: &Place) {
    let key = VaultKey::generate();
    drop(create(&place.spec, Some(&key)));
    let wrong = VaultKey::generate();
    let err = Vault::open(&place.spec, Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::WrongKey(_)), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&wrong.to_hex()) && !shown.contains(&key.to_hex()));
    assert!(!shown.contains(common::SECRET_KEY), "{shown}");
    assert!(matches!(
        Vault::open(&place.spec, None).unwrap_err(),
        Error::KeyMissing(_)
    ));
    assert!(Vault::open(&place.spec, Some(&key)).is_ok());
}
both!(wrong_or_missing_key_is_a_clear_error);

fn unneeded_key_and_existing_vault_are_refused(place: &Place) {
    assert!(matches!(
        Vault::open(&place.spec, None).unwrap_err(),
        Error::NotAVault(_)
    ));
    drop(create(&place.spec, None));
    assert!(matches!(
        Vault::open(&place.spec, Some(&VaultKey::generate())).unwrap_err(),
        Error::KeyNotNeeded(_)
    ));
    let again = Vault::create(&place.spec, None, CHUNK).unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    let v = open(&place.spec, None);
    assert_eq!(v.chunk_size(), CHUNK);
    assert_eq!(v.info().format_version, arca_vault::format::FORMAT_VERSION);
}
both!(unneeded_key_and_existing_vault_are_refused);

fn overwrite(spec: &VaultSpec, name: &str, bytes: Vec<u8>) {
    let s = store(spec);
    block_on(s.put(&ObjPath::from(name), PutPayload::from(bytes))).unwrap();
}

fn read_object(spec: &VaultSpec, name: &str) -> Vec<u8> {
    let s = store(spec);
    block_on(async { s.get(&ObjPath::from(name)).await?.bytes().await })
        .unwrap()
        .to_vec()
}

/// A pack missing, altered or truncated, or a manifest altered: reading fails naming the
/// backup and the object, and never yields a chunk of wrong data.
fn missing_or_altered_objects_are_named(place: &Place) {
    for (n, key) in [None, Some(VaultKey::generate())].into_iter().enumerate() {
        let mut spec = place.spec.clone();
        spec.url = format!("{}-{n}", spec.url);
        let spec = &spec;
        let vault = create(spec, key.as_ref());
        let image = Image::new(400, 0, 6);
        copy(&vault, 42, &image, None).unwrap();
        let m = vault.read_manifest(42).unwrap();
        let pack = m.pack_names()[1].clone();
        let original = read_object(spec, &pack);

        let check = |what: &str, expect_missing: bool| {
            let m = vault.read_manifest(42).unwrap();
            let mut good = 0;
            let mut failure = None;
            for c in vault.reader(&m) {
                match c {
                    Ok(c) => {
                        if let ChunkContent::Data(d) = &c.content {
                            let r = common::range(image.bytes.len(), c.index as usize);
                            assert!(
                                d[..] == image.bytes[r],
                                "{what}: chunk {} is wrong data",
                                c.index
                            );
                        }
                        good += 1;
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let e = failure.unwrap_or_else(|| panic!("{what}: read all {good} chunks"));
            let text = e.to_string();
            assert!(
                text.contains("backup 42") && text.contains(&pack),
                "{what}: {text}"
            );
            match e {
                Error::MissingObject {
                    backup_id: Some(42),
                    ..
                } => assert!(expect_missing, "{what}"),
                Error::Corrupt {
                    backup_id: Some(42),
                    ..
                } => assert!(!expect_missing, "{what}: {text}"),
                other => panic!("{what}: {other:?}"),
            }
        };

        let mut flipped = original.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        overwrite(spec, &pack, flipped);
        check("a flipped byte", false);
        overwrite(spec, &pack, original[..original.len() - 100].to_vec());
        check("a truncated pack", false);
        let s = store(spec);
        block_on(s.delete(&ObjPath::from(pack.as_str()))).unwrap();
        check("a missing pack", true);

        let name = "manifests/000000000000002a";
        let mut manifest = read_object(spec, name);
        let at = manifest.len() - 40;
        manifest[at] ^= 0x80;
        overwrite(spec, name, manifest);
        let e = vault.read_manifest(42).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Corrupt {
                    backup_id: Some(42),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains(name), "{e}");
        // Another backup's manifest under this name fails too (names are bound in).
        copy(&vault, 43, &Image::new(3, 0, 9), None).unwrap();
        overwrite(spec, name, read_object(spec, "manifests/000000000000002b"));
        assert!(matches!(
            vault.read_manifest(42).unwrap_err(),
            Error::Corrupt { .. }
        ));
    }
}
both!(missing_or_altered_objects_are_named);

/// A copy whose Nth write fails leaves no manifest; a retry reuses the packs it completed.
fn failed_copy_is_invisible_and_retry_reuses_uploads(place: &Place) {
    drop(create(&place.spec, None));
    let image = Image::new(1000, 0, 8);
    let failing = Arc::new(FailingStore::new(store(&place.spec), 14));
    let mut vault = Vault::open_in(failing.clone(), &place.spec.url, None).unwrap();
    vault.set_tuning(small_tuning());
    let err = copy(&vault, 7, &image, None).unwrap_err();
    assert!(err.to_string().contains("injected write failure"), "{err}");
    assert!(failing.writes() >= 14);
    drop(vault);
    let fresh = open(&place.spec, None);
    assert!(
        fresh.list_manifests().unwrap().is_empty(),
        "no manifest after a failed copy"
    );
    assert!(matches!(
        fresh.read_manifest(7).unwrap_err(),
        Error::NoManifest(7)
    ));
    let packs_before = names(&place.spec, "index").len();
    assert!(
        packs_before >= 3,
        "whole packs were uploaded before the failure: {packs_before}"
    );

    let retry = copy(&fresh, 7, &image, None).unwrap();
    assert!(retry.chunks_reused > 0, "{retry:?}");
    let total = image.bytes.len() as u64;
    assert!(
        retry.bytes_new < total - packs_before as u64 * (200 << 10),
        "{retry:?}"
    );
    assert!(restore(&fresh, 7).unwrap().0 == image.bytes);
    assert_eq!(fresh.list_manifests().unwrap(), vec![7]);
}
both!(failed_copy_is_invisible_and_retry_reuses_uploads);

/// Deleting a manifest removes that backup only; copying a backup twice is refused.
fn delete_manifest_and_duplicate_copy(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(100, 0, 10);
    copy(&vault, 1, &image, None).unwrap();
    copy(&vault, 2, &image, None).unwrap();
    assert!(matches!(
        copy(&vault, 2, &image, None).unwrap_err(),
        Error::ManifestExists(2)
    ));
    vault.delete_manifest(1).unwrap();
    assert!(matches!(
        vault.delete_manifest(1).unwrap_err(),
        Error::NoManifest(1)
    ));
    assert_eq!(vault.list_manifests().unwrap(), vec![2]);
    assert!(
        restore(&vault, 2).unwrap().0 == image.bytes,
        "shared packs stay"
    );
}
both!(delete_manifest_and_duplicate_copy);

/// Driving a copy against its contract is an error, not a panic or a bad manifest.
fn copy_contract_violations_are_errors(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(10, 0, 11);
    let mut w = vault.begin_copy(3, image.bytes.len() as u64, None).unwrap();
    assert!(matches!(
        w.data(1, &image.bytes[..CHUNK as usize]),
        Err(Error::InvalidCopy(_))
    ));
    assert!(matches!(
        w.data(0, &image.bytes[..10]),
        Err(Error::InvalidCopy(_))
    ));
    assert!(matches!(w.same_as_base(0), Err(Error::InvalidCopy(_))));
    w.hole(0).unwrap();
    assert!(matches!(w.finish(vec![]), Err(Error::InvalidCopy(_))));
    assert!(vault.list_manifests().unwrap().is_empty());
}
both!(copy_contract_violations_are_errors);

/// Two copies of one backup racing: both pass the early check, the manifest's conditional
/// put lets exactly one finish (objects are written once, on S3 as on a directory).
fn racing_copies_of_one_backup_write_one_manifest(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(20, 0, 12);
    let other = Image::new(20, 0, 13);
    let start = |img: &Image| {
        let mut w = vault.begin_copy(9, img.bytes.len() as u64, None).unwrap();
        for i in 0..img.chunks() {
            w.data(i as u64, &img.bytes[common::range(img.bytes.len(), i)])
                .unwrap();
        }
        w
    };
    let first = start(&image);
    let second = start(&other);
    first.finish(b"first".to_vec()).unwrap();
    assert!(matches!(
        second.finish(b"second".to_vec()).unwrap_err(),
        Error::ManifestExists(9)
    ));
    assert_eq!(vault.read_manifest(9).unwrap().meta, b"first");
    assert!(restore(&vault, 9).unwrap().0 == image.bytes);
}
both!(racing_copies_of_one_backup_write_one_manifest);

/// A pack index that disappears after the vault loaded it (GC, damage) is not trusted for
/// dedup: the copy stores those chunks again instead of failing or pointing at nothing.
fn vanished_pack_index_is_not_used_for_dedup(place: &Place) {
    let vault = create(&place.spec, None);
    let image = Image::new(200, 0, 14);
    copy(&vault, 1, &image, None).unwrap();
    let fresh = open(&place.spec, None);
    fresh.load_index().unwrap();
    let indexes = names(&place.spec, "index");
    let s = store(&place.spec);
    block_on(s.delete(&ObjPath::from(indexes[0].as_str()))).unwrap();
    let stats = copy(&fresh, 2, &image, None).unwrap();
    assert!(stats.chunks_new > 0 && stats.chunks_reused > 0, "{stats:?}");
    assert!(restore(&fresh, 2).unwrap().0 == image.bytes);
}
both!(vanished_pack_index_is_not_used_for_dedup);

/// Wrong S3 credentials are a clear error that shows neither the secret nor the access key.
#[test]
fn wrong_s3_credentials_do_not_leak() {
    let Some(place) = Place::new(common::Backend::S3) else {
        return;
    };
    drop(create(&place.spec, None));
    let mut spec = place.spec.clone();
    spec.secret_key = Some("wrong-secret-key-value-0000000000".into());
    let err = Vault::open(&spec, None).unwrap_err();
    let shown = format!("{err} | {err:?} | {:?}", std::error::Error::source(&err));
    eprintln!("{shown}");
    assert!(!shown.contains("wrong-secret-key-value"), "{shown}");
    assert!(!shown.contains(common::SECRET_KEY), "{shown}");
    assert!(!shown.contains(common::ACCESS_KEY), "{shown}");
    assert!(shown.contains("arca-vault.config"), "{shown}");
}

/// A pack of several multipart parts (5 MiB, S3's smallest) round-trips on both backends.
fn multipart_packs_of_several_parts_round_trip(place: &Place) {
    let mut vault = Vault::create(&place.spec, None, CHUNK).unwrap();
    vault.set_tuning(arca_vault::Tuning {
        pack_target_bytes: 64 << 20,
        part_bytes: 5 << 20,
        ..arca_vault::Tuning::default()
    });
    let image = Image::new(3000, 0, 15);
    let stats = copy(&vault, 1, &image, None).unwrap();
    assert!(stats.bytes_new > 5 << 20, "{stats:?}");
    // create, two parts, complete, the index, the manifest
    assert_eq!(stats.put_requests, 6, "{stats:?}");
    assert_eq!(names(&place.spec, "packs").len(), 1);
    assert!(restore(&vault, 1).unwrap().0 == image.bytes);
}
both!(multipart_packs_of_several_parts_round_trip);
