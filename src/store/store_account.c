/*
 * Domains, accounts, passwords, aliases and recipient resolution.
 *
 * Addresses are compared case-insensitively (the columns are COLLATE
 * NOCASE, which folds ASCII only) and stored with the domain lower-cased,
 * the local part as given.  Like Postfix with lower-cased lookups, a
 * recipient's local part matches whatever its case.
 */
#include "store/store_int.h"

#include <crypt.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* ---- address syntax ---- */

/* A domain name (RFC 5321 4.1.2 Domain, plus UTF-8 for SMTPUTF8 / IDN):
 * dot-separated labels of letters, digits, '-' (not at label ends) or
 * bytes >= 0x80, at most 63 octets each. */
bool store_domain_valid(const char *domain)
{
    size_t n = strlen(domain), label = 0;
    if (n == 0 || n > SMTP_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)domain[i];
        if (ch == '.') {
            if (label == 0 || domain[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum(ch) || ch == '-' || ch >= 0x80))
            return false;
        if (ch == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && domain[n - 1] != '-';
}

/* A local part without quoting: printable, no space, none of the RFC 5322
 * specials that would need a quoted string; UTF-8 allowed. */
static bool local_valid(const char *local, size_t n)
{
    if (n == 0 || n > SMTP_LOCALPART_MAX || local[0] == '.' || local[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)local[i];
        if (ch <= 0x20 || ch == 0x7f || strchr("<>()[]\\,;:@\"", ch) != NULL)
            return false;
        if (ch == '.' && local[i + 1] == '.')
            return false;
    }
    return true;
}

bool store_address_valid(const char *address, bool allow_catchall)
{
    size_t n = strlen(address);
    if (n == 0 || n > SMTP_PATH_MAX - 2) /* the path's <> count in its 256 */
        return false;
    const char *at = strrchr(address, '@');
    if (at == NULL || !store_domain_valid(at + 1))
        return false;
    if (at == address)
        return allow_catchall;
    return local_valid(address, (size_t)(at - address));
}

int store_address_split(const char *address, char *local, size_t local_size, char *domain,
                        size_t domain_size)
{
    if (!store_address_valid(address, true))
        return -1;
    const char *at = strrchr(address, '@');
    size_t ln = (size_t)(at - address);
    if (ln >= local_size || strlen(at + 1) >= domain_size)
        return -1;
    memcpy(local, address, ln);
    local[ln] = '\0';
    str_lower(local);
    str_copy(domain, at + 1, domain_size);
    str_lower(domain);
    return 0;
}

/* local@domain into out; -1 if it does not fit. */
static int address_join(char *out, size_t size, const char *local, const char *domain)
{
    int n = snprintf(out, size, "%s@%s", local, domain);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Normalized form for storage: local part as given, domain lower-cased. */
static int address_normalize(const char *in, char *out, size_t size, bool allow_catchall,
                             const char **error_r)
{
    if (!store_address_valid(in, allow_catchall) || strlen(in) >= size)
        return store_fail(STORE_ERR_INVALID, error_r, "invalid address: %s", in);
    str_copy(out, in, size);
    str_lower(strrchr(out, '@') + 1);
    return 0;
}

/* ---- domains ---- */

static int domain_insert(struct store_conn *c, const char *domain, const char **error_r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "INSERT OR IGNORE INTO domains(name, created) VALUES (?1, ?2)",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "domain");
    store_bind_text(s, 1, domain);
    sqlite3_bind_int64(s, 2, store_now());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, error_r, "domain");
}

/* Runs a one-row COUNT query with one text parameter; -1 on error. */
static int64_t count_query(struct store_conn *c, const char *sql, const char *param)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "index");
    store_bind_text(s, 1, param);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (n < 0)
        store_fail_db(c, NULL, "index");
    sqlite3_finalize(s);
    return n;
}

int store_domain_add(struct store *st, const char *domain, const char **error_r)
{
    store_clear_error();
    char d[SMTP_DOMAIN_MAX + 1];
    if (!store_domain_valid(domain) || str_copy(d, domain, sizeof(d)) >= sizeof(d))
        return store_fail(STORE_ERR_INVALID, error_r, "invalid domain: %s", domain);
    str_lower(d);
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    return domain_insert(c, d, error_r);
}

/* Refuses while accounts or aliases still use the domain. */
int store_domain_del(struct store *st, const char *domain, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (store_begin(c, error_r) < 0)
        return -1;
    char pattern[SMTP_DOMAIN_MAX + 2];
    snprintf(pattern, sizeof(pattern), "@%s", domain);
    str_lower(pattern);
    int64_t accounts = count_query(c, "SELECT count(*) FROM accounts WHERE domain = ?1", domain);
    int64_t aliases = count_query(
        c, "SELECT count(*) FROM aliases WHERE substr(source, instr(source, '@')) = ?1", pattern);
    if (accounts < 0 || aliases < 0) {
        store_rollback(c);
        return store_fail_again(error_r);
    }
    if (accounts > 0 || aliases > 0) {
        store_rollback(c);
        return store_fail(STORE_ERR_EXISTS, error_r,
                          "domain %s still has %lld account(s) and %lld alias(es)", domain,
                          (long long)accounts, (long long)aliases);
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM domains WHERE name = ?1", -1, &s, NULL) !=
        SQLITE_OK) {
        store_fail_db(c, error_r, "domain");
        store_rollback(c);
        return -1;
    }
    store_bind_text(s, 1, domain);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        store_fail_db(c, error_r, "domain");
        store_rollback(c);
        return -1;
    }
    if (sqlite3_changes(c->db) == 0) {
        store_rollback(c);
        return store_fail(STORE_ERR_NOTFOUND, error_r, "no such domain: %s", domain);
    }
    return store_commit(c, error_r);
}

static int domain_is_local(struct store_conn *c, const char *domain)
{
    sqlite3_stmt *s = store_stmt(c, STMT_DOMAIN_IS_LOCAL);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, domain);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, NULL, "domain");
}

bool store_domain_is_local(struct store *st, const char *domain)
{
    struct store_conn *c = store_conn_get(st);
    return c != NULL && domain_is_local(c, domain) == 1;
}

/* Runs a query whose rows are one or two text columns, calling fn1 or fn2
 * for each; returns the row count or -1. */
static int list_query(struct store *st, const char *sql, void (*fn1)(const char *, void *),
                      void (*fn2)(const char *, const char *, void *), void *arg)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, NULL, "index");
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(s, 0);
        if (fn1)
            fn1(a ? a : "", arg);
        else {
            const char *b = (const char *)sqlite3_column_text(s, 1);
            fn2(a ? a : "", b ? b : "", arg);
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        n = store_fail_db(c, NULL, "index");
    sqlite3_finalize(s);
    return n;
}

int store_domain_list(struct store *st, void (*fn)(const char *domain, void *arg), void *arg)
{
    return list_query(st, "SELECT name FROM domains ORDER BY name", fn, NULL, arg);
}

/* ---- passwords ---- */

/* Hash prefixes stored as they are (libxcrypt verifies them all). */
static bool looks_like_hash(const char *s)
{
    static const char *const prefixes[] = { "$y$", "$gy$", "$7$", "$2b$", "$2a$", "$2y$",
                                            "$6$", "$5$",  "$1$" };
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Dovecot writes hashes as "{SCHEME}hash" ({CRYPT}, {BLF-CRYPT},
 * {SHA512-CRYPT}...): accept them by dropping the scheme. */
static const char *strip_scheme(const char *s)
{
    if (s[0] != '{')
        return s;
    const char *close = strchr(s, '}');
    return close != NULL && close[1] == '$' ? close + 1 : s;
}

/* crypt_r into cd; NULL when the setting is invalid (libxcrypt returns a
 * string starting with '*' then). */
static const char *crypt_checked(const char *password, const char *setting,
                                 struct crypt_data *cd)
{
    const char *h = crypt_r(password, setting, cd);
    return h == NULL || h[0] == '*' ? NULL : h;
}

/* Hashes password (or checks and keeps an existing hash) into out. */
static int password_hash(const char *password, char *out, size_t size, const char **error_r)
{
    if (password == NULL || password[0] == '\0')
        return store_fail(STORE_ERR_INVALID, error_r, "empty password");
    if (strlen(password) > CRYPT_MAX_PASSPHRASE_SIZE - 1 || str_has_ctl(password))
        return store_fail(STORE_ERR_INVALID, error_r, "password too long or has control characters");
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return store_fail(STORE_ERR_TEMP, error_r, "out of memory");
    const char *hash = NULL;
    const char *given = strip_scheme(password);
    if (looks_like_hash(given)) {
        if (crypt_checked("x", given, cd) != NULL)
            hash = given;
    } else {
        char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
        if (setting != NULL)
            hash = crypt_checked(password, setting, cd);
        free(setting);
    }
    int rc = 0;
    if (hash == NULL)
        rc = store_fail(looks_like_hash(given) ? STORE_ERR_INVALID : STORE_ERR_INTERNAL, error_r,
                        "cannot hash password (unsupported or malformed hash)");
    else if (str_copy(out, hash, size) >= size)
        rc = store_fail(STORE_ERR_INVALID, error_r, "password hash too long");
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return rc;
}

static bool const_time_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = na != nb;
    for (size_t i = 0; i < nb; i++)
        diff |= (unsigned char)(a[i < na ? i : 0] ^ b[i]);
    return diff == 0;
}

static char dummy_hash[CRYPT_OUTPUT_SIZE];

static void dummy_hash_init(void)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
    const char *h = cd && setting ? crypt_checked("postel-dummy", setting, cd) : NULL;
    if (h != NULL)
        str_copy(dummy_hash, h, sizeof(dummy_hash));
    free(setting);
    free(cd);
}

/* Verifies password against stored.  With stored NULL (no such user), it
 * still spends the time of a yescrypt hash so unknown users cannot be told
 * apart by timing. */
static bool password_verify(const char *password, const char *stored)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (stored == NULL)
        pthread_once(&once, dummy_hash_init);
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return false;
    const char *setting = stored != NULL ? stored : dummy_hash;
    const char *h = setting[0] ? crypt_checked(password, setting, cd) : NULL;
    bool ok = stored != NULL && h != NULL && const_time_equal(h, stored);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

/* ---- accounts ---- */

static int64_t account_insert(struct store_conn *c, const char *address, const char *hash,
                              const char **error_r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db,
                           "INSERT INTO accounts(address, domain, password, created)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "account");
    store_bind_text(s, 1, address);
    store_bind_text(s, 2, strrchr(address, '@') + 1);
    store_bind_text(s, 3, hash);
    sqlite3_bind_int64(s, 4, store_now());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_CONSTRAINT)
        return store_fail(STORE_ERR_EXISTS, error_r, "account %s already exists", address);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, error_r, "account");
    return sqlite3_last_insert_rowid(c->db);
}

int store_account_dir_create(struct store *st, int64_t id, const char **error_r)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)id);
    if (mkdirat(st->dir_fd, rel, 0700) < 0 && errno != EEXIST)
        return store_fail_errno(errno, error_r, rel);
    int fd = openat(st->dir_fd, "mail", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return store_fail_errno(e, error_r, "mail");
    }
    close(fd);
    return 0;
}

int store_user_add(struct store *st, const char *address, const char *password,
                   const char **error_r)
{
    store_clear_error();
    char addr[ADDRESS_MAX], hash[512];
    if (address_normalize(address, addr, sizeof(addr), false, error_r) < 0 ||
        password_hash(password, hash, sizeof(hash), error_r) < 0)
        return -1;
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (store_begin(c, error_r) < 0)
        return -1;
    int64_t id = -1;
    if (domain_insert(c, strrchr(addr, '@') + 1, error_r) < 0 ||
        (id = account_insert(c, addr, hash, error_r)) < 0 ||
        store_mailboxes_create_std(c, id, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    /* The directory first: a crash after it but before COMMIT leaves an
     * empty directory that the next start-up removes. */
    if (store_account_dir_create(st, id, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    return store_commit(c, error_r);
}

/* Runs a statement with an id parameter inside the caller's transaction. */
static int exec_with_id(struct store_conn *c, const char *sql, int64_t id, const char **error_r)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "index");
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : store_fail_db(c, error_r, "index");
}

static int64_t account_id(struct store_conn *c, const char *address)
{
    sqlite3_stmt *s = store_stmt(c, STMT_ACCOUNT_BY_ADDRESS);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, address);
    int rc = sqlite3_step(s);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        id = store_fail_db(c, NULL, "account");
    sqlite3_reset(s);
    return id;
}

/* Removes the account, its mailboxes and messages from the index, then
 * its files.  Aliases pointing to it stay (they resolve to nothing). */
int store_user_del(struct store *st, const char *address, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (store_begin(c, error_r) < 0)
        return -1;
    int64_t id = account_id(c, address);
    if (id <= 0) {
        store_rollback(c);
        if (id == 0)
            return store_fail(STORE_ERR_NOTFOUND, error_r, "no such account: %s", address);
        return store_fail_again(error_r);
    }
    if (exec_with_id(c, "DELETE FROM messages WHERE mailbox_id IN"
                        " (SELECT id FROM mailboxes WHERE account_id = ?1)", id, error_r) < 0 ||
        exec_with_id(c, "DELETE FROM mailboxes WHERE account_id = ?1", id, error_r) < 0 ||
        exec_with_id(c, "DELETE FROM accounts WHERE id = ?1", id, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    if (store_commit(c, error_r) < 0)
        return -1;
    char rel[64];
    snprintf(rel, sizeof(rel), "mail/%lld", (long long)id);
    if (store_remove_tree(st, rel) < 0) /* the next start-up finishes it */
        log_warn(NULL, "event=store_user_del_files path=%s error=%d", rel, errno);
    return 0;
}

int store_user_passwd(struct store *st, const char *address, const char *password,
                      const char **error_r)
{
    store_clear_error();
    char hash[512];
    if (password_hash(password, hash, sizeof(hash), error_r) < 0)
        return -1;
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "UPDATE accounts SET password = ?1 WHERE address = ?2", -1, &s,
                           NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "account");
    store_bind_text(s, 1, hash);
    store_bind_text(s, 2, address);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, error_r, "account");
    if (sqlite3_changes(c->db) == 0)
        return store_fail(STORE_ERR_NOTFOUND, error_r, "no such account: %s", address);
    return 0;
}

int store_user_list(struct store *st, void (*fn)(const char *address, void *arg), void *arg)
{
    return list_query(st, "SELECT address FROM accounts ORDER BY domain, address", fn, NULL, arg);
}

int64_t store_user_lookup(struct store *st, const char *address)
{
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return 0;
    int64_t id = account_id(c, address);
    return id > 0 ? id : 0;
}

/* ---- login cache ---- */

#define AUTH_CACHE_SLOTS 4096

struct auth_slot {
    unsigned char mac[32];
    int64_t expires;
    const struct store *st;
};

static pthread_mutex_t auth_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct auth_slot *auth_cache;
static unsigned char auth_cache_key[32];
static EVP_MAC *auth_hmac;           /* fetched once with the table */

void store_set_auth_cache(struct store *st, int64_t ttl_seconds)
{
    atomic_store(&st->auth_cache_ttl, ttl_seconds > 0 ? ttl_seconds : 0);
}

/* The keyed hash of one login; false if it cannot be computed. */
static bool auth_mac(const char *address, const char *stored, const char *password,
                     unsigned char mac[32])
{
    pthread_mutex_lock(&auth_cache_lock);
    if (auth_cache == NULL) {
        struct auth_slot *t = calloc(AUTH_CACHE_SLOTS, sizeof(*t));
        EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (t != NULL && m != NULL && RAND_bytes(auth_cache_key, sizeof(auth_cache_key)) == 1) {
            auth_cache = t;
            auth_hmac = m;
        } else {
            free(t);
            EVP_MAC_free(m);
        }
    }
    bool ready = auth_cache != NULL;
    pthread_mutex_unlock(&auth_cache_lock);
    if (!ready)
        return false;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(auth_hmac);
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end() };
    size_t len = 0;
    bool ok = ctx != NULL && EVP_MAC_init(ctx, auth_cache_key, sizeof(auth_cache_key), params) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)address, strlen(address) + 1) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)stored, strlen(stored) + 1) == 1 &&
              EVP_MAC_update(ctx, (const unsigned char *)password, strlen(password)) == 1 &&
              EVP_MAC_final(ctx, mac, &len, 32) == 1 && len == 32;
    EVP_MAC_CTX_free(ctx);
    return ok;
}

/* The slot of a login: by address and stored hash, so one account uses
 * one slot and a wrong password overwrites nothing. */
static size_t auth_slot_of(const char *address, const char *stored)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = address; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = stored; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)(h % AUTH_CACHE_SLOTS);
}

static bool auth_cache_hit(const struct store *st, const char *address, const char *stored,
                           const unsigned char mac[32])
{
    size_t i = auth_slot_of(address, stored);
    pthread_mutex_lock(&auth_cache_lock);
    const struct auth_slot *sl = &auth_cache[i];
    bool hit = sl->st == st && sl->expires > store_now() && CRYPTO_memcmp(sl->mac, mac, 32) == 0;
    pthread_mutex_unlock(&auth_cache_lock);
    return hit;
}

static void auth_cache_put(const struct store *st, const char *address, const char *stored,
                           const unsigned char mac[32], int64_t ttl)
{
    size_t i = auth_slot_of(address, stored);
    pthread_mutex_lock(&auth_cache_lock);
    memcpy(auth_cache[i].mac, mac, 32);
    auth_cache[i].expires = store_now() + ttl;
    auth_cache[i].st = st;
    pthread_mutex_unlock(&auth_cache_lock);
}

int64_t store_user_auth(struct store *st, const char *address, const char *password)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s = store_stmt(c, STMT_ACCOUNT_BY_ADDRESS);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, address);
    int rc = sqlite3_step(s);
    int64_t id = 0;
    char stored[512] = "";
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        const char *p = (const char *)sqlite3_column_text(s, 2);
        str_copy(stored, p ? p : "", sizeof(stored));
    } else if (rc != SQLITE_DONE) {
        store_fail_db(c, NULL, "account");
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    if (password == NULL)
        password = "";
    int64_t ttl = atomic_load(&st->auth_cache_ttl);
    unsigned char mac[32];
    bool cached = id > 0 && ttl > 0 && stored[0] && auth_mac(address, stored, password, mac);
    bool ok;
    if (cached && auth_cache_hit(st, address, stored, mac)) {
        ok = true;
        log_debug(NULL, "event=login_cached account=%s", address);
    } else {
        ok = password_verify(password, id > 0 ? stored : NULL);
        if (ok && cached)
            auth_cache_put(st, address, stored, mac, ttl);
    }
    explicit_bzero(mac, sizeof(mac));
    explicit_bzero(stored, sizeof(stored));
    return ok ? id : 0;
}

/* ---- aliases ---- */

int store_alias_add(struct store *st, const char *source, const char *dest, const char **error_r)
{
    store_clear_error();
    char src[ADDRESS_MAX], dst[ADDRESS_MAX];
    if (address_normalize(source, src, sizeof(src), true, error_r) < 0 ||
        address_normalize(dest, dst, sizeof(dst), false, error_r) < 0)
        return -1;
    if (strcasecmp(src, dst) == 0)
        return store_fail(STORE_ERR_INVALID, error_r, "alias %s points to itself", src);
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    if (store_begin(c, error_r) < 0)
        return -1;
    /* An alias's source domain is local, as with Postfix virtual_alias_domains. */
    if (domain_insert(c, strrchr(src, '@') + 1, error_r) < 0) {
        store_rollback(c);
        return -1;
    }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, "INSERT INTO aliases(source, dest, created) VALUES (?1, ?2, ?3)",
                           -1, &s, NULL) != SQLITE_OK) {
        store_fail_db(c, error_r, "alias");
        store_rollback(c);
        return -1;
    }
    store_bind_text(s, 1, src);
    store_bind_text(s, 2, dst);
    sqlite3_bind_int64(s, 3, store_now());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_CONSTRAINT)
            store_fail(STORE_ERR_EXISTS, error_r, "alias %s -> %s already exists", src, dst);
        else
            store_fail_db(c, error_r, "alias");
        store_rollback(c);
        return -1;
    }
    return store_commit(c, error_r);
}

/* dest NULL removes every destination of source. */
int store_alias_del(struct store *st, const char *source, const char *dest, const char **error_r)
{
    store_clear_error();
    struct store_conn *c = store_conn_get(st);
    if (c == NULL)
        return store_fail_again(error_r);
    sqlite3_stmt *s;
    const char *sql = dest ? "DELETE FROM aliases WHERE source = ?1 AND dest = ?2"
                           : "DELETE FROM aliases WHERE source = ?1";
    if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
        return store_fail_db(c, error_r, "alias");
    store_bind_text(s, 1, source);
    if (dest)
        store_bind_text(s, 2, dest);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return store_fail_db(c, error_r, "alias");
    if (sqlite3_changes(c->db) == 0)
        return store_fail(STORE_ERR_NOTFOUND, error_r, "no such alias: %s%s%s", source,
                          dest ? " -> " : "", dest ? dest : "");
    return 0;
}

int store_alias_list(struct store *st, void (*fn)(const char *source, const char *dest, void *arg),
                     void *arg)
{
    return list_query(st,
                      "SELECT source, dest FROM aliases ORDER BY"
                      " substr(source, instr(source, '@') + 1), source, dest",
                      NULL, fn, arg);
}

bool store_sender_allowed(struct store *st, int64_t account, const char *address)
{
    struct store_conn *c = store_conn_get(st);
    char local[SMTP_LOCALPART_MAX + 1], domain[SMTP_DOMAIN_MAX + 1];
    if (c == NULL || account <= 0 ||
        store_address_split(address, local, sizeof(local), domain, sizeof(domain)) < 0 ||
        local[0] == '\0')
        return false;
    sqlite3_stmt *s = store_stmt(c, STMT_ACCOUNT_ADDRESS_BY_ID);
    if (s == NULL)
        return false;
    sqlite3_bind_int64(s, 1, account);
    char own[ADDRESS_MAX] = "";
    if (sqlite3_step(s) == SQLITE_ROW)
        str_copy(own, (const char *)sqlite3_column_text(s, 0), sizeof(own));
    sqlite3_reset(s);
    if (own[0] == '\0')
        return false;
    char base[ADDRESS_MAX];
    char *plus = strchr(local, '+');
    if (plus)
        *plus = '\0';
    if (address_join(base, sizeof(base), local, domain) < 0)
        return false;
    if (strcasecmp(address, own) == 0 || strcasecmp(base, own) == 0)
        return true;
    s = store_stmt(c, STMT_ALIAS_SOURCE_TO);
    if (s == NULL)
        return false;
    store_bind_text(s, 1, address);
    store_bind_text(s, 2, own);
    bool ok = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return ok;
}

/* ---- recipient resolution ---- */

struct resolve {
    struct store_conn *c;
    struct store_rcpt_target *out;
    int max, n;
    char (*seen)[ADDRESS_MAX];        /* addresses expanded, loop guard */
    int n_seen;
    bool error;
};

static void add_target(struct resolve *r, enum store_rcpt_kind kind, int64_t id,
                       const char *address)
{
    for (int i = 0; i < r->n; i++) {
        if (r->out[i].kind != kind)
            continue;
        if (kind == STORE_RCPT_LOCAL ? r->out[i].account_id == id
                                     : strcasecmp(r->out[i].address, address) == 0)
            return;
    }
    if (r->n >= r->max)
        return;
    struct store_rcpt_target *t = &r->out[r->n++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->account_id = id;
    str_copy(t->address, address, sizeof(t->address));
}

/* Reads all destinations of an alias source (before recursing, since the
 * cached statement is reused below).  Returns the count (0: no alias) or
 * -1; *dests_r is a malloc()ed array the caller frees. */
static int alias_dests(struct resolve *r, const char *source, char (**dests_r)[ADDRESS_MAX])
{
    *dests_r = NULL;
    sqlite3_stmt *s = store_stmt(r->c, STMT_ALIAS_DESTS);
    if (s == NULL)
        return -1;
    store_bind_text(s, 1, source);
    char(*dests)[ADDRESS_MAX] = NULL;
    int n = 0, alloc = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < STORE_ALIAS_DESTS_MAX) {
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 8;
            void *p = realloc(dests, (size_t)alloc * sizeof(*dests));
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            dests = p;
        }
        str_copy(dests[n++], (const char *)sqlite3_column_text(s, 0), ADDRESS_MAX);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        store_fail_db(r->c, NULL, "alias");
        n = -1;
    }
    sqlite3_reset(s);
    if (n <= 0) {
        free(dests);
        return n;
    }
    *dests_r = dests;
    return n;
}

static bool resolve_addr(struct resolve *r, const char *address, int depth);

/* Expands the alias source into targets.  True if the alias exists. */
static bool expand_alias(struct resolve *r, const char *source, int depth)
{
    char(*dests)[ADDRESS_MAX];
    int n = alias_dests(r, source, &dests);
    if (n < 0)
        r->error = true;
    if (n <= 0)
        return false;
    for (int i = 0; i < n && !r->error; i++)
        resolve_addr(r, dests[i], depth + 1);
    free(dests);
    return true;
}

static bool seen_before(struct resolve *r, const char *address)
{
    for (int i = 0; i < r->n_seen; i++)
        if (strcasecmp(r->seen[i], address) == 0)
            return true;
    if (r->n_seen >= STORE_RESOLVE_SEEN_MAX)
        return true; /* bound on total work */
    str_copy(r->seen[r->n_seen++], address, ADDRESS_MAX);
    return false;
}

/* The lookup order: exact account, alias, local part without +tag,
 * catch-all "@domain".  Returns true when something matched (an alias
 * whose destinations all fail to resolve still counts as matched). */
static bool resolve_addr(struct resolve *r, const char *address, int depth)
{
    char local[SMTP_LOCALPART_MAX + 1], domain[SMTP_DOMAIN_MAX + 1], addr[ADDRESS_MAX];
    if (depth > STORE_ALIAS_DEPTH || r->error ||
        store_address_split(address, local, sizeof(local), domain, sizeof(domain)) < 0 ||
        local[0] == '\0' || address_join(addr, sizeof(addr), local, domain) < 0)
        return false;
    if (seen_before(r, addr))
        return true;
    int is_local = domain_is_local(r->c, domain);
    if (is_local < 0) {
        r->error = true;
        return false;
    }
    if (!is_local) {
        add_target(r, STORE_RCPT_REMOTE, 0, address);
        return true;
    }
    sqlite3_stmt *s = store_stmt(r->c, STMT_ACCOUNT_BY_ADDRESS);
    if (s == NULL) {
        r->error = true;
        return false;
    }
    store_bind_text(s, 1, addr);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        add_target(r, STORE_RCPT_LOCAL, sqlite3_column_int64(s, 0),
                   (const char *)sqlite3_column_text(s, 1));
    else if (rc != SQLITE_DONE)
        r->error = true;
    sqlite3_reset(s);
    if (rc == SQLITE_ROW || r->error)
        return rc == SQLITE_ROW;
    if (expand_alias(r, addr, depth))
        return true;
    char *plus = strchr(local, '+');
    if (plus != NULL && plus != local) {
        *plus = '\0';
        if (address_join(addr, sizeof(addr), local, domain) < 0)
            return false;
        return resolve_addr(r, addr, depth + 1); /* ends with the catch-all */
    }
    snprintf(addr, sizeof(addr), "@%s", domain);
    return expand_alias(r, addr, depth);
}

/* RFC 5321 4.5.1: postmaster must be accepted.  Without an account or
 * alias for it, postmaster@<local domain> goes to that domain's first
 * account (the lowest id, normally the one created first). */
static void resolve_postmaster(struct resolve *r, const char *domain)
{
    sqlite3_stmt *s = store_stmt(r->c, STMT_ACCOUNT_FIRST_OF_DOMAIN);
    if (s == NULL) {
        r->error = true;
        return;
    }
    store_bind_text(s, 1, domain);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        add_target(r, STORE_RCPT_LOCAL, sqlite3_column_int64(s, 0),
                   (const char *)sqlite3_column_text(s, 1));
    else if (rc != SQLITE_DONE)
        r->error = true;
    sqlite3_reset(s);
}

int store_rcpt_resolve(struct store *st, const char *address, struct store_rcpt_target *targets,
                       int max)
{
    store_clear_error();
    char local[SMTP_LOCALPART_MAX + 1], domain[SMTP_DOMAIN_MAX + 1];
    struct resolve r = { .out = targets, .max = max };
    r.c = store_conn_get(st);
    if (r.c == NULL)
        return -1;
    if (store_address_split(address, local, sizeof(local), domain, sizeof(domain)) < 0 ||
        local[0] == '\0') {
        store_fail(STORE_ERR_INVALID, NULL, "invalid address: %s", address);
        return 0;
    }
    int is_local = domain_is_local(r.c, domain);
    if (is_local <= 0)
        return is_local < 0 ? -1 : -2;
    r.seen = malloc(STORE_RESOLVE_SEEN_MAX * sizeof(*r.seen));
    if (r.seen == NULL)
        return store_fail(STORE_ERR_TEMP, NULL, "out of memory");
    /* One read transaction for all lookups: a consistent view, and one
     * WAL read lock instead of one per statement. */
    bool in_tx = sqlite3_get_autocommit(r.c->db) && store_stmt_run(r.c, STMT_BEGIN_READ) == 0;
    resolve_addr(&r, address, 0);
    if (!r.error && r.n == 0 && strcmp(local, "postmaster") == 0)
        resolve_postmaster(&r, domain);
    if (in_tx && store_stmt_run(r.c, STMT_COMMIT_READ) < 0)
        store_rollback(r.c);
    free(r.seen);
    if (r.error)
        return -1;
    return r.n;
}
