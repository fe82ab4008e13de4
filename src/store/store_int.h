/*
 * Inside the store: shared by the files of src/store only.  Nothing outside
 * src/store includes this file.
 *
 * Connections: every thread that reads gets its own SQLite connection
 * (a pthread key per store), each with a small cache of prepared
 * statements.  The index thread (which runs the done callbacks, "the commit
 * thread" of store.h) owns one more connection (wconn) opened
 * with synchronous=FULL.  Administrative writes (accounts, aliases,
 * queue management) run on the caller's connection inside BEGIN
 * IMMEDIATE; busy_timeout lets the CLI write while the server runs.
 */
#ifndef POSTEL_STORE_INT_H
#define POSTEL_STORE_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdarg.h>

#include "core/limits.h"
#include "store/store.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_TX_BUF (64u * 1024)     /* per-transaction write buffer */
#define STORE_ALIAS_DEPTH 8           /* alias expansion depth bound */
#define STORE_RESOLVE_SEEN_MAX 256    /* addresses expanded per resolution */
#define STORE_ALIAS_DESTS_MAX 1024    /* destinations read per alias source */
#define STORE_RELPATH_MAX 128         /* "mail/<id>/<txid>.<n>" and the like */
#define STORE_ID_LEN      16          /* hex digits of a message/queue id */
#define STORE_SYNC_THREADS 16         /* transactions fsynced in parallel */

/* Prepared statements cached per connection; SQL text in store.c. */
enum store_stmt_id {
    STMT_DOMAIN_IS_LOCAL,
    STMT_ACCOUNT_BY_ADDRESS,
    STMT_ACCOUNT_FIRST_OF_DOMAIN,
    STMT_ACCOUNT_ADDRESS_BY_ID,
    STMT_ALIAS_DESTS,
    STMT_ALIAS_SOURCE_TO,
    STMT_MAILBOX_BUMP,
    STMT_MESSAGE_INSERT,
    STMT_QUEUE_INSERT,
    STMT_QUEUE_RCPT_INSERT,
    STMT_MESSAGE_FILE_EXISTS,
    STMT_QUEUE_FILE_EXISTS,
    STMT_BLOB_INSERT,
    STMT_BLOB_GET,
    STMT_BEGIN_READ,
    STMT_COMMIT_READ,
    STMT_SAVEPOINT,
    STMT_RELEASE,
    STMT_ROLLBACK_TO,
    STMT_COUNT
};

#define STORE_XSTMT_MAX 64

struct store_conn {
    struct store *st;
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
    struct {                          /* store_imap.c's statements, by SQL text */
        const char *sql;
        sqlite3_stmt *s;
    } xstmt[STORE_XSTMT_MAX];
    struct store_conn *prev, *next;   /* st->conns, under st->conn_lock */
};

struct store {
    char dir[1024];
    int dir_fd;                       /* data_dir, for *at() calls and syncfs */
    int lock_fd;                      /* data_dir/store.lock, flock()ed shared */
    bool use_syncfs;                  /* sync mode "syncfs" (see store_tx.c) */
    atomic_bool no_sync;              /* store_set_no_sync(): no fsync at all */
    bool blob_messages;               /* store_set_blob_messages(): in index.db */
    _Atomic int64_t auth_cache_ttl;   /* store_set_auth_cache(): seconds, 0 = off */
    bool opened;                      /* fully opened (closing clears store.dirty) */

    pthread_key_t conn_key;
    pthread_mutex_t conn_lock;
    struct store_conn *conns;

    /* group commit (store_tx.c): sync workers and an index thread */
    pthread_t sync_threads[STORE_SYNC_THREADS], index_thread;
    int n_sync_started, n_sync_running;
    bool index_started;               /* these three under start_lock */
    bool threads_ready;               /* all started (atomic: read unlocked) */
    pthread_mutex_t start_lock;       /* threads start at the first tx */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;            /* pending work for the sync workers */
    pthread_cond_t synced_cond;       /* synced work for the index thread */
    struct store_tx *pending, **pending_tail;   /* committed by callers */
    struct store_tx *synced, **synced_tail;     /* files durable, not indexed */
    bool stopping, sync_done;
    bool indexing;                    /* a thread is committing the index (q_lock) */
    struct store_conn *wconn;         /* the index thread's connection */
    pthread_t ckpt_thread;            /* checkpoints the WAL (store_tx.c) */
    bool ckpt_started;                /* under start_lock */
    bool ckpt_wanted;                 /* q_lock */
    pthread_cond_t ckpt_cond;
    /* index.db-wal extended ahead of its end (store_tx.c); committing thread only */
    int wal_fd;                       /* -1 not opened yet, -2 given up */
    uint64_t wal_end;                 /* zeros written up to here */
    uint64_t page_size;
    bool wal_want_extend;
    uint64_t n_batches, n_committed;  /* statistics, index thread only */
    struct store_pool *pool;          /* files made ahead (store_pool.c), or NULL */
    /* staged messages (store_stage.c) */
    bool staging;                     /* store_set_staging(): small local messages staged */
    bool stage_started, stage_stop;   /* stage_stop under q_lock */
    pthread_t stage_thread;
    pthread_cond_t stage_cond;        /* the writer's wake-up (with q_lock) */
    atomic_bool stage_kicked;         /* something was staged since the last pass */
    _Atomic int64_t stage_bytes;      /* staged bytes not yet written as files */
    _Atomic uint64_t stage_last_ms;   /* when the last staged message was committed */
    struct store_stage_done *unstage_q; /* written: blobs to drop (q_lock) */
    bool unstage_busy;                /* taken, not committed yet (q_lock) */
    uint64_t unstage_since_ms;
    uint64_t n_materialized;          /* files written by the writer (q_lock) */
    /* DMARC rows written behind (store_dmarc.c), under q_lock */
    struct store_dmarc_pending *dmarc_q, **dmarc_tail;
    size_t dmarc_n;
    uint64_t dmarc_since_ms;          /* when the oldest was queued */
};

/* ---- message files made ahead (store_pool.c) ---- */
struct store_pool;
/* Starts the filler thread (idempotent).  0 or -1. */
int store_pool_start(struct store *st);
/* Stops it and removes every file not taken. */
void store_pool_stop(struct store *st);
/* An open, empty file dir/<id> whose directory entry is already durable,
 * its id (STORE_ID_LEN hex digits) in id_out; -1 when none is ready (the
 * caller makes its own; the pool is topped up meanwhile) or no pool runs.
 * account_id > 0 lets the filler create mail/<account_id> when missing. */
int store_pool_take(struct store *st, const char *dir, int64_t account_id, char *id_out);
void store_pool_stats(struct store *st, uint64_t *taken, uint64_t *missed);

/* ---- staged messages (store_stage.c) ---- */
#define STORE_STAGE_MAX (256u * 1024) /* larger messages go straight to files */
struct store_stage_done;
/* Whether a new local message of size bytes (all copies) is staged. */
bool store_stage_accepts(struct store *st, uint64_t size);
/* A staged transaction was committed (index thread): wakes the writer. */
void store_stage_committed(struct store *st, uint64_t bytes);
/* Drops the blobs of messages written as files, inside the index thread's
 * open transaction on c (a savepoint of their own). */
void store_stage_write_queued(struct store *st, struct store_conn *c);
/* Forgets them instead (no transaction could start): written again later. */
void store_stage_drop_queued(struct store *st);
/* After that transaction's commit (or rollback): the writer may go on. */
void store_stage_applied(struct store *st);
/* Writes a staged message's file now (durably) if it has none; the blob
 * stays for the writer.  0, or -1 (NOTFOUND: no such message). */
int store_stage_materialize(struct store *st, const char *file);
void store_stage_stop(struct store *st);

/* ---- DMARC rows written behind (store_dmarc.c) ---- */
#define DMARC_PENDING_MS 100          /* longest a row waits for a batch */
#define DMARC_BATCH_ROWS 256          /* rows that ride along before that */
struct store_dmarc_pending;
/* Writes the queued rows on c: inside the caller's open transaction (a
 * savepoint of their own) when in_tx, else in a transaction of their own.
 * Failures are logged; the rows are dropped. */
void store_dmarc_write_queued(struct store *st, struct store_conn *c, bool in_tx);
/* The same on the calling thread's connection (readers, store_close). */
void store_dmarc_flush(struct store *st);

/* ---- errors (store.c): thread-local last error ---- */
/* Records an error of kind and points *error_r (if not NULL) at its text.
 * Always returns -1. */
int store_fail(enum store_error kind, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records an SQLite error on c (busy, full, I/O are temporary). Returns -1. */
int store_fail_db(struct store_conn *c, const char **error_r, const char *what);
/* Records an errno error (ENOSPC, EDQUOT, EIO... are temporary). Returns -1. */
int store_fail_errno(int err, const char **error_r, const char *what);
/* Points *error_r at the error already recorded (by a callee). Returns -1. */
int store_fail_again(const char **error_r);
void store_clear_error(void);
bool store_errno_is_temporary(int err);

/* ---- connections (store.c) ---- */
/* The calling thread's connection, opened on first use; NULL (error set)
 * if SQLite cannot be opened. */
struct store_conn *store_conn_get(struct store *st);
/* A cached statement, reset and with its bindings cleared.  Callers
 * sqlite3_reset() it when done so no read transaction stays open. */
sqlite3_stmt *store_stmt(struct store_conn *c, enum store_stmt_id id);
/* A statement for sql kept prepared in c (store_conn.xstmt; sql is a
 * string literal, its address the key).  A statement still running (nested
 * use) or a full cache gets a fresh one.  When preparing fails and schema
 * is not NULL, schema is run once (tables made lazily) and it is tried
 * again.  End each use with store_stmt_kept_done (NULL is fine), which
 * resets a kept statement and finalizes a fresh one.  NULL on error. */
sqlite3_stmt *store_stmt_kept(struct store_conn *c, const char *sql, const char *schema);
void store_stmt_kept_done(struct store_conn *c, sqlite3_stmt *s);
/* Runs a cached statement without results (BEGIN, SAVEPOINT...). 0 or -1. */
int store_stmt_run(struct store_conn *c, enum store_stmt_id id);
/* Runs SQL without results.  0 or -1 (error recorded). */
int store_exec(struct store_conn *c, const char *sql, const char **error_r);
int store_begin(struct store_conn *c, const char **error_r);   /* BEGIN IMMEDIATE */
int store_commit(struct store_conn *c, const char **error_r);
void store_rollback(struct store_conn *c);
/* Binds text, or NULL when s is NULL. */
void store_bind_text(sqlite3_stmt *s, int i, const char *text);
int64_t store_now(void);

/* ---- addresses (store_account.c) ---- */
/* Splits a checked address into lower-cased local part and domain.
 * Returns 0, or -1 if the address is not valid. */
int store_address_split(const char *address, char *local, size_t local_size, char *domain,
                        size_t domain_size);
bool store_domain_valid(const char *domain);

/* ---- mailboxes (store_mailbox.c) ---- */
/* Creates the standard mailboxes of a new account (inside the caller's
 * transaction).  0 or -1. */
int store_mailboxes_create_std(struct store_conn *c, int64_t account_id, const char **error_r);

/* ---- files ---- */
/* Creates data_dir/mail/<id> if missing and syncs mail/ (store_account.c). */
int store_account_dir_create(struct store *st, int64_t id, const char **error_r);
/* Removes data_dir/rel recursively (files and directories).  0 or -1. */
int store_remove_tree(struct store *st, const char *rel);
/* fsyncs directory rel (relative to data_dir).  0, or -1 (error recorded). */
int store_sync_dir(struct store *st, const char *rel);
/* The distinct directories of files written, each to be fsynced once. */
struct store_dirset {
    char (*names)[32];
    size_t n, alloc;
};
/* Adds the directory of path (relative to data_dir).  0 or -1 (no memory). */
int store_dirset_add(struct store_dirset *d, const char *path);
/* fsyncs each directory of d.  0, or -1 (error recorded, *error_r set). */
int store_dirset_sync(struct store *st, const struct store_dirset *d, const char **error_r);
void store_dirset_free(struct store_dirset *d);
/* Whether statement id (one bound parameter: a file name, like
 * STMT_MESSAGE_FILE_EXISTS) finds a row for rel; true when in doubt. */
bool store_file_referenced(struct store_conn *c, enum store_stmt_id id, const char *rel);

/* ---- group commit threads (store_tx.c) ---- */
/* Idempotent; the first store_tx_begin() calls it. 0 or -1. */
int store_commit_thread_start(struct store *st, const char **error_r);
void store_commit_thread_stop(struct store *st);
#endif
