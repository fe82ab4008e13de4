/*
 * Message files made ahead of need.
 *
 * Creating a file is the dearest step of taking a message: the file system
 * allocates an inode (on ext4 without a journal it first skips every inode
 * freed in the last seconds, which after a burst of deletions is a long
 * scan), the directory is locked for the new entry, and for durability the
 * directory must be fsynced before the 250.  A transaction that waits for
 * all that on the event loop holds up every other session of the loop.
 *
 * So a filler thread creates message files in advance, a batch per
 * directory ("mail/<account>" or "queue"), fsyncs the directory once per
 * batch, and keeps them open.  store_tx_begin() takes one (its name is the
 * message's id) and finds its directory entry already durable; it only
 * falls back to creating a file itself when the pool for that directory is
 * empty, which also asks the filler for more (a larger batch each time the
 * pool ran dry, up to POOL_PER_DIR).
 *
 * The files are empty and have no index row, so they are invisible: a clean
 * stop removes those not taken, and after a crash the start-up cleanup
 * (store.c) removes them as it removes every file without a row.
 * Bounded: at most POOL_DIRS directories (the least recently used one is
 * given up) and POOL_PER_DIR open files each.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define POOL_DIRS       16
#define POOL_PER_DIR    64
#define POOL_TOTAL      256          /* open files held at most, all directories */
#define POOL_FIRST      8            /* first batch for a directory */

struct pool_file {
    int fd;
    char id[STORE_ID_LEN + 1];
};

struct pool_dir {
    char dir[STORE_RELPATH_MAX];     /* "" = slot unused */
    int64_t account_id;              /* > 0 for mail/<id>, 0 for queue */
    struct pool_file ready[POOL_PER_DIR];
    size_t n_ready;
    size_t want;                     /* batch target */
    bool requested;                  /* the filler should top it up */
    uint64_t used;                   /* last take (pool clock) */
};

struct store_pool {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    bool stopping;
    uint64_t clock;
    size_t n_open;                    /* files held, all directories */
    struct pool_dir dirs[POOL_DIRS];
    uint64_t taken, missed;           /* statistics */
};

static void pool_dir_drop(struct store *st, struct pool_dir *d)
{
    st->pool->n_open -= d->n_ready;
    for (size_t i = 0; i < d->n_ready; i++) {
        char path[STORE_RELPATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", d->dir, d->ready[i].id);
        close(d->ready[i].fd);
        unlinkat(st->dir_fd, path, 0);
    }
    d->n_ready = 0;
}

/* The slot for dir, made (evicting the least recently used) when missing.
 * Lock held. */
static struct pool_dir *pool_dir_get(struct store *st, struct store_pool *p, const char *dir,
                                     int64_t account_id)
{
    struct pool_dir *victim = NULL;
    for (size_t i = 0; i < POOL_DIRS; i++) {
        struct pool_dir *d = &p->dirs[i];
        if (d->dir[0] != '\0' && strcmp(d->dir, dir) == 0)
            return d;
        if (victim == NULL || (victim->dir[0] != '\0' && (d->dir[0] == '\0' || d->used < victim->used)))
            victim = d;
    }
    pool_dir_drop(st, victim);
    memset(victim, 0, sizeof(*victim));
    str_copy(victim->dir, dir, sizeof(victim->dir));
    victim->account_id = account_id;
    victim->want = POOL_FIRST;
    return victim;
}

/* Creates up to n files in dir (making the account directory if needed),
 * then fsyncs the directory once.  Returns how many are in out. */
static size_t fill_batch(struct store *st, const char *dir, int64_t account_id,
                         struct pool_file *out, size_t n)
{
    size_t made = 0;
    for (size_t i = 0; i < n; i++) {
        char path[STORE_RELPATH_MAX + 32];
        int fd = -1;
        for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
            random_hex(out[made].id, STORE_ID_LEN);
            snprintf(path, sizeof(path), "%s/%s", dir, out[made].id);
            fd = openat(st->dir_fd, path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0 && errno == ENOENT && account_id > 0) {
                const char *err;
                if (store_account_dir_create(st, account_id, &err) < 0)
                    break;
            } else if (fd < 0 && errno != EEXIST) {
                break;
            }
        }
        if (fd < 0)
            break; /* the caller falls back to making its own files */
        out[made++].fd = fd;
    }
    if (made > 0 && !atomic_load(&st->no_sync)) {
        int dfd = openat(st->dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0) {
            log_warn(NULL, "event=store_pool_sync_failed dir=%s error=\"%s\"", dir, strerror(errno));
            for (size_t i = 0; i < made; i++) {
                char path[STORE_RELPATH_MAX + 32];
                snprintf(path, sizeof(path), "%s/%s", dir, out[i].id);
                close(out[i].fd);
                unlinkat(st->dir_fd, path, 0);
            }
            made = 0;
        }
        if (dfd >= 0)
            close(dfd);
    }
    return made;
}

static void *filler_main(void *arg)
{
    struct store *st = arg;
    struct store_pool *p = st->pool;
    struct pool_file batch[POOL_PER_DIR];
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct pool_dir *d = NULL;
        for (size_t i = 0; i < POOL_DIRS && d == NULL; i++)
            if (p->dirs[i].requested)
                d = &p->dirs[i];
        if (d == NULL) {
            pthread_cond_wait(&p->cond, &p->mu);
            continue;
        }
        d->requested = false;
        size_t n = d->want > d->n_ready ? d->want - d->n_ready : 0;
        if (n > POOL_TOTAL - p->n_open)
            n = POOL_TOTAL - p->n_open; /* a bounded number of descriptors */
        if (n == 0)
            continue;
        p->n_open += n;                 /* reserved while unlocked */
        char dir[STORE_RELPATH_MAX];
        str_copy(dir, d->dir, sizeof(dir));
        int64_t account_id = d->account_id;
        pthread_mutex_unlock(&p->mu);
        size_t made = fill_batch(st, dir, account_id, batch, n);
        pthread_mutex_lock(&p->mu);
        /* the slot may have been given to another directory meanwhile */
        d = NULL;
        for (size_t i = 0; i < POOL_DIRS && d == NULL; i++)
            if (strcmp(p->dirs[i].dir, dir) == 0)
                d = &p->dirs[i];
        p->n_open -= n;                 /* the reservation, now the real count */
        size_t i = 0;
        for (; d != NULL && i < made && d->n_ready < POOL_PER_DIR; i++) {
            d->ready[d->n_ready++] = batch[i];
            p->n_open++;
        }
        for (; i < made; i++) {
            char path[STORE_RELPATH_MAX + 32];
            snprintf(path, sizeof(path), "%s/%s", dir, batch[i].id);
            close(batch[i].fd);
            unlinkat(st->dir_fd, path, 0);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int store_pool_start(struct store *st)
{
    if (st->pool != NULL)
        return 0;
    struct store_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    st->pool = p;
    if (pthread_create(&p->thread, NULL, filler_main, st) != 0) {
        st->pool = NULL;
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -1;
    }
    return 0;
}

void store_pool_stop(struct store *st)
{
    struct store_pool *p = st->pool;
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    for (size_t i = 0; i < POOL_DIRS; i++)
        pool_dir_drop(st, &p->dirs[i]);
    log_debug(NULL, "event=store_pool_stop taken=%llu missed=%llu", (unsigned long long)p->taken,
              (unsigned long long)p->missed);
    st->pool = NULL;
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int store_pool_take(struct store *st, const char *dir, int64_t account_id, char *id_out)
{
    struct store_pool *p = st->pool;
    if (p == NULL)
        return -1;
    pthread_mutex_lock(&p->mu);
    struct pool_dir *d = pool_dir_get(st, p, dir, account_id);
    d->used = ++p->clock;
    int fd = -1;
    while (fd < 0 && d->n_ready > 0) {
        struct pool_file *f = &d->ready[--d->n_ready];
        /* Still linked?  The directory may have been removed meanwhile
         * (an account deleted by another process, maybe re-made under the
         * same id): a message written there would be lost. */
        struct stat sb;
        if (fstat(f->fd, &sb) < 0 || sb.st_nlink == 0) {
            close(f->fd);
            p->n_open--;
            continue;
        }
        fd = f->fd;
        memcpy(id_out, f->id, STORE_ID_LEN + 1);
        p->taken++;
        p->n_open--;
    }
    if (fd < 0) {
        p->missed++;
        /* ran dry: ask for more next time */
        if (d->want < POOL_PER_DIR && d->requested == false && d->used > 1)
            d->want = d->want * 2 < POOL_PER_DIR ? d->want * 2 : POOL_PER_DIR;
    }
    if (d->n_ready <= d->want / 2 && !d->requested) {
        d->requested = true;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
    return fd;
}

void store_pool_stats(struct store *st, uint64_t *taken, uint64_t *missed)
{
    struct store_pool *p = st->pool;
    *taken = *missed = 0;
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    *taken = p->taken;
    *missed = p->missed;
    pthread_mutex_unlock(&p->mu);
}
