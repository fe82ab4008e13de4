/*
 * The store's mailbox-and-message interface for IMAP: the mailbox tree
 * (create, delete, rename, subscribe), message rows (UID, modseq, flags,
 * keywords, internaldate, size, file), flag changes, expunge, copy and
 * move, APPEND, quota figures and change notification.
 *
 * Every write bumps the mailbox's highestmodseq and gives each changed
 * message that modseq (one per operation), so a reader learns what
 * changed since a modseq it saw (RFC 7162).  Expunged UIDs are kept in
 * the table "expunged" with the modseq of their removal (QRESYNC
 * VANISHED).  UIDs come from mailboxes.uidnext and are never reused.
 *
 * Threads: any thread; reads run on the calling thread's connection.
 * Message writes (flags, expunge, copy/move, APPEND's index rows) are
 * group-committed: concurrent writers share one transaction and one
 * commit, each in its own savepoint, run by whichever waiting thread
 * leads the batch (see store_imap.c) while the others block; so
 * store_imap_flags' callback may run on another thread than the caller's
 * (before the call returns).  Mailbox-tree writes use BEGIN IMMEDIATE on
 * the caller's connection.  Functions return 0 (or a count) on
 * success and -1 on error with store_error_kind()/store_error_text() set
 * (STORE_ERR_NOTFOUND, STORE_ERR_EXISTS, STORE_ERR_INVALID, STORE_ERR_TEMP).
 */
#ifndef POSTEL_STORE_IMAP_H
#define POSTEL_STORE_IMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_IMAP_NAME_MAX     512     /* mailbox name bytes, NUL included */
#define STORE_IMAP_KEYWORDS_MAX 1024    /* space-separated keywords of one message */
#define STORE_IMAP_PATH_MAX     128

struct store_imap_mbox {
    int64_t id;
    char name[STORE_IMAP_NAME_MAX];
    char special_use[32];               /* "\\Sent" or "" */
    bool subscribed;
    uint32_t uidvalidity, uidnext;
    uint64_t highestmodseq;
};

struct store_imap_msg {
    uint32_t uid;
    uint32_t flags;                     /* STORE_FLAG_* */
    uint64_t modseq;
    int64_t internaldate;               /* Unix time */
    uint64_t size;
    char keywords[STORE_IMAP_KEYWORDS_MAX];
    char file[STORE_IMAP_PATH_MAX];     /* relative to data_dir */
};

/* ---- mailboxes ---- */
typedef void store_imap_mbox_fn(const struct store_imap_mbox *m, void *arg);
/* Calls fn for each mailbox of the account, sorted by name (INBOX first).
 * Returns the count or -1. */
int store_imap_mailboxes(struct store *st, int64_t account, store_imap_mbox_fn *fn, void *arg);
/* Looks a mailbox up by name ("INBOX" in any case is INBOX).  1 found and
 * *m filled, 0 no such mailbox, -1 error. */
int store_imap_mailbox_get(struct store *st, int64_t account, const char *name,
                           struct store_imap_mbox *m);
/* Creates a mailbox (subscribed) with a fresh UIDVALIDITY; special_use may
 * be NULL.  -1 with STORE_ERR_EXISTS when the name is taken. */
int store_imap_mailbox_create(struct store *st, int64_t account, const char *name,
                              const char *special_use);
/* Deletes a mailbox, its messages and their files (INBOX refused with
 * STORE_ERR_INVALID). */
int store_imap_mailbox_delete(struct store *st, int64_t account, const char *name);
/* Renames a mailbox and every mailbox below it (sep '/').  Renaming INBOX
 * moves its messages to a new mailbox `to` and leaves INBOX empty
 * (RFC 3501 6.3.5).  STORE_ERR_EXISTS if `to` exists, STORE_ERR_NOTFOUND if
 * `from` does not. */
int store_imap_mailbox_rename(struct store *st, int64_t account, const char *from, const char *to,
                              char sep);
int store_imap_mailbox_subscribe(struct store *st, int64_t account, const char *name, bool on);

struct store_imap_counts {
    uint32_t messages, unseen, deleted;
    uint64_t size;
};
int store_imap_counts(struct store *st, int64_t mailbox_id, struct store_imap_counts *c);

/* ---- messages ---- */
/* Every UID >= min_uid of the mailbox, ascending, in a malloc'ed array
 * (*uids_r NULL when none; caller frees).  Returns the count or -1. */
long store_imap_uids(struct store *st, int64_t mailbox_id, uint32_t min_uid, uint32_t **uids_r);
/* The mailbox's counters for a session's cheap "anything new?" check:
 * highestmodseq, uidnext, and how many messages have a UID <= max_uid.
 * 1, 0 when the mailbox is gone, -1 on error. */
int store_imap_sync_state(struct store *st, int64_t mailbox_id, uint32_t max_uid,
                          uint64_t *highestmodseq_r, uint32_t *uidnext_r, uint32_t *count_r);
typedef int store_imap_msg_fn(const struct store_imap_msg *m, void *arg);
/* Calls fn for each message with lo <= UID <= hi, ascending; stops when
 * fn returns non-zero.  Returns the count visited or -1. */
long store_imap_msgs(struct store *st, int64_t mailbox_id, uint32_t lo, uint32_t hi,
                     store_imap_msg_fn *fn, void *arg);
/* Messages whose modseq is > since, ascending UID.  Count or -1. */
long store_imap_changed(struct store *st, int64_t mailbox_id, uint64_t since,
                        store_imap_msg_fn *fn, void *arg);
/* UIDs expunged with a modseq > since, ascending (QRESYNC).  Count or -1. */
long store_imap_vanished(struct store *st, int64_t mailbox_id, uint64_t since, uint32_t **uids_r);
/* Opens a message file for reading (caller closes), or -1. */
int store_imap_msg_open(struct store *st, const struct store_imap_msg *m);
/* The distinct keywords used in the mailbox, space separated, into buf. */
int store_imap_keywords(struct store *st, int64_t mailbox_id, char *buf, size_t size);

enum store_imap_flag_op { STORE_IMAP_FLAGS_SET, STORE_IMAP_FLAGS_ADD, STORE_IMAP_FLAGS_REMOVE };
/* Outcome per message for store_imap_flags' callback. */
enum store_imap_flag_result {
    STORE_IMAP_CHANGED,       /* flags changed; m has the new flags and modseq */
    STORE_IMAP_UNCHANGED,     /* already so */
    STORE_IMAP_MODIFIED       /* modseq > unchangedsince: not changed (RFC 7162 3.1.3) */
};
typedef void store_imap_flag_fn(const struct store_imap_msg *m, enum store_imap_flag_result r,
                                void *arg);
/* Changes flags and keywords (space separated, may be "") of the messages
 * with the given UIDs (ascending; missing ones are skipped).  With
 * unchangedsince > 0 messages with a greater modseq are left alone.  All
 * changed messages get one new modseq (*modseq_r; 0 when nothing changed).
 * Returns the number changed or -1. */
long store_imap_flags(struct store *st, int64_t mailbox_id, const uint32_t *uids, size_t n,
                      enum store_imap_flag_op op, uint32_t flags, const char *keywords,
                      uint64_t unchangedsince, store_imap_flag_fn *fn, void *arg,
                      uint64_t *modseq_r);
/* Removes the messages flagged \Deleted, among uids when uids != NULL (UID
 * EXPUNGE), and their files; records them in "expunged".  The removed
 * UIDs, ascending, in a malloc'ed array.  Returns the count or -1. */
long store_imap_expunge(struct store *st, int64_t mailbox_id, const uint32_t *uids, size_t n,
                        uint32_t **expunged_r);
/* Copies (hard links; the files are immutable) or moves the messages with
 * the given UIDs into dst, in UID order.  src_uids_r/dst_uids_r (malloc'ed)
 * get the pairs actually copied (COPYUID).  STORE_ERR_INVALID with the
 * text "OVERQUOTA" when the account's quota would be exceeded.
 * Returns the count or -1. */
long store_imap_copy(struct store *st, int64_t account, int64_t src, int64_t dst,
                     const uint32_t *uids, size_t n, bool move, uint32_t **src_uids_r,
                     uint32_t **dst_uids_r, uint32_t *uidvalidity_r);
/* Stores a new message (APPEND): file written and synced, then indexed.
 * internaldate 0 means now.  STORE_ERR_INVALID "OVERQUOTA" as above. */
int store_imap_append(struct store *st, int64_t account, int64_t mailbox_id, const void *data,
                      size_t len, uint32_t flags, const char *keywords, int64_t internaldate,
                      uint32_t *uid_r, uint32_t *uidvalidity_r);
/* Bytes used by the account's messages and its limit (0 = none). */
int store_imap_quota(struct store *st, int64_t account, uint64_t *used_r, uint64_t *limit_r);

/* Sets the account's storage limit in bytes (0 = none), for the CLI
 * ("postel user quota ADDR SIZE").  -1 with STORE_ERR_NOTFOUND when there
 * is no such account. */
int store_imap_quota_set(struct store *st, const char *address, uint64_t bytes);

/* ---- change notification ----
 * A watcher is called after any change to the account's mailboxes
 * (deliveries, IMAP and POP3 writes; built on store_watch of
 * store_messages.h), on the thread that made the change,
 * with no store lock held except the watch list's own: fn must be quick
 * and must not call back into the watch functions (IMAP hops to its loop
 * with loop_call).  After store_imap_watch_remove() returns, fn is not
 * running and will not be called again. */
typedef void store_imap_watch_fn(void *arg, int64_t account_id);
struct store_imap_watch;
struct store_imap_watch *store_imap_watch_add(struct store *st, int64_t account,
                                              store_imap_watch_fn *fn, void *arg);
void store_imap_watch_remove(struct store_imap_watch *w);
/* Tells the account's watchers that something changed. */
void store_imap_notify(struct store *st, int64_t account);
#endif
