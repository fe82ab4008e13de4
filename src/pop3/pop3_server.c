/*
 * POP3 server session (RFC 1939 with RFC 2449 CAPA, RFC 2595 STLS and
 * RFC 5034 AUTH PLAIN).
 *
 * Shape (as in smtp_server.c): one session struct, an explicit state that
 * only pop3_set_state() changes, a command table with the states each
 * command is valid in, and per command a handler that checks and then
 * proceeds.  Work that must not run on the loop goes to the pool with the
 * session in POP3_S_WAIT (reading paused): the password check together
 * with the maildrop lock and the listing, and the expunge at QUIT.
 * RETR/TOP stream the message file in chunks (POP3_S_SEND): a chunk that
 * is in the page cache is read on the loop (preadv2 RWF_NOWAIT), any other
 * read goes to the pool; output is flow-controlled by the bufferevent's
 * write watermark, so a large message never sits in memory whole.
 *
 * RFC 1939 semantics kept here: the maildrop is locked from login to the
 * end of the session; message numbers are those of the listing taken at
 * login; DELE only marks, and only QUIT in the TRANSACTION state removes
 * the marked messages (all or none, in one store transaction); any other
 * end (drop, timeout, shutdown) removes nothing.  RFC 2449 policies come
 * from [pop3]: EXPIRE n adds the messages RETR'd in the session that are
 * at least n days old to those marks at QUIT; LOGIN-DELAY refuses a login
 * that follows the account's last one too soon (an in-memory table).
 *
 * Lifetime: the session is freed only from top-level callbacks (event,
 * timer, job completion), never inside a handler, so handlers may touch
 * it after replying.  Bufferevents use deferred callbacks for the same
 * reason.
 */
#include "pop3/pop3_server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "net/server.h"
#include "net/session.h"
#include "net/tls.h"
#include "pop3/pop3_parse.h"
#include "core/sasl.h"
#include "store/store.h"
#include "store/store_messages.h"

#define POP3_CHUNK     (64u * 1024)   /* bytes read from a message file at once */
#define POP3_OUT_HIGH  (256u * 1024)  /* stop reading while this much is unsent */
#define POP3_OUT_LOW   (64u * 1024)   /* ... and go on below this */
#define POP3_IN_HIGH   (64u * 1024)   /* pipelined input held while busy */
#define POP3_MAILBOX "INBOX"

enum pop3_state {
    POP3_S_AUTHORIZATION,  /* RFC 1939 4: before login */
    POP3_S_SASL,           /* AUTH: reading a SASL response line */
    POP3_S_TRANSACTION,    /* RFC 1939 5: logged in, maildrop locked */
    POP3_S_WAIT,           /* a pool job or a delay runs; reading paused */
    POP3_S_SEND,           /* streaming a RETR/TOP response */
    POP3_S_TLS,            /* handshake after STLS */
    POP3_S_CLOSING,        /* flushing the last reply, then free */
};

static const char *const state_names[] = {
    "authorization", "sasl", "transaction", "wait", "send", "tls", "closing",
};

enum auth_result { AUTH_OK, AUTH_FAIL, AUTH_IN_USE, AUTH_TEMP, AUTH_LOGIN_DELAY };

struct pop3_session {
    struct pop3_session *next, *prev;     /* per-loop list, for draining */
    bool unlocked;                        /* maildrop lock released (QUIT) */
    char sid[16];
    struct server *srv;
    struct worker *worker;
    const struct config *cfg;
    enum listen_role role;
    char ip[64];
    bool loopback;
    struct bufferevent *bev;
    SSL *ssl;
    bool tls;
    enum pop3_state state;
    struct event *timer;
    struct event *delay_ev;               /* failed-login delay */
    struct event *close_ev;               /* closes once the output is flushed */
    int close_polls;
    bool discarding;                      /* inside an over-long line */
    int errors;
    int auth_failures;
    bool dead;                            /* connection gone while a job runs */
    int jobs;                             /* pool jobs that refer to this session */
    bool drain_pending;                   /* close when the current step ends */
    bool in_process;                      /* inside pop3_process_input */
    bool eof;                             /* the client closed its side */

    /* AUTHORIZATION */
    char user[ADDRESS_MAX];               /* after USER, until PASS */
    bool user_given;
    char auth_user[ADDRESS_MAX];
    char auth_pass[512];
    const char *auth_mech;
    enum auth_result auth_result;
    char delayed_reply[160];

    /* TRANSACTION */
    int64_t account_id;                   /* > 0 with the maildrop lock held */
    struct store_msg_list list;           /* fixed at login (RFC 1939 5) */
    bool *deleted;                        /* list.n marks */
    bool *retrieved;                      /* list.n: sent whole by RETR (EXPIRE) */
    size_t n_deleted;
    uint64_t deleted_size;

    /* RETR/TOP streaming */
    int send_fd;
    uint64_t send_off, send_size;
    struct pop3_stuff stuff;
    struct pop3_chunk *chunk;             /* being read into (a reference held) */
    ssize_t chunk_len;                    /* result of a pool read */
    int chunk_errno;
    bool reading;                         /* a pool read is outstanding */
    uint32_t send_msg;

    /* QUIT */
    int expunge_result;
    char expunge_error[200];
};

static __thread struct pop3_session *sessions_head;

/* RWF_NOWAIT reads: cleared for good when the kernel or file system says
 * it cannot do them (then every chunk is read on the pool). */
static atomic_bool nowait_reads = true;

static void pop3_process_input(struct pop3_session *s);
static void pop3_free(struct pop3_session *s);
static void pop3_free_now(struct pop3_session *s);

/* ---- state and replies ---- */

static void pop3_set_state(struct pop3_session *s, enum pop3_state st)
{
    if (s->state == st)
        return;
    log_debug(s->sid, "event=state from=%s to=%s", state_names[s->state], state_names[st]);
    s->state = st;
}

static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    net_send_vline(s->bev, s->sid, fmt, ap);
    va_end(ap);
}

static struct evbuffer *pop3_out(struct pop3_session *s)
{
    return bufferevent_get_output(s->bev);
}

static void pop3_close_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pop3_session *s = arg;
    if (s->jobs > 0)
        return; /* the job's completion comes back here */
    if (net_close_poll(s->bev, s->close_ev, &s->close_polls))
        pop3_free(s);
}

/* Sends a last reply (text may be NULL) and closes once it is on its way:
 * the write callback frees a plain connection when its output is empty,
 * a bounded poll covers the socket under a TLS filter.  Never frees
 * synchronously, so callers may touch the session after it. */
static void pop3_close_with(struct pop3_session *s, const char *text)
{
    if (text)
        pop3_reply(s, "%s", text);
    pop3_set_state(s, POP3_S_CLOSING);
    if (s->bev == NULL || s->dead)
        return;
    bufferevent_disable(s->bev, EV_READ);
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    if (s->close_ev == NULL)
        s->close_ev = evtimer_new(s->worker->base, pop3_close_poll_cb, s);
    if (s->close_ev == NULL) {
        s->dead = true; /* the next event frees */
        return;
    }
    struct timeval tv = { 0, 0 };
    evtimer_add(s->close_ev, &tv);
}

/* -ERR for bad input: counts towards the junk-command limit. */
static void pop3_error(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pop3_error(struct pop3_session *s, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pop3_reply(s, "-ERR %s", text);
    log_info(s->sid, "event=reject reply=\"-ERR %s\"", text);
    if (++s->errors >= POP3_MAX_ERRORS)
        pop3_close_with(s, "-ERR too many errors, closing connection");
}

/* RFC 1939 3: the autologout timer is at least 10 minutes.  The default
 * idle_timeout (5m, meant for SMTP) is raised to that; an explicitly
 * configured value applies as is.  Before login the shorter pre-auth
 * limit applies. */
static uint64_t pop3_timeout(const struct pop3_session *s)
{
    uint64_t t = s->cfg->idle_timeout;
    if (t == DEFAULT_SMTP_TIMEOUT)
        t = POP3_TIMEOUT_DEFAULT;
    if (s->account_id <= 0 && t > DEFAULT_PREAUTH_TIMEOUT)
        t = DEFAULT_PREAUTH_TIMEOUT;
    return t;
}

static void pop3_touch(struct pop3_session *s)
{
    struct timeval tv = { (time_t)pop3_timeout(s), 0 };
    if (s->timer)
        event_add(s->timer, &tv);
}

/* The state commands come from: after login TRANSACTION. */
static enum pop3_state pop3_command_state(const struct pop3_session *s)
{
    return s->account_id > 0 ? POP3_S_TRANSACTION : POP3_S_AUTHORIZATION;
}

/* Back to the command state after a wait or a send, without reading. */
static void pop3_resume_state(struct pop3_session *s)
{
    if (s->state == POP3_S_CLOSING)
        return;
    if (s->drain_pending) {
        pop3_close_with(s, "-ERR [SYS/TEMP] server shutting down");
        return;
    }
    pop3_set_state(s, pop3_command_state(s));
    pop3_touch(s);
    if (!s->eof)
        bufferevent_enable(s->bev, EV_READ);
}

/* Back to reading commands after an asynchronous step (from a top-level
 * callback: a job's completion or a timer). */
static void pop3_resume(struct pop3_session *s)
{
    pop3_resume_state(s);
    pop3_process_input(s);
}

/* A pool job finished.  True if the caller must stop: the session was
 * freed (its connection went away meanwhile) or is closing (the close is
 * carried on here). */
static bool pop3_job_done(struct pop3_session *s)
{
    s->jobs--;
    if (s->dead) {
        if (s->jobs == 0)
            pop3_free_now(s);
        return true;
    }
    if (s->state == POP3_S_CLOSING) {
        if (s->jobs == 0 && s->close_ev != NULL) {
            struct timeval tv = { 0, 0 };
            evtimer_add(s->close_ev, &tv);
        }
        return true;
    }
    return false;
}

/* ---- the maildrop ---- */

static void pop3_maildrop_size(const struct pop3_session *s, size_t *count_r, uint64_t *size_r)
{
    uint64_t size = 0;
    for (size_t i = 0; i < s->list.n; i++)
        size += s->list.msgs[i].size;
    *count_r = s->list.n - s->n_deleted;
    *size_r = size - s->deleted_size;
}

/* Message number to index (RFC 1939 5: deleted messages are not
 * addressable).  -1 after answering. */
static long pop3_msg_index(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (cmd->msg == 0 || cmd->msg > s->list.n) {
        pop3_error(s, "no such message, only %zu messages in maildrop", s->list.n);
        return -1;
    }
    if (s->deleted[cmd->msg - 1]) {
        pop3_error(s, "message %u already deleted", cmd->msg);
        return -1;
    }
    return (long)cmd->msg - 1;
}

/* ---- AUTHORIZATION ---- */

static bool pop3_auth_allowed_here(const struct pop3_session *s)
{
    return s->tls || (s->loopback && s->cfg->plaintext_loopback);
}

/* RFC 2449 6.5 LOGIN-DELAY: the last successful login of each account,
 * kept in memory (a restart forgets it) in a bounded table; when the
 * table is full the oldest entry makes room. */
#define POP3_LOGIN_SLOTS 1024

static pthread_mutex_t login_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int64_t account_id;
    uint64_t at;                          /* monotonic seconds */
} login_slots[POP3_LOGIN_SLOTS];

static uint64_t pop3_mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec + 1; /* 0 marks a free slot */
}

/* True when the account may log in now: no delay configured, or its last
 * login was at least delay seconds ago. */
static bool pop3_login_delay_ok(int64_t account_id, uint64_t delay)
{
    if (delay == 0)
        return true;
    uint64_t now = pop3_mono_seconds();
    bool ok = true;
    pthread_mutex_lock(&login_lock);
    for (size_t i = 0; i < POP3_LOGIN_SLOTS; i++)
        if (login_slots[i].account_id == account_id && login_slots[i].at != 0)
            ok = now - login_slots[i].at >= delay;
    pthread_mutex_unlock(&login_lock);
    return ok;
}

static void pop3_login_delay_note(int64_t account_id)
{
    uint64_t now = pop3_mono_seconds();
    size_t slot = 0;
    pthread_mutex_lock(&login_lock);
    for (size_t i = 0; i < POP3_LOGIN_SLOTS; i++) {
        if (login_slots[i].account_id == account_id) {
            slot = i;
            break;
        }
        if (login_slots[i].at < login_slots[slot].at)
            slot = i;
    }
    login_slots[slot].account_id = account_id;
    login_slots[slot].at = now;
    pthread_mutex_unlock(&login_lock);
}

/* Pool thread: the password, then the lock, then the listing.  The lock
 * is only tried for a correct password, so [IN-USE] reveals nothing. */
static void pop3_auth_work(void *arg)
{
    struct pop3_session *s = arg;
    struct store *st = s->srv->store;
    int64_t id = store_user_auth(st, s->auth_user, s->auth_pass);
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    if (id <= 0) {
        s->auth_result = id == 0 ? AUTH_FAIL : AUTH_TEMP;
        return;
    }
    if (!pop3_login_delay_ok(id, s->cfg->pop3_login_delay)) {
        s->auth_result = AUTH_LOGIN_DELAY;
        return;
    }
    if (store_maildrop_lock(st, id) < 0) {
        s->auth_result = AUTH_IN_USE;
        return;
    }
    if (store_msg_list_load(st, id, POP3_MAILBOX, &s->list) < 0) {
        log_error(s->sid, "event=store_error op=list error=\"%s\"", store_error_text());
        store_maildrop_unlock(st, id);
        s->auth_result = AUTH_TEMP;
        return;
    }
    pop3_login_delay_note(id);
    s->account_id = id;
    s->auth_result = AUTH_OK;
}

static void pop3_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pop3_session *s = arg;
    pop3_reply(s, "%s", s->delayed_reply);
    pop3_resume(s);
}

static void pop3_login_ok(struct pop3_session *s)
{
    s->deleted = calloc(s->list.n + 1, sizeof(*s->deleted));
    s->retrieved = calloc(s->list.n + 1, sizeof(*s->retrieved));
    if (s->deleted == NULL || s->retrieved == NULL) {
        pop3_close_with(s, "-ERR [SYS/TEMP] out of memory");
        return;
    }
    size_t count;
    uint64_t size;
    pop3_maildrop_size(s, &count, &size);
    log_info(s->sid, "event=login user=%s mech=%s messages=%zu size=%llu", s->auth_user,
             s->auth_mech, count, (unsigned long long)size);
    pop3_reply(s, "+OK maildrop has %zu messages (%llu octets)", count, (unsigned long long)size);
    pop3_resume(s);
}

/* A failed login: growing delays (0.2 s, 1.2 s, 2.2 s ... 5.2 s), and the
 * connection is closed at cfg->auth_failures failures. */
static void pop3_login_failed(struct pop3_session *s)
{
    s->auth_failures++;
    log_warn(s->sid, "event=auth result=fail user=%s mech=%s failures=%d ip=%s", s->auth_user,
             s->auth_mech, s->auth_failures, s->ip);
    if (s->auth_failures >= s->cfg->auth_failures) {
        pop3_close_with(s, "-ERR [AUTH] too many authentication failures, closing connection");
        return;
    }
    str_copy(s->delayed_reply, "-ERR [AUTH] invalid user name or password",
             sizeof(s->delayed_reply));
    struct timeval tv = { s->auth_failures > 5 ? 5 : s->auth_failures - 1, 200000 };
    if (s->delay_ev == NULL)
        s->delay_ev = evtimer_new(s->worker->base, pop3_delay_cb, s);
    if (s->delay_ev == NULL) {
        pop3_close_with(s, s->delayed_reply);
        return;
    }
    evtimer_add(s->delay_ev, &tv);
}

static void pop3_auth_done(void *arg)
{
    struct pop3_session *s = arg;
    if (pop3_job_done(s))
        return;
    switch (s->auth_result) {
    case AUTH_OK:
        pop3_login_ok(s);
        break;
    case AUTH_LOGIN_DELAY:
        log_warn(s->sid, "event=auth result=login_delay user=%s", s->auth_user);
        pop3_reply(s, "-ERR [LOGIN-DELAY] logged in less than %llu seconds ago, try again later",
                   (unsigned long long)s->cfg->pop3_login_delay);
        pop3_resume(s);
        break;
    case AUTH_IN_USE:
        log_warn(s->sid, "event=auth result=in_use user=%s", s->auth_user);
        pop3_reply(s, "-ERR [IN-USE] maildrop is locked by another session, try again later");
        pop3_resume(s);
        break;
    case AUTH_TEMP:
        pop3_reply(s, "-ERR [SYS/TEMP] temporary failure, try again later");
        pop3_resume(s);
        break;
    case AUTH_FAIL:
        pop3_login_failed(s);
        break;
    }
}

static void pop3_auth_check(struct pop3_session *s, const char *user, const char *pass)
{
    pop3_set_state(s, POP3_S_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    str_copy(s->auth_user, user, sizeof(s->auth_user));
    if (user[0] == '\0' || strlen(user) >= sizeof(s->auth_user) ||
        strlen(pass) >= sizeof(s->auth_pass)) {
        pop3_login_failed(s);
        return;
    }
    str_copy(s->auth_pass, pass, sizeof(s->auth_pass));
    s->jobs++;
    pool_submit(s->worker->base, pop3_auth_work, pop3_auth_done, s);
}

/* -ERR [AUTH] when plaintext login is not allowed on this connection
 * (RFC 2595 2.3; loopback only under plaintext_loopback). */
static bool pop3_auth_refused(struct pop3_session *s)
{
    if (pop3_auth_allowed_here(s))
        return false;
    pop3_error(s, "[AUTH] plaintext authentication disallowed on non-TLS connections, use STLS");
    return true;
}

static void cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (pop3_auth_refused(s))
        return;
    if (strlen(cmd->arg) >= sizeof(s->user)) {
        pop3_error(s, "user name too long");
        return;
    }
    str_copy(s->user, cmd->arg, sizeof(s->user));
    s->user_given = true;
    pop3_reply(s, "+OK send PASS");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (pop3_auth_refused(s))
        return;
    if (!s->user_given) {
        pop3_error(s, "send USER first");
        return;
    }
    s->user_given = false;
    s->auth_mech = "USER";
    pop3_auth_check(s, s->user, cmd->arg);
}

static void cmd_apop(struct pop3_session *s, const struct pop3_command *cmd)
{
    pop3_error(s, "APOP is not supported, use USER/PASS or AUTH PLAIN over TLS");
}

/* An AUTH PLAIN response (RFC 4616), as initial response or continuation. */
static void pop3_auth_plain(struct pop3_session *s, const char *b64)
{
    char authzid[ADDRESS_MAX], authcid[ADDRESS_MAX], passwd[512];
    if (sasl_plain_decode(b64, authzid, sizeof(authzid), authcid, sizeof(authcid), passwd,
                          sizeof(passwd)) < 0) {
        pop3_error(s, "[AUTH] cannot decode AUTH PLAIN response");
        return;
    }
    if (authzid[0] && strcasecmp(authzid, authcid) != 0) {
        explicit_bzero(passwd, sizeof(passwd));
        pop3_error(s, "[AUTH] authorization identity not permitted");
        return;
    }
    s->auth_mech = "PLAIN";
    pop3_auth_check(s, authcid, passwd);
    explicit_bzero(passwd, sizeof(passwd));
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (cmd->arg[0] == '\0') {
        /* The listing form of the pre-RFC 5034 drafts, still sent by
         * some clients. */
        pop3_reply(s, "+OK supported mechanisms follow");
        if (pop3_auth_allowed_here(s))
            pop3_reply(s, "PLAIN");
        pop3_reply(s, ".");
        return;
    }
    if (pop3_auth_refused(s))
        return;
    if (strcasecmp(cmd->arg, "PLAIN") != 0) {
        pop3_error(s, "unsupported authentication mechanism %s", cmd->arg);
        return;
    }
    s->user_given = false;
    if (cmd->arg2 != NULL) {
        /* RFC 5034 4: "=" is an empty initial response */
        pop3_auth_plain(s, strcmp(cmd->arg2, "=") == 0 ? "" : cmd->arg2);
        return;
    }
    pop3_reply(s, "+ ");
    pop3_set_state(s, POP3_S_SASL);
}

static void pop3_sasl_line(struct pop3_session *s, const char *line)
{
    pop3_set_state(s, POP3_S_AUTHORIZATION);
    if (strcmp(line, "*") == 0) {
        pop3_error(s, "authentication cancelled"); /* RFC 5034 4 */
        return;
    }
    pop3_auth_plain(s, line);
}

/* ---- CAPA, STLS, QUIT ---- */

/* RFC 2449 5: USER, SASL and STLS only where they can be used. */
static void cmd_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
    bool pre = s->account_id <= 0;
    struct evbuffer *out = pop3_out(s);
    const struct config *cfg = s->cfg;
    evbuffer_add_printf(out, "+OK capability list follows\r\n"
                             "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    /* RFC 2449 6.5, 6.7: the policy of this server, the same for every user */
    if (cfg->pop3_expire < 0)
        evbuffer_add_printf(out, "EXPIRE NEVER\r\n");
    else
        evbuffer_add_printf(out, "EXPIRE %d\r\n", cfg->pop3_expire);
    if (cfg->pop3_login_delay > 0)
        evbuffer_add_printf(out, "LOGIN-DELAY %llu\r\n",
                            (unsigned long long)cfg->pop3_login_delay);
    if (pre && pop3_auth_allowed_here(s))
        evbuffer_add_printf(out, "USER\r\nSASL PLAIN\r\n");
    if (pre && !s->tls && s->srv->tls != NULL && s->role == ROLE_POP3)
        evbuffer_add_printf(out, "STLS\r\n");
    evbuffer_add_printf(out, "IMPLEMENTATION postel\r\n.\r\n");
}

static void pop3_bev_tune(struct bufferevent *bev);
static void pop3_read_cb(struct bufferevent *bev, void *arg);
static void pop3_write_cb(struct bufferevent *bev, void *arg);
static void pop3_event_cb(struct bufferevent *bev, short what, void *arg);

/* RFC 2595 4: STLS only in the AUTHORIZATION state. */
static void cmd_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (s->tls) {
        pop3_error(s, "TLS already active");
        return;
    }
    if (s->srv->tls == NULL) {
        pop3_error(s, "TLS not available");
        return;
    }
    SSL *ssl = SSL_new(s->srv->tls);
    if (ssl == NULL) {
        pop3_reply(s, "-ERR [SYS/TEMP] TLS not available due to a temporary failure");
        return;
    }
    pop3_reply(s, "+OK begin TLS negotiation");
    /* Anything pipelined behind STLS came in clear text before the
     * handshake: discard it (CVE-2011-0411 class). */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk > 0) {
        log_warn(s->sid, "event=stls_pipelined_discarded bytes=%zu", junk);
        evbuffer_drain(in, junk);
    }
    struct bufferevent *tlsbev =
        bufferevent_openssl_filter_new(s->worker->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (tlsbev == NULL) {
        SSL_free(ssl);
        pop3_close_with(s, "-ERR [SYS/TEMP] TLS setup failed");
        return;
    }
    /* The TLS filter stops writing into the socket bufferevent at its high
     * watermark, so that buffer stays bounded too. */
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, POP3_OUT_HIGH);
    s->bev = tlsbev;
    s->ssl = ssl;
    /* RFC 2595 4: forget what the client said before TLS */
    s->user_given = false;
    s->user[0] = '\0';
    pop3_set_state(s, POP3_S_TLS);
    bufferevent_setcb(tlsbev, pop3_read_cb, pop3_write_cb, pop3_event_cb, s);
    pop3_bev_tune(tlsbev);
    bufferevent_setwatermark(tlsbev, EV_WRITE, POP3_OUT_LOW, 0);
    bufferevent_setwatermark(tlsbev, EV_READ, 0, POP3_IN_HIGH);
    bufferevent_enable(tlsbev, EV_READ | EV_WRITE);
}

/* Pool thread: UPDATE (RFC 1939 6). */
static void pop3_expunge_work(void *arg)
{
    struct pop3_session *s = arg;
    uint32_t *uids = malloc((s->n_deleted + 1) * sizeof(*uids));
    if (uids == NULL) {
        s->expunge_result = -1;
        str_copy(s->expunge_error, "out of memory", sizeof(s->expunge_error));
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->list.n; i++)
        if (s->deleted[i])
            uids[n++] = s->list.msgs[i].uid;
    const char *err = NULL;
    s->expunge_result =
        store_msg_expunge(s->srv->store, s->account_id, POP3_MAILBOX, uids, n, NULL, &err);
    if (s->expunge_result < 0)
        str_copy(s->expunge_error, err ? err : "?", sizeof(s->expunge_error));
    free(uids);
}

/* Lets go of the maildrop before the last reply goes out, so a client
 * that logs in again right after QUIT's +OK never finds it locked. */
static void pop3_unlock(struct pop3_session *s)
{
    if (s->account_id > 0 && !s->unlocked) {
        store_maildrop_unlock(s->srv->store, s->account_id);
        s->unlocked = true;
    }
}

static void pop3_expunge_done(void *arg)
{
    struct pop3_session *s = arg;
    size_t count;
    uint64_t size;
    pop3_maildrop_size(s, &count, &size);
    if (s->expunge_result < 0)
        log_error(s->sid, "event=store_error op=expunge error=\"%s\"", s->expunge_error);
    else
        log_info(s->sid, "event=update user=%s deleted=%d left=%zu", s->auth_user,
                 s->expunge_result, count);
    if (pop3_job_done(s))
        return;
    pop3_unlock(s);
    if (s->expunge_result < 0) {
        /* RFC 1939 6 */
        pop3_close_with(s, "-ERR [SYS/TEMP] some deleted messages not removed, try again later");
        return;
    }
    char text[160];
    snprintf(text, sizeof(text), "+OK postel POP3 server signing off (%zu messages left)", count);
    pop3_close_with(s, text);
}

/* RFC 2449 6.7 EXPIRE n: n days is the least time a message stays.  At
 * QUIT the messages this session retrieved (RETR, not TOP) that arrived
 * at least n days ago are removed as if deleted; with EXPIRE 0 every
 * retrieved message is. */
static void pop3_expire_retrieved(struct pop3_session *s)
{
    if (s->cfg->pop3_expire < 0)
        return;
    int64_t cutoff = (int64_t)time(NULL) - (int64_t)s->cfg->pop3_expire * 86400;
    for (size_t i = 0; i < s->list.n; i++) {
        if (!s->retrieved[i] || s->deleted[i] || s->list.msgs[i].internaldate > cutoff)
            continue;
        s->deleted[i] = true;
        s->n_deleted++;
        s->deleted_size += s->list.msgs[i].size;
    }
}

/* RFC 1939 6: QUIT in the TRANSACTION state enters UPDATE: the marked
 * messages go, all or none, before the +OK. */
static void cmd_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (s->account_id > 0)
        pop3_expire_retrieved(s);
    if (s->account_id <= 0 || s->n_deleted == 0) {
        pop3_unlock(s);
        pop3_close_with(s, "+OK postel POP3 server signing off");
        return;
    }
    pop3_set_state(s, POP3_S_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    s->jobs++;
    pool_submit(s->worker->base, pop3_expunge_work, pop3_expunge_done, s);
}

/* ---- TRANSACTION ---- */

static void cmd_stat(struct pop3_session *s, const struct pop3_command *cmd)
{
    size_t count;
    uint64_t size;
    pop3_maildrop_size(s, &count, &size);
    pop3_reply(s, "+OK %zu %llu", count, (unsigned long long)size);
}

static void cmd_list(struct pop3_session *s, const struct pop3_command *cmd)
{
    if (cmd->has_msg) {
        long i = pop3_msg_index(s, cmd);
        if (i >= 0)
            pop3_reply(s, "+OK %u %llu", cmd->msg, (unsigned long long)s->list.msgs[i].size);
        return;
    }
    size_t count;
    uint64_t size;
    pop3_maildrop_size(s, &count, &size);
    struct evbuffer *out = pop3_out(s);
    evbuffer_add_printf(out, "+OK %zu messages (%llu octets)\r\n", count,
                        (unsigned long long)size);
    for (size_t i = 0; i < s->list.n; i++)
        if (!s->deleted[i])
            evbuffer_add_printf(out, "%zu %llu\r\n", i + 1,
                                (unsigned long long)s->list.msgs[i].size);
    evbuffer_add(out, ".\r\n", 3);
}

static void cmd_uidl(struct pop3_session *s, const struct pop3_command *cmd)
{
    char uidl[24];
    if (cmd->has_msg) {
        long i = pop3_msg_index(s, cmd);
        if (i >= 0) {
            pop3_uidl(uidl, sizeof(uidl), s->list.uidvalidity, s->list.msgs[i].uid);
            pop3_reply(s, "+OK %u %s", cmd->msg, uidl);
        }
        return;
    }
    struct evbuffer *out = pop3_out(s);
    evbuffer_add_printf(out, "+OK unique-id listing follows\r\n");
    for (size_t i = 0; i < s->list.n; i++) {
        if (s->deleted[i])
            continue;
        pop3_uidl(uidl, sizeof(uidl), s->list.uidvalidity, s->list.msgs[i].uid);
        evbuffer_add_printf(out, "%zu %s\r\n", i + 1, uidl);
    }
    evbuffer_add(out, ".\r\n", 3);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
    long i = pop3_msg_index(s, cmd);
    if (i < 0)
        return;
    s->deleted[i] = true;
    s->n_deleted++;
    s->deleted_size += s->list.msgs[i].size;
    pop3_reply(s, "+OK message %u deleted", cmd->msg);
}

static void cmd_noop(struct pop3_session *s, const struct pop3_command *cmd)
{
    pop3_reply(s, "+OK");
}

static void cmd_rset(struct pop3_session *s, const struct pop3_command *cmd)
{
    memset(s->deleted, 0, s->list.n * sizeof(*s->deleted));
    s->n_deleted = 0;
    s->deleted_size = 0;
    size_t count;
    uint64_t size;
    pop3_maildrop_size(s, &count, &size);
    pop3_reply(s, "+OK maildrop has %zu messages (%llu octets)", count, (unsigned long long)size);
}

/* ---- RETR / TOP streaming ---- */

/* Message data goes from the file into a chunk and from there to the
 * socket without another copy: the output buffer holds references to
 * the chunk's runs (evbuffer_add_reference), and the chunk returns to a
 * small process-wide free list once the last of them is sent.  Short
 * runs and the bytes the encoder inserts are copied.
 *
 * A session fills its chunk from the front, message after message, and
 * takes a new one only when the next read does not fit: pipelined RETRs
 * of small messages share a chunk instead of pinning 64 KB each, so the
 * memory a session holds stays near its output bound (POP3_OUT_HIGH),
 * and the chunks in use stay few enough for the free list to hold them
 * (no malloc, no fresh pages to fault in, per message).  The session
 * drops its chunk when it runs out of commands. */
#define POP3_REF_MIN     512          /* runs shorter than this are copied */
#define POP3_CHUNKS_KEPT 96           /* free chunks kept for reuse */
#define POP3_CHUNK_TAIL  (8u * 1024)  /* less room than this: take a new chunk */

struct pop3_chunk {
    struct pop3_chunk *next;          /* free list */
    int refs;                         /* the session's + one per reference */
    size_t used;                      /* data[0, used) read and encoded */
    char data[POP3_CHUNK];
};

static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pop3_chunk *chunk_free;
static int chunk_free_n;

static struct pop3_chunk *pop3_chunk_get(void)
{
    pthread_mutex_lock(&chunk_lock);
    struct pop3_chunk *c = chunk_free;
    if (c != NULL) {
        chunk_free = c->next;
        chunk_free_n--;
    }
    pthread_mutex_unlock(&chunk_lock);
    if (c == NULL && (c = malloc(sizeof(*c))) == NULL)
        return NULL;
    c->next = NULL;
    c->refs = 1;
    c->used = 0;
    return c;
}

/* Drops a reference; the last one returns the chunk.  References are
 * only taken and dropped on the session's loop thread. */
static void pop3_chunk_put(struct pop3_chunk *c)
{
    if (--c->refs > 0)
        return;
    pthread_mutex_lock(&chunk_lock);
    if (chunk_free_n < POP3_CHUNKS_KEPT) {
        c->next = chunk_free;
        chunk_free = c;
        chunk_free_n++;
        c = NULL;
    }
    pthread_mutex_unlock(&chunk_lock);
    free(c);
}

static void pop3_chunk_cleanup(const void *data, size_t len, void *arg)
{
    pop3_chunk_put(arg);
}

struct pop3_sink {
    struct evbuffer *out;
    struct pop3_chunk *chunk;         /* NULL: copy everything */
};

static void pop3_stuff_out(void *arg, const char *data, size_t len)
{
    struct pop3_sink *k = arg;
    struct pop3_chunk *c = k->chunk;
    if (c != NULL && len >= POP3_REF_MIN && data >= c->data && data + len <= c->data + POP3_CHUNK) {
        c->refs++;
        if (evbuffer_add_reference(k->out, data, len, pop3_chunk_cleanup, c) == 0)
            return;
        c->refs--;
    }
    evbuffer_add(k->out, data, len);
}

/* The response is complete (or failed: then the connection closes, as
 * the client has already seen +OK and cannot be told otherwise).  The
 * caller goes on reading commands (pop3_process_input). */
static void pop3_send_end(struct pop3_session *s, bool ok)
{
    if (s->send_fd >= 0)
        close(s->send_fd);
    s->send_fd = -1;
    if (!ok) {
        pop3_close_with(s, NULL);
        return;
    }
    struct pop3_sink sink = { pop3_out(s), NULL };
    pop3_stuff_end(&s->stuff, pop3_stuff_out, &sink);
    if (!s->stuff.top)
        s->retrieved[s->send_msg - 1] = true;
    log_debug(s->sid, "event=retr msg=%u bytes=%llu", s->send_msg,
              (unsigned long long)s->send_off);
    pop3_resume_state(s);
}

/* A chunk was read: n bytes, or -1 with err. */
static void pop3_send_chunk(struct pop3_session *s, ssize_t n, int err)
{
    if (n < 0) {
        log_error(s->sid, "event=store_error op=read msg=%u error=\"%s\"", s->send_msg,
                  strerror(err));
        pop3_send_end(s, false);
        return;
    }
    if (n == 0) {
        pop3_send_end(s, true);
        return;
    }
    struct pop3_chunk *c = s->chunk;
    struct pop3_sink sink = { pop3_out(s), c };
    pop3_stuff_feed(&s->stuff, c->data + c->used, (size_t)n, pop3_stuff_out, &sink);
    c->used += (size_t)n;
    s->send_off += (uint64_t)n;
    if (s->stuff.done)
        pop3_send_end(s, true);
}

/* Bytes of the message not yet read.  The store's size is the file's
 * (files are immutable), so no read is spent on finding the end. */
static uint64_t pop3_send_left(const struct pop3_session *s)
{
    return s->send_size > s->send_off ? s->send_size - s->send_off : 0;
}

/* Bytes to read next into the session's chunk: what is left of the
 * message, at most the room in the chunk. */
static size_t pop3_chunk_want(const struct pop3_session *s)
{
    uint64_t left = pop3_send_left(s);
    size_t room = POP3_CHUNK - s->chunk->used;
    return left < room ? (size_t)left : room;
}

/* Gives the session a chunk with room for its next read: the current
 * one while the rest of the message fits or a sizeable tail is free,
 * else a fresh one.  -1 when out of memory. */
static int pop3_chunk_ready(struct pop3_session *s)
{
    if (s->chunk != NULL) {
        size_t room = POP3_CHUNK - s->chunk->used;
        if (room >= pop3_send_left(s) || room >= POP3_CHUNK_TAIL)
            return 0;
        pop3_chunk_put(s->chunk);
    }
    s->chunk = pop3_chunk_get();
    return s->chunk != NULL ? 0 : -1;
}

static void pop3_read_work(void *arg)
{
    struct pop3_session *s = arg;
    ssize_t n;
    do
        n = pread(s->send_fd, s->chunk->data + s->chunk->used, pop3_chunk_want(s),
                  (off_t)s->send_off);
    while (n < 0 && errno == EINTR);
    s->chunk_len = n;
    s->chunk_errno = n < 0 ? errno : 0;
}

static void pop3_read_done(void *arg)
{
    struct pop3_session *s = arg;
    s->reading = false;
    if (pop3_job_done(s))
        return;
    if (s->state != POP3_S_SEND)
        return;
    pop3_send_chunk(s, s->chunk_len, s->chunk_errno);
    pop3_process_input(s);
}

/* Reads and encodes chunks while the output has room; a chunk that is not
 * in the page cache is read on the pool instead of blocking the loop. */
static void pop3_send_more(struct pop3_session *s)
{
    while (s->state == POP3_S_SEND && !s->reading &&
           evbuffer_get_length(pop3_out(s)) < POP3_OUT_HIGH) {
        if (pop3_send_left(s) == 0) {
            pop3_send_chunk(s, 0, 0);
            continue;
        }
        if (pop3_chunk_ready(s) < 0) {
            log_error(s->sid, "event=retr_failed error=\"out of memory\"");
            pop3_send_end(s, false);
            return;
        }
        size_t want = pop3_chunk_want(s);
        ssize_t n = -1;
        int err = EAGAIN;
        if (atomic_load(&nowait_reads)) {
            struct iovec iov = { s->chunk->data + s->chunk->used, want };
            n = preadv2(s->send_fd, &iov, 1, (off_t)s->send_off, RWF_NOWAIT);
            err = n < 0 ? errno : 0;
            if (n < 0 && (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL)) {
                atomic_store(&nowait_reads, false);
                err = EAGAIN;
            }
        }
        if (n < 0 && err == EINTR)
            continue;
        if (n < 0 && err == EAGAIN) {
            s->reading = true;
            s->jobs++;
            pool_submit(s->worker->base, pop3_read_work, pop3_read_done, s);
            return;
        }
        pop3_send_chunk(s, n, err);
    }
}

/* RETR and TOP: the file is opened before +OK, so a message another
 * session removed meanwhile gets a clean -ERR. */
static void pop3_send_start(struct pop3_session *s, const struct pop3_command *cmd, bool top)
{
    long i = pop3_msg_index(s, cmd);
    if (i < 0)
        return;
    const struct store_msg *m = &s->list.msgs[i];
    int fd = store_msg_open(s->srv->store, m->file);
    if (fd < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            pop3_reply(s, "-ERR message %u was removed by another session", cmd->msg);
        else
            pop3_reply(s, "-ERR [SYS/TEMP] cannot read message %u", cmd->msg);
        log_warn(s->sid, "event=retr_failed msg=%u uid=%u error=\"%s\"", cmd->msg, m->uid,
                 store_error_text());
        return;
    }
    if (top)
        pop3_reply(s, "+OK top of message follows");
    else
        pop3_reply(s, "+OK %llu octets", (unsigned long long)m->size);
    s->send_fd = fd;
    s->send_off = 0;
    s->send_size = m->size;
    s->send_msg = cmd->msg;
    pop3_stuff_init(&s->stuff, top, cmd->lines);
    /* Reading stays on (no epoll change per message): pipelined commands
     * wait in the input, which the read watermark bounds. */
    pop3_set_state(s, POP3_S_SEND);
    /* pop3_process_input, our caller, goes on with the sending */
}

static void cmd_retr(struct pop3_session *s, const struct pop3_command *cmd)
{
    pop3_send_start(s, cmd, false);
}

static void cmd_top(struct pop3_session *s, const struct pop3_command *cmd)
{
    pop3_send_start(s, cmd, true);
}

/* ---- the command table ---- */

#define IN_AUTH  1u   /* AUTHORIZATION */
#define IN_TRANS 2u   /* TRANSACTION */

struct pop3_cmd_def {
    unsigned states;
    void (*fn)(struct pop3_session *s, const struct pop3_command *cmd);
};

static const struct pop3_cmd_def commands[POP3_VERB_COUNT] = {
    [POP3_VERB_USER] = { IN_AUTH, cmd_user },
    [POP3_VERB_PASS] = { IN_AUTH, cmd_pass },
    [POP3_VERB_APOP] = { IN_AUTH, cmd_apop },
    [POP3_VERB_AUTH] = { IN_AUTH, cmd_auth },
    [POP3_VERB_STLS] = { IN_AUTH, cmd_stls },
    [POP3_VERB_CAPA] = { IN_AUTH | IN_TRANS, cmd_capa },
    [POP3_VERB_QUIT] = { IN_AUTH | IN_TRANS, cmd_quit },
    [POP3_VERB_STAT] = { IN_TRANS, cmd_stat },
    [POP3_VERB_LIST] = { IN_TRANS, cmd_list },
    [POP3_VERB_RETR] = { IN_TRANS, cmd_retr },
    [POP3_VERB_DELE] = { IN_TRANS, cmd_dele },
    [POP3_VERB_NOOP] = { IN_TRANS, cmd_noop },
    [POP3_VERB_RSET] = { IN_TRANS, cmd_rset },
    [POP3_VERB_TOP] = { IN_TRANS, cmd_top },
    [POP3_VERB_UIDL] = { IN_TRANS, cmd_uidl },
};

static void pop3_command(struct pop3_session *s, char *line, size_t len)
{
    struct pop3_command cmd;
    const char *err = NULL;
    if (pop3_command_parse(line, len, &cmd, &err) < 0) {
        pop3_error(s, "%s", err);
        return;
    }
    log_debug(s->sid, "event=command verb=%s", pop3_verb_name(cmd.verb));
    const struct pop3_cmd_def *d = &commands[cmd.verb];
    unsigned here = s->state == POP3_S_TRANSACTION ? IN_TRANS : IN_AUTH;
    if (d->fn == NULL || (d->states & here) == 0) {
        if (here == IN_AUTH)
            pop3_error(s, "%s is not valid before login (AUTHORIZATION state)",
                       pop3_verb_name(cmd.verb));
        else
            pop3_error(s, "%s is not valid after login (TRANSACTION state)",
                       pop3_verb_name(cmd.verb));
        return;
    }
    d->fn(s, &cmd);
}

/* ---- input ---- */

/* Reads one line (CRLF, or a bare LF).  Returns 1 with the line
 * NUL-terminated in buf (its length in *len_r), 0 if no complete line yet,
 * -1 if an over-long line was consumed and answered. */
static int pop3_read_line(struct pop3_session *s, struct evbuffer *in, char *buf, size_t max,
                          size_t *len_r)
{
    size_t eol_len;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (p.pos < 0) {
        size_t have = evbuffer_get_length(in);
        if (have > max) {
            /* skip to the end of the line, then answer */
            evbuffer_drain(in, have);
            s->discarding = true;
        }
        return 0;
    }
    size_t len = (size_t)p.pos;
    if (s->discarding || len + 1 > max) {
        evbuffer_drain(in, len + 1);
        s->discarding = false;
        pop3_error(s, "line too long");
        return -1;
    }
    evbuffer_remove(in, buf, len + 1);
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    *len_r = len;
    return 1;
}

/* Runs commands from the input and streams RETR/TOP responses until the
 * input runs out, the output is full or a step is pending.  Not
 * re-entered: a nested call (from a completion inside a handler) returns
 * at once and the outer loop carries on. */
static void pop3_process_input(struct pop3_session *s)
{
    if (s->in_process)
        return;
    s->in_process = true;
    char line[POP3_SASL_LINE_MAX + 2];
    while (s->bev != NULL && !s->dead) {
        if (s->state == POP3_S_SEND) {
            pop3_send_more(s);
            if (s->state == POP3_S_SEND)
                break;
            continue;
        }
        if (s->state != POP3_S_AUTHORIZATION && s->state != POP3_S_TRANSACTION &&
            s->state != POP3_S_SASL)
            break;
        bool sasl = s->state == POP3_S_SASL;
        size_t len = 0;
        int rc = pop3_read_line(s, bufferevent_get_input(s->bev), line,
                                sasl ? POP3_SASL_LINE_MAX : POP3_LINE_MAX, &len);
        if (rc == 0) {
            /* Out of commands: an idle session holds no chunk. */
            if (s->chunk != NULL) {
                pop3_chunk_put(s->chunk);
                s->chunk = NULL;
            }
            /* Input that came before the client's EOF has been served (a
             * pipelined QUIT included); now the session ends. */
            if (s->eof)
                pop3_close_with(s, NULL);
            break;
        }
        if (rc < 0) {
            if (s->state == POP3_S_SASL)
                pop3_set_state(s, POP3_S_AUTHORIZATION);
            continue;
        }
        if (sasl)
            pop3_sasl_line(s, line);
        else
            pop3_command(s, line, len);
    }
    s->in_process = false;
}

static void pop3_read_cb(struct bufferevent *bev, void *arg)
{
    struct pop3_session *s = arg;
    if (s->state != POP3_S_WAIT && s->state != POP3_S_CLOSING)
        pop3_touch(s);
    pop3_process_input(s);
}

static void pop3_write_cb(struct bufferevent *bev, void *arg)
{
    struct pop3_session *s = arg;
    if (s->state == POP3_S_CLOSING) {
        if (s->jobs == 0 && net_output_flushed(s->bev))
            pop3_free(s);
        return;
    }
    if (s->state == POP3_S_SEND && !s->reading) {
        pop3_touch(s); /* a slow reader is still reading */
        pop3_process_input(s);
    }
}

static void pop3_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct pop3_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        s->tls = true;
        char desc[128];
        tls_describe(s->ssl, desc, sizeof(desc));
        log_info(s->sid, "event=tls %s", desc);
        if (s->state == POP3_S_TLS) {
            pop3_set_state(s, POP3_S_AUTHORIZATION);
            pop3_process_input(s);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (what & BEV_EVENT_ERROR) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            char buf[256] = "";
            if (e)
                ERR_error_string_n(e, buf, sizeof(buf));
            log_info(s->sid, "event=disconnect reason=error state=%s tls_error=\"%s\"",
                     state_names[s->state], buf);
            pop3_free(s);
            return;
        }
        log_info(s->sid, "event=disconnect reason=eof state=%s", state_names[s->state]);
        if (s->state == POP3_S_CLOSING)
            return; /* the close in progress frees */
        if (s->state == POP3_S_TLS) {
            pop3_free(s);
            return;
        }
        /* Serve what was pipelined before the EOF, then close (a half
         * closed client may still be reading). */
        s->eof = true;
        bufferevent_disable(s->bev, EV_READ);
        pop3_process_input(s);
    }
}

/* ---- lifecycle ---- */

static void pop3_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pop3_session *s = arg;
    if (s->state == POP3_S_WAIT || s->state == POP3_S_CLOSING)
        return;
    log_info(s->sid, "event=timeout state=%s", state_names[s->state]);
    /* RFC 1939 3: no UPDATE state, nothing is removed */
    pop3_close_with(s, "-ERR disconnected for inactivity");
}

/* The single free path.  While a pool job still refers to the session,
 * only mark it dead: the job's completion frees. */
static void pop3_free(struct pop3_session *s)
{
    if (s->jobs > 0) {
        s->dead = true;
        if (s->bev)
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    pop3_free_now(s);
}

static void pop3_free_now(struct pop3_session *s)
{
    log_info(s->sid, "event=close");
    pop3_unlock(s);
    if (s->send_fd >= 0)
        close(s->send_fd);
    store_msg_list_free(&s->list);
    free(s->deleted);
    free(s->retrieved);
    if (s->chunk != NULL)
        pop3_chunk_put(s->chunk);
    if (s->next)
        s->next->prev = s->prev;
    if (s->prev)
        s->prev->next = s->next;
    else if (sessions_head == s)
        sessions_head = s->next;
    struct event *evs[] = { s->timer, s->delay_ev, s->close_ev };
    net_session_release(s->srv, s->ip, s->bev, evs, sizeof(evs) / sizeof(evs[0]));
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    free(s);
}

/* libevent writes at most 16 KB per call by default: a 20 KB message then
 * costs two writev calls and two trips round the loop.  RETR output is
 * bounded by the write watermark anyway, so let one writev take it all. */
static void pop3_bev_tune(struct bufferevent *bev)
{
    bufferevent_set_max_single_write(bev, POP3_OUT_HIGH + POP3_CHUNK);
}

static struct bufferevent *pop3_bev_new(struct pop3_session *s, struct net_conn *c)
{
    struct event_base *base = c->worker->base;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
    if (c->role != ROLE_POP3S)
        return bufferevent_socket_new(base, c->fd, opts);
    s->tls = true; /* implicit TLS: nothing is read before the handshake */
    s->ssl = s->srv->tls ? SSL_new(s->srv->tls) : NULL;
    struct bufferevent *bev =
        s->ssl ? bufferevent_openssl_socket_new(base, c->fd, s->ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                opts)
               : NULL;
    if (bev == NULL && s->ssl)
        SSL_free(s->ssl);
    return bev;
}

static void pop3_accept(struct net_conn *c)
{
    struct pop3_session *s = calloc(1, sizeof(*s));
    struct server *srv = c->srv;
    if (s == NULL) {
        close(c->fd);
        server_conn_closed(srv, c->ip);
        free(c);
        return;
    }
    server_session_begin(srv);
    str_copy(s->sid, c->sid, sizeof(s->sid));
    s->srv = srv;
    s->worker = c->worker;
    s->cfg = atomic_load(&srv->cfg);
    s->role = c->role;
    str_copy(s->ip, c->ip, sizeof(s->ip));
    s->loopback = c->loopback;
    s->send_fd = -1;
    s->bev = pop3_bev_new(s, c);
    if (s->bev == NULL)
        close(c->fd);
    log_info(s->sid, "event=connect ip=%s port=%d role=%s", s->ip, c->port,
             listen_role_names[s->role]);
    free(c);
    s->next = sessions_head;
    if (sessions_head)
        sessions_head->prev = s;
    sessions_head = s;
    s->timer = evtimer_new(s->worker->base, pop3_timeout_cb, s);
    if (s->bev == NULL || s->timer == NULL) {
        pop3_free(s);
        return;
    }
    bufferevent_setcb(s->bev, pop3_read_cb, pop3_write_cb, pop3_event_cb, s);
    pop3_bev_tune(s->bev);
    bufferevent_setwatermark(s->bev, EV_WRITE, POP3_OUT_LOW, 0);
    bufferevent_setwatermark(s->bev, EV_READ, 0, POP3_IN_HIGH);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    pop3_set_state(s, POP3_S_AUTHORIZATION);
    pop3_touch(s);
    pop3_reply(s, "+OK %s POP3 server ready (postel)", s->cfg->hostname);
}

/* Shutdown: idle sessions are told and closed (no UPDATE: nothing is
 * removed); a session in a step (login, QUIT's expunge, a RETR) finishes
 * it first. */
static void pop3_drain(struct worker *w)
{
    struct pop3_session *s = sessions_head, *next;
    for (; s; s = next) {
        next = s->next;
        if (s->state == POP3_S_CLOSING)
            continue;
        if (s->state == POP3_S_WAIT || s->state == POP3_S_SEND) {
            s->drain_pending = true;
            continue;
        }
        pop3_close_with(s, "-ERR [SYS/TEMP] server shutting down");
    }
}

static const struct proto_ops pop3_ops = {
    .accept = pop3_accept,
    .busy_reply = "-ERR [SYS/TEMP] too many connections from your address, try again later\r\n",
    .drain = pop3_drain,
};

void pop3_server_register(void)
{
    server_register(ROLE_POP3, &pop3_ops);
    server_register(ROLE_POP3S, &pop3_ops);
}
