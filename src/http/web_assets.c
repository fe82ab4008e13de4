/*
 * The web UI's static files, embedded at build time: build/web_assets.h
 * is generated from the files under web/ by scripts/embed.sh (see the
 * Makefile).  The
 * header is found through -I$(BUILD) when the Makefile passes it, else
 * relative to this file in the default build directory.
 */
#include "http/capture.h"

#include <string.h>

#if defined(__has_include)
#if __has_include("web_assets.h")
#include "web_assets.h"
#else
#include "../../build/web_assets.h"
#endif
#else
#include "../../build/web_assets.h"
#endif

static const struct web_asset assets[] = { WEB_ASSETS_TABLE };

const struct web_asset *web_asset_find(const char *path)
{
    for (const struct web_asset *a = assets; a->path != NULL; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}
