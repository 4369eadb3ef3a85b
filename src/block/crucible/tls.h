/* TLS to the crucible downstairs (cert_pem, key_pem, root_cert_pem), as
 * crucible's upstairs speaks it: the upstairs is the client and presents
 * its certificate; the downstairs' certificate must chain to the root and
 * name "downstairs<N>" (N: the target's index). OpenSSL (libssl.so.3) is
 * loaded with dlopen when the first such disk opens, so VMs without one
 * do not map it. Non-blocking: the disk's thread drives the handshake and
 * the records from its poll loop. */
#ifndef BLOCK_CRUCIBLE_TLS_H
#define BLOCK_CRUCIBLE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct crucible_tls;      /* the certificates (one per disk) */
struct crucible_tls_conn; /* one connection */

/* Loads libssl and the three PEM files. NULL on failure, with why filled
 * and *bad_key the config key at fault ("cert_pem", "key_pem",
 * "root_cert_pem"). Call before the disk's thread starts (the files are
 * read here, outside its sandbox). */
struct crucible_tls *crucible_tls_open(const char *cert_pem, const char *key_pem,
                                       const char *root_cert_pem, char *why, size_t why_size,
                                       const char **bad_key);
void crucible_tls_close(struct crucible_tls *t);

/* A client connection over the connected socket fd, expecting a server
 * certificate for server_name. NULL when out of memory. */
struct crucible_tls_conn *crucible_tls_conn_new(struct crucible_tls *t, int fd,
                                                const char *server_name);
void crucible_tls_conn_free(struct crucible_tls_conn *c);

/* Advances the handshake: 1 done, 0 in progress (poll per
 * crucible_tls_wants_write), -1 failed, -2 failed because the server's
 * certificate does not chain to the root or name server_name (why
 * filled). */
int crucible_tls_handshake(struct crucible_tls_conn *c, char *why, size_t why_size);

/* As recv/send on a non-blocking socket: bytes moved; 0 from read when the
 * peer closed; -1 with errno (EAGAIN: try after poll; EPROTO: a TLS
 * error, detailed by crucible_tls_error). */
ssize_t crucible_tls_read(struct crucible_tls_conn *c, void *buf, size_t len);
ssize_t crucible_tls_write(struct crucible_tls_conn *c, const void *buf, size_t len);

/* The last operation is waiting for the socket to take data. */
bool crucible_tls_wants_write(const struct crucible_tls_conn *c);
/* Bytes already decrypted and waiting: read them before polling again. */
bool crucible_tls_pending(const struct crucible_tls_conn *c);
/* OpenSSL's latest error, as text. */
const char *crucible_tls_error(void);

#endif
