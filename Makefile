# postel — one binary, one Makefile.
#
#   make            build ./postel
#   make deps       install every Debian package the build, tests and benches need
#   make test       unit tests, then integration tests (pytest with real clients)
#   make run        run postel on its embedded development defaults
#   make asan       ASan+UBSan build running the same tests
#   make fuzz-smoke every libFuzzer target for a few seconds each
#   make bench      benchmarks against Postfix / Dovecot in the same run

PKGS    := libevent libevent_openssl libevent_pthreads openssl sqlite3 inih \
           jansson libpsl libidn2 libcrypt zlib libunbound
CC      ?= cc
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Isrc -I$(BUILD) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
BUILD   ?= build

SRCS     := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
WEB_FILES := $(shell find web -type f 2>/dev/null | sort)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
PY      := /usr/bin/python3

.PHONY: all deps test unit integration run asan fuzz fuzz-smoke bench clean

all: deps postel

# Installs quietly and only what is missing; safe to run again.
deps:
	@./scripts/deps.sh

# Replaced by rename, so a running ./postel does not make the copy fail.
postel: $(BUILD)/postel
	@cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/postel: $(BUILD)/src/main.o $(BUILD)/libpostel.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libpostel.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# Static web files are compiled into the binary (no build step needs the network).
$(BUILD)/src/http/web_assets.o: $(BUILD)/web_assets.h
$(BUILD)/web_assets.h: $(WEB_FILES) scripts/embed.sh
	@mkdir -p $(BUILD)
	./scripts/embed.sh $(WEB_FILES) > $@

$(BUILD)/unit/%: tests/unit/%.c tests/unit/unit.h $(BUILD)/libpostel.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libpostel.a $(LDLIBS)

unit: deps $(UNIT_BINS)
	@./tests/unit/run.sh $(UNIT_BINS)

integration: deps postel
	@POSTEL_BIN=$(CURDIR)/postel ./tests/integration/run.sh

test: unit integration

run: all
	./postel serve

asan:
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" unit
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" build-asan/postel
	ASAN_OPTIONS=detect_leaks=0 POSTEL_BIN=$(CURDIR)/build-asan/postel ./tests/integration/run.sh

FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
fuzz: deps
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_FLAGS)" build-fuzz/libpostel.a
	@mkdir -p build-fuzz/fuzz
	@for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang $(CFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz/$$n $$f build-fuzz/libpostel.a $(LDLIBS) || exit 1; done

fuzz-smoke: fuzz
	@./tests/fuzz/smoke.sh build-fuzz/fuzz $(FUZZ_SECONDS)

bench: all
	@./bench/run.sh

clean:
	rm -rf build build-asan build-fuzz postel

-include $(LIB_OBJS:.o=.d) $(BUILD)/src/main.d
