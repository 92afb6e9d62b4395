// Package powerfs is a FUSE passthrough filesystem for tests that can lose
// power: Crash throws away everything that was not made durable and leaves
// the rest, as a power cut would.
//
// Killing a server with SIGKILL does not test its durability: the kernel
// keeps the page cache and every name, so data the server never fsynced
// survives a kill, and a missing fsync goes unnoticed. Only losing the
// unsynced state, which this package does on command, finds it. Black-box
// tests run the real binaries with their data directory inside the mount,
// kill them, call Crash, and start them again.
//
// What survives is what strict POSIX promises, not what a particular
// filesystem happens to keep (ext4 in its default data=ordered mode, for one,
// usually keeps a new name without any directory fsync, and flushes the data
// of a file that replaces another by rename):
//
//   - File data written since the file's last fsync or fdatasync (write,
//     truncation, fallocate) is lost: the file goes back to the content and
//     size of its last sync. The backing file holds the current content; the
//     first time a write overwrites bytes of the synced content, they are
//     saved in memory, and fsync drops what was saved. Syncs cost nothing,
//     however large the file (the WAL preallocates 64 MiB and fdatasyncs
//     after every batch).
//   - A name added to or removed from a directory (create, mkdir, link,
//     symlink, rename, unlink, rmdir) is durable only once that directory is
//     fsynced. At a crash each directory goes back to the names it had at its
//     last fsync, naming the objects they named then; a directory whose own
//     name is not durable vanishes with all it holds. fsync of a file does
//     not make its name durable, and fsync of a directory does not make its
//     files' data durable. A file renamed into a directory that is then
//     fsynced, out of one that is not, is back under both names after a
//     crash: POSIX allows it, and a hard link makes it possible. A directory
//     has one name, so once its new name is durable its old one is not.
//   - A new directory has no durable entries, even if its name is durable:
//     the pattern of etcd's wal.Create (fill "dir.tmp", rename it to "dir",
//     fsync the parent) loses the files unless "dir" itself is fsynced too.
//
// Objects whose old name may still be durable are kept in a hidden
// directory of the backing store (hard links for files; removed
// directories are moved there) until every directory naming them is synced.
// Crash unmounts, so that the kernel forgets every cached page, name and
// attribute, and every flock; reverts the backing store; and mounts again.
//
// Faults can be switched on and off while mounted: FailWrites (for example
// ENOSPC), FailSyncs (EIO, nothing becomes durable) and StallSyncs.
//
// Limits, none of which etcd's wal and snap packages meet: fallocate modes
// that shift content (collapse, insert) and ioctls fail; copy_file_range
// falls back to writes in the kernel; link counts include the hidden links.
// The backing store is never fsynced itself: it stands for the disk of a
// machine that does not lose power while the test runs.
//
// Mounting needs root and /dev/fuse, not fusermount3: the mount is made
// with mount(2) directly. Available says why it can not be done here.
package powerfs
