/*
 * Mailboxes: creation of an account's standard set, status for the CLI
 * (and IMAP STATUS later), opening a stored message by UID.
 */
#include "store/store_int.h"
#include "store/store_messages.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

/* RFC 6154 SPECIAL-USE attributes of the standard mailboxes, in the order
 * of STORE_STD_MAILBOXES. */
static const char *const std_special_use[] = { NULL, "\\Sent", "\\Drafts", "\\Junk", "\\Trash",
                                               "\\Archive" };

/* A UIDVALIDITY never handed out before in this store (RFC 3501 2.3.1.1:
 * a recreated mailbox must not reuse one): the larger of the clock and
 * the last value + 1. */
static int64_t next_uidvalidity(struct store_conn *c, const char **error_r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "UPDATE meta SET value = max(value + 1, ?1) WHERE key = 'uidvalidity'"
                           " RETURNING value",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "mailbox");
    sqlite3_bind_int64(s, 1, store_now() & 0xffffffffLL);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (v < 0 || v > 0xffffffffLL)
        store_fail_db(c, error_r, "mailbox");
    sqlite3_finalize(s);
    return v > 0xffffffffLL ? -1 : v;
}

int store_mailboxes_create_std(struct store_conn *c, int64_t account_id, const char **error_r)
{
    static const char *const names[] = STORE_STD_MAILBOXES;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO mailboxes(account_id, name, special_use, subscribed,"
                           " uidvalidity, uidnext, highestmodseq) VALUES (?1, ?2, ?3, 1, ?4, 1, 1)",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "mailbox");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int64_t uidvalidity = next_uidvalidity(c, error_r);
        if (uidvalidity < 0) {
            sqlite3_finalize(s);
            return -1;
        }
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, account_id);
        store_bind_text(s, 2, names[i]);
        store_bind_text(s, 3, std_special_use[i]);
        sqlite3_bind_int64(s, 4, uidvalidity);
        if (sqlite3_step(s) != SQLITE_DONE) {
            store_fail_db(c, error_r, "mailbox");
            sqlite3_finalize(s);
            return -1;
        }
    }
    sqlite3_finalize(s);
    return 0;
}

/* INBOX first, then the others in creation order. */
int store_mailbox_status_all(struct store *st, int64_t account_id,
                             void (*fn)(const struct store_mailbox_status *s, void *arg), void *arg)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT b.name, b.uidvalidity, b.uidnext, b.highestmodseq,"
                           " count(m.id), coalesce(sum((m.flags & 1) = 0), 0),"
                           " coalesce(sum(m.size), 0)"
                           " FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id"
                           " WHERE b.account_id = ?1 GROUP BY b.id"
                           " ORDER BY b.name <> 'INBOX', b.id",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "mailbox");
    sqlite3_bind_int64(s, 1, account_id);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_mailbox_status ms;
        memset(&ms, 0, sizeof(ms));
        str_copy(ms.name, (const char *)sqlite3_column_text(s, 0), sizeof(ms.name));
        ms.uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
        ms.uidnext = (uint32_t)sqlite3_column_int64(s, 2);
        ms.highestmodseq = (uint64_t)sqlite3_column_int64(s, 3);
        ms.messages = (uint32_t)sqlite3_column_int64(s, 4);
        ms.unseen = (uint32_t)sqlite3_column_int64(s, 5);
        ms.size = (uint64_t)sqlite3_column_int64(s, 6);
        ms.recent = 0; /* \Recent is per IMAP session (and gone in IMAP4rev2) */
        fn(&ms, arg);
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "mailbox");
    sqlite3_finalize(s);
    return n;
}

/* Mailbox names are case-sensitive except INBOX (RFC 3501 5.1). */
int store_message_open(struct store *st, int64_t account_id, const char *mailbox, uint32_t uid)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT m.file FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                           " WHERE b.account_id = ?1 AND b.name = ?2 AND m.uid = ?3",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "message");
    sqlite3_bind_int64(s, 1, account_id);
    store_bind_text(s, 2, strcasecmp(mailbox, "INBOX") == 0 ? "INBOX" : mailbox);
    sqlite3_bind_int64(s, 3, uid);
    int rc = sqlite3_step(s), fd = -1;
    char file[STORE_RELPATH_MAX] = "";
    if (rc == SQLITE_ROW) {
        const unsigned char *f = sqlite3_column_text(s, 0);
        str_copy(file, f ? (const char *)f : "", sizeof(file));
    } else if (rc == SQLITE_DONE) {
        store_fail(STORE_ERR_NOTFOUND, NULL, "no message with UID %u in %s", uid, mailbox);
    } else {
        store_fail_db(c, NULL, "message");
    }
    sqlite3_finalize(s);
    if (file[0] != '\0')
        fd = store_msg_open(st, file); /* a file, or a blob in index.db */
    return fd;
}
