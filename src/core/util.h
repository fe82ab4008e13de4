/*
 * Small generic helpers: bounded string copies, value parsers shared by the
 * configuration and the CLI, random identifiers, a capped growable buffer.
 */
#ifndef POSTEL_UTIL_H
#define POSTEL_UTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);
/* Trims ASCII white space at both ends in place; returns s. */
char *str_trim(char *s);
/* ASCII case-insensitive prefix test; returns the rest after prefix or NULL. */
const char *str_case_prefix(const char *s, const char *prefix);
void str_lower(char *s);
bool str_has_ctl(const char *s);

/* "25M" -> 26214400; K, M, G suffixes (1024-based). 0 on success, -1 on error. */
int parse_size(const char *s, uint64_t *out_r);
/* "30s", "5m", "4h", "5d", bare number = seconds. */
int parse_duration(const char *s, uint64_t *seconds_r);
/* "yes"/"no" (also true/false, on/off, 1/0). */
int parse_bool(const char *s, bool *out_r);
/* "1.2.3.4:25", "[::1]:25", "localhost:25", ":25" -> host and port. */
int parse_hostport(const char *s, char *host, size_t host_size, int *port_r);

/* Fills buf with n lower-case hex characters from the kernel's CSPRNG and
 * terminates it (buf must hold n+1). */
void random_hex(char *buf, size_t n);
/* Uniform random 64-bit number from the CSPRNG. */
uint64_t random_u64(void);

/* A growable byte buffer that never grows past cap. */
struct strbuf {
    char *data;
    size_t len, alloc, cap;
};
void strbuf_init(struct strbuf *sb, size_t cap);
/* Appends; returns -1 (buffer unchanged) when cap would be exceeded or on OOM. */
int strbuf_append(struct strbuf *sb, const void *data, size_t len);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_reset(struct strbuf *sb);
void strbuf_free(struct strbuf *sb);

/* write(2) all of buf, retrying on EINTR/short writes. 0 or -1 (errno set). */
int write_full(int fd, const void *buf, size_t len);
/* fsync the directory containing path (or path itself if a directory). */
int fsync_dir(const char *dir);
/* mkdir -p with mode. */
int mkdir_p(const char *path, mode_t mode);
/* Current time in milliseconds (monotonic / wall). */
uint64_t now_mono_ms(void);
/* pthread_cond_timedwait for at most ms milliseconds from now (mutex held). */
int cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t ms);
/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF), or 0; reads at most avail bytes. */
size_t utf8_seq_len(const unsigned char *s, size_t avail);
/* True when s[0..len) is well-formed UTF-8. */
bool utf8_valid(const unsigned char *s, size_t len);
#endif
