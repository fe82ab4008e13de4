/*
 * Rate limits: events per key (client address, user) over a time window,
 * estimated over two fixed windows as a sliding one (the previous
 * window's count weighted by how much of it still overlaps).
 *
 * State is in memory, like Postfix's anvil: counters over minutes and
 * hours that a restart may forget at no cost, and that must not cost a
 * disk write per connection.  The table is bounded: when full, expired
 * keys are swept; if it is still full the event is allowed (and logged
 * once), never refused for want of memory.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "filter/filter_int.h"

struct rate_entry {
    struct rate_entry *next;
    time_t start;           /* start of the current window (a multiple of window) */
    int window;
    unsigned cur, prev;
    char key[];
};

struct filter_rate {
    pthread_mutex_t mu;
    struct rate_entry **buckets;
    size_t n_buckets, n, max;
    bool full_logged;
};

struct filter_rate *filter_rate_new(size_t max_keys)
{
    struct filter_rate *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->n_buckets = 1;
    while (r->n_buckets < max_keys / 2 && r->n_buckets < (1u << 20))
        r->n_buckets <<= 1;
    r->buckets = calloc(r->n_buckets, sizeof(*r->buckets));
    if (r->buckets == NULL) {
        free(r);
        return NULL;
    }
    r->max = max_keys;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void filter_rate_free(struct filter_rate *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_buckets; i++)
        for (struct rate_entry *e = r->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(r->buckets);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ull & (size_t)-1;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * (size_t)1099511628211ull;
    return h;
}

/* Removes keys whose windows both ended (they count nothing any more). */
static void sweep(struct filter_rate *r, time_t now)
{
    for (size_t i = 0; i < r->n_buckets; i++) {
        struct rate_entry **pp = &r->buckets[i];
        while (*pp != NULL) {
            struct rate_entry *e = *pp;
            if (now - e->start >= 2 * (time_t)e->window) {
                *pp = e->next;
                free(e);
                r->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static struct rate_entry *lookup(struct filter_rate *r, const char *key, int window, time_t now,
                                 bool create)
{
    size_t b = hash(key) & (r->n_buckets - 1);
    for (struct rate_entry *e = r->buckets[b]; e; e = e->next)
        if (e->window == window && strcmp(e->key, key) == 0)
            return e;
    if (!create)
        return NULL;
    if (r->n >= r->max)
        sweep(r, now);
    if (r->n >= r->max) {
        if (!r->full_logged)
            log_warn(NULL, "event=ratelimit_table_full keys=%zu", r->n);
        r->full_logged = true;
        return NULL;
    }
    size_t kl = strlen(key);
    struct rate_entry *e = calloc(1, sizeof(*e) + kl + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, kl + 1);
    e->window = window;
    e->start = now - now % window;
    e->next = r->buckets[b];
    r->buckets[b] = e;
    r->n++;
    return e;
}

/* The sliding-window rate for key including this event when count is
 * set; with count false nothing is recorded (and no entry is made). */
static double rate_of(struct filter_rate *r, const char *key, int window, time_t now, bool count)
{
    pthread_mutex_lock(&r->mu);
    struct rate_entry *e = lookup(r, key, window, now, count);
    if (e == NULL) {
        pthread_mutex_unlock(&r->mu);
        return count ? -1 : 0;
    }
    time_t start = now - now % window;
    if (start != e->start) {
        e->prev = start - e->start == window ? e->cur : 0;
        e->cur = 0;
        e->start = start;
    }
    /* the previous window counts for the part of it still inside the
     * sliding window that ends now */
    double overlap = (double)(window - (now - start)) / window;
    double rate = e->prev * overlap + e->cur + (count ? 1 : 0);
    if (count && e->cur < (unsigned)-1)
        e->cur++;
    pthread_mutex_unlock(&r->mu);
    return rate;
}

bool filter_rate_hit(struct filter_rate *r, const char *key, int limit, int window, time_t now)
{
    if (r == NULL || limit <= 0 || window <= 0)
        return true;
    double rate = rate_of(r, key, window, now, true);
    return rate < 0 || rate <= (double)limit;
}

bool filter_rate_reached(struct filter_rate *r, const char *key, int limit, int window, time_t now)
{
    if (r == NULL || limit <= 0 || window <= 0)
        return false;
    return rate_of(r, key, window, now, false) >= (double)limit;
}
