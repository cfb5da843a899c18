//! The gate primary writes pass: a split or a state change closes it, waiting for the writes
//! in flight, so none is half mirrored across the change.

use parking_lot::{Condvar, Mutex};

/// Lets primary writes through while open; `close` waits for those in flight.
#[derive(Default)]
pub(super) struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Gate {
    pub(super) fn enter(&self) {
        let mut s = self.state.lock();
        while s.1 {
            self.cv.wait(&mut s);
        }
        s.0 += 1;
    }
    pub(super) fn leave(&self) {
        let mut s = self.state.lock();
        s.0 -= 1;
        self.cv.notify_all();
    }
    pub(super) fn close(&self) {
        let mut s = self.state.lock();
        s.1 = true;
        while s.0 > 0 {
            self.cv.wait(&mut s);
        }
    }
    pub(super) fn open(&self) {
        self.state.lock().1 = false;
        self.cv.notify_all();
    }
}
