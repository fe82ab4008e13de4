/*
 * postel sendmail: what cron, PHP mail() and scripts call as
 * /usr/sbin/sendmail.  It writes the message straight into the store (a
 * store transaction, as an SMTP session would), so it works whether or
 * not the server runs; the running server's queue picks the new entry up
 * within a second (inotify sees the queue file at once).
 *
 * Who may run it: whoever can write data_dir.  Run as root, it first
 * becomes the owner of data_dir (the server's user), so the files it
 * makes belong to the server.  Other users get EX_NOPERM with a hint.
 *
 * Options (sendmail's, as Postfix takes them):
 *   -t          recipients from To, Cc, Bcc (added to those given)
 *   -i, -oi     a line with a single "." does not end the message
 *   -f ADDR     envelope sender (-f "<>" the null sender); -r the same
 *   -F NAME     full name for a From header the message lacks
 *   -N DSN      NOTIFY (never | success,delay,failure); -R RET; -V ENVID
 *   -bs         speak SMTP on stdin/stdout; -bm (default) read a message
 *   -bp         list the queue (mailq); -q flush the queue
 *   -v          show the store's log lines (otherwise only warnings)
 *   -o..., -B, -L, -X, -m, -n, -U, -e..., -C, -h  accepted, ignored
 * Without -f the sender is the invoking user at the configured hostname.
 * Missing From, Date and Message-ID headers are added, Bcc is removed,
 * bare LF line ends become CRLF.
 */
#include "cli/cli_queue.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/util.h"
#include "mime/mime.h"
#include "smtp/smtp_parse.h"
#include "store/store.h"

#define SM_TARGETS 16
#define SM_RCPTS_MAX 1000

struct sm_opts {
    bool t, i, bs, verbose;
    const char *from, *fullname, *ret, *envid;
    unsigned notify;
    char **args;                      /* recipients on the command line */
    int n_args;
};

struct sm_rcpts {
    char **addr;
    unsigned *notify;
    size_t n;
};

static int sm_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sm_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sendmail: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* ---- options ---- */

static unsigned parse_notify(const char *v)
{
    unsigned n = 0;
    char buf[64];
    str_copy(buf, v, sizeof(buf));
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        w = str_trim(w);
        if (strcasecmp(w, "never") == 0)
            n |= STORE_NOTIFY_NEVER;
        else if (strcasecmp(w, "success") == 0)
            n |= STORE_NOTIFY_SUCCESS;
        else if (strcasecmp(w, "failure") == 0)
            n |= STORE_NOTIFY_FAILURE;
        else if (strcasecmp(w, "delay") == 0)
            n |= STORE_NOTIFY_DELAY;
    }
    return n;
}

/* The value of -fADDR or -f ADDR; NULL (usage error) when missing. */
static const char *opt_value(int argc, char **argv, int *i)
{
    if (argv[*i][2] != '\0')
        return argv[*i] + 2;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

/* Returns -1 for continue, or an exit code (EX_USAGE; or EX_OK with
 * *action set for -bp / -q). */
static int parse_opts(int argc, char **argv, struct sm_opts *o, const char **action)
{
    int i = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        const char *v = NULL;
        switch (a[1]) {
        case 't': o->t = true; break;
        case 'i': o->i = true; break;
        case 'o':
            if (strcmp(a, "-oi") == 0)
                o->i = true;
            break; /* -oem, -odb, -oQ...: ignored */
        case 'f': case 'r':
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return sm_error(EX_USAGE, "option %s needs a value", a);
            o->from = v;
            break;
        case 'F':
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return sm_error(EX_USAGE, "option -F needs a value");
            o->fullname = v;
            break;
        case 'N': case 'R': case 'V':
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return sm_error(EX_USAGE, "option %s needs a value", a);
            if (a[1] == 'N')
                o->notify = parse_notify(v);
            else if (a[1] == 'R')
                o->ret = strcasecmp(v, "full") == 0 ? "FULL" : strcasecmp(v, "hdrs") == 0 ? "HDRS" : NULL;
            else
                o->envid = v;
            break;
        case 'B': case 'L': case 'X': case 'C': case 'h':
            if (opt_value(argc, argv, &i) == NULL)
                return sm_error(EX_USAGE, "option %s needs a value", a);
            break;
        case 'b':
            if (strcmp(a, "-bs") == 0)
                o->bs = true;
            else if (strcmp(a, "-bp") == 0)
                *action = "list";
            else if (strcmp(a, "-bi") == 0 || strcmp(a, "-bd") == 0)
                *action = "none";
            else if (strcmp(a, "-bm") != 0)
                return sm_error(EX_USAGE, "unsupported mode %s", a);
            break;
        case 'q': *action = "flush"; break;
        case 'v': o->verbose = true; break;
        case 'm': case 'n': case 'U': case 'e': case 'O': break;
        default: return sm_error(EX_USAGE, "unknown option %s", a);
        }
    }
    o->args = argv + i;
    o->n_args = argc - i;
    return *action ? EX_OK : -1;
}

/* ---- privileges ---- */

/* Root becomes the owner of data_dir, so the files it writes belong to
 * the server.  0, or an exit code. */
static int sm_privileges(const struct config *cfg)
{
    struct stat sb;
    if (stat(cfg->data_dir, &sb) < 0) {
        if (geteuid() == 0)
            return sm_error(EX_CONFIG, "data_dir %s: %s (start the server once first)",
                            cfg->data_dir, strerror(errno));
        return 0; /* a private setup: the store creates it */
    }
    if (geteuid() == 0 && sb.st_uid != 0) {
        if (setgroups(0, NULL) < 0 || setgid(sb.st_gid) < 0 || setuid(sb.st_uid) < 0)
            return sm_error(EX_OSERR, "cannot become the owner of %s: %s", cfg->data_dir,
                            strerror(errno));
    }
    if (access(cfg->data_dir, W_OK) < 0)
        return sm_error(EX_NOPERM, "no write access to %s: run as root or as the server's user",
                        cfg->data_dir);
    return 0;
}

/* ---- recipients ---- */

static int rcpt_add(struct sm_rcpts *r, const char *addr, unsigned notify, const char *host)
{
    char buf[SMTP_PATH_MAX + 2];
    const char *a = addr;
    while (*a == ' ' || *a == '\t' || *a == '<')
        a++;
    str_copy(buf, a, sizeof(buf));
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '>'))
        buf[--n] = '\0';
    if (n == 0)
        return 0;
    if (strchr(buf, '@') == NULL) {
        char q[SMTP_PATH_MAX + 2];
        snprintf(q, sizeof(q), "%s@%s", buf, host);
        str_copy(buf, q, sizeof(buf));
    }
    struct smtp_path path;
    if (smtp_address_parse(buf, &path) < 0)
        return sm_error(EX_DATAERR, "bad recipient address: %s", addr);
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->addr[i], path.mailbox) == 0)
            return 0;
    if (r->n >= SM_RCPTS_MAX)
        return sm_error(EX_DATAERR, "too many recipients");
    char *d = strdup(path.mailbox);
    if (d == NULL)
        return sm_error(EX_OSERR, "out of memory");
    r->addr[r->n] = d;
    r->notify[r->n++] = notify;
    return 0;
}

static void rcpts_free(struct sm_rcpts *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->addr[i]);
    r->n = 0;
}

/* Recipients from address-list header values (-t). */
static int rcpts_from_header(struct sm_rcpts *r, const char *value, size_t len, unsigned notify,
                             const char *host)
{
    struct strbuf sb;
    strbuf_init(&sb, 1u << 20);
    struct mime_address *list = NULL;
    int rc = 0;
    if (mime_header_unfold(value, len, false, &sb) < 0 || sb.data == NULL ||
        mime_address_parse(sb.data, sb.len, false, &list) < 0)
        rc = sb.len == 0 ? 0 : sm_error(EX_DATAERR, "cannot parse recipient header");
    for (struct mime_address *a = list; a != NULL && rc == 0; a = a->next) {
        if (a->invalid || a->mailbox == NULL || a->domain == NULL || a->mailbox[0] == '\0' ||
            a->domain[0] == '\0')
            continue;
        char addr[SMTP_PATH_MAX * 2];
        snprintf(addr, sizeof(addr), "%s@%s", a->mailbox, a->domain);
        rc = rcpt_add(r, addr, notify, host);
    }
    mime_address_free(list);
    strbuf_free(&sb);
    return rc;
}

/* ---- the message ---- */

/* Reads stdin with LF -> CRLF; without -i a lone "." line ends it. */
static int read_message(bool dot_ends, uint64_t cap, struct strbuf *out)
{
    char line[8192];
    bool at_bol = true;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strlen(line);
        bool eol = n > 0 && line[n - 1] == '\n';
        if (eol)
            n--;
        if (eol && n > 0 && line[n - 1] == '\r')
            n--;
        if (at_bol && eol && dot_ends && n == 1 && line[0] == '.')
            break;
        for (size_t k = 0; k < n; k++)
            if (line[k] == '\r')
                line[k] = ' '; /* a bare CR is never a line end */
        if (strbuf_append(out, line, n) < 0 || (eol && strbuf_append(out, "\r\n", 2) < 0) ||
            out->len > cap)
            return sm_error(EX_DATAERR, "message too large (limit %llu bytes)",
                            (unsigned long long)cap);
        at_bol = eol;
    }
    if (!at_bol && strbuf_append(out, "\r\n", 2) < 0)
        return sm_error(EX_DATAERR, "message too large");
    return 0;
}

static bool is_field_line(const char *p, size_t len)
{
    if (len > 0 && (p[0] == ' ' || p[0] == '\t'))
        return true;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ':')
            return i > 0;
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
            return false;
    }
    return false;
}

/* Length of the header block (field lines only) at the start of msg. */
static size_t header_length(const char *msg, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        const char *eol = memchr(msg + pos, '\n', len - pos);
        size_t end = eol ? (size_t)(eol - msg) + 1 : len;
        size_t line_len = end - pos;
        while (line_len > 0 && (msg[pos + line_len - 1] == '\n' || msg[pos + line_len - 1] == '\r'))
            line_len--;
        if (line_len == 0 || !is_field_line(msg + pos, line_len) ||
            (pos == 0 && (msg[0] == ' ' || msg[0] == '\t')))
            break;
        pos = end;
    }
    return pos;
}

struct sm_header {
    bool from, date, msgid, to_cc;
};

/* Copies the header without Bcc into out, noting which fields exist and
 * (with -t) collecting recipients. */
static int header_scan(const char *msg, size_t hlen, bool extract, struct sm_rcpts *r,
                       unsigned notify, const char *host, struct sm_header *h, struct strbuf *out)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    mime_header_iter_init(&it, msg, hlen, 0);
    while (mime_header_iter_next(&it, &f)) {
        int rc = 0;
        bool keep = true;
        if (f.name_len == 4 && strncasecmp(f.name, "From", 4) == 0)
            h->from = true;
        else if (f.name_len == 4 && strncasecmp(f.name, "Date", 4) == 0)
            h->date = true;
        else if (f.name_len == 10 && strncasecmp(f.name, "Message-ID", 10) == 0)
            h->msgid = true;
        if ((f.name_len == 2 && (strncasecmp(f.name, "To", 2) == 0 ||
                                 strncasecmp(f.name, "Cc", 2) == 0)) ||
            (f.name_len == 3 && strncasecmp(f.name, "Bcc", 3) == 0)) {
            if (f.name_len == 3)
                keep = false;
            else
                h->to_cc = true;
            if (extract && f.value != NULL)
                rc = rcpts_from_header(r, f.value, f.value_len, notify, host);
        }
        if (rc != 0)
            return rc;
        if (keep && strbuf_append(out, msg + f.offset, f.end - f.offset) < 0)
            return sm_error(EX_DATAERR, "message too large");
    }
    return 0;
}

static void rfc5322_now(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* The message as stored: Received, the header without Bcc, the fields it
 * lacked, the separator, the body. */
static int build_message(const struct config *cfg, const struct sm_opts *o, const char *sender,
                         const char *user, const char *msg, size_t len, struct sm_rcpts *r,
                         struct strbuf *out)
{
    size_t hlen = header_length(msg, len);
    struct sm_header h = { 0 };
    char date[64], id[25];
    rfc5322_now(date, sizeof(date));
    random_hex(id, 24);
    int rc = strbuf_printf(out, "Received: by %s (postel sendmail, from userid %lu)\r\n"
                                "\tid %s; %s\r\n",
                           cfg->hostname, (unsigned long)getuid(), id, date);
    if (rc == 0)
        rc = header_scan(msg, hlen, o->t, r, o->notify, cfg->hostname, &h, out);
    if (rc != 0)
        return rc < 0 ? sm_error(EX_DATAERR, "message too large") : rc;
    if (!h.from) {
        const char *addr = sender[0] ? sender : "MAILER-DAEMON";
        if (o->fullname != NULL && !str_has_ctl(o->fullname))
            rc |= strbuf_printf(out, "From: \"%s\" <%s>\r\n", o->fullname, addr);
        else
            rc |= strbuf_printf(out, "From: %s\r\n", addr);
    }
    if (!h.date)
        rc |= strbuf_printf(out, "Date: %s\r\n", date);
    if (!h.msgid)
        rc |= strbuf_printf(out, "Message-ID: <%s@%s>\r\n", id, cfg->hostname);
    (void)user;
    const char *body = msg + hlen;
    size_t blen = len - hlen;
    if (blen >= 2 && body[0] == '\r' && body[1] == '\n') {
        body += 2;
        blen -= 2;
    }
    rc |= strbuf_append(out, "\r\n", 2);
    rc |= strbuf_append(out, body, blen);
    return rc ? sm_error(EX_DATAERR, "message too large") : 0;
}

/* ---- submission ---- */

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

struct sm_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int result;
    char id[32], error[200];
};

static void sm_done(void *arg, int result, const char *id, const char *error)
{
    struct sm_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->result = result;
    str_copy(w->id, id ? id : "", sizeof(w->id));
    str_copy(w->error, error ? error : "", sizeof(w->error));
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Resolves recipients and stores the message.  EX_OK with id_r, or an
 * exit code (message printed). */
static int sm_submit(struct store *st, const char *sender, const struct sm_rcpts *r,
                     const struct sm_opts *o, const char *msg, size_t len, char *id_r,
                     size_t id_size)
{
    struct store_rcpt_target *t = calloc(r->n * SM_TARGETS, sizeof(*t));
    struct store_tx_rcpt *tr = calloc(r->n * SM_TARGETS, sizeof(*tr));
    size_t n = 0;
    int rc = t && tr ? EX_OK : sm_error(EX_OSERR, "out of memory");
    bool utf8 = false;
    for (size_t i = 0; i < r->n && rc == EX_OK; i++) {
        int k = store_rcpt_resolve(st, r->addr[i], t + n, SM_TARGETS);
        if (k == -2) {
            t[n].kind = STORE_RCPT_REMOTE;
            str_copy(t[n].address, r->addr[i], sizeof(t[n].address));
            k = 1;
        }
        if (k == 0)
            rc = sm_error(EX_NOUSER, "%s: unknown user", r->addr[i]);
        else if (k < 0)
            rc = sm_error(EX_TEMPFAIL, "%s: %s", r->addr[i], store_error_text());
        for (int j = 0; j < k && rc == EX_OK; j++, n++)
            tr[n] = (struct store_tx_rcpt){ .address = r->addr[i], .target = &t[n],
                                            .mailbox = "INBOX", .notify = r->notify[i] };
        utf8 |= has_8bit(r->addr[i]);
    }
    struct store_tx *tx = NULL;
    if (rc == EX_OK) {
        struct store_envelope env = {
            .sender = sender, .envid = o->envid, .ret = o->ret,
            .smtputf8 = utf8 || has_8bit(sender), .body_8bit = false,
            .rcpts = tr, .n_rcpts = n,
        };
        for (size_t i = 0; i < len && !env.body_8bit; i++)
            env.body_8bit = (unsigned char)msg[i] >= 0x80;
        const char *err = NULL;
        tx = store_tx_begin(st, &env, &err);
        if (tx == NULL)
            rc = sm_error(store_error_is_temporary() ? EX_TEMPFAIL : EX_DATAERR, "%s",
                          err ? err : "cannot store the message");
        else if (store_tx_write(tx, msg, len) < 0) {
            store_tx_abort(tx);
            tx = NULL;
            rc = sm_error(EX_TEMPFAIL, "writing the message: %s", store_error_text());
        }
    }
    if (tx != NULL) {
        struct sm_wait w = { .done = false };
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.cond, NULL);
        store_tx_commit(tx, sm_done, &w);
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        if (w.result < 0)
            rc = sm_error(EX_TEMPFAIL, "storing the message: %s", w.error);
        else
            str_copy(id_r, w.id, id_size);
        pthread_mutex_destroy(&w.lock);
        pthread_cond_destroy(&w.cond);
    }
    free(t);
    free(tr);
    return rc;
}

/* The envelope sender: -f (without <>; "<>" or "" is the null sender),
 * else the invoking user at the configured hostname. */
static int sm_sender(const struct config *cfg, const struct sm_opts *o, char *buf, size_t size)
{
    if (o->from != NULL) {
        char tmp[SMTP_PATH_MAX + 4];
        const char *f = o->from;
        while (*f == ' ' || *f == '<')
            f++;
        str_copy(tmp, f, sizeof(tmp));
        size_t n = strlen(tmp);
        while (n > 0 && (tmp[n - 1] == '>' || tmp[n - 1] == ' '))
            tmp[--n] = '\0';
        if (n == 0) {
            buf[0] = '\0';
            return 0;
        }
        if (strchr(tmp, '@') == NULL) {
            char q[SMTP_PATH_MAX + 4];
            snprintf(q, sizeof(q), "%s@%s", tmp, cfg->hostname);
            str_copy(tmp, q, sizeof(tmp));
        }
        struct smtp_path path;
        if (smtp_address_parse(tmp, &path) < 0)
            return sm_error(EX_DATAERR, "bad sender address: %s", o->from);
        str_copy(buf, path.mailbox, size);
        return 0;
    }
    struct passwd *pw = getpwuid(getuid());
    char user[128];
    if (pw != NULL)
        str_copy(user, pw->pw_name, sizeof(user));
    else
        snprintf(user, sizeof(user), "uid%lu", (unsigned long)getuid());
    char full[sizeof(user) + HOSTNAME_MAX + 2];
    snprintf(full, sizeof(full), "%s@%s", user, cfg->hostname);
    str_copy(buf, full, size);
    return 0;
}

/* ---- -bs: SMTP on stdin/stdout ---- */

static void bs_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bs_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputs("\r\n", stdout);
    fflush(stdout);
}

/* DATA content until the lone "." (dot-unstuffed), LF -> CRLF. */
static int bs_data(uint64_t cap, struct strbuf *out, bool *too_big)
{
    char line[8192];
    bool at_bol = true;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strlen(line);
        bool eol = n > 0 && line[n - 1] == '\n';
        if (eol)
            n--;
        if (eol && n > 0 && line[n - 1] == '\r')
            n--;
        const char *p = line;
        if (at_bol && eol && n == 1 && line[0] == '.')
            return 0;
        if (at_bol && n > 0 && line[0] == '.') {
            p++;
            n--;
        }
        if (!*too_big && (strbuf_append(out, p, n) < 0 ||
                          (eol && strbuf_append(out, "\r\n", 2) < 0) || out->len > cap))
            *too_big = true;
        at_bol = eol;
    }
    return -1;
}

struct bs_tx {
    bool mail;
    char sender[SMTP_PATH_MAX + 2];
    struct sm_rcpts r;
};

static void bs_rcpt(struct store *st, struct bs_tx *tx, const char *arg)
{
    struct smtp_path path;
    struct smtp_rcpt_params params;
    struct smtp_reply rep;
    struct store_rcpt_target t[SM_TARGETS];
    if (!tx->mail) {
        bs_reply("503 5.5.1 MAIL first");
    } else if (smtp_rcpt_parse(arg, true, &path, &params, &rep) < 0) {
        bs_reply("%d %s %s", rep.code, rep.status, rep.text);
    } else if (path.is_postmaster || path.mailbox[0] == '\0') {
        bs_reply("550 5.1.1 Recipient address needs a domain");
    } else {
        int k = store_rcpt_resolve(st, path.mailbox, t, SM_TARGETS);
        if (k == 0)
            bs_reply("550 5.1.1 <%s>: unknown user", path.mailbox);
        else if (k == -1)
            bs_reply("451 4.3.0 %s", store_error_text());
        else if (tx->r.n >= SM_RCPTS_MAX)
            bs_reply("452 4.5.3 Too many recipients");
        else if (rcpt_add(&tx->r, path.mailbox, params.notify, "") != 0)
            bs_reply("501 5.1.3 Bad recipient address");
        else
            bs_reply("250 2.1.5 Ok");
    }
}

static void bs_data_cmd(const struct config *cfg, struct store *st, const struct sm_opts *o,
                        struct bs_tx *tx)
{
    if (tx->r.n == 0) {
        bs_reply("503 5.5.1 RCPT first");
        return;
    }
    bs_reply("354 End data with <CR><LF>.<CR><LF>");
    struct strbuf raw, msg;
    strbuf_init(&raw, cfg->message_size + 1);
    strbuf_init(&msg, cfg->message_size + 64u * 1024);
    bool too_big = false;
    if (bs_data(cfg->message_size, &raw, &too_big) < 0) {
        strbuf_free(&raw);
        strbuf_free(&msg);
        exit(EX_DATAERR);
    }
    struct sm_opts none = *o;
    none.t = false;
    char id[32] = "";
    if (too_big) {
        bs_reply("552 5.3.4 Message too big");
    } else if (build_message(cfg, &none, tx->sender, "", raw.data ? raw.data : "", raw.len,
                             &tx->r, &msg) != 0) {
        bs_reply("554 5.6.0 Message could not be prepared");
    } else if (sm_submit(st, tx->sender, &tx->r, o, msg.data, msg.len, id, sizeof(id)) != EX_OK) {
        bs_reply("451 4.3.0 Message not stored");
    } else {
        bs_reply("250 2.0.0 Ok: queued as %s", id);
    }
    strbuf_free(&raw);
    strbuf_free(&msg);
    rcpts_free(&tx->r);
    tx->mail = false;
}

static int sendmail_bs(const struct config *cfg, struct store *st, const struct sm_opts *o,
                       struct sm_rcpts *r)
{
    struct bs_tx tx = { .mail = false, .r = *r };
    char line[SMTP_LINE_MAX + 2];
    bs_reply("220 %s ESMTP postel (sendmail -bs)", cfg->hostname);
    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        struct smtp_command cmd;
        struct smtp_reply rep;
        struct smtp_path path;
        struct smtp_mail_params mp;
        if (smtp_command_parse(line, n, &cmd, &rep) < 0) {
            bs_reply("%d %s %s", rep.code, rep.status, rep.text);
            continue;
        }
        switch (cmd.verb) {
        case SMTP_VERB_EHLO:
            bs_reply("250-%s\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES",
                     cfg->hostname);
            break;
        case SMTP_VERB_HELO: bs_reply("250 %s", cfg->hostname); break;
        case SMTP_VERB_NOOP: bs_reply("250 2.0.0 Ok"); break;
        case SMTP_VERB_RSET:
            rcpts_free(&tx.r);
            tx.mail = false;
            bs_reply("250 2.0.0 Ok");
            break;
        case SMTP_VERB_QUIT:
            bs_reply("221 2.0.0 Bye");
            *r = tx.r;
            return EX_OK;
        case SMTP_VERB_MAIL:
            if (tx.mail) {
                bs_reply("503 5.5.1 Nested MAIL command");
            } else if (smtp_mail_parse(cmd.arg, true, &path, &mp, &rep) < 0) {
                bs_reply("%d %s %s", rep.code, rep.status, rep.text);
            } else {
                str_copy(tx.sender, path.is_null ? "" : path.mailbox, sizeof(tx.sender));
                tx.mail = true;
                bs_reply("250 2.1.0 Ok");
            }
            break;
        case SMTP_VERB_RCPT: bs_rcpt(st, &tx, cmd.arg); break;
        case SMTP_VERB_DATA: bs_data_cmd(cfg, st, o, &tx); break;
        default: bs_reply("502 5.5.1 Command not implemented"); break;
        }
    }
    *r = tx.r;
    return EX_OK;
}

/* ---- the command ---- */

static int sendmail_message(const struct config *cfg, struct store *st, const struct sm_opts *o,
                            struct sm_rcpts *r)
{
    char sender[SMTP_PATH_MAX + 2];
    int rc = sm_sender(cfg, o, sender, sizeof(sender));
    for (int i = 0; i < o->n_args && rc == 0; i++) {
        char *copy = strdup(o->args[i]), *save = NULL;
        if (copy == NULL)
            return sm_error(EX_OSERR, "out of memory");
        for (char *a = strtok_r(copy, ",", &save); a && rc == 0; a = strtok_r(NULL, ",", &save))
            rc = rcpt_add(r, a, o->notify, cfg->hostname);
        free(copy);
    }
    if (rc != 0)
        return rc;
    struct strbuf raw, msg;
    strbuf_init(&raw, cfg->message_size + 1);
    strbuf_init(&msg, cfg->message_size + 64u * 1024);
    rc = read_message(!o->i, cfg->message_size, &raw);
    struct passwd *pw = getpwuid(getuid());
    if (rc == 0)
        rc = build_message(cfg, o, sender, pw ? pw->pw_name : "", raw.data ? raw.data : "",
                           raw.len, r, &msg);
    if (rc == 0 && r->n == 0)
        rc = sm_error(EX_USAGE, "no recipients (give them as arguments, or use -t)");
    char id[32];
    if (rc == 0)
        rc = sm_submit(st, sender, r, o, msg.data, msg.len, id, sizeof(id));
    strbuf_free(&raw);
    strbuf_free(&msg);
    return rc;
}

int cli_sendmail(const struct config *cfg, int argc, char **argv)
{
    struct sm_opts o = { 0 };
    const char *action = NULL;
    int rc = parse_opts(argc, argv, &o, &action);
    if (rc >= 0 && action == NULL)
        return rc;
    if (action != NULL) {
        if (strcmp(action, "none") == 0)
            return EX_OK;
        char *qargv[] = { (char *)action, NULL };
        return cli_queue(cfg, 1, qargv);
    }
    /* cron and mail() callers treat any output as a problem to report:
     * the store's debug and info lines belong to the server's log, not
     * here (sm_error still explains every failure).  -v shows them. */
    if (!o.verbose && log_get_level() < LOG_WARN)
        log_set_level(LOG_WARN);
    if ((rc = sm_privileges(cfg)) != 0)
        return rc;
    const char *err = NULL;
    struct store *st = store_open(cfg->data_dir, &err);
    if (st == NULL)
        return sm_error(EX_TEMPFAIL, "cannot open the store in %s: %s", cfg->data_dir,
                        err ? err : "?");
    struct sm_rcpts r = { 0 };
    r.addr = calloc(SM_RCPTS_MAX, sizeof(*r.addr));
    r.notify = calloc(SM_RCPTS_MAX, sizeof(*r.notify));
    if (r.addr == NULL || r.notify == NULL)
        rc = sm_error(EX_OSERR, "out of memory");
    else if (o.bs)
        rc = sendmail_bs(cfg, st, &o, &r);
    else
        rc = sendmail_message(cfg, st, &o, &r);
    rcpts_free(&r);
    free(r.addr);
    free(r.notify);
    store_close(st);
    return rc;
}
