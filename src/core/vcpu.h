/* vCPU threads: one per vCPU, each running KVM_RUN and dispatching exits to
 * the machine's buses. */
#ifndef CORE_VCPU_H
#define CORE_VCPU_H

#include <stdbool.h>
#include <stddef.h>

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

/* State dump: asks the vCPU to describe itself (registers, mode, events,
 * LAPIC, last exits). A running vCPU answers from its thread at its next
 * exit; one without a thread is described at once. Returns whether the
 * answer is asynchronous. */
bool vcpu_request_dump(struct vcpu *v);
/* The answer to the last request, or NULL while it is outstanding. */
const char *vcpu_dump_answer(struct vcpu *v);
/* For a vCPU that did not answer: which exit its thread is stuck in. */
void vcpu_describe_unanswered(struct vcpu *v, char *buf, size_t cap);

#endif
