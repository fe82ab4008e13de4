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

/* Prepares sql on the calling thread's connection, creating the tables
 * when they are missing.  NULL on error (recorded). */
static sqlite3_stmt *prepare(struct store *st, struct store_conn **c_r, const char *sql)
{
    struct store_conn *c = store_conn_get(st);
    sqlite3_stmt *s = NULL;
    *c_r = c;
    if (c == NULL)
        return NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) == SQLITE_OK)
        return s;
    if (store_exec(c, dmarc_schema, NULL) < 0)
        return NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        store_fail_db(c, NULL, "dmarc prepare");
        return NULL;
    }
    return s;
}

/* Steps a statement without results and finalizes it.  0 or -1. */
static int run_done(struct store_conn *c, sqlite3_stmt *s, const char **error_r)
{
    int rc = sqlite3_step(s);
    int out = rc == SQLITE_DONE ? 0 : store_fail_db(c, error_r, "dmarc");
    sqlite3_finalize(s);
    return out;
}

int store_dmarc_add(struct store *st, const struct store_dmarc_row *row, const char **error_r)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "INSERT INTO dmarc_results(time, policy_domain, header_from, source_ip,"
                              " envelope_from, disposition, dkim_eval, spf_eval, reason, dkim_auth,"
                              " spf_domain, spf_scope, spf_result, record)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
    if (s == NULL)
        return store_fail_again(error_r);
    const char *text[] = { row->policy_domain, row->header_from, row->source_ip, row->envelope_from,
                           row->disposition, row->dkim_eval, row->spf_eval, row->reason,
                           row->dkim_auth, row->spf_domain, row->spf_scope, row->spf_result,
                           row->record };
    sqlite3_bind_int64(s, 1, row->time);
    for (int i = 0; i < (int)(sizeof(text) / sizeof(text[0])); i++)
        sqlite3_bind_text(s, i + 2, text[i] ? text[i] : "", -1, SQLITE_TRANSIENT);
    return run_done(c, s, error_r);
}

int store_dmarc_windows(struct store *st, int64_t before, int64_t period, struct store_dmarc_window **windows_r)
{
    struct store_conn *c;
    *windows_r = NULL;
    if (period <= 0)
        return -1;
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
