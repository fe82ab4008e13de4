/*
 * Staged messages: small local messages are durable in index.db first and
 * become files after their 250.
 *
 * A message file costs its own fdatasync() before the 250 (and its
 * directory entry another, or a file made ahead, store_pool.c); the index
 * commit costs one more, shared by the batch.  With staging on
 * (store_set_staging, the server outside capture mode) a local message of
 * at most STORE_STAGE_MAX bytes is written into message_blobs in the same
 * SQLite transaction as its row, so the batch's one WAL fsync makes message
 * and row durable together: the group commit covers the data too.
 *
 * The writer thread here then turns staged messages into their files,
 * behind the 250 and in passes, once new mail has paused for STAGE_QUIET_MS
 * (or the backlog passes half its bound): every file of a pass is written
 * under a temporary name and fdatasynced, then each is renamed into place
 * (never replacing a file of the right size already there; one of another
 * size can only be torn, and is replaced), each directory is fsynced once
 * for the names, and only then are the blobs dropped, by
 * the index thread inside its next commit (store_stage_write_queued).  So a
 * name never points at data that is not on disk, and a crash at any point
 * leaves each message as a blob, a file, or both, never neither.  A blob
 * whose message row is gone (expunged before its file was written) is
 * dropped and its file removed.  The thread runs at idle priority.
 *
 * Readers never wait: store_msg_open() falls back to the blob while the
 * file is not there yet, and IMAP COPY, which hard-links files, writes the
 * file first (store_stage_materialize).
 *
 * Bounded: a staged message is at most STORE_STAGE_MAX bytes, and while
 * STAGE_BACKLOG_MAX bytes wait to be written new messages go straight to
 * files again.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define STAGE_BACKLOG_MAX (128u * 1024 * 1024) /* bytes waiting to become files */
#define STAGE_BATCH       256                 /* files per pass */
#define STAGE_PASS_BYTES  (8u * 1024 * 1024)  /* read into memory per pass */
#define STAGE_QUIET_MS    100                 /* a pause in new mail that starts a pass */
#define STAGE_RETRY_MS    1000                /* after a failed pass */
#define STAGE_IDLE_MS     60000               /* a look with nothing to do */

struct store_stage_done {
    struct store_stage_done *next;
    char file[STORE_RELPATH_MAX];
};

bool store_stage_accepts(struct store *st, uint64_t size)
{
    return st->staging && size > 0 && size <= STORE_STAGE_MAX &&
           (uint64_t)atomic_load(&st->stage_bytes) + size <= STAGE_BACKLOG_MAX;
}

void store_stage_committed(struct store *st, uint64_t bytes)
{
    atomic_fetch_add(&st->stage_bytes, (int64_t)bytes);
    atomic_store(&st->stage_last_ms, now_mono_ms());
    if (atomic_exchange(&st->stage_kicked, true))
        return; /* the writer knows already */
    pthread_mutex_lock(&st->q_lock);
    pthread_cond_signal(&st->stage_cond);
    pthread_mutex_unlock(&st->q_lock);
}

static bool file_name_ok(const char *file)
{
    return strncmp(file, "mail/", 5) == 0 && strstr(file, "..") == NULL &&
           strlen(file) < STORE_RELPATH_MAX - 24;
}

/* mail/<account id>/... -> the account id, 0 if the name has none. */
static int64_t file_account(const char *file)
{
    char *end;
    long long id = strtoll(file + 5, &end, 10);
    return *end == '/' && id > 0 ? (int64_t)id : 0;
}

/* Writes data under a temporary name beside file (tmp gets the name),
 * fdatasynced when sync.  0, or -1 with errno (ENOENT: the account
 * directory is gone). */
static int write_tmp(struct store *st, const char *file, const void *data, size_t len, bool sync,
                     char tmp[STORE_RELPATH_MAX])
{
    char rnd[12];
    random_hex(rnd, 8);
    snprintf(tmp, STORE_RELPATH_MAX, "%s.t%s", file, rnd);
    int fd = openat(st->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    int rc = write_full(fd, data, len);
    if (rc == 0 && sync)
        rc = fdatasync(fd);
    int e = errno;
    close(fd);
    if (rc < 0)
        unlinkat(st->dir_fd, tmp, 0);
    errno = e;
    return rc;
}

/* Puts the durable temporary file tmp in place as file, which holds len
 * bytes.  A file already there of that size is the same message (written
 * by COPY, or by a pass before a crash) and is kept; one of another size
 * can only be a torn write, and is replaced.  0 or -1 (errno). */
static int place_file(struct store *st, const char *tmp, const char *file, size_t len)
{
    int rc = renameat2(st->dir_fd, tmp, st->dir_fd, file, RENAME_NOREPLACE);
    if (rc < 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* no RENAME_NOREPLACE here: a hard link refuses to replace too */
        rc = linkat(st->dir_fd, tmp, st->dir_fd, file, 0);
        if (rc == 0)
            unlinkat(st->dir_fd, tmp, 0);
    }
    if (rc == 0 || errno != EEXIST) {
        if (rc < 0) {
            int e = errno;
            unlinkat(st->dir_fd, tmp, 0);
            errno = e;
        }
        return rc;
    }
    struct stat sb;
    if (fstatat(st->dir_fd, file, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
        (uint64_t)sb.st_size == (uint64_t)len) {
        unlinkat(st->dir_fd, tmp, 0);
        return 0;
    }
    log_warn(NULL, "event=stage_file_replaced file=%s size=%lld want=%zu", file,
             (long long)sb.st_size, len);
    rc = renameat(st->dir_fd, tmp, st->dir_fd, file);
    if (rc < 0) {
        int e = errno;
        unlinkat(st->dir_fd, tmp, 0);
        errno = e;
    }
    return rc;
}

/* ---- the writer thread ---- */

struct stage_item {
    char file[STORE_RELPATH_MAX];
    char tmp[STORE_RELPATH_MAX];      /* written under this name, "" if not */
    char *data;
    size_t len;
    bool gone;                        /* its message and account were deleted */
};

/* Reads the next staged messages after rowid *after (at most STAGE_BATCH
 * or about STAGE_PASS_BYTES) into items, so no read transaction stays open
 * while files are written: a long reader would keep the WAL from being
 * checkpointed.  Returns the count, *more when some were left, -1 on error. */
static int stage_read(struct store_conn *c, int64_t *after, struct stage_item *items, bool *more)
{
    sqlite3_stmt *s = store_stmt_kept(c,
                                      "SELECT rowid, file, data FROM message_blobs"
                                      " WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                                      NULL);
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, *after);
    sqlite3_bind_int(s, 2, STAGE_BATCH + 1); /* one more tells whether more wait */
    int n = 0, rc;
    size_t bytes = 0;
    *more = false;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == STAGE_BATCH || bytes >= STAGE_PASS_BYTES) {
            *more = true;
            break;
        }
        const char *file = (const char *)sqlite3_column_text(s, 1);
        const void *data = sqlite3_column_blob(s, 2);
        size_t len = (size_t)sqlite3_column_bytes(s, 2);
        *after = sqlite3_column_int64(s, 0);
        if (file == NULL || !file_name_ok(file))
            continue; /* not a message of ours: left alone */
        struct stage_item *it = &items[n];
        it->data = malloc(len ? len : 1);
        if (it->data == NULL) {
            *more = true;
            break;
        }
        memcpy(it->data, data ? data : "", len);
        it->len = len;
        str_copy(it->file, file, sizeof(it->file));
        bytes += len;
        n++;
    }
    store_stmt_kept_done(c, s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        for (int i = 0; i < n; i++)
            free(items[i].data);
        return store_fail_db(c, NULL, "message blobs");
    }
    return n;
}

/* One pass: staged messages written as files, then made durable.  Returns the number handled (written, or dropped for
 * lack of a row) with their list in *done_r, or -1 when the pass failed
 * (nothing is dropped then); *more when more are waiting. */
static int stage_pass(struct store *st, struct store_stage_done **done_r, int64_t *after, bool *more)
{
    *done_r = NULL;
    *more = false;
    struct store_conn *c = store_conn_get(st);
    struct stage_item *items = calloc(STAGE_BATCH, sizeof(*items));
    int n_read = c && items ? stage_read(c, after, items, more) : -1;
    if (n_read < 0) {
        free(items);
        return -1;
    }
    /* 1: every file under a temporary name, its data fdatasynced (only our
     * own files: a syncfs() would wait for every dirty page of the file
     * system, whoever wrote it); 2: renamed into place; 3: each directory
     * synced once for the names.  A crash before 3 leaves temporary files
     * (removed at start) and the blobs; a name never points at data that
     * is not on disk. */
    bool sync = !atomic_load(&st->no_sync);
    struct store_stage_done *list = NULL;
    int n = 0, failed = 0;
    for (int i = 0; i < n_read; i++) {
        struct stage_item *it = &items[i];
        it->tmp[0] = '\0';
        int w = write_tmp(st, it->file, it->data, it->len, sync, it->tmp);
        if (w < 0 && errno == ENOENT && store_file_referenced(c, STMT_MESSAGE_FILE_EXISTS, it->file)) {
            const char *err;
            if (store_account_dir_create(st, file_account(it->file), &err) == 0)
                w = write_tmp(st, it->file, it->data, it->len, sync, it->tmp);
        }
        if (w < 0) {
            it->tmp[0] = '\0';
            if (errno == ENOENT && !store_file_referenced(c, STMT_MESSAGE_FILE_EXISTS, it->file))
                it->gone = true; /* account and message deleted: drop the blob */
            else {
                log_warn(NULL, "event=stage_write_failed file=%s error=\"%s\"", it->file,
                         strerror(errno));
                failed++;
            }
        }
        free(it->data);
        it->data = NULL;
    }
    struct store_dirset dirs = { 0 };
    bool synced = true;
    for (int i = 0; i < n_read; i++) {
        struct stage_item *it = &items[i];
        if (it->tmp[0] != '\0' && place_file(st, it->tmp, it->file, it->len) < 0) {
            log_warn(NULL, "event=stage_write_failed file=%s error=\"%s\"", it->file, strerror(errno));
            failed++;
            continue;
        }
        if (it->tmp[0] == '\0' && !it->gone)
            continue;
        struct store_stage_done *d = calloc(1, sizeof(*d));
        if (d == NULL) {
            failed++;
            continue;
        }
        str_copy(d->file, it->file, sizeof(d->file));
        d->next = list;
        list = d;
        n++;
        if (sync && it->tmp[0] != '\0' && store_dirset_add(&dirs, it->file) < 0)
            synced = false;
    }
    free(items);
    const char *err = "out of memory";
    if (synced && store_dirset_sync(st, &dirs, &err) < 0)
        synced = false;
    store_dirset_free(&dirs);
    if (!synced) {
        log_warn(NULL, "event=stage_sync_failed error=\"%s\"", err);
        while (list != NULL) {
            struct store_stage_done *next = list->next;
            free(list);
            list = next;
        }
        return -1;
    }
    *done_r = list;
    return failed > 0 && n == 0 ? -1 : n;
}

/* What waits to be written, from index.db (the running count drifts when
 * staged messages are expunged before their file is written). */
static void stage_recount(struct store *st)
{
    struct store_conn *c = store_conn_get(st);
    sqlite3_stmt *s = c ? store_stmt_kept(c, "SELECT coalesce(sum(length(data)), 0)"
                                             " FROM message_blobs", NULL)
                        : NULL;
    if (s == NULL)
        return;
    if (sqlite3_step(s) == SQLITE_ROW)
        atomic_store(&st->stage_bytes, sqlite3_column_int64(s, 0));
    store_stmt_kept_done(c, s);
}

static void wait_ms(struct store *st, uint64_t ms)
{
    cond_wait_ms(&st->stage_cond, &st->q_lock, ms);
}

static void *stage_main(void *arg)
{
    struct store *st = arg;
    /* background work: it runs when a core would otherwise idle */
    struct sched_param sp = { 0 };
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    int64_t after = 0; /* the pass's rowid cursor; 0 = from the start */
    bool retry = false, recount = true;
    pthread_mutex_lock(&st->q_lock);
    while (!st->stage_stop) {
        if (st->unstage_q != NULL || st->unstage_busy) {
            wait_ms(st, STAGE_QUIET_MS); /* the last pass's blobs not dropped yet */
            continue;
        }
        if (recount) {
            recount = false;
            pthread_mutex_unlock(&st->q_lock);
            stage_recount(st);
            pthread_mutex_lock(&st->q_lock);
            continue;
        }
        if (!atomic_load(&st->stage_kicked) && after == 0) {
            wait_ms(st, retry ? STAGE_RETRY_MS : STAGE_IDLE_MS);
            if (!atomic_load(&st->stage_kicked) && !retry)
                continue; /* nothing new; a failed pass is tried again */
        }
        /* yield to a burst of mail: write once it has paused, or when the
         * backlog grows large */
        uint64_t quiet = now_mono_ms() - atomic_load(&st->stage_last_ms);
        if (quiet < STAGE_QUIET_MS &&
            (uint64_t)atomic_load(&st->stage_bytes) < STAGE_BACKLOG_MAX / 2) {
            wait_ms(st, STAGE_QUIET_MS - quiet);
            continue;
        }
        if (st->stage_stop)
            break;
        atomic_store(&st->stage_kicked, false);
        pthread_mutex_unlock(&st->q_lock);
        struct store_stage_done *done;
        bool more;
        int n = stage_pass(st, &done, &after, &more);
        retry = n < 0;
        if (!more) {
            after = 0;      /* caught up: the next pass starts over */
            recount = true; /* once the blobs are dropped */
        }
        pthread_mutex_lock(&st->q_lock);
        if (done != NULL) {
            struct store_stage_done *last = done;
            while (last->next != NULL)
                last = last->next;
            last->next = st->unstage_q;
            if (st->unstage_q == NULL)
                st->unstage_since_ms = now_mono_ms();
            st->unstage_q = done;
            st->n_materialized += (uint64_t)n;
            pthread_cond_signal(&st->synced_cond); /* the index thread's timer */
        }
    }
    pthread_mutex_unlock(&st->q_lock);
    return NULL;
}

int store_set_staging(struct store *st)
{
    if (st->stage_started)
        return 0;
    st->staging = true;
    atomic_store(&st->stage_kicked, true); /* messages staged before a restart */
    const char *err;
    if (store_commit_thread_start(st, &err) < 0 ||
        pthread_create(&st->stage_thread, NULL, stage_main, st) != 0) {
        st->staging = false;
        return -1;
    }
    st->stage_started = true;
    return 0;
}

void store_stage_stop(struct store *st)
{
    if (!st->stage_started)
        return;
    pthread_mutex_lock(&st->q_lock);
    st->stage_stop = true;
    pthread_cond_broadcast(&st->stage_cond);
    pthread_mutex_unlock(&st->q_lock);
    pthread_join(st->stage_thread, NULL);
    st->stage_started = false;
}

/* ---- on the index thread ---- */

void store_stage_write_queued(struct store *st, struct store_conn *c)
{
    pthread_mutex_lock(&st->q_lock);
    struct store_stage_done *list = st->unstage_q;
    st->unstage_q = NULL;
    st->unstage_busy = list != NULL; /* until the caller commits */
    pthread_mutex_unlock(&st->q_lock);
    if (list == NULL)
        return;
    sqlite3_stmt *del = store_stmt_kept(c, "DELETE FROM message_blobs WHERE file = ?1", NULL);
    bool ok = del != NULL && store_stmt_run(c, STMT_SAVEPOINT) == 0;
    while (list != NULL) {
        struct store_stage_done *next = list->next;
        if (ok) {
            sqlite3_reset(del);
            store_bind_text(del, 1, list->file);
            if (sqlite3_step(del) != SQLITE_DONE) {
                store_fail_db(c, NULL, "message blob");
                ok = false;
            } else if (!store_file_referenced(c, STMT_MESSAGE_FILE_EXISTS, list->file)) {
                /* expunged before its file was written: nobody may have it */
                unlinkat(st->dir_fd, list->file, 0);
            }
        }
        free(list);
        list = next;
    }
    if (del != NULL)
        store_stmt_kept_done(c, del);
    if (!ok)
        log_warn(NULL, "event=stage_drop_failed error=\"%s\" msg=\"written again later\"",
                 store_error_text());
    store_stmt_run(c, ok ? STMT_RELEASE : STMT_ROLLBACK_TO);
    if (!ok)
        store_stmt_run(c, STMT_RELEASE);
}

void store_stage_drop_queued(struct store *st)
{
    pthread_mutex_lock(&st->q_lock);
    struct store_stage_done *list = st->unstage_q;
    st->unstage_q = NULL;
    pthread_cond_signal(&st->stage_cond);
    pthread_mutex_unlock(&st->q_lock);
    while (list != NULL) {
        struct store_stage_done *next = list->next;
        free(list);
        list = next;
    }
}

void store_stage_applied(struct store *st)
{
    if (!st->unstage_busy) /* only the committing thread sets it */
        return;
    pthread_mutex_lock(&st->q_lock);
    st->unstage_busy = false;
    pthread_cond_signal(&st->stage_cond);
    pthread_mutex_unlock(&st->q_lock);
}

/* ---- on demand ---- */

int store_stage_materialize(struct store *st, const char *file)
{
    if (!file_name_ok(file))
        return store_fail(STORE_ERR_INVALID, NULL, "bad message file name");
    if (faccessat(st->dir_fd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    struct store_conn *c = store_conn_get(st);
    sqlite3_stmt *s = c ? store_stmt(c, STMT_BLOB_GET) : NULL;
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, file);
    int rc = sqlite3_step(s), result;
    if (rc == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        bool sync = !atomic_load(&st->no_sync);
        char tmp[STORE_RELPATH_MAX];
        char dir[STORE_RELPATH_MAX];
        str_copy(dir, file, sizeof(dir));
        *strrchr(dir, '/') = '\0'; /* file_name_ok: "mail/..." */
        result = write_tmp(st, file, data ? data : "", len, sync, tmp) == 0 &&
                         place_file(st, tmp, file, len) == 0
                     ? 0
                     : store_fail_errno(errno, NULL, file);
        if (result == 0 && sync)
            result = store_sync_dir(st, dir);
    } else if (rc == SQLITE_DONE) {
        /* written meanwhile, or the message is gone */
        result = faccessat(st->dir_fd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0
                     ? 0
                     : store_fail(STORE_ERR_NOTFOUND, NULL, "message file %s is gone", file);
    } else {
        result = store_fail_db(c, NULL, "message blob");
    }
    sqlite3_reset(s);
    return result;
}

void store_stage_stats(struct store *st, uint64_t *waiting_bytes, uint64_t *written)
{
    *waiting_bytes = (uint64_t)atomic_load(&st->stage_bytes);
    pthread_mutex_lock(&st->q_lock);
    *written = st->n_materialized;
    pthread_mutex_unlock(&st->q_lock);
}
