/*
 * postel user|domain|alias|mailbox|queue: administration through the
 * store (DESIGN section 2).  These work while the server runs: the store
 * is SQLite in WAL mode with a busy timeout.
 *
 * Output goes to stdout; errors to stderr as "postel: ...", with
 * sysexits.h codes: EX_USAGE bad usage, EX_DATAERR bad input (address,
 * password, duplicate), EX_NOUSER unknown account, EX_NOINPUT unknown
 * message or queue id, EX_IOERR / EX_SOFTWARE store failures.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "store/store.h"
#include "store/store_imap.h"

#define PASSWORD_MAX 512

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

/* The exit code for the calling thread's last store error. */
static int store_exit_code(void)
{
    switch (store_error_kind()) {
    case STORE_ERR_INVALID:
    case STORE_ERR_EXISTS: return EX_DATAERR;
    case STORE_ERR_NOTFOUND: return EX_NOUSER;
    case STORE_ERR_TEMP: return EX_IOERR;
    default: return EX_SOFTWARE;
    }
}

static int store_failed(const char *error)
{
    return cli_error(store_exit_code(), "%s", error ? error : store_error_text());
}

static struct store *cli_store_open(const struct config *cfg)
{
    const char *err = NULL;
    struct store *st = store_open(cfg->data_dir, &err);
    if (st == NULL)
        cli_error(EX_IOERR, "cannot open the store in %s: %s", cfg->data_dir, err ? err : "?");
    return st;
}

/* Runs fn with an open store; closes it after. */
static int with_store(const struct config *cfg, int (*fn)(struct store *, int, char **), int argc,
                      char **argv)
{
    struct store *st = cli_store_open(cfg);
    if (st == NULL)
        return EX_IOERR;
    int rc = fn(st, argc, argv);
    store_close(st);
    return rc;
}

/* ---- passwords ---- */

/* Reads one line from f into buf without its line end.  0, or -1 if empty,
 * unreadable or longer than size-1. */
static int read_line(FILE *f, char *buf, size_t size)
{
    if (fgets(buf, (int)size, f) == NULL)
        return -1;
    size_t n = strlen(buf);
    if (n == size - 1 && buf[n - 1] != '\n' && !feof(f))
        return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return n > 0 ? 0 : -1;
}

static int prompt_password(const char *prompt, char *buf, size_t size)
{
    struct termios old, quiet;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rc = read_line(stdin, buf, size);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return rc;
}

/* The password from --password-file, else stdin (one line); on a
 * terminal it is asked twice without echo. */
static int get_password(const char *file, char *buf, size_t size)
{
    if (file != NULL) {
        FILE *f = fopen(file, "r");
        if (f == NULL)
            return cli_error(EX_NOINPUT, "%s: %s", file, strerror(errno));
        int rc = read_line(f, buf, size);
        fclose(f);
        return rc < 0 ? cli_error(EX_DATAERR, "%s: no password on its first line", file) : 0;
    }
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX + 2];
        if (prompt_password("Password: ", buf, size) < 0 ||
            prompt_password("Retype password: ", again, sizeof(again)) < 0)
            return cli_error(EX_DATAERR, "no password given");
        int same = strcmp(buf, again) == 0;
        explicit_bzero(again, sizeof(again));
        return same ? 0 : cli_error(EX_DATAERR, "passwords do not match");
    }
    if (read_line(stdin, buf, size) < 0)
        return cli_error(EX_DATAERR, "no password on stdin (one line, or --password-file F)");
    return 0;
}

/* ---- user ---- */

struct user_args {
    const char *address, *password_file;
};

static int user_parse(int argc, char **argv, struct user_args *a, bool want_file)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (want_file && strcmp(argv[i], "--password-file") == 0 && i + 1 < argc)
            a->password_file = argv[++i];
        else if (want_file && (v = str_case_prefix(argv[i], "--password-file=")) != NULL)
            a->password_file = v;
        else if (argv[i][0] == '-' || a->address != NULL)
            return -1;
        else
            a->address = argv[i];
    }
    return a->address != NULL ? 0 : -1;
}

static int user_set(struct store *st, int argc, char **argv)
{
    bool add = strcmp(argv[0], "add") == 0;
    struct user_args a;
    if (user_parse(argc, argv, &a, true) < 0)
        return usage(add ? "user add ADDRESS [--password-file FILE]"
                         : "user passwd ADDRESS [--password-file FILE]");
    if (!store_address_valid(a.address, false))
        return cli_error(EX_DATAERR, "invalid address: %s", a.address);
    if (!add && store_user_lookup(st, a.address) == 0)
        return cli_error(EX_NOUSER, "no such account: %s", a.address);
    char pw[PASSWORD_MAX + 2];
    int rc = get_password(a.password_file, pw, sizeof(pw));
    if (rc != 0)
        return rc;
    const char *err = NULL;
    rc = add ? store_user_add(st, a.address, pw, &err) : store_user_passwd(st, a.address, pw, &err);
    explicit_bzero(pw, sizeof(pw));
    if (rc < 0)
        return store_failed(err);
    printf("%s: %s\n", a.address, add ? "account created" : "password changed");
    return EX_OK;
}

static int user_del(struct store *st, int argc, char **argv)
{
    struct user_args a;
    if (user_parse(argc, argv, &a, false) < 0)
        return usage("user del ADDRESS");
    if (!store_address_valid(a.address, false))
        return cli_error(EX_DATAERR, "invalid address: %s", a.address);
    const char *err = NULL;
    if (store_user_del(st, a.address, &err) < 0)
        return store_failed(err);
    printf("%s: account deleted\n", a.address);
    return EX_OK;
}

/* user quota ADDRESS [SIZE|none]: shows or sets the storage limit that
 * IMAP reports (RFC 9208 STORAGE) and APPEND/COPY enforce. */
static int user_quota(struct store *st, int argc, char **argv)
{
    const char *u = "user quota ADDRESS [SIZE|none]  (SIZE like 500M, 2G)";
    if (argc != 2 && argc != 3)
        return usage(u);
    char addr[512];
    str_copy(addr, argv[1], sizeof(addr));
    str_lower(addr);
    int64_t id = store_user_lookup(st, addr);
    if (id <= 0)
        return cli_error(EX_NOUSER, "no such account: %s", argv[1]);
    if (argc == 3) {
        uint64_t bytes = 0;
        if (strcmp(argv[2], "none") != 0 && (parse_size(argv[2], &bytes) < 0 || bytes == 0))
            return cli_error(EX_USAGE, "bad size '%s' (expected e.g. 500M, 2G, or none)", argv[2]);
        if (store_imap_quota_set(st, addr, bytes) < 0)
            return store_failed(NULL);
    }
    uint64_t used = 0, limit = 0;
    if (store_imap_quota(st, id, &used, &limit) < 0)
        return store_failed(NULL);
    if (limit > 0)
        printf("%s: quota=%llu used=%llu\n", addr, (unsigned long long)limit,
               (unsigned long long)used);
    else
        printf("%s: quota=none used=%llu\n", addr, (unsigned long long)used);
    return EX_OK;
}

static void print_line(const char *s, void *arg)
{
    (void)arg;
    printf("%s\n", s);
}

static int user_list(struct store *st, int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return usage("user list");
    return store_user_list(st, print_line, NULL) < 0 ? store_failed(NULL) : EX_OK;
}

int cli_user(const struct config *cfg, int argc, char **argv)
{
    const char *u = "user add|del|passwd|list [ADDRESS] [--password-file FILE] | quota ADDRESS [SIZE|none]";
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "add") == 0 || strcmp(argv[0], "passwd") == 0)
        return with_store(cfg, user_set, argc, argv);
    if (strcmp(argv[0], "del") == 0)
        return with_store(cfg, user_del, argc, argv);
    if (strcmp(argv[0], "list") == 0)
        return with_store(cfg, user_list, argc, argv);
    if (strcmp(argv[0], "quota") == 0)
        return with_store(cfg, user_quota, argc, argv);
    return usage(u);
}

/* ---- domain ---- */

static int domain_add(struct store *st, int argc, char **argv)
{
    if (argc != 2)
        return usage("domain add DOMAIN");
    if (store_domain_is_local(st, argv[1]))
        return cli_error(EX_DATAERR, "domain %s already exists", argv[1]);
    const char *err = NULL;
    if (store_domain_add(st, argv[1], &err) < 0)
        return store_failed(err);
    printf("%s: domain added\n", argv[1]);
    return EX_OK;
}

static int domain_del(struct store *st, int argc, char **argv)
{
    if (argc != 2)
        return usage("domain del DOMAIN");
    const char *err = NULL;
    if (store_domain_del(st, argv[1], &err) < 0)
        return store_failed(err);
    printf("%s: domain deleted\n", argv[1]);
    return EX_OK;
}

struct domain_list_ctx {
    struct store *st;
};

static void print_config_domain(const char *domain, void *arg)
{
    struct domain_list_ctx *ctx = arg;
    if (!store_domain_is_local(ctx->st, domain))
        printf("%s (configuration)\n", domain);
}

/* Domains in the store, then those only named in the configuration's
 * "domains" (the server adds them to the store when it starts). */
static int domain_list(struct store *st, int argc, char **argv, const struct config *cfg)
{
    (void)argv;
    if (argc != 1)
        return usage("domain list");
    if (store_domain_list(st, print_line, NULL) < 0)
        return store_failed(NULL);
    struct domain_list_ctx ctx = { st };
    config_each_domain(cfg, print_config_domain, &ctx);
    return EX_OK;
}

int cli_domain(const struct config *cfg, int argc, char **argv)
{
    const char *u = "domain add|del|list [DOMAIN]";
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "add") == 0)
        return with_store(cfg, domain_add, argc, argv);
    if (strcmp(argv[0], "del") == 0)
        return with_store(cfg, domain_del, argc, argv);
    if (strcmp(argv[0], "list") != 0)
        return usage(u);
    struct store *st = cli_store_open(cfg);
    if (st == NULL)
        return EX_IOERR;
    int rc = domain_list(st, argc, argv, cfg);
    store_close(st);
    return rc;
}

/* ---- alias ---- */

static int alias_add(struct store *st, int argc, char **argv)
{
    if (argc != 3)
        return usage("alias add SOURCE DEST   (SOURCE may be @domain for a catch-all)");
    if (!store_address_valid(argv[1], true))
        return cli_error(EX_DATAERR, "invalid source address: %s", argv[1]);
    if (!store_address_valid(argv[2], false))
        return cli_error(EX_DATAERR, "invalid destination address: %s", argv[2]);
    const char *err = NULL;
    if (store_alias_add(st, argv[1], argv[2], &err) < 0)
        return store_failed(err);
    printf("%s -> %s: alias added\n", argv[1], argv[2]);
    return EX_OK;
}

static int alias_del(struct store *st, int argc, char **argv)
{
    if (argc != 2 && argc != 3)
        return usage("alias del SOURCE [DEST]");
    const char *err = NULL;
    if (store_alias_del(st, argv[1], argc == 3 ? argv[2] : NULL, &err) < 0)
        return cli_error(store_error_kind() == STORE_ERR_NOTFOUND ? EX_DATAERR : store_exit_code(),
                         "%s", err);
    printf("%s%s%s: alias deleted\n", argv[1], argc == 3 ? " -> " : "", argc == 3 ? argv[2] : "");
    return EX_OK;
}

struct alias_rows {
    struct strbuf src, dst;            /* NUL-separated */
    size_t n, width;
};

static void alias_collect(const char *source, const char *dest, void *arg)
{
    struct alias_rows *r = arg;
    strbuf_append(&r->src, source, strlen(source) + 1);
    strbuf_append(&r->dst, dest, strlen(dest) + 1);
    if (strlen(source) > r->width)
        r->width = strlen(source);
    r->n++;
}

static int alias_list(struct store *st, int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return usage("alias list");
    struct alias_rows r = { .n = 0 };
    strbuf_init(&r.src, 64u << 20);
    strbuf_init(&r.dst, 64u << 20);
    int rc = store_alias_list(st, alias_collect, &r) < 0 ? store_failed(NULL) : EX_OK;
    const char *s = r.src.data, *d = r.dst.data;
    for (size_t i = 0; rc == EX_OK && i < r.n; i++) {
        printf("%-*s  %s\n", (int)r.width, s, d);
        s += strlen(s) + 1;
        d += strlen(d) + 1;
    }
    strbuf_free(&r.src);
    strbuf_free(&r.dst);
    return rc;
}

int cli_alias(const struct config *cfg, int argc, char **argv)
{
    const char *u = "alias add SOURCE DEST | del SOURCE [DEST] | list";
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "add") == 0)
        return with_store(cfg, alias_add, argc, argv);
    if (strcmp(argv[0], "del") == 0)
        return with_store(cfg, alias_del, argc, argv);
    if (strcmp(argv[0], "list") == 0)
        return with_store(cfg, alias_list, argc, argv);
    return usage(u);
}

/* ---- mailbox ---- */

struct status_rows {
    struct store_mailbox_status *rows;
    size_t n, alloc;
    bool oom;
};

static void status_collect(const struct store_mailbox_status *s, void *arg)
{
    struct status_rows *r = arg;
    if (r->n == r->alloc) {
        size_t alloc = r->alloc ? r->alloc * 2 : 16;
        void *p = realloc(r->rows, alloc * sizeof(*r->rows));
        if (p == NULL) {
            r->oom = true;
            return;
        }
        r->rows = p;
        r->alloc = alloc;
    }
    r->rows[r->n++] = *s;
}

/* One line per mailbox, columns aligned:
 *   INBOX   messages=3 unseen=3 uidvalidity=1764000000 uidnext=4 size=1234 */
static void status_print(const struct status_rows *r)
{
    enum { F_MESSAGES, F_UNSEEN, F_UIDVALIDITY, F_UIDNEXT, F_SIZE, F_COUNT };
    static const char *const keys[F_COUNT] = { "messages", "unseen", "uidvalidity", "uidnext",
                                               "size" };
    int width[F_COUNT + 1] = { 0 };
    char cell[64];
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < r->n; i++) {
            const struct store_mailbox_status *s = &r->rows[i];
            unsigned long long v[F_COUNT] = { s->messages, s->unseen, s->uidvalidity, s->uidnext,
                                              s->size };
            int w = (int)strlen(s->name);
            if (pass == 0 && w > width[F_COUNT])
                width[F_COUNT] = w;
            if (pass == 1)
                printf("%-*s", width[F_COUNT], s->name);
            for (int f = 0; f < F_COUNT; f++) {
                w = snprintf(cell, sizeof(cell), "%s=%llu", keys[f], v[f]);
                if (pass == 0 && w > width[f])
                    width[f] = w;
                if (pass == 1) /* no padding after the last column */
                    printf(" %-*s", f == F_COUNT - 1 ? 0 : width[f], cell);
            }
            if (pass == 1)
                putchar('\n');
        }
    }
}

static int mailbox_status(struct store *st, int argc, char **argv)
{
    if (argc != 2)
        return usage("mailbox status ACCOUNT");
    int64_t id = store_user_lookup(st, argv[1]);
    if (id <= 0)
        return cli_error(EX_NOUSER, "no such account: %s", argv[1]);
    struct status_rows r = { .rows = NULL };
    int rc = EX_OK;
    if (store_mailbox_status_all(st, id, status_collect, &r) < 0)
        rc = store_failed(NULL);
    else if (r.oom)
        rc = cli_error(EX_OSERR, "out of memory");
    else
        status_print(&r);
    free(r.rows);
    return rc;
}

/* Copies fd to stdout.  0 or -1. */
static int copy_to_stdout(int fd)
{
    char buf[65536];
    ssize_t n;
    fflush(stdout);
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write_full(STDOUT_FILENO, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

static int parse_uid(const char *s, uint32_t *uid_r)
{
    char *end;
    errno = 0;
    if (*s < '1' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > UINT32_MAX)
        return -1;
    *uid_r = (uint32_t)v;
    return 0;
}

static int mailbox_fetch(struct store *st, int argc, char **argv)
{
    uint32_t uid;
    if (argc != 4)
        return usage("mailbox fetch ACCOUNT MAILBOX UID");
    if (parse_uid(argv[3], &uid) < 0)
        return cli_error(EX_USAGE, "invalid UID: %s", argv[3]);
    int64_t id = store_user_lookup(st, argv[1]);
    if (id <= 0)
        return cli_error(EX_NOUSER, "no such account: %s", argv[1]);
    int fd = store_message_open(st, id, argv[2], uid);
    if (fd < 0 && store_error_kind() == STORE_ERR_NOTFOUND)
        return cli_error(EX_NOINPUT, "%s", store_error_text());
    if (fd < 0)
        return store_failed(NULL);
    int rc = copy_to_stdout(fd);
    close(fd);
    return rc < 0 ? cli_error(EX_IOERR, "write: %s", strerror(errno)) : EX_OK;
}

int cli_mailbox(const struct config *cfg, int argc, char **argv)
{
    const char *u = "mailbox status ACCOUNT | fetch ACCOUNT MAILBOX UID";
    if (argc < 1)
        return usage(u);
    if (strcmp(argv[0], "status") == 0)
        return with_store(cfg, mailbox_status, argc, argv);
    if (strcmp(argv[0], "fetch") == 0)
        return with_store(cfg, mailbox_fetch, argc, argv);
    return usage(u);
}

/* ---- queue ---- */

struct queue_totals {
    unsigned long long bytes;
    int count;
};

/* Like postqueue -p: id, size, arrival, state, sender, then the
 * recipients still to do, one per line under the sender. */
static void queue_print(const struct store_queue_entry *e, void *arg)
{
    struct queue_totals *t = arg;
    if (t->count++ == 0)
        printf("%-17s %8s %-20s %-8s %s\n", "-Queue ID-", "--Size--", "----Arrival Time----",
               "-State-", "-Sender/Recipient-------");
    char when[32] = "";
    time_t created = (time_t)e->created;
    struct tm tm;
    if (localtime_r(&created, &tm) != NULL)
        strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
    printf("%-17s %8llu %-20s %-8s %s\n", e->id, (unsigned long long)e->size, when, e->state,
           e->sender[0] ? e->sender : "MAILER-DAEMON");
    char rcpts[sizeof(e->rcpts)];
    str_copy(rcpts, e->rcpts, sizeof(rcpts));
    char *save = NULL;
    for (char *r = strtok_r(rcpts, ",", &save); r; r = strtok_r(NULL, ",", &save))
        printf("%57s%s\n", "", r);
    putchar('\n');
    t->bytes += e->size;
}

static int queue_list(struct store *st, int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return usage("queue list");
    struct queue_totals t = { 0, 0 };
    if (store_queue_list(st, queue_print, &t) < 0)
        return store_failed(NULL);
    if (t.count == 0)
        printf("Mail queue is empty\n");
    else
        printf("-- %llu Kbytes in %d Request%s.\n", (t.bytes + 1023) / 1024, t.count,
               t.count == 1 ? "" : "s");
    return EX_OK;
}

static bool queue_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= sizeof(((struct store_queue_entry *)0)->id))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
              (id[i] >= 'A' && id[i] <= 'Z')))
            return false;
    return true;
}

static int queue_unknown(const char *id)
{
    return cli_error(EX_NOINPUT, "no queued message %s", id);
}

static int queue_show(struct store *st, int argc, char **argv)
{
    if (argc != 2)
        return usage("queue show ID");
    if (!queue_id_valid(argv[1]))
        return queue_unknown(argv[1]);
    int fd = store_queue_open(st, argv[1]);
    if (fd < 0)
        return store_error_kind() == STORE_ERR_NOTFOUND ? queue_unknown(argv[1])
                                                        : store_failed(NULL);
    int rc = copy_to_stdout(fd);
    close(fd);
    return rc < 0 ? cli_error(EX_IOERR, "write: %s", strerror(errno)) : EX_OK;
}

/* delete|hold|release ID...: each id in turn; the worst exit code wins. */
static int queue_change(struct store *st, int argc, char **argv)
{
    const char *verb = argv[0];
    if (argc < 2) {
        char u[64];
        snprintf(u, sizeof(u), "queue %s ID...", verb);
        return usage(u);
    }
    int rc = EX_OK;
    for (int i = 1; i < argc; i++) {
        const char *id = argv[i], *err = NULL;
        struct store_queue_entry e;
        int found = queue_id_valid(id) ? store_queue_get(st, id, &e) : 0;
        int n = found;
        if (found > 0 && strcmp(verb, "delete") == 0)
            n = store_queue_delete(st, id, &err);
        else if (found > 0)
            n = store_queue_hold(st, id, strcmp(verb, "hold") == 0, &err);
        if (n < 0)
            rc = store_failed(err);
        else if (found == 0)
            rc = queue_unknown(id);
        else if (n == 0)
            printf("%s: not on hold\n", id);
        else
            printf("%s: %s\n", id, strcmp(verb, "delete") == 0 ? "deleted"
                                   : strcmp(verb, "hold") == 0 ? "placed on hold"
                                                               : "released");
    }
    return rc;
}

/* Reschedules for an immediate attempt, like postqueue -f / -i. */
static int queue_flush(struct store *st, int argc, char **argv)
{
    if (argc > 2)
        return usage("queue flush [ID]");
    const char *id = argc == 2 ? argv[1] : NULL, *err = NULL;
    struct store_queue_entry e;
    if (id != NULL) {
        int found = queue_id_valid(id) ? store_queue_get(st, id, &e) : 0;
        if (found < 0)
            return store_failed(NULL);
        if (found == 0)
            return queue_unknown(id);
        if (strcmp(e.state, "hold") == 0)
            return cli_error(EX_DATAERR, "%s is on hold (postel queue release %s)", id, id);
    }
    if (store_queue_flush(st, id, &err) < 0)
        return store_failed(err);
    return EX_OK;
}

int cli_queue(const struct config *cfg, int argc, char **argv)
{
    const char *u = "queue list | show ID | flush [ID] | delete ID | hold ID | release ID";
    if (argc < 1)
        return usage(u);
    const char *v = argv[0];
    if (strcmp(v, "list") == 0)
        return with_store(cfg, queue_list, argc, argv);
    if (strcmp(v, "show") == 0)
        return with_store(cfg, queue_show, argc, argv);
    if (strcmp(v, "flush") == 0)
        return with_store(cfg, queue_flush, argc, argv);
    if (strcmp(v, "delete") == 0 || strcmp(v, "hold") == 0 || strcmp(v, "release") == 0)
        return with_store(cfg, queue_change, argc, argv);
    return usage(u);
}
