/*
 * Configuration of the anti-spam engine: the sections [greylist], [lists],
 * [dnsbl NAME], [dnswl NAME], [postscreen], [spam], [rspamd] and
 * [ratelimit] (docs/antispam.md has the user's view).
 *
 * struct filter_config is flat (no pointers), so the struct config that
 * embeds it can be copied by value.  The core configuration parser hands
 * every key of these sections to filter_config_key(); the lists given in
 * the file are kept as text here and compiled by the engine.
 */
#ifndef POSTEL_FILTER_CONFIG_H
#define POSTEL_FILTER_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FILTER_DNSL_MAX        16      /* [dnsbl] + [dnswl] sections */
#define FILTER_DNSL_NAME_MAX   32
#define FILTER_CODES_MAX       16      /* codes per list */
#define FILTER_CODE_NAME_MAX   24
#define FILTER_LIST_TEXT_MAX   4096    /* each [lists] key, all its lines joined */
#define FILTER_URL_MAX         256

/* What a check does when it fires. */
enum filter_mode {
    FILTER_MODE_OFF = 0,
    FILTER_MODE_SCORE,     /* adds its score to the message's score */
    FILTER_MODE_REJECT,    /* refuses the client (5xx) */
    FILTER_MODE_ACCEPT,    /* [dnswl] only: trust the client like allow_ip */
};

/* A connection check of [postscreen]: "off", "score N" or "reject". */
struct filter_check_cfg {
    enum filter_mode mode;
    double score;
};

/* One entry of a list's "codes": which answers (127.0.0.x) it matches and
 * what they mean.  An answer matches when each octet lies in [lo, hi], and
 * when bitmask is set, when (last octet & bitmask) != 0 instead. */
struct filter_code {
    uint8_t lo[4], hi[4];
    uint8_t bitmask;
    char name[FILTER_CODE_NAME_MAX];    /* "" = none */
    bool has_weight;
    double weight;                      /* overrides the list's weight */
    enum filter_mode mode;              /* OFF = the list's action */
};

enum filter_dnsl_kind { FILTER_DNSBL = 0, FILTER_DNSWL };
enum filter_dnsl_type { FILTER_DNSL_IP = 0, FILTER_DNSL_DOMAIN };

/* Which names a domain list ([dnsbl NAME] type = domain) looks up. */
#define FILTER_CHECK_SENDER  1u        /* envelope sender's domain (MAIL) */
#define FILTER_CHECK_HELO    2u        /* HELO/EHLO name */
#define FILTER_CHECK_FROM    4u        /* From: header's domain (end of DATA) */

struct filter_dnsl_cfg {
    char name[FILTER_DNSL_NAME_MAX];   /* from the section header */
    enum filter_dnsl_kind kind;
    enum filter_dnsl_type type;
    char zone[254];
    double weight;                     /* [dnswl]: subtracted from the score */
    enum filter_mode mode;             /* SCORE, REJECT ([dnsbl]); SCORE, ACCEPT ([dnswl]) */
    struct filter_code codes[FILTER_CODES_MAX];
    int n_codes;                       /* 0: any 127.0.0.0/24 answer, as one code */
    unsigned timeout_ms;
    unsigned checks;                   /* FILTER_CHECK_* for type = domain */
};

/* Built-in scoring rules whose scores [spam] may override. */
enum filter_rule {
    FILTER_R_MISSING_DATE,
    FILTER_R_MISSING_MESSAGE_ID,
    FILTER_R_MISSING_FROM,
    FILTER_R_MISSING_SUBJECT,
    FILTER_R_FROM_DISPLAY_SPOOF,
    FILTER_R_SUBJECT_ALL_CAPS,
    FILTER_R_HTML_ONLY,
    FILTER_R_EXECUTABLE_ATTACHMENT,
    FILTER_R_SPF_PASS,
    FILTER_R_SPF_FAIL,
    FILTER_R_SPF_SOFTFAIL,
    FILTER_R_DKIM_PASS,
    FILTER_R_DKIM_FAIL,
    FILTER_R_DMARC_PASS,
    FILTER_R_DMARC_FAIL,
    FILTER_R_COUNT
};

struct filter_config {
    /* [greylist] */
    bool greylist_enabled;
    uint64_t greylist_min_delay;       /* seconds */
    uint64_t greylist_window;
    uint64_t greylist_expire;
    int greylist_auto_allow;           /* passes before an IP is allowed; 0 = never */
    int greylist_v4_prefix, greylist_v6_prefix;

    /* [lists]: comma-separated entries as written (repeated keys append) */
    char allow_ip[FILTER_LIST_TEXT_MAX];
    char block_ip[FILTER_LIST_TEXT_MAX];
    char allow_sender[FILTER_LIST_TEXT_MAX];
    char block_sender[FILTER_LIST_TEXT_MAX];
    char rcpt_exceptions[FILTER_LIST_TEXT_MAX];
    bool allow_loopback;               /* 127.0.0.0/8 and ::1 are allow-listed */
    bool allow_sender_spf;             /* domain entries of allow_sender need SPF pass */

    /* [dnsbl NAME], [dnswl NAME] */
    struct filter_dnsl_cfg dnsl[FILTER_DNSL_MAX];
    int n_dnsl;

    /* [postscreen] */
    struct filter_check_cfg pregreet, pipelining, fcrdns, helo;
    uint64_t greet_wait_ms;            /* hold the banner this long (pregreet test); 0 = off */

    /* [spam] */
    double add_header_score;           /* >= : X-Spam: Yes, filed into Junk */
    double reject_score;               /* >= : 550 5.7.1; 0 = never */
    double rule_score[FILTER_R_COUNT];

    /* [rspamd] */
    char rspamd_url[FILTER_URL_MAX];   /* "" = off */
    uint64_t rspamd_timeout_ms;

    /* [ratelimit]: 0 = no limit */
    int conn_per_minute;               /* per client address (IPv6: per /64) */
    int msgs_per_hour;                 /* per client address */
    int user_msgs_per_hour;            /* per authenticated user */
    int auth_fail_per_hour;            /* failed AUTH per client address, then 421 */
};

/* Names and default scores of the built-in rules (index: enum filter_rule). */
extern const char *const filter_rule_names[FILTER_R_COUNT];
extern const double filter_rule_default_scores[FILTER_R_COUNT];

/* The values that apply when the file says nothing. */
void filter_config_defaults(struct filter_config *fc);

/* True when section (as in the file, e.g. "dnsbl zen") belongs to the
 * anti-spam engine.  The core parser calls it for section headers so that
 * it does not report them as unknown, and may call it before
 * filter_config_key() to route keys. */
bool filter_config_section(const char *section);

/* One key of one of the engine's sections.  Returns 0 when set, -1 for a
 * bad value (err filled with a message, without file:line), 1 when the
 * section or the key is not the engine's (err filled too, so the caller
 * may print it).  [lists] keys append when repeated, so long lists may be
 * spread over several lines; an empty value clears the list. */
int filter_config_key(struct filter_config *fc, const char *section, const char *name,
                      const char *value, char *err, size_t errsize);

/* Checks the whole configuration after the file was read (a [dnsbl]
 * without zone, thresholds in the wrong order, list entries that do not
 * parse).  0, or -1 with err filled (one problem). */
int filter_config_finish(const struct filter_config *fc, char *err, size_t errsize);

/* Parses one "codes" entry ("127.0.0.2 sbl 4", "127.0.0.[4..7] xbl reject",
 * "127.0.0.0/24", "&4 grey 1.5").  0, or -1 with err filled. */
int filter_code_parse(const char *text, struct filter_code *code, char *err, size_t errsize);
/* Does answer (an IPv4 address in network order) match code? */
bool filter_code_match(const struct filter_code *code, const uint8_t answer[4]);

/* Parses a mode value "off", "score N", "reject" (or "accept" when
 * allow_accept).  0 or -1. */
int filter_mode_parse(const char *value, bool allow_accept, struct filter_check_cfg *out);
#endif
