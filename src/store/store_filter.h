/*
 * The anti-spam engine's state in the store: allow/block lists managed by
 * the CLI, and greylisting triplets and client pass counts.  Tables are
 * created on first use (CREATE TABLE IF NOT EXISTS), in the same index.db
 * as the rest of the store, through the calling thread's connection.
 *
 * Every call may block on SQLite (busy timeout): call from a worker
 * thread or the CLI, never from an event loop.  Errors are recorded as the
 * store's thread-local last error (store_error_kind/store_error_text).
 */
#ifndef POSTEL_STORE_FILTER_H
#define POSTEL_STORE_FILTER_H
#include <stdbool.h>
#include <stdint.h>

struct store;

/* ---- lists ---- */

enum store_filter_list {
    STORE_FL_ALLOW = 0,     /* allow-listed IPs, CIDR ranges, senders, domains */
    STORE_FL_BLOCK,         /* block-listed ones */
    STORE_FL_EXCEPTION,     /* recipient exceptions */
};

/* Adds an entry (already in canonical form; the store only keeps text).
 * note may be NULL.  1 added, 0 already present, -1 error. */
int store_filter_list_add(struct store *st, enum store_filter_list list, const char *entry,
                          const char *note, const char **error_r);
/* 1 removed, 0 not present, -1 error. */
int store_filter_list_del(struct store *st, enum store_filter_list list, const char *entry,
                          const char **error_r);
/* Calls fn for each entry in the order added.  Returns the count or -1. */
int store_filter_list_each(struct store *st, enum store_filter_list list,
                           void (*fn)(const char *entry, const char *note, int64_t created,
                                      void *arg),
                           void *arg);
/* A number that changes whenever any list changes (0 before the first
 * change), so the engine knows when to reload.  -1 on error. */
int64_t store_filter_generation(struct store *st);

/* ---- greylisting ---- */

struct store_greylist_row {
    int64_t first_seen, last_seen, count;
    bool passed;
};

/* 1 found (row filled), 0 unknown, -1 error. */
int store_greylist_get(struct store *st, const char *net, const char *sender, const char *rcpt,
                       struct store_greylist_row *row);
/* Inserts or replaces a triplet.  0 or -1. */
int store_greylist_put(struct store *st, const char *net, const char *sender, const char *rcpt,
                       const struct store_greylist_row *row);
/* Times a client network passed greylisting, counting only passes at or
 * after since.  0 (with *passes_r) or -1. */
int store_greylist_client_get(struct store *st, const char *net, int64_t since,
                              int64_t *passes_r);
/* Counts one more pass for a client network at now.  0 or -1. */
int store_greylist_client_pass(struct store *st, const char *net, int64_t now);
/* Deletes triplets never passed and first seen before pending_before,
 * passed triplets and client counts last seen before passed_before.
 * Returns rows deleted or -1. */
int store_greylist_expire(struct store *st, int64_t pending_before, int64_t passed_before);
/* Calls fn for each triplet (newest first).  Count or -1. */
int store_greylist_each(struct store *st,
                        void (*fn)(const char *net, const char *sender, const char *rcpt,
                                   const struct store_greylist_row *row, void *arg),
                        void *arg);
/* Removes every triplet and client count.  Rows deleted or -1. */
int store_greylist_clear(struct store *st);
#endif
