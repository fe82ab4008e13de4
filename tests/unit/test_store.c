/*
 * Store tests: accounts and password hashes, alias resolution, message
 * transactions through the group-commit thread (single, multiple, mixed
 * remote recipients, concurrency), reopening, start-up cleanup, queue
 * management.
 *
 * POSTEL_STORE_BENCH=N also prints how many single-recipient 5 KB
 * commits per second 20 concurrent submitters get, N commits each (not an
 * assertion; POSTEL_STORE_SYNC=syncfs measures the syncfs mode).
 */
#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "store/store.h"
#include "store/store_messages.h"
#include "store/store_dmarc.h"
#include "store/store_int.h"
#include "unit.h"

static char dir[256];

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct store *open_store(const char *path)
{
    const char *err = NULL;
    struct store *st = store_open(path, &err);
    if (st == NULL)
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
    return st;
}

static bool file_exists(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

static int count_files(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    DIR *d = opendir(p);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void touch(const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        write_full(fd, "x", 1);
        close(fd);
    }
}

/* Reads a whole fd into a malloc()ed string. */
static char *read_fd(int fd)
{
    struct strbuf sb;
    strbuf_init(&sb, 16u << 20);
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        strbuf_append(&sb, buf, (size_t)n);
    close(fd);
    if (sb.data == NULL)
        return strdup("");
    return sb.data;
}

struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool done;
    int result;
    char id[32];
    char error[256];
};

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->m, NULL);
    pthread_cond_init(&w->c, NULL);
}

static void waiter_done(void *arg, int result, const char *queue_id, const char *error)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->m);
    w->result = result;
    str_copy(w->id, queue_id ? queue_id : "", sizeof(w->id));
    str_copy(w->error, error ? error : "", sizeof(w->error));
    w->done = true;
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

static void waiter_wait(struct waiter *w)
{
    pthread_mutex_lock(&w->m);
    while (!w->done)
        pthread_cond_wait(&w->c, &w->m);
    pthread_mutex_unlock(&w->m);
}

static void waiter_free(struct waiter *w)
{
    pthread_mutex_destroy(&w->m);
    pthread_cond_destroy(&w->c);
}

/* Resolves each address and delivers one message to all of them, the data
 * written in chunks of chunk bytes.  Returns the done() result; the id
 * goes to id_r. */
static bool deliver_size_hint; /* tell the store the size in advance (staging) */

static int deliver(struct store *st, const char *sender, const char *const *rcpts, size_t n,
                   const char *mailbox, const char *data, size_t len, size_t chunk, char *id_r)
{
    struct store_rcpt_target targets[16];
    struct store_tx_rcpt r[16];
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        int k = store_rcpt_resolve(st, rcpts[i], &targets[nr], (int)(16 - nr));
        if (k == -2) { /* not local: relay */
            targets[nr].kind = STORE_RCPT_REMOTE;
            str_copy(targets[nr].address, rcpts[i], sizeof(targets[nr].address));
            k = 1;
        }
        if (k <= 0)
            return -100;
        for (int j = 0; j < k; j++) {
            memset(&r[nr], 0, sizeof(r[nr]));
            r[nr].address = rcpts[i];
            r[nr].target = &targets[nr];
            r[nr].mailbox = mailbox;
            nr++;
        }
    }
    struct store_envelope env = { .sender = sender, .rcpts = r, .n_rcpts = nr,
                                  .size_hint = deliver_size_hint ? len : 0 };
    const char *err = NULL;
    struct store_tx *tx = store_tx_begin(st, &env, &err);
    if (tx == NULL) {
        fprintf(stderr, "store_tx_begin: %s\n", err);
        return -101;
    }
    for (size_t o = 0; o < len; o += chunk)
        if (store_tx_write(tx, data + o, len - o < chunk ? len - o : chunk) < 0) {
            store_tx_abort(tx);
            return -102;
        }
    struct waiter w;
    waiter_init(&w);
    store_tx_commit(tx, waiter_done, &w);
    waiter_wait(&w);
    if (id_r)
        str_copy(id_r, w.id, 32);
    if (w.result != 0)
        fprintf(stderr, "commit failed: %s\n", w.error);
    waiter_free(&w);
    return w.result;
}

static char *fetch(struct store *st, const char *account, const char *mailbox, uint32_t uid)
{
    int64_t id = store_user_lookup(st, account);
    int fd = id > 0 ? store_message_open(st, id, mailbox, uid) : -1;
    return fd >= 0 ? read_fd(fd) : NULL;
}

struct mbox_find {
    const char *name;
    struct store_mailbox_status s;
    int n;
};

static void mbox_find_fn(const struct store_mailbox_status *s, void *arg)
{
    struct mbox_find *f = arg;
    if (f->n++ == 0 && strcmp(s->name, "INBOX") != 0)
        f->n = -1000; /* INBOX must come first */
    if (strcmp(s->name, f->name) == 0)
        f->s = *s;
}

static struct store_mailbox_status mbox_status(struct store *st, const char *account,
                                               const char *name, int *count_r)
{
    struct mbox_find f = { .name = name };
    store_mailbox_status_all(st, store_user_lookup(st, account), mbox_find_fn, &f);
    if (count_r)
        *count_r = f.n;
    return f.s;
}

static void count_fn(const char *s, void *arg)
{
    (void)s;
    (*(int *)arg)++;
}

static void alias_count_fn(const char *s, const char *d, void *arg)
{
    (void)s;
    (void)d;
    (*(int *)arg)++;
}

static void queue_count_fn(const struct store_queue_entry *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
}

/* ---- accounts ---- */

static void test_accounts(void)
{
    struct store *st = open_store(dir);
    CHECK(st != NULL);
    if (!st)
        return;
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "alice@Example.ORG", "s3cret pass", &err), 0);
    CHECK_EQ_INT(store_user_add(st, "bob@example.org", "hunter2", &err), 0);
    CHECK_EQ_INT(store_user_add(st, "ALICE@example.org", "x", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_EXISTS);
    CHECK_EQ_INT(store_user_add(st, "no spaces@example.org", "x", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_INVALID);
    CHECK_EQ_INT(store_user_add(st, "bad@exa_mple..org", "x", &err), -1);
    CHECK_EQ_INT(store_user_add(st, "nodomain", "x", &err), -1);
    CHECK_EQ_INT(store_user_add(st, "empty@example.org", "", &err), -1);
    CHECK(!store_address_valid("a@b@c", false));
    CHECK(!store_address_valid("a\r\n@example.org", false));
    CHECK(store_address_valid("@example.org", true));
    CHECK(!store_address_valid("@example.org", false));

    int64_t alice = store_user_lookup(st, "Alice@EXAMPLE.org");
    CHECK(alice > 0);
    CHECK(store_user_lookup(st, "nobody@example.org") == 0);
    CHECK(store_domain_is_local(st, "example.org"));
    CHECK(store_domain_is_local(st, "EXAMPLE.ORG"));
    CHECK(!store_domain_is_local(st, "example.com"));
    int n = 0;
    CHECK_EQ_INT(store_user_list(st, count_fn, &n), 2);
    CHECK_EQ_INT(n, 2);

    int count;
    struct store_mailbox_status s = mbox_status(st, "alice@example.org", "Junk", &count);
    CHECK_EQ_INT(count, 6);
    CHECK_EQ_STR(s.name, "Junk");
    CHECK_EQ_INT(s.uidnext, 1);
    CHECK(s.uidvalidity > 0);

    CHECK_EQ_INT(store_user_auth(st, "alice@example.org", "s3cret pass"), alice);
    CHECK_EQ_INT(store_user_auth(st, "ALICE@example.org", "s3cret pass"), alice);
    CHECK_EQ_INT(store_user_auth(st, "alice@example.org", "s3cret pasS"), 0);
    CHECK_EQ_INT(store_user_auth(st, "alice@example.org", ""), 0);
    CHECK_EQ_INT(store_user_auth(st, "nobody@example.org", "s3cret pass"), 0);
    CHECK_EQ_INT(store_user_passwd(st, "alice@example.org", "new one", &err), 0);
    CHECK_EQ_INT(store_user_auth(st, "alice@example.org", "s3cret pass"), 0);
    CHECK_EQ_INT(store_user_auth(st, "alice@example.org", "new one"), alice);
    CHECK_EQ_INT(store_user_passwd(st, "nobody@example.org", "x", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);

    /* del removes account, mailboxes and files */
    CHECK_EQ_INT(store_user_add(st, "carol@example.org", "pw", &err), 0);
    int64_t carol = store_user_lookup(st, "carol@example.org");
    char rel[64];
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)carol);
    CHECK(file_exists(rel));
    CHECK_EQ_INT(store_user_del(st, "Carol@example.org", &err), 0);
    CHECK(!file_exists(rel));
    CHECK_EQ_INT(store_user_lookup(st, "carol@example.org"), 0);
    CHECK_EQ_INT(store_user_del(st, "carol@example.org", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);
    int count2;
    mbox_status(st, "carol@example.org", "INBOX", &count2);
    CHECK_EQ_INT(count2, 0);

    /* domains */
    CHECK_EQ_INT(store_domain_add(st, "Example.NET", &err), 0);
    CHECK_EQ_INT(store_domain_add(st, "example.net", &err), 0); /* idempotent */
    CHECK(store_domain_is_local(st, "example.net"));
    CHECK_EQ_INT(store_domain_add(st, "bad domain", &err), -1);
    CHECK_EQ_INT(store_domain_del(st, "example.org", &err), -1); /* has accounts */
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_EXISTS);
    CHECK_EQ_INT(store_domain_add(st, "tmp.test", &err), 0);
    CHECK_EQ_INT(store_domain_del(st, "TMP.test", &err), 0);
    CHECK(!store_domain_is_local(st, "tmp.test"));
    CHECK_EQ_INT(store_domain_del(st, "tmp.test", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);
    store_close(st);
}

static void test_hashes(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    static const char *const prefixes[] = { "$y$", "$2b$", "$6$", "$5$", "$1$" };
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    for (size_t i = 0; i < 5; i++) {
        char *setting = crypt_gensalt_ra(prefixes[i], 0, NULL, 0);
        CHECK(setting != NULL);
        char *h = setting ? crypt_r("correct horse", setting, cd) : NULL;
        CHECK(h != NULL && h[0] == '$');
        char addr[64], hash[256];
        snprintf(addr, sizeof(addr), "hash%zu@hashes.test", i);
        str_copy(hash, h ? h : "", sizeof(hash));
        const char *err = NULL;
        CHECK_EQ_INT(store_user_add(st, addr, hash, &err), 0);
        int64_t id = store_user_lookup(st, addr);
        CHECK(id > 0);
        CHECK_EQ_INT(store_user_auth(st, addr, "correct horse"), id);
        CHECK_EQ_INT(store_user_auth(st, addr, "correct horsE"), 0);
        CHECK_EQ_INT(store_user_auth(st, addr, hash), 0); /* the hash is not the password */
        free(setting);
    }
    /* Dovecot-style scheme prefix */
    char *setting = crypt_gensalt_ra("$6$", 0, NULL, 0);
    char dove[300];
    snprintf(dove, sizeof(dove), "{SHA512-CRYPT}%s", crypt_r("pw6", setting, cd));
    free(setting);
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "dove@hashes.test", dove, &err), 0);
    CHECK(store_user_auth(st, "dove@hashes.test", "pw6") > 0);
    /* a malformed hash is refused rather than stored as a password */
    CHECK_EQ_INT(store_user_add(st, "bad@hashes.test", "$2b$99$short", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_INVALID);
    /* plaintext is hashed with yescrypt */
    CHECK_EQ_INT(store_user_add(st, "plain@hashes.test", "$not a hash", &err), 0);
    CHECK(store_user_auth(st, "plain@hashes.test", "$not a hash") > 0);
    free(cd);
    store_close(st);
}

/* ---- resolution ---- */

static int resolve1(struct store *st, const char *addr, struct store_rcpt_target *t)
{
    return store_rcpt_resolve(st, addr, t, 8);
}

static void test_resolve(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    const char *err = NULL;
    struct store_rcpt_target t[8];
    int64_t alice = store_user_lookup(st, "alice@example.org");
    int64_t bob = store_user_lookup(st, "bob@example.org");

    CHECK_EQ_INT(resolve1(st, "alice@example.org", t), 1);
    CHECK_EQ_INT(t[0].kind, STORE_RCPT_LOCAL);
    CHECK_EQ_INT(t[0].account_id, alice);
    CHECK_EQ_STR(t[0].address, "alice@example.org");
    CHECK_EQ_INT(resolve1(st, "ALICE@EXAMPLE.ORG", t), 1);
    CHECK_EQ_INT(t[0].account_id, alice);
    CHECK_EQ_INT(resolve1(st, "nobody@example.org", t), 0);
    CHECK_EQ_INT(resolve1(st, "alice@elsewhere.test", t), -2);

    /* +tag */
    CHECK_EQ_INT(resolve1(st, "alice+lists@example.org", t), 1);
    CHECK_EQ_INT(t[0].account_id, alice);
    CHECK_EQ_INT(resolve1(st, "nobody+x@example.org", t), 0);

    /* alias to several, deduplicated */
    CHECK_EQ_INT(store_alias_add(st, "team@example.org", "alice@example.org", &err), 0);
    CHECK_EQ_INT(store_alias_add(st, "team@example.org", "bob@example.org", &err), 0);
    CHECK_EQ_INT(store_alias_add(st, "team@example.org", "ALICE+x@example.org", &err), 0);
    CHECK_EQ_INT(store_alias_add(st, "team@example.org", "bob@example.org", &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_EXISTS);
    CHECK_EQ_INT(resolve1(st, "Team@example.org", t), 2);
    CHECK((t[0].account_id == alice && t[1].account_id == bob) ||
          (t[0].account_id == bob && t[1].account_id == alice));
    CHECK_EQ_INT(store_rcpt_resolve(st, "team@example.org", t, 1), 1); /* max respected */
    CHECK_EQ_INT(resolve1(st, "team+tag@example.org", t), 2);

    /* remote alias destination */
    CHECK_EQ_INT(store_alias_add(st, "fwd@example.org", "someone@remote.test", &err), 0);
    CHECK_EQ_INT(store_alias_add(st, "fwd@example.org", "bob@example.org", &err), 0);
    CHECK_EQ_INT(resolve1(st, "fwd@example.org", t), 2);
    CHECK_EQ_INT(t[0].kind, STORE_RCPT_REMOTE);
    CHECK_EQ_STR(t[0].address, "someone@remote.test");
    CHECK_EQ_INT(t[1].kind, STORE_RCPT_LOCAL);

    /* loops terminate; chains are bounded at depth 8 */
    CHECK_EQ_INT(store_alias_add(st, "loop1@example.org", "loop2@example.org", &err), 0);
    CHECK_EQ_INT(store_alias_add(st, "loop2@example.org", "loop1@example.org", &err), 0);
    CHECK_EQ_INT(resolve1(st, "loop1@example.org", t), 0);
    CHECK_EQ_INT(store_alias_add(st, "loop2@example.org", "bob@example.org", &err), 0);
    CHECK_EQ_INT(resolve1(st, "loop1@example.org", t), 1);
    CHECK_EQ_INT(t[0].account_id, bob);
    char src[64], dst[64];
    for (int i = 0; i < 12; i++) {
        snprintf(src, sizeof(src), "c%d@example.org", i);
        snprintf(dst, sizeof(dst), i == 11 ? "alice@example.org" : "c%d@example.org", i + 1);
        CHECK_EQ_INT(store_alias_add(st, src, dst, &err), 0);
    }
    CHECK_EQ_INT(resolve1(st, "c5@example.org", t), 1);  /* 7 hops */
    CHECK_EQ_INT(resolve1(st, "c4@example.org", t), 1);  /* 8 hops */
    CHECK_EQ_INT(resolve1(st, "c3@example.org", t), 0);  /* 9 hops: over the bound */
    CHECK_EQ_INT(resolve1(st, "c0@example.org", t), 0);

    /* catch-all; exact and +tag win over it */
    CHECK_EQ_INT(store_alias_add(st, "@catch.test", "bob@example.org", &err), 0);
    CHECK(store_domain_is_local(st, "catch.test"));
    CHECK_EQ_INT(resolve1(st, "anything@catch.test", t), 1);
    CHECK_EQ_INT(t[0].account_id, bob);
    CHECK_EQ_INT(store_user_add(st, "carl@catch.test", "pw", &err), 0);
    CHECK_EQ_INT(resolve1(st, "carl@catch.test", t), 1);
    CHECK_EQ_INT(t[0].account_id, store_user_lookup(st, "carl@catch.test"));
    CHECK_EQ_INT(resolve1(st, "carl+x@catch.test", t), 1);
    CHECK_EQ_INT(t[0].account_id, store_user_lookup(st, "carl@catch.test"));
    CHECK_EQ_INT(store_alias_add(st, "@example.org", "alice@example.org", &err), 0);
    CHECK_EQ_INT(resolve1(st, "nobody@example.org", t), 1);
    CHECK_EQ_INT(t[0].account_id, alice);
    CHECK_EQ_INT(store_alias_del(st, "@example.org", NULL, &err), 0);
    CHECK_EQ_INT(store_alias_del(st, "@example.org", NULL, &err), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);
    CHECK_EQ_INT(resolve1(st, "nobody@example.org", t), 0);

    /* postmaster: to the domain's first account when nothing else */
    CHECK_EQ_INT(resolve1(st, "postmaster@example.org", t), 1);
    CHECK_EQ_INT(t[0].account_id, alice);
    CHECK_EQ_INT(resolve1(st, "PostMaster@example.org", t), 1);
    CHECK_EQ_INT(store_domain_add(st, "empty.test", &err), 0);
    CHECK_EQ_INT(resolve1(st, "postmaster@empty.test", t), 0);
    CHECK_EQ_INT(store_alias_add(st, "postmaster@example.org", "bob@example.org", &err), 0);
    CHECK_EQ_INT(resolve1(st, "postmaster@example.org", t), 1);
    CHECK_EQ_INT(t[0].account_id, bob);

    /* sender ownership */
    CHECK(store_sender_allowed(st, alice, "alice@example.org"));
    CHECK(store_sender_allowed(st, alice, "Alice+x@Example.org"));
    CHECK(store_sender_allowed(st, alice, "team@example.org"));
    CHECK(!store_sender_allowed(st, alice, "bob@example.org"));
    CHECK(!store_sender_allowed(st, bob, "anything@catch.test"));

    int n = 0;
    CHECK(store_alias_list(st, alias_count_fn, &n) > 20);
    CHECK(n > 20);
    store_close(st);
}

/* ---- transactions ---- */

static const char msg1[] = "From: x@remote.test\r\nSubject: one\r\n\r\nHello.\r\n";

static void test_tx(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    char id[32];
    int64_t alice = store_user_lookup(st, "alice@example.org");

    /* single local recipient, written one byte at a time */
    const char *r1[] = { "alice@example.org" };
    CHECK_EQ_INT(deliver(st, "x@remote.test", r1, 1, NULL, msg1, strlen(msg1), 1, id), 0);
    CHECK_EQ_INT(strlen(id), 16);
    struct store_mailbox_status s = mbox_status(st, "alice@example.org", "INBOX", NULL);
    CHECK_EQ_INT(s.messages, 1);
    CHECK_EQ_INT(s.unseen, 1);
    CHECK_EQ_INT(s.uidnext, 2);
    char *m = fetch(st, "alice@example.org", "inbox", 1);
    const char *want1 = "Return-Path: <x@remote.test>\r\nDelivered-To: alice@example.org\r\n";
    CHECK(m != NULL && strncmp(m, want1, strlen(want1)) == 0 &&
          strcmp(m + strlen(want1), msg1) == 0);
    CHECK_EQ_INT(s.size, strlen(want1) + strlen(msg1));
    free(m);
    char rel[128];
    snprintf(rel, sizeof(rel), "mail/%lld/%s", (long long)alice, id);
    CHECK(file_exists(rel));
    CHECK_EQ_INT(store_message_open(st, alice, "INBOX", 2), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);

    /* three recipients, one filed in Junk; null sender */
    const char *r3[] = { "alice@example.org", "bob@example.org", "team@example.org" };
    CHECK_EQ_INT(deliver(st, "", r3, 3, "Junk", msg1, strlen(msg1), 7, id), 0);
    m = fetch(st, "bob@example.org", "Junk", 1);
    CHECK(m != NULL && strncmp(m, "Return-Path: <>\r\nDelivered-To: bob@example.org\r\n", 48) == 0);
    free(m);
    s = mbox_status(st, "alice@example.org", "Junk", NULL);
    CHECK_EQ_INT(s.messages, 1); /* alice via team deduplicated */
    CHECK_EQ_INT(count_files("tmp"), 0);

    /* mixed local and remote, large enough to pass the write buffer */
    size_t big_len = 300 * 1000;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : (char)('a' + i % 26);
    const char *rm[] = { "bob@example.org", "far@remote.test", "fwd@example.org" };
    CHECK_EQ_INT(deliver(st, "alice@example.org", rm, 3, NULL, big, big_len, 70000, id), 0);
    m = fetch(st, "bob@example.org", "INBOX", 1);
    const char *want2 = "Return-Path: <alice@example.org>\r\nDelivered-To: bob@example.org\r\n";
    CHECK(m != NULL && strncmp(m, want2, strlen(want2)) == 0 &&
          memcmp(m + strlen(want2), big, big_len) == 0);
    free(m);
    struct store_queue_entry e;
    CHECK_EQ_INT(store_queue_get(st, id, &e), 1);
    CHECK_EQ_STR(e.state, "active");
    CHECK_EQ_STR(e.sender, "alice@example.org");
    CHECK_EQ_STR(e.rcpts, "far@remote.test,someone@remote.test");
    CHECK_EQ_INT(e.size, big_len);
    int fd = store_queue_open(st, id);
    m = fd >= 0 ? read_fd(fd) : NULL;
    CHECK(m != NULL && memcmp(m, big, big_len) == 0 && m[big_len] == '\0');
    free(m);
    free(big);

    /* UIDs ascend */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(deliver(st, "x@remote.test", r1, 1, NULL, msg1, strlen(msg1), 4096, NULL), 0);
    s = mbox_status(st, "alice@example.org", "INBOX", NULL);
    CHECK_EQ_INT(s.messages, 6);
    CHECK_EQ_INT(s.uidnext, 7);
    CHECK(s.highestmodseq >= 7);
    for (uint32_t uid = 1; uid <= 6; uid++) {
        m = fetch(st, "alice@example.org", "INBOX", uid);
        CHECK(m != NULL);
        free(m);
    }

    /* abort leaves nothing; begin refuses bad envelopes */
    struct store_rcpt_target t;
    CHECK_EQ_INT(store_rcpt_resolve(st, "alice@example.org", &t, 1), 1);
    struct store_tx_rcpt r = { .address = "alice@example.org", .target = &t };
    struct store_envelope env = { .sender = "x@remote.test", .rcpts = &r, .n_rcpts = 1 };
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)alice);
    int before = count_files(rel);
    const char *err = NULL;
    struct store_tx *tx = store_tx_begin(st, &env, &err);
    CHECK(tx != NULL);
    CHECK_EQ_INT(count_files(rel), before + 1);
    store_tx_write(tx, msg1, strlen(msg1));
    store_tx_abort(tx);
    CHECK_EQ_INT(count_files(rel), before);
    /* the account vanishes between begin and commit: done(-1), no files */
    CHECK_EQ_INT(store_user_add(st, "gone@example.org", "pw", &err), 0);
    struct store_rcpt_target tg;
    CHECK_EQ_INT(store_rcpt_resolve(st, "gone@example.org", &tg, 1), 1);
    struct store_tx_rcpt rg[2] = { { .address = "gone@example.org", .target = &tg },
                                   { .address = "alice@example.org", .target = &t } };
    struct store_envelope eg = { .sender = "x@remote.test", .rcpts = rg, .n_rcpts = 2 };
    tx = store_tx_begin(st, &eg, &err);
    CHECK(tx != NULL);
    if (tx != NULL) {
        store_tx_write(tx, msg1, strlen(msg1));
        CHECK_EQ_INT(store_user_del(st, "gone@example.org", &err), 0);
        struct waiter w;
        waiter_init(&w);
        store_tx_commit(tx, waiter_done, &w);
        waiter_wait(&w);
        CHECK_EQ_INT(w.result, -1);
        CHECK(w.error[0] != '\0');
        waiter_free(&w);
    }
    CHECK_EQ_INT(count_files(rel), before); /* alice's copy removed too */
    env.n_rcpts = 0;
    CHECK(store_tx_begin(st, &env, &err) == NULL);
    env.n_rcpts = 1;
    env.sender = "evil\r\nX-Injected: 1";
    CHECK(store_tx_begin(st, &env, &err) == NULL);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_INVALID);
    store_close(st);
}

/* ---- concurrency ---- */

struct worker {
    struct store *st;
    int n, failures;
    char (*ids)[32];
    const char *rcpt;
    size_t size;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char *data = malloc(w->size);
    for (size_t i = 0; i < w->size; i++)
        data[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'x';
    const char *r[] = { w->rcpt };
    for (int i = 0; i < w->n; i++)
        if (deliver(w->st, "sender@remote.test", r, 1, NULL, data, w->size, 65536, w->ids[i]) != 0)
            w->failures++;
    free(data);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Runs nthreads submitters of n messages each; returns commits/s. */
static double run_workers(struct store *st, int nthreads, int n, size_t size, int *failures_r,
                          int *dups_r)
{
    pthread_t th[32];
    struct worker w[32];
    char (*ids)[32] = calloc((size_t)(nthreads * n), 32);
    uint64_t t0 = now_mono_ms();
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){ st, n, 0, ids + i * n,
                                i % 3 == 2 ? "bob@example.org" : "alice@example.org", size };
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    *failures_r = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        *failures_r += w[i].failures;
    }
    double secs = (double)(now_mono_ms() - t0) / 1000.0;
    qsort(ids, (size_t)(nthreads * n), 32, cmp_id);
    *dups_r = 0;
    for (int i = 1; i < nthreads * n; i++)
        if (strcmp(ids[i], ids[i - 1]) == 0)
            (*dups_r)++;
    free(ids);
    return (nthreads * n) / (secs > 0 ? secs : 0.001);
}

static void test_concurrent(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    struct store_mailbox_status a0 = mbox_status(st, "alice@example.org", "INBOX", NULL);
    struct store_mailbox_status b0 = mbox_status(st, "bob@example.org", "INBOX", NULL);
    int failures, dups;
    run_workers(st, 9, 40, 2000, &failures, &dups);
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(dups, 0);
    struct store_mailbox_status a1 = mbox_status(st, "alice@example.org", "INBOX", NULL);
    struct store_mailbox_status b1 = mbox_status(st, "bob@example.org", "INBOX", NULL);
    CHECK_EQ_INT(a1.messages - a0.messages, 6 * 40);
    CHECK_EQ_INT(b1.messages - b0.messages, 3 * 40);
    CHECK_EQ_INT(a1.uidnext - a0.uidnext, 6 * 40); /* every UID used once, no gaps */
    char rel[64];
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)store_user_lookup(st, "alice@example.org"));
    CHECK_EQ_INT(count_files(rel), (int)(a1.messages + 1)); /* + the Junk copy */
    for (uint32_t uid = a0.uidnext; uid < a1.uidnext; uid++) {
        char *m = fetch(st, "alice@example.org", "INBOX", uid);
        CHECK(m != NULL && strlen(m) > 2000);
        free(m);
    }
    store_close(st);
}

/* ---- reopen, cleanup, queue ---- */

static void test_reopen_and_cleanup(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    int64_t alice = store_user_lookup(st, "alice@example.org");
    struct store_mailbox_status a = mbox_status(st, "alice@example.org", "INBOX", NULL);
    CHECK(alice > 0);
    CHECK(a.messages >= 246);
    CHECK(store_user_auth(st, "alice@example.org", "new one") == alice);
    store_close(st);

    /* a clean close leaves no marker, so the next open skips the scan */
    CHECK(!file_exists("store.dirty"));
    touch("tmp/clean-leftover");
    st = open_store(dir);
    CHECK(file_exists("store.dirty"));
    CHECK(file_exists("tmp/clean-leftover"));
    store_close(st);
    CHECK(!file_exists("store.dirty"));

    /* two openers (server and CLI): the second one never sweeps, and the
     * marker stays until the last one closes */
    struct store *a1 = open_store(dir);
    touch("store.dirty");
    struct store *b1 = open_store(dir);
    CHECK(a1 != NULL && b1 != NULL);
    CHECK(file_exists("tmp/clean-leftover"));
    store_close(a1);
    CHECK(file_exists("store.dirty"));
    store_close(b1);
    CHECK(!file_exists("store.dirty"));

    /* leftovers of unacknowledged transactions after a crash (the marker
     * stays behind when a process dies with the store open) */
    touch("store.dirty");
    char rel[128];
    touch("tmp/leftover");
    snprintf(rel, sizeof(rel), "mail/%lld/0123456789abcdef", (long long)alice);
    touch(rel);
    touch("queue/fedcba9876543210");
    char p[512];
    snprintf(p, sizeof(p), "%s/mail/999999", dir);
    mkdir(p, 0700);
    touch("mail/999999/x");
    snprintf(p, sizeof(p), "%s/mail/notanid", dir);
    mkdir(p, 0700);
    st = open_store(dir);
    CHECK(st != NULL);
    if (!st)
        return;
    CHECK(!file_exists("tmp/leftover"));
    CHECK(!file_exists("tmp/clean-leftover"));
    CHECK(!file_exists(rel));
    CHECK(!file_exists("queue/fedcba9876543210"));
    CHECK(!file_exists("mail/999999"));
    CHECK(file_exists("mail/notanid")); /* not ours: left alone */
    struct store_mailbox_status a2 = mbox_status(st, "alice@example.org", "INBOX", NULL);
    CHECK_EQ_INT(a2.messages, a.messages);
    CHECK_EQ_INT(a2.uidnext, a.uidnext);
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)alice);
    CHECK_EQ_INT(count_files(rel), (int)(a.messages + 1));
    CHECK_EQ_INT(count_files("queue"), 1);
    char *m = fetch(st, "alice@example.org", "INBOX", a.uidnext - 1);
    CHECK(m != NULL);
    free(m);
    store_close(st);
}

struct qfirst {
    char id[32];
    int n;
};

static void qfirst_fn(const struct store_queue_entry *e, void *arg)
{
    struct qfirst *q = arg;
    if (q->n++ == 0)
        str_copy(q->id, e->id, sizeof(q->id));
}

static void test_queue(void)
{
    struct store *st = open_store(dir);
    if (!st)
        return;
    struct qfirst q = { .n = 0 };
    CHECK_EQ_INT(store_queue_list(st, qfirst_fn, &q), 1);
    const char *err = NULL;
    struct store_queue_entry e;
    CHECK_EQ_INT(store_queue_hold(st, q.id, true, &err), 1);
    CHECK_EQ_INT(store_queue_get(st, q.id, &e), 1);
    CHECK_EQ_STR(e.state, "hold");
    CHECK_EQ_INT(store_queue_flush(st, q.id, &err), 0); /* held: not flushed */
    CHECK_EQ_INT(store_queue_hold(st, q.id, false, &err), 1);
    CHECK_EQ_INT(store_queue_hold(st, q.id, false, &err), 0); /* not on hold any more */
    CHECK_EQ_INT(store_queue_get(st, q.id, &e), 1);
    CHECK_EQ_STR(e.state, "active");
    CHECK_EQ_INT(store_queue_flush(st, NULL, &err), 1);
    CHECK_EQ_INT(store_queue_get(st, "nonexistent", &e), 0);
    CHECK_EQ_INT(store_queue_open(st, "nonexistent"), -1);
    CHECK_EQ_INT(store_error_kind(), STORE_ERR_NOTFOUND);
    CHECK_EQ_INT(store_queue_delete(st, q.id, &err), 1);
    CHECK_EQ_INT(store_queue_delete(st, q.id, &err), 0);
    CHECK_EQ_INT(count_files("queue"), 0);
    q.n = 0;
    CHECK_EQ_INT(store_queue_list(st, qfirst_fn, &q), 0);
    store_close(st);
}

/* Sync mode syncfs (one syncfs per batch) gives the same results. */
static void test_syncfs_mode(void)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/fallback", dir);
    setenv("POSTEL_STORE_SYNC", "syncfs", 1);
    struct store *st = open_store(sub);
    unsetenv("POSTEL_STORE_SYNC");
    if (!st)
        return;
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "u@fb.test", "pw", &err), 0);
    CHECK_EQ_INT(store_user_add(st, "v@fb.test", "pw", &err), 0);
    const char *r[] = { "u@fb.test", "v@fb.test", "w@remote.test" };
    CHECK_EQ_INT(deliver(st, "s@remote.test", r, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    CHECK_EQ_INT(deliver(st, "s@remote.test", r, 3, NULL, msg1, strlen(msg1), 100, NULL), 0);
    char *m = fetch(st, "u@fb.test", "INBOX", 2);
    CHECK(m != NULL && strstr(m, "Delivered-To: u@fb.test\r\n") != NULL);
    free(m);
    m = fetch(st, "v@fb.test", "INBOX", 1);
    CHECK(m != NULL && strstr(m, "Delivered-To: v@fb.test\r\n") != NULL);
    free(m);
    int n = 0;
    CHECK_EQ_INT(store_queue_list(st, queue_count_fn, &n), 1);
    store_close(st);
    st = open_store(sub); /* nothing is swept: everything is referenced */
    CHECK(st != NULL);
    if (st) {
        struct store_mailbox_status s = mbox_status(st, "u@fb.test", "INBOX", NULL);
        CHECK_EQ_INT(s.messages, 2);
        store_close(st);
    }
}

/* Files made ahead: transactions take them, their content is exactly what
 * was written, and nothing untaken is left behind by a clean close. */
static void test_file_pool(void)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/pool", dir);
    struct store *st = open_store(sub);
    if (!st)
        return;
    CHECK_EQ_INT(store_set_file_pool(st), 0);
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "p@pool.test", "pw", &err), 0);
    int64_t id = store_user_lookup(st, "p@pool.test");
    char rel[300], full[400];
    snprintf(rel, sizeof(rel), "pool/mail/%lld", (long long)id);
    const char *r[] = { "p@pool.test", "far@remote.test" };
    CHECK_EQ_INT(deliver(st, "s@remote.test", r, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    /* the first one asked the filler for a batch: wait for it */
    for (int i = 0; i < 200 && count_files(rel) < 3; i++)
        usleep(10000);
    CHECK(count_files(rel) >= 3);
    char ids[40][32];
    for (int i = 0; i < 40; i++) {
        char data[200];
        snprintf(data, sizeof(data), "Subject: pool %d\r\n\r\nbody %d\r\n", i, i);
        CHECK_EQ_INT(deliver(st, "s@remote.test", r, i % 10 == 9 ? 2 : 1, NULL, data, strlen(data),
                             7, ids[i]), 0);
    }
    uint64_t taken = 0, missed = 0;
    store_pool_stats(st, &taken, &missed);
    CHECK(taken >= 10);
    CHECK(taken + missed >= 41);
    struct store_mailbox_status s = mbox_status(st, "p@pool.test", "INBOX", NULL);
    CHECK_EQ_INT(s.messages, 41);
    for (int i = 0; i < 40; i++) {
        char *m = fetch(st, "p@pool.test", "INBOX", (uint32_t)(i + 2));
        char want[64];
        snprintf(want, sizeof(want), "Subject: pool %d\r\n\r\nbody %d\r\n", i, i);
        CHECK(m != NULL && strstr(m, "Delivered-To: p@pool.test\r\n") != NULL &&
              strstr(m, want) != NULL);
        free(m);
    }
    int n = 0;
    CHECK_EQ_INT(store_queue_list(st, queue_count_fn, &n), 4);

    /* Files made ahead that vanish (their directory removed by another
     * process, say) are never handed out: the message would be lost. */
    for (int i = 0; i < 200 && count_files(rel) < 43; i++)
        usleep(10000);
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    DIR *dd = opendir(path);
    int unlinked = 0;
    struct dirent *de;
    while (dd != NULL && (de = readdir(dd)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char file[300];
        snprintf(file, sizeof(file), "mail/%lld/%s", (long long)id, de->d_name);
        int fd = store_msg_open(st, file);
        struct stat sb;
        bool empty = fd >= 0 && fstat(fd, &sb) == 0 && sb.st_size == 0;
        if (fd >= 0)
            close(fd);
        if (empty) { /* made ahead, not taken: no message is empty */
            char victim[900];
            snprintf(victim, sizeof(victim), "%s/%s", path, de->d_name);
            unlinked += unlink(victim) == 0;
        }
    }
    if (dd != NULL)
        closedir(dd);
    CHECK(unlinked >= 2);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(deliver(st, "s@remote.test", r, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    s = mbox_status(st, "p@pool.test", "INBOX", NULL);
    CHECK_EQ_INT(s.messages, 44);
    for (uint32_t uid = 42; uid <= 44; uid++) {
        char *m = fetch(st, "p@pool.test", "INBOX", uid);
        CHECK(m != NULL && strstr(m, "Delivered-To: p@pool.test\r\n") != NULL);
        free(m);
    }
    store_close(st);
    /* a clean close removed every file no message took */
    CHECK_EQ_INT(count_files(rel), 44);
    CHECK_EQ_INT(count_files("pool/queue"), 4);
    snprintf(full, sizeof(full), "%s/pool/store.dirty", dir);
    CHECK(access(full, F_OK) != 0);
}

static int blob_count(struct store *st)
{
    struct store_conn *c = store_conn_get(st);
    sqlite3_stmt *s = NULL;
    int n = -1;
    if (c && sqlite3_prepare_v2(c->db, "SELECT count(*) FROM message_blobs", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* Blob mode (capture): contents live in index.db, read back as files,
 * gone with their last message row, kept across a restart. */
static void test_blob_messages(void)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/blobs", dir);
    struct store *st = open_store(sub);
    if (!st)
        return;
    store_set_blob_messages(st);
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "b1@bl.test", "pw", &err), 0);
    CHECK_EQ_INT(store_user_add(st, "b2@bl.test", "pw", &err), 0);
    const char *r[] = { "b1@bl.test", "b2@bl.test" };
    for (int i = 0; i < 5; i++) {
        char data[200];
        snprintf(data, sizeof(data), "Subject: blob %d\r\n\r\nbody %d\r\n", i, i);
        CHECK_EQ_INT(deliver(st, "s@remote.test", r, i == 4 ? 2 : 1, NULL, data, strlen(data), 5, NULL), 0);
    }
    char rel[300];
    snprintf(rel, sizeof(rel), "blobs/mail/%lld", (long long)store_user_lookup(st, "b1@bl.test"));
    CHECK(count_files(rel) <= 0); /* no file per message */
    CHECK_EQ_INT(blob_count(st), 6);
    char *m = fetch(st, "b1@bl.test", "INBOX", 3);
    CHECK(m != NULL && strncmp(m, "Return-Path: <s@remote.test>\r\nDelivered-To: b1@bl.test\r\n", 56) == 0 &&
          strstr(m, "Subject: blob 2\r\n\r\nbody 2\r\n") != NULL);
    free(m);
    m = fetch(st, "b2@bl.test", "INBOX", 1); /* the second recipient's copy */
    CHECK(m != NULL && strstr(m, "Delivered-To: b2@bl.test\r\n") != NULL &&
          strstr(m, "Subject: blob 4\r\n") != NULL);
    free(m);
    struct store_mailbox_status s1 = mbox_status(st, "b1@bl.test", "INBOX", NULL);
    CHECK_EQ_INT(s1.messages, 5);
    uint32_t uids[] = { 1, 2 };
    CHECK_EQ_INT(store_msg_expunge(st, store_user_lookup(st, "b1@bl.test"), "INBOX", uids, 2, NULL, &err), 2);
    CHECK_EQ_INT(blob_count(st), 4);
    CHECK(fetch(st, "b1@bl.test", "INBOX", 1) == NULL);
    store_close(st);
    st = open_store(sub);
    CHECK(st != NULL);
    if (!st)
        return;
    m = fetch(st, "b1@bl.test", "INBOX", 5);
    CHECK(m != NULL && strstr(m, "Subject: blob 4\r\n") != NULL);
    free(m);
    CHECK_EQ_INT(blob_count(st), 4);
    store_close(st);
}

/* Waits (bounded) until the writer has turned every staged message into
 * its file: no blob left and rel holding nfiles files. */
static bool staged_settle(struct store *st, const char *rel, int nfiles)
{
    for (int i = 0; i < 500; i++) {
        uint64_t waiting = 1, written = 0;
        store_stage_stats(st, &waiting, &written);
        /* the writer counts again once the index thread has dropped the blobs */
        if (blob_count(st) == 0 && count_files(rel) == nfiles && waiting == 0)
            return true;
        usleep(20000);
    }
    fprintf(stderr, "staged: blobs=%d files=%d (want 0, %d)\n", blob_count(st), count_files(rel), nfiles);
    return false;
}

/* Staging: small messages committed with the index, readable at once,
 * written out as files behind the commit; an expunge before that leaves
 * neither file nor blob; large ones go straight to files; what a stopped
 * store left staged is read by the next one and written out once it
 * stages too. */
static void test_staged_messages(void)
{
    char sub[300], rel[300];
    snprintf(sub, sizeof(sub), "%s/staged", dir);
    struct store *st = open_store(sub);
    if (!st)
        return;
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "s1@st.test", "pw", &err), 0);
    CHECK_EQ_INT(store_user_add(st, "s2@st.test", "pw", &err), 0);
    CHECK_EQ_INT(store_set_staging(st), 0);
    int64_t a1 = store_user_lookup(st, "s1@st.test");
    snprintf(rel, sizeof(rel), "staged/mail/%lld", (long long)a1);
    deliver_size_hint = true;
    const char *both[] = { "s1@st.test", "s2@st.test" };
    for (int i = 0; i < 6; i++) {
        char data[300];
        snprintf(data, sizeof(data), "Subject: staged %d\r\n\r\nbody %d\r\n", i, i);
        CHECK_EQ_INT(deliver(st, "s@remote.test", both, i == 5 ? 2 : 1, NULL, data, strlen(data), 7, NULL), 0);
        /* readable right after the 250, whether or not its file exists yet */
        char *m = fetch(st, "s1@st.test", "INBOX", (uint32_t)i + 1);
        CHECK(m != NULL && strncmp(m, "Return-Path: <s@remote.test>\r\nDelivered-To: s1@st.test\r\n", 56) == 0 &&
              strstr(m, data) != NULL);
        free(m);
    }
    /* expunged at once: its blob goes with the row, and no file stays */
    uint32_t uids[] = { 2 };
    CHECK_EQ_INT(store_msg_expunge(st, a1, "INBOX", uids, 1, NULL, &err), 1);
    /* larger than STORE_STAGE_MAX: a file before the 250 */
    size_t big_len = STORE_STAGE_MAX + 1000;
    char *big = malloc(big_len + 1);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'x', big_len);
    memcpy(big, "Subject: big\r\n\r\n", 16);
    memcpy(big + big_len - 2, "\r\n", 2);
    big[big_len] = '\0';
    CHECK_EQ_INT(deliver(st, "s@remote.test", both, 1, NULL, big, big_len, 4096, NULL), 0);
    CHECK(staged_settle(st, rel, 6)); /* 5 staged and kept, and the big one */
    char *m = fetch(st, "s1@st.test", "INBOX", 6);
    CHECK(m != NULL && strstr(m, "Subject: staged 5\r\n\r\nbody 5\r\n") != NULL);
    free(m);
    m = fetch(st, "s2@st.test", "INBOX", 1); /* the second recipient's own copy */
    CHECK(m != NULL && strstr(m, "Delivered-To: s2@st.test\r\n") != NULL && strstr(m, "Subject: staged 5") != NULL);
    free(m);
    CHECK(fetch(st, "s1@st.test", "INBOX", 2) == NULL);
    m = fetch(st, "s1@st.test", "INBOX", 7);
    CHECK(m != NULL && strlen(m) > big_len && strcmp(m + strlen(m) - big_len, big) == 0);
    free(m);
    free(big);
    uint64_t waiting = 1, written = 0;
    store_stage_stats(st, &waiting, &written);
    CHECK(written >= 5);
    CHECK_EQ_INT((long long)waiting, 0);

    /* staged, then the store closes before its writer runs (or while it
     * does): the next store reads them without staging, and with staging
     * writes them out */
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(deliver(st, "s@remote.test", both, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    store_close(st);
    st = open_store(sub);
    CHECK(st != NULL);
    if (!st)
        return;
    for (uint32_t uid = 8; uid <= 27; uid++) {
        m = fetch(st, "s1@st.test", "INBOX", uid);
        CHECK(m != NULL && strstr(m, msg1) != NULL);
        free(m);
    }
    CHECK_EQ_INT(store_set_staging(st), 0);
    CHECK(staged_settle(st, rel, 26));
    m = fetch(st, "s1@st.test", "INBOX", 27);
    CHECK(m != NULL && strstr(m, msg1) != NULL);
    free(m);
    deliver_size_hint = false;
    store_close(st);
}

/* DMARC rows are queued while the commit threads run and written with the
 * next batch, after a short wait, before a reader looks, or at close. */
static int64_t dmarc_rows(struct store *st)
{
    struct store_dmarc_window *w = NULL;
    int n = store_dmarc_windows(st, 4000000000LL, 86400, &w);
    free(w);
    return n;
}

static void test_dmarc_rows_behind(void)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/dmarcq", dir);
    struct store *st = open_store(sub);
    if (!st)
        return;
    const char *err = NULL;
    CHECK_EQ_INT(store_user_add(st, "d@dq.test", "pw", &err), 0);
    struct store_dmarc_row row = {
        .time = 86400 * 3 + 5, .policy_domain = "a.test", .header_from = "a.test",
        .source_ip = "192.0.2.1", .envelope_from = "a.test", .disposition = "none",
        .dkim_eval = "pass", .spf_eval = "pass", .reason = "", .dkim_auth = "",
        .spf_domain = "a.test", .spf_scope = "mfrom", .spf_result = "pass", .record = "v=DMARC1; p=none",
    };
    /* no commit threads yet: written at once */
    CHECK_EQ_INT(store_dmarc_add(st, &row, &err), 0);
    CHECK_EQ_INT(dmarc_rows(st), 1);
    const char *r[] = { "d@dq.test" };
    CHECK_EQ_INT(deliver(st, "s@remote.test", r, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    /* threads running: queued, and carried by the first batch once the
     * row is due (DMARC_PENDING_MS), not by every batch */
    row.policy_domain = "b.test";
    CHECK_EQ_INT(store_dmarc_add(st, &row, &err), 0);
    CHECK(st->dmarc_n <= 1);
    usleep((DMARC_PENDING_MS + 50) * 1000);
    CHECK_EQ_INT(deliver(st, "s@remote.test", r, 1, NULL, msg1, strlen(msg1), 100, NULL), 0);
    CHECK_EQ_INT(st->dmarc_n, 0);
    row.policy_domain = "c.test";
    CHECK_EQ_INT(store_dmarc_add(st, &row, &err), 0);
    CHECK_EQ_INT(st->dmarc_n, 1);
    usleep(400 * 1000); /* no batch: the index thread writes it on its own */
    CHECK_EQ_INT(st->dmarc_n, 0);
    row.policy_domain = "d.test";
    CHECK_EQ_INT(store_dmarc_add(st, &row, &err), 0);
    store_close(st); /* d.test still queued: close writes it */
    st = open_store(sub);
    CHECK(st != NULL);
    if (st == NULL)
        return;
    CHECK_EQ_INT(dmarc_rows(st), 4);
    store_close(st);
}

/* Not a test: 20 submitters, single-recipient 5 KB messages. */
static void bench(void)
{
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/bench", dir);
    struct store *st = open_store(sub);
    if (!st)
        return;
    const char *err = NULL;
    store_user_add(st, "alice@example.org", "pw", &err);
    store_user_add(st, "bob@example.org", "pw", &err);
    int failures, dups;
    int per = atoi(getenv("POSTEL_STORE_BENCH"));
    if (per < 10)
        per = 250;
    double rate = run_workers(st, 20, per, 5 * 1024, &failures, &dups);
    printf("bench: %d commits by 20 threads, 5 KB, single recipient: %.0f commits/s"
           " (failures %d, duplicate ids %d)\n",
           20 * per, rate, failures, dups);
    store_close(st);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/postel-test-store-XXXXXX");
    const char *tmp = getenv("TMPDIR");
    if (tmp != NULL && strlen(tmp) < 200)
        snprintf(dir, sizeof(dir), "%s/postel-test-store-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_accounts);
    RUN(test_hashes);
    RUN(test_resolve);
    RUN(test_tx);
    RUN(test_concurrent);
    RUN(test_reopen_and_cleanup);
    RUN(test_queue);
    RUN(test_syncfs_mode);
    RUN(test_file_pool);
    RUN(test_dmarc_rows_behind);
    RUN(test_blob_messages);
    RUN(test_staged_messages);
    if (getenv("POSTEL_STORE_BENCH") != NULL)
        bench();
    rm_rf(dir);
    return unit_report("store");
}
