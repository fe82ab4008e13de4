/*
 * Greylisting (RFC 6647): the first delivery attempt of an unknown
 * (client network, sender, recipient) triplet is answered 451; a retry
 * after min_delay and within window passes and the triplet is remembered
 * for expire after its last use.  Client networks that passed
 * auto_allow_after times skip the check.  State lives in the store, so it
 * survives restarts and is shared by every worker thread.
 *
 * The state machine (filter_greylist_step) is a pure function of the
 * stored entry and the clock, so tests drive it with any clock.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/util.h"
#include "filter/filter_int.h"
#include "store/store.h"
#include "store/store_filter.h"

#define GREY_REFRESH 3600          /* a good triplet's last_seen is rewritten at most hourly */
#define GREY_SWEEP   3600          /* expired rows are deleted at most hourly */

enum filter_grey_step filter_greylist_step(const struct filter_config *fc, bool found,
                                           struct filter_grey_entry *e, int64_t now,
                                           bool *write_r)
{
    *write_r = true;
    if (!found) {
        *e = (struct filter_grey_entry){ now, now, 1, false };
        return FILTER_GREY_NEW;
    }
    if (e->passed) {
        if (now - e->last_seen > (int64_t)fc->greylist_expire) {
            *e = (struct filter_grey_entry){ now, now, 1, false };
            return FILTER_GREY_RESTART;
        }
        e->count++;
        if (now - e->last_seen >= GREY_REFRESH)
            e->last_seen = now;
        else
            *write_r = false;
        return FILTER_GREY_PASS;
    }
    int64_t age = now - e->first_seen;
    if (age > (int64_t)fc->greylist_window) {
        *e = (struct filter_grey_entry){ now, now, 1, false };
        return FILTER_GREY_RESTART;
    }
    if (age < (int64_t)fc->greylist_min_delay) {
        /* a client hammering early must not cost a write per attempt */
        e->count++;
        *write_r = false;
        return FILTER_GREY_EARLY;
    }
    e->passed = true;
    e->last_seen = now;
    e->count++;
    return FILTER_GREY_PASS_FIRST;
}

int filter_greylist_net(const struct filter_ip *ip, int v4_prefix, int v6_prefix, char *buf,
                        size_t size)
{
    uint8_t a[16];
    memcpy(a, ip->addr, 16);
    int prefix = ip->family == 4 ? v4_prefix : v6_prefix;
    int bytes = ip->family == 4 ? 4 : 16;
    for (int i = 0; i < bytes; i++) {
        int bits = prefix - i * 8;
        a[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
    }
    char t[INET6_ADDRSTRLEN];
    if (inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, a, t, sizeof(t)) == NULL)
        return -1;
    int n = snprintf(buf, size, "%s/%d", t, prefix);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Skips "field=" n times from p (SRS hash and timestamp); NULL if absent. */
static char *skip_fields(char *p, int n)
{
    for (int i = 0; i < n && p != NULL; i++) {
        p = strchr(p, '=');
        if (p != NULL)
            p++;
    }
    return p;
}

void filter_greylist_sender(const char *sender, char *buf, size_t size)
{
    char a[ADDRESS_MAX], local[ADDRESS_MAX];
    if (sender == NULL || sender[0] == '\0') {
        str_copy(buf, "<>", size);
        return;
    }
    str_copy(a, sender, sizeof(a));
    str_lower(a);
    char *at = strrchr(a, '@');
    const char *domain = "";
    if (at != NULL) {
        *at = '\0';
        domain = at + 1;
    }
    char *lp = a;
    /* BATV (prvs=TAG=user, msprvs1=TAG=user, btv1==TAG==user): drop the tag */
    if (strncmp(lp, "prvs=", 5) == 0 || strncmp(lp, "msprvs1=", 8) == 0 ||
        strncmp(lp, "btv1=", 5) == 0) {
        char *last = strrchr(lp, '=');
        if (last != NULL && last[1] != '\0')
            lp = last + 1;
    }
    /* SRS0=HASH=TT=domain=user: the hash and timestamp change per message */
    char srs[ADDRESS_MAX];
    if (strncmp(lp, "srs0=", 5) == 0 || strncmp(lp, "srs1=", 5) == 0) {
        char *rest = skip_fields(lp + 5, 2);
        if (rest != NULL) {
            snprintf(srs, sizeof(srs), "%.4s=#=#=%s", lp, rest);
            lp = srs;
        }
    }
    /* digit runs: per-message counters in VERP-style return paths */
    size_t o = 0;
    for (const char *p = lp; *p && o + 1 < sizeof(local); p++) {
        if (isdigit((unsigned char)*p)) {
            while (isdigit((unsigned char)p[1]))
                p++;
            local[o++] = '#';
        } else {
            local[o++] = *p;
        }
    }
    local[o] = '\0';
    snprintf(buf, size, "%s%s%s", local, at ? "@" : "", domain);
}

static bool greylist_sweep_due(struct filter *f, int64_t now)
{
    long long last = atomic_load(&f->greylist_cleaned);
    return now - last >= GREY_SWEEP || now < last;
}

/* Deletes expired rows now and then (whichever thread comes first). */
static void greylist_sweep(struct filter *f, int64_t now)
{
    long long last = atomic_load(&f->greylist_cleaned);
    if (now - last < GREY_SWEEP && now >= last)
        return;
    if (!atomic_compare_exchange_strong(&f->greylist_cleaned, &last, (long long)now))
        return;
    int n = store_greylist_expire(f->store, now - (int64_t)f->cfg.greylist_window,
                                  now - (int64_t)f->cfg.greylist_expire);
    if (n < 0)
        log_warn(NULL, "event=greylist_expire_failed error=\"%s\"", store_error_text());
    else if (n > 0)
        log_info(NULL, "event=greylist_expired rows=%d", n);
}

/* The check; nowait: return -2 before the first write instead. */
static int greylist_check(struct filter *f, const struct filter_ip *ip, const char *sender,
                          const char *rcpt, int *retry_r, const char **why_r, bool nowait)
{
    const struct filter_config *fc = &f->cfg;
    char net[INET6_ADDRSTRLEN + 8], snd[ADDRESS_MAX], rc[ADDRESS_MAX];
    *retry_r = 0;
    *why_r = "";
    if (f->store == NULL || filter_greylist_net(ip, fc->greylist_v4_prefix,
                                                fc->greylist_v6_prefix, net, sizeof(net)) < 0)
        return -1;
    filter_greylist_sender(sender, snd, sizeof(snd));
    str_copy(rc, rcpt ? rcpt : "", sizeof(rc));
    str_lower(rc);
    int64_t now = (int64_t)filter_now(f);
    if (nowait && greylist_sweep_due(f, now))
        return -2;
    greylist_sweep(f, now);

    if (fc->greylist_auto_allow > 0) {
        int64_t passes;
        if (store_greylist_client_get(f->store, net, now - (int64_t)fc->greylist_expire,
                                      &passes) < 0)
            return -1;
        if (passes >= fc->greylist_auto_allow) {
            *why_r = "auto-allowed client";
            return 0;
        }
    }
    struct store_greylist_row row = { 0 };
    int found = store_greylist_get(f->store, net, snd, rc, &row);
    if (found < 0)
        return -1;
    struct filter_grey_entry e = { row.first_seen, row.last_seen, row.count, row.passed };
    bool write;
    enum filter_grey_step step = filter_greylist_step(fc, found == 1, &e, now, &write);
    if (write && nowait)
        return -2;
    if (write) {
        row = (struct store_greylist_row){ e.first_seen, e.last_seen, e.count, e.passed };
        if (store_greylist_put(f->store, net, snd, rc, &row) < 0)
            return -1;
    }
    switch (step) {
    case FILTER_GREY_PASS_FIRST:
        *why_r = "retried in time";
        break;
    case FILTER_GREY_PASS:
        *why_r = "known triplet";
        if (!write)
            return 0;
        break;
    case FILTER_GREY_NEW:
    case FILTER_GREY_RESTART:
    case FILTER_GREY_EARLY: {
        int64_t wait = (int64_t)fc->greylist_min_delay - (now - e.first_seen);
        *retry_r = wait > 0 ? (int)wait : 0;
        *why_r = step == FILTER_GREY_NEW ? "new triplet" : step == FILTER_GREY_EARLY
                                                               ? "retried too early"
                                                               : "window closed or expired";
        return 1;
    }
    }
    /* a pass (first, or an hourly refresh) counts for auto-allow */
    if (fc->greylist_auto_allow > 0 && store_greylist_client_pass(f->store, net, now) < 0)
        return -1;
    return 0;
}

int filter_greylist_check(struct filter *f, const struct filter_ip *ip, const char *sender,
                          const char *rcpt, int *retry_r, const char **why_r)
{
    return greylist_check(f, ip, sender, rcpt, retry_r, why_r, false);
}

int filter_greylist_try(struct filter *f, const struct filter_ip *ip, const char *sender,
                        const char *rcpt, int *retry_r, const char **why_r)
{
    return greylist_check(f, ip, sender, rcpt, retry_r, why_r, true);
}
