/*
 * Mailboxes and messages for IMAP (see store_imap.h).  Statements are
 * prepared per call: these run once per command, not per message, except
 * the iterators, which use one statement for the whole range.
 */
#include "store/store_imap.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_messages.h"
#include "store/store_int.h"
#include "store/store_messages.h"

/* ---- schema additions (created on first use, idempotent) ---- */

static const char imap_schema[] =
    "CREATE TABLE IF NOT EXISTS expunged ("
    "  mailbox_id INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox_id, modseq);";

static struct store_conn *conn(struct store *st)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return NULL;
    /* per connection: cheap after the first time */
    static __thread struct store_conn *ready;
    if (ready != c) {
        if (store_exec(c, imap_schema, NULL) < 0)
            return NULL;
        ready = c;
    }
    return c;
}

/* A statement for sql kept prepared in the connection; unprep() ends
 * each use (store_stmt_kept). */
static sqlite3_stmt *prep(struct store_conn *c, const char *sql)
{
    return store_stmt_kept(c, sql, NULL);
}

static void unprep(struct store_conn *c, sqlite3_stmt *s)
{
    store_stmt_kept_done(c, s);
}

static const char *norm_name(const char *name)
{
    return strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

static void col_text(sqlite3_stmt *s, int i, char *buf, size_t size)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    str_copy(buf, t ? t : "", size);
}

static int64_t mailbox_account_uv(struct store_conn *c, int64_t mailbox_id, uint32_t *uv_r);
static void notify_mailbox(struct store *st, struct store_conn *c, int64_t mailbox_id);

/* ---- mailboxes ---- */

#define MBOX_COLS "id, name, coalesce(special_use, ''), subscribed, uidvalidity, uidnext, highestmodseq"

static void mbox_row(sqlite3_stmt *s, struct store_imap_mbox *m)
{
    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(s, 0);
    col_text(s, 1, m->name, sizeof(m->name));
    col_text(s, 2, m->special_use, sizeof(m->special_use));
    m->subscribed = sqlite3_column_int(s, 3) != 0;
    m->uidvalidity = (uint32_t)sqlite3_column_int64(s, 4);
    m->uidnext = (uint32_t)sqlite3_column_int64(s, 5);
    m->highestmodseq = (uint64_t)sqlite3_column_int64(s, 6);
}

int store_imap_mailboxes(struct store *st, int64_t account, store_imap_mbox_fn *fn, void *arg)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT " MBOX_COLS " FROM mailboxes WHERE account_id = ?1"
                              " ORDER BY name <> 'INBOX', name");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    int n = 0, rc;
    struct store_imap_mbox m;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        mbox_row(s, &m);
        fn(&m, arg);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "mailboxes");
    unprep(c, s);
    return n;
}

static int mailbox_get(struct store_conn *c, int64_t account, const char *name,
                       struct store_imap_mbox *m)
{
    sqlite3_stmt *s = prep(c, "SELECT " MBOX_COLS " FROM mailboxes"
                              " WHERE account_id = ?1 AND name = ?2");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    store_bind_text(s, 2, norm_name(name));
    int rc = sqlite3_step(s), r;
    if (rc == SQLITE_ROW) {
        mbox_row(s, m);
        r = 1;
    } else {
        r = rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "mailbox");
    }
    unprep(c, s);
    return r;
}

int store_imap_mailbox_get(struct store *st, int64_t account, const char *name,
                           struct store_imap_mbox *m)
{
    struct store_conn *c = conn(st);
    return c ? mailbox_get(c, account, name, m) : -1;
}

static int64_t next_uidvalidity(struct store_conn *c)
{
    sqlite3_stmt *s = prep(c, "UPDATE meta SET value = max(value + 1, ?1)"
                              " WHERE key = 'uidvalidity' RETURNING value");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, store_now() & 0xffffffffLL);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (v < 0)
        store_fail_db(c, NULL, "uidvalidity");
    while (sqlite3_step(s) == SQLITE_ROW)
        ;
    unprep(c, s);
    return v > 0xffffffffLL ? -1 : v;
}

static int insert_mailbox(struct store_conn *c, int64_t account, const char *name,
                          const char *special_use)
{
    int64_t uv = next_uidvalidity(c);
    if (uv < 0)
        return -1;
    sqlite3_stmt *s = prep(c, "INSERT INTO mailboxes(account_id, name, special_use, subscribed,"
                              " uidvalidity, uidnext, highestmodseq) VALUES (?1, ?2, ?3, 1, ?4, 1, 1)");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    store_bind_text(s, 2, name);
    store_bind_text(s, 3, special_use && special_use[0] ? special_use : NULL);
    sqlite3_bind_int64(s, 4, uv);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_CONSTRAINT || (sqlite3_extended_errcode(c->db) & 0xff) == SQLITE_CONSTRAINT)
        r = store_fail(STORE_ERR_EXISTS, NULL, "mailbox exists");
    else if (rc != SQLITE_DONE)
        r = store_fail_db(c, NULL, "mailbox");
    unprep(c, s);
    return r;
}

int store_imap_mailbox_create(struct store *st, int64_t account, const char *name,
                              const char *special_use)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    if (name[0] == '\0' || strlen(name) >= STORE_IMAP_NAME_MAX || str_has_ctl(name))
        return store_fail(STORE_ERR_INVALID, NULL, "bad mailbox name");
    if (store_begin(c, NULL) < 0)
        return -1;
    if (insert_mailbox(c, account, norm_name(name), special_use) < 0) {
        store_rollback(c);
        return -1;
    }
    if (store_commit(c, NULL) < 0)
        return -1;
    store_imap_notify(st, account);
    return 0;
}

/* Collects the files of rows matching sql (bound to id) for removal after
 * the commit. */
static int collect_files(struct store_conn *c, const char *sql, int64_t id, char ***files_r,
                         size_t *n_r)
{
    sqlite3_stmt *s = prep(c, sql);
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    char **files = NULL;
    size_t n = 0, alloc = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            char **p = realloc(files, alloc * sizeof(*p));
            if (p == NULL)
                break;
            files = p;
        }
        files[n++] = strdup((const char *)sqlite3_column_text(s, 0));
    }
    unprep(c, s);
    *files_r = files;
    *n_r = n;
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "files");
}

static void remove_files(struct store *st, char **files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (files[i])
            unlinkat(st->dir_fd, files[i], 0);
        free(files[i]);
    }
    free(files);
}

static int exec_id(struct store_conn *c, const char *sql, int64_t id)
{
    sqlite3_stmt *s = prep(c, sql);
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    unprep(c, s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "imap");
}

int store_imap_mailbox_delete(struct store *st, int64_t account, const char *name)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    if (strcasecmp(name, "INBOX") == 0)
        return store_fail(STORE_ERR_INVALID, NULL, "INBOX cannot be deleted");
    if (store_begin(c, NULL) < 0)
        return -1;
    struct store_imap_mbox m;
    int r = mailbox_get(c, account, name, &m);
    char **files = NULL;
    size_t nf = 0;
    if (r == 0)
        r = store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    if (r > 0)
        r = collect_files(c, "SELECT file FROM messages WHERE mailbox_id = ?1", m.id, &files, &nf);
    if (r >= 0)
        r = exec_id(c, "DELETE FROM messages WHERE mailbox_id = ?1", m.id);
    if (r >= 0)
        r = exec_id(c, "DELETE FROM expunged WHERE mailbox_id = ?1", m.id);
    if (r >= 0)
        r = exec_id(c, "DELETE FROM mailboxes WHERE id = ?1", m.id);
    if (r < 0 || store_commit(c, NULL) < 0) {
        store_rollback(c);
        for (size_t i = 0; i < nf; i++)
            free(files[i]);
        free(files);
        return -1;
    }
    remove_files(st, files, nf);
    store_imap_notify(st, account);
    return 0;
}

/* Renaming INBOX: a new mailbox takes INBOX's messages (new UIDs are not
 * needed: the new mailbox has a new UIDVALIDITY, so the old UIDs stay). */
static int rename_inbox(struct store_conn *c, int64_t account, const struct store_imap_mbox *in,
                        const char *to)
{
    if (insert_mailbox(c, account, to, NULL) < 0)
        return -1;
    struct store_imap_mbox nm;
    if (mailbox_get(c, account, to, &nm) <= 0)
        return -1;
    sqlite3_stmt *s = prep(c, "UPDATE mailboxes SET uidnext = ?2, highestmodseq = ?3 WHERE id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, nm.id);
    sqlite3_bind_int64(s, 2, in->uidnext);
    sqlite3_bind_int64(s, 3, (int64_t)in->highestmodseq + 1);
    int rc = sqlite3_step(s);
    unprep(c, s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, NULL, "rename");
    s = prep(c, "UPDATE messages SET mailbox_id = ?2 WHERE mailbox_id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, in->id);
    sqlite3_bind_int64(s, 2, nm.id);
    rc = sqlite3_step(s);
    unprep(c, s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, NULL, "rename");
    /* INBOX's messages all vanished: a session sees them as expunged */
    s = prep(c, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, in->id);
    rc = sqlite3_step(s);
    unprep(c, s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "rename");
}

static int rename_tree(struct store_conn *c, int64_t account, const char *from, const char *to,
                       char sep)
{
    /* the mailbox itself, then its children "from<sep>..." */
    char pat[STORE_IMAP_NAME_MAX + 4];
    snprintf(pat, sizeof(pat), "%s%c", from, sep);
    sqlite3_stmt *s = prep(c, "UPDATE mailboxes SET name = ?4 || substr(name, ?5)"
                              " WHERE account_id = ?1 AND (name = ?2 OR substr(name, 1, ?3) = ?6)");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    store_bind_text(s, 2, from);
    sqlite3_bind_int(s, 3, (int)strlen(pat));
    store_bind_text(s, 4, to);
    sqlite3_bind_int(s, 5, (int)strlen(from) + 1);
    store_bind_text(s, 6, pat);
    int rc = sqlite3_step(s);
    unprep(c, s);
    if (rc == SQLITE_DONE)
        return 0;
    if ((sqlite3_extended_errcode(c->db) & 0xff) == SQLITE_CONSTRAINT)
        return store_fail(STORE_ERR_EXISTS, NULL, "target mailbox exists");
    return store_fail_db(c, NULL, "rename");
}

int store_imap_mailbox_rename(struct store *st, int64_t account, const char *from, const char *to,
                              char sep)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    from = norm_name(from);
    to = norm_name(to);
    if (to[0] == '\0' || strlen(to) >= STORE_IMAP_NAME_MAX || str_has_ctl(to) ||
        strcmp(to, "INBOX") == 0)
        return store_fail(STORE_ERR_INVALID, NULL, "bad mailbox name");
    if (store_begin(c, NULL) < 0)
        return -1;
    struct store_imap_mbox m, t;
    int r = mailbox_get(c, account, from, &m);
    if (r == 0)
        r = store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    if (r > 0) {
        int e = mailbox_get(c, account, to, &t);
        r = e != 0 ? (e > 0 ? store_fail(STORE_ERR_EXISTS, NULL, "target mailbox exists") : -1) : 1;
    }
    if (r > 0)
        r = strcmp(from, "INBOX") == 0 ? rename_inbox(c, account, &m, to)
                                       : rename_tree(c, account, from, to, sep);
    if (r < 0 || store_commit(c, NULL) < 0) {
        store_rollback(c);
        return -1;
    }
    store_imap_notify(st, account);
    return 0;
}

int store_imap_mailbox_subscribe(struct store *st, int64_t account, const char *name, bool on)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "UPDATE mailboxes SET subscribed = ?3 WHERE account_id = ?1 AND name = ?2");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    store_bind_text(s, 2, norm_name(name));
    sqlite3_bind_int(s, 3, on);
    int rc = sqlite3_step(s);
    int changes = sqlite3_changes(c->db);
    unprep(c, s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, NULL, "subscribe");
    if (changes == 0)
        return store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    return 0;
}

int store_imap_counts(struct store *st, int64_t mailbox_id, struct store_imap_counts *cn)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT count(*), coalesce(sum((flags & 1) = 0), 0),"
                              " coalesce(sum((flags & 8) <> 0), 0), coalesce(sum(size), 0)"
                              " FROM messages WHERE mailbox_id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    int rc = sqlite3_step(s);
    memset(cn, 0, sizeof(*cn));
    if (rc == SQLITE_ROW) {
        cn->messages = (uint32_t)sqlite3_column_int64(s, 0);
        cn->unseen = (uint32_t)sqlite3_column_int64(s, 1);
        cn->deleted = (uint32_t)sqlite3_column_int64(s, 2);
        cn->size = (uint64_t)sqlite3_column_int64(s, 3);
    }
    unprep(c, s);
    return rc == SQLITE_ROW ? 0 : store_fail_db(c, NULL, "counts");
}

/* ---- messages ---- */

static long collect_uids(struct store_conn *c, sqlite3_stmt *s, uint32_t **uids_r)
{
    uint32_t *uids = NULL;
    size_t n = 0, alloc = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            uint32_t *p = realloc(uids, alloc * sizeof(*p));
            if (p == NULL) {
                free(uids);
                unprep(c, s);
                return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
            }
            uids = p;
        }
        uids[n++] = (uint32_t)sqlite3_column_int64(s, 0);
    }
    unprep(c, s);
    if (rc != SQLITE_DONE) {
        free(uids);
        return store_fail_db(c, NULL, "uids");
    }
    *uids_r = uids;
    return (long)n;
}

long store_imap_uids(struct store *st, int64_t mailbox_id, uint32_t min_uid, uint32_t **uids_r)
{
    *uids_r = NULL;
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT uid FROM messages WHERE mailbox_id = ?1 AND uid >= ?2 ORDER BY uid");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, min_uid);
    return collect_uids(c, s, uids_r);
}

long store_imap_vanished(struct store *st, int64_t mailbox_id, uint64_t since, uint32_t **uids_r)
{
    *uids_r = NULL;
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, (int64_t)since);
    return collect_uids(c, s, uids_r);
}

int store_imap_sync_state(struct store *st, int64_t mailbox_id, uint32_t max_uid,
                          uint64_t *highestmodseq_r, uint32_t *uidnext_r, uint32_t *count_r)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT highestmodseq, uidnext,"
                              " (SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND uid <= ?2)"
                              " FROM mailboxes WHERE id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, max_uid);
    int rc = sqlite3_step(s), r;
    if (rc == SQLITE_ROW) {
        *highestmodseq_r = (uint64_t)sqlite3_column_int64(s, 0);
        *uidnext_r = (uint32_t)sqlite3_column_int64(s, 1);
        *count_r = (uint32_t)sqlite3_column_int64(s, 2);
        r = 1;
    } else {
        r = rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "sync");
    }
    unprep(c, s);
    return r;
}

#define MSG_COLS "uid, flags, modseq, internaldate, size, keywords, file"

static void msg_row(sqlite3_stmt *s, struct store_imap_msg *m)
{
    m->uid = (uint32_t)sqlite3_column_int64(s, 0);
    m->flags = (uint32_t)sqlite3_column_int64(s, 1);
    m->modseq = (uint64_t)sqlite3_column_int64(s, 2);
    m->internaldate = sqlite3_column_int64(s, 3);
    m->size = (uint64_t)sqlite3_column_int64(s, 4);
    col_text(s, 5, m->keywords, sizeof(m->keywords));
    col_text(s, 6, m->file, sizeof(m->file));
}

static long iterate(struct store_conn *c, sqlite3_stmt *s, store_imap_msg_fn *fn, void *arg)
{
    struct store_imap_msg *m = malloc(sizeof(*m));
    if (m == NULL) {
        unprep(c, s);
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    }
    long n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        msg_row(s, m);
        n++;
        if (fn(m, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    free(m);
    unprep(c, s);
    return rc == SQLITE_DONE ? n : store_fail_db(c, NULL, "messages");
}

long store_imap_msgs(struct store *st, int64_t mailbox_id, uint32_t lo, uint32_t hi,
                     store_imap_msg_fn *fn, void *arg)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT " MSG_COLS " FROM messages WHERE mailbox_id = ?1"
                              " AND uid BETWEEN ?2 AND ?3 ORDER BY uid");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, lo);
    sqlite3_bind_int64(s, 3, hi);
    return iterate(c, s, fn, arg);
}

long store_imap_changed(struct store *st, int64_t mailbox_id, uint64_t since,
                        store_imap_msg_fn *fn, void *arg)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT " MSG_COLS " FROM messages WHERE mailbox_id = ?1"
                              " AND modseq > ?2 ORDER BY uid");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, (int64_t)since);
    return iterate(c, s, fn, arg);
}

int store_imap_msg_open(struct store *st, const struct store_imap_msg *m)
{
    return store_msg_open(st, m->file); /* a file or a blob, without atime */
}

int store_imap_keywords(struct store *st, int64_t mailbox_id, char *buf, size_t size)
{
    buf[0] = '\0';
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT DISTINCT keywords FROM messages WHERE mailbox_id = ?1"
                              " AND keywords <> '' LIMIT 200");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    size_t len = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        char kw[STORE_IMAP_KEYWORDS_MAX];
        col_text(s, 0, kw, sizeof(kw));
        char *save = NULL;
        for (char *w = strtok_r(kw, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            /* already listed? */
            size_t wl = strlen(w);
            bool dup = false;
            for (const char *p = buf; (p = strstr(p, w)) != NULL; p += wl)
                if ((p == buf || p[-1] == ' ') && (p[wl] == ' ' || p[wl] == '\0')) {
                    dup = true;
                    break;
                }
            if (dup || len + wl + 2 > size)
                continue;
            if (len)
                buf[len++] = ' ';
            memcpy(buf + len, w, wl + 1);
            len += wl;
        }
    }
    unprep(c, s);
    return 0;
}

/* ---- writes ---- */

/* Bumps the mailbox's modseq (and optionally reserves n UIDs).  Returns the
 * new highestmodseq, first UID in *uid_r. */
static int64_t mailbox_bump(struct store_conn *c, int64_t mailbox_id, uint32_t n_uids,
                            uint32_t *uid_r)
{
    sqlite3_stmt *s = prep(c, "UPDATE mailboxes SET uidnext = uidnext + ?2,"
                              " highestmodseq = highestmodseq + 1 WHERE id = ?1"
                              " RETURNING highestmodseq, uidnext - ?2");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, n_uids);
    int64_t modseq = -1;
    if (sqlite3_step(s) == SQLITE_ROW) {
        modseq = sqlite3_column_int64(s, 0);
        if (uid_r)
            *uid_r = (uint32_t)sqlite3_column_int64(s, 1);
        while (sqlite3_step(s) == SQLITE_ROW)
            ;
    } else {
        store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    }
    unprep(c, s);
    return modseq;
}

/* ---- group commit of IMAP writes ----
 * Sessions' writes (flag changes, expunges, APPEND's index rows) come
 * from many pool threads at once.  Each one committing on its own would
 * serialize them on SQLite's write lock, one WAL fsync each, with the
 * losers polling in SQLite's busy handler (sleeps of 1, 2, 5... ms).
 * Instead a writer queues its step (a function run inside a transaction
 * on some connection) and the first waiting thread becomes the leader:
 * it takes every queued step of its store, runs each in a savepoint (a
 * failing one is rolled back alone) and commits them all at once, with
 * synchronous=FULL if any step needs it (APPEND, expunge), NORMAL if
 * none does (flag changes, see store_imap_flags).  Each writer gets its
 * own result and error back; what follows the commit (removing files,
 * notifying watchers) it does itself.  The steps of a batch run in queue
 * order, each seeing the ones before, exactly as if committed one by one. */

typedef int write_fn(struct store_conn *c, void *arg);

struct write_op {
    struct store *st;
    write_fn *fn;
    void *arg;
    bool full;                          /* needs synchronous=FULL */
    bool done;
    int result;
    enum store_error kind;
    char text[256];
    struct write_op *next;
};

static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static struct write_op *wq_head;
static bool wq_leading;

static void write_op_fail(struct write_op *op)
{
    op->result = -1;
    op->kind = store_error_kind() != STORE_ERR_NONE ? store_error_kind() : STORE_ERR_INTERNAL;
    str_copy(op->text, store_error_text()[0] ? store_error_text() : "store error", sizeof(op->text));
}

/* Runs a batch (the leader, without wq_lock). */
static void write_batch(struct store *st, struct write_op *batch)
{
    struct store_conn *c = conn(st);
    bool full = false;
    for (struct write_op *op = batch; op; op = op->next)
        full |= op->full;
    if (c != NULL && !full)
        sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (c == NULL || store_begin(c, NULL) < 0) {
        for (struct write_op *op = batch; op; op = op->next)
            write_op_fail(op);
        if (c != NULL && !full)
            sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
        return;
    }
    for (struct write_op *op = batch; op; op = op->next) {
        store_clear_error();
        if (sqlite3_get_autocommit(c->db)) {
            /* an error rolled the whole transaction back: the steps
             * after it fail too rather than run outside it */
            store_fail(STORE_ERR_TEMP, NULL, "transaction aborted");
            write_op_fail(op);
            continue;
        }
        if (store_exec(c, "SAVEPOINT w", NULL) < 0) {
            write_op_fail(op);
            continue;
        }
        if (op->fn(c, op->arg) < 0) {
            write_op_fail(op);
            sqlite3_exec(c->db, "ROLLBACK TO w", NULL, NULL, NULL);
        } else {
            op->result = 0;
        }
        sqlite3_exec(c->db, "RELEASE w", NULL, NULL, NULL);
    }
    if (sqlite3_get_autocommit(c->db) || store_commit(c, NULL) < 0) {
        if (store_error_kind() == STORE_ERR_NONE)
            store_fail(STORE_ERR_TEMP, NULL, "transaction aborted");
        for (struct write_op *op = batch; op; op = op->next)
            if (op->result == 0)
                write_op_fail(op);
    }
    if (!full)
        sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
}

/* Runs fn(c, arg) in a group-committed transaction; 0 or -1 with the
 * calling thread's store error set from what fn (or the commit) left. */
static int write_run(struct store *st, write_fn *fn, void *arg, bool full)
{
    struct write_op op = { .st = st, .fn = fn, .arg = arg, .full = full };
    pthread_mutex_lock(&wq_lock);
    struct write_op **tail = &wq_head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = &op;
    while (!op.done) {
        if (wq_leading) {
            pthread_cond_wait(&wq_cond, &wq_lock);
            continue;
        }
        /* lead: take every queued step of this store, in order */
        wq_leading = true;
        struct write_op *batch = NULL, **bt = &batch;
        for (struct write_op **pp = &wq_head; *pp;) {
            struct write_op *o = *pp;
            if (o->st == st) {
                *pp = o->next;
                o->next = NULL;
                *bt = o;
                bt = &o->next;
            } else {
                pp = &o->next;
            }
        }
        pthread_mutex_unlock(&wq_lock);
        write_batch(st, batch);
        pthread_mutex_lock(&wq_lock);
        for (struct write_op *o = batch, *next; o; o = next) {
            next = o->next;
            o->done = true;
        }
        wq_leading = false;
        pthread_cond_broadcast(&wq_cond);
    }
    pthread_mutex_unlock(&wq_lock);
    if (op.result < 0)
        return store_fail(op.kind, NULL, "%s", op.text);
    store_clear_error();
    return 0;
}

static bool kw_has(const char *list, const char *w, size_t wl)
{
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == wl && wl > 0 && strncasecmp(p, w, wl) == 0)
            return true;
        p = e;
    }
    return false;
}

/* Applies op to a keyword list into out.  Keywords compare ASCII
 * case-insensitively (RFC 3501 2.3.2: flag names are not case-sensitive). */
static void kw_apply(const char *cur, enum store_imap_flag_op op, const char *arg, char *out,
                     size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    const char *srcs[2] = { op == STORE_IMAP_FLAGS_SET ? "" : cur,
                            op == STORE_IMAP_FLAGS_REMOVE ? "" : arg };
    for (int k = 0; k < 2; k++)
        for (const char *p = srcs[k]; *p;) {
            while (*p == ' ')
                p++;
            const char *e = p;
            while (*e && *e != ' ')
                e++;
            size_t wl = (size_t)(e - p);
            bool drop = wl == 0 || kw_has(out, p, wl) ||
                        (op == STORE_IMAP_FLAGS_REMOVE && kw_has(arg, p, wl));
            if (!drop && len + wl + 2 <= size) {
                if (len)
                    out[len++] = ' ';
                memcpy(out + len, p, wl);
                len += wl;
                out[len] = '\0';
            }
            p = e;
        }
}

struct flag_ctx {
    struct store_conn *c;
    int64_t mailbox_id;
    const uint32_t *uids;
    size_t n;
    enum store_imap_flag_op op;
    uint32_t flags;
    const char *keywords;
    uint64_t unchangedsince;
    int64_t modseq;                     /* 0 until the first change */
    sqlite3_stmt *upd;
    store_imap_flag_fn *fn;
    void *arg;
    long changed;
    int error;
};

static int flag_one(struct flag_ctx *x, struct store_imap_msg *m)
{
    if (x->unchangedsince > 0 && m->modseq > x->unchangedsince) {
        x->fn(m, STORE_IMAP_MODIFIED, x->arg);
        return 0;
    }
    uint32_t nf = x->op == STORE_IMAP_FLAGS_SET ? x->flags
                  : x->op == STORE_IMAP_FLAGS_ADD ? (m->flags | x->flags)
                                                  : (m->flags & ~x->flags);
    char nk[STORE_IMAP_KEYWORDS_MAX];
    kw_apply(m->keywords, x->op, x->keywords, nk, sizeof(nk));
    if (nf == m->flags && strcmp(nk, m->keywords) == 0) {
        x->fn(m, STORE_IMAP_UNCHANGED, x->arg);
        return 0;
    }
    if (x->modseq == 0 && (x->modseq = mailbox_bump(x->c, x->mailbox_id, 0, NULL)) < 0)
        return -1;
    sqlite3_reset(x->upd);
    sqlite3_bind_int64(x->upd, 1, x->mailbox_id);
    sqlite3_bind_int64(x->upd, 2, m->uid);
    sqlite3_bind_int64(x->upd, 3, nf);
    store_bind_text(x->upd, 4, nk);
    sqlite3_bind_int64(x->upd, 5, x->modseq);
    if (sqlite3_step(x->upd) != SQLITE_DONE)
        return store_fail_db(x->c, NULL, "flags");
    m->flags = nf;
    str_copy(m->keywords, nk, sizeof(m->keywords));
    m->modseq = (uint64_t)x->modseq;
    x->changed++;
    x->fn(m, STORE_IMAP_CHANGED, x->arg);
    return 0;
}

/* The flag change itself, inside a group-committed transaction. */
static int flags_body(struct store_conn *c, void *arg)
{
    struct flag_ctx *x = arg;
    x->c = c;
    sqlite3_stmt *sel = prep(c, "SELECT " MSG_COLS " FROM messages WHERE mailbox_id = ?1 AND uid = ?2");
    x->upd = prep(c, "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5"
                     " WHERE mailbox_id = ?1 AND uid = ?2");
    struct store_imap_msg *m = malloc(sizeof(*m));
    int r = sel && x->upd && m ? 0 : -1;
    if (m == NULL && sel && x->upd)
        r = store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    for (size_t i = 0; i < x->n && r == 0; i++) {
        sqlite3_reset(sel);
        sqlite3_bind_int64(sel, 1, x->mailbox_id);
        sqlite3_bind_int64(sel, 2, x->uids[i]);
        int rc = sqlite3_step(sel);
        if (rc == SQLITE_ROW) {
            msg_row(sel, m);
            sqlite3_reset(sel);
            r = flag_one(x, m);
        } else if (rc != SQLITE_DONE) {
            r = store_fail_db(c, NULL, "flags");
        }
    }
    free(m);
    unprep(c, sel);
    unprep(c, x->upd);
    x->upd = NULL;
    return r;
}

long store_imap_flags(struct store *st, int64_t mailbox_id, const uint32_t *uids, size_t n,
                      enum store_imap_flag_op op, uint32_t flags, const char *keywords,
                      uint64_t unchangedsince, store_imap_flag_fn *fn, void *arg,
                      uint64_t *modseq_r)
{
    *modseq_r = 0;
    struct flag_ctx x = { .mailbox_id = mailbox_id, .op = op, .flags = flags,
                          .keywords = keywords ? keywords : "", .unchangedsince = unchangedsince,
                          .fn = fn, .arg = arg, .uids = uids, .n = n };
    /* Flag changes are not among the promises of DESIGN.md 1 (APPEND,
     * deliveries and expunges are): they commit without the WAL fsync
     * (synchronous=NORMAL keeps the database consistent; a power cut may
     * undo the last flag changes, as with Dovecot's unsynced index).  The
     * next FULL commit on any connection makes them durable.  A batch
     * holding an APPEND or an expunge commits with FULL. */
    if (write_run(st, flags_body, &x, false) < 0)
        return -1;
    *modseq_r = x.modseq > 0 ? (uint64_t)x.modseq : 0;
    struct store_conn *c;
    if (x.changed > 0 && (c = conn(st)) != NULL)
        notify_mailbox(st, c, mailbox_id);
    return x.changed;
}

static bool uid_in(const uint32_t *uids, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uids[mid] == uid)
            return true;
        if (uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Records the removal of (mailbox, uid) at modseq and deletes its row. */
static int expunge_row(struct store_conn *c, sqlite3_stmt *ins, sqlite3_stmt *del,
                       int64_t mailbox_id, uint32_t uid, int64_t modseq)
{
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, mailbox_id);
    sqlite3_bind_int64(ins, 2, uid);
    sqlite3_bind_int64(ins, 3, modseq);
    sqlite3_reset(del);
    sqlite3_bind_int64(del, 1, mailbox_id);
    sqlite3_bind_int64(del, 2, uid);
    if (sqlite3_step(ins) != SQLITE_DONE || sqlite3_step(del) != SQLITE_DONE)
        return store_fail_db(c, NULL, "expunge");
    return 0;
}

struct expunge_ctx {
    int64_t mailbox_id;
    const uint32_t *uids;               /* NULL: every \Deleted message */
    size_t n;
    uint32_t *out;                      /* removed UIDs */
    char **files;                       /* and their files */
    size_t cnt, alloc;
};

static void expunge_ctx_free(struct expunge_ctx *x)
{
    for (size_t i = 0; i < x->cnt; i++)
        free(x->files[i]);
    free(x->files);
    free(x->out);
    x->files = NULL;
    x->out = NULL;
    x->cnt = x->alloc = 0;
}

/* The index side of an expunge, inside a group-committed transaction. */
static int expunge_body(struct store_conn *c, void *arg)
{
    struct expunge_ctx *x = arg;
    expunge_ctx_free(x); /* a retried step starts afresh */
    int64_t mailbox_id = x->mailbox_id;
    sqlite3_stmt *s = prep(c, "SELECT uid, file FROM messages WHERE mailbox_id = ?1"
                              " AND (flags & 8) <> 0 ORDER BY uid");
    sqlite3_stmt *ins = prep(c, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)");
    sqlite3_stmt *del = prep(c, "DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2");
    int64_t modseq = 0;
    int r = s && ins && del ? 0 : -1;
    if (r == 0)
        sqlite3_bind_int64(s, 1, mailbox_id);
    while (r == 0 && sqlite3_step(s) == SQLITE_ROW) {
        uint32_t uid = (uint32_t)sqlite3_column_int64(s, 0);
        if (x->uids != NULL && !uid_in(x->uids, x->n, uid))
            continue;
        if (x->cnt == x->alloc) {
            size_t alloc = x->alloc ? x->alloc * 2 : 32;
            uint32_t *p = realloc(x->out, alloc * sizeof(*p));
            if (p)
                x->out = p;
            char **f = p ? realloc(x->files, alloc * sizeof(*f)) : NULL;
            if (f)
                x->files = f;
            if (p == NULL || f == NULL) {
                r = store_fail(STORE_ERR_TEMP, NULL, "out of memory");
                break;
            }
            x->alloc = alloc;
        }
        const char *file = (const char *)sqlite3_column_text(s, 1);
        char *dup = strdup(file ? file : "");
        if (dup == NULL) {
            r = store_fail(STORE_ERR_TEMP, NULL, "out of memory");
            break;
        }
        x->out[x->cnt] = uid;
        x->files[x->cnt++] = dup;
    }
    unprep(c, s);
    if (r == 0 && x->cnt > 0 && (modseq = mailbox_bump(c, mailbox_id, 0, NULL)) < 0)
        r = -1;
    for (size_t i = 0; i < x->cnt && r == 0; i++)
        r = expunge_row(c, ins, del, mailbox_id, x->out[i], modseq);
    unprep(c, ins);
    unprep(c, del);
    return r;
}

long store_imap_expunge(struct store *st, int64_t mailbox_id, const uint32_t *uids, size_t n,
                        uint32_t **expunged_r)
{
    *expunged_r = NULL;
    struct expunge_ctx x = { .mailbox_id = mailbox_id, .uids = uids, .n = n };
    if (write_run(st, expunge_body, &x, true) < 0) {
        expunge_ctx_free(&x);
        return -1;
    }
    size_t cnt = x.cnt;
    remove_files(st, x.files, cnt);
    *expunged_r = x.out;
    struct store_conn *c;
    if (cnt > 0 && (c = conn(st)) != NULL)
        notify_mailbox(st, c, mailbox_id);
    return (long)cnt;
}

/* Tells the watchers of the mailbox's account. */
static void notify_mailbox(struct store *st, struct store_conn *c, int64_t mailbox_id)
{
    uint32_t uv;
    int64_t account = mailbox_account_uv(c, mailbox_id, &uv);
    if (account > 0)
        store_imap_notify(st, account);
}

int store_imap_quota(struct store *st, int64_t account, uint64_t *used_r, uint64_t *limit_r)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "SELECT a.quota_bytes, (SELECT coalesce(sum(m.size), 0) FROM messages m"
                              " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = a.id)"
                              " FROM accounts a WHERE a.id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, account);
    int rc = sqlite3_step(s);
    *limit_r = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    *used_r = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 1) : 0;
    unprep(c, s);
    return rc == SQLITE_ROW ? 0 : store_fail(STORE_ERR_NOTFOUND, NULL, "no such account");
}

int store_imap_quota_set(struct store *st, const char *address, uint64_t bytes)
{
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = prep(c, "UPDATE accounts SET quota_bytes = ?2 WHERE address = ?1");
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, address);
    sqlite3_bind_int64(s, 2, (int64_t)bytes);
    int rc = sqlite3_step(s);
    int changes = sqlite3_changes(c->db);
    unprep(c, s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, NULL, "quota");
    return changes > 0 ? 0 : store_fail(STORE_ERR_NOTFOUND, NULL, "no such account");
}

static int quota_check(struct store *st, int64_t account, uint64_t add)
{
    uint64_t used, limit;
    if (store_imap_quota(st, account, &used, &limit) < 0)
        return -1;
    if (limit > 0 && used + add > limit)
        return store_fail(STORE_ERR_INVALID, NULL, "OVERQUOTA");
    return 0;
}

/* A new file name under mail/<account>/ created with O_EXCL. */
static int new_file(struct store *st, int64_t account, char *path, size_t size, int *fd_r)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        char id[20];
        random_hex(id, 16);
        snprintf(path, size, "mail/%lld/%s", (long long)account, id);
        int fd = openat(st->dir_fd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            *fd_r = fd;
            return 0;
        }
        if (errno == ENOENT) {
            const char *err;
            if (store_account_dir_create(st, account, &err) < 0)
                return -1;
            continue;
        }
        if (errno != EEXIST)
            return store_fail_errno(errno, NULL, path);
    }
    return store_fail(STORE_ERR_TEMP, NULL, "cannot create a message file");
}

static int sync_account_dir(struct store *st, int64_t account)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "mail/%lld", (long long)account);
    return store_sync_dir(st, dir);
}

static int insert_msg(struct store_conn *c, int64_t mailbox_id, uint32_t uid, int64_t modseq,
                      uint32_t flags, const char *keywords, int64_t internaldate, uint64_t size,
                      const char *file)
{
    sqlite3_stmt *s = prep(c, "INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords,"
                              " internaldate, size, file) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, uid);
    sqlite3_bind_int64(s, 3, modseq);
    sqlite3_bind_int64(s, 4, flags);
    store_bind_text(s, 5, keywords ? keywords : "");
    sqlite3_bind_int64(s, 6, internaldate);
    sqlite3_bind_int64(s, 7, (int64_t)size);
    store_bind_text(s, 8, file);
    int rc = sqlite3_step(s);
    unprep(c, s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "message");
}

static int64_t mailbox_account_uv(struct store_conn *c, int64_t mailbox_id, uint32_t *uv_r)
{
    sqlite3_stmt *s = prep(c, "SELECT account_id, uidvalidity FROM mailboxes WHERE id = ?1");
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mailbox_id);
    int64_t acct = -1;
    if (sqlite3_step(s) == SQLITE_ROW) {
        acct = sqlite3_column_int64(s, 0);
        *uv_r = (uint32_t)sqlite3_column_int64(s, 1);
    } else {
        store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    }
    unprep(c, s);
    return acct;
}

struct append_ctx {
    int64_t account, mailbox_id;
    uint32_t flags;
    const char *keywords;
    int64_t internaldate;
    uint64_t size;
    const char *path;
    uint32_t uid, uidvalidity;
};

/* APPEND's index rows, inside a group-committed transaction. */
static int append_body(struct store_conn *c, void *arg)
{
    struct append_ctx *x = arg;
    x->uid = 0;
    if (mailbox_account_uv(c, x->mailbox_id, &x->uidvalidity) != x->account)
        return store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    int64_t modseq = mailbox_bump(c, x->mailbox_id, 1, &x->uid);
    if (modseq < 0)
        return -1;
    return insert_msg(c, x->mailbox_id, x->uid, modseq, x->flags, x->keywords, x->internaldate,
                      x->size, x->path);
}

int store_imap_append(struct store *st, int64_t account, int64_t mailbox_id, const void *data,
                      size_t len, uint32_t flags, const char *keywords, int64_t internaldate,
                      uint32_t *uid_r, uint32_t *uidvalidity_r)
{
    struct store_conn *c = conn(st);
    if (c == NULL || quota_check(st, account, len) < 0)
        return -1;
    char path[STORE_IMAP_PATH_MAX];
    int fd = -1;
    if (new_file(st, account, path, sizeof(path), &fd) < 0)
        return -1;
    /* the file and its directory entry are made durable here, in
     * parallel with other writers; only the index commit is shared */
    int r = write_full(fd, data, len) == 0 && fdatasync(fd) == 0 ? 0
                                                               : store_fail_errno(errno, NULL, path);
    close(fd);
    if (r == 0)
        r = sync_account_dir(st, account);
    struct append_ctx x = { .account = account, .mailbox_id = mailbox_id, .flags = flags,
                            .keywords = keywords, .internaldate = internaldate ? internaldate
                                                                               : store_now(),
                            .size = len, .path = path };
    if (r == 0)
        r = write_run(st, append_body, &x, true);
    *uid_r = x.uid;
    *uidvalidity_r = x.uidvalidity;
    if (r < 0) {
        unlinkat(st->dir_fd, path, 0);
        return -1;
    }
    store_imap_notify(st, account);
    return 0;
}

struct copy_item {
    uint32_t uid;
    uint32_t flags;
    int64_t internaldate;
    uint64_t size;
    char keywords[STORE_IMAP_KEYWORDS_MAX];
    char file[STORE_IMAP_PATH_MAX];
    char newfile[STORE_IMAP_PATH_MAX];
};

/* Reads the rows to copy, in UID order. */
static long copy_read(struct store_conn *c, int64_t src, const uint32_t *uids, size_t n,
                      struct copy_item **items_r, uint64_t *bytes_r)
{
    struct copy_item *items = calloc(n ? n : 1, sizeof(*items));
    sqlite3_stmt *s = prep(c, "SELECT " MSG_COLS " FROM messages WHERE mailbox_id = ?1 AND uid = ?2");
    if (items == NULL || s == NULL) {
        free(items);
        unprep(c, s);
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    }
    struct store_imap_msg m;
    size_t k = 0;
    *bytes_r = 0;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, src);
        sqlite3_bind_int64(s, 2, uids[i]);
        if (sqlite3_step(s) != SQLITE_ROW)
            continue;
        msg_row(s, &m);
        items[k].uid = m.uid;
        items[k].flags = m.flags;
        items[k].internaldate = m.internaldate;
        items[k].size = m.size;
        str_copy(items[k].keywords, m.keywords, sizeof(items[k].keywords));
        str_copy(items[k].file, m.file, sizeof(items[k].file));
        *bytes_r += m.size;
        k++;
    }
    unprep(c, s);
    *items_r = items;
    return (long)k;
}

/* Hard links for COPY; the directory is synced once. */
static int copy_link(struct store *st, int64_t account, struct copy_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int attempt = 0;; attempt++) {
            char id[20];
            random_hex(id, 16);
            snprintf(items[i].newfile, sizeof(items[i].newfile), "mail/%lld/%s",
                     (long long)account, id);
            if (linkat(st->dir_fd, items[i].file, st->dir_fd, items[i].newfile, 0) == 0)
                break;
            /* a staged message has no file yet: write it first */
            if (errno == ENOENT && attempt == 0 && store_stage_materialize(st, items[i].file) == 0)
                continue;
            if (errno != EEXIST || attempt > 8) {
                int e = errno;
                items[i].newfile[0] = '\0';
                return store_fail_errno(e, NULL, "link");
            }
        }
    }
    return n > 0 ? sync_account_dir(st, account) : 0;
}

static void copy_unlink(struct store *st, struct copy_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].newfile[0])
            unlinkat(st->dir_fd, items[i].newfile, 0);
}

static int copy_index(struct store_conn *c, int64_t src, int64_t dst, struct copy_item *items,
                      size_t n, bool move, uint32_t *dst_uids)
{
    uint32_t first = 0;
    int64_t modseq = mailbox_bump(c, dst, (uint32_t)n, &first), smodseq = 0;
    if (modseq < 0)
        return -1;
    if (move && (smodseq = mailbox_bump(c, src, 0, NULL)) < 0)
        return -1;
    sqlite3_stmt *mv = NULL, *ins = NULL;
    if (move) {
        mv = prep(c, "UPDATE messages SET mailbox_id = ?3, uid = ?4, modseq = ?5"
                     " WHERE mailbox_id = ?1 AND uid = ?2");
        ins = prep(c, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)");
        if (mv == NULL || ins == NULL) {
            unprep(c, mv);
            unprep(c, ins);
            return -1;
        }
    }
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        dst_uids[i] = first + (uint32_t)i;
        if (!move) {
            r = insert_msg(c, dst, dst_uids[i], modseq, items[i].flags, items[i].keywords,
                           items[i].internaldate, items[i].size, items[i].newfile);
            continue;
        }
        sqlite3_reset(mv);
        sqlite3_bind_int64(mv, 1, src);
        sqlite3_bind_int64(mv, 2, items[i].uid);
        sqlite3_bind_int64(mv, 3, dst);
        sqlite3_bind_int64(mv, 4, dst_uids[i]);
        sqlite3_bind_int64(mv, 5, modseq);
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, src);
        sqlite3_bind_int64(ins, 2, items[i].uid);
        sqlite3_bind_int64(ins, 3, smodseq);
        if (sqlite3_step(mv) != SQLITE_DONE || sqlite3_step(ins) != SQLITE_DONE)
            r = store_fail_db(c, NULL, "move");
    }
    unprep(c, mv);
    unprep(c, ins);
    return r;
}

struct copy_ctx {
    int64_t src, dst;
    struct copy_item *items;
    size_t n;
    bool move;
    uint32_t *dst_uids;
};

/* COPY/MOVE's index rows, inside a group-committed transaction. */
static int copy_body(struct store_conn *c, void *arg)
{
    struct copy_ctx *x = arg;
    return copy_index(c, x->src, x->dst, x->items, x->n, x->move, x->dst_uids);
}

long store_imap_copy(struct store *st, int64_t account, int64_t src, int64_t dst,
                     const uint32_t *uids, size_t n, bool move, uint32_t **src_uids_r,
                     uint32_t **dst_uids_r, uint32_t *uidvalidity_r)
{
    *src_uids_r = *dst_uids_r = NULL;
    struct store_conn *c = conn(st);
    if (c == NULL)
        return -1;
    struct copy_item *items = NULL;
    uint64_t bytes = 0;
    uint32_t suv;
    if (mailbox_account_uv(c, src, &suv) != account || mailbox_account_uv(c, dst, uidvalidity_r) != account)
        return store_fail(STORE_ERR_NOTFOUND, NULL, "no such mailbox");
    long k = copy_read(c, src, uids, n, &items, &bytes);
    if (k < 0)
        return -1;
    if ((!move && quota_check(st, account, bytes) < 0) ||
        (!move && copy_link(st, account, items, (size_t)k) < 0)) {
        copy_unlink(st, items, (size_t)k);
        free(items);
        return -1;
    }
    uint32_t *su = malloc(((size_t)k + 1) * sizeof(*su)), *du = malloc(((size_t)k + 1) * sizeof(*du));
    int r = su && du ? 0 : store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    struct copy_ctx x = { .src = src, .dst = dst, .items = items, .n = (size_t)k, .move = move,
                          .dst_uids = du };
    if (r == 0 && k > 0)
        r = write_run(st, copy_body, &x, true);
    if (r < 0) {
        if (!move)
            copy_unlink(st, items, (size_t)k);
        free(items);
        free(su);
        free(du);
        return -1;
    }
    for (long i = 0; i < k; i++)
        su[i] = items[i].uid;
    free(items);
    *src_uids_r = su;
    *dst_uids_r = du;
    if (k > 0)
        store_imap_notify(st, account);
    return k;
}

/* ---- notification ----
 * On top of the store's watch registry (store_messages.h), so POP3 and
 * IMAP see each other's changes; IMAP watches a whole account. */

struct store_imap_watch {
    struct store_watch *w;
    store_imap_watch_fn *fn;
    void *arg;
};

static void watch_adapter(void *arg, const struct store_change *change)
{
    struct store_imap_watch *w = arg;
    w->fn(w->arg, change->account_id);
}

struct store_imap_watch *store_imap_watch_add(struct store *st, int64_t account,
                                              store_imap_watch_fn *fn, void *arg)
{
    struct store_imap_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->fn = fn;
    w->arg = arg;
    w->w = store_watch_add(st, account, 0, watch_adapter, w);
    if (w->w == NULL) {
        free(w);
        return NULL;
    }
    return w;
}

void store_imap_watch_remove(struct store_imap_watch *w)
{
    if (w == NULL)
        return;
    store_watch_remove(w->w);
    free(w);
}

void store_imap_notify(struct store *st, int64_t account)
{
    struct store_change ch = { .account_id = account, .mailbox_id = 0,
                               .what = STORE_CHANGE_APPEND | STORE_CHANGE_EXPUNGE |
                                       STORE_CHANGE_FLAGS | STORE_CHANGE_MAILBOX };
    store_watch_notify(st, &ch);
}
