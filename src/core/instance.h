/* The per-name instance record. propolis on bhyve destroys a live kernel VM
 * of the same name at start-up; here a locked record file plays that role:
 * a live owner is stopped and replaced, a stale record is taken over.
 *
 * Nothing another user controls can turn that into harm: the records'
 * directory must be ours, mode 0700 and not a symlink (the shared
 * /tmp/propolis-standalone-UID could have been made first by someone else);
 * the record is opened without following a symlink; its owner is learnt
 * from the lock itself (a POSIX record lock, whose holder F_GETLK reports),
 * never from the pid written in the file; and that holder is signalled only
 * once proven to be a propolis-standalone (by its executable) whose record
 * this is (the file names it), through a pidfd, so a pid reused meanwhile
 * is never hit. */
#ifndef CORE_INSTANCE_H
#define CORE_INSTANCE_H

#include <stddef.h>

struct instance {
    /* The record, write-locked; -1: none held. A POSIX lock is dropped
     * when the process closes any descriptor of the file: nothing else in
     * the VMM opens the record. */
    int fd;
    int dir_fd; /* the records' directory */
    char *path; /* for messages */
    char *file; /* NAME.pid in dir_fd */
};

/* The directory for records: $PROPOLIS_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/propolis-standalone, else /run/propolis-standalone for
 * root, else /tmp/propolis-standalone-UID (UID the effective one). Only
 * computes the path. 0, or -1 if it does not fit in len. */
int instance_record_dir(char *buf, size_t len);

/* Creates the directory if need be, checks it, and locks NAME.pid there,
 * stopping a live owner of the name first. 0, or -1 (logged) with nothing
 * signalled that was not proven to be ours. */
int instance_acquire(struct instance *inst, const char *name);
void instance_release(struct instance *inst);

#endif
