/*
 * DKIM speed of postel's engine (src/auth/dkim*.c), for bench/dkim_bench.sh:
 * signatures and verifications per second of one 10 KB message with one
 * key, the whole path each time (header and body canonicalization, hashes,
 * the signature; for verification also parsing the DKIM-Signature field
 * and the key record, as a receiver does for each message).
 *
 *   dkim_speed KEY.pem SECONDS [sign|verify]
 *
 * prints "sign N" and "verify N" (operations per CPU second, one thread),
 * or only the one asked for.
 * Built against libpostel.a by the bench script; not part of the binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/dkim.h"
#include "core/util.h"

#define MSG_SIZE (10 * 1024)

/* CPU time of the process, as `openssl speed` counts (it reports operations
 * per second of user CPU time unless given -elapsed): on a machine shared
 * with other work the two rates stay comparable. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A plausible 10 KB message: the usual header fields, then text lines. */
static size_t make_message(char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size,
                                "From: Alice Example <alice@bench.example>\r\n"
                                "To: Bob Example <bob@example.net>\r\n"
                                "Cc: carol@example.net\r\n"
                                "Subject: Quarterly figures, second draft\r\n"
                                "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
                                "Message-ID: <bench-1@bench.example>\r\n"
                                "MIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=us-ascii\r\n"
                                "\r\n");
    unsigned line = 0;
    while (n + 80 < MSG_SIZE && n + 80 < size) {
        n += (size_t)snprintf(buf + n, size - n,
                              "Line %04u of the report:  figures  are\tin the attached sheet.  \r\n",
                              line++);
    }
    return n;
}

struct key_rec {
    const char *data;
    size_t len;
};

static enum dkim_dns_status lookup(const char *name, struct dkim_txt *txt_r, void *arg)
{
    const struct key_rec *k = arg;
    (void)name;
    dkim_txt_add(txt_r, k->data, k->len);
    return DKIM_DNS_FOUND;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: dkim_speed KEY.pem SECONDS [sign|verify]\n");
        return 64;
    }
    double seconds = atof(argv[2]);
    const char *only = argc == 4 ? argv[3] : "";
    static char msg[MSG_SIZE + 256];
    size_t len = make_message(msg, sizeof(msg));
    char err[256];
    struct dkim_key key;
    if (dkim_key_load(&key, "bench.example", "s1", argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "dkim_speed: %s\n", err);
        return 1;
    }
    struct strbuf rec, sig;
    strbuf_init(&rec, 8192);
    strbuf_init(&sig, 64 * 1024);
    if (dkim_key_record(&key, &rec) < 0) {
        fprintf(stderr, "dkim_speed: cannot make the key record\n");
        return 1;
    }

    long n = 0;
    double t0 = now_s(), t;
    double sign_for = strcmp(only, "verify") == 0 ? 0 : seconds;
    do {
        strbuf_reset(&sig);
        if (dkim_sign(&key, 1, msg, len, 1700000000, &sig, err, sizeof(err)) < 0) {
            fprintf(stderr, "dkim_speed: sign: %s\n", err);
            return 1;
        }
        n++;
        t = (n & 7) == 0 ? now_s() : t0;    /* a CPU clock read is a system call */
    } while (n < 8 || t - t0 < sign_for);
    t = now_s();
    if (strcmp(only, "verify") != 0)
        printf("sign %.1f\n", n / (t - t0));
    if (strcmp(only, "sign") == 0)
        return 0;

    /* The signed message, as a receiver gets it. */
    size_t slen = sig.len + len;
    char *signed_msg = malloc(slen);
    if (signed_msg == NULL)
        return 1;
    memcpy(signed_msg, sig.data, sig.len);
    memcpy(signed_msg + sig.len, msg, len);
    struct key_rec kr = { rec.data, rec.len };
    struct dkim_verdict vd;
    n = 0;
    t0 = now_s();
    do {
        if (dkim_verify_message(signed_msg, slen, 1700000100, lookup, &kr, &vd, 1) != 1 ||
            vd.status != DKIM_PASS) {
            fprintf(stderr, "dkim_speed: verify: %s %s\n", dkim_status_name(vd.status), vd.reason);
            return 1;
        }
        n++;
        t = (n & 7) == 0 ? now_s() : t0;
    } while (n < 8 || t - t0 < seconds);
    t = now_s();
    printf("verify %.1f\n", n / (t - t0));
    free(signed_msg);
    strbuf_free(&rec);
    strbuf_free(&sig);
    dkim_key_free(&key);
    return 0;
}
