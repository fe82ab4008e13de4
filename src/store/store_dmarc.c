/*
 * DMARC aggregate data tables (see store_dmarc.h).  The schema is created
 * lazily: a statement that fails to prepare because a table is missing
 * makes us run the CREATE ... IF NOT EXISTS script once and try again, so
 * no hook in the store's own schema setup is needed.
 */
#include "store/store_dmarc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

#define DMARC_REPORTS_KEEP (60 * 86400)

static const char dmarc_schema[] =
    "CREATE TABLE IF NOT EXISTS dmarc_results ("
    "  id INTEGER PRIMARY KEY,"
    "  time INTEGER NOT NULL,"
    "  policy_domain TEXT NOT NULL COLLATE NOCASE,"
    "  header_from TEXT NOT NULL,"
    "  source_ip TEXT NOT NULL,"
    "  envelope_from TEXT NOT NULL,"
    "  disposition TEXT NOT NULL,"
    "  dkim_eval TEXT NOT NULL,"
    "  spf_eval TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  dkim_auth TEXT NOT NULL,"
    "  spf_domain TEXT NOT NULL,"
    "  spf_scope TEXT NOT NULL,"
    "  spf_result TEXT NOT NULL,"
    "  record TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS dmarc_results_domain ON dmarc_results(policy_domain, time);"
    "CREATE TABLE IF NOT EXISTS dmarc_reports ("
    "  domain TEXT NOT NULL COLLATE NOCASE,"
    "  begin INTEGER NOT NULL,"
    "  end INTEGER NOT NULL,"
    "  report_id TEXT NOT NULL,"
    "  sent INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (domain, begin));";

/* Prepares sql on connection c, creating the tables when they are
 * missing.  NULL on error (recorded). */
static sqlite3_stmt *prepare_on(struct store_conn *c, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (c == NULL)
        return NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) == SQLITE_OK)
        return s;
    if (store_exec(c, dmarc_schema, NULL) < 0)
        return NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        store_fail_db(c, NULL, "dmarc");
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* The same on the calling thread's connection. */
static sqlite3_stmt *prepare(struct store *st, struct store_conn **c_r, const char *sql)
{
    struct store_conn *c = store_conn_get(st);
    *c_r = c;
    return prepare_on(c, sql);
}

/* Steps a statement without results and finalizes it.  0 or -1. */
static int run_done(struct store_conn *c, sqlite3_stmt *s, const char **error_r)
{
    int rc = sqlite3_step(s);
    int out = rc == SQLITE_DONE ? 0 : store_fail_db(c, error_r, "dmarc");
    sqlite3_finalize(s);
    return out;
}

/* ---- per-message rows, written behind ----
 *
 * A row per received message with a DMARC record would be a write
 * transaction of its own (and a WAL fsync) on the path of every message,
 * contending for the write lock with the group commit.  Rows are queued
 * instead and written by the store's index thread inside its next batch
 * transaction, or on their own once DMARC_PENDING_MS passed without one.
 * Readers (the report windows) and store_close write what is queued first.
 * Without the commit threads (CLI), or past DMARC_PENDING_MAX queued rows,
 * the caller writes at once. */

#define DMARC_PENDING_MAX 10000
#define N_TEXT 13

struct store_dmarc_pending {
    struct store_dmarc_pending *next;
    int64_t time;
    char *text[N_TEXT];
};

static void pending_free(struct store_dmarc_pending *p)
{
    while (p != NULL) {
        struct store_dmarc_pending *next = p->next;
        for (int i = 0; i < N_TEXT; i++)
            free(p->text[i]);
        free(p);
        p = next;
    }
}

static struct store_dmarc_pending *pending_new(const struct store_dmarc_row *row)
{
    struct store_dmarc_pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    const char *text[N_TEXT] = { row->policy_domain, row->header_from, row->source_ip,
                                 row->envelope_from, row->disposition, row->dkim_eval,
                                 row->spf_eval, row->reason, row->dkim_auth, row->spf_domain,
                                 row->spf_scope, row->spf_result, row->record };
    p->time = row->time;
    for (int i = 0; i < N_TEXT; i++)
        if ((p->text[i] = strdup(text[i] ? text[i] : "")) == NULL) {
            pending_free(p);
            return NULL;
        }
    return p;
}

/* Inserts the rows of list on c (inside the caller's transaction, if any)
 * and frees them.  0 or -1. */
static int insert_rows(struct store_conn *c, struct store_dmarc_pending *list, const char **error_r)
{
    if (list == NULL)
        return 0;
    sqlite3_stmt *s = prepare_on(c, "INSERT INTO dmarc_results(time, policy_domain, header_from, source_ip,"
                                    " envelope_from, disposition, dkim_eval, spf_eval, reason, dkim_auth,"
                                    " spf_domain, spf_scope, spf_result, record)"
                                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
    if (s == NULL) {
        pending_free(list);
        return store_fail_again(error_r);
    }
    int out = 0;
    for (struct store_dmarc_pending *p = list; p != NULL && out == 0; p = p->next) {
        sqlite3_bind_int64(s, 1, p->time);
        for (int i = 0; i < N_TEXT; i++)
            sqlite3_bind_text(s, i + 2, p->text[i], -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            out = store_fail_db(c, error_r, "dmarc");
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    pending_free(list);
    return out;
}

/* Takes the queued rows (q_lock not held by the caller). */
static struct store_dmarc_pending *take_pending(struct store *st)
{
    pthread_mutex_lock(&st->q_lock);
    struct store_dmarc_pending *list = st->dmarc_q;
    st->dmarc_q = NULL;
    st->dmarc_tail = &st->dmarc_q;
    st->dmarc_n = 0;
    pthread_mutex_unlock(&st->q_lock);
    return list;
}

void store_dmarc_write_queued(struct store *st, struct store_conn *c, bool in_tx)
{
    struct store_dmarc_pending *list = take_pending(st);
    if (list == NULL)
        return;
    const char *err = NULL;
    if (in_tx) {
        if (store_stmt_run(c, STMT_SAVEPOINT) < 0) {
            pending_free(list);
            return;
        }
        if (insert_rows(c, list, &err) < 0) {
            log_warn(NULL, "event=dmarc_rows_lost error=\"%s\"", err ? err : "?");
            store_stmt_run(c, STMT_ROLLBACK_TO);
        }
        store_stmt_run(c, STMT_RELEASE);
        return;
    }
    if (store_begin(c, &err) < 0) {
        log_warn(NULL, "event=dmarc_rows_lost error=\"%s\"", err ? err : "?");
        pending_free(list);
        return;
    }
    if (insert_rows(c, list, &err) < 0) {
        log_warn(NULL, "event=dmarc_rows_lost error=\"%s\"", err ? err : "?");
        store_rollback(c);
        return;
    }
    if (store_commit(c, &err) < 0)
        log_warn(NULL, "event=dmarc_rows_lost error=\"%s\"", err ? err : "?");
}

int store_dmarc_add(struct store *st, const struct store_dmarc_row *row, const char **error_r)
{
    struct store_dmarc_pending *p = pending_new(row);
    if (p == NULL)
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    pthread_mutex_lock(&st->q_lock);
    bool queued = __atomic_load_n(&st->threads_ready, __ATOMIC_ACQUIRE) && !st->stopping &&
                  st->dmarc_n < DMARC_PENDING_MAX;
    if (queued) {
        if (st->dmarc_q == NULL)
            st->dmarc_since_ms = now_mono_ms();
        *st->dmarc_tail = p;
        st->dmarc_tail = &p->next;
        st->dmarc_n++;
        pthread_cond_signal(&st->synced_cond); /* the index thread's timer */
    }
    pthread_mutex_unlock(&st->q_lock);
    if (queued)
        return 0;
    return insert_rows(store_conn_get(st), p, error_r);
}

void store_dmarc_flush(struct store *st)
{
    struct store_conn *c = store_conn_get(st);
    if (c != NULL)
        store_dmarc_write_queued(st, c, false);
}

int store_dmarc_windows(struct store *st, int64_t before, int64_t period, struct store_dmarc_window **windows_r)
{
    struct store_conn *c;
    *windows_r = NULL;
    if (period <= 0)
        return -1;
    store_dmarc_flush(st);
    sqlite3_stmt *s = prepare(st, &c,
                              "SELECT DISTINCT policy_domain, (time / ?2) * ?2 AS b FROM dmarc_results"
                              " WHERE time < (?1 / ?2) * ?2 ORDER BY b, policy_domain");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, before);
    sqlite3_bind_int64(s, 2, period);
    size_t n = 0, alloc = 0;
    struct store_dmarc_window *w = NULL;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == alloc) {
            size_t na = alloc ? alloc * 2 : 8;
            struct store_dmarc_window *nw = realloc(w, na * sizeof(*w));
            if (nw == NULL)
                break;
            w = nw;
            alloc = na;
        }
        const unsigned char *d = sqlite3_column_text(s, 0);
        str_copy(w[n].domain, d ? (const char *)d : "", sizeof(w[n].domain));
        w[n].begin = sqlite3_column_int64(s, 1);
        n++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(w);
        return store_fail_db(c, NULL, "dmarc windows");
    }
    *windows_r = w;
    return (int)n;
}

static const char *col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

int store_dmarc_aggregate(struct store *st, const char *domain, int64_t begin, int64_t end,
                          void (*fn)(const struct store_dmarc_row *row, int64_t count, void *arg), void *arg)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "SELECT header_from, source_ip, envelope_from, disposition, dkim_eval,"
                              " spf_eval, reason, dkim_auth, spf_domain, spf_scope, spf_result,"
                              " count(*) AS n FROM dmarc_results"
                              " WHERE policy_domain = ?1 AND time >= ?2 AND time <= ?3"
                              " GROUP BY header_from, source_ip, envelope_from, disposition, dkim_eval,"
                              " spf_eval, reason, dkim_auth, spf_domain, spf_scope, spf_result"
                              " ORDER BY n DESC, source_ip");
    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, domain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, begin);
    sqlite3_bind_int64(s, 3, end);
    int rc, groups = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_dmarc_row row = {
            .policy_domain = domain, .header_from = col(s, 0), .source_ip = col(s, 1),
            .envelope_from = col(s, 2), .disposition = col(s, 3), .dkim_eval = col(s, 4),
            .spf_eval = col(s, 5), .reason = col(s, 6), .dkim_auth = col(s, 7),
            .spf_domain = col(s, 8), .spf_scope = col(s, 9), .spf_result = col(s, 10), .record = "",
        };
        fn(&row, sqlite3_column_int64(s, 11), arg);
        groups++;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? groups : store_fail_db(c, NULL, "dmarc aggregate");
}

int store_dmarc_record(struct store *st, const char *domain, int64_t begin, int64_t end, char *buf, size_t size)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "SELECT record FROM dmarc_results WHERE policy_domain = ?1"
                              " AND time >= ?2 AND time <= ?3 ORDER BY time DESC, id DESC LIMIT 1");
    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, domain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, begin);
    sqlite3_bind_int64(s, 3, end);
    int rc = sqlite3_step(s), out = 0;
    if (rc == SQLITE_ROW) {
        str_copy(buf, col(s, 0), size);
        out = 1;
    } else if (rc != SQLITE_DONE) {
        out = store_fail_db(c, NULL, "dmarc record");
    }
    sqlite3_finalize(s);
    return out;
}

int store_dmarc_reported(struct store *st, const char *domain, int64_t begin)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c, "SELECT 1 FROM dmarc_reports WHERE domain = ?1 AND begin = ?2");
    if (s == NULL)
        return -1;
    sqlite3_bind_text(s, 1, domain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, begin);
    int rc = sqlite3_step(s);
    int out = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "dmarc reported");
    sqlite3_finalize(s);
    return out;
}

int store_dmarc_finish(struct store *st, const char *domain, int64_t begin, int64_t end, const char *report_id,
                       int sent, const char **error_r)
{
    struct store_conn *c;
    /* Prepare first: it may create the tables, which must not happen
     * inside our transaction's error path. */
    sqlite3_stmt *ins = prepare(st, &c,
                                "INSERT OR REPLACE INTO dmarc_reports(domain, begin, end, report_id, sent,"
                                " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (ins == NULL)
        return store_fail_again(error_r);
    sqlite3_stmt *del = NULL, *old = NULL;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM dmarc_results WHERE policy_domain = ?1 AND time >= ?2"
                                  " AND time <= ?3", -1, &del, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "DELETE FROM dmarc_reports WHERE created < ?1", -1, &old, NULL) != SQLITE_OK) {
        store_fail_db(c, error_r, "dmarc finish");
        sqlite3_finalize(ins);
        sqlite3_finalize(del);
        return -1;
    }
    int64_t now = store_now();
    sqlite3_bind_text(ins, 1, domain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins, 2, begin);
    sqlite3_bind_int64(ins, 3, end);
    sqlite3_bind_text(ins, 4, report_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(ins, 5, sent);
    sqlite3_bind_int64(ins, 6, now);
    sqlite3_bind_text(del, 1, domain, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(del, 2, begin);
    sqlite3_bind_int64(del, 3, end);
    sqlite3_bind_int64(old, 1, now - DMARC_REPORTS_KEEP);
    if (store_begin(c, error_r) < 0) {
        sqlite3_finalize(ins);
        sqlite3_finalize(del);
        sqlite3_finalize(old);
        return -1;
    }
    int rc = run_done(c, ins, error_r);
    if (rc == 0)
        rc = run_done(c, del, error_r);
    else
        sqlite3_finalize(del);
    if (rc == 0)
        rc = run_done(c, old, error_r);
    else
        sqlite3_finalize(old);
    if (rc < 0) {
        store_rollback(c);
        return -1;
    }
    return store_commit(c, error_r);
}

int store_dmarc_prune(struct store *st, int64_t before)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c, "DELETE FROM dmarc_results WHERE time < ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, before);
    return run_done(c, s, NULL);
}
