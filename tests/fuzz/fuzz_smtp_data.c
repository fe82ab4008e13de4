/*
 * libFuzzer target: the DATA / BDAT decoder.  The first byte picks the
 * mode (DATA or BDAT, finish or not, a size limit), the second a split
 * position; the rest is the stream.  The decoder's output, flags and
 * consumed count must be the same whole, split in two, split in many
 * pieces and byte by byte, and must match a slow reference decoder
 * written straight from RFC 5321 4.5.2 / 4.1.1.4.
 */
#include "smtp/smtp_parse.h"

#include <stdlib.h>
#include <string.h>

struct result {
    unsigned char *out;
    size_t len, cap, consumed;
    uint64_t size;
    bool done, bare_lf, bare_cr, too_big;
};

static void collect(void *arg, const char *data, size_t len)
{
    struct result *r = arg;
    if (len == 0 || r->len + len > r->cap)
        abort();   /* no empty calls; never more than the input */
    memcpy(r->out + r->len, data, len);
    r->len += len;
}

/* Feeds in[0..n) cut at the ascending offsets cuts[0..ncuts). */
static void run(const unsigned char *in, size_t n, bool dot, uint64_t max, bool finish,
                const size_t *cuts, size_t ncuts, struct result *r)
{
    struct smtp_data_decoder d;
    smtp_data_init(&d, dot, max);
    r->len = r->consumed = 0;
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t stop = k < ncuts ? cuts[k] : n;
        if (stop < pos)
            continue;
        size_t got = smtp_data_feed(&d, (const char *)in + pos, stop - pos, collect, r);
        if (got > stop - pos || (got < stop - pos && !d.done))
            abort();
        r->consumed += got;
        pos += got;
        if (d.done)
            break;
    }
    if (d.done && smtp_data_feed(&d, (const char *)in, n, collect, r) != 0)
        abort();
    if (finish)
        smtp_data_finish(&d, collect, r);
    r->size = d.size;
    r->done = d.done;
    r->bare_lf = d.bare_lf;
    r->bare_cr = d.bare_cr;
    r->too_big = d.too_big;
}

/* The reference: one byte at a time over the whole input. */
static void reference(const unsigned char *in, size_t n, bool dot, uint64_t max, bool finish,
                      struct result *r)
{
    size_t o = 0, i = 0;
    bool line_start = dot, held_cr = false;
    memset(r, 0, sizeof(*r));
    r->out = malloc(n + 2);
    r->consumed = n;
    while (i < n) {
        if (line_start) {
            line_start = false;
            if (in[i] == '.') {
                if (n - i >= 3 && in[i + 1] == '\r' && in[i + 2] == '\n') {
                    r->done = true;
                    r->consumed = i + 3;
                    break;
                }
                i++;   /* RFC 5321 4.5.2: drop the first dot */
                if (i + 1 == n && in[i] == '\r') {
                    held_cr = true;   /* ".\r" at the very end: not known yet */
                    i++;
                }
                continue;
            }
        }
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
            r->out[o++] = '\r';
            r->out[o++] = '\n';
            i += 2;
            line_start = dot;
            continue;
        }
        if (in[i] == '\r' && (i + 1 < n || finish))
            r->bare_cr = true;
        if (in[i] == '\n')
            r->bare_lf = true;
        r->out[o++] = in[i++];
    }
    if (held_cr && finish) {
        r->bare_cr = true;
        r->out[o++] = '\r';
    }
    r->size = o;
    r->too_big = max != 0 && o > max;
    r->len = r->too_big ? (size_t)max : o;
}

static void same(const struct result *a, const struct result *b)
{
    if (a->len != b->len || (a->len && memcmp(a->out, b->out, a->len) != 0) || a->consumed != b->consumed
        || a->size != b->size || a->done != b->done || a->bare_lf != b->bare_lf || a->bare_cr != b->bare_cr
        || a->too_big != b->too_big)
        abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    unsigned mode = data[0], seed = data[1];
    const unsigned char *in = data + 2;
    size_t n = size - 2;
    bool dot = !(mode & 1), finish = mode & 2;
    static const uint64_t limits[] = { 0, 1, 7, 64 };
    uint64_t max = limits[(mode >> 2) & 3];
    if (mode & 0x10)
        max = n / 2 + 1;

    struct result ref;
    struct result whole = { .out = malloc(n + 2), .cap = n + 1 };
    struct result split = { .out = malloc(n + 2), .cap = n + 1 };
    struct result many = { .out = malloc(n + 2), .cap = n + 1 };
    struct result bytes = { .out = malloc(n + 2), .cap = n + 1 };
    reference(in, n, dot, max, finish, &ref);

    run(in, n, dot, max, finish, NULL, 0, &whole);
    same(&ref, &whole);
    if (whole.consumed > n || whole.len > whole.size)
        abort();

    size_t cut = n ? (size_t)seed * n / 255 : 0;
    run(in, n, dot, max, finish, &cut, 1, &split);
    same(&whole, &split);

    size_t cuts[16];
    uint32_t x = seed * 2654435761u + 1;
    for (size_t k = 0; k < 16; k++) {
        x = x * 1103515245u + 12345u;
        cuts[k] = n ? (x >> 8) % (n + 1) : 0;
    }
    for (size_t a = 1; a < 16; a++)
        for (size_t b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
            size_t t = cuts[b];
            cuts[b] = cuts[b - 1];
            cuts[b - 1] = t;
        }
    run(in, n, dot, max, finish, cuts, 16, &many);
    same(&whole, &many);

    if (n <= 2048) {
        size_t *all = malloc((n + 1) * sizeof(*all));
        for (size_t k = 0; k < n; k++)
            all[k] = k + 1;
        run(in, n, dot, max, finish, all, n, &bytes);
        same(&whole, &bytes);
        free(all);
    }
    free(ref.out);
    free(whole.out);
    free(split.out);
    free(many.out);
    free(bytes.out);
    return 0;
}
