/*
 * The store's frame: errors, SQLite connections and statements, the
 * schema, opening and closing, and the start-up cleanup of files that no
 * index row references (they belong to transactions that were never
 * acknowledged).
 */
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* ---- errors ---- */

static __thread enum store_error err_kind;
static __thread char err_text[256];

int store_fail(enum store_error kind, const char **error_r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_text, sizeof(err_text), fmt, ap);
    va_end(ap);
    err_kind = kind;
    if (error_r != NULL)
        *error_r = err_text;
    return -1;
}

int store_fail_db(struct store_conn *c, const char **error_r, const char *what)
{
    int code = sqlite3_extended_errcode(c->db) & 0xff;
    enum store_error kind = STORE_ERR_INTERNAL;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_FULL ||
        code == SQLITE_IOERR || code == SQLITE_NOMEM || code == SQLITE_CANTOPEN ||
        code == SQLITE_READONLY)
        kind = STORE_ERR_TEMP;
    return store_fail(kind, error_r, "%s: %s", what, sqlite3_errmsg(c->db));
}

bool store_errno_is_temporary(int err)
{
    return err == ENOSPC || err == EDQUOT || err == EIO || err == ENOMEM || err == EMFILE ||
           err == ENFILE || err == EAGAIN || err == EINTR || err == EROFS || err == EBUSY;
}

int store_fail_errno(int err, const char **error_r, const char *what)
{
    return store_fail(store_errno_is_temporary(err) ? STORE_ERR_TEMP : STORE_ERR_INTERNAL,
                      error_r, "%s: %s", what, strerror(err));
}

int store_fail_again(const char **error_r)
{
    if (err_kind == STORE_ERR_NONE)
        return store_fail(STORE_ERR_INTERNAL, error_r, "store error");
    if (error_r != NULL)
        *error_r = err_text;
    return -1;
}

void store_clear_error(void)
{
    err_kind = STORE_ERR_NONE;
    err_text[0] = '\0';
}

bool store_error_is_temporary(void) { return err_kind == STORE_ERR_TEMP; }
enum store_error store_error_kind(void) { return err_kind; }
const char *store_error_text(void) { return err_text; }

void store_error_set(enum store_error kind, const char *text)
{
    err_kind = kind;
    str_copy(err_text, text ? text : "", sizeof(err_text));
}

int64_t store_now(void) { return (int64_t)time(NULL); }

/* ---- statements ---- */

static const char *const stmt_sql[STMT_COUNT] = {
    [STMT_DOMAIN_IS_LOCAL] = "SELECT 1 FROM domains WHERE name = ?1",
    [STMT_ACCOUNT_BY_ADDRESS] = "SELECT id, address, password FROM accounts WHERE address = ?1",
    [STMT_ACCOUNT_FIRST_OF_DOMAIN] =
        "SELECT id, address FROM accounts WHERE domain = ?1 ORDER BY id LIMIT 1",
    [STMT_ACCOUNT_ADDRESS_BY_ID] = "SELECT address FROM accounts WHERE id = ?1",
    [STMT_ALIAS_DESTS] = "SELECT dest FROM aliases WHERE source = ?1 ORDER BY rowid",
    [STMT_ALIAS_SOURCE_TO] = "SELECT 1 FROM aliases WHERE source = ?1 AND dest = ?2",
    [STMT_MAILBOX_BUMP] =
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
        " WHERE account_id = ?1 AND name = ?2 RETURNING id, uidnext - 1, highestmodseq",
    [STMT_MESSAGE_INSERT] =
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, keywords, internaldate, size, file)"
        " VALUES (?1, ?2, ?3, 0, '', ?4, ?5, ?6)",
    [STMT_QUEUE_INSERT] =
        "INSERT INTO queue(id, sender, envid, ret, smtputf8, body_8bit, submitter, created,"
        " next_attempt, attempts, state, size, file)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0, 'active', ?9, ?10)",
    [STMT_QUEUE_RCPT_INSERT] =
        "INSERT INTO queue_rcpt(queue_id, address, orcpt, notify, status)"
        " VALUES (?1, ?2, ?3, ?4, 'pending')",
    [STMT_MESSAGE_FILE_EXISTS] = "SELECT 1 FROM messages WHERE file = ?1 LIMIT 1",
    [STMT_QUEUE_FILE_EXISTS] = "SELECT 1 FROM queue WHERE file = ?1 LIMIT 1",
    [STMT_BLOB_INSERT] = "INSERT OR REPLACE INTO message_blobs(file, data) VALUES (?1, ?2)",
    [STMT_BLOB_GET] = "SELECT data FROM message_blobs WHERE file = ?1",
    [STMT_BEGIN_READ] = "BEGIN",
    [STMT_COMMIT_READ] = "COMMIT",
    [STMT_SAVEPOINT] = "SAVEPOINT tx",
    [STMT_RELEASE] = "RELEASE tx",
    [STMT_ROLLBACK_TO] = "ROLLBACK TO tx",
};

sqlite3_stmt *store_stmt(struct store_conn *c, enum store_stmt_id id)
{
    if (c->stmt[id] == NULL) {
        if (sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id],
                               NULL) != SQLITE_OK) {
            store_fail_db(c, NULL, "prepare");
            return NULL;
        }
    }
    sqlite3_reset(c->stmt[id]);
    sqlite3_clear_bindings(c->stmt[id]);
    return c->stmt[id];
}

sqlite3_stmt *store_stmt_kept(struct store_conn *c, const char *sql, const char *schema)
{
    int slot = -1;
    for (int i = 0; i < STORE_XSTMT_MAX; i++) {
        if (c->xstmt[i].sql == sql) {
            if (!sqlite3_stmt_busy(c->xstmt[i].s))
                return c->xstmt[i].s;
            break;
        }
        if (c->xstmt[i].sql == NULL) {
            slot = i;
            break;
        }
    }
    unsigned flags = slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v3(c->db, sql, -1, flags, &s, NULL) == SQLITE_OK) {
            if (slot >= 0) {
                c->xstmt[slot].sql = sql;
                c->xstmt[slot].s = s;
            }
            return s;
        }
        sqlite3_finalize(s);
        if (schema == NULL || attempt > 0 || store_exec(c, schema, NULL) < 0)
            break;
    }
    store_fail_db(c, NULL, "prepare");
    return NULL;
}

void store_stmt_kept_done(struct store_conn *c, sqlite3_stmt *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < STORE_XSTMT_MAX && c->xstmt[i].sql != NULL; i++)
        if (c->xstmt[i].s == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return;
        }
    sqlite3_finalize(s);
}

int store_stmt_run(struct store_conn *c, enum store_stmt_id id)
{
    sqlite3_stmt *s = store_stmt(c, id);
    if (s == NULL)
        return -1;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "index");
}

void store_bind_text(sqlite3_stmt *s, int i, const char *text)
{
    if (text == NULL)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_text(s, i, text, -1, SQLITE_TRANSIENT);
}

int store_exec(struct store_conn *c, const char *sql, const char **error_r)
{
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "index");
    return 0;
}

int store_begin(struct store_conn *c, const char **error_r)
{
    return store_exec(c, "BEGIN IMMEDIATE", error_r);
}

int store_commit(struct store_conn *c, const char **error_r)
{
    if (store_exec(c, "COMMIT", error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    return 0;
}

void store_rollback(struct store_conn *c)
{
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- connections ---- */

static void conn_free(struct store_conn *c)
{
    for (int i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    for (int i = 0; i < STORE_XSTMT_MAX; i++)
        sqlite3_finalize(c->xstmt[i].s);
    sqlite3_close(c->db);
    free(c);
}

static struct store_conn *conn_open(struct store *st, const char **error_r)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/index.db", st->dir);
    struct store_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        store_fail(STORE_ERR_TEMP, error_r, "out of memory");
        return NULL;
    }
    c->st = st;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &c->db, flags, NULL) != SQLITE_OK) {
        store_fail(STORE_ERR_TEMP, error_r, "cannot open %s: %s", path,
                   c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
    /* synchronous=FULL everywhere: the commit thread needs it for
     * durability, and administrative writes should be durable too. */
    if (store_exec(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", error_r) < 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

void store_set_no_sync(struct store *st)
{
    atomic_store(&st->no_sync, true);
    if (st->wconn != NULL) /* the index thread's own connection, not in conns */
        sqlite3_exec(st->wconn->db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    pthread_mutex_lock(&st->conn_lock);
    for (struct store_conn *c = st->conns; c != NULL; c = c->next)
        sqlite3_exec(c->db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    pthread_mutex_unlock(&st->conn_lock);
    log_info(NULL, "event=store_no_sync msg=\"messages are not fsynced (capture mode)\"");
}

void store_set_blob_messages(struct store *st)
{
    st->blob_messages = true;
}

int store_set_file_pool(struct store *st)
{
    return store_pool_start(st);
}

static void conn_link(struct store *st, struct store_conn *c)
{
    pthread_mutex_lock(&st->conn_lock);
    c->prev = NULL;
    c->next = st->conns;
    if (st->conns)
        st->conns->prev = c;
    st->conns = c;
    pthread_mutex_unlock(&st->conn_lock);
}

/* Thread exit: close that thread's connection. */
static void conn_key_destroy(void *p)
{
    struct store_conn *c = p;
    struct store *st = c->st;
    pthread_mutex_lock(&st->conn_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        st->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&st->conn_lock);
    conn_free(c);
}

struct store_conn *store_conn_get(struct store *st)
{
    struct store_conn *c = pthread_getspecific(st->conn_key);
    if (c != NULL)
        return c;
    c = conn_open(st, NULL);
    if (c == NULL)
        return NULL;
    if (atomic_load(&st->no_sync))
        sqlite3_exec(c->db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    conn_link(st, c);
    pthread_setspecific(st->conn_key, c);
    return c;
}

/* ---- schema ---- */

static const char schema_v1[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE domains (name TEXT PRIMARY KEY COLLATE NOCASE, created INTEGER NOT NULL);"
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  address TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  domain TEXT NOT NULL COLLATE NOCASE,"
    "  password TEXT NOT NULL,"
    "  quota_bytes INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX accounts_domain ON accounts(domain);"
    "CREATE TABLE aliases ("
    "  source TEXT NOT NULL COLLATE NOCASE,"
    "  dest TEXT NOT NULL COLLATE NOCASE,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (source, dest));"
    "CREATE TABLE mailboxes ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  special_use TEXT,"
    "  subscribed INTEGER NOT NULL DEFAULT 1,"
    "  uidvalidity INTEGER NOT NULL,"
    "  uidnext INTEGER NOT NULL DEFAULT 1,"
    "  highestmodseq INTEGER NOT NULL DEFAULT 1,"
    "  UNIQUE (account_id, name));"
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,"
    "  uid INTEGER NOT NULL,"
    "  modseq INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  keywords TEXT NOT NULL DEFAULT '',"
    "  internaldate INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  file TEXT NOT NULL,"
    "  UNIQUE (mailbox_id, uid));"
    "CREATE INDEX messages_file ON messages(file);"
    "CREATE TABLE queue ("
    "  id TEXT PRIMARY KEY,"
    "  sender TEXT NOT NULL,"
    "  envid TEXT,"
    "  ret TEXT,"
    "  smtputf8 INTEGER NOT NULL DEFAULT 0,"
    "  body_8bit INTEGER NOT NULL DEFAULT 0,"
    "  submitter INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  next_attempt INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  file TEXT NOT NULL);"
    "CREATE INDEX queue_due ON queue(state, next_attempt);"
    "CREATE INDEX queue_file ON queue(file);"
    "CREATE TABLE queue_rcpt ("
    "  queue_id TEXT NOT NULL REFERENCES queue(id) ON DELETE CASCADE,"
    "  address TEXT NOT NULL,"
    "  orcpt TEXT,"
    "  notify INTEGER NOT NULL DEFAULT 0,"
    "  status TEXT NOT NULL DEFAULT 'pending',"
    "  last_error TEXT);"
    "CREATE INDEX queue_rcpt_queue ON queue_rcpt(queue_id);"
    "INSERT INTO meta(key, value) VALUES ('uidvalidity', 0);"
    "INSERT INTO schema_version(version) VALUES (1);";

static int schema_version(struct store_conn *c, int *version_r, const char **error_r)
{
    sqlite3_stmt *s;
    *version_r = 0;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "index");
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : store_fail_db(c, error_r, "index");
    if (sqlite3_prepare_v2(c->db, "SELECT max(version) FROM schema_version", -1, &s, NULL) !=
        SQLITE_OK)
        return store_fail_db(c, error_r, "index");
    if (sqlite3_step(s) == SQLITE_ROW)
        *version_r = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return 0;
}

/* Creates or checks the schema.  Future versions add migrations here,
 * each in its own transaction, keyed on schema_version. */
static int schema_init(struct store_conn *c, const char **error_r)
{
    if (store_begin(c, error_r) < 0)
        return -1;
    int version;
    if (schema_version(c, &version, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    if (version > STORE_SCHEMA_VERSION) {
        store_rollback(c);
        return store_fail(STORE_ERR_INTERNAL, error_r,
                          "index.db has schema version %d, newer than this postel (%d)", version,
                          STORE_SCHEMA_VERSION);
    }
    if (version == 0 && store_exec(c, schema_v1, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    /* Message contents kept in the index instead of files (capture mode,
     * store_set_blob_messages).  A blob goes with the last message row
     * that names it, whatever deletes the row. */
    if (store_exec(c,
                   "CREATE TABLE IF NOT EXISTS message_blobs("
                   "  file TEXT PRIMARY KEY, data BLOB NOT NULL);"
                   "CREATE TRIGGER IF NOT EXISTS message_blobs_gc AFTER DELETE ON messages"
                   "  WHEN NOT EXISTS (SELECT 1 FROM messages WHERE file = old.file)"
                   "  BEGIN DELETE FROM message_blobs WHERE file = old.file; END;",
                   error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    return store_commit(c, error_r);
}

/* ---- files ---- */

static int remove_tree_at(int parent_fd, const char *name, int depth)
{
    if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if ((errno != EISDIR && errno != EPERM) || depth > 8)
        return -1;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (remove_tree_at(dirfd(d), de->d_name, depth + 1) < 0)
            rc = -1;
    }
    closedir(d);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

int store_remove_tree(struct store *st, const char *rel)
{
    return remove_tree_at(st->dir_fd, rel, 0);
}

int store_sync_dir(struct store *st, const char *rel)
{
    int fd = openat(st->dir_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return store_fail_errno(e, NULL, rel);
    }
    close(fd);
    return 0;
}

int store_dirset_add(struct store_dirset *d, const char *path)
{
    char name[sizeof(*d->names)];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 || n >= sizeof(name))
        return 0;
    memcpy(name, path, n);
    name[n] = '\0';
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->names[i], name) == 0)
            return 0;
    if (d->n == d->alloc) {
        size_t alloc = d->alloc ? d->alloc * 2 : 16;
        void *p = realloc(d->names, alloc * sizeof(*d->names));
        if (p == NULL)
            return -1;
        d->names = p;
        d->alloc = alloc;
    }
    memcpy(d->names[d->n++], name, n + 1);
    return 0;
}

int store_dirset_sync(struct store *st, const struct store_dirset *d, const char **error_r)
{
    for (size_t i = 0; i < d->n; i++)
        if (store_sync_dir(st, d->names[i]) < 0)
            return store_fail_again(error_r);
    return 0;
}

void store_dirset_free(struct store_dirset *d)
{
    free(d->names);
    d->names = NULL;
    d->n = d->alloc = 0;
}

bool store_file_referenced(struct store_conn *c, enum store_stmt_id id, const char *rel)
{
    sqlite3_stmt *s = store_stmt(c, id);
    if (s == NULL)
        return true; /* when in doubt, keep */
    store_bind_text(s, 1, rel);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc != SQLITE_DONE;
}

/* Removes every entry of directory rel (relative to data_dir) for which
 * keep() is false.  Returns the number removed. */
static int sweep_dir(struct store *st, const char *rel,
                     bool (*keep)(struct store_conn *c, const char *path, void *arg),
                     struct store_conn *c, void *arg)
{
    int fd = openat(st->dir_fd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return 0;
    }
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[STORE_RELPATH_MAX + 256];
        snprintf(path, sizeof(path), "%s/%s", rel, de->d_name);
        if (keep != NULL && keep(c, path, arg))
            continue;
        if (remove_tree_at(dirfd(d), de->d_name, 0) == 0)
            removed++;
        else
            log_warn(NULL, "event=store_cleanup_failed path=%s error=%d", path, errno);
    }
    closedir(d);
    return removed;
}

static bool keep_message_file(struct store_conn *c, const char *path, void *arg)
{
    (void)arg;
    return store_file_referenced(c, STMT_MESSAGE_FILE_EXISTS, path);
}

static bool keep_queue_file(struct store_conn *c, const char *path, void *arg)
{
    (void)arg;
    return store_file_referenced(c, STMT_QUEUE_FILE_EXISTS, path);
}

/* mail/<account id>/: sweep unreferenced files of existing accounts;
 * remove whole directories of accounts that no longer exist. */
static bool keep_account_dir(struct store_conn *c, const char *path, void *arg)
{
    int *removed = arg;
    const char *name = path + strlen("mail/");
    char *end;
    long long id = strtoll(name, &end, 10);
    if (*name == '\0' || *end != '\0' || id <= 0)
        return true; /* not ours: leave it alone */
    sqlite3_stmt *s = store_stmt(c, STMT_ACCOUNT_ADDRESS_BY_ID);
    if (s == NULL)
        return true;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return false;
    *removed += sweep_dir(c->st, path, keep_message_file, c, NULL);
    return true;
}

/* Called only while this process holds the store lock exclusively: no
 * other process can have a transaction in flight. */
static void cleanup_orphans(struct store *st, struct store_conn *c)
{
    int tmp = sweep_dir(st, "tmp", NULL, c, NULL);
    int mail = 0;
    mail += sweep_dir(st, "mail", keep_account_dir, c, &mail);
    int queue = sweep_dir(st, "queue", keep_queue_file, c, NULL);
    if (tmp + mail + queue > 0)
        log_info(NULL, "event=store_cleanup tmp=%d mail=%d queue=%d", tmp, mail, queue);
}

/* Takes the store lock: exclusive (and then cleanup) when no other process
 * has the store open, else shared without waiting.  So a CLI command run
 * while the server runs skips the cleanup, and a server started while a
 * CLI command runs skips it too; leftovers are invisible (no index row)
 * and wait for the next start. */
static int store_lock(struct store *st, bool *exclusive_r, const char **error_r)
{
    st->lock_fd = openat(st->dir_fd, "store.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0)
        return store_fail_errno(errno, error_r, "store.lock");
    *exclusive_r = flock(st->lock_fd, LOCK_EX | LOCK_NB) == 0;
    if (*exclusive_r)
        return 0;
    if (errno != EWOULDBLOCK)
        return store_fail_errno(errno, error_r, "store.lock");
    if (flock(st->lock_fd, LOCK_SH) < 0)
        return store_fail_errno(errno, error_r, "store.lock");
    return 0;
}

/* "store.dirty" exists while some process has the store open: each
 * opener makes sure of it (durably, before any message file is written),
 * the last one to close removes it.  Found by an exclusive opener, it
 * means an unclean shutdown, and only then is the cleanup worth its scan
 * of every message file. */
#define DIRTY_MARKER "store.dirty"

static int dirty_mark(struct store *st, bool *was_dirty_r, const char **error_r)
{
    *was_dirty_r = faccessat(st->dir_fd, DIRTY_MARKER, F_OK, 0) == 0;
    if (*was_dirty_r)
        return 0;
    int fd = openat(st->dir_fd, DIRTY_MARKER, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return store_fail_errno(errno, error_r, DIRTY_MARKER);
    close(fd);
    if (fsync(st->dir_fd) < 0)
        return store_fail_errno(errno, error_r, st->dir);
    return 0;
}

/* Removes the marker if no other process has the store open. */
static void dirty_clear(struct store *st)
{
    if (st->lock_fd >= 0 && flock(st->lock_fd, LOCK_EX | LOCK_NB) == 0)
        unlinkat(st->dir_fd, DIRTY_MARKER, 0);
}

/* The sync mode (store_tx.c): parallel fsync by default; "syncfs" (one
 * syncfs() per batch) when POSTEL_STORE_SYNC=syncfs asks for it, data_dir
 * and its subdirectories share one file system, and syncfs() works. */
static void choose_sync_mode(struct store *st, bool same_fs)
{
    const char *mode = getenv("POSTEL_STORE_SYNC");
    st->use_syncfs = mode != NULL && strcmp(mode, "syncfs") == 0 && same_fs &&
                     syncfs(st->dir_fd) == 0;
    if (mode != NULL && strcmp(mode, "syncfs") == 0 && !st->use_syncfs)
        log_warn(NULL, "event=store_syncfs_unavailable fallback=fsync");
}

static int make_dirs(struct store *st, const char **error_r)
{
    static const char *const subdirs[] = { "mail", "queue", "tmp" };
    struct stat top, sub;
    if (fstat(st->dir_fd, &top) < 0)
        return store_fail_errno(errno, error_r, st->dir);
    bool same_fs = true;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        if (mkdirat(st->dir_fd, subdirs[i], 0700) < 0 && errno != EEXIST)
            return store_fail_errno(errno, error_r, subdirs[i]);
        if (fstatat(st->dir_fd, subdirs[i], &sub, 0) < 0)
            return store_fail_errno(errno, error_r, subdirs[i]);
        if (sub.st_dev != top.st_dev)
            same_fs = false; /* one syncfs() would not cover it */
    }
    if (fsync(st->dir_fd) < 0)
        return store_fail_errno(errno, error_r, st->dir);
    choose_sync_mode(st, same_fs);
    return 0;
}

static struct store *store_alloc(const char *data_dir)
{
    struct store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    str_copy(st->dir, data_dir, sizeof(st->dir));
    st->dir_fd = -1;
    st->lock_fd = -1;
    st->wal_fd = -1;
    st->pending_tail = &st->pending;
    st->synced_tail = &st->synced;
    st->dmarc_tail = &st->dmarc_q;
    pthread_mutex_init(&st->conn_lock, NULL);
    pthread_mutex_init(&st->start_lock, NULL);
    pthread_mutex_init(&st->q_lock, NULL);
    pthread_cond_init(&st->q_cond, NULL);
    pthread_cond_init(&st->synced_cond, NULL);
    pthread_cond_init(&st->stage_cond, NULL);
    pthread_cond_init(&st->ckpt_cond, NULL);
    if (pthread_key_create(&st->conn_key, conn_key_destroy) != 0) {
        free(st);
        return NULL;
    }
    return st;
}

static void store_free(struct store *st)
{
    pthread_mutex_lock(&st->conn_lock);
    while (st->conns != NULL) {
        struct store_conn *c = st->conns;
        st->conns = c->next;
        conn_free(c);
    }
    pthread_mutex_unlock(&st->conn_lock);
    pthread_setspecific(st->conn_key, NULL);
    pthread_key_delete(st->conn_key);
    if (st->wconn)
        conn_free(st->wconn);
    if (st->opened)
        dirty_clear(st);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    if (st->wal_fd >= 0)
        close(st->wal_fd);
    if (st->dir_fd >= 0)
        close(st->dir_fd);
    pthread_mutex_destroy(&st->conn_lock);
    pthread_mutex_destroy(&st->start_lock);
    pthread_mutex_destroy(&st->q_lock);
    pthread_cond_destroy(&st->q_cond);
    pthread_cond_destroy(&st->synced_cond);
    pthread_cond_destroy(&st->stage_cond);
    pthread_cond_destroy(&st->ckpt_cond);
    free(st);
}

static int store_open_steps(struct store *st, const char **error_r)
{
    if (mkdir_p(st->dir, 0700) < 0)
        return store_fail_errno(errno, error_r, st->dir);
    st->dir_fd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dir_fd < 0)
        return store_fail_errno(errno, error_r, st->dir);
    bool exclusive, dirty;
    if (store_lock(st, &exclusive, error_r) < 0 || make_dirs(st, error_r) < 0 ||
        dirty_mark(st, &dirty, error_r) < 0)
        return -1;
    st->wconn = conn_open(st, error_r);
    if (st->wconn == NULL)
        return -1;
    if (store_exec(st->wconn, "PRAGMA journal_mode=WAL", error_r) < 0 ||
        schema_init(st->wconn, error_r) < 0)
        return -1;
    if (exclusive) {
        if (dirty)
            cleanup_orphans(st, st->wconn);
        if (flock(st->lock_fd, LOCK_SH) < 0)
            return store_fail_errno(errno, error_r, "store.lock");
    }
    st->opened = true; /* threads start with the first transaction */
    return 0;
}

/* SQLite's memory statistics take a process-wide mutex on every
 * allocation, which the commit and reader threads would contend for.
 * Only possible before SQLite initializes; harmless if too late. */
static void sqlite_configure(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *store_open(const char *data_dir, const char **error_r)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqlite_configure);
    store_clear_error();
    if (strlen(data_dir) >= sizeof(((struct store *)0)->dir) - 32) {
        store_fail(STORE_ERR_INVALID, error_r, "data_dir too long");
        return NULL;
    }
    struct store *st = store_alloc(data_dir);
    if (st == NULL) {
        store_fail(STORE_ERR_TEMP, error_r, "out of memory");
        return NULL;
    }
    if (store_open_steps(st, error_r) < 0) {
        char saved[256];
        str_copy(saved, err_text, sizeof(saved));
        enum store_error kind = err_kind;
        store_commit_thread_stop(st);
        store_free(st);
        store_fail(kind, error_r, "%s", saved);
        return NULL;
    }
    return st;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    store_stage_stop(st); /* before the index thread, which drops its blobs */
    store_commit_thread_stop(st);
    store_pool_stop(st);
    if (st->dmarc_q != NULL)
        store_dmarc_flush(st); /* rows the index thread had not written */
    store_free(st);
}

/* An unnamed file under data_dir/tmp for a message being received before
 * it is stored (it vanishes when closed, so nothing is left on a crash). */
int store_spool_open(struct store *st)
{
    mkdirat(st->dir_fd, "tmp", 0700);
    return openat(st->dir_fd, "tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
}
