/*
 * The store: accounts, domains, aliases, mailboxes, messages, the outbound
 * queue.  The only module that opens SQLite or writes message files.  No
 * protocol code and no libevent here: asynchronous completions are plain
 * callbacks invoked on the store's commit thread; callers hop back to their
 * own event loop themselves.
 *
 * Threads: a struct store may be used from any thread.  Read calls use a
 * per-thread SQLite connection (opened lazily); all writes that protocol
 * sessions make (deliveries, later IMAP flag changes) go through the single
 * commit thread, which batches concurrent transactions: one filesystem sync
 * and one SQLite commit per batch (group commit).
 *
 * Layout under data_dir:
 *   index.db            SQLite (WAL) index and state
 *   mail/<account_id>/  message files, one per stored message
 *   queue/              outbound message files
 *   tmp/                files being received (removed at start-up)
 */
#ifndef POSTEL_STORE_H
#define POSTEL_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Standard mailboxes every account gets, with their SPECIAL-USE attribute. */
#define STORE_STD_MAILBOXES { "INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive" }

/* Opens (creating if needed) the store under data_dir and starts the commit
 * thread.  Returns NULL and sets *error_r (static or thread-local text). */
struct store *store_open(const char *data_dir, const char **error_r);
/* Waits for queued commits to finish, stops the commit thread, closes. */
void store_close(struct store *st);
/* Capture mode: messages and the index are written but never fsynced
 * (the kernel flushes them; a restart or crash of the process keeps
 * everything, a power cut may lose the last seconds).  Call right after
 * store_open, before other threads use the store. */
void store_set_no_sync(struct store *st);
/* Lets a thread create message files ahead of need (store_pool.c), so a
 * transaction finds its file made and its directory entry durable.  For
 * the long-running server; files not taken are removed by store_close.
 * 0, or -1 when the thread cannot start (transactions then make their
 * own files, as without it). */
int store_set_file_pool(struct store *st);
/* Keeps the content of messages delivered from now on in index.db rather
 * than in a file each (capture mode: many small messages, no IMAP), written
 * in the same transaction as their index rows.  store_msg_open() serves
 * them like files.  Call right after store_open. */
void store_set_blob_messages(struct store *st);
/* Stages small local messages: each is made durable inside the index
 * commit that also records it (one fsync for a whole batch, data
 * included) and is written out as its file by a background thread after
 * the 250 (store_stage.c).  Readers see no difference.  Also writes out
 * what a previous run staged.  For the long-running server; 0 or -1 when
 * the thread cannot start (messages then go straight to files). */
int store_set_staging(struct store *st);
/* Staged bytes not yet written as files, and files written so far. */
void store_stage_stats(struct store *st, uint64_t *waiting_bytes, uint64_t *written);

/* ---- domains ---- */
int store_domain_add(struct store *st, const char *domain, const char **error_r);
int store_domain_del(struct store *st, const char *domain, const char **error_r);
bool store_domain_is_local(struct store *st, const char *domain);
/* Calls fn for each domain, sorted; returns count or -1. */
int store_domain_list(struct store *st, void (*fn)(const char *domain, void *arg), void *arg);

/* ---- accounts ---- */
/* Adds an account (its domain becomes local) with its standard mailboxes.
 * password is plaintext (hashed here with yescrypt) unless it already looks
 * like a crypt hash ($y$, $2b$, $6$, ...), which is stored as is. */
int store_user_add(struct store *st, const char *address, const char *password,
                   const char **error_r);
int store_user_del(struct store *st, const char *address, const char **error_r);
int store_user_passwd(struct store *st, const char *address, const char *password,
                      const char **error_r);
int store_user_list(struct store *st, void (*fn)(const char *address, void *arg), void *arg);
/* Account id for an exact address (case-insensitive), or 0 if none. */
int64_t store_user_lookup(struct store *st, const char *address);
/* Checks a password (slow by design: call from a worker thread, never from
 * an event loop).  Returns the account id (>0) on success, 0 on a wrong user
 * or password, -1 on a store error. */
int64_t store_user_auth(struct store *st, const char *address, const char *password);
/* Login cache (off until set): a verified login is remembered for ttl
 * seconds as a keyed hash (HMAC-SHA256 under a per-process random key) of
 * the address, the stored password hash and the password, so a repeated
 * login skips the slow hash; the account row is still read every time, so
 * a password change or a deleted account takes effect at once.  Only
 * successes are remembered.  0 turns it off. */
void store_set_auth_cache(struct store *st, int64_t ttl_seconds);

/* ---- aliases ---- */
int store_alias_add(struct store *st, const char *source, const char *dest, const char **error_r);
int store_alias_del(struct store *st, const char *source, const char *dest, const char **error_r);
int store_alias_list(struct store *st, void (*fn)(const char *source, const char *dest, void *arg),
                     void *arg);
/* True if account_id may use address as a sender: its own address (with or
 * without +tag) or an alias source (not a catch-all) that points to it. */
bool store_sender_allowed(struct store *st, int64_t account_id, const char *address);

/* ---- recipient resolution ---- */
enum store_rcpt_kind { STORE_RCPT_LOCAL = 1, STORE_RCPT_REMOTE = 2 };
struct store_rcpt_target {
    enum store_rcpt_kind kind;
    int64_t account_id;        /* LOCAL */
    char address[257];         /* LOCAL: account address; REMOTE: where to send */
};
/* Resolves an envelope recipient: exact account, then alias, then
 * localpart+tag, then catch-all @domain; aliases expand (depth-bounded) to
 * accounts or remote addresses.  Fills up to max targets.
 * Returns the number of targets (>0), 0 if the domain is local but the user
 * is unknown, -2 if the domain is not local, -1 on a store error.
 * Local parts match case-insensitively.  "postmaster@<local domain>" with
 * no account or alias of its own (nor a catch-all) resolves to that
 * domain's first account (lowest id), so RFC 5321 4.5.1 holds; 0 only if
 * the domain has no account at all. */
int store_rcpt_resolve(struct store *st, const char *address, struct store_rcpt_target *targets,
                       int max);

/* ---- message transactions (SMTP DATA/BDAT, later IMAP APPEND) ---- */
struct store_tx_rcpt {
    const char *address;           /* as given in RCPT TO (for Delivered-To / queue) */
    const struct store_rcpt_target *target;
    const char *mailbox;           /* LOCAL: "INBOX" unless filing elsewhere (Junk) */
    /* DSN (RFC 3461), kept with queued recipients; NULL/0 when absent */
    const char *orcpt;
    unsigned notify;               /* STORE_NOTIFY_* bits */
};
#define STORE_NOTIFY_NEVER   1u
#define STORE_NOTIFY_SUCCESS 2u
#define STORE_NOTIFY_FAILURE 4u
#define STORE_NOTIFY_DELAY   8u

struct store_envelope {
    const char *sender;            /* reverse path without <>, "" for null sender */
    const char *envid;             /* DSN ENVID or NULL */
    const char *ret;               /* "FULL", "HDRS" or NULL */
    bool smtputf8, body_8bit;
    const struct store_tx_rcpt *rcpts;
    size_t n_rcpts;
    int64_t submitter_account;     /* authenticated account or 0 */
    uint64_t size_hint;            /* bytes the caller will write, 0 if not known */
};

struct store_tx;
/* Starts a transaction: opens the file(s) the message data is written to.
 * The envelope is copied.  Local copies get "Return-Path" and
 * "Delivered-To" prepended by the store.  NULL on error (*error_r set; a
 * full disk gives an error for which store_error_is_temporary() is true). */
struct store_tx *store_tx_begin(struct store *st, const struct store_envelope *env,
                                const char **error_r);
/* Appends message bytes (CRLF lines, already dot-unstuffed).  Buffered;
 * returns -1 once any write failed (the tx must then be aborted). */
int store_tx_write(struct store_tx *tx, const void *data, size_t len);
/* Makes the message durable: data and directory entries synced, index
 * committed, queue entry created for remote recipients.  done() runs once,
 * on the commit thread, with result 0 (stored; queue_id is the message id
 * to quote in "250 2.0.0 Ok: queued as ID") or -1 with error text.  The tx
 * is freed by the store after done() returns. */
typedef void store_tx_done_fn(void *arg, int result, const char *queue_id, const char *error);
void store_tx_commit(struct store_tx *tx, store_tx_done_fn *done, void *arg);
/* Discards the transaction and its files. */
void store_tx_abort(struct store_tx *tx);

/* A scratch file for a message that must be seen whole before it is
 * stored (signing, authentication checks): unnamed, under data_dir/tmp,
 * gone when closed.  Returns an fd (caller closes) or -1. */
int store_spool_open(struct store *st);

/* ---- mailboxes (CLI now, IMAP later) ---- */
struct store_mailbox_status {
    char name[256];
    uint32_t messages, unseen, recent;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq, size;
};
int store_mailbox_status_all(struct store *st, int64_t account_id,
                             void (*fn)(const struct store_mailbox_status *s, void *arg), void *arg);
/* Opens one stored message by mailbox name and UID: returns an fd to read
 * (caller closes) or -1. */
int store_message_open(struct store *st, int64_t account_id, const char *mailbox, uint32_t uid);

/* ---- queue (listing now, delivery in the outbound issue) ---- */
struct store_queue_entry {
    char id[32];
    char sender[257];
    int64_t created, next_attempt;
    int attempts;
    uint64_t size;
    char state[16];                /* "active", "deferred", "hold" */
    char rcpts[2048];              /* comma-separated */
};
int store_queue_list(struct store *st, void (*fn)(const struct store_queue_entry *e, void *arg),
                     void *arg);

/* True if the last error was temporary (disk full, I/O, busy): callers
 * answer 4xx (452 4.3.1) rather than 5xx. */
bool store_error_is_temporary(void);

/* ---- additions ---- */

/* IMAP system flags, kept as a bitmask in the index. */
#define STORE_FLAG_SEEN     1u
#define STORE_FLAG_ANSWERED 2u
#define STORE_FLAG_FLAGGED  4u
#define STORE_FLAG_DELETED  8u
#define STORE_FLAG_DRAFT    16u

/* The kind of the calling thread's last store error (thread-local, like
 * store_error_is_temporary), so callers can pick a reply or exit code. */
enum store_error {
    STORE_ERR_NONE = 0,
    STORE_ERR_INVALID,     /* bad address, domain, name or argument */
    STORE_ERR_NOTFOUND,    /* no such account, alias, domain, queue entry */
    STORE_ERR_EXISTS,      /* already exists / still in use */
    STORE_ERR_TEMP,        /* disk full, I/O error, database busy */
    STORE_ERR_INTERNAL     /* anything else (corrupt index, bug) */
};
enum store_error store_error_kind(void);
/* Text of the calling thread's last error ("" if none). */
const char *store_error_text(void);
/* Sets the calling thread's error: for a caller that ran a store call on
 * another thread and reports its error on its own. */
void store_error_set(enum store_error kind, const char *text);

/* A simple syntax check the store applies to every address it stores:
 * local@domain, no spaces or control characters, RFC 5321 lengths.  With
 * allow_catchall, "@domain" is accepted too (alias sources). */
bool store_address_valid(const char *address, bool allow_catchall);

/* Notes on the transaction contract above:
 * - A done() with result -1 is always a temporary failure (disk, I/O,
 *   database): answer 452 4.3.1.  Permanent problems (no recipients, bad
 *   envelope) are reported by store_tx_begin() instead.
 * - Local copies are de-duplicated per (account, mailbox) and remote
 *   recipients per address within one transaction.
 * - Messages are filed with internaldate = commit time and no flags. */

/* ---- queue management (CLI; delivery comes with the outbound issue) ---- */
/* Recipient status values in the queue: "pending" (to do), "delivered",
 * "bounced"; store_queue_list shows those not delivered or bounced. */

/* Fills e for one queue id.  1 found, 0 no such id, -1 store error. */
int store_queue_get(struct store *st, const char *id, struct store_queue_entry *e);
/* Opens a queued message's file for reading (caller closes); -1 if the id
 * is unknown (store_error_kind() == STORE_ERR_NOTFOUND) or on error. */
int store_queue_open(struct store *st, const char *id);
/* Removes a queue entry and its file.  1 removed, 0 no such id, -1 error. */
int store_queue_delete(struct store *st, const char *id, const char **error_r);
/* hold: state "hold" (never attempted); release (hold=false): back to
 * "active" with next_attempt = now.  Returns entries changed (0 if the id
 * is unknown or, for release, was not on hold), -1 on error. */
int store_queue_hold(struct store *st, const char *id, bool hold, const char **error_r);
/* Sets next_attempt = now for one id (or all entries when id is NULL)
 * that are not on hold.  Returns entries changed, -1 on error. */
int store_queue_flush(struct store *st, const char *id, const char **error_r);

/* ---- outbound delivery (src/queue) ---- */
/* A recipient's notify column also carries this bit once a delay DSN
 * went out for it (so only one is sent). */
#define STORE_NOTIFY_DELAY_SENT 256u

struct store_queue_rcpt {
    char address[260];             /* up to SMTP_PATH_MAX octets */
    char orcpt[512];               /* "rfc822;addr" (decoded) or "" */
    unsigned notify;               /* STORE_NOTIFY_* bits */
    char status[16];               /* "pending", "delivered", "bounced" */
    char last_error[512];          /* the queue's own notes of the last failure */
};

/* A queued message as delivery needs it: the entry, its DSN envelope and
 * every recipient (any status). */
struct store_queue_msg {
    struct store_queue_entry e;    /* e.rcpts is not filled */
    char envid[101];               /* DSN ENVID or "" */
    char ret[8];                   /* "FULL", "HDRS" or "" */
    bool smtputf8, body_8bit;
    int64_t submitter;
    size_t n_rcpts;
    struct store_queue_rcpt *rcpts;
};

/* Calls fn with the id of each entry due at now (state "active" or
 * "deferred", next_attempt <= now), earliest first, at most limit.
 * Returns the count or -1. */
int store_queue_due(struct store *st, int64_t now, int limit,
                    void (*fn)(const char *id, void *arg), void *arg);
/* Loads one entry.  1 found (*m_r set; free with store_queue_msg_free),
 * 0 no such id, -1 store error. */
int store_queue_load(struct store *st, const char *id, struct store_queue_msg **m_r);
void store_queue_msg_free(struct store_queue_msg *m);

/* The outcome of a delivery attempt for one entry. */
struct store_queue_rcpt_update {
    const char *address;
    const char *status;            /* "pending", "delivered" or "bounced" */
    const char *last_error;        /* NULL: unchanged */
    unsigned notify_set;           /* bits OR'ed into notify (STORE_NOTIFY_DELAY_SENT) */
};
struct store_queue_update {
    const char *id;
    const struct store_queue_rcpt_update *rcpts;
    size_t n_rcpts;
    bool attempted;                /* count an attempt; state "deferred" unless on hold */
    int64_t next_attempt;
    int removed;                   /* set: 1 when nothing was left pending and the
                                      entry and its file were removed */
};
/* Applies n updates in one SQLite transaction.  An entry with no pending
 * recipient left is removed, its file after the commit (a crash in
 * between leaves an orphan file the next start-up sweeps).  Entries that
 * no longer exist (deleted by the CLI meanwhile) are skipped.  0 or -1. */
int store_queue_update(struct store *st, struct store_queue_update *u, size_t n,
                       const char **error_r);
#endif
