/* A scenario process in C: the command language of worker_py.py (its docstring), the
 * common commands only:
 *
 *   connect URL TTL
 *   open NAME [ON_EXPIRE [TTL]]      ON_EXPIRE release | keep | - ; TTL seconds | -
 *   acquire RES MODE PRIO PREEMPT TIMEOUT BREAK_STALE HOLD
 *   release RES
 *   ping
 *   sleep S
 *   exit
 *
 * Commands run one after the other on the main thread (an acquire blocks it, as in a C
 * program that waits for its instrument); on_lost runs on the engine's dispatcher thread.
 * What happens goes to stdout as JSON lines {"ev": ..., "t": unix seconds, ...}, each
 * time taken at the event (a grant: when interlock_acquire returned; a loss: first thing
 * in the callback). */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "interlock.h"

static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `s` as a JSON string (quotes and control characters escaped) into `buf`. */
static const char *js(const char *s, char *buf, size_t n) {
  size_t j = 0;
  if (s == NULL) {
    snprintf(buf, n, "null");
    return buf;
  }
  buf[j++] = '"';
  for (; *s && j + 8 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[j++] = '\\';
      buf[j++] = (char)c;
    } else if (c < 0x20) {
      j += (size_t)snprintf(buf + j, n - j, "\\u%04x", c);
    } else {
      buf[j++] = (char)c;
    }
  }
  buf[j++] = '"';
  buf[j] = 0;
  return buf;
}

/* One JSON line: {"ev": ev, "t": t, FIELDS} where `fields` is already JSON text. */
static void emit(const char *ev, double t, const char *fmt, ...) {
  char fields[4096] = "";
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_lock(&out);
  printf("{\"ev\": \"%s\", \"t\": %.6f%s%s}\n", ev, t, fields[0] ? ", " : "", fields);
  fflush(stdout);
  pthread_mutex_unlock(&out);
}

static void fail(const char *ev, const char *res, interlock_status st) {
  char r[512], m[2048];
  emit(ev, wall(), "\"res\": %s, \"error\": \"%s\", \"message\": %s", js(res, r, sizeof r),
       interlock_status_name(st), js(interlock_last_error(), m, sizeof m));
}

#define MAX_LEASES 64
typedef struct {
  char resource[256];
  interlock_lease lease;
  int used;
} slot;
static slot leases[MAX_LEASES];

static interlock_engine *engine = NULL;
static char session[INTERLOCK_ID_SIZE] = "";

static void on_lost(void *user, const interlock_lost_notice *n) {
  double t = wall();
  (void)user;
  char r[512], s[64], why[64];
  emit("lost", t, "\"res\": %s, \"fence\": %llu, \"reason\": %s, \"session\": %s",
       js(n->resource, r, sizeof r), (unsigned long long)n->fence,
       js(n->reason, why, sizeof why), js(n->session_id, s, sizeof s));
}

static slot *find(const char *res) {
  for (int i = 0; i < MAX_LEASES; i++)
    if (leases[i].used && strcmp(leases[i].resource, res) == 0) return &leases[i];
  return NULL;
}

static void release(const char *res) {
  char r[512];
  slot *l = find(res);
  if (l == NULL) {
    emit("release_failed", wall(), "\"res\": %s, \"error\": \"NoLease\"", js(res, r, sizeof r));
    return;
  }
  emit("releasing", wall(), "\"res\": %s, \"fence\": %llu", js(res, r, sizeof r),
       (unsigned long long)l->lease.fence);
  interlock_status st = interlock_release(engine, res, l->lease.token);
  if (st != INTERLOCK_OK) {
    fail("release_failed", res, st);
  } else {
    emit("released", wall(), "\"res\": %s, \"fence\": %llu", js(res, r, sizeof r),
         (unsigned long long)l->lease.fence);
  }
  /* A lease whose release failed with LOCK_LOST stays in its slot: on_lost may still come,
   * and its user data (none) is static. The slot is reused by the next grant of res. */
}

static void acquire(const char *res, const char *mode, unsigned prio, int preempt,
                    double timeout, int break_stale, double hold) {
  char r[512], s[64];
  interlock_acquire_options o;
  interlock_acquire_options_init(&o);
  o.mode = mode;
  o.priority = prio;
  o.preempt = preempt != 0;
  o.timeout = timeout;
  o.break_stale = break_stale != 0;
  o.on_lost = on_lost;
  emit("acquiring", wall(), "\"res\": %s, \"mode\": \"%s\", \"priority\": %u, \"session\": %s",
       js(res, r, sizeof r), mode, prio, js(session, s, sizeof s));
  interlock_lease lease;
  interlock_status st = interlock_acquire(engine, session, res, &o, &lease);
  double t = wall();
  if (st != INTERLOCK_OK) {
    fail("acquire_failed", res, st);
    return;
  }
  slot *l = find(res);
  for (int i = 0; l == NULL && i < MAX_LEASES; i++)
    if (!leases[i].used) l = &leases[i];
  if (l == NULL) {
    emit("error", wall(), "\"error\": \"too many leases\"");
    return;
  }
  l->used = 1;
  snprintf(l->resource, sizeof l->resource, "%s", res);
  l->lease = lease;
  emit("granted", t, "\"res\": %s, \"fence\": %llu, \"mode\": \"%s\", \"session\": %s, "
       "\"acquired_at\": %.6f", js(res, r, sizeof r), (unsigned long long)lease.fence,
       lease.mode, js(session, s, sizeof s), lease.acquired_at);
  if (hold >= 0) {
    usleep((useconds_t)(hold * 1e6));
    release(res);
  }
}

static void ping(void) {
  double start = wall();
  int failures = 0;
  for (;;) {
    char *json = NULL;
    interlock_status st = interlock_resource_status(engine, "ping", &json);
    interlock_string_free(json);
    if (st == INTERLOCK_OK) break;
    failures++;
    if (st != INTERLOCK_CONNECTION_LOST || wall() - start > 30) {
      fail("ping_failed", "ping", st);
      return;
    }
    usleep(20000);
  }
  emit("pong", wall(), "\"waited\": %.6f, \"failures\": %d", wall() - start, failures);
}

int main(void) {
  char line[4096];
  emit("ready", wall(), "\"pid\": %d, \"lang\": \"c\"", (int)getpid());
  while (fgets(line, sizeof line, stdin) != NULL) {
    char *w[10] = {0};
    int n = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok != NULL && n < 10; tok = strtok(NULL, " \t\r\n"))
      w[n++] = tok;
    if (n == 0) continue;
    if (strcmp(w[0], "exit") == 0) break;
    if (strcmp(w[0], "connect") == 0 && n >= 3) {
      interlock_connect_options o;
      interlock_connect_options_init(&o);
      o.session_ttl = strtod(w[2], NULL);
      interlock_status st = interlock_engine_connect(w[1], &o, &engine);
      if (st != INTERLOCK_OK) {
        fail("error", w[1], st);
      } else {
        char u[512];
        emit("connected", wall(), "\"url\": %s, \"pid\": %d", js(w[1], u, sizeof u), (int)getpid());
      }
    } else if (strcmp(w[0], "open") == 0 && n >= 2) {
      const char *on_expire = (n >= 3 && strcmp(w[2], "-") != 0) ? w[2] : NULL;
      double ttl = (n >= 4 && strcmp(w[3], "-") != 0) ? strtod(w[3], NULL) : INFINITY;
      char meta[128];
      snprintf(meta, sizeof meta, "{\"pid\": %d, \"lang\": \"c\"}", (int)getpid());
      interlock_status st = interlock_session_open(engine, w[1], meta, ttl, on_expire, session);
      if (st != INTERLOCK_OK) {
        fail("error", w[1], st);
      } else {
        char s[64], nm[512];
        emit("opened", wall(), "\"session\": %s, \"name\": %s", js(session, s, sizeof s),
             js(w[1], nm, sizeof nm));
      }
    } else if (strcmp(w[0], "acquire") == 0 && n >= 8) {
      acquire(w[1], w[2], (unsigned)strtoul(w[3], NULL, 10), atoi(w[4]), strtod(w[5], NULL),
              atoi(w[6]), strtod(w[7], NULL));
    } else if (strcmp(w[0], "release") == 0 && n >= 2) {
      release(w[1]);
    } else if (strcmp(w[0], "ping") == 0) {
      ping();
    } else if (strcmp(w[0], "sleep") == 0 && n >= 2) {
      usleep((useconds_t)(strtod(w[1], NULL) * 1e6));
    } else {
      char m[512];
      emit("error", wall(), "\"error\": \"UnknownCommand\", \"message\": %s", js(w[0], m, sizeof m));
    }
  }
  emit("bye", wall(), NULL);
  interlock_engine_free(engine);
  return 0;
}
