//! Deleting a volume that NBD hosts have open needs force, which disconnects them.

use serde_json::json;

use crate::{
    Daemon, G, assert_error, assert_error_mentions, create_volume, delete, get, nbd, post,
};

#[test]
fn deleting_a_volume_hosts_use_needs_force_which_disconnects_them() {
    let d = Daemon::start();
    create_volume(&d, "v", G);
    assert_eq!(
        post(&d, "/v1/volumes/v/snapshots", json!({"name": "s"})).0,
        201
    );
    let mut on_volume = nbd::connect(&d.nbd, "v");
    let mut on_snapshot = nbd::connect(&d.nbd, "v@s");

    // The snapshot's host counts when the delete takes the snapshot too.
    let r = delete(&d, "/v1/volumes/v?with_snapshots=true");
    assert_error(&r, 409, "busy");
    let msg = r.1["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("volume v has 2 host connection(s)") && msg.contains("with force"),
        "{msg}"
    );
    // A delete the pool refuses anyway (snapshots) says so and disconnects nobody, forced or
    // not.
    let r = delete(&d, "/v1/volumes/v?force=true");
    assert_error_mentions(&r, 409, "busy", "snapshot");
    assert_error(&delete(&d, "/v1/volumes/v?force=maybe"), 400, "invalid");
    assert_eq!(get(&d, "/v1/volumes/v").0, 200);
    nbd::assert_open(&mut on_volume, "the volume's host");
    nbd::assert_open(&mut on_snapshot, "the snapshot's host");

    // Forced: both are disconnected, then the volume and its snapshot go.
    assert_eq!(
        delete(&d, "/v1/volumes/v?with_snapshots=true&force=true").0,
        204
    );
    nbd::assert_closed(&mut on_volume, "the volume's host");
    nbd::assert_closed(&mut on_snapshot, "the snapshot's host");
    assert_error(&get(&d, "/v1/volumes/v"), 404, "not_found");

    // Without snapshots: one host, refused, then forced.
    create_volume(&d, "w", G);
    let mut host = nbd::connect(&d.nbd, "w");
    let r = delete(&d, "/v1/volumes/w");
    assert_error_mentions(&r, 409, "busy", "1 host connection(s)");
    assert_eq!(delete(&d, "/v1/volumes/w?force=true").0, 204);
    nbd::assert_closed(&mut host, "w's host");
    d.stop();
}
