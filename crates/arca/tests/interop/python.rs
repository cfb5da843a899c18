//! libnbd's Python binding (what nbdsh runs) against the daemon: unaligned I/O, errors the
//! server must return, read-only snapshots, payload limits, many requests in flight, block
//! status and structured replies.

use std::process::Command;

use crate::require;
use crate::util::{Daemon, MIB, Out, PYTHON, Serve, prepare_pool, run, run_cmd, tempdir};

/// Helpers every script starts with. Strict mode is turned off where a script sends requests
/// libnbd would otherwise refuse locally, so the daemon is the one that answers them.
const PRELUDE: &str = r##"
import errno, random, sys
import nbd

def connect(uri, strict=True):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    if not strict:
        h.set_strict_mode(0)
    return h

def expect_error(what, fn, *codes):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum in codes, "%s: got errno %s (%s), want one of %s" % (
            what, e.errnum, e.string, [errno.errorcode[c] for c in codes])
        return e.errnum
    raise AssertionError("%s: succeeded, want an error" % what)

def extents(h, offset, length, flags=0):
    """base:allocation runs (offset, length, flags) covering [offset, offset+length)."""
    runs = []
    pos = offset
    while pos < offset + length:
        got = []
        def cb(meta, off, entries, err):
            if meta == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(zip(entries[0::2], entries[1::2]))
            return 0
        h.block_status(offset + length - pos, pos, cb, flags)
        assert got, "block status returned no extent at %d" % pos
        for n, f in got:
            assert n > 0, "zero-length extent at %d" % pos
            runs.append((pos, n, f))
            pos += n
        if flags & nbd.CMD_FLAG_REQ_ONE:
            assert len(got) == 1, got
            break
    return runs

def is_hole(runs, off):
    for s, n, f in runs:
        if s <= off < s + n:
            return bool(f & nbd.STATE_HOLE)
    raise AssertionError("offset %d not covered by %r" % (off, runs))
"##;

/// Runs PRELUDE + `body` with Debian's python3; `args` become `sys.argv[1:]`.
fn script(body: &str, args: &[String]) -> Out {
    let code = format!("{PRELUDE}\n{body}\nprint('SCRIPT-OK')\n");
    let mut all = vec!["-c".to_string(), code];
    all.extend_from_slice(args);
    let out = run(PYTHON, &all);
    assert!(
        out.status.success() && out.stdout.contains("SCRIPT-OK"),
        "python script failed:\n{}",
        out.describe()
    );
    out
}

/// Runs `body` (see [`script`]) on export `vol` of a new daemon holding it at `size`; the
/// daemon must then stop cleanly.
fn script_on_vol(size: &str, body: &str) {
    let d = Daemon::with_volumes(&[&format!("vol={size}")]);
    script(body, &[d.uri("vol")]);
    d.stop();
}

#[test]
fn unaligned_io_matches_a_local_model() {
    require!("python3-nbd");
    script_on_vol(
        "4M",
        r##"
h = connect(sys.argv[1])
size = h.get_size()
assert size == 4 << 20, size
model = bytearray(size)
rng = random.Random(7)

def write(off, data, flags=0):
    h.pwrite(data, off, flags)
    model[off:off + len(data)] = data

# Edges first: odd lengths at odd offsets, across extent boundaries, the last byte.
for off, n in [(1, 1), (4095, 2), (65535, 3), (131071, 65538), (size - 1, 1), (size - 4097, 4097)]:
    write(off, rng.randbytes(n))
for i in range(150):
    off = rng.randrange(0, size)
    n = rng.randrange(1, min(200001, size - off + 1))
    op = rng.randrange(10)
    if op < 6:
        write(off, rng.randbytes(n), nbd.CMD_FLAG_FUA if op == 0 else 0)
    elif op < 8:
        h.zero(n, off, 0 if op == 6 else nbd.CMD_FLAG_NO_HOLE)
        model[off:off + n] = bytes(n)
    else:
        h.trim(n, off)
        model[off:off + n] = bytes(n)  # Arca reads trimmed ranges as zeros
    if i % 10 == 0:
        r = rng.randrange(0, size)
        m = rng.randrange(1, min(300001, size - r + 1))
        assert h.pread(m, r) == model[r:r + m], "read %d+%d after op %d" % (r, m, i)
h.flush()
for off in range(0, size, 1 << 20):
    assert h.pread(1 << 20, off) == model[off:off + (1 << 20)], "final read at %d" % off
# A second connection sees the same bytes.
h2 = connect(sys.argv[1])
assert h2.pread(size - 12345, 12345) == model[12345:]
"##,
    );
}

#[test]
fn out_of_range_requests_fail_and_the_connection_survives() {
    require!("python3-nbd");
    script_on_vol(
        "4M",
        r##"
h = connect(sys.argv[1], strict=False)
size = h.get_size()
E = (errno.EINVAL,)
W = (errno.ENOSPC, errno.EINVAL)
expect_error("read at the end", lambda: h.pread(512, size), *E)
expect_error("read across the end", lambda: h.pread(1024, size - 512), *E)
expect_error("read far past the end", lambda: h.pread(1, 1 << 62), *E)
expect_error("write across the end", lambda: h.pwrite(b"x" * 1024, size - 512), *W)
expect_error("write past the end", lambda: h.pwrite(b"x", size), *W)
expect_error("zero across the end", lambda: h.zero(1024, size - 512), *W)
expect_error("trim across the end", lambda: h.trim(1024, size - 512), *W)
# Still usable, and the last byte is writable.
h.pwrite(b"z", size - 1)
assert h.pread(2, size - 2) == b"\0z"
h.flush()
"##,
    );
}

#[test]
fn read_only_snapshot_refuses_writes_with_eperm() {
    require!("python3-nbd");
    let tmp = tempdir();
    prepare_pool(tmp.path(), |pool| {
        pool.create_volume("vol", 4 * MIB, None).unwrap();
        let v = pool.export("vol").unwrap();
        v.write(0, &[0x11; 64 * 1024], false).unwrap();
        pool.create_snapshot("vol", "snap").unwrap();
        v.write(0, &[0x22; 64 * 1024], false).unwrap();
    });
    let d = Serve::in_tempdir(tmp).start();
    script(
        r##"
s = connect(sys.argv[2], strict=False)
assert s.is_read_only()
assert s.pread(65536, 0) == b"\x11" * 65536, "snapshot content"
expect_error("write to a snapshot", lambda: s.pwrite(b"w" * 512, 0), errno.EPERM)
expect_error("FUA write to a snapshot", lambda: s.pwrite(b"w", 7, nbd.CMD_FLAG_FUA), errno.EPERM)
expect_error("zero on a snapshot", lambda: s.zero(512, 0), errno.EPERM, errno.EINVAL)
expect_error("trim on a snapshot", lambda: s.trim(512, 0), errno.EPERM, errno.EINVAL)
assert s.pread(65536, 0) == b"\x11" * 65536, "snapshot changed by refused writes"
v = connect(sys.argv[1])
assert not v.is_read_only()
assert v.pread(65536, 0) == b"\x22" * 65536, "volume content"
"##,
        &[d.uri("vol"), d.uri("vol@snap")],
    );
    d.stop();
}

#[test]
fn oversize_request_fails_and_the_connection_survives() {
    require!("python3-nbd");
    script_on_vol(
        "128M",
        r##"
h = connect(sys.argv[1], strict=False)
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
MAX = h.get_block_size(nbd.SIZE_MAXIMUM)
assert MAX == 32 << 20, MAX
expect_error("64 MiB read", lambda: h.pread(64 << 20, 0), errno.EINVAL, errno.EOVERFLOW)
expect_error("max+1 read", lambda: h.pread(MAX + 1, 0), errno.EINVAL, errno.EOVERFLOW)
assert h.pread(4096, 0) == bytes(4096)
# Exactly the maximum payload works both ways.
data = random.Random(3).randbytes(MAX)
h.pwrite(data, 4096)
assert h.pread(MAX, 4096) == data
"##,
    );
}

#[test]
fn many_requests_in_flight_and_multi_conn() {
    require!("python3-nbd");
    script_on_vol(
        "16M",
        r##"
h = connect(sys.argv[1])
assert h.can_multi_conn()
N, CHUNK = 64, 65536
rng = random.Random(11)
blocks = [rng.randbytes(CHUNK - 1 - (i % 3)) for i in range(N)]
# Odd sizes at unaligned offsets; every other request is FUA.
offs = [i * (CHUNK + 777) for i in range(N)]

def wait_all(cookies):
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        assert h.aio_command_completed(c), c

writes = []
for i in range(N):
    buf = nbd.Buffer.from_bytearray(bytearray(blocks[i]))
    writes.append(h.aio_pwrite(buf, offs[i], flags=nbd.CMD_FLAG_FUA if i % 2 else 0))
wait_all(writes)
wait_all([h.aio_flush()])

reads = []
for i in range(N):
    buf = nbd.Buffer(len(blocks[i]))
    reads.append((h.aio_pread(buf, offs[i]), buf, i))
# Interleave writes elsewhere with the reads.
tail = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i]) * 4096), (12 << 20) + i * 4096)
        for i in range(1, N + 1)]
wait_all([c for c, _, _ in reads] + tail)
for c, buf, i in reads:
    assert buf.to_bytearray() == blocks[i], "block %d" % i

# Another connection (multi-conn) sees all of it after the flush.
h2 = connect(sys.argv[1])
for i in range(N):
    assert h2.pread(len(blocks[i]), offs[i]) == blocks[i], "second connection, block %d" % i
h.flush()
for i in range(1, N + 1):
    assert h2.pread(4096, (12 << 20) + i * 4096) == bytes([i]) * 4096
"##,
    );
}

#[test]
fn block_status_reports_holes_and_data() {
    require!("python3-nbd");
    script_on_vol(
        "8M",
        r##"
h = connect(sys.argv[1])
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
size = h.get_size()
runs = extents(h, 0, size)
assert all(f & nbd.STATE_HOLE for _, _, f in runs), runs
h.pwrite(b"d" * 65536, 1 << 20)
h.pwrite(b"e" * 100, (3 << 20) + 100)
runs = extents(h, 0, size)
for off in [1 << 20, (1 << 20) + 65535, (3 << 20) + 100]:
    assert not is_hole(runs, off), (off, runs)
for off in [0, (1 << 20) - 1, (1 << 20) + 65536, (2 << 20), (4 << 20), size - 1]:
    assert is_hole(runs, off), (off, runs)
# Unwritten space is a hole that reads as zeros.
assert h.pread(4096, 2 << 20) == bytes(4096)
# REQ_ONE: a single extent starting at the offset asked.
one = extents(h, (1 << 20), size - (1 << 20), nbd.CMD_FLAG_REQ_ONE)
assert len(one) == 1 and one[0][0] == 1 << 20 and not one[0][2] & nbd.STATE_HOLE, one
# A query starting inside a hole and one starting at an odd offset.
assert is_hole(extents(h, 12345, 1000), 12345)
assert not is_hole(extents(h, (1 << 20) + 3, 10), (1 << 20) + 3)
# Trimmed back to a hole.
h.trim(65536, 1 << 20)
h.flush()
assert is_hole(extents(h, 0, size), 1 << 20)
"##,
    );
}

#[test]
fn structured_replies_and_advertised_commands() {
    require!("python3-nbd");
    script_on_vol(
        "8M",
        r##"
h = connect(sys.argv[1])
assert h.get_protocol() == "newstyle-fixed", h.get_protocol()
assert h.get_structured_replies_negotiated()
assert h.get_export_name() == "vol"
for can in ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df",
            "can_multi_conn", "can_cache"]:
    assert getattr(h, can)(), can
assert not h.is_read_only()
h.pwrite(b"abc" * 1000, 5000, nbd.CMD_FLAG_FUA)
# Structured reads: chunks assemble to the data. With DF (don't fragment) the server sends
# one content chunk; the range spans data and a hole so unfragmented is a real constraint.
def chunks(count, offset, flags):
    got = []
    def cb(buf, off, status, err):
        got.append((off, bytes(buf), status))
        return 0
    h.pread_structured(count, offset, cb, flags)
    out = bytearray(count)
    for off, buf, status in got:
        assert status in (nbd.READ_DATA, nbd.READ_HOLE), status
        out[off - offset:off - offset + len(buf)] = buf
    return got, bytes(out)
want = b"abc" * 1000 + bytes(200000)
got, data = chunks(len(want), 5000, 0)
assert data == want
got, data = chunks(len(want), 5000, nbd.CMD_FLAG_DF)
assert data == want
assert len(got) == 1 and len(got[0][1]) == len(want), [(o, len(b), s) for o, b, s in got]
h.cache(65536, 0)
h.flush()
# Fast zero either zeroes quickly or says ENOTSUP without touching the data.
try:
    h.zero(1000, 5000, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(3000, 5000) == bytes(1000) + (b"abc" * 1000)[1000:]
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e.string
    assert h.pread(3000, 5000) == b"abc" * 1000
h.zero(1000, 5000, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert h.pread(3000, 5000) == bytes(1000) + (b"abc" * 1000)[1000:]
h.shutdown()
"##,
    );
}

#[test]
fn nbdsh_runs_commands() {
    require!("nbdsh", "python3-nbd");
    let d = Daemon::with_volumes(&["vol=1M"]);
    let mut cmd = Command::new("nbdsh");
    // nbdsh runs the first python3 on PATH; the binding lives in Debian's.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("/usr/bin:{path}"))
        .args(["-u", &d.uri("vol")])
        .args(["-c", &format!("assert h.get_size() == {}", MIB)])
        .args(["-c", "h.pwrite(b'hello', 1023)"])
        .args(["-c", "assert h.pread(7, 1022) == b'\\0hello\\0'"])
        .args(["-c", "print('NBDSH-OK')"]);
    let out = run_cmd(cmd).ok();
    assert!(out.stdout.contains("NBDSH-OK"), "{}", out.describe());
    d.stop();
}
