/* TLS to the crucible downstairs through OpenSSL, loaded on first use
 * (tls.h). */
#include "block/crucible/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dynlib.h"

#define SSL_FUNCTIONS(X)                                                                           \
    X(TLS_client_method)                                                                           \
    X(SSL_CTX_new)                                                                                 \
    X(SSL_CTX_free)                                                                                \
    X(SSL_CTX_ctrl)                                                                                \
    X(SSL_CTX_use_certificate_chain_file)                                                          \
    X(SSL_CTX_use_PrivateKey_file)                                                                 \
    X(SSL_CTX_check_private_key)                                                                   \
    X(SSL_CTX_load_verify_locations)                                                               \
    X(SSL_CTX_set_verify)                                                                          \
    X(SSL_new)                                                                                     \
    X(SSL_free)                                                                                    \
    X(SSL_ctrl)                                                                                    \
    X(SSL_set_fd)                                                                                  \
    X(SSL_set1_host)                                                                               \
    X(SSL_connect)                                                                                 \
    X(SSL_read)                                                                                    \
    X(SSL_write)                                                                                   \
    X(SSL_pending)                                                                                 \
    X(SSL_get_error)                                                                               \
    X(SSL_get_verify_result)                                                                       \
    X(X509_verify_cert_error_string)                                                               \
    X(ERR_get_error)                                                                               \
    X(ERR_clear_error)                                                                             \
    X(ERR_error_string_n)

static struct {
#define SSL_POINTER(f) __typeof__(f) *f;
    SSL_FUNCTIONS(SSL_POINTER)
#undef SSL_POINTER
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_error[256];

static void lib_load(void)
{
    static const struct dynlib_symbol symbols[] = {
#define SSL_SYMBOL(f) {#f, (void **)&lib.f},
        SSL_FUNCTIONS(SSL_SYMBOL)
#undef SSL_SYMBOL
    };
    dynlib_load("libssl.so.3", "libssl3", symbols, sizeof(symbols) / sizeof(symbols[0]), lib_error,
                sizeof(lib_error));
}

struct crucible_tls {
    SSL_CTX *ctx;
};

struct crucible_tls_conn {
    SSL *ssl;
    bool wants_write;
};

const char *crucible_tls_error(void)
{
    static __thread char text[256];
    unsigned long e = lib.ERR_get_error ? lib.ERR_get_error() : 0;
    if (!e)
        return "no detail from OpenSSL";
    lib.ERR_error_string_n(e, text, sizeof(text));
    return text;
}

struct crucible_tls *crucible_tls_open(const char *cert_pem, const char *key_pem,
                                       const char *root_cert_pem, char *why, size_t why_size,
                                       const char **bad_key)
{
    *bad_key = "cert_pem";
    pthread_once(&lib_once, lib_load);
    if (lib_error[0]) {
        snprintf(why, why_size, "%s", lib_error);
        return NULL;
    }
    struct crucible_tls *t = calloc(1, sizeof(*t));
    if (!t || !(t->ctx = lib.SSL_CTX_new(lib.TLS_client_method()))) {
        snprintf(why, why_size, "cannot set up TLS: %s",
                 t ? crucible_tls_error() : "out of memory");
        free(t);
        return NULL;
    }
    lib.SSL_CTX_ctrl(t->ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    if (lib.SSL_CTX_use_certificate_chain_file(t->ctx, cert_pem) != 1) {
        snprintf(why, why_size, "cannot use certificate %s: %s", cert_pem, crucible_tls_error());
        goto fail;
    }
    if (lib.SSL_CTX_use_PrivateKey_file(t->ctx, key_pem, SSL_FILETYPE_PEM) != 1 ||
        lib.SSL_CTX_check_private_key(t->ctx) != 1) {
        *bad_key = "key_pem";
        snprintf(why, why_size, "cannot use key %s with %s: %s", key_pem, cert_pem,
                 crucible_tls_error());
        goto fail;
    }
    if (lib.SSL_CTX_load_verify_locations(t->ctx, root_cert_pem, NULL) != 1) {
        *bad_key = "root_cert_pem";
        snprintf(why, why_size, "cannot use root certificate %s: %s", root_cert_pem,
                 crucible_tls_error());
        goto fail;
    }
    lib.SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    *bad_key = NULL;
    return t;
fail:
    crucible_tls_close(t);
    return NULL;
}

void crucible_tls_close(struct crucible_tls *t)
{
    if (!t)
        return;
    lib.SSL_CTX_free(t->ctx);
    free(t);
}

struct crucible_tls_conn *crucible_tls_conn_new(struct crucible_tls *t, int fd,
                                                const char *server_name)
{
    struct crucible_tls_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->ssl = lib.SSL_new(t->ctx))) {
        free(c);
        return NULL;
    }
    /* The output buffer may move and grow between a partial write and
     * its retry. */
    lib.SSL_ctrl(c->ssl, SSL_CTRL_MODE,
                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
    lib.SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 (void *)server_name);
    if (lib.SSL_set_fd(c->ssl, fd) != 1 || lib.SSL_set1_host(c->ssl, server_name) != 1) {
        crucible_tls_conn_free(c);
        return NULL;
    }
    return c;
}

void crucible_tls_conn_free(struct crucible_tls_conn *c)
{
    if (!c)
        return;
    lib.SSL_free(c->ssl);
    free(c);
}

/* Maps an SSL call's result to errno; returns -1. */
static int fail_with(struct crucible_tls_conn *c, int rc)
{
    int e = lib.SSL_get_error(c->ssl, rc);
    c->wants_write = e == SSL_ERROR_WANT_WRITE;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        errno = EAGAIN;
    else if (e == SSL_ERROR_SYSCALL && errno)
        ; /* errno says what the socket did */
    else
        errno = EPROTO;
    return -1;
}

int crucible_tls_handshake(struct crucible_tls_conn *c, char *why, size_t why_size)
{
    lib.ERR_clear_error();
    int rc = lib.SSL_connect(c->ssl);
    if (rc == 1) {
        c->wants_write = false;
        return 1;
    }
    if (fail_with(c, rc) < 0 && errno == EAGAIN)
        return 0;
    long verify = lib.SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK) {
        snprintf(why, why_size, "TLS: its certificate is refused: %s",
                 lib.X509_verify_cert_error_string(verify));
        return -2;
    }
    snprintf(why, why_size, "TLS handshake: %s",
             errno == EPROTO ? crucible_tls_error() : strerror(errno));
    return -1;
}

ssize_t crucible_tls_read(struct crucible_tls_conn *c, void *buf, size_t len)
{
    lib.ERR_clear_error();
    int n = lib.SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    if (lib.SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN)
        return 0;
    return fail_with(c, n);
}

ssize_t crucible_tls_write(struct crucible_tls_conn *c, const void *buf, size_t len)
{
    lib.ERR_clear_error();
    int n = lib.SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) {
        c->wants_write = false;
        return n;
    }
    return fail_with(c, n);
}

bool crucible_tls_wants_write(const struct crucible_tls_conn *c)
{
    return c->wants_write;
}

bool crucible_tls_pending(const struct crucible_tls_conn *c)
{
    return lib.SSL_pending(c->ssl) > 0;
}
