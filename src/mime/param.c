/*
 * Content-Type / Content-Disposition parameters (RFC 2045 5.1) with
 * RFC 2231 continuations.  The tolerance rules follow Dovecot's
 * rfc2231-parser so BODYSTRUCTURE lists the same parameters in the same
 * order: plain parameters first, as written; then the RFC 2231 ones
 * sorted by name and joined.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "mime/mime_private.h"

struct raw_param {
    size_t key, key_len;        /* offsets into the text buffer */
    size_t val, val_len;
    unsigned idx;               /* RFC 2231 section number */
    bool ext;                   /* "*" after the section: charset'lang'%XX */
    bool rfc2231;
    size_t seq;                 /* input order, for a stable sort */
};

struct plist {
    struct raw_param *v;
    size_t n, alloc;
    struct strbuf text;         /* all keys and values, NUL-separated */
    bool oom;
};

static int plist_add(struct plist *pl, const struct raw_param *rp)
{
    if (pl->n == pl->alloc) {
        size_t na = pl->alloc ? pl->alloc * 2 : 8;
        struct raw_param *nv = realloc(pl->v, na * sizeof(*nv));
        if (nv == NULL)
            return -1;
        pl->v = nv;
        pl->alloc = na;
    }
    pl->v[pl->n++] = *rp;
    return 0;
}

/* Appends s[0..len) plus a NUL to the text buffer; returns its offset. */
static size_t text_add(struct plist *pl, const char *s, size_t len)
{
    size_t off = pl->text.len;
    if (strbuf_append(&pl->text, s, len) < 0 || strbuf_append(&pl->text, "", 1) < 0)
        pl->oom = true;
    return off;
}

/* One "; key=value".  Returns 1 with key/value, 0 at the end, -1 broken. */
static int next_param(struct mime_lex *lx, struct strbuf *key, struct strbuf *val)
{
    int ret;

    strbuf_reset(key);
    strbuf_reset(val);
    if (lx->p >= lx->end)
        return 0;
    if (*lx->p != ';')
        return -1;
    lx->p++;
    if (mime_lex_skip_cfws(lx) <= 0)
        return -1;
    if (mime_lex_token(lx, key) <= 0)
        return -1;
    if (*lx->p != '=')
        return -1;
    lx->p++;
    ret = mime_lex_skip_cfws(lx);
    if (ret <= 0) {
        /* no value */
    } else if (*lx->p == '"') {
        ret = mime_lex_quoted(lx, val);
    } else if (*lx->p == '=') {
        /* broken but common: name==?utf-8?b?...?= unquoted */
        const unsigned char *s = lx->p;
        while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' &&
               *lx->p != '\t' && *lx->p != '\r' && *lx->p != '\n')
            lx->p++;
        if (strbuf_append(val, s, (size_t)(lx->p - s)) < 0)
            lx->oom = true;
    } else {
        ret = mime_lex_token(lx, val);
    }
    return ret < 0 ? -1 : 1;
}

/* RFC 2231 3/4: "name*", "name*N", "name*N*".  A "name*" without a
 * section number keeps the number of the previous one (as Dovecot). */
static void classify(struct raw_param *rp, const char *key, unsigned *last_idx)
{
    const char *star = strchr(key, '*');
    const char *p;

    rp->rfc2231 = false;
    if (star == NULL)
        return;
    p = star;
    if (p[1] != '\0') {
        p++;
        *last_idx = 0;
        while (*p >= '0' && *p <= '9')
            *last_idx = *last_idx * 10u + (unsigned)(*p++ - '0');
    }
    rp->ext = *p == '*';
    if (rp->ext)
        p++;
    if (*p != '\0')
        return;
    rp->rfc2231 = true;
    rp->idx = *last_idx;
    rp->key_len = (size_t)(star - key);
}

static int cmp_rfc2231(const void *a, const void *b, void *ctx)
{
    const struct raw_param *x = a, *y = b;
    const char *t = ((const struct plist *)ctx)->text.data;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(t + x->key, t + y->key, n);

    if (c == 0 && x->key_len != y->key_len)
        c = x->key_len < y->key_len ? -1 : 1;
    if (c != 0)
        return c;
    if (x->idx != y->idx)
        return x->idx < y->idx ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool same_key(const struct plist *pl, const struct raw_param *a,
                     const struct raw_param *b)
{
    const char *t = pl->text.data;
    return a->key_len == b->key_len &&
           strncasecmp(t + a->key, t + b->key, a->key_len) == 0;
}

/* Output list entry built in a strbuf: "key\0value\0" pairs. */
static void out_pair(struct strbuf *o, size_t *count, bool *oom,
                     const char *k, size_t klen, const char *v, size_t vlen)
{
    if (strbuf_append(o, k, klen) < 0 || strbuf_append(o, "", 1) < 0 ||
        strbuf_append(o, v, vlen) < 0 || strbuf_append(o, "", 1) < 0)
        *oom = true;
    (*count)++;
}

/* Joins one group of RFC 2231 sections [i, j) into o. */
static void join_group(struct plist *pl, struct raw_param *g, size_t n,
                       struct strbuf *o, size_t *count, bool *oom)
{
    const char *t = pl->text.data;
    bool ok = true, have_ext = false;
    struct strbuf v, k;

    for (size_t i = 0; i < n; i++) {
        if (g[i].idx != i)
            ok = false;
        if (g[i].ext)
            have_ext = true;
    }
    strbuf_init(&v, (size_t)-1 / 2);
    strbuf_init(&k, (size_t)-1 / 2);
    if (!ok) {
        /* a missing section: keep them apart, named as written */
        for (size_t i = 0; i < n; i++) {
            strbuf_reset(&k);
            if (strbuf_append(&k, t + g[i].key, g[i].key_len) < 0 ||
                strbuf_printf(&k, g[i].ext ? "*%u*" : "*%u", g[i].idx) < 0)
                *oom = true;
            out_pair(o, count, oom, k.data ? k.data : "", k.len,
                     t + g[i].val, g[i].val_len);
        }
    } else {
        if (!g[0].ext && have_ext && strbuf_append(&v, "''", 2) < 0)
            *oom = true;
        for (size_t i = 0; i < n; i++) {
            const char *s = t + g[i].val;
            for (size_t x = 0; x < g[i].val_len; x++) {
                /* a plain section after an encoded one: escape '%' */
                int r = !g[i].ext && have_ext && s[x] == '%' ?
                        strbuf_append(&v, "%25", 3) : strbuf_append(&v, s + x, 1);
                if (r < 0)
                    *oom = true;
            }
        }
        if (strbuf_append(&k, t + g[0].key, g[0].key_len) < 0 ||
            (have_ext && strbuf_append(&k, "*", 1) < 0))
            *oom = true;
        out_pair(o, count, oom, k.data ? k.data : "", k.len,
                 v.data ? v.data : "", v.len);
    }
    strbuf_free(&v);
    strbuf_free(&k);
}

/* Turns the "key\0value\0" pairs into one malloc block. */
static int build(const struct strbuf *o, size_t count, struct mime_param **params_r)
{
    size_t head = count * sizeof(struct mime_param);
    char *block = malloc(head + o->len + 1);
    if (block == NULL)
        return -1;
    struct mime_param *params = (struct mime_param *)(void *)block;
    char *s = block + head;
    if (o->len > 0)
        memcpy(s, o->data, o->len);
    for (size_t i = 0; i < count; i++) {
        params[i].name = s;
        s += strlen(s) + 1;
        params[i].value = s;
        s += strlen(s) + 1;
    }
    *params_r = params;
    return (int)count;
}

static void collect(struct mime_lex *lx, struct plist *pl)
{
    struct strbuf key, val;
    unsigned last_idx = 0;
    size_t seq = 0;
    int ret;

    strbuf_init(&key, (size_t)-1 / 2);
    strbuf_init(&val, (size_t)-1 / 2);
    while ((ret = next_param(lx, &key, &val)) != 0) {
        if (ret < 0) {
            /* skip what is broken, up to the next ';' */
            if (lx->p >= lx->end)
                break;
            lx->p++;
            continue;
        }
        struct raw_param rp = { 0 };
        const char *k = key.data ? key.data : "";
        rp.key = text_add(pl, k, key.len);
        rp.key_len = key.len;
        /* values stop at an embedded NUL, like C strings */
        const char *v = val.data ? val.data : "";
        rp.val = text_add(pl, v, strlen(v));
        rp.val_len = strlen(v);
        rp.seq = seq++;
        classify(&rp, k, &last_idx);
        if (plist_add(pl, &rp) < 0)
            pl->oom = true;
    }
    strbuf_free(&key);
    strbuf_free(&val);
}

int mime_params_from_lex(struct mime_lex *lx, struct mime_param **params_r)
{
    struct plist pl = { 0 };
    struct strbuf o;
    size_t count = 0;
    bool oom = false;
    int ret = -1;

    *params_r = NULL;
    lx->nul_to_fffd = true;
    strbuf_init(&pl.text, (size_t)-1 / 2);
    strbuf_init(&o, (size_t)-1 / 2);
    collect(lx, &pl);
    if (pl.oom || lx->oom)
        goto out;
    /* plain parameters first, in order; the RFC 2231 ones are moved to
     * the front of the array, then sorted and joined */
    size_t next = 0;
    for (size_t i = 0; i < pl.n; i++) {
        const struct raw_param *rp = &pl.v[i];
        if (rp->rfc2231)
            pl.v[next++] = *rp;
        else
            out_pair(&o, &count, &oom, pl.text.data + rp->key, rp->key_len,
                     pl.text.data + rp->val, rp->val_len);
    }
    if (next > 1)
        qsort_r(pl.v, next, sizeof(*pl.v), cmp_rfc2231, &pl);
    for (size_t i = 0, j; i < next; i = j) {
        for (j = i + 1; j < next && same_key(&pl, &pl.v[i], &pl.v[j]); j++)
            ;
        join_group(&pl, pl.v + i, j - i, &o, &count, &oom);
    }
    if (!oom && count <= (size_t)(int)((unsigned)-1 >> 1))
        ret = build(&o, count, params_r);
out:
    free(pl.v);
    strbuf_free(&pl.text);
    strbuf_free(&o);
    return ret;
}

int mime_params_parse(const char *s, size_t len, struct mime_param **params_r)
{
    struct mime_lex lx;

    mime_lex_init(&lx, s, len);
    return mime_params_from_lex(&lx, params_r);
}

const char *mime_param_get(const struct mime_param *params, size_t count,
                           const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcasecmp(params[i].name, name) == 0)
            return params[i].value;
    }
    return NULL;
}

int mime_param_get_utf8(const struct mime_param *params, size_t count,
                        const char *name, struct strbuf *out)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < count; i++) {
        const char *k = params[i].name;
        if (strncasecmp(k, name, n) == 0 && k[n] == '*' && k[n + 1] == '\0')
            return mime_rfc2231_decode(params[i].value, strlen(params[i].value),
                                       out) < 0 ? -1 : 1;
    }
    const char *v = mime_param_get(params, count, name);
    if (v == NULL)
        return 0;
    return mime_rfc2047_decode(v, strlen(v), out) < 0 ? -1 : 1;
}
