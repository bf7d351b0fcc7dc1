//! A VFS that gathers the writes of a commit to the write-ahead log into
//! one system call.
//!
//! SQLite writes each WAL frame with two `write` calls, a 24-byte header and
//! the page, so a commit that changes 25 pages makes 50 of them before its
//! `fsync`. This VFS wraps the platform's default one. For a write-ahead log
//! file it keeps consecutive writes in memory. It passes them to the default
//! VFS in one write before any call that depends on them: a sync, a read, a
//! size query, a truncation, a file control, a write elsewhere in the file
//! and the close. Other files and other methods go straight to the default
//! VFS.
//!
//! Only connections whose commits sync the log use it (`synchronous` FULL or
//! EXTRA): SQLite syncs the log before it publishes a commit in the shared
//! WAL index, so another connection never reads a frame still held here.
//! With NORMAL or OFF a commit is published without a sync, so those
//! connections use the default VFS.
//!
//! A failed write is reported by the call that flushes it (usually the
//! commit's sync), which fails the transaction as the write itself would
//! have.

// SQLite's VFS interface is a C interface of function pointers over
// memory the caller allocates, and rusqlite has no safe binding of it.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections pass to `sqlite3_open_v2` to use this VFS.
pub(crate) const NAME: &CStr = c"kalify-wal-batch";

/// Buffered bytes at which the buffer is written out at once, so that a
/// large transaction keeps at most this much in memory.
const FLUSH_AT: usize = 1 << 20;

/// Maximum bytes passed to the default VFS in one write. The Unix VFS keeps
/// only the low 17 bits of a write's length (at most 131,071 bytes) and
/// reports the rest as a full disk, so longer buffers go in 31-page pieces.
const WRITE_CHUNK: usize = 31 * 4096;

/// Registers the VFS once per process and returns whether it is available.
/// When registration fails, connections fall back to the default VFS.
pub(crate) fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which
        // SQLite keeps for the life of the process. The new VFS is leaked,
        // so it too lives for the process, as sqlite3_vfs_register requires.
        unsafe {
            if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                return false;
            }
            let inner = ffi::sqlite3_vfs_find(ptr::null());
            // This VFS forwards `xCurrentTimeInt64`, which a default VFS of
            // version 1 lacks.
            if inner.is_null() || (*inner).iVersion < 2 {
                return false;
            }
            let Some(size) = wrapped_size((*inner).szOsFile) else {
                return false;
            };
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: size,
                mxPathname: (*inner).mxPathname,
                pNext: ptr::null_mut(),
                zName: NAME.as_ptr(),
                pAppData: inner.cast(),
                xOpen: Some(open),
                xDelete: Some(delete),
                xAccess: Some(access),
                xFullPathname: Some(full_pathname),
                xDlOpen: Some(dl_open),
                xDlError: Some(dl_error),
                xDlSym: Some(dl_sym),
                xDlClose: Some(dl_close),
                xRandomness: Some(randomness),
                xSleep: Some(sleep),
                xCurrentTime: Some(current_time),
                xGetLastError: Some(get_last_error),
                xCurrentTimeInt64: Some(current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            });
            ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0) == ffi::SQLITE_OK
        }
    })
}

/// Returns the size SQLite allocates for one open file of this VFS: a
/// [`WalFile`] followed by the default VFS's own file, aligned for it.
fn wrapped_size(inner_size: c_int) -> Option<c_int> {
    let inner_size = usize::try_from(inner_size).ok()?;
    c_int::try_from(inner_offset().checked_add(inner_size)?).ok()
}

/// Returns the offset of the default VFS's file inside a [`WalFile`] allocation.
const fn inner_offset() -> usize {
    let align = align_of::<u64>();
    size_of::<WalFile>().div_ceil(align) * align
}

/// An open write-ahead log file. The default VFS's file follows it in the
/// same allocation, at [`inner_offset`].
#[repr(C)]
struct WalFile {
    /// Must come first: SQLite reads the methods through it.
    base: ffi::sqlite3_file,
    /// Bytes not yet passed to the default VFS. They start at file offset
    /// `start` and have no gap.
    pending: Vec<u8>,
    start: i64,
}

/// Returns the default VFS, kept in the application data of this one.
unsafe fn inner_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `register` stores the default VFS in pAppData.
    unsafe { (*vfs).pAppData.cast() }
}

/// Returns the default VFS's file inside a [`WalFile`] allocation.
unsafe fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: the allocation is `wrapped_size` bytes, so the offset stays inside it.
    unsafe { file.cast::<u8>().add(inner_offset()).cast() }
}

/// Returns the default VFS's methods for its file. They are set, because
/// SQLite calls a file's methods only after its open succeeded.
unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the default VFS set pMethods when it opened the inner file,
    // and method tables are static.
    unsafe { &*(*inner_file(file)).pMethods }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: a log file is neither memory-mapped nor given shared-memory
    // calls; SQLite uses those on the database file only.
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Opens a write-ahead log as a [`WalFile`] around the default VFS's file,
/// and any other file as the default VFS's file alone.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes `file` with `szOsFile` bytes, enough for a
    // WalFile followed by the default VFS's file, or for the latter alone.
    unsafe {
        let inner = inner_vfs(vfs);
        let Some(inner_open) = (*inner).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Any other file is the default VFS's file, placed at the
            // start of the allocation with the default methods.
            return inner_open(inner, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        (*wal).base.pMethods = ptr::null();
        let inner_file = inner_file(file);
        (*inner_file).pMethods = ptr::null();
        let rc = inner_open(inner, name, inner_file, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = (*inner_file)
                .pMethods
                .as_ref()
                .and_then(|methods| methods.xClose)
            {
                close(inner_file);
            }
            return rc;
        }
        ptr::addr_of_mut!((*wal).pending).write(Vec::new());
        ptr::addr_of_mut!((*wal).start).write(0);
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// Passes the pending bytes to the default VFS and empties the buffer,
/// also after a failed write: that failure fails the transaction, and
/// SQLite writes the frames again when the transaction is retried.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open WalFile.
    unsafe {
        let wal = file.cast::<WalFile>();
        if (*wal).pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        let inner = inner_file(file);
        let write = inner_methods(file).xWrite;
        let mut rc = ffi::SQLITE_OK;
        let mut offset = (*wal).start;
        for chunk in (*wal).pending.chunks(WRITE_CHUNK) {
            rc = match (
                write,
                c_int::try_from(chunk.len()),
                i64::try_from(chunk.len()),
            ) {
                (Some(write), Ok(amount), Ok(length)) => {
                    let rc = write(inner, chunk.as_ptr().cast(), amount, offset);
                    offset += length;
                    rc
                }
                _ => ffi::SQLITE_IOERR_WRITE,
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
        }
        (*wal).pending.clear();
        if (*wal).pending.capacity() > FLUSH_AT {
            (*wal).pending.shrink_to(FLUSH_AT);
        }
        rc
    }
}

/// Writes out the pending bytes, then closes the default VFS's file.
unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes an open WalFile once, after which it frees the memory.
    unsafe {
        let flushed = flush(file);
        let inner = inner_file(file);
        let closed = match inner_methods(file).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(ptr::addr_of_mut!((*file.cast::<WalFile>()).pending));
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

/// Appends the bytes to the pending ones when they follow them. Otherwise
/// it writes out the pending bytes first and starts a new run at `offset`.
unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    buffer: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is an open WalFile, and SQLite passes `amount`
    // readable bytes at `buffer`.
    unsafe {
        let Ok(length) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let wal = file.cast::<WalFile>();
        let pending = &mut (*wal).pending;
        let follows = i64::try_from(pending.len())
            .ok()
            .and_then(|len| (*wal).start.checked_add(len))
            == Some(offset);
        if !pending.is_empty() && !follows {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let pending = &mut (*wal).pending;
        if pending.is_empty() {
            (*wal).start = offset;
        }
        pending.extend_from_slice(std::slice::from_raw_parts(buffer.cast::<u8>(), length));
        if pending.len() >= FLUSH_AT {
            return flush(file);
        }
        ffi::SQLITE_OK
    }
}

/// Defines a method of [`WAL_METHODS`] that calls the default VFS's method
/// of the same file, after writing out the pending bytes when `$flush` is
/// true. `$missing` is returned when the default VFS lacks the method.
macro_rules! wal_method {
    ($name:ident, $field:ident, $flush:literal, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite calls the methods of an open WalFile only, and
            // the arguments go on unchanged.
            unsafe {
                if $flush {
                    let rc = flush(file);
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
                match inner_methods(file).$field {
                    Some(method) => method(inner_file(file), $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

wal_method!(wal_read, xRead, true, (buffer: *mut c_void, amount: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_READ);
wal_method!(wal_truncate, xTruncate, true, (size: i64) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
wal_method!(wal_sync, xSync, true, (flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
wal_method!(wal_file_size, xFileSize, true, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR_FSTAT);
wal_method!(wal_file_control, xFileControl, true, (op: c_int, argument: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
wal_method!(wal_lock, xLock, false, (level: c_int) -> c_int, ffi::SQLITE_OK);
wal_method!(wal_unlock, xUnlock, false, (level: c_int) -> c_int, ffi::SQLITE_OK);
wal_method!(wal_check_reserved_lock, xCheckReservedLock, false, (result: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
wal_method!(wal_sector_size, xSectorSize, false, () -> c_int, 4096);
wal_method!(wal_device_characteristics, xDeviceCharacteristics, false, () -> c_int, 0);

/// Defines a method of this VFS that calls the default VFS's method with the
/// default VFS. `$missing` is returned when the default VFS lacks it.
macro_rules! vfs_method {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            // SAFETY: SQLite passes this VFS, and the arguments go on unchanged.
            unsafe {
                let inner = inner_vfs(vfs);
                match (*inner).$field {
                    Some(method) => method(inner, $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

/// A symbol found by `xDlSym`.
type Symbol = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

vfs_method!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
vfs_method!(access, xAccess, (name: *const c_char, flags: c_int, result: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
vfs_method!(full_pathname, xFullPathname, (name: *const c_char, size: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
vfs_method!(dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, ptr::null_mut());
vfs_method!(dl_error, xDlError, (size: c_int, message: *mut c_char) -> (), ());
vfs_method!(dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> Option<Symbol>, None);
vfs_method!(dl_close, xDlClose, (handle: *mut c_void) -> (), ());
vfs_method!(randomness, xRandomness, (size: c_int, out: *mut c_char) -> c_int, 0);
vfs_method!(sleep, xSleep, (microseconds: c_int) -> c_int, 0);
vfs_method!(current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
vfs_method!(get_last_error, xGetLastError, (size: c_int, out: *mut c_char) -> c_int, 0);
vfs_method!(current_time_int64, xCurrentTimeInt64, (out: *mut i64) -> c_int, ffi::SQLITE_ERROR);

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags, params};

    use super::*;

    /// Opens `path` through this VFS in WAL mode with full sync, as the
    /// store does.
    fn open_batched(path: &Path) -> Connection {
        assert!(register(), "the VFS registers");
        let connection =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).expect("opens");
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .expect("sets WAL");
        assert_eq!(mode, "wal");
        connection
            .pragma_update(None, "synchronous", "FULL")
            .expect("sets FULL");
        connection
    }

    /// Opens `path` through SQLite's default VFS, with its own file handles.
    fn open_plain(path: &Path) -> Connection {
        Connection::open(path).expect("opens with the default VFS")
    }

    fn blob(seed: i64, length: usize) -> Vec<u8> {
        let mut state = seed
            .unsigned_abs()
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
        (0..length)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn commit_in_file_on_return() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("batched.db");
        let writer = open_batched(&path);
        writer
            .execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .expect("creates the table");
        let plain = open_plain(&path);

        // Sizes below one page, across the write piece and across the
        // flush threshold.
        let sizes = [10, 4_000, 130_000, 3 * FLUSH_AT + 17, 1, 200_000];
        for (id, &size) in (0_i64..).zip(sizes.iter()) {
            let body = blob(id, size);
            writer
                .execute(
                    "INSERT INTO items (id, body) VALUES (?1, ?2)",
                    params![id, body],
                )
                .expect("inserts");
            // Another connection with its own file handles reads the row at
            // once, so no frame of the commit was left in this process.
            let read: Vec<u8> = plain
                .query_row("SELECT body FROM items WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .expect("the other connection reads the row");
            assert!(
                read == body,
                "row {id} of {size} bytes reads back unchanged"
            );
        }
        drop(writer);
        let check: String = plain
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("checks");
        assert_eq!(check, "ok");
    }

    #[test]
    fn spilled_rollback_keeps_database_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spill.db");
        let writer = open_batched(&path);
        // A small cache makes SQLite write frames of an open transaction to
        // the log and read them back before the transaction ends.
        writer
            .execute_batch(
                "PRAGMA cache_size = 10;
                 CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
                 INSERT INTO items (id, body) VALUES (0, x'00');",
            )
            .expect("prepares");

        writer.execute_batch("BEGIN IMMEDIATE").expect("begins");
        for id in 1..400 {
            writer
                .execute(
                    "INSERT INTO items (id, body) VALUES (?1, ?2)",
                    params![id, blob(id, 3_000)],
                )
                .expect("inserts");
        }
        let inside: i64 = writer
            .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
            .expect("counts");
        assert_eq!(inside, 400);
        writer.execute_batch("ROLLBACK").expect("rolls back");

        writer
            .execute(
                "INSERT INTO items (id, body) VALUES (1, ?1)",
                [blob(7, 9_000)],
            )
            .expect("inserts after the rollback");
        let plain = open_plain(&path);
        let count: i64 = plain
            .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
            .expect("counts");
        assert_eq!(count, 2);
        let body: Vec<u8> = plain
            .query_row("SELECT body FROM items WHERE id = 1", [], |row| row.get(0))
            .expect("reads");
        assert!(body == blob(7, 9_000));
        let check: String = plain
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("checks");
        assert_eq!(check, "ok");
    }

    #[test]
    fn readers_never_see_partial_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("transfers.db");
        let writer = open_batched(&path);
        writer
            .execute_batch(
                "PRAGMA wal_autocheckpoint = 20;
                 CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note BLOB);",
            )
            .expect("prepares");
        for id in 0..64 {
            writer
                .execute(
                    "INSERT INTO accounts (id, balance, note) VALUES (?1, 1000, ?2)",
                    params![id, blob(id, 2_000)],
                )
                .expect("inserts");
        }

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let path = path.clone();
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let plain = open_plain(&path);
                let batched = open_batched(&path);
                let mut reads = 0_u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads < 10 {
                    for connection in [&plain, &batched] {
                        let total: i64 = connection
                            .query_row("SELECT sum(balance) FROM accounts", [], |row| row.get(0))
                            .expect("sums");
                        assert_eq!(total, 64_000, "a reader saw a partial commit");
                    }
                    reads += 1;
                }
                reads
            })
        };

        // Each commit moves money between two accounts and rewrites their
        // notes, so a reader that saw half a commit would count a wrong sum.
        for round in 0..1_500_i64 {
            let from = (round * 7) % 64;
            let to = (round * 13 + 5) % 64;
            let transaction = writer.unchecked_transaction().expect("begins");
            transaction
                .execute(
                    "UPDATE accounts SET balance = balance - 3, note = ?2 WHERE id = ?1",
                    params![from, blob(round, 2_500)],
                )
                .expect("debits");
            transaction
                .execute(
                    "UPDATE accounts SET balance = balance + 3, note = ?2 WHERE id = ?1",
                    params![to, blob(round + 1, 1_500)],
                )
                .expect("credits");
            transaction.commit().expect("commits");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().expect("the reader finishes");
        assert!(reads >= 10);

        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoints");
        drop(writer);
        let plain = open_plain(&path);
        let total: i64 = plain
            .query_row("SELECT sum(balance) FROM accounts", [], |row| row.get(0))
            .expect("sums");
        assert_eq!(total, 64_000);
        let check: String = plain
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("checks");
        assert_eq!(check, "ok");
    }

    #[test]
    fn other_files_pass_through() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rollback-journal.db");
        assert!(register());
        // A database in the default rollback-journal mode writes its
        // database file and journal straight through.
        let connection =
            Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), NAME).expect("opens");
        connection
            .execute_batch(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB);
                 INSERT INTO items (body) VALUES (x'0102');",
            )
            .expect("writes");
        let plain = open_plain(&path);
        let count: i64 = plain
            .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
            .expect("counts");
        assert_eq!(count, 1);
        assert!(!dir.path().join("rollback-journal.db-wal").exists());
    }
}
