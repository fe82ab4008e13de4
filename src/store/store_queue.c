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

/* Tells a running server's queue, which watches data_dir/queue with
 * inotify (close after write), that entries became due: it rescans at
 * once instead of at its next periodic scan.  Best effort. */
static void queue_poke(struct store *st)
{
    int fd = openat(st->dir_fd, "queue/.wakeup", O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    close(fd);
    unlinkat(st->dir_fd, "queue/.wakeup", 0);
}

int store_queue_hold(struct store *st, const char *id, bool hold, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (hold)
        return queue_change(c, "UPDATE queue SET state = 'hold' WHERE id = ?1", id, 0, error_r);
    int n = queue_change(c,
                         "UPDATE queue SET state = 'active', next_attempt = ?2"
                         " WHERE id = ?1 AND state = 'hold'",
                         id, store_now(), error_r);
    if (n > 0)
        queue_poke(st);
    return n;
}

int store_queue_flush(struct store *st, const char *id, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    int n = queue_change(c,
                         "UPDATE queue SET next_attempt = ?2"
                         " WHERE (?1 IS NULL OR id = ?1) AND state <> 'hold'",
                         id, store_now(), error_r);
    if (n > 0)
        queue_poke(st);
    return n;
}

/* ---- outbound delivery ---- */

int store_queue_due(struct store *st, int64_t now, int limit,
                    void (*fn)(const char *id, void *arg), void *arg)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id FROM queue WHERE state IN ('active', 'deferred')"
                           " AND next_attempt <= ?1 ORDER BY next_attempt, created LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    /* Collected first: fn may call back into the store on this thread. */
    char (*ids)[32] = calloc((size_t)(limit > 0 ? limit : 1), sizeof(*ids));
    int n = 0, rc = SQLITE_DONE;
    while (ids != NULL && n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW)
        str_copy(ids[n++], (const char *)sqlite3_column_text(s, 0), sizeof(ids[0]));
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE;
    sqlite3_finalize(s);
    if (ids == NULL)
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    if (rc != SQLITE_DONE) {
        free(ids);
        return store_fail_db(c, NULL, "queue");
    }
    for (int i = 0; i < n; i++)
        fn(ids[i], arg);
    free(ids);
    return n;
}

void store_queue_msg_free(struct store_queue_msg *m)
{
    if (m == NULL)
        return;
    free(m->rcpts);
    free(m);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    return t ? t : "";
}

static int queue_load_rcpts(struct store_conn *c, struct store_queue_msg *m)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT address, orcpt, notify, status, last_error FROM queue_rcpt"
                           " WHERE queue_id = ?1 ORDER BY rowid",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    store_bind_text(s, 1, m->e.id);
    size_t alloc = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (m->n_rcpts == alloc) {
            size_t na = alloc ? alloc * 2 : 4;
            void *p = realloc(m->rcpts, na * sizeof(*m->rcpts));
            if (p == NULL) {
                sqlite3_finalize(s);
                return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
            }
            m->rcpts = p;
            alloc = na;
        }
        struct store_queue_rcpt *r = &m->rcpts[m->n_rcpts++];
        memset(r, 0, sizeof(*r));
        str_copy(r->address, col_text(s, 0), sizeof(r->address));
        str_copy(r->orcpt, col_text(s, 1), sizeof(r->orcpt));
        r->notify = (unsigned)sqlite3_column_int(s, 2);
        str_copy(r->status, col_text(s, 3), sizeof(r->status));
        str_copy(r->last_error, col_text(s, 4), sizeof(r->last_error));
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "queue");
}

int store_queue_load(struct store *st, const char *id, struct store_queue_msg **m_r)
{
    store_clear_error();
    *m_r = NULL;
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, sender, created, next_attempt, attempts, size, state,"
                           " envid, ret, smtputf8, body_8bit, submitter FROM queue WHERE id = ?1",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "queue");
    store_bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(s);
        return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "queue");
    }
    struct store_queue_msg *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        sqlite3_finalize(s);
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    }
    str_copy(m->e.id, col_text(s, 0), sizeof(m->e.id));
    str_copy(m->e.sender, col_text(s, 1), sizeof(m->e.sender));
    m->e.created = sqlite3_column_int64(s, 2);
    m->e.next_attempt = sqlite3_column_int64(s, 3);
    m->e.attempts = sqlite3_column_int(s, 4);
    m->e.size = (uint64_t)sqlite3_column_int64(s, 5);
    str_copy(m->e.state, col_text(s, 6), sizeof(m->e.state));
    str_copy(m->envid, col_text(s, 7), sizeof(m->envid));
    str_copy(m->ret, col_text(s, 8), sizeof(m->ret));
    m->smtputf8 = sqlite3_column_int(s, 9) != 0;
    m->body_8bit = sqlite3_column_int(s, 10) != 0;
    m->submitter = sqlite3_column_int64(s, 11);
    sqlite3_finalize(s);
    if (queue_load_rcpts(c, m) < 0) {
        store_queue_msg_free(m);
        return -1;
    }
    *m_r = m;
    return 1;
}

/* One entry's update inside the caller's transaction; sets u->removed
 * and rel (the file to unlink) when nothing is left pending. */
static int queue_update_one(struct store_conn *c, struct store_queue_update *u, char *rel,
                            size_t rel_size, const char **error_r)
{
    u->removed = 0;
    rel[0] = '\0';
    int found = queue_file(c, u->id, rel, rel_size);
    if (found <= 0) {
        rel[0] = '\0';
        return found < 0 ? store_fail_again(error_r) : 0;
    }
    for (size_t i = 0; i < u->n_rcpts; i++) {
        const struct store_queue_rcpt_update *r = &u->rcpts[i];
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(c->db,
                               "UPDATE queue_rcpt SET status = ?3,"
                               " last_error = coalesce(?4, last_error), notify = notify | ?5"
                               " WHERE queue_id = ?1 AND address = ?2",
                               -1, &s, NULL) != SQLITE_OK)
            return store_fail_db(c, error_r, "queue");
        store_bind_text(s, 1, u->id);
        store_bind_text(s, 2, r->address);
        store_bind_text(s, 3, r->status);
        store_bind_text(s, 4, r->last_error);
        sqlite3_bind_int(s, 5, (int)r->notify_set);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return store_fail_db(c, error_r, "queue");
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT count(*) FROM queue_rcpt WHERE queue_id = ?1"
                           " AND status = 'pending'",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "queue");
    store_bind_text(s, 1, u->id);
    int rc = sqlite3_step(s);
    int64_t pending = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    if (pending < 0)
        return store_fail_db(c, error_r, "queue");
    if (pending == 0) {
        if (queue_change(c, "DELETE FROM queue_rcpt WHERE queue_id = ?1", u->id, 0, error_r) < 0 ||
            queue_change(c, "DELETE FROM queue WHERE id = ?1", u->id, 0, error_r) < 0)
            return -1;
        u->removed = 1;
        return 0;
    }
    rel[0] = '\0';
    const char *sql = u->attempted
                          ? "UPDATE queue SET next_attempt = ?2, attempts = attempts + 1,"
                            " state = CASE state WHEN 'hold' THEN 'hold' ELSE 'deferred' END"
                            " WHERE id = ?1"
                          : "UPDATE queue SET next_attempt = ?2 WHERE id = ?1";
    return queue_change(c, sql, u->id, u->next_attempt, error_r) < 0 ? -1 : 0;
}

int store_queue_update(struct store *st, struct store_queue_update *u, size_t n,
                       const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    char (*rels)[STORE_RELPATH_MAX] = calloc(n ? n : 1, sizeof(*rels));
    if (rels == NULL)
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    if (store_begin(c, error_r) < 0) {
        free(rels);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (queue_update_one(c, &u[i], rels[i], sizeof(rels[i]), error_r) < 0) {
            store_rollback(c);
            for (size_t k = 0; k < n; k++)
                u[k].removed = 0;
            free(rels);
            return -1;
        }
    }
    if (store_commit(c, error_r) < 0) {
        for (size_t k = 0; k < n; k++)
            u[k].removed = 0;
        free(rels);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (u[i].removed && rels[i][0] != '\0' && unlinkat(st->dir_fd, rels[i], 0) < 0 &&
            errno != ENOENT)
            log_warn(NULL, "event=queue_delete_file path=%s error=%d", rels[i], errno);
    free(rels);
    return 0;
}
