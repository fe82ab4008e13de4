/*
 * Message transactions and the group-commit thread.
 *
 * store_tx_begin() opens the one file the caller's bytes go to:
 *   - local recipients only: the first copy's final message file
 *     mail/<account>/<id>, with its Return-Path and Delivered-To first;
 *   - remote recipients: the queue file queue/<id> (the message as
 *     received).
 * Further local copies are made from that file at commit (the data after
 * its prefix, behind their own prefix).  Nothing is ever written twice
 * under another name or deleted on success.
 * Files are written under their final names; until the index references
 * them they are invisible, and the start-up cleanup removes those that
 * never got a row (never acknowledged).
 *
 * store_tx_commit() queues the transaction; then two stages work on it:
 *   sync workers (STORE_SYNC_THREADS): a worker takes one transaction,
 *                 flushes and closes its files, makes the local copies,
 *                 fdatasync()s each file and fsync()s each directory it
 *                 added entries to.  Transactions are synced in parallel:
 *                 concurrent fsyncs share the device's cache flushes (and
 *                 a journaling file system's commits), and no unrelated
 *                 dirty data is ever waited for;
 *   index thread: one SQLite transaction (synchronous=FULL) for everything
 *                 synced so far: UIDs and modseqs, message and queue rows,
 *                 a savepoint per transaction so one failure does not
 *                 sink the others; then each done() callback.
 * A success callback thus always follows both the data's and the index's
 * flush; the index flush is shared by every message of a batch.
 *
 * Sync mode "syncfs" (POSTEL_STORE_SYNC=syncfs, see store.c) instead
 * has a worker take every pending transaction and make the whole batch
 * durable with one syncfs() of data_dir.  Measured on ext4 with 20
 * concurrent submitters it was ~1.4x slower than parallel fsync, and it
 * collapsed (5x) while another process wrote a large file to the same
 * file system, since syncfs() flushes everybody's dirty data.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store_imap.h"

#define CKPT_PAGES 2048               /* WAL pages (8 MB) that start a checkpoint */
#define WAL_CHUNK  (1u << 20)         /* zeros written ahead of the WAL's end */

enum tx_kind {
    TX_LOCAL,                         /* the spool is copies[0]'s file */
    TX_QUEUE                          /* the spool is queue/<id> */
};

struct tx_copy {                      /* one local delivery */
    int64_t account_id;
    char *mailbox;
    char *rcpt;                       /* for Delivered-To */
    char path[STORE_RELPATH_MAX];
    uint64_t size;                    /* file size, prefix included */
    bool created;                     /* we made path (and may remove it) */
};

struct tx_remote {                    /* one queued recipient */
    char *address, *orcpt;
    unsigned notify;
};

struct store_tx {
    struct store *st;
    struct store_tx *next;            /* pending list / batch */
    char id[24];
    char *sender, *envid, *ret;
    bool smtputf8, body_8bit;
    int64_t submitter;
    struct tx_copy *copies;
    size_t n_copies;
    struct tx_remote *remotes;
    size_t n_remotes;

    enum tx_kind kind;
    int fd;                           /* the file store_tx_write fills */
    char spool[STORE_RELPATH_MAX];
    bool spool_created;
    bool spool_dir_synced;            /* from the pool: its entry is durable */
    bool in_memory;                   /* the message is kept in buf, copies go to index.db */
    bool staged;                      /* in_memory, to be written out as files later */
    uint64_t prefix_len, data_len;   /* data starts at prefix_len in the spool */
    char *buf;                        /* write buffer; the whole message when in_memory */
    size_t buf_len, buf_cap;
    int wr_errno;                     /* first write error, 0 if none */

    bool failed;
    char error[200];
    store_tx_done_fn *done;
    void *arg;
};

/* ---- building a transaction ---- */

static void tx_free(struct store_tx *tx)
{
    if (tx->fd >= 0)
        close(tx->fd);
    for (size_t i = 0; i < tx->n_copies; i++) {
        free(tx->copies[i].mailbox);
        free(tx->copies[i].rcpt);
    }
    for (size_t i = 0; i < tx->n_remotes; i++) {
        free(tx->remotes[i].address);
        free(tx->remotes[i].orcpt);
    }
    free(tx->copies);
    free(tx->remotes);
    free(tx->sender);
    free(tx->envid);
    free(tx->ret);
    free(tx->buf);
    free(tx);
}

/* Closes and removes every file the transaction created. */
static void tx_remove_files(struct store_tx *tx)
{
    if (tx->fd >= 0) {
        close(tx->fd);
        tx->fd = -1;
    }
    int dfd = tx->st->dir_fd;
    if (tx->in_memory)
        return; /* nothing was made on disk */
    if (tx->spool_created)
        unlinkat(dfd, tx->spool, 0);
    for (size_t i = 0; i < tx->n_copies; i++)
        if (tx->copies[i].created)
            unlinkat(dfd, tx->copies[i].path, 0);
    tx->spool_created = false;
}

static void tx_fail(struct store_tx *tx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tx_fail(struct store_tx *tx, const char *fmt, ...)
{
    if (tx->failed)
        return; /* keep the first reason */
    tx->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tx->error, sizeof(tx->error), fmt, ap);
    va_end(ap);
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

static bool header_safe(const char *s, size_t max)
{
    return s != NULL && strlen(s) <= max && !str_has_ctl(s);
}

static int tx_add_local(struct store_tx *tx, const struct store_tx_rcpt *r, bool *oom)
{
    const char *mbox = r->mailbox && r->mailbox[0] ? r->mailbox : "INBOX";
    if (strcasecmp(mbox, "INBOX") == 0)
        mbox = "INBOX";
    for (size_t i = 0; i < tx->n_copies; i++)
        if (tx->copies[i].account_id == r->target->account_id &&
            strcmp(tx->copies[i].mailbox, mbox) == 0)
            return 0;
    struct tx_copy *c = &tx->copies[tx->n_copies++];
    c->account_id = r->target->account_id;
    c->mailbox = dup_or_null(mbox, oom);
    c->rcpt = dup_or_null(r->address, oom);
    return 0;
}

/* A queued recipient keeps its DSN ORCPT (RFC 3461 4.2); when an alias
 * rewrote it and the client gave none, the address it was sent to. */
static int tx_add_remote(struct store_tx *tx, const struct store_tx_rcpt *r, bool *oom)
{
    for (size_t i = 0; i < tx->n_remotes; i++)
        if (strcasecmp(tx->remotes[i].address, r->target->address) == 0)
            return 0;
    struct tx_remote *q = &tx->remotes[tx->n_remotes++];
    q->address = dup_or_null(r->target->address, oom);
    q->notify = r->notify;
    if (r->orcpt != NULL) {
        q->orcpt = dup_or_null(r->orcpt, oom);
    } else if (strcasecmp(r->address, r->target->address) != 0) {
        char o[ADDRESS_MAX + 8];
        snprintf(o, sizeof(o), "rfc822;%s", r->address);
        q->orcpt = dup_or_null(o, oom);
    }
    return 0;
}

static int tx_add_rcpts(struct store_tx *tx, const struct store_envelope *env,
                        const char **error_r)
{
    bool oom = false;
    tx->copies = calloc(env->n_rcpts, sizeof(*tx->copies));
    tx->remotes = calloc(env->n_rcpts, sizeof(*tx->remotes));
    if (tx->copies == NULL || tx->remotes == NULL)
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    for (size_t i = 0; i < env->n_rcpts; i++) {
        const struct store_tx_rcpt *r = &env->rcpts[i];
        if (r->target == NULL || !header_safe(r->address, SMTP_PATH_MAX) ||
            (r->orcpt != NULL && !header_safe(r->orcpt, 500)))
            return store_fail(STORE_ERR_INVALID, error_r, "bad recipient %zu", i);
        if (r->target->kind == STORE_RCPT_LOCAL && r->target->account_id > 0)
            tx_add_local(tx, r, &oom);
        else if (r->target->kind == STORE_RCPT_REMOTE && r->target->address[0] != '\0')
            tx_add_remote(tx, r, &oom);
        else
            return store_fail(STORE_ERR_INVALID, error_r, "bad recipient target %zu", i);
    }
    if (oom)
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    return 0;
}

/* Opens the file the data goes to under a fresh id (O_EXCL: an id is never
 * reused while its file exists). */
static int tx_open_spool(struct store_tx *tx, uint64_t size_hint, const char **error_r)
{
    struct store *st = tx->st;
    tx->kind = tx->n_remotes > 0 ? TX_QUEUE : TX_LOCAL;
    char dir[STORE_RELPATH_MAX - STORE_ID_LEN - 8];
    if (tx->kind == TX_LOCAL)
        snprintf(dir, sizeof(dir), "mail/%lld", (long long)tx->copies[0].account_id);
    else
        str_copy(dir, "queue", sizeof(dir));
    if (tx->kind == TX_LOCAL &&
        (st->blob_messages || store_stage_accepts(st, size_hint * tx->n_copies))) {
        /* the content goes into index.db at commit (capture mode keeps it
         * there; staged messages become files after the 250, store_stage.c);
         * until then it lives in buf */
        random_hex(tx->id, STORE_ID_LEN);
        snprintf(tx->spool, sizeof(tx->spool), "%s/%s", dir, tx->id);
        tx->in_memory = true;
        tx->staged = !st->blob_messages;
        return 0;
    }
    tx->fd = store_pool_take(st, dir, tx->kind == TX_LOCAL ? tx->copies[0].account_id : 0, tx->id);
    if (tx->fd >= 0) {
        snprintf(tx->spool, sizeof(tx->spool), "%s/%s", dir, tx->id);
        tx->spool_created = tx->spool_dir_synced = true;
        return 0;
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        random_hex(tx->id, STORE_ID_LEN);
        snprintf(tx->spool, sizeof(tx->spool), "%s/%s", dir, tx->id);
        tx->fd = openat(st->dir_fd, tx->spool, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (tx->fd >= 0) {
            tx->spool_created = true;
            return 0;
        }
        if (errno == ENOENT && tx->kind == TX_LOCAL) {
            if (store_account_dir_create(st, tx->copies[0].account_id, error_r) < 0)
                return -1;
            continue;
        }
        if (errno != EEXIST)
            return store_fail_errno(errno, error_r, tx->spool);
    }
    return store_fail(STORE_ERR_TEMP, error_r, "cannot create a message file");
}

/* "Return-Path: <sender>" (RFC 5321 4.4) and "Delivered-To: rcpt". */
static size_t local_prefix(char *buf, size_t size, const char *sender, const char *rcpt)
{
    int n = snprintf(buf, size, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", sender, rcpt);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

struct store_tx *store_tx_begin(struct store *st, const struct store_envelope *env,
                                const char **error_r)
{
    store_clear_error();
    if (!__atomic_load_n(&st->threads_ready, __ATOMIC_ACQUIRE) &&
        store_commit_thread_start(st, error_r) < 0)
        return NULL;
    if (env->n_rcpts == 0 || env->rcpts == NULL) {
        store_fail(STORE_ERR_INVALID, error_r, "no recipients");
        return NULL;
    }
    if (!header_safe(env->sender, SMTP_PATH_MAX) || (env->envid && !header_safe(env->envid, 100)) ||
        (env->ret && !header_safe(env->ret, 4))) {
        store_fail(STORE_ERR_INVALID, error_r, "bad envelope");
        return NULL;
    }
    struct store_tx *tx = calloc(1, sizeof(*tx));
    if (tx == NULL) {
        store_fail(STORE_ERR_TEMP, error_r, "out of memory");
        return NULL;
    }
    tx->st = st;
    tx->fd = -1;
    bool oom = false;
    tx->sender = dup_or_null(env->sender, &oom);
    tx->envid = dup_or_null(env->envid, &oom);
    tx->ret = dup_or_null(env->ret, &oom);
    tx->smtputf8 = env->smtputf8;
    tx->body_8bit = env->body_8bit;
    tx->submitter = env->submitter_account;
    if (oom) {
        store_fail(STORE_ERR_TEMP, error_r, "out of memory");
        tx_free(tx);
        return NULL;
    }
    if (tx_add_rcpts(tx, env, error_r) < 0 || tx_open_spool(tx, env->size_hint, error_r) < 0) {
        tx_remove_files(tx);
        tx_free(tx);
        return NULL;
    }
    tx->buf_cap = STORE_TX_BUF;
    if (tx->in_memory && env->size_hint > 0 && env->size_hint < STORE_TX_BUF * 16)
        tx->buf_cap = (size_t)env->size_hint + 2 * ADDRESS_MAX + 64; /* sized once */
    tx->buf = malloc(tx->buf_cap);
    if (tx->buf == NULL) {
        store_fail(STORE_ERR_TEMP, error_r, "out of memory");
        tx_remove_files(tx);
        tx_free(tx);
        return NULL;
    }
    size_t first = 0;
    if (tx->kind == TX_LOCAL) {
        struct tx_copy *c = &tx->copies[0];
        str_copy(c->path, tx->spool, sizeof(c->path));
        tx->prefix_len = tx->buf_len = local_prefix(tx->buf, tx->buf_cap, tx->sender, c->rcpt);
        first = 1;
    }
    for (size_t i = first; i < tx->n_copies; i++)
        snprintf(tx->copies[i].path, sizeof(tx->copies[i].path), "mail/%lld/%s.%zu",
                 (long long)tx->copies[i].account_id, tx->id, i);
    return tx;
}

/* ---- writing ---- */

static int tx_flush(struct store_tx *tx)
{
    if (tx->in_memory)
        return 0; /* buf is the message */
    if (tx->buf_len > 0 && write_full(tx->fd, tx->buf, tx->buf_len) < 0) {
        tx->wr_errno = errno;
        return -1;
    }
    tx->buf_len = 0;
    return 0;
}

/* An in-memory message grows its buffer (capture mode takes any size up to
 * the SMTP limit; a staged message was sized by its hint). */
static int tx_grow(struct store_tx *tx, size_t len)
{
    size_t need = tx->buf_len + len;
    if (need < tx->buf_len || need > (size_t)INT32_MAX)
        return store_fail(STORE_ERR_TEMP, NULL, "message too large for the index");
    if (need <= tx->buf_cap)
        return 0;
    size_t cap = tx->buf_cap * 2 > need ? tx->buf_cap * 2 : need;
    char *p = realloc(tx->buf, cap);
    if (p == NULL)
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    tx->buf = p;
    tx->buf_cap = cap;
    return 0;
}

int store_tx_write(struct store_tx *tx, const void *data, size_t len)
{
    if (tx->in_memory) {
        if (tx_grow(tx, len) < 0) {
            tx->wr_errno = ENOMEM;
            return -1;
        }
        memcpy(tx->buf + tx->buf_len, data, len);
        tx->buf_len += len;
        tx->data_len += len;
        return 0;
    }
    if (tx->wr_errno == 0 && tx->buf_len + len > tx->buf_cap && tx_flush(tx) == 0 &&
        len >= tx->buf_cap) {
        if (write_full(tx->fd, data, len) == 0) {
            tx->data_len += len;
            return 0;
        }
        tx->wr_errno = errno;
    }
    if (tx->wr_errno != 0)
        return store_fail_errno(tx->wr_errno, NULL, "message write");
    memcpy(tx->buf + tx->buf_len, data, len);
    tx->buf_len += len;
    tx->data_len += len;
    return 0;
}

void store_tx_abort(struct store_tx *tx)
{
    if (tx == NULL)
        return;
    tx_remove_files(tx);
    tx_free(tx);
}

/* Each copy's size when the message is kept in memory. */
static void tx_sizes_in_memory(struct store_tx *tx)
{
    for (size_t i = 0; i < tx->n_copies; i++) {
        char prefix[2 * ADDRESS_MAX + 64];
        tx->copies[i].size = i == 0 ? tx->prefix_len + tx->data_len
                                    : local_prefix(prefix, sizeof(prefix), tx->sender,
                                                   tx->copies[i].rcpt) + tx->data_len;
    }
}

void store_tx_commit(struct store_tx *tx, store_tx_done_fn *done, void *arg)
{
    struct store *st = tx->st;
    tx->done = done;
    tx->arg = arg;
    tx->next = NULL;
    pthread_mutex_lock(&st->q_lock);
    if (tx->in_memory && tx->wr_errno == 0) {
        /* no file to sync: straight to the index thread's next batch */
        tx_sizes_in_memory(tx);
        *st->synced_tail = tx;
        st->synced_tail = &tx->next;
        if (!st->indexing)
            pthread_cond_signal(&st->synced_cond);
    } else {
        *st->pending_tail = tx;
        st->pending_tail = &tx->next;
        pthread_cond_signal(&st->q_cond);
    }
    pthread_mutex_unlock(&st->q_lock);
}

/* ---- sync thread: files ---- */

/* Copies len bytes of in, from offset start, to out's current position. */
static int copy_data(int in, uint64_t start, int out, uint64_t len, char *buf, size_t buf_size)
{
    loff_t off = (loff_t)start;
    uint64_t end = start + len;
    bool kernel_copy = true;
    while ((uint64_t)off < end) {
        size_t want = (size_t)(end - (uint64_t)off);
        ssize_t n;
        if (kernel_copy) {
            n = copy_file_range(in, &off, out, NULL, want, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                          errno == EOPNOTSUPP)) {
                kernel_copy = false;
                continue;
            }
        } else {
            n = pread(in, buf, want < buf_size ? want : buf_size, off);
            if (n > 0 && write_full(out, buf, (size_t)n) < 0)
                return -1;
            if (n > 0)
                off += n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO; /* the spool file is shorter than written */
            return -1;
        }
    }
    return 0;
}

static int tx_make_copy(struct store_tx *tx, struct tx_copy *c, struct store_dirset *dirs)
{
    struct store *st = tx->st;
    int out = openat(st->dir_fd, c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0 && errno == ENOENT) {
        const char *err;
        if (store_account_dir_create(st, c->account_id, &err) < 0) {
            tx_fail(tx, "%s", err);
            return -1;
        }
        out = openat(st->dir_fd, c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (out < 0) {
        tx_fail(tx, "%s: %s", c->path, strerror(errno));
        return -1;
    }
    c->created = true;
    char prefix[2 * ADDRESS_MAX + 64];
    size_t plen = local_prefix(prefix, sizeof(prefix), tx->sender, c->rcpt);
    int rc = write_full(out, prefix, plen);
    if (rc == 0)
        rc = copy_data(tx->fd, tx->prefix_len, out, tx->data_len, tx->buf, tx->buf_cap);
    bool sync = !st->use_syncfs && !atomic_load(&st->no_sync);
    if (rc == 0 && sync)
        rc = fdatasync(out); /* the size changed: the inode is written too */
    if (rc < 0)
        tx_fail(tx, "%s: %s", c->path, strerror(errno));
    close(out);
    c->size = plen + tx->data_len;
    if (rc == 0 && sync && store_dirset_add(dirs, c->path) < 0) {
        tx_fail(tx, "out of memory");
        return -1;
    }
    return rc;
}

/* Sync stage for one transaction: its files complete and closed (and, without
 * syncfs, each fsynced).  0 or -1 (tx failed). */
static int tx_finish_files(struct store_tx *tx, struct store_dirset *dirs)
{
    struct store *st = tx->st;
    if (tx->wr_errno == 0)
        tx_flush(tx);
    if (tx->wr_errno != 0) {
        tx_fail(tx, "message write: %s", strerror(tx->wr_errno));
        return -1;
    }
    /* (an in-memory transaction gets here only with a write error:
     * store_tx_commit hands the others straight to the index thread) */
    if (!st->use_syncfs && !atomic_load(&st->no_sync)) {
        if (fdatasync(tx->fd) < 0 || (!tx->spool_dir_synced && store_dirset_add(dirs, tx->spool) < 0)) {
            tx_fail(tx, "%s: %s", tx->spool, strerror(errno));
            return -1;
        }
    }
    size_t first = 0;
    if (tx->kind == TX_LOCAL) {
        tx->copies[0].size = tx->prefix_len + tx->data_len;
        first = 1;
    }
    for (size_t i = first; i < tx->n_copies; i++)
        if (tx_make_copy(tx, &tx->copies[i], dirs) < 0)
            return -1;
    close(tx->fd);
    tx->fd = -1;
    return 0;
}

/* One syncfs() for the whole batch in mode syncfs; else each directory
 * once (the files were fdatasynced by tx_finish_files). */
static int batch_sync(struct store *st, struct store_dirset *dirs, const char **error_r)
{
    if (atomic_load(&st->no_sync))
        return 0;
    if (st->use_syncfs)
        return syncfs(st->dir_fd) == 0 ? 0 : store_fail_errno(errno, error_r, "syncfs");
    return store_dirset_sync(st, dirs, error_r);
}

/* ---- index thread ---- */

/* UID and modseq for one copy; falls back to INBOX when the target
 * mailbox is gone.  0 or -1. */
static int copy_assign_uid(struct store_conn *c, struct tx_copy *cp, int64_t *mbox_r,
                           int64_t *uid_r, int64_t *modseq_r)
{
    const char *names[2] = { cp->mailbox, "INBOX" };
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *s = store_stmt(c, STMT_MAILBOX_BUMP);
        if (s == NULL)
            return -1;
        sqlite3_bind_int64(s, 1, cp->account_id);
        store_bind_text(s, 2, names[i]);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *mbox_r = sqlite3_column_int64(s, 0);
            *uid_r = sqlite3_column_int64(s, 1);
            *modseq_r = sqlite3_column_int64(s, 2);
            while (rc == SQLITE_ROW)
                rc = sqlite3_step(s);
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_fail_db(c, NULL, "mailbox");
        if (*mbox_r > 0)
            return 0;
    }
    return store_fail(STORE_ERR_NOTFOUND, NULL, "account %lld has no mailbox",
                      (long long)cp->account_id);
}

/* Blob mode: copy i's content (its prefix, then the data) into index.db
 * under its file name.  0 or -1. */
static int blob_insert(struct store_conn *c, struct store_tx *tx, size_t i)
{
    struct tx_copy *cp = &tx->copies[i];
    size_t len = (size_t)cp->size;
    if (len > (size_t)INT32_MAX)
        return store_fail(STORE_ERR_TEMP, NULL, "message too large for the index");
    char *copy = NULL;
    const char *data = tx->buf; /* copy 0: the buffer, its prefix included */
    if (i > 0) {
        /* another recipient: its own prefix before the same data */
        char prefix[2 * ADDRESS_MAX + 64];
        size_t plen = local_prefix(prefix, sizeof(prefix), tx->sender, cp->rcpt);
        copy = malloc(len ? len : 1);
        if (copy == NULL)
            return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
        memcpy(copy, prefix, plen);
        memcpy(copy + plen, tx->buf + tx->prefix_len, len - plen);
        data = copy;
    }
    sqlite3_stmt *s = store_stmt(c, STMT_BLOB_INSERT);
    if (s == NULL) {
        free(copy);
        return -1;
    }
    store_bind_text(s, 1, cp->path);
    sqlite3_bind_blob(s, 2, data, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    free(copy);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "message blob");
}

static int copy_index(struct store_conn *c, struct tx_copy *cp, int64_t now)
{
    int64_t mbox = 0, uid = 0, modseq = 0;
    if (copy_assign_uid(c, cp, &mbox, &uid, &modseq) < 0)
        return -1;
    sqlite3_stmt *s = store_stmt(c, STMT_MESSAGE_INSERT);
    if (s == NULL)
        return -1;
    sqlite3_bind_int64(s, 1, mbox);
    sqlite3_bind_int64(s, 2, uid);
    sqlite3_bind_int64(s, 3, modseq);
    sqlite3_bind_int64(s, 4, now);
    sqlite3_bind_int64(s, 5, (int64_t)cp->size);
    store_bind_text(s, 6, cp->path);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "message");
}

static int queue_index(struct store_conn *c, struct store_tx *tx, int64_t now)
{
    sqlite3_stmt *s = store_stmt(c, STMT_QUEUE_INSERT);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, tx->id);
    store_bind_text(s, 2, tx->sender);
    store_bind_text(s, 3, tx->envid);
    store_bind_text(s, 4, tx->ret);
    sqlite3_bind_int(s, 5, tx->smtputf8);
    sqlite3_bind_int(s, 6, tx->body_8bit);
    sqlite3_bind_int64(s, 7, tx->submitter);
    sqlite3_bind_int64(s, 8, now);
    sqlite3_bind_int64(s, 9, (int64_t)tx->data_len);
    store_bind_text(s, 10, tx->spool);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, NULL, "queue");
    for (size_t i = 0; i < tx->n_remotes; i++) {
        s = store_stmt(c, STMT_QUEUE_RCPT_INSERT);
        if (s == NULL)
            return -1;
        store_bind_text(s, 1, tx->id);
        store_bind_text(s, 2, tx->remotes[i].address);
        store_bind_text(s, 3, tx->remotes[i].orcpt);
        sqlite3_bind_int(s, 4, (int)tx->remotes[i].notify);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return store_fail_db(c, NULL, "queue");
    }
    return 0;
}

static int tx_index(struct store_conn *c, struct store_tx *tx, int64_t now)
{
    for (size_t i = 0; i < tx->n_copies; i++)
        if (copy_index(c, &tx->copies[i], now) < 0 || (tx->in_memory && blob_insert(c, tx, i) < 0))
            return -1;
    return tx->n_remotes > 0 ? queue_index(c, tx, now) : 0;
}

/* Writes zeros past the end of index.db-wal, so that the WAL's appends
 * land on blocks the file system has already allocated and written: an
 * fdatasync() then flushes the data alone, where an append also has to
 * write the inode and allocation (measured on ext4: ~100 us of the ~210 a
 * commit's flush took).  Runs inside the index thread's transaction, so
 * no other writer (a CLI command) appends meanwhile, and writes only past
 * the file's current size, which SQLite never reads: a WAL's valid frames
 * are found by their checksums, never by the file's length. */
static void wal_extend(struct store *st)
{
    st->wal_want_extend = false;
    if (atomic_load(&st->no_sync))
        return;
    if (st->wal_fd == -1) {
        st->wal_fd = openat(st->dir_fd, "index.db-wal", O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (st->wal_fd < 0) {
            st->wal_fd = -2; /* not there (or not ours): never tried again */
            return;
        }
    }
    if (st->wal_fd < 0)
        return;
    struct stat sb;
    if (fstat(st->wal_fd, &sb) < 0)
        return;
    uint64_t size = (uint64_t)sb.st_size;
    uint64_t target = (size > st->wal_end ? size : st->wal_end) + WAL_CHUNK;
    target -= target % WAL_CHUNK;
    static const char zeros[64 * 1024];
    for (uint64_t off = size; off < target; off += sizeof(zeros)) {
        size_t n = target - off < sizeof(zeros) ? (size_t)(target - off) : sizeof(zeros);
        if (pwrite(st->wal_fd, zeros, n, (off_t)off) != (ssize_t)n) {
            log_warn(NULL, "event=wal_extend_failed error=\"%s\"", strerror(errno));
            if (ftruncate(st->wal_fd, (off_t)size) < 0) { /* as it was */ }
            st->wal_fd = -2;
            return;
        }
    }
    st->wal_end = target;
    log_debug(NULL, "event=wal_extended bytes=%llu", (unsigned long long)target);
}

/* The index thread's SQLite transaction, a savepoint per tx. */
static void batch_index(struct store *st, struct store_tx *batch)
{
    struct store_conn *c = st->wconn;
    const char *err;
    if (store_begin(c, &err) < 0) {
        for (struct store_tx *tx = batch; tx; tx = tx->next)
            tx_fail(tx, "%s", err);
        return;
    }
    if (st->wal_want_extend)
        wal_extend(st); /* the write lock is ours now */
    int64_t now = store_now();
    /* DMARC rows queued meanwhile ride along once due (or many): not in
     * every commit, where their pages would add to each flush */
    pthread_mutex_lock(&st->q_lock);
    bool dmarc_due = st->dmarc_q != NULL &&
                     (st->dmarc_n >= DMARC_BATCH_ROWS ||
                      now_mono_ms() >= st->dmarc_since_ms + DMARC_PENDING_MS);
    pthread_mutex_unlock(&st->q_lock);
    if (dmarc_due)
        store_dmarc_write_queued(st, c, true);
    store_stage_write_queued(st, c);       /* and blobs written out as files */
    for (struct store_tx *tx = batch; tx; tx = tx->next) {
        if (tx->failed)
            continue;
        if (store_stmt_run(c, STMT_SAVEPOINT) < 0) {
            tx_fail(tx, "%s", store_error_text());
            continue;
        }
        if (tx_index(c, tx, now) < 0) {
            tx_fail(tx, "%s", store_error_text());
            store_stmt_run(c, STMT_ROLLBACK_TO);
        }
        store_stmt_run(c, STMT_RELEASE);
    }
    if (store_commit(c, &err) < 0)
        for (struct store_tx *tx = batch; tx; tx = tx->next)
            tx_fail(tx, "%s", err);
    store_stage_applied(st);
}

/* The callback, and the single free path of a committed transaction. */
static void tx_complete(struct store_tx *tx)
{
    if (tx->failed) {
        log_warn(NULL, "event=store_commit_failed id=%s error=\"%s\"", tx->id, tx->error);
        tx_remove_files(tx);
    }
    if (!tx->failed) {
        /* IDLE and other sessions of the recipients learn of the new mail */
        uint64_t bytes = 0;
        for (size_t i = 0; i < tx->n_copies; i++) {
            store_imap_notify(tx->st, tx->copies[i].account_id);
            bytes += tx->copies[i].size;
        }
        if (tx->staged)
            store_stage_committed(tx->st, bytes);
    }
    if (tx->done != NULL) {
        if (tx->failed)
            tx->done(tx->arg, -1, NULL, tx->error);
        else
            tx->done(tx->arg, 0, tx->id, NULL);
    }
    tx_free(tx);
}

/* Sync stage for one batch (one transaction unless in mode syncfs):
 * files complete, then durable. */
static void batch_sync_files(struct store *st, struct store_tx *batch)
{
    struct store_dirset dirs = { 0 };
    size_t ok = 0;
    for (struct store_tx *tx = batch; tx; tx = tx->next)
        if (tx_finish_files(tx, &dirs) == 0)
            ok++;
    const char *err;
    if (ok > 0 && batch_sync(st, &dirs, &err) < 0)
        for (struct store_tx *tx = batch; tx; tx = tx->next)
            tx_fail(tx, "%s", err);
    store_dirset_free(&dirs);
}

static struct store_tx *list_last(struct store_tx *tx)
{
    while (tx->next != NULL)
        tx = tx->next;
    return tx;
}

/* Takes what a sync worker handles next: one transaction, or in mode
 * syncfs all that are pending.  Called with q_lock held. */
static struct store_tx *take_pending(struct store *st)
{
    struct store_tx *batch = st->pending;
    if (st->use_syncfs || batch->next == NULL) {
        st->pending = NULL;
        st->pending_tail = &st->pending;
    } else {
        st->pending = batch->next;
        batch->next = NULL;
    }
    return batch;
}

static void index_drain_locked(struct store *st);

static void *sync_main(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->q_lock);
    for (;;) {
        while (st->pending == NULL && !st->stopping)
            pthread_cond_wait(&st->q_cond, &st->q_lock);
        if (st->pending == NULL)
            break; /* stopping, and everything queued is taken */
        struct store_tx *batch = take_pending(st);
        pthread_mutex_unlock(&st->q_lock);
        batch_sync_files(st, batch);
        pthread_mutex_lock(&st->q_lock);
        *st->synced_tail = batch;
        st->synced_tail = &list_last(batch)->next;
        /* Leader hand-off: when nobody is committing the index, this
         * worker does it itself for everything synced so far, saving a
         * thread wake-up on the path of every lone message; otherwise the
         * thread committing picks the batch up before it lets go. */
        if (!st->indexing)
            index_drain_locked(st);
    }
    if (--st->n_sync_running == 0) {
        st->sync_done = true; /* the index thread may finish now */
        pthread_cond_signal(&st->synced_cond);
    }
    pthread_mutex_unlock(&st->q_lock);
    return NULL;
}

static void index_batch(struct store *st, struct store_tx *batch)
{
    uint64_t t0 = now_mono_ms();
    size_t n = 0, ok = 0;
    for (struct store_tx *tx = batch; tx; tx = tx->next, n++)
        ok += !tx->failed;
    if (ok > 0)
        batch_index(st, batch);
    while (batch != NULL) {
        struct store_tx *next = batch->next;
        tx_complete(batch);
        batch = next;
    }
    st->n_batches++;
    st->n_committed += n;
    log_debug(NULL, "event=store_batch txs=%zu ms=%llu", n,
              (unsigned long long)(now_mono_ms() - t0));
}

/* Commits everything synced, batch after batch, until nothing is left.
 * Called with q_lock held and indexing false; returns with q_lock held.
 * Only one thread indexes at a time (the indexing flag). */
static void index_drain_locked(struct store *st)
{
    st->indexing = true;
    while (st->synced != NULL) {
        struct store_tx *batch = st->synced;
        st->synced = NULL;
        st->synced_tail = &st->synced;
        pthread_mutex_unlock(&st->q_lock);
        index_batch(st, batch);
        pthread_mutex_lock(&st->q_lock);
    }
    st->indexing = false;
    /* the index thread waits for nothing else but its timer and the end */
    if (st->dmarc_q != NULL || st->unstage_q != NULL || st->sync_done || st->stopping)
        pthread_cond_broadcast(&st->synced_cond);
}

/* DMARC rows and blob drops that no batch carried, in one transaction. */
static void write_behind(struct store *st)
{
    struct store_conn *c = st->wconn;
    const char *err;
    if (store_begin(c, &err) < 0) {
        log_warn(NULL, "event=store_behind_failed error=\"%s\"", err ? err : "?");
        store_dmarc_write_queued(st, c, false); /* on its own, or dropped */
        store_stage_drop_queued(st);            /* the writer does them again */
        return;
    }
    store_dmarc_write_queued(st, c, true);
    store_stage_write_queued(st, c);
    if (store_commit(c, &err) < 0)
        log_warn(NULL, "event=store_behind_failed error=\"%s\"", err ? err : "?");
    store_stage_applied(st);
}

/* Indexes what no sync worker took on, and finishes at shutdown. */
static void *index_main(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->q_lock);
    for (;;) {
        while ((st->synced == NULL || st->indexing) && !(st->sync_done && !st->indexing)) {
            if ((st->dmarc_q == NULL && st->unstage_q == NULL) || st->indexing) {
                pthread_cond_wait(&st->synced_cond, &st->q_lock);
                continue;
            }
            /* DMARC rows and blobs to drop wait a little for a batch to
             * carry them */
            uint64_t since = st->dmarc_q != NULL ? st->dmarc_since_ms : UINT64_MAX;
            if (st->unstage_q != NULL && st->unstage_since_ms < since)
                since = st->unstage_since_ms;
            uint64_t due = since + DMARC_PENDING_MS, now = now_mono_ms();
            if (now < due) {
                cond_wait_ms(&st->synced_cond, &st->q_lock, due - now);
                continue;
            }
            st->indexing = true;
            pthread_mutex_unlock(&st->q_lock);
            write_behind(st);
            pthread_mutex_lock(&st->q_lock);
            st->indexing = false;
            pthread_cond_broadcast(&st->synced_cond);
        }
        if (st->synced == NULL && st->sync_done && !st->indexing)
            break; /* the sync workers have finished and all is indexed */
        if (st->synced != NULL && !st->indexing)
            index_drain_locked(st);
    }
    pthread_mutex_unlock(&st->q_lock);
    return NULL;
}

/* ---- checkpoints ---- */

/* Called by SQLite after each commit on wconn with the WAL's size in
 * pages: past CKPT_PAGES the checkpoint thread copies the WAL back into
 * index.db, so the index thread never does it inside a commit. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *st = arg;
    (void)db;
    (void)name;
    /* the WAL's end: its header, then a frame header and a page per page */
    uint64_t end = 32 + (uint64_t)pages * (st->page_size + 24);
    if (end + WAL_CHUNK / 2 > st->wal_end)
        st->wal_want_extend = true; /* next batch, under the write lock */
    if (pages >= CKPT_PAGES && !st->ckpt_wanted) {
        pthread_mutex_lock(&st->q_lock);
        st->ckpt_wanted = true;
        pthread_cond_signal(&st->ckpt_cond);
        pthread_mutex_unlock(&st->q_lock);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->q_lock);
    for (;;) {
        while (!st->ckpt_wanted && !st->stopping)
            pthread_cond_wait(&st->ckpt_cond, &st->q_lock);
        if (st->stopping)
            break;
        st->ckpt_wanted = false;
        pthread_mutex_unlock(&st->q_lock);
        /* PASSIVE: copies what no reader still needs, waits for nobody;
         * the WAL starts over once all of it is copied */
        struct store_conn *c = store_conn_get(st);
        int log = 0, done = 0;
        uint64_t t0 = now_mono_ms();
        if (c != NULL &&
            sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
            log_warn(NULL, "event=store_checkpoint_failed error=\"%s\"", sqlite3_errmsg(c->db));
        log_debug(NULL, "event=store_checkpoint wal_pages=%d copied=%d ms=%llu", log, done,
                  (unsigned long long)(now_mono_ms() - t0));
        pthread_mutex_lock(&st->q_lock);
    }
    pthread_mutex_unlock(&st->q_lock);
    return NULL;
}

/* Starts the index thread and the sync workers not running yet; called
 * by the first store_tx_begin() (so CLI commands start no thread).  0 once
 * the index thread and at least one sync worker run. */
int store_commit_thread_start(struct store *st, const char **error_r)
{
    pthread_mutex_lock(&st->start_lock);
    int rc = 0;
    if (!st->index_started) {
        rc = pthread_create(&st->index_thread, NULL, index_main, st);
        st->index_started = rc == 0;
    }
    if (rc == 0 && !st->ckpt_started &&
        pthread_create(&st->ckpt_thread, NULL, ckpt_main, st) == 0) {
        st->ckpt_started = true;
        /* from now on the checkpoint thread checkpoints, not commits */
        sqlite3_stmt *ps = NULL;
        st->page_size = 4096;
        if (sqlite3_prepare_v2(st->wconn->db, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
            sqlite3_step(ps) == SQLITE_ROW && sqlite3_column_int(ps, 0) > 0)
            st->page_size = (uint64_t)sqlite3_column_int(ps, 0);
        sqlite3_finalize(ps);
        st->wal_want_extend = true;
        sqlite3_wal_autocheckpoint(st->wconn->db, 0);
        sqlite3_wal_hook(st->wconn->db, wal_hook, st);
    }
    while (rc == 0 && st->n_sync_started < STORE_SYNC_THREADS) {
        pthread_mutex_lock(&st->q_lock);
        st->n_sync_running++;
        pthread_mutex_unlock(&st->q_lock);
        rc = pthread_create(&st->sync_threads[st->n_sync_started], NULL, sync_main, st);
        if (rc != 0) {
            pthread_mutex_lock(&st->q_lock);
            st->n_sync_running--;
            pthread_mutex_unlock(&st->q_lock);
        } else {
            st->n_sync_started++;
        }
    }
    bool ok = st->index_started && st->n_sync_started > 0;
    if (ok && st->n_sync_started == STORE_SYNC_THREADS)
        __atomic_store_n(&st->threads_ready, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->start_lock);
    if (!ok)
        return store_fail_errno(rc ? rc : EAGAIN, error_r, "store threads");
    if (rc != 0)
        log_warn(NULL, "event=store_threads started=%d wanted=%d", st->n_sync_started,
                 STORE_SYNC_THREADS);
    return 0;
}

/* Lets the workers finish what was committed, then joins them. */
void store_commit_thread_stop(struct store *st)
{
    pthread_mutex_lock(&st->start_lock); /* no start while stopping */
    pthread_mutex_lock(&st->q_lock);
    st->stopping = true;
    if (st->n_sync_running == 0)
        st->sync_done = true;
    pthread_cond_broadcast(&st->q_cond);
    pthread_cond_signal(&st->synced_cond);
    pthread_cond_signal(&st->ckpt_cond);
    pthread_mutex_unlock(&st->q_lock);
    for (int i = 0; i < st->n_sync_started; i++)
        pthread_join(st->sync_threads[i], NULL);
    if (st->index_started)
        pthread_join(st->index_thread, NULL);
    if (st->ckpt_started) {
        pthread_join(st->ckpt_thread, NULL);
        st->ckpt_started = false;
        sqlite3_wal_hook(st->wconn->db, NULL, NULL);
        sqlite3_wal_autocheckpoint(st->wconn->db, 1000); /* SQLite's default */
    }
    st->n_sync_started = 0;
    st->index_started = false;
    __atomic_store_n(&st->threads_ready, false, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->start_lock);
}
