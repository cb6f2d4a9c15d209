//! For unit tests only. The reaper waits with `waitpid(-1)`, which would
//! reap the children of tests running beside it in the same process; every
//! test that starts a child holds this lock while it lives.

use std::sync::{Mutex, MutexGuard};

static CHILDREN: Mutex<()> = Mutex::new(());

pub fn children_lock() -> MutexGuard<'static, ()> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}
