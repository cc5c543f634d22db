/* A minimal test harness for the C tests of interlock.
 *
 * Each test is a function run by RUN(); CHECK* macros record a failure and carry on.
 * Every test prints "ok - name" or "FAIL - name"; tests/c/run.sh counts these lines. */
#ifndef INTERLOCK_TEST_CHECK_H
#define INTERLOCK_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "interlock.h"

static int check_failures; /* in the current test */
static int tests_passed, tests_failed;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);         \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

/* Checks that `expr` returns the status `want`; prints the message if not. */
#define CHECK_STATUS(expr, want)                                                         \
  do {                                                                                   \
    interlock_status got_ = (expr);                                                      \
    if (got_ != (interlock_status)(want)) {                                              \
      fprintf(stderr, "  %s:%d: %s\n    returned %s (%s), expected %s\n", __FILE__,      \
              __LINE__, #expr, interlock_status_name(got_), interlock_last_error(),      \
              interlock_status_name(want));                                              \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, INTERLOCK_OK)

#define CHECK_STR(a, b)                                                                  \
  do {                                                                                   \
    const char *a_ = (a), *b_ = (b);                                                     \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                               \
      fprintf(stderr, "  %s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

#define RUN(test)                                                                        \
  do {                                                                                   \
    check_failures = 0;                                                                  \
    test();                                                                              \
    if (check_failures == 0) {                                                           \
      printf("ok - %s\n", #test);                                                        \
      tests_passed++;                                                                    \
    } else {                                                                             \
      printf("FAIL - %s\n", #test);                                                      \
      tests_failed++;                                                                    \
    }                                                                                    \
    fflush(stdout);                                                                      \
  } while (0)

static inline int summary(const char *program) {
  printf("-- %s: %d ok, %d failed\n", program, tests_passed, tests_failed);
  return tests_failed == 0 ? 0 : 1;
}

static inline void sleep_s(double seconds) {
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

/* Polls `cond` every 5 ms for up to 10 s (generous: this bounds a wait for an event
 * that must come, it is not a claim about speed). Evaluates to the last result. */
#define EVENTUALLY(cond)                                                                 \
  ({                                                                                     \
    int ok_ = 0;                                                                         \
    for (int i_ = 0; i_ < 2000 && !(ok_ = (cond)); i_++) sleep_s(0.005);                  \
    ok_;                                                                                 \
  })

static inline interlock_engine *new_engine(void) {
  interlock_engine *engine = NULL;
  interlock_status s = interlock_engine_new(NULL, &engine);
  if (s != INTERLOCK_OK) {
    fprintf(stderr, "interlock_engine_new: %s\n", interlock_last_error());
    exit(2);
  }
  return engine;
}

/* Opens a session named `name` with default settings; its id goes to `id`. */
static inline void open_session(interlock_engine *engine, const char *name,
                                char id[INTERLOCK_ID_SIZE]) {
  interlock_status s = interlock_session_open(engine, name, NULL, INFINITY, NULL, id);
  if (s != INTERLOCK_OK) {
    fprintf(stderr, "interlock_session_open: %s\n", interlock_last_error());
    exit(2);
  }
}

/* Acquire options with `timeout` and otherwise the defaults. */
static inline interlock_acquire_options with_timeout(double timeout) {
  interlock_acquire_options o;
  interlock_acquire_options_init(&o);
  o.timeout = timeout;
  return o;
}

/* How many times `needle` occurs in `haystack`. */
static inline int count_of(const char *haystack, const char *needle) {
  int n = 0;
  for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* The status JSON of `resource` (caller frees), or NULL. */
static inline char *status_json(interlock_engine *engine, const char *resource) {
  char *json = NULL;
  if (interlock_resource_status(engine, resource, &json) != INTERLOCK_OK) return NULL;
  return json;
}

/* Whether the status JSON of `resource` contains `needle`. */
static inline int status_has(interlock_engine *engine, const char *resource, const char *needle) {
  char *json = status_json(engine, resource);
  int found = json != NULL && strstr(json, needle) != NULL;
  interlock_string_free(json);
  return found;
}

/* How many waiters `resource` has, or -1. */
static inline int waiters_of(interlock_engine *engine, const char *resource) {
  char *json = status_json(engine, resource);
  if (json == NULL) return -1;
  int n = count_of(json, "\"queued_at\"");
  interlock_string_free(json);
  return n;
}

#endif
