/*
 * The DMARC aggregate report sender: a service of `postel serve` (main.c
 * registers it next to the outbound queue).  A thread wakes a few times per
 * report window, asks src/auth/dmarc_report.c for the reports that are due
 * and hands each one, DKIM-signed when the From domain has keys, to the
 * outbound queue (queue_inject).  It lives here, at the top layer, because
 * it joins an engine (auth) with the queue; neither includes the other.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "cli/cli_auth.h"
#include "core/log.h"
#include "core/util.h"
#include "net/server.h"
#include "queue/queue.h"

#define DMARC_TICK_MIN   1      /* seconds between looks at the store, at least */
#define DMARC_TICK_MAX   300    /* ... and at most (daily reports: every 5 min) */
#define DMARC_SIGN_KEYS  4

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stopping;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

struct send_ctx {
    struct server *srv;
    const struct config *cfg;
    const char *sender;
};

/* Prepends DKIM-Signature fields for the report's From domain, when that
 * domain signs (the receiver then sees DMARC-aligned reports).  The
 * message is queued unsigned when the key cannot be used: losing the
 * report would be worse. */
static void report_sign(const struct config *cfg, const char *msg, size_t len, struct strbuf *out)
{
    char domain[256], err[256];
    if (dkim_from_domain(msg, len, domain, sizeof(domain)) < 0)
        return;
    struct dkim_key keys[DMARC_SIGN_KEYS];
    int n = dkim_keys_for_domain(cfg, domain, keys, DMARC_SIGN_KEYS, err, sizeof(err));
    if (n < 0) {
        log_warn(NULL, "event=dmarc_report_sign_failed domain=%s error=\"%s\"", domain, err);
        return;
    }
    if (n > 0 && dkim_sign(keys, n, msg, len, 0, out, err, sizeof(err)) < 0) {
        log_warn(NULL, "event=dmarc_report_sign_failed domain=%s error=\"%s\"", domain, err);
        strbuf_reset(out);
    }
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
}

/* dmarc_report_send_fn: one report to one rua address, through the queue. */
static int report_send(void *arg, const char *rcpt, const char *msg, size_t len)
{
    struct send_ctx *sc = arg;
    struct strbuf full;
    strbuf_init(&full, len + 64 * 1024);
    report_sign(sc->cfg, msg, len, &full);
    if (strbuf_append(&full, msg, len) < 0) {
        strbuf_free(&full);
        return -1;
    }
    const char *rcpts[1] = { rcpt };
    char id[64] = "";
    int rc = queue_inject(sc->srv->store, sc->sender, rcpts, 1, full.data, full.len, id, sizeof(id));
    if (rc == 0)
        log_info(NULL, "event=dmarc_report_queued rua=%s id=%s size=%zu", rcpt, id, full.len);
    else
        log_warn(NULL, "event=dmarc_report_queue_failed rua=%s rc=%d", rcpt, rc);
    strbuf_free(&full);
    if (rc == 0)
        queue_wakeup();
    return rc == 0 ? 0 : -1;
}

/* One pass: every report that is due.  Returns the tick to wait next. */
static time_t dmarc_service_run_once(struct server *srv)
{
    const struct config *cfg = atomic_load(&srv->cfg);
    struct dmarc_report_opts o;
    dmarc_report_opts_from_config(&o, cfg);
    time_t tick = (time_t)(o.period / 4);
    if (tick < DMARC_TICK_MIN)
        tick = DMARC_TICK_MIN;
    if (tick > DMARC_TICK_MAX)
        tick = DMARC_TICK_MAX;
    if (!cfg->dmarc_reports || srv->dns == NULL || srv->store == NULL)
        return tick;
    struct dmarc_dns dns;
    dmarc_dns_use_resolver(&dns, srv->dns);
    struct send_ctx sc = { .srv = srv, .cfg = cfg, .sender = o.email };
    int n = dmarc_reports_build_due(srv->store, &dns, &o, time(NULL), report_send, &sc);
    if (n < 0)
        log_warn(NULL, "event=dmarc_reports_failed error=\"store error\"");
    else if (n > 0)
        log_info(NULL, "event=dmarc_reports_done sent=%d", n);
    return tick;
}

static void *dmarc_service_main(void *arg)
{
    struct server *srv = arg;
    pthread_mutex_lock(&g.lock);
    while (!g.stopping) {
        pthread_mutex_unlock(&g.lock);
        time_t tick = dmarc_service_run_once(srv);
        pthread_mutex_lock(&g.lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += tick;
        while (!g.stopping && pthread_cond_timedwait(&g.cond, &g.lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&g.lock);
    return NULL;
}

int dmarc_service_start(struct server *srv)
{
    pthread_mutex_lock(&g.lock);
    if (g.running) {
        pthread_mutex_unlock(&g.lock);
        return 0;
    }
    g.stopping = false;
    int rc = pthread_create(&g.thread, NULL, dmarc_service_main, srv);
    g.running = rc == 0;
    pthread_mutex_unlock(&g.lock);
    if (rc != 0) {
        log_error(NULL, "event=dmarc_service_failed error=\"%s\"", strerror(rc));
        return -1;
    }
    return 0;
}

void dmarc_service_stop(void)
{
    pthread_mutex_lock(&g.lock);
    if (!g.running) {
        pthread_mutex_unlock(&g.lock);
        return;
    }
    g.stopping = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    pthread_join(g.thread, NULL);
    pthread_mutex_lock(&g.lock);
    g.running = false;
    pthread_mutex_unlock(&g.lock);
}
