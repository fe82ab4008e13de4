/*
 * Answer cache in front of the synchronous resolver.
 *
 * libunbound keeps its own cache, but even a cached answer travels through
 * its dispatcher: the asking thread posts the query, the dispatcher thread
 * wakes, answers and wakes the asker again.  On a busy MX the same few
 * names (the sender domain's SPF and DMARC records, DNS lists) are asked
 * for on every message, so the two thread switches per lookup cost more
 * than the lookup.  This cache answers those from memory on the asking
 * thread.
 *
 * Kept: answers with RCODE NOERROR (records or NODATA) and NXDOMAIN, for
 * the TTL libunbound reported (the remaining TTL when it answered from its
 * cache), capped at DNS_CACHE_TTL_MAX; nothing with TTL 0 and no failure
 * (SERVFAIL, timeout) is ever kept.  Entries hold the raw RDATA; a hit is
 * decoded again by dns_result_from_rdata(), so it gives exactly what the
 * first answer gave.  Bounded: at most max_entries, the oldest insertion
 * is evicted first; names are compared without ASCII case.
 */
#include "dns/dns_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct centry {
    struct centry *hnext;             /* hash chain */
    struct centry *older, *newer;     /* insertion order */
    uint32_t hash;
    uint16_t type;
    int rcode;
    bool nxdomain, secure, bogus;
    uint64_t expires_ms;
    char *name;                       /* lower-cased */
    char canon[DNS_NAME_MAX + 2];
    size_t n;
    int *len;
    unsigned char **data;             /* n pointers into one block, NULL-terminated */
};

struct dns_cache {
    pthread_mutex_t mu;
    size_t max_entries, n_entries, n_buckets;
    struct centry **buckets;
    struct centry *oldest, *newest;
    uint64_t hits, misses;
};

static uint32_t name_hash(const char *name, uint16_t type)
{
    uint32_t h = 2166136261u ^ type;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        unsigned c = *p;
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        h = (h ^ c) * 16777619u;
    }
    return h;
}

static bool name_eq(const char *stored, const char *name)
{
    for (;; stored++, name++) {
        unsigned a = (unsigned char)*stored, b = (unsigned char)*name;
        if (b >= 'A' && b <= 'Z')
            b += 'a' - 'A';
        if (a != b)
            return false;
        if (a == 0)
            return true;
    }
}

struct dns_cache *dns_cache_new(size_t max_entries)
{
    struct dns_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->max_entries = max_entries ? max_entries : 1;
    c->n_buckets = 64;
    while (c->n_buckets < c->max_entries && c->n_buckets < (1u << 20))
        c->n_buckets <<= 1;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void entry_free(struct centry *e)
{
    if (e == NULL)
        return;
    free(e->name);
    free(e->len);
    free(e->data);  /* the record bytes live in the same block */
    free(e);
}

/* Unlinks e from its chain and the age list.  Lock held. */
static void entry_unlink(struct dns_cache *c, struct centry *e)
{
    struct centry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->n_entries--;
}

void dns_cache_free(struct dns_cache *c)
{
    if (c == NULL)
        return;
    struct centry *e = c->oldest;
    while (e != NULL) {
        struct centry *next = e->newer;
        entry_free(e);
        e = next;
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The live entry for (name, type), dropping it if it has expired.  Lock held. */
static struct centry *lookup_locked(struct dns_cache *c, const char *name, uint16_t type,
                                    uint32_t h, uint64_t now_ms)
{
    for (struct centry *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->hnext) {
        if (e->hash != h || e->type != type || !name_eq(e->name, name))
            continue;
        if (e->expires_ms <= now_ms) {
            entry_unlink(c, e);
            entry_free(e);
            return NULL;
        }
        return e;
    }
    return NULL;
}

bool dns_cache_get(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms,
                   struct dns_result *res)
{
    if (c == NULL)
        return false;
    uint32_t h = name_hash(name, type);
    pthread_mutex_lock(&c->mu);
    struct centry *e = lookup_locked(c, name, type, h, now_ms);
    if (e == NULL) {
        c->misses++;
        pthread_mutex_unlock(&c->mu);
        return false;
    }
    c->hits++;
    memset(res, 0, sizeof(*res));
    res->secure = e->secure;
    res->bogus = e->bogus;
    res->ttl = (uint32_t)((e->expires_ms - now_ms + 999) / 1000);
    str_copy(res->canon, e->canon, sizeof(res->canon));
    dns_result_from_rdata(res, type, e->rcode, e->nxdomain,
                          (const unsigned char *const *)e->data, e->len);
    pthread_mutex_unlock(&c->mu);
    return true;
}

void dns_cache_put(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms,
                   const struct dns_cache_answer *a)
{
    if (c == NULL || a->ttl == 0 || !(a->rcode == 0 || a->rcode == 3 || a->nxdomain))
        return;
    size_t n = 0, bytes = 0;
    while (a->data && a->data[n] && n < DNS_MAX_RECORDS) {
        if (a->len[n] < 0)
            return;
        bytes += (size_t)a->len[n];
        n++;
    }
    struct centry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    e->name = strdup(name);
    e->len = calloc(n + 1, sizeof(*e->len));
    /* pointers, then the record bytes, in one block */
    e->data = malloc((n + 1) * sizeof(*e->data) + bytes + 1);
    if (e->name == NULL || e->len == NULL || e->data == NULL) {
        entry_free(e);
        return;
    }
    for (char *p = e->name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p += 'a' - 'A';
    unsigned char *blob = (unsigned char *)(e->data + n + 1);
    for (size_t i = 0; i < n; i++) {
        e->data[i] = blob;
        e->len[i] = a->len[i];
        memcpy(blob, a->data[i], (size_t)a->len[i]);
        blob += a->len[i];
    }
    e->data[n] = NULL;
    e->n = n;
    e->type = type;
    e->rcode = a->rcode;
    e->nxdomain = a->nxdomain;
    e->secure = a->secure;
    e->bogus = a->bogus;
    str_copy(e->canon, a->canon ? a->canon : "", sizeof(e->canon));
    uint32_t ttl = a->ttl < DNS_CACHE_TTL_MAX ? a->ttl : DNS_CACHE_TTL_MAX;
    e->expires_ms = now_ms + (uint64_t)ttl * 1000;
    e->hash = name_hash(name, type);

    pthread_mutex_lock(&c->mu);
    struct centry *old = lookup_locked(c, name, type, e->hash, now_ms);
    if (old != NULL) {  /* another thread asked at the same time */
        entry_unlink(c, old);
        entry_free(old);
    }
    while (c->n_entries >= c->max_entries && c->oldest != NULL) {
        struct centry *victim = c->oldest;
        entry_unlink(c, victim);
        entry_free(victim);
    }
    struct centry **b = &c->buckets[e->hash & (c->n_buckets - 1)];
    e->hnext = *b;
    *b = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->n_entries++;
    pthread_mutex_unlock(&c->mu);
}

void dns_cache_stats(struct dns_cache *c, uint64_t *hits, uint64_t *misses, size_t *entries)
{
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    *entries = c->n_entries;
    pthread_mutex_unlock(&c->mu);
}
