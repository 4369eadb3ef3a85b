/* The per-name instance record. propolis on bhyve destroys a live kernel VM
 * of the same name at start-up; here a lock file holding the owner's pid
 * plays that role: a live owner is stopped and replaced, a stale record is
 * taken over. */
#ifndef CORE_INSTANCE_H
#define CORE_INSTANCE_H

struct instance {
    int fd;
    char *path;
};

/* The directory for records: $PROPOLIS_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/propolis-standalone, else /run/propolis-standalone for
 * root, else /tmp/propolis-standalone-UID. */
int instance_acquire(struct instance *inst, const char *name);
void instance_release(struct instance *inst);

#endif
