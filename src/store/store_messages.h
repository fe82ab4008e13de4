/*
 * Messages of a mailbox for the readers (POP3 now, IMAP too): a listing
 * (UID, size, flags, file), the atomic expunge of a set of UIDs, the
 * maildrop lock of POP3, and change notification ("watches") that store
 * functions fire after their commits.
 *
 * Threads: every function may be called from any thread.  The listing and
 * the expunge touch SQLite (and the expunge removes files), so sessions
 * call them from the pool, never from an event loop.  The lock and the
 * watch registry are in-process (mutex-protected); for the shared
 * PostgreSQL backend they become advisory locks and LISTEN/NOTIFY behind
 * the same functions.
 */
#ifndef POSTEL_STORE_MESSAGES_H
#define POSTEL_STORE_MESSAGES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* ---- listing ---- */

struct store_msg {
    uint32_t uid;
    uint32_t flags;               /* STORE_FLAG_* bits */
    uint64_t modseq;
    uint64_t size;                /* octets of the stored file: the message in
                                     its CRLF form, exactly what a reader sends */
    int64_t internaldate;         /* seconds since the epoch */
    const char *file;             /* relative to data_dir; for store_msg_open */
};

struct store_msg_list {
    int64_t mailbox_id;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
    struct store_msg *msgs;       /* ascending UID order */
    size_t n;
    char *names_;                 /* storage behind msgs[].file (private) */
};

/* Loads every message of an account's mailbox ("INBOX" matches in any
 * case) into list, in UID order, in one read transaction.  Returns the
 * number of messages (>= 0), or -1 with the error recorded (store_error_kind:
 * STORE_ERR_NOTFOUND when the mailbox does not exist).  On success the
 * caller frees list with store_msg_list_free; on failure list is empty. */
int store_msg_list_load(struct store *st, int64_t account_id, const char *mailbox,
                        struct store_msg_list *list);
void store_msg_list_free(struct store_msg_list *list);

/* Opens a listed message's file for reading (O_RDONLY; the caller closes).
 * -1 when the file is gone (expunged meanwhile: STORE_ERR_NOTFOUND) or on
 * error.  Only names under mail/ are accepted. */
int store_msg_open(struct store *st, const char *file);

/* ---- expunge ---- */

/* Removes the messages with the given UIDs from an account's mailbox, all
 * or none, in one SQLite transaction that also bumps the mailbox's
 * highestmodseq once and records each removed UID in the table
 * expunged(mailbox_id, uid, modseq) with that new modseq (for IMAP
 * QRESYNC VANISHED).  The files are unlinked after the commit (a crash
 * in between leaves files no row references: the start-up cleanup removes
 * them).  UIDs that no longer exist are skipped (someone else expunged
 * them).  Then the watches of the mailbox are notified (STORE_CHANGE_EXPUNGE),
 * and IMAP's watchers too (store_imap_notify), so IDLE sessions see EXPUNGE.
 * Returns the number of messages removed (>= 0), or -1 with *error_r set
 * (nothing removed; store_error_is_temporary() tells whether to say
 * [SYS/TEMP]).  *modseq_r (may be NULL) receives the new highestmodseq, or
 * is left alone when nothing was removed.  Blocks on disk: not from a loop. */
int store_msg_expunge(struct store *st, int64_t account_id, const char *mailbox,
                      const uint32_t *uids, size_t n_uids, uint64_t *modseq_r,
                      const char **error_r);

/* Calls fn for each UID expunged from the mailbox with a modseq greater
 * than since_modseq, in UID order.  Returns the count or -1. */
int store_msg_expunged_since(struct store *st, int64_t mailbox_id, uint64_t since_modseq,
                             void (*fn)(uint32_t uid, uint64_t modseq, void *arg), void *arg);

/* ---- maildrop lock (RFC 1939 4: exclusive access for a POP3 session) ---- */

/* Takes the account's maildrop lock for this process.  0 on success, -1 if
 * another holder has it (POP3 answers -ERR [IN-USE]).  Never blocks. */
int store_maildrop_lock(struct store *st, int64_t account_id);
/* Releases a lock taken with store_maildrop_lock (no-op if not held). */
void store_maildrop_unlock(struct store *st, int64_t account_id);
/* True if the account's maildrop is locked (diagnostics, tests). */
bool store_maildrop_locked(struct store *st, int64_t account_id);

/* ---- change notification ---- */

/* What changed (bits). */
#define STORE_CHANGE_APPEND  1u   /* new messages (delivery, APPEND, COPY) */
#define STORE_CHANGE_EXPUNGE 2u   /* messages removed */
#define STORE_CHANGE_FLAGS   4u   /* flags or keywords changed */
#define STORE_CHANGE_MAILBOX 8u   /* mailbox created, renamed or deleted */

struct store_change {
    int64_t account_id;
    int64_t mailbox_id;           /* 0: not about one mailbox (STORE_CHANGE_MAILBOX) */
    unsigned what;                /* STORE_CHANGE_* bits */
    uint64_t modseq;              /* the mailbox's highestmodseq after the change, 0 if unknown */
};

/* Called after a store function committed a change.  Runs on the thread
 * that committed (the store's commit thread, a pool thread, a CLI),
 * with the registry's lock held: do nothing slow and never call
 * store_watch_add/remove from it.  The usual body is event_active() on an
 * event owned by the watcher's loop, or loop_call with an argument that
 * outlives the watch. */
typedef void store_watch_fn(void *arg, const struct store_change *change);

struct store_watch;

/* Watches an account's mailbox (mailbox_id 0: every mailbox of the
 * account, and STORE_CHANGE_MAILBOX events).  NULL only when out of memory. */
struct store_watch *store_watch_add(struct store *st, int64_t account_id, int64_t mailbox_id,
                                    store_watch_fn *fn, void *arg);
/* Removes and frees a watch.  When it returns, fn is not running for this
 * watch and will not be called again.  NULL is ignored. */
void store_watch_remove(struct store_watch *w);
/* Tells every matching watch of st about a committed change.  Store
 * functions call it after their commits (deliveries in store_tx.c, the
 * expunge here, flag changes); safe from any thread. */
void store_watch_notify(struct store *st, const struct store_change *change);
#endif
