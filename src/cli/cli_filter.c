/*
 * postel allow|block|filter: the anti-spam engine's lists, a dry run of
 * the engine on one envelope (and message), and the greylisting state.
 *
 * Lists added here live in the store and reach a running server within a
 * second; lists in the configuration ([lists]) are shown but changed only
 * by editing the file.  Exit codes: EX_USAGE bad usage, EX_DATAERR bad or
 * unknown entry, EX_IOERR store trouble, EX_UNAVAILABLE engine set-up.
 */
#include "cli/cli_filter.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "core/util.h"
#include "dns/dns.h"
#include "filter/filter.h"
#include "filter/filter_int.h"
#include "store/store.h"
#include "store/store_filter.h"

#define CHECK_RCPTS_MAX 64
#define CHECK_MESSAGE_MAX (64u << 20)

/* The engine's configuration: struct config carries it once the core
 * parser knows the anti-spam sections (POSTEL_CONFIG_HAS_FILTER); until
 * then the defaults apply. */
static const struct filter_config *config_filter(const struct config *cfg)
{
#ifdef POSTEL_CONFIG_HAS_FILTER
    return &cfg->filter;
#else
    static struct filter_config defaults;
    static bool init;
    (void)cfg;
    if (!init) {
        filter_config_defaults(&defaults);
        init = true;
    }
    return &defaults;
#endif
}

static int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("postel: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static int usage(const char *text)
{
    fprintf(stderr, "usage: postel %s\n", text);
    return EX_USAGE;
}

static struct store *open_store(const struct config *cfg)
{
    const char *err = NULL;
    struct store *st = store_open(cfg->data_dir, &err);
    if (st == NULL)
        cli_error(EX_IOERR, "cannot open the store in %s: %s", cfg->data_dir, err ? err : "?");
    return st;
}

static int store_code(void)
{
    return store_error_kind() == STORE_ERR_INVALID ? EX_DATAERR : EX_IOERR;
}

/* ---- allow / block ---- */

struct list_args {
    bool rcpt;
    const char *entry, *note;
};

static int list_parse(int argc, char **argv, struct list_args *a, bool want_entry)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rcpt") == 0)
            a->rcpt = true;
        else if (strcmp(argv[i], "--note") == 0 && i + 1 < argc)
            a->note = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return -1;
        else if (a->entry != NULL)
            return -1;
        else
            a->entry = argv[i];
    }
    return (a->entry != NULL) == want_entry ? 0 : -1;
}

static const char *list_name(enum store_filter_list l)
{
    return l == STORE_FL_ALLOW ? "allow list" : l == STORE_FL_BLOCK ? "block list"
                                                                    : "recipient exceptions";
}

/* Is the canonical entry in the configuration's text for this list? */
static bool in_config(const struct config *cfg, enum store_filter_list l,
                      const struct filter_entry *e)
{
    const struct filter_config *fc = config_filter(cfg);
    const char *texts[2] = { NULL, NULL };
    if (l == STORE_FL_ALLOW) {
        texts[0] = fc->allow_ip;
        texts[1] = fc->allow_sender;
    } else if (l == STORE_FL_BLOCK) {
        texts[0] = fc->block_ip;
        texts[1] = fc->block_sender;
    } else {
        texts[0] = fc->rcpt_exceptions;
    }
    bool found = false;
    for (int i = 0; i < 2 && !found; i++) {
        struct filter_list fl = { 0 };
        if (texts[i] == NULL || filter_list_add_text(&fl, texts[i]) < 0)
            continue;
        for (size_t k = 0; k < fl.n; k++)
            found |= fl.v[k].type == e->type && strcmp(fl.v[k].text, e->text) == 0;
        filter_list_free(&fl);
    }
    return found;
}

static int list_change(const struct config *cfg, enum store_filter_list l, bool add,
                       const struct list_args *a)
{
    struct filter_entry e;
    char why[200];
    if (filter_entry_parse(a->entry, &e, why, sizeof(why)) < 0)
        return cli_error(EX_DATAERR, "%s", why);
    if (l == STORE_FL_EXCEPTION && e.type == FILTER_E_CIDR)
        return cli_error(EX_DATAERR, "%s: a recipient exception is an address, local part "
                                     "(postmaster@) or domain", e.text);
    struct store *st = open_store(cfg);
    if (st == NULL)
        return EX_IOERR;
    const char *err = NULL;
    int rc = add ? store_filter_list_add(st, l, e.text, a->note, &err)
                 : store_filter_list_del(st, l, e.text, &err);
    store_close(st);
    if (rc < 0)
        return cli_error(store_code(), "%s", err ? err : "store error");
    if (add) {
        printf("%s: %s %s\n", e.text, rc ? "added to the" : "already in the", list_name(l));
        return EX_OK;
    }
    if (rc == 0) {
        if (in_config(cfg, l, &e))
            return cli_error(EX_DATAERR, "%s is in the configuration file (%s); remove it there",
                             e.text, cfg->path[0] ? cfg->path : "embedded defaults");
        return cli_error(EX_DATAERR, "%s is not in the %s", e.text, list_name(l));
    }
    printf("%s: removed from the %s\n", e.text, list_name(l));
    return EX_OK;
}

static void print_store_entry(const char *entry, const char *note, int64_t created, void *arg)
{
    const char *prefix = arg;
    if (note[0])
        printf("%s%s  # %s\n", prefix, entry, note);
    else
        printf("%s%s\n", prefix, entry);
}

static void print_config_entries(const char *prefix, const char *text)
{
    struct filter_list fl = { 0 };
    if (filter_list_add_text(&fl, text) < 0)
        return;
    for (size_t i = 0; i < fl.n; i++)
        printf("%s%s (configuration)\n", prefix, fl.v[i].text);
    filter_list_free(&fl);
}

static int list_show(const struct config *cfg, bool allow)
{
    const struct filter_config *fc = config_filter(cfg);
    struct store *st = open_store(cfg);
    if (st == NULL)
        return EX_IOERR;
    print_config_entries("", allow ? fc->allow_ip : fc->block_ip);
    print_config_entries("", allow ? fc->allow_sender : fc->block_sender);
    if (allow && fc->allow_loopback)
        printf("127.0.0.0/8 (configuration: allow_loopback)\n::1 (configuration: allow_loopback)\n");
    int rc = store_filter_list_each(st, allow ? STORE_FL_ALLOW : STORE_FL_BLOCK,
                                    print_store_entry, "");
    if (rc >= 0 && allow) {
        print_config_entries("rcpt ", fc->rcpt_exceptions);
        rc = store_filter_list_each(st, STORE_FL_EXCEPTION, print_store_entry, "rcpt ");
    }
    store_close(st);
    return rc < 0 ? cli_error(store_code(), "%s", store_error_text()) : EX_OK;
}

static int list_cmd(const struct config *cfg, bool allow, int argc, char **argv)
{
    const char *u = allow ? "allow add|del [--rcpt] ENTRY [--note TEXT] | list"
                          : "block add|del ENTRY [--note TEXT] | list";
    struct list_args a;
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "list") == 0)
        return argc == 1 ? list_show(cfg, allow) : usage(u);
    bool add = strcmp(argv[0], "add") == 0;
    if ((!add && strcmp(argv[0], "del") != 0) || list_parse(argc, argv, &a, true) < 0 ||
        (a.rcpt && !allow) || (a.note && !add))
        return usage(u);
    enum store_filter_list l = !allow ? STORE_FL_BLOCK : a.rcpt ? STORE_FL_EXCEPTION
                                                                 : STORE_FL_ALLOW;
    return list_change(cfg, l, add, &a);
}

int cli_allow(const struct config *cfg, int argc, char **argv)
{
    return list_cmd(cfg, true, argc, argv);
}

int cli_block(const struct config *cfg, int argc, char **argv)
{
    return list_cmd(cfg, false, argc, argv);
}

/* ---- filter check ---- */

struct check_args {
    const char *ip, *helo, *sender, *user, *spf, *dkim, *dmarc, *message;
    const char *rcpts[CHECK_RCPTS_MAX];
    int n_rcpts;
    bool greylist, submission, pregreet, pipelining;
};

static int check_parse(int argc, char **argv, struct check_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = NULL;
        if (strcmp(o, "--greylist") == 0)
            a->greylist = true;
        else if (strcmp(o, "--submission") == 0)
            a->submission = true;
        else if (strcmp(o, "--pregreet") == 0)
            a->pregreet = true;
        else if (strcmp(o, "--pipelining") == 0)
            a->pipelining = true;
        else if (strcmp(o, "--ip") == 0)
            dst = &a->ip;
        else if (strcmp(o, "--helo") == 0)
            dst = &a->helo;
        else if (strcmp(o, "--mail-from") == 0)
            dst = &a->sender;
        else if (strcmp(o, "--auth") == 0)
            dst = &a->user;
        else if (strcmp(o, "--spf") == 0)
            dst = &a->spf;
        else if (strcmp(o, "--dkim") == 0)
            dst = &a->dkim;
        else if (strcmp(o, "--dmarc") == 0)
            dst = &a->dmarc;
        else if (strcmp(o, "--message") == 0)
            dst = &a->message;
        else if (strcmp(o, "--rcpt") == 0 && v != NULL && a->n_rcpts < CHECK_RCPTS_MAX)
            a->rcpts[a->n_rcpts++] = argv[++i];
        else
            return -1;
        if (dst != NULL) {
            if (v == NULL)
                return -1;
            *dst = v;
            i++;
        }
    }
    return a->ip != NULL ? 0 : -1;
}

static void print_verdict(const char *stage, const struct filter_verdict *v)
{
    static const char *const actions[] = { "accept", "tempfail", "reject" };
    if (v->action == FILTER_ACCEPT)
        printf("%s: accept\n", stage);
    else
        printf("%s: %s %d %s %s%s\n", stage, actions[v->action], v->code, v->enhanced, v->text,
               v->disconnect ? " (disconnect)" : "");
    for (int i = 0; i < v->n_rules; i++)
        printf("  rule %s %.2f%s%s%s\n", v->rules[i].name, v->rules[i].score,
               v->rules[i].detail[0] ? " (" : "", v->rules[i].detail,
               v->rules[i].detail[0] ? ")" : "");
}

static char *read_message(const char *path, size_t *len_r)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct strbuf sb;
    strbuf_init(&sb, CHECK_MESSAGE_MAX);
    char buf[65536];
    size_t n;
    bool ok = true;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (strbuf_append(&sb, buf, n) < 0)
            ok = false;
    if (f != stdin)
        fclose(f);
    if (!ok || sb.data == NULL) {
        strbuf_free(&sb);
        return sb.data == NULL && ok ? strdup("") : NULL;
    }
    *len_r = sb.len;
    return sb.data;
}

/* Runs the stages in session order; stops at the first refusal of the
 * connection, as a session would. */
static const char *check_run(struct filter *f, const struct check_args *a, const char *msg,
                             size_t msg_len)
{
    static const char *const results[] = { "accept", "tempfail", "reject" };
    struct filter_verdict v;
    enum filter_action worst = FILTER_ACCEPT;
    struct filter_conn *c = filter_conn_new(f, a->ip, !a->submission, NULL);
    filter_connect(c, &v);
    print_verdict("connect", &v);
    if (v.action != FILTER_ACCEPT) {
        filter_conn_free(c);
        return results[v.action];
    }
    for (int ev = 0; ev < 2; ev++)
        if (ev == 0 ? a->pregreet : a->pipelining) {
            filter_event(c, ev == 0 ? FILTER_EV_PREGREET : FILTER_EV_PIPELINING, &v);
            print_verdict(ev == 0 ? "pregreet" : "pipelining", &v);
            if (v.action != FILTER_ACCEPT) {
                filter_conn_free(c);
                return results[v.action];
            }
        }
    filter_helo(c, a->helo ? a->helo : "", &v);
    print_verdict("helo", &v);
    if (a->user)
        filter_auth(c, a->user);
    filter_mail(c, a->sender ? a->sender : "", &v);
    print_verdict("mail", &v);
    if (v.action != FILTER_ACCEPT) {
        filter_conn_free(c);
        return results[v.action];
    }
    const char *accepted[CHECK_RCPTS_MAX];
    size_t n_ok = 0;
    char stage[ADDRESS_MAX + 8];
    const char *spf_dom = a->spf && strcmp(a->spf, "pass") == 0 && a->sender && strchr(a->sender, '@')
                              ? strrchr(a->sender, '@') + 1
                              : NULL;
    for (int i = 0; i < a->n_rcpts; i++) {
        filter_rcpt(c, a->rcpts[i], spf_dom, &v);
        snprintf(stage, sizeof(stage), "rcpt %s", a->rcpts[i]);
        print_verdict(stage, &v);
        if (v.action == FILTER_ACCEPT)
            accepted[n_ok++] = a->rcpts[i];
        else if (v.action > worst)
            worst = v.action;
    }
    if (msg != NULL && (n_ok > 0 || a->n_rcpts == 0)) {
        struct filter_message m = { .data = msg, .len = msg_len, .rcpts = accepted,
                                    .n_rcpts = n_ok, .spf = a->spf, .dkim = a->dkim,
                                    .dmarc = a->dmarc, .queue_id = "check" };
        filter_message(c, &m, &v);
        print_verdict("message", &v);
        if (v.scanned)
            printf("score: %.2f\nspam: %s\n", v.score, v.spam ? "yes" : "no");
        if (v.subject)
            printf("subject: %s\n", v.subject);
        if (v.headers)
            printf("%s", v.headers);
        worst = v.action;
        filter_verdict_free(&v);
    } else if (a->n_rcpts > 0 && n_ok > 0) {
        worst = FILTER_ACCEPT;
    }
    filter_conn_free(c);
    return results[worst];
}

static int filter_check(const struct config *cfg, int argc, char **argv)
{
    const char *u = "filter check --ip IP [--helo NAME] [--mail-from ADDR] [--rcpt ADDR]... "
                    "[--auth USER] [--submission] [--spf R] [--dkim R] [--dmarc R] [--pregreet] "
                    "[--pipelining] [--greylist] [--message FILE|-]";
    struct check_args a;
    if (check_parse(argc, argv, &a) < 0)
        return usage(u);
    struct filter_ip ip;
    if (filter_ip_parse(a.ip, &ip) < 0)
        return cli_error(EX_DATAERR, "bad IP address: %s", a.ip);
    char *msg = NULL;
    size_t msg_len = 0;
    if (a.message != NULL && (msg = read_message(a.message, &msg_len)) == NULL)
        return cli_error(EX_NOINPUT, "%s: %s", a.message, errno ? strerror(errno) : "too large");
    struct filter_config fc = *config_filter(cfg);
    /* a dry run leaves greylisting state alone unless asked */
    if (!a.greylist)
        fc.greylist_enabled = false;
    struct store *st = open_store(cfg);
    if (st == NULL) {
        free(msg);
        return EX_IOERR;
    }
    struct dns_options opt;
    const char *err = NULL;
    dns_options_from_config(&opt, cfg);
    struct filter_env env = { .store = st, .dns = &opt, .hostname = cfg->hostname,
                              .local_domains = cfg->domains };
    struct filter *f = filter_new(&fc, &env, &err);
    int rc = EX_OK;
    if (f == NULL) {
        rc = cli_error(EX_UNAVAILABLE, "cannot start the anti-spam engine: %s", err);
    } else {
        printf("result: %s\n", check_run(f, &a, msg, msg_len));
        filter_free(f);
    }
    store_close(st);
    free(msg);
    return rc;
}

/* ---- filter greylist ---- */

static void print_triplet(const char *net, const char *sender, const char *rcpt,
                          const struct store_greylist_row *row, void *arg)
{
    char first[32], last[32];
    time_t t1 = (time_t)row->first_seen, t2 = (time_t)row->last_seen;
    struct tm tm;
    strftime(first, sizeof(first), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t1, &tm));
    strftime(last, sizeof(last), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t2, &tm));
    printf("%s %s %s %s first=%s last=%s attempts=%lld\n", net, sender, rcpt,
           row->passed ? "passed" : "pending", first, last, (long long)row->count);
}

static int filter_greylist(const struct config *cfg, int argc, char **argv)
{
    const char *u = "filter greylist list|clear";
    if (argc != 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "clear") != 0))
        return usage(u);
    struct store *st = open_store(cfg);
    if (st == NULL)
        return EX_IOERR;
    int n = strcmp(argv[1], "list") == 0 ? store_greylist_each(st, print_triplet, NULL)
                                         : store_greylist_clear(st);
    if (n >= 0 && strcmp(argv[1], "clear") == 0)
        printf("greylist cleared (%d rows)\n", n);
    store_close(st);
    return n < 0 ? cli_error(store_code(), "%s", store_error_text()) : EX_OK;
}

int cli_filter(const struct config *cfg, int argc, char **argv)
{
    const char *u = "filter check --ip IP [...] | greylist list|clear";
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "check") == 0)
        return filter_check(cfg, argc, argv);
    if (strcmp(argv[0], "greylist") == 0)
        return filter_greylist(cfg, argc, argv);
    return usage(u);
}
