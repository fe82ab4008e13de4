/*
 * The server process: listeners on the main thread, one event loop per core
 * (workers), the per-IP connection table, drain on SIGTERM and reload on
 * SIGHUP.  Protocols plug in through struct proto_ops; net knows nothing of
 * SMTP or IMAP beyond the role that a listener serves.
 */
#ifndef POSTEL_SERVER_H
#define POSTEL_SERVER_H
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/config.h"

struct store;
struct server;
struct dns_resolver;
struct filter;

struct worker {
    int id;
    struct server *srv;
    struct event_base *base;
    struct event *drain_ev;       /* activated when the server starts draining */
    pthread_t thread;
};

/* One accepted connection, before a protocol takes it. */
struct net_conn {
    int fd;
    enum listen_role role;
    char ip[INET6_ADDRSTRLEN];
    int port;
    char local_ip[INET6_ADDRSTRLEN];
    int local_port;
    bool loopback;
    char sid[16];                 /* session id for logs */
    struct worker *worker;
    struct server *srv;
};

struct server {
    /* Current configuration; replaced as a whole on SIGHUP (old ones are kept
     * until exit, so sessions may hold a pointer for their lifetime). */
    const struct config *_Atomic cfg;
    struct store *store;
    struct dns_resolver *dns;     /* shared, thread-safe; NULL if it could not start */
    struct filter *filter;        /* anti-spam engine; NULL if it could not start */
    SSL_CTX *tls;
    struct event_base *main_base;
    struct worker *workers;
    int n_workers;
    atomic_bool draining;
    atomic_int sessions;          /* live protocol sessions */
};

/* What a protocol provides for the roles it serves. */
struct proto_ops {
    /* Takes ownership of conn (and its fd); runs on conn->worker's loop. */
    void (*accept)(struct net_conn *conn);
    /* Line sent before closing when the per-IP limit is hit. */
    const char *busy_reply;
    /* Called on each worker's loop when draining starts. */
    void (*drain)(struct worker *w);
};

/* Registers the protocol for a role (before server_run). */
void server_register(enum listen_role role, const struct proto_ops *ops);

/* A background service started with the server (after the store, DNS and
 * filter are ready, before listeners accept) and stopped after the
 * sessions have drained, before the store closes.  main.c registers the
 * outbound queue this way, so the net layer includes no service code. */
struct service_ops {
    const char *name;
    int (*start)(struct server *srv); /* 0, or -1 (logged; the server goes on) */
    void (*stop)(void);
};
/* Registers a service (before server_run; at most SERVER_MAX_SERVICES). */
void server_add_service(const struct service_ops *ops);
#define SERVER_MAX_SERVICES 4

/* Runs until SIGTERM/SIGINT has drained every session.  cfg_owned is
 * heap-allocated and owned by the server from here on.  Returns an exit code. */
int server_run(struct config *cfg_owned);

/* Per-IP connection accounting (the limit is connections_per_ip). */
void server_conn_closed(struct server *srv, const char *ip);

/* Session accounting for draining: call begin when a session starts and end
 * when it is freed.  When draining and the count reaches zero, loops stop. */
void server_session_begin(struct server *srv);
void server_session_end(struct server *srv);
#endif
