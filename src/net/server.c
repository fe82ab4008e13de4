#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "dns/dns.h"
#include "filter/filter.h"
#include "net/tls.h"
#include "store/store.h"

#define DRAIN_GRACE_SECONDS 60
#define POOL_THREADS 8
#define IP_BUCKETS 1024

static const struct proto_ops *protos[ROLE_COUNT];

void server_register(enum listen_role role, const struct proto_ops *ops)
{
    protos[role] = ops;
}

/* ---- per-IP connection table ---- */

struct ip_entry {
    struct ip_entry *next;
    int count;
    char ip[INET6_ADDRSTRLEN];
};

static pthread_mutex_t ip_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ip_entry *ip_table[IP_BUCKETS];

static unsigned ip_hash(const char *ip)
{
    unsigned h = 2166136261u;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % IP_BUCKETS;
}

/* Counts a new connection from ip; false (not counted) if over limit. */
static bool ip_acquire(const char *ip, int limit)
{
    unsigned h = ip_hash(ip);
    bool ok = true;
    pthread_mutex_lock(&ip_lock);
    struct ip_entry *e = ip_table[h];
    while (e && strcmp(e->ip, ip) != 0)
        e = e->next;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            pthread_mutex_unlock(&ip_lock);
            return false;
        }
        str_copy(e->ip, ip, sizeof(e->ip));
        e->next = ip_table[h];
        ip_table[h] = e;
    }
    if (e->count >= limit)
        ok = false;
    else
        e->count++;
    pthread_mutex_unlock(&ip_lock);
    return ok;
}

void server_conn_closed(struct server *srv, const char *ip)
{
    unsigned h = ip_hash(ip);
    pthread_mutex_lock(&ip_lock);
    struct ip_entry **pp = &ip_table[h];
    while (*pp && strcmp((*pp)->ip, ip) != 0)
        pp = &(*pp)->next;
    if (*pp && --(*pp)->count <= 0) {
        struct ip_entry *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    pthread_mutex_unlock(&ip_lock);
}

/* ---- sessions and draining ---- */

static void stop_loops(struct server *srv)
{
    for (int i = 0; i < srv->n_workers; i++)
        event_base_loopexit(srv->workers[i].base, NULL);
    event_base_loopexit(srv->main_base, NULL);
}

void server_session_begin(struct server *srv)
{
    atomic_fetch_add(&srv->sessions, 1);
}

void server_session_end(struct server *srv)
{
    if (atomic_fetch_sub(&srv->sessions, 1) == 1 && atomic_load(&srv->draining)) {
        log_info(NULL, "event=drained");
        stop_loops(srv);
    }
}

static void worker_detach_listeners(void);

static void worker_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    worker_detach_listeners();
    for (int r = 0; r < ROLE_COUNT; r++) {
        bool seen = false;
        for (int q = 0; q < r; q++)
            if (protos[q] == protos[r])
                seen = true;
        if (protos[r] && protos[r]->drain && !seen)
            protos[r]->drain(w);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- listeners ---- */

/* A listening socket.  Every worker loop accepts on it directly (no hop
 * through the main thread); the kernel wakes one of them per connection. */
struct listener {
    int fd;
    enum listen_role role;
    struct server *srv;
};

/* One worker's accepting end of a listener. */
struct worker_listener {
    struct evconnlistener *lev;
    struct listener *l;
    struct worker *w;
};

static struct listener *listeners;
static int n_listeners;

static void addr_text(const struct sockaddr *sa, char *ip, size_t size, int *port_r)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, (socklen_t)size);
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)size);
        }
        *port_r = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)size);
        *port_r = ntohs(s4->sin_port);
    }
}

static bool ip_is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0;
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct worker_listener *wl = arg;
    struct listener *l = wl->l;
    struct server *srv = l->srv;
    const struct config *cfg = atomic_load(&srv->cfg);
    if (atomic_load(&srv->draining)) {
        close(fd);
        return;
    }
    struct net_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->role = l->role;
    c->srv = srv;
    addr_text(sa, c->ip, sizeof(c->ip), &c->port);
    struct sockaddr_storage local;
    socklen_t llen = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
        addr_text((struct sockaddr *)&local, c->local_ip, sizeof(c->local_ip), &c->local_port);
    c->loopback = ip_is_loopback(c->ip);
    random_hex(c->sid, 10);
    if (!ip_acquire(c->ip, cfg->connections_per_ip)) {
        log_warn(c->sid, "event=reject reason=too_many_connections ip=%s role=%s limit=%d", c->ip,
                 listen_role_names[c->role], cfg->connections_per_ip);
        const char *busy = protos[c->role]->busy_reply;
        if (busy) {
            ssize_t w = send(fd, busy, strlen(busy), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
        }
        close(fd);
        free(c);
        return;
    }
    evutil_make_socket_nonblocking(fd);
    c->worker = wl->w;
    protos[c->role]->accept(c);
}

static int listen_one(struct server *srv, enum listen_role role, const struct listen_addr *a)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    char port[16];
    snprintf(port, sizeof(port), "%d", a->port);
    const char *host = a->host[0] && strcmp(a->host, "*") != 0 ? a->host : NULL;
    struct addrinfo *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        log_error(NULL, "event=listen_failed role=%s addr=%s:%d error=\"%s\"",
                  listen_role_names[role], a->host, a->port, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        log_error(NULL, "event=listen_failed role=%s addr=%s:%d error=\"%s\"",
                  listen_role_names[role], a->host, a->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct listener *l = &listeners[n_listeners++];
    l->fd = fd;
    l->role = role;
    l->srv = srv;
    log_info(NULL, "event=listen role=%s addr=%s:%d", listen_role_names[role], a->host, a->port);
    return 0;
}

static int listen_all(struct server *srv, const struct config *cfg)
{
    int total = 0;
    for (int r = 0; r < ROLE_COUNT; r++)
        total += cfg->n_listen[r];
    listeners = calloc((size_t)total + 1, sizeof(*listeners));
    if (listeners == NULL)
        return -1;
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (cfg->n_listen[r] > 0 && protos[r] == NULL) {
            log_warn(NULL, "event=role_unavailable role=%s msg=\"not implemented in this build; "
                           "listener skipped\"", listen_role_names[r]);
            continue;
        }
        for (int i = 0; i < cfg->n_listen[r]; i++)
            if (listen_one(srv, (enum listen_role)r, &cfg->listen[r][i]) < 0)
                return -1;
    }
    return 0;
}

/* Gives every worker loop its own accepting end of every listener; called
 * once the workers exist.  Each worker frees its ends when draining. */
static __thread struct worker_listener *my_listeners;
static __thread int my_n_listeners;

static void worker_attach_listeners(void *arg)
{
    struct worker *w = arg;
    my_listeners = calloc((size_t)n_listeners + 1, sizeof(*my_listeners));
    if (my_listeners == NULL)
        fatal("out of memory");
    for (int i = 0; i < n_listeners; i++) {
        struct worker_listener *wl = &my_listeners[my_n_listeners];
        wl->l = &listeners[i];
        wl->w = w;
        wl->lev = evconnlistener_new(w->base, on_accept, wl, 0, -1, listeners[i].fd);
        if (wl->lev == NULL)
            fatal("evconnlistener_new failed");
        my_n_listeners++;
    }
}

static void worker_detach_listeners(void)
{
    for (int i = 0; i < my_n_listeners; i++)
        evconnlistener_free(my_listeners[i].lev);
    my_n_listeners = 0;
    free(my_listeners);
    my_listeners = NULL;
}

static void worker_stop_accepting(void *arg)
{
    worker_detach_listeners();
}

/* ---- signals ---- */

static struct config **old_cfgs;
static int n_old_cfgs;

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    if (atomic_exchange(&srv->draining, true))
        return;
    log_info(NULL, "event=draining signal=%d sessions=%d", (int)sig, atomic_load(&srv->sessions));
    for (int i = 0; i < srv->n_workers; i++)
        loop_call(srv->workers[i].base, worker_stop_accepting, NULL);
    if (atomic_load(&srv->sessions) == 0) {
        stop_loops(srv);
        return;
    }
    for (int i = 0; i < srv->n_workers; i++)
        event_active(srv->workers[i].drain_ev, EV_READ, 0);
    struct timeval grace = { DRAIN_GRACE_SECONDS, 0 };
    event_base_loopexit(srv->main_base, &grace);
}

static void add_domain_cb(const char *domain, void *arg)
{
    struct store *st = arg;
    const char *err = NULL;
    if (!store_domain_is_local(st, domain) && store_domain_add(st, domain, &err) < 0)
        log_warn(NULL, "event=domain_add_failed domain=%s error=\"%s\"", domain, err ? err : "?");
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    const struct config *cur = atomic_load(&srv->cfg);
    if (cur->path[0] == '\0') {
        log_info(NULL, "event=reload msg=\"embedded defaults: nothing to reload\"");
        return;
    }
    struct config *next = malloc(sizeof(*next));
    char err[4096];
    if (next == NULL)
        return;
    config_defaults(next);
    if (config_load(next, cur->path, err, sizeof(err)) < 0) {
        log_error(NULL, "event=reload_failed msg=\"configuration kept\" errors=\"%s\"", err);
        free(next);
        return;
    }
    /* Listeners and data_dir need a restart; everything else applies to new sessions. */
    memcpy(next->listen, cur->listen, sizeof(next->listen));
    memcpy(next->n_listen, cur->n_listen, sizeof(next->n_listen));
    str_copy(next->data_dir, cur->data_dir, sizeof(next->data_dir));
    config_each_domain(next, add_domain_cb, srv->store);
    struct config **grown = realloc(old_cfgs, sizeof(*old_cfgs) * (size_t)(n_old_cfgs + 1));
    if (grown) {
        old_cfgs = grown;
        old_cfgs[n_old_cfgs++] = (struct config *)cur;
    }
    atomic_store(&srv->cfg, next);
    store_set_auth_cache(srv->store, (int64_t)next->auth_cache_ttl);
    log_info(NULL, "event=reload config=%s", next->path);
}

/* ---- start-up ---- */

/* Creates demo@localhost once, in development mode, and prints its password. */
static void dev_demo_account(struct store *st, const struct config *cfg)
{
    char marker[1200];
    snprintf(marker, sizeof(marker), "%s/.demo-created", cfg->data_dir);
    if (access(marker, F_OK) == 0 || store_user_lookup(st, "demo@localhost") > 0)
        return;
    char pw[17];
    random_hex(pw, 16);
    const char *err = NULL;
    if (store_user_add(st, "demo@localhost", pw, &err) < 0) {
        log_error(NULL, "event=demo_account_failed error=\"%s\"", err ? err : "?");
        return;
    }
    int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    log_info(NULL, "event=demo_account address=demo@localhost password=%s "
                   "msg=\"development defaults: this password is shown once\"", pw);
    log_warn(NULL, "event=dev_mode msg=\"plaintext AUTH allowed from loopback (development "
                   "defaults only)\"");
}

static int drop_privileges(const struct config *cfg)
{
    if (cfg->user[0] == '\0' || getuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        log_error(NULL, "event=drop_privileges_failed user=%s error=\"no such user\"", cfg->user);
        return -1;
    }
    if (chown(cfg->data_dir, pw->pw_uid, pw->pw_gid) < 0 ||
        setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        log_error(NULL, "event=drop_privileges_failed user=%s error=\"%s\"", cfg->user,
                  strerror(errno));
        return -1;
    }
    log_info(NULL, "event=privileges_dropped user=%s", cfg->user);
    return 0;
}

static int workers_start(struct server *srv)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    srv->n_workers = n > 0 ? (int)n : 1;
    srv->workers = calloc((size_t)srv->n_workers, sizeof(*srv->workers));
    if (srv->workers == NULL)
        return -1;
    for (int i = 0; i < srv->n_workers; i++) {
        struct worker *w = &srv->workers[i];
        w->id = i;
        w->srv = srv;
        w->base = event_base_new();
        if (w->base == NULL)
            return -1;
        w->drain_ev = event_new(w->base, -1, 0, worker_drain_cb, w);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return -1;
    }
    return 0;
}

static const struct service_ops *services[SERVER_MAX_SERVICES];
static int n_services;

void server_add_service(const struct service_ops *ops)
{
    if (n_services < SERVER_MAX_SERVICES)
        services[n_services++] = ops;
}

/* Each connection holds a descriptor or two, and the store keeps up to 256
 * message files open ahead of need: a soft limit of 1024 (the usual
 * default) would cap a busy server far below what it can serve.  Raised
 * towards the hard limit, at most SERVER_FD_LIMIT (every library in the
 * process waits on descriptors with epoll or poll, never select). */
#define SERVER_FD_LIMIT 65536

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > SERVER_FD_LIMIT ? SERVER_FD_LIMIT
                                                                                  : rl.rlim_max;
    if (want <= rl.rlim_cur)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_info(NULL, "event=fd_limit from=%llu to=%llu", (unsigned long long)was,
                 (unsigned long long)want);
}

int server_run(struct config *cfg)
{
    static struct server srv_storage;
    struct server *srv = &srv_storage;
    const char *err = NULL;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* until the reload handler is installed */
    evthread_use_pthreads();
    log_set_level((enum log_level)cfg->log_level);
    raise_fd_limit();
    atomic_store(&srv->cfg, cfg);
    if (mkdir_p(cfg->data_dir, 0750) < 0) {
        log_error(NULL, "event=start_failed data_dir=%s error=\"%s\"", cfg->data_dir, strerror(errno));
        return 73; /* EX_CANTCREAT */
    }
    srv->main_base = event_base_new();
    if (srv->main_base == NULL || listen_all(srv, cfg) < 0)
        return 71; /* EX_OSERR */
    srv->tls = tls_server_ctx_new(cfg, &err);
    if (srv->tls == NULL) {
        log_error(NULL, "event=start_failed msg=\"TLS setup\" error=\"%s\"", err);
        return 78; /* EX_CONFIG */
    }
    if (drop_privileges(cfg) < 0)
        return 77; /* EX_NOPERM */
    srv->store = store_open(cfg->data_dir, &err);
    if (srv->store == NULL) {
        log_error(NULL, "event=start_failed msg=\"store\" error=\"%s\"", err ? err : "?");
        return 74; /* EX_IOERR */
    }
    if (cfg->capture && !cfg->capture_durable)
        store_set_no_sync(srv->store);
    if (cfg->capture)
        store_set_blob_messages(srv->store); /* many small messages: no file each */
    else if (store_set_file_pool(srv->store) < 0)
        log_warn(NULL, "event=store_pool_unavailable msg=\"message files are made on demand\"");
    if (!cfg->capture && store_set_staging(srv->store) < 0)
        log_warn(NULL, "event=store_staging_unavailable msg=\"messages go straight to files\"");
    store_set_auth_cache(srv->store, (int64_t)cfg->auth_cache_ttl);
    config_each_domain(cfg, add_domain_cb, srv->store);
    struct dns_options dopt;
    dns_options_from_config(&dopt, cfg);
    srv->dns = dns_resolver_new(&dopt, &err);
    if (srv->dns == NULL)
        log_error(NULL, "event=dns_unavailable error=\"%s\" msg=\"authentication checks will "
                        "report temperror\"", err ? err : "?");
    struct filter_env fenv = { .store = srv->store, .dns = &dopt, .hostname = cfg->hostname,
                               .local_domains = cfg->domains };
    srv->filter = cfg->capture ? NULL : filter_new(&cfg->filter, &fenv, &err);
    if (srv->filter == NULL && !cfg->capture)
        log_error(NULL, "event=filter_unavailable error=\"%s\" msg=\"mail is accepted "
                        "without anti-spam checks\"", err ? err : "?");
    if (cfg->dev_defaults)
        dev_demo_account(srv->store, cfg);
    if (pool_start(POOL_THREADS) < 0 || workers_start(srv) < 0)
        return 71;
    for (int i = 0; i < n_services; i++)
        if (services[i]->start(srv) < 0)
            log_error(NULL, "event=service_failed service=%s", services[i]->name);
    for (int i = 0; i < srv->n_workers; i++)
        loop_call(srv->workers[i].base, worker_attach_listeners, &srv->workers[i]);
    struct event *ev_term = evsignal_new(srv->main_base, SIGTERM, on_term, srv);
    struct event *ev_int = evsignal_new(srv->main_base, SIGINT, on_term, srv);
    struct event *ev_hup = evsignal_new(srv->main_base, SIGHUP, on_hup, srv);
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    event_add(ev_hup, NULL);
    log_info(NULL, "event=started hostname=%s data_dir=%s workers=%d pid=%d", cfg->hostname,
             cfg->data_dir, srv->n_workers, (int)getpid());
    event_base_loop(srv->main_base, EVLOOP_NO_EXIT_ON_EMPTY);
    if (atomic_load(&srv->sessions) > 0)
        log_warn(NULL, "event=drain_timeout sessions=%d", atomic_load(&srv->sessions));
    for (int i = 0; i < srv->n_workers; i++) {
        event_base_loopexit(srv->workers[i].base, NULL);
        pthread_join(srv->workers[i].thread, NULL);
    }
    for (int i = 0; i < n_listeners; i++)
        close(listeners[i].fd);
    for (int i = n_services - 1; i >= 0; i--)
        services[i]->stop();
    pool_stop();
    if (srv->filter)
        filter_free(srv->filter);
    store_close(srv->store);
    if (srv->dns)
        dns_resolver_free(srv->dns);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    log_info(NULL, "event=stopped");
    return 0;
}
