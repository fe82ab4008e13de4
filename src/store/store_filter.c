/*
 * Anti-spam state in index.db (see store_filter.h).  The tables belong to
 * this file alone and are created lazily: a statement that fails to
 * prepare makes us run the (idempotent) schema once and try again.
 *
 * Most statements are prepared per call and finalized at once.  The ones
 * an SMTP session runs for each connection or recipient (the lists
 * generation, greylist lookups and updates) are kept prepared in the
 * connection's statement cache (store_conn.xstmt, keyed by the address
 * of their SQL text, shared with store_imap.c), which the store finalizes
 * when it closes the connection.
 */
#include "store/store_filter.h"

#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

static const char filter_schema[] =
    "CREATE TABLE IF NOT EXISTS filter_list ("
    "  list INTEGER NOT NULL,"
    "  entry TEXT NOT NULL COLLATE NOCASE,"
    "  note TEXT,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (list, entry));"
    "CREATE TABLE IF NOT EXISTS filter_meta ("
    "  key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS greylist ("
    "  net TEXT NOT NULL,"
    "  sender TEXT NOT NULL,"
    "  rcpt TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL,"
    "  count INTEGER NOT NULL DEFAULT 1,"
    "  passed INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (net, sender, rcpt)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS greylist_last ON greylist(last_seen);"
    "CREATE TABLE IF NOT EXISTS greylist_client ("
    "  net TEXT PRIMARY KEY,"
    "  passes INTEGER NOT NULL,"
    "  first_pass INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL) WITHOUT ROWID;";

/* Prepares sql on the calling thread's connection, creating our tables
 * when the first attempt fails.  NULL with the error recorded. */
static sqlite3_stmt *prepare(struct store *st, struct store_conn **c_r, const char *sql)
{
    struct store_conn *c = store_conn_get(st);
    if (c == NULL) {
        store_fail_again(NULL);
        return NULL;
    }
    *c_r = c;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) == SQLITE_OK)
        return s;
    if (store_exec(c, filter_schema, NULL) < 0)
        return NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        store_fail_db(c, NULL, "prepare");
        return NULL;
    }
    return s;
}

/* A statement kept in the connection (store_stmt_kept; the tables are
 * made when missing).  End each use with release(). */
static sqlite3_stmt *prepare_kept(struct store *st, struct store_conn **c_r, const char *sql)
{
    struct store_conn *c = store_conn_get(st);
    *c_r = c;
    if (c == NULL) {
        store_fail_again(NULL);
        return NULL;
    }
    return store_stmt_kept(c, sql, filter_schema);
}

static void release(struct store_conn *c, sqlite3_stmt *s)
{
    store_stmt_kept_done(c, s);
}

/* run() for a statement from prepare_kept. */
static int run_kept(struct store_conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, what);
    release(c, s);
    return r;
}

/* Steps a statement without rows to its end; finalizes it.  0 or -1. */
static int run(struct store_conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, what);
    sqlite3_finalize(s);
    return r;
}

static int fail_again(const char **error_r)
{
    return store_fail_again(error_r);
}

/* ---- lists ---- */

static int bump_generation(struct store *st)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "INSERT INTO filter_meta(key, value) VALUES ('lists', 1)"
                              " ON CONFLICT(key) DO UPDATE SET value = value + 1");
    return s ? run(c, s, "filter generation") : -1;
}

/* Runs one list change and the generation bump in a transaction.
 * Returns rows changed or -1. */
static int list_change(struct store *st, const char *sql, int list, const char *entry,
                       const char *note, const char **error_r)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c, sql);
    if (s == NULL)
        return fail_again(error_r);
    sqlite3_finalize(s);
    store_clear_error();
    if (store_begin(c, error_r) < 0)
        return -1;
    s = prepare(st, &c, sql);
    if (s == NULL) {
        store_rollback(c);
        return fail_again(error_r);
    }
    sqlite3_bind_int(s, 1, list);
    store_bind_text(s, 2, entry);
    if (note != NULL) {
        store_bind_text(s, 3, note);
        sqlite3_bind_int64(s, 4, store_now());
    }
    if (run(c, s, "filter list") < 0) {
        store_rollback(c);
        return fail_again(error_r);
    }
    int changed = sqlite3_changes(c->db);
    if (changed > 0 && bump_generation(st) < 0) {
        store_rollback(c);
        return fail_again(error_r);
    }
    if (store_commit(c, error_r) < 0)
        return -1;
    return changed;
}

int store_filter_list_add(struct store *st, enum store_filter_list list, const char *entry,
                          const char *note, const char **error_r)
{
    if (entry == NULL || entry[0] == '\0' || strlen(entry) > 512)
        return store_fail(STORE_ERR_INVALID, error_r, "invalid list entry");
    int n = list_change(st,
                        "INSERT INTO filter_list(list, entry, note, created)"
                        " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                        (int)list, entry, note ? note : "", error_r);
    return n < 0 ? -1 : n > 0 ? 1 : 0;
}

int store_filter_list_del(struct store *st, enum store_filter_list list, const char *entry,
                          const char **error_r)
{
    int n = list_change(st, "DELETE FROM filter_list WHERE list = ?1 AND entry = ?2", (int)list,
                        entry, NULL, error_r);
    return n < 0 ? -1 : n > 0 ? 1 : 0;
}

int store_filter_list_each(struct store *st, enum store_filter_list list,
                           void (*fn)(const char *entry, const char *note, int64_t created,
                                      void *arg),
                           void *arg)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "SELECT entry, note, created FROM filter_list WHERE list = ?1"
                              " ORDER BY created, rowid");
    if (s == NULL)
        return -1;
    sqlite3_bind_int(s, 1, (int)list);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *entry = (const char *)sqlite3_column_text(s, 0);
        const char *note = (const char *)sqlite3_column_text(s, 1);
        fn(entry ? entry : "", note ? note : "", sqlite3_column_int64(s, 2), arg);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "filter list");
    sqlite3_finalize(s);
    return n;
}

static const char sql_generation[] = "SELECT value FROM filter_meta WHERE key = 'lists'";

int64_t store_filter_generation(struct store *st)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare_kept(st, &c, sql_generation);
    if (s == NULL)
        return -1;
    int64_t gen = 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        gen = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        gen = store_fail_db(c, NULL, "filter generation");
    release(c, s);
    return gen;
}

/* ---- greylisting ---- */

static const char sql_grey_get[] =
    "SELECT first_seen, last_seen, count, passed FROM greylist"
    " WHERE net = ?1 AND sender = ?2 AND rcpt = ?3";
static const char sql_grey_put[] =
    "INSERT OR REPLACE INTO greylist(net, sender, rcpt, first_seen,"
    " last_seen, count, passed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char sql_client_get[] =
    "SELECT passes FROM greylist_client WHERE net = ?1 AND last_seen >= ?2";
static const char sql_client_pass[] =
    "INSERT INTO greylist_client(net, passes, first_pass, last_seen)"
    " VALUES (?1, 1, ?2, ?2) ON CONFLICT(net) DO UPDATE"
    " SET passes = passes + 1, last_seen = ?2";

static void bind_triplet(sqlite3_stmt *s, const char *net, const char *sender, const char *rcpt)
{
    store_bind_text(s, 1, net);
    store_bind_text(s, 2, sender);
    store_bind_text(s, 3, rcpt);
}

int store_greylist_get(struct store *st, const char *net, const char *sender, const char *rcpt,
                       struct store_greylist_row *row)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare_kept(st, &c, sql_grey_get);
    if (s == NULL)
        return -1;
    bind_triplet(s, net, sender, rcpt);
    int found = 0, rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row->first_seen = sqlite3_column_int64(s, 0);
        row->last_seen = sqlite3_column_int64(s, 1);
        row->count = sqlite3_column_int64(s, 2);
        row->passed = sqlite3_column_int(s, 3) != 0;
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = store_fail_db(c, NULL, "greylist");
    }
    release(c, s);
    return found;
}

int store_greylist_put(struct store *st, const char *net, const char *sender, const char *rcpt,
                       const struct store_greylist_row *row)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare_kept(st, &c, sql_grey_put);
    if (s == NULL)
        return -1;
    bind_triplet(s, net, sender, rcpt);
    sqlite3_bind_int64(s, 4, row->first_seen);
    sqlite3_bind_int64(s, 5, row->last_seen);
    sqlite3_bind_int64(s, 6, row->count);
    sqlite3_bind_int(s, 7, row->passed ? 1 : 0);
    return run_kept(c, s, "greylist");
}

int store_greylist_client_get(struct store *st, const char *net, int64_t since,
                              int64_t *passes_r)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare_kept(st, &c, sql_client_get);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, net);
    sqlite3_bind_int64(s, 2, since);
    *passes_r = 0;
    int r = 0, rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *passes_r = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        r = store_fail_db(c, NULL, "greylist");
    release(c, s);
    return r;
}

int store_greylist_client_pass(struct store *st, const char *net, int64_t now)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare_kept(st, &c, sql_client_pass);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, net);
    sqlite3_bind_int64(s, 2, now);
    return run_kept(c, s, "greylist");
}

int store_greylist_expire(struct store *st, int64_t pending_before, int64_t passed_before)
{
    static const char *const sql[] = {
        "DELETE FROM greylist WHERE passed = 0 AND first_seen < ?1",
        "DELETE FROM greylist WHERE passed = 1 AND last_seen < ?2",
        "DELETE FROM greylist_client WHERE last_seen < ?2",
    };
    int total = 0;
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        struct store_conn *c;
        sqlite3_stmt *s = prepare(st, &c, sql[i]);
        if (s == NULL)
            return -1;
        /* a statement may use one of the two; binding the other is a
         * harmless SQLITE_RANGE */
        sqlite3_bind_int64(s, 1, pending_before);
        sqlite3_bind_int64(s, 2, passed_before);
        if (run(c, s, "greylist expire") < 0)
            return -1;
        total += sqlite3_changes(c->db);
    }
    return total;
}

int store_greylist_each(struct store *st,
                        void (*fn)(const char *net, const char *sender, const char *rcpt,
                                   const struct store_greylist_row *row, void *arg),
                        void *arg)
{
    struct store_conn *c;
    sqlite3_stmt *s = prepare(st, &c,
                              "SELECT net, sender, rcpt, first_seen, last_seen, count, passed"
                              " FROM greylist ORDER BY last_seen DESC");
    if (s == NULL)
        return -1;
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_greylist_row row = {
            .first_seen = sqlite3_column_int64(s, 3),
            .last_seen = sqlite3_column_int64(s, 4),
            .count = sqlite3_column_int64(s, 5),
            .passed = sqlite3_column_int(s, 6) != 0,
        };
        const char *net = (const char *)sqlite3_column_text(s, 0);
        const char *sender = (const char *)sqlite3_column_text(s, 1);
        const char *rcpt = (const char *)sqlite3_column_text(s, 2);
        fn(net ? net : "", sender ? sender : "", rcpt ? rcpt : "", &row, arg);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "greylist");
    sqlite3_finalize(s);
    return n;
}

int store_greylist_clear(struct store *st)
{
    int total = 0;
    static const char *const sql[] = { "DELETE FROM greylist", "DELETE FROM greylist_client" };
    for (size_t i = 0; i < 2; i++) {
        struct store_conn *c;
        sqlite3_stmt *s = prepare(st, &c, sql[i]);
        if (s == NULL || run(c, s, "greylist") < 0)
            return -1;
        total += sqlite3_changes(c->db);
    }
    return total;
}
