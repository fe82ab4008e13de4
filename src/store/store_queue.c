/*
 * The outbound queue as the CLI sees it: list, show, delete, hold,
 * release, flush.  Entries are created by the commit thread
 * (store_tx.c); delivery belongs to the outbound module.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define QUEUE_SELECT                                                                         \
    "SELECT q.id, q.sender, q.created, q.next_attempt, q.attempts, q.size, q.state,"       \
    " (SELECT group_concat(r.address, ',') FROM queue_rcpt r WHERE r.queue_id = q.id"      \
    "  AND r.status NOT IN ('delivered', 'bounced'))"                                      \
    " FROM queue q"

static void queue_row(sqlite3_stmt *s, struct store_queue_entry *e)
{
    const char *t;
    memset(e, 0, sizeof(*e));
    str_copy(e->id, (const char *)sqlite3_column_text(s, 0), sizeof(e->id));
    t = (const char *)sqlite3_column_text(s, 1);
    str_copy(e->sender, t ? t : "", sizeof(e->sender));
    e->created = sqlite3_column_int64(s, 2);
    e->next_attempt = sqlite3_column_int64(s, 3);
    e->attempts = sqlite3_column_int(s, 4);
    e->size = (uint64_t)sqlite3_column_int64(s, 5);
    t = (const char *)sqlite3_column_text(s, 6);
    str_copy(e->state, t ? t : "", sizeof(e->state));
    t = (const char *)sqlite3_column_text(s, 7);
    str_copy(e->rcpts, t ? t : "", sizeof(e->rcpts));
}

int store_queue_list(struct store *st, void (*fn)(const struct store_queue_entry *e, void *arg),
                     void *arg)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, QUEUE_SELECT " ORDER BY q.created, q.id", -1, &s, NULL) !=
        SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    struct store_queue_entry *e = malloc(sizeof(*e));
    int n = 0, rc;
    while (e != NULL && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        queue_row(s, e);
        fn(e, arg);
        n++;
    }
    if (e == NULL)
        n = store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    else if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "queue");
    free(e);
    sqlite3_finalize(s);
    return n;
}

int store_queue_get(struct store *st, const char *id, struct store_queue_entry *e)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, QUEUE_SELECT " WHERE q.id = ?1", -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    store_bind_text(s, 1, id);
    int rc = sqlite3_step(s), found = 0;
    if (rc == SQLITE_ROW) {
        queue_row(s, e);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = store_fail_db(c, NULL, "queue");
    }
    sqlite3_finalize(s);
    return found;
}

/* The file (relative to data_dir) of a queue entry into rel; 1, 0, -1. */
static int queue_file(struct store_conn *c, const char *id, char *rel, size_t size)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "SELECT file FROM queue WHERE id = ?1", -1, &s, NULL) !=
        SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    store_bind_text(s, 1, id);
    int rc = sqlite3_step(s), found = 0;
    if (rc == SQLITE_ROW) {
        str_copy(rel, (const char *)sqlite3_column_text(s, 0), size);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = store_fail_db(c, NULL, "queue");
    }
    sqlite3_finalize(s);
    return found;
}

int store_queue_open(struct store *st, const char *id)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    char rel[STORE_RELPATH_MAX];
    int found = queue_file(c, id, rel, sizeof(rel));
    if (found <= 0)
        return found < 0 ? -1 : store_fail(STORE_ERR_NOTFOUND, NULL, "no queued message %s", id);
    int fd = openat(st->dir_fd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        store_fail_errno(errno, NULL, rel);
    return fd;
}

/* Runs an UPDATE/DELETE with parameters ?1 (text, may be NULL) and ?2
 * (integer, ignored when the SQL has no ?2);
 * returns the rows changed or -1. */
static int queue_change(struct store_conn *c, const char *sql, const char *p1, int64_t p2,
                        const char **error_r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "queue");
    store_bind_text(s, 1, p1);
    sqlite3_bind_int64(s, 2, p2);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, error_r, "queue");
    return sqlite3_changes(c->db);
}

int store_queue_delete(struct store *st, const char *id, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (store_begin(c, error_r) < 0)
        return -1;
    char rel[STORE_RELPATH_MAX];
    int found = queue_file(c, id, rel, sizeof(rel));
    if (found <= 0) {
        store_rollback(c);
        return found < 0 ? store_fail_again(error_r) : 0;
    }
    if (queue_change(c, "DELETE FROM queue_rcpt WHERE queue_id = ?1", id, 0, error_r) < 0 ||
        queue_change(c, "DELETE FROM queue WHERE id = ?1", id, 0, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    if (store_commit(c, error_r) < 0)
        return -1;
    /* After the commit: a crash in between leaves an unreferenced file,
     * which the next start-up removes. */
    if (unlinkat(st->dir_fd, rel, 0) < 0 && errno != ENOENT)
        log_warn(NULL, "event=queue_delete_file path=%s error=%d", rel, errno);
    return 1;
}

int store_queue_hold(struct store *st, const char *id, bool hold, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (hold)
        return queue_change(c, "UPDATE queue SET state = 'hold' WHERE id = ?1", id, 0, error_r);
    return queue_change(c,
                        "UPDATE queue SET state = 'active', next_attempt = ?2"
                        " WHERE id = ?1 AND state = 'hold'",
                        id, store_now(), error_r);
}

int store_queue_flush(struct store *st, const char *id, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    return queue_change(c,
                        "UPDATE queue SET next_attempt = ?2"
                        " WHERE (?1 IS NULL OR id = ?1) AND state <> 'hold'",
                        id, store_now(), error_r);
}
