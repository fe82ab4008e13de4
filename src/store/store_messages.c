/*
 * Messages of a mailbox for readers (see store_messages.h): listing,
 * atomic expunge with the expunged-UID record for QRESYNC, the POP3
 * maildrop lock and the change-notification registry.
 *
 * The table expunged(mailbox_id, uid, modseq) is shared with
 * store_imap.c and created lazily by either (CREATE ... IF NOT EXISTS
 * inside the expunge's own transaction, or when a reader finds it
 * missing), so the store's schema setup needs no hook.  An expunge here
 * notifies both watch registries: store_watch_* (store_messages.h) and
 * IMAP's store_imap_watch_* (store_imap.h).
 */
#include "store/store_messages.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_imap.h"
#include "store/store_int.h"

/* The same definition as in store_imap.c (whichever runs first creates
 * the table): keep the two in step. */
static const char expunged_schema[] =
    "CREATE TABLE IF NOT EXISTS expunged ("
    "  mailbox_id INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID;";

/* ---- listing ---- */

void store_msg_list_free(struct store_msg_list *list)
{
    free(list->msgs);
    free(list->names_);
    memset(list, 0, sizeof(*list));
}

/* Mailbox names are case-sensitive except INBOX (RFC 3501 5.1). */
static const char *mailbox_name(const char *mailbox)
{
    return strcasecmp(mailbox, "INBOX") == 0 ? "INBOX" : mailbox;
}

/* Fills the mailbox fields of list.  1 found, 0 not found, -1 error. */
static int list_mailbox(struct store_conn *c, int64_t account_id, const char *mailbox,
                        struct store_msg_list *list)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, uidvalidity, uidnext, highestmodseq FROM mailboxes"
                           " WHERE account_id = ?1 AND name = ?2",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "mailbox");
    sqlite3_bind_int64(s, 1, account_id);
    store_bind_text(s, 2, mailbox_name(mailbox));
    int rc = sqlite3_step(s), found = 0;
    if (rc == SQLITE_ROW) {
        list->mailbox_id = sqlite3_column_int64(s, 0);
        list->uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
        list->uidnext = (uint32_t)sqlite3_column_int64(s, 2);
        list->highestmodseq = (uint64_t)sqlite3_column_int64(s, 3);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = store_fail_db(c, NULL, "mailbox");
    }
    sqlite3_finalize(s);
    return found;
}

/* Appends one row to list; file names go to one growing buffer whose
 * offsets are turned into pointers once every row is read. */
static int list_add(struct store_msg_list *list, size_t *alloc, size_t *names_len,
                    size_t *names_alloc, sqlite3_stmt *s)
{
    if (list->n == *alloc) {
        size_t n = *alloc ? *alloc * 2 : 64;
        struct store_msg *m = realloc(list->msgs, n * sizeof(*m));
        if (m == NULL)
            return -1;
        list->msgs = m;
        *alloc = n;
    }
    const char *file = (const char *)sqlite3_column_text(s, 5);
    size_t flen = file ? strlen(file) + 1 : 1;
    if (*names_len + flen > *names_alloc) {
        size_t n = *names_alloc ? *names_alloc * 2 : 4096;
        while (n < *names_len + flen)
            n *= 2;
        char *p = realloc(list->names_, n);
        if (p == NULL)
            return -1;
        list->names_ = p;
        *names_alloc = n;
    }
    memcpy(list->names_ + *names_len, file ? file : "", flen);
    struct store_msg *m = &list->msgs[list->n++];
    m->uid = (uint32_t)sqlite3_column_int64(s, 0);
    m->flags = (uint32_t)sqlite3_column_int64(s, 1);
    m->modseq = (uint64_t)sqlite3_column_int64(s, 2);
    m->size = (uint64_t)sqlite3_column_int64(s, 3);
    m->internaldate = sqlite3_column_int64(s, 4);
    m->file = (const char *)(uintptr_t)*names_len; /* an offset until the end */
    *names_len += flen;
    return 0;
}

static int list_messages(struct store_conn *c, struct store_msg_list *list)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT uid, flags, modseq, size, internaldate, file FROM messages"
                           " WHERE mailbox_id = ?1 ORDER BY uid",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "messages");
    sqlite3_bind_int64(s, 1, list->mailbox_id);
    size_t alloc = 0, names_len = 0, names_alloc = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (list_add(list, &alloc, &names_len, &names_alloc, s) < 0) {
            sqlite3_finalize(s);
            return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
        }
    }
    if (rc != SQLITE_DONE) {
        store_fail_db(c, NULL, "messages");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    for (size_t i = 0; i < list->n; i++)
        list->msgs[i].file = list->names_ + (uintptr_t)list->msgs[i].file;
    return 0;
}

int store_msg_list_load(struct store *st, int64_t account_id, const char *mailbox,
                        struct store_msg_list *list)
{
    memset(list, 0, sizeof(*list));
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    /* One read transaction: the mailbox row and its messages agree. */
    if (store_stmt_run(c, STMT_BEGIN_READ) < 0)
        return -1;
    int rc = list_mailbox(c, account_id, mailbox, list);
    if (rc == 0)
        rc = store_fail(STORE_ERR_NOTFOUND, NULL, "no mailbox %s", mailbox);
    else if (rc > 0)
        rc = list_messages(c, list);
    store_stmt_run(c, STMT_COMMIT_READ);
    if (rc < 0) {
        store_msg_list_free(list);
        return -1;
    }
    return (int)list->n;
}

/* A message kept in index.db (store_set_blob_messages) as a memfd holding
 * its content, positioned at 0; -1 (NOTFOUND) when there is none. */
static int blob_open(struct store *st, const char *file)
{
    struct store_conn *c = store_conn_get(st);
    sqlite3_stmt *s = c ? store_stmt(c, STMT_BLOB_GET) : NULL;
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, file);
    int rc = sqlite3_step(s), fd = -1;
    if (rc == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        fd = memfd_create("postel-message", MFD_CLOEXEC);
        if (fd < 0 || write_full(fd, data, len) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
            store_fail_errno(errno, NULL, file);
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
    } else if (rc == SQLITE_DONE) {
        store_fail(STORE_ERR_NOTFOUND, NULL, "message file %s is gone", file);
    } else {
        store_fail_db(c, NULL, "message blob");
    }
    sqlite3_reset(s);
    return fd;
}

int store_msg_open(struct store *st, const char *file)
{
    store_clear_error();
    if (strncmp(file, "mail/", 5) != 0 || strstr(file, "..") != NULL) {
        store_fail(STORE_ERR_INVALID, NULL, "bad message file name");
        return -1;
    }
    /* O_NOATIME: reading a message must not dirty its inode (relatime
     * still writes the first access); refused (EPERM) when the files
     * belong to another user, then open normally. */
    int fd = openat(st->dir_fd, file, O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(st->dir_fd, file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        fd = blob_open(st, file);
        if (fd >= 0 || store_error_kind() != STORE_ERR_NOTFOUND)
            return fd;
        /* a staged message's blob goes only once its file is in place
         * (store_stage.c): it may have been written meanwhile */
        fd = openat(st->dir_fd, file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            store_clear_error();
        return fd;
    }
    if (fd < 0)
        store_fail_errno(errno, NULL, file);
    return fd;
}

/* ---- expunge ---- */

struct expunge_work {
    int64_t mailbox_id;
    uint32_t *removed;            /* UIDs actually deleted */
    size_t n_removed;
    char **files;                 /* to unlink after the commit */
    size_t n_files;
    uint64_t modseq;
};

static void expunge_work_free(struct expunge_work *w)
{
    for (size_t i = 0; i < w->n_files; i++)
        free(w->files[i]);
    free(w->files);
    free(w->removed);
}

/* Deletes the rows, collecting the UIDs removed and their files. */
static int expunge_rows(struct store_conn *c, struct expunge_work *w, const uint32_t *uids,
                        size_t n)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING file",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "expunge");
    int out = 0;
    for (size_t i = 0; i < n && out == 0; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, w->mailbox_id);
        sqlite3_bind_int64(s, 2, uids[i]);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            char *f = strdup((const char *)sqlite3_column_text(s, 0));
            if (f == NULL) {
                out = store_fail(STORE_ERR_TEMP, NULL, "out of memory");
                break;
            }
            w->files[w->n_files++] = f;
            w->removed[w->n_removed++] = uids[i];
            rc = sqlite3_step(s);
        }
        if (rc != SQLITE_DONE)
            out = store_fail_db(c, NULL, "expunge");
    }
    sqlite3_finalize(s);
    return out;
}

/* Bumps highestmodseq once and records every removed UID with it. */
static int expunge_record(struct store_conn *c, struct expunge_work *w)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1"
                           " RETURNING highestmodseq",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "expunge");
    sqlite3_bind_int64(s, 1, w->mailbox_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        w->modseq = (uint64_t)sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE || w->modseq == 0)
        return store_fail_db(c, NULL, "expunge");
    if (sqlite3_prepare_v2(c->db,
                           "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq)"
                           " VALUES (?1, ?2, ?3)",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "expunge");
    int out = 0;
    for (size_t i = 0; i < w->n_removed && out == 0; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, w->mailbox_id);
        sqlite3_bind_int64(s, 2, w->removed[i]);
        sqlite3_bind_int64(s, 3, (int64_t)w->modseq);
        if (sqlite3_step(s) != SQLITE_DONE)
            out = store_fail_db(c, NULL, "expunge");
    }
    sqlite3_finalize(s);
    return out;
}

/* A file another row still names (a future shared copy) must stay: drop
 * it from the unlink list. */
static int expunge_keep_shared(struct store_conn *c, struct expunge_work *w)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM messages WHERE file = ?1 LIMIT 1", -1, &s,
                           NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "expunge");
    size_t kept = 0;
    for (size_t i = 0; i < w->n_files; i++) {
        sqlite3_reset(s);
        store_bind_text(s, 1, w->files[i]);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            free(w->files[i]);
            continue;
        }
        w->files[kept++] = w->files[i];
    }
    w->n_files = kept;
    sqlite3_finalize(s);
    return 0;
}

/* The transaction: look up the mailbox, delete, record.  0 or -1. */
static int expunge_tx(struct store_conn *c, int64_t account_id, const char *mailbox,
                      struct expunge_work *w, const uint32_t *uids, size_t n)
{
    struct store_msg_list mb;
    memset(&mb, 0, sizeof(mb));
    if (store_exec(c, expunged_schema, NULL) < 0)
        return -1;
    int rc = list_mailbox(c, account_id, mailbox, &mb);
    if (rc <= 0)
        return rc < 0 ? -1 : store_fail(STORE_ERR_NOTFOUND, NULL, "no mailbox %s", mailbox);
    w->mailbox_id = mb.mailbox_id;
    if (expunge_rows(c, w, uids, n) < 0)
        return -1;
    if (w->n_removed == 0)
        return 0;
    if (expunge_record(c, w) < 0 || expunge_keep_shared(c, w) < 0)
        return -1;
    return 0;
}

int store_msg_expunge(struct store *st, int64_t account_id, const char *mailbox,
                      const uint32_t *uids, size_t n_uids, uint64_t *modseq_r,
                      const char **error_r)
{
    store_clear_error();
    if (n_uids == 0)
        return 0;
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    struct expunge_work w = { 0 };
    w.removed = calloc(n_uids, sizeof(*w.removed));
    w.files = calloc(n_uids, sizeof(*w.files));
    if (w.removed == NULL || w.files == NULL) {
        expunge_work_free(&w);
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    }
    if (store_begin(c, error_r) < 0) {
        expunge_work_free(&w);
        return -1;
    }
    if (expunge_tx(c, account_id, mailbox, &w, uids, n_uids) < 0) {
        store_rollback(c);
        expunge_work_free(&w);
        return store_fail_again(error_r);
    }
    if (store_commit(c, error_r) < 0) {
        expunge_work_free(&w);
        return -1;
    }
    /* Committed: the messages are gone.  Their files go now; one left
     * behind by a crash here is unreferenced and swept at start-up. */
    for (size_t i = 0; i < w.n_files; i++)
        if (unlinkat(st->dir_fd, w.files[i], 0) < 0 && errno != ENOENT)
            log_warn(NULL, "event=expunge_unlink_failed file=%s error=\"%s\"", w.files[i],
                     strerror(errno));
    int removed = (int)w.n_removed;
    if (removed > 0) {
        if (modseq_r != NULL)
            *modseq_r = w.modseq;
        struct store_change ch = { .account_id = account_id, .mailbox_id = w.mailbox_id,
                                   .what = STORE_CHANGE_EXPUNGE, .modseq = w.modseq };
        store_watch_notify(st, &ch); /* account-wide watches (IMAP IDLE) too */
    }
    expunge_work_free(&w);
    return removed;
}

int store_msg_expunged_since(struct store *st, int64_t mailbox_id, uint64_t since_modseq,
                             void (*fn)(uint32_t uid, uint64_t modseq, void *arg), void *arg)
{
    static const char sql[] = "SELECT uid, modseq FROM expunged WHERE mailbox_id = ?1"
                              " AND modseq > ?2 ORDER BY uid";
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK) {
        /* no table yet: create it (nothing was ever expunged) and retry */
        if (store_exec(c, expunged_schema, NULL) < 0)
            return -1;
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
            return store_fail_db(c, NULL, "expunged");
    }
    sqlite3_bind_int64(s, 1, mailbox_id);
    sqlite3_bind_int64(s, 2, (int64_t)since_modseq);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        fn((uint32_t)sqlite3_column_int64(s, 0), (uint64_t)sqlite3_column_int64(s, 1), arg);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "expunged");
    sqlite3_finalize(s);
    return n;
}

/* ---- maildrop lock ---- */

#define LOCK_BUCKETS 256

struct maildrop_lock {
    struct maildrop_lock *next;
    const struct store *st;
    int64_t account_id;
};

static pthread_mutex_t lock_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct maildrop_lock *lock_table[LOCK_BUCKETS];

static unsigned account_bucket(int64_t account_id, unsigned buckets)
{
    return (unsigned)((uint64_t)account_id * 0x9e3779b97f4a7c15ull >> 40) % buckets;
}

int store_maildrop_lock(struct store *st, int64_t account_id)
{
    struct maildrop_lock **head = &lock_table[account_bucket(account_id, LOCK_BUCKETS)];
    struct maildrop_lock *l = malloc(sizeof(*l));
    if (l == NULL)
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    pthread_mutex_lock(&lock_mutex);
    for (struct maildrop_lock *p = *head; p; p = p->next) {
        if (p->st == st && p->account_id == account_id) {
            pthread_mutex_unlock(&lock_mutex);
            free(l);
            return store_fail(STORE_ERR_EXISTS, NULL, "maildrop in use");
        }
    }
    l->st = st;
    l->account_id = account_id;
    l->next = *head;
    *head = l;
    pthread_mutex_unlock(&lock_mutex);
    return 0;
}

void store_maildrop_unlock(struct store *st, int64_t account_id)
{
    struct maildrop_lock **pp = &lock_table[account_bucket(account_id, LOCK_BUCKETS)];
    struct maildrop_lock *found = NULL;
    pthread_mutex_lock(&lock_mutex);
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->st == st && (*pp)->account_id == account_id) {
            found = *pp;
            *pp = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock_mutex);
    free(found);
}

bool store_maildrop_locked(struct store *st, int64_t account_id)
{
    bool held = false;
    pthread_mutex_lock(&lock_mutex);
    for (struct maildrop_lock *p = lock_table[account_bucket(account_id, LOCK_BUCKETS)]; p;
         p = p->next)
        held = held || (p->st == st && p->account_id == account_id);
    pthread_mutex_unlock(&lock_mutex);
    return held;
}

/* ---- watches ---- */

#define WATCH_BUCKETS 1024

struct store_watch {
    struct store_watch *next, *prev;
    struct store *st;
    int64_t account_id, mailbox_id;
    store_watch_fn *fn;
    void *arg;
    unsigned bucket;
};

static pthread_mutex_t watch_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct store_watch *watch_table[WATCH_BUCKETS];

struct store_watch *store_watch_add(struct store *st, int64_t account_id, int64_t mailbox_id,
                                    store_watch_fn *fn, void *arg)
{
    struct store_watch *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->st = st;
    w->account_id = account_id;
    w->mailbox_id = mailbox_id;
    w->fn = fn;
    w->arg = arg;
    w->bucket = account_bucket(account_id, WATCH_BUCKETS);
    pthread_mutex_lock(&watch_mutex);
    w->next = watch_table[w->bucket];
    if (w->next)
        w->next->prev = w;
    watch_table[w->bucket] = w;
    pthread_mutex_unlock(&watch_mutex);
    return w;
}

void store_watch_remove(struct store_watch *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&watch_mutex);
    if (w->prev)
        w->prev->next = w->next;
    else
        watch_table[w->bucket] = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&watch_mutex);
    free(w);
}

void store_watch_notify(struct store *st, const struct store_change *change)
{
    pthread_mutex_lock(&watch_mutex);
    for (struct store_watch *w = watch_table[account_bucket(change->account_id, WATCH_BUCKETS)];
         w; w = w->next) {
        if (w->st != st || w->account_id != change->account_id)
            continue;
        if (w->mailbox_id != 0 && w->mailbox_id != change->mailbox_id)
            continue;
        w->fn(w->arg, change);
    }
    pthread_mutex_unlock(&watch_mutex);
}
