/*
 * postel dkim keygen DOMAIN [--selector S] [--algo rsa2048|ed25519]
 * postel dkim sign [--domain D] [--selector S] [--key FILE] [--time T] < msg
 * postel dkim verify [--key-file FILE] [--time T] < msg
 *
 * keygen makes a key under data_dir/dkim (which turns signing on for the
 * domain) and prints the TXT record to publish.  sign writes the message
 * with DKIM-Signature fields prepended (keys of --domain, else of the From
 * domain, or the one --key names).  verify prints one Authentication-Results
 * style line per signature ("dkim=none" when there is none) and exits 0
 * when at least one signature passed, else 1.  --time fixes "now" (tests).
 *
 * verify looks keys up in DNS ([dns] settings) unless --key-file is given:
 * key records one per line, a name and the record text, either bare (like
 * python3-dkim's .dns files) or as quoted strings (a line printed by keygen
 * works as is).  The text TEMPFAIL makes the lookup fail temporarily.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "auth/dkim.h"
#include "cli/cli.h"
#include "core/util.h"
#include "dns/dns.h"

#define CLI_DKIM_INPUT_MAX   (64u << 20)
#define CLI_DKIM_KEYS_MAX    1000

struct opts {
    const char *pos;              /* the one positional argument */
    const char *selector, *algo, *domain, *key, *key_file;
    long long time;
};

/* Recognizes --name VALUE and --name=VALUE.  0, or -1 (message printed). */
static int parse_opts(int argc, char **argv, struct opts *o, const char *allowed)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (o->pos != NULL) {
                fprintf(stderr, "postel dkim: unexpected argument %s\n", a);
                return -1;
            }
            o->pos = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        char name[32];
        if (n >= sizeof(name) || n <= 2) {
            fprintf(stderr, "postel dkim: unknown option %s\n", a);
            return -1;
        }
        memcpy(name, a + 2, n - 2);
        name[n - 2] = '\0';
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        char word[40];
        snprintf(word, sizeof(word), " %s ", name);
        if (strstr(allowed, word) == NULL || val == NULL) {
            fprintf(stderr, "postel dkim: %s %s\n", val == NULL ? "missing value for" : "unknown option", a);
            return -1;
        }
        if (strcmp(name, "selector") == 0) o->selector = val;
        else if (strcmp(name, "algo") == 0) o->algo = val;
        else if (strcmp(name, "domain") == 0) o->domain = val;
        else if (strcmp(name, "key") == 0) o->key = val;
        else if (strcmp(name, "key-file") == 0) o->key_file = val;
        else if (strcmp(name, "time") == 0) o->time = atoll(val);
    }
    return 0;
}

static int cmd_keygen(const struct config *cfg, int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o, " selector algo ") < 0)
        return EX_USAGE;
    if (o.pos == NULL) {
        fprintf(stderr, "usage: postel dkim keygen DOMAIN [--selector S] [--algo rsa2048|ed25519]\n");
        return EX_USAGE;
    }
    enum dkim_key_type type;
    if (o.algo == NULL || strcasecmp(o.algo, "rsa2048") == 0 || strcasecmp(o.algo, "rsa") == 0)
        type = DKIM_KEY_RSA;
    else if (strcasecmp(o.algo, "ed25519") == 0)
        type = DKIM_KEY_ED25519;
    else {
        fprintf(stderr, "postel dkim keygen: --algo is rsa2048 or ed25519\n");
        return EX_USAGE;
    }
    struct dkim_key key;
    char err[512];
    if (dkim_keygen(cfg, o.pos, o.selector, type, &key, err, sizeof(err)) < 0) {
        fprintf(stderr, "postel dkim keygen: %s\n", err);
        return strstr(err, "bad ") == err ? EX_USAGE : EX_CANTCREAT;
    }
    struct strbuf rec;
    strbuf_init(&rec, 8192);
    int rc = dkim_key_zone_record(&key, &rec);
    if (rc == 0) {
        fprintf(stderr, "DKIM key written to %s; mail from %s is signed with it.\n", key.path, key.domain);
        for (int i = 0; i < cfg->n_dkim; i++)
            if (strcasecmp(cfg->dkim[i].domain, key.domain) == 0)
                fprintf(stderr, "note: the [dkim %s] section of the configuration overrides this key.\n",
                        cfg->dkim[i].domain);
        fprintf(stderr, "Publish this DNS record:\n");
        printf("%s\n", rec.data);
    }
    strbuf_free(&rec);
    dkim_key_free(&key);
    return rc == 0 ? EX_OK : EX_SOFTWARE;
}

static char *read_stdin(size_t cap, size_t *len_r)
{
    struct strbuf sb;
    strbuf_init(&sb, cap);
    char buf[65536];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || strbuf_append(&sb, buf, (size_t)n) < 0) {
            strbuf_free(&sb);
            return NULL;
        }
        if (n == 0)
            break;
    }
    *len_r = sb.len;
    return sb.data ? sb.data : calloc(1, 1);
}

static size_t input_cap(const struct config *cfg)
{
    return cfg->message_size > 0 && cfg->message_size < CLI_DKIM_INPUT_MAX ? (size_t)cfg->message_size
                                                                            : CLI_DKIM_INPUT_MAX;
}

/* The signature fields in the message's own line-end style, then the
 * message. */
static void write_signed(const struct strbuf *sigs, const char *msg, size_t len)
{
    const char *nl = memchr(msg, '\n', len);
    bool bare_lf = nl != NULL && (nl == msg || nl[-1] != '\r');
    for (size_t i = 0; i < sigs->len; i++)
        if (!(bare_lf && sigs->data[i] == '\r'))
            putchar(sigs->data[i]);
    fwrite(msg, 1, len, stdout);
}

static int load_sign_keys(const struct config *cfg, const struct opts *o, const char *domain,
                          struct dkim_key *keys)
{
    char err[512];
    if (o->key != NULL) {
        if (o->selector == NULL) {
            fprintf(stderr, "postel dkim sign: --key needs --selector\n");
            return -EX_USAGE;
        }
        if (dkim_key_load(&keys[0], domain, o->selector, o->key, err, sizeof(err)) < 0) {
            fprintf(stderr, "postel dkim sign: %s\n", err);
            return -EX_NOINPUT;
        }
        return 1;
    }
    int n = dkim_keys_for_domain(cfg, domain, keys, DKIM_MAX_SIGN_KEYS, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "postel dkim sign: %s\n", err);
        return -EX_CONFIG;
    }
    if (n == 0) {
        fprintf(stderr, "postel dkim sign: no DKIM key for %s (postel dkim keygen %s)\n", domain, domain);
        return -EX_UNAVAILABLE;
    }
    return n;
}

static int cmd_sign(const struct config *cfg, int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o, " domain selector key time ") < 0 || o.pos != NULL) {
        fprintf(stderr, "usage: postel dkim sign [--domain D] [--selector S] [--key FILE] < message\n");
        return EX_USAGE;
    }
    size_t len;
    char *msg = read_stdin(input_cap(cfg), &len);
    if (msg == NULL) {
        fprintf(stderr, "postel dkim sign: cannot read the message (too large?)\n");
        return EX_DATAERR;
    }
    char domain[256];
    if (o.domain != NULL)
        str_copy(domain, o.domain, sizeof(domain));
    else if (dkim_from_domain(msg, len, domain, sizeof(domain)) < 0) {
        fprintf(stderr, "postel dkim sign: no From domain in the message (use --domain)\n");
        free(msg);
        return EX_DATAERR;
    }
    struct dkim_key keys[DKIM_MAX_SIGN_KEYS];
    int n = load_sign_keys(cfg, &o, domain, keys);
    if (n < 0) {
        free(msg);
        return -n;
    }
    struct strbuf sigs;
    strbuf_init(&sigs, 64 * 1024);
    char err[512];
    int rc = dkim_sign(keys, n, msg, len, (time_t)o.time, &sigs, err, sizeof(err));
    if (rc == 0)
        write_signed(&sigs, msg, len);
    else
        fprintf(stderr, "postel dkim sign: %s\n", err);
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
    strbuf_free(&sigs);
    free(msg);
    return rc == 0 ? EX_OK : EX_SOFTWARE;
}

struct key_entry {
    char name[256];
    char *rec;
};

struct key_table {
    struct key_entry *e;
    int n;
};

/* The record text of a key-file line: quoted strings concatenated (zone
 * form, "IN", "TXT", "(" and ")" skipped), else the rest of the line. */
static char *record_text(char *rest)
{
    while (*rest == ' ' || *rest == '\t')
        rest++;
    for (const char *w; (w = str_case_prefix(rest, "IN ")) || (w = str_case_prefix(rest, "TXT ")) ||
                        (w = str_case_prefix(rest, "( "));) {
        rest = (char *)w;
        while (*rest == ' ' || *rest == '\t')
            rest++;
    }
    if (*rest != '"')
        return strdup(str_trim(rest));
    char *out = malloc(strlen(rest) + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = rest; *p; p++) {
        if (*p != '"')
            continue;
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            *o++ = *p;
        }
        if (!*p)
            break;
    }
    *o = '\0';
    return out;
}

static int load_key_file(const char *path, struct key_table *t)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "postel dkim verify: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    t->e = calloc(CLI_DKIM_KEYS_MAX, sizeof(*t->e));
    char *line = NULL;
    size_t cap = 0;
    while (t->e != NULL && t->n < CLI_DKIM_KEYS_MAX && getline(&line, &cap, fp) > 0) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, " \t\r\n");
        if (n == 0 || *p == '#' || n >= sizeof(t->e[0].name))
            continue;
        struct key_entry *e = &t->e[t->n];
        memcpy(e->name, p, n);
        e->name[n] = '\0';
        if (n > 1 && e->name[n - 1] == '.')
            e->name[n - 1] = '\0';
        if ((e->rec = record_text(p + n)) != NULL)
            t->n++;
    }
    free(line);
    fclose(fp);
    return t->e ? 0 : -1;
}

static void free_key_table(struct key_table *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->e[i].rec);
    free(t->e);
}

static enum dkim_dns_status key_file_lookup(const char *name, struct dkim_txt *txt, void *arg)
{
    const struct key_table *t = arg;
    for (int i = 0; i < t->n; i++) {
        if (strcasecmp(t->e[i].name, name) != 0)
            continue;
        if (strcmp(t->e[i].rec, "TEMPFAIL") == 0)
            return DKIM_DNS_TEMPFAIL;
        dkim_txt_add(txt, t->e[i].rec, strlen(t->e[i].rec));
    }
    return txt->n > 0 ? DKIM_DNS_FOUND : DKIM_DNS_NONE;
}

static int cmd_verify(const struct config *cfg, int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o, " key-file time ") < 0 || o.pos != NULL) {
        fprintf(stderr, "usage: postel dkim verify [--key-file FILE] < message\n");
        return EX_USAGE;
    }
    struct key_table keys = { NULL, 0 };
    struct dns_resolver *res = NULL;
    if (o.key_file != NULL) {
        if (load_key_file(o.key_file, &keys) < 0)
            return EX_NOINPUT;
    } else {
        struct dns_options dopt;
        const char *why = NULL;
        dns_options_from_config(&dopt, cfg);
        if ((res = dns_resolver_new(&dopt, &why)) == NULL) {
            fprintf(stderr, "postel dkim verify: DNS resolver: %s\n", why ? why : "failed");
            return EX_UNAVAILABLE;
        }
    }
    size_t len;
    char *msg = read_stdin(input_cap(cfg), &len);
    if (msg == NULL) {
        fprintf(stderr, "postel dkim verify: cannot read the message (too large?)\n");
        free_key_table(&keys);
        dns_resolver_free(res);
        return EX_DATAERR;
    }
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    int n = res ? dkim_verify_message(msg, len, (time_t)o.time, dkim_lookup_dns, res, vd,
                                      DKIM_MAX_SIGNATURES)
                : dkim_verify_message(msg, len, (time_t)o.time, key_file_lookup, &keys, vd,
                                      DKIM_MAX_SIGNATURES);
    int passed = 0;
    if (n == 0)
        printf("dkim=none\n");
    for (int i = 0; i < n && i < DKIM_MAX_SIGNATURES; i++) {
        char line[1024];
        printf("%s\n", dkim_verdict_format(&vd[i], line, sizeof(line)));
        passed += vd[i].status == DKIM_PASS;
    }
    free(msg);
    free_key_table(&keys);
    dns_resolver_free(res);
    if (n < 0) {
        fprintf(stderr, "postel dkim verify: out of memory\n");
        return EX_SOFTWARE;
    }
    return passed > 0 ? EX_OK : 1;
}

int cli_dkim(const struct config *cfg, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "keygen") == 0)
        return cmd_keygen(cfg, argc, argv);
    if (argc >= 1 && strcmp(argv[0], "sign") == 0)
        return cmd_sign(cfg, argc, argv);
    if (argc >= 1 && strcmp(argv[0], "verify") == 0)
        return cmd_verify(cfg, argc, argv);
    fprintf(stderr, "usage: postel dkim keygen DOMAIN [--selector S] [--algo rsa2048|ed25519]\n"
                    "       postel dkim sign [--domain D] [--selector S] [--key FILE] < message\n"
                    "       postel dkim verify [--key-file FILE] < message\n");
    return EX_USAGE;
}
