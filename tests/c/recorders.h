/* What the callbacks of the C tests record: lost-lease notices and events, each log
 * behind its own mutex (callbacks run on the engine's dispatcher thread). */
#ifndef INTERLOCK_TEST_RECORDERS_H
#define INTERLOCK_TEST_RECORDERS_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "interlock.h"

typedef struct {
  pthread_mutex_t mu;
  int calls;
  char reason[32];
  char resource[64];
  char session_id[INTERLOCK_ID_SIZE];
  uint64_t fence;
  int on_caller_thread;
  pthread_t caller;
} lost_log;

#define LOST_LOG_INIT {.mu = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self()}

static inline void on_lost(void *user, const interlock_lost_notice *n) {
  lost_log *log = user;
  pthread_mutex_lock(&log->mu);
  log->calls++;
  snprintf(log->reason, sizeof log->reason, "%s", n->reason);
  snprintf(log->resource, sizeof log->resource, "%s", n->resource);
  snprintf(log->session_id, sizeof log->session_id, "%s", n->session_id);
  log->fence = n->fence;
  if (pthread_equal(pthread_self(), log->caller)) log->on_caller_thread = 1;
  pthread_mutex_unlock(&log->mu);
}

static inline int lost_calls(lost_log *log) {
  pthread_mutex_lock(&log->mu);
  int n = log->calls;
  pthread_mutex_unlock(&log->mu);
  return n;
}

typedef struct {
  pthread_mutex_t mu;
  int count;
  char kinds[64][24];
  char resources[64][24];
  uint64_t first_seq, last_seq;
  int seq_increasing;
  int json_ok;
  interlock_subscription *self; /* for unsubscribing from inside the callback */
} event_log;

#define EVENT_LOG_INIT {.mu = PTHREAD_MUTEX_INITIALIZER, .seq_increasing = 1, .json_ok = 1}

static inline void on_event(void *user, const interlock_event *ev) {
  event_log *log = user;
  pthread_mutex_lock(&log->mu);
  if (log->count < 64) {
    snprintf(log->kinds[log->count], sizeof log->kinds[0], "%s", ev->kind);
    snprintf(log->resources[log->count], sizeof log->resources[0], "%s",
             ev->resource ? ev->resource : "-");
  }
  if (log->count == 0) log->first_seq = ev->seq;
  log->count++;
  if (ev->seq <= log->last_seq) log->seq_increasing = 0;
  log->last_seq = ev->seq;
  if (strstr(ev->json, ev->kind) == NULL || ev->json[0] != '{') log->json_ok = 0;
  pthread_mutex_unlock(&log->mu);
}

static inline int events_seen(event_log *log) {
  pthread_mutex_lock(&log->mu);
  int n = log->count;
  pthread_mutex_unlock(&log->mu);
  return n;
}

#endif
