/*
 * The DKIM key lookup (dkim_lookup_fn) on the synchronous resolver of
 * src/dns: TXT records at "selector._domainkey.domain".
 */
#include "auth/dkim.h"

#include "dns/dns.h"

enum dkim_dns_status dkim_lookup_dns(const char *name, struct dkim_txt *txt, void *resolver)
{
    struct dns_result res = { 0 };
    enum dns_status st = dns_query(resolver, name, DNS_T_TXT, &res);
    enum dkim_dns_status out = DKIM_DNS_NONE;
    if (st == DNS_TEMPFAIL) {
        out = DKIM_DNS_TEMPFAIL;
    } else if (st == DNS_OK) {
        for (size_t i = 0; i < res.n; i++)
            if (res.rr[i].type == DNS_T_TXT && res.rr[i].text != NULL)
                dkim_txt_add(txt, res.rr[i].text, res.rr[i].text_len);
        out = txt->n > 0 ? DKIM_DNS_FOUND : DKIM_DNS_NONE;
    }
    /* NXDOMAIN, NODATA and an unqueryable name: no key (RFC 6376 6.1.2). */
    dns_result_free(&res);
    return out;
}
