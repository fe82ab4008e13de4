/*
 * Inside the IMAP server: the session, the selected-mailbox view, the
 * command table and the helpers command files share.  Only src/imap
 * includes this.
 *
 * Shape (after Dovecot and OpenSMTPD): one file per command
 * (imap_cmd_*.c), registered in the table of imap_commands.c with flags
 * saying in which states it is valid; the session (imap_server.c) reads a
 * whole command (literals included), parses the tag and name, checks the
 * state and calls the handler with a struct imap_cmd whose pool lives
 * until the command is done.  A handler either answers (imap_ok/no/bad)
 * before returning, or hands its store writes to the thread pool with
 * imap_cmd_defer and answers from the done step back on the loop (every
 * writing command: APPEND, COPY, MOVE, STORE, EXPUNGE, CLOSE, FETCH
 * setting \Seen, CREATE, DELETE, RENAME, SUBSCRIBE); LOGIN and
 * AUTHENTICATE run the password check on the pool the same way
 * (imap_auth_start, imap_resume).
 *
 * Memory per session: the struct, the bufferevent, and while a mailbox is
 * selected one uint32 per message (the UID map, sequence number = index
 * + 1).  Flags are read from the store when needed, never kept.
 */
#ifndef POSTEL_IMAP_INT_H
#define POSTEL_IMAP_INT_H
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/util.h"
#include "imap/imap_parse.h"
#include "store/store_imap.h"

struct server;
struct worker;

enum imap_state { IMAP_S_NOTAUTH, IMAP_S_AUTH, IMAP_S_SELECTED, IMAP_S_LOGOUT };

enum imap_io {
    IMAP_IO_CMD,        /* reading a command line */
    IMAP_IO_LITERAL,    /* reading literal octets into the command */
    IMAP_IO_DISCARD,    /* skipping an over-long line or literal */
    IMAP_IO_AUTH,       /* reading a SASL response line */
    IMAP_IO_IDLE,       /* in IDLE, waiting for DONE */
    IMAP_IO_WAIT,       /* an asynchronous step runs; reading paused */
    IMAP_IO_TLS,        /* TLS handshake after STARTTLS */
    IMAP_IO_CLOSING,    /* flushing the last reply, then free */
};

#define IMAP_EN_CONDSTORE 1u
#define IMAP_EN_QRESYNC   2u
#define IMAP_EN_REV2      4u
#define IMAP_EN_UTF8      8u

/* The selected mailbox as this session knows it. */
struct imap_view {
    int64_t id;
    char name[STORE_IMAP_NAME_MAX];
    bool readonly;
    uint32_t uidvalidity, uidnext;
    uint64_t modseq;                    /* highest modseq reported */
    uint32_t *uids;                     /* ascending; seq = index + 1 */
    size_t n, alloc;
    struct imap_range recent[8];        /* UID ranges \Recent for this session */
    int n_recent;
    uint64_t own_modseq[8];             /* our own STOREs, not echoed again */
    int n_own;
    uint32_t *searchres;                /* SEARCHRES "$" (UIDs) */
    size_t n_searchres;
};

struct imap_watch_token;

struct imap_session {
    struct imap_session *next, *prev;   /* per-loop list, for draining */
    char sid[16];
    struct server *srv;
    struct worker *worker;
    const struct config *cfg;
    enum listen_role role;
    char ip[64];
    bool loopback;
    struct bufferevent *bev;
    void *ssl;                          /* SSL * */
    bool tls, compressed;
    enum imap_state state;
    enum imap_io io;
    unsigned enabled;                   /* IMAP_EN_* */
    int64_t account_id;
    char user[ADDRESS_MAX];
    int errors, auth_failures;
    bool async;                         /* the current command answers later */
    bool dead, drain_pending;
    bool logout_after;                  /* close once the reply is out */
    /* command assembly */
    struct strbuf cmd;
    uint64_t lit_left;
    bool lit_append;                    /* the command may carry a big literal */
    char discard_tag[IMAP_TAG_MAX + 1];
    bool discard_line, discard_toobig;
    /* the command waiting for an async step, IDLE or a SASL response */
    char tag[IMAP_TAG_MAX + 1];
    char auth_pass[512];
    int async_result;
    struct imap_view *sel;
    struct imap_watch_token *watch;
    struct event *timer, *delay_ev, *close_ev;
    int close_polls;
    uint64_t idle_started;
};

struct imap_cmd {
    struct imap_session *s;
    char *tag, *name;
    bool uid;
    struct imap_parser ps;
    struct imap_pool pool;
    bool no_expunge;                    /* FETCH/STORE/SEARCH: no EXPUNGE after */
    /* a command whose store step runs on the pool (imap_cmd_defer) */
    bool deferred;
    void (*work)(struct imap_cmd *c);
    void (*done)(struct imap_cmd *c);
    void *job;                          /* the command's own state (pool memory) */
    struct strbuf text;                 /* the command text, kept while deferred */
    enum store_error err_kind;          /* the store error work() left */
    char err_text[256];
};

typedef void imap_cmd_fn(struct imap_cmd *cmd);

/* Runs the blocking part of a command on the pool: the handler parses and
 * checks on the loop, puts what work() needs in c->job (pool memory) and
 * calls this as its last step.  Reading stops (pipelined commands wait);
 * work(c) then runs on a pool thread and must touch neither the session's
 * output nor its view; done(c) runs back on the session's loop with the
 * command intact and the store error work() left restored, and answers.
 * Reading resumes after done().  Not for commands in IDLE or TLS states. */
void imap_cmd_defer(struct imap_cmd *c, void (*work)(struct imap_cmd *c),
                    void (*done)(struct imap_cmd *c), void *job);

#define IMAP_CMD_NOTAUTH  1u    /* valid before login */
#define IMAP_CMD_AUTH     2u    /* valid when authenticated (and selected) */
#define IMAP_CMD_SELECTED 4u    /* needs a selected mailbox */
#define IMAP_CMD_UID      8u    /* valid after UID */
#define IMAP_CMD_NOEXP    16u   /* no EXPUNGE responses after it (RFC 3501 7.4.1) */

struct imap_command_def {
    const char *name;
    unsigned flags;
    imap_cmd_fn *fn;
};
/* The table (imap_commands.c); NULL when unknown. */
const struct imap_command_def *imap_command_find(const char *name);

/* ---- replies (imap_server.c) ---- */
void imap_send(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_send_raw(struct imap_session *s, const void *data, size_t len);
/* Tagged replies; OK and NO first send pending mailbox updates. */
void imap_ok(struct imap_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_no(struct imap_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imap_bad(struct imap_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* BAD for a syntax error, naming what the parser expected. */
void imap_bad_syntax(struct imap_cmd *c);
/* NO with the response code fitting the last store error. */
void imap_no_store(struct imap_cmd *c, const char *what);
/* The capability list for the session's current state. */
void imap_capability_string(struct imap_session *s, struct strbuf *out);
void imap_close_with(struct imap_session *s, const char *line);
/* Finishes an asynchronous command: resumes reading. */
void imap_resume(struct imap_session *s);
void imap_starttls(struct imap_cmd *c);
int imap_compress_start(struct imap_session *s);
/* Called by LOGIN/AUTHENTICATE: runs the password check on the pool. */
void imap_auth_start(struct imap_session *s, const char *tag, const char *user, const char *pass);
void imap_idle_start(struct imap_cmd *c);
/* SASL continuation: AUTHENTICATE waits for a line. */
void imap_auth_continue(struct imap_session *s, const char *line);

/* ---- the selected mailbox (imap_view.c) ---- */
/* Opens a view of the mailbox; sends the SELECT untagged data.  0 or -1
 * (replied).  qresync_* for SELECT (QRESYNC ...). */
int imap_view_open(struct imap_cmd *c, const struct store_imap_mbox *m, bool readonly);
void imap_view_close(struct imap_session *s);
/* Sends what changed since the last sync: EXPUNGE (or VANISHED) when
 * allowed, EXISTS and RECENT, FETCH FLAGS. */
void imap_sync(struct imap_session *s, bool allow_expunge);
/* Sequence number (1-based) of a UID, 0 if not in the view. */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
bool imap_view_recent(const struct imap_view *v, uint32_t uid);
/* Resolves a sequence or UID set against the view into ascending UIDs
 * (pool memory).  -1 with a BAD sent for an invalid sequence number. */
int imap_view_resolve(struct imap_cmd *c, const struct imap_seqset *set, bool uid,
                      uint32_t **uids_r, size_t *n_r);
/* Removes UIDs from the view and sends EXPUNGE or VANISHED. */
void imap_view_expunged(struct imap_session *s, const uint32_t *uids, size_t n);
void imap_view_own_modseq(struct imap_view *v, uint64_t modseq);
/* "(\Seen \Flagged kw)" for a message. */
void imap_flags_write(struct imap_session *s, const struct store_imap_msg *m, struct strbuf *out);
/* Parses a flag list "(...)" or a single flag into bits and keywords
 * (space separated, pool memory).  -1 on syntax error or \Recent. */
int imap_flags_parse(struct imap_cmd *c, bool list_required, uint32_t *flags_r, char **keywords_r);
/* Formats a UID list compactly ("1:3,7") into out. */
void imap_uidset_write(struct strbuf *out, const uint32_t *uids, size_t n);

/* ---- mailbox names ---- */
#define IMAP_HIER_SEP '/'
/* Normalizes a mailbox argument (INBOX in any case is INBOX). */
const char *imap_mailbox_name(const char *name);

/* ---- command handlers ---- */
imap_cmd_fn imap_cmd_capability, imap_cmd_noop, imap_cmd_logout, imap_cmd_starttls,
    imap_cmd_authenticate, imap_cmd_login, imap_cmd_select, imap_cmd_create, imap_cmd_delete,
    imap_cmd_rename, imap_cmd_subscribe, imap_cmd_list, imap_cmd_status, imap_cmd_append,
    imap_cmd_check, imap_cmd_close, imap_cmd_unselect, imap_cmd_expunge, imap_cmd_search,
    imap_cmd_fetch, imap_cmd_store, imap_cmd_copy, imap_cmd_idle, imap_cmd_enable,
    imap_cmd_namespace, imap_cmd_id, imap_cmd_getquota, imap_cmd_getquotaroot,
    imap_cmd_setquota, imap_cmd_compress, imap_cmd_sort, imap_cmd_thread;

/* ---- SEARCH shared with SORT and THREAD (imap_cmd_search.c) ---- */
struct imap_search_result {
    uint32_t *uids;                     /* malloc'ed, ascending; caller frees */
    size_t n;
    bool uses_modseq;                   /* a MODSEQ key was used (RFC 7162 3.1.5) */
    uint64_t max_modseq;                /* highest modseq among the hits */
};
/* Parses search-keys from the parser's position to the end of the
 * command and evaluates them on the selected mailbox.  0, or -1 with the
 * reply (BAD or NO) sent. */
int imap_search_run(struct imap_cmd *c, struct imap_search_result *r);
/* Parses the charset argument of SORT and THREAD: 0 for UTF-8 and
 * US-ASCII, else -1 with BAD or NO [BADCHARSET] sent. */
int imap_search_charset(struct imap_cmd *c);
/* ESEARCH/ESORT result options (RFC 4731, RFC 5267). */
#define IMAP_RET_MIN   1u
#define IMAP_RET_MAX   2u
#define IMAP_RET_ALL   4u
#define IMAP_RET_COUNT 8u
#define IMAP_RET_SAVE  16u   /* SEARCHRES (RFC 5182): SEARCH only */
/* Parses an optional "RETURN (...) " at the parser's position: 0 (with
 * *extended_r set when present, ALL when the list is empty), or -1 (BAD;
 * SAVE is refused unless allow_save). */
int imap_parse_search_return(struct imap_cmd *c, bool allow_save, unsigned *ret_r,
                             bool *extended_r);
/* The result line of SEARCH/SORT ("* SEARCH 1 2 ...", verb naming the
 * command) or, when extended, of ESEARCH/ESORT (RFC 4731, RFC 5267) with
 * the RETURN options in ret, into sb (no CRLF).  nums: n message numbers
 * or UIDs, in reply order. */
void imap_write_search_reply(struct strbuf *sb, const char *verb, bool extended,
                             const struct imap_cmd *c, unsigned ret, const uint32_t *nums,
                             size_t n, bool uses_modseq, uint64_t max_modseq);

/* STATUS data items for one mailbox into out (also LIST-STATUS). */
int imap_status_write(struct imap_session *s, const struct store_imap_mbox *m,
                      unsigned items, struct strbuf *out);
#define IMAP_STATUS_MESSAGES   1u
#define IMAP_STATUS_RECENT     2u
#define IMAP_STATUS_UIDNEXT    4u
#define IMAP_STATUS_UIDVALIDITY 8u
#define IMAP_STATUS_UNSEEN     16u
#define IMAP_STATUS_HIGHESTMODSEQ 32u
#define IMAP_STATUS_SIZE       64u
#define IMAP_STATUS_DELETED    128u
int imap_status_items_parse(struct imap_cmd *c, unsigned *items_r);

/* \Recent claims across sessions (imap_view.c): the highest UID some
 * session has seen as recent; returns the previous claim. */
uint32_t imap_recent_claim(int64_t mailbox_id, uint32_t upto, bool claim);

struct store *imap_store(struct imap_session *s);
#endif
