/* vCPU threads: one per vCPU, each running KVM_RUN and dispatching exits to
 * the machine's buses. */
#ifndef CORE_VCPU_H
#define CORE_VCPU_H

struct vcpu;
struct machine;

/* Installs the kick signal handler (idempotent). */
int vcpu_setup_signals(void);
int vcpu_create(struct vcpu *v, struct machine *m, unsigned id);
void vcpu_destroy(struct vcpu *v);
int vcpu_start(struct vcpu *v);
/* Makes a running KVM_RUN return promptly (even in a guest hlt). */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);

#endif
