/* An engine does not cross fork(): the child has none of the engine's threads, so an
 * inherited engine refuses every call at once with INTERLOCK_CLOSED (saying why) and
 * frees without joining anything; an engine made in the child works; the parent's engine
 * is untouched.
 *
 * The child does as little as it can: its own checks, reported through its exit status
 * and stderr, and _exit() (no atexit handlers, no LeakSanitizer pass over memory the
 * inherited engine's vanished threads own). An alarm() ends a child that hangs, and the
 * parent waits with a deadline, so a hang fails the test rather than CI.
 *
 * It runs under AddressSanitizer too: the one hazard there is that ASan's allocator (as
 * of GCC 12) takes no locks around fork(), so a child forked while another thread was
 * inside malloc could block in its first malloc. The parent therefore forks only once
 * every other thread (the engine's actor and dispatcher) sleeps in the futex system call,
 * i.e. waits for work and holds no allocator lock. glibc's malloc (plain build, valgrind)
 * is fork-safe anyway. */
#define _GNU_SOURCE /* syscall() */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Seconds the child may take before SIGALRM ends it, and the parent waits at most. Both
 * bound a hang only; under valgrind the child needs well under a second. */
enum { CHILD_ALARM = 10, PARENT_DEADLINE = 20 };
/* What "at once" means for a refused call or a free: no waiting for a reply or a join. */
static const double PROMPT = 1.0;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* In the child: a failed check is reported on stderr and counted. */
static int child_failures;
#define CHILD_CHECK(cond)                                                                \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "  child: %s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__,   \
              __LINE__, #cond, interlock_last_error());                                  \
      child_failures++;                                                                  \
    }                                                                                    \
  } while (0)

static int refused_with_fork(interlock_status s) {
  return s == INTERLOCK_CLOSED && strstr(interlock_last_error(), "fork") != NULL;
}

/* The child's whole life. Returns its exit status. */
static int child(interlock_engine *inherited, const char *session, const interlock_lease *held) {
  alarm(CHILD_ALARM);

  /* (a) Calls on the inherited engine are refused at once. An acquire that waits forever
   * for a held resource would hang if it reached for the parent's threads. */
  interlock_acquire_options forever = with_timeout(INFINITY);
  interlock_lease l;
  char *json = NULL;
  char other[INTERLOCK_ID_SIZE];
  double t0 = now_s();
  CHILD_CHECK(refused_with_fork(interlock_acquire(inherited, session, "instrument", &forever, &l)));
  CHILD_CHECK(refused_with_fork(interlock_release(inherited, "instrument", held->token)));
  CHILD_CHECK(refused_with_fork(interlock_locks(inherited, &json)));
  CHILD_CHECK(json == NULL);
  CHILD_CHECK(refused_with_fork(
      interlock_session_open(inherited, "child", NULL, INFINITY, NULL, other)));
  CHILD_CHECK(refused_with_fork(interlock_session_heartbeat(inherited, session)));
  CHILD_CHECK(now_s() - t0 < PROMPT);

  /* (b) Freeing it returns at once: nothing to stop, nothing to join. */
  t0 = now_s();
  interlock_engine_free(inherited);
  CHILD_CHECK(now_s() - t0 < PROMPT);

  /* (c) An engine made in the child works. */
  interlock_engine *mine = NULL;
  CHILD_CHECK(interlock_engine_new(NULL, &mine) == INTERLOCK_OK);
  if (mine != NULL) {
    char s[INTERLOCK_ID_SIZE];
    CHILD_CHECK(interlock_session_open(mine, "child", NULL, INFINITY, NULL, s) == INTERLOCK_OK);
    interlock_acquire_options now = with_timeout(0);
    /* The child's engine is its own: the parent's lease on "instrument" is not in it. */
    CHILD_CHECK(interlock_acquire(mine, s, "instrument", &now, &l) == INTERLOCK_OK);
    bool yes = false;
    CHILD_CHECK(interlock_check(mine, "instrument", s, "control", &yes) == INTERLOCK_OK && yes);
    CHILD_CHECK(interlock_release(mine, "instrument", l.token) == INTERLOCK_OK);
    size_t released = 99;
    CHILD_CHECK(interlock_session_close(mine, s, &released) == INTERLOCK_OK && released == 0);
    interlock_engine_free(mine);
  }
  fflush(stderr);
  return child_failures == 0 ? 0 : 1;
}

/* Whether every thread of this process but the caller sleeps in the futex system call
 * (Linux: /proc/self/task/TID/syscall shows the number of the call a blocked thread is
 * in, "running" for one that is not blocked). */
static int other_threads_wait_on_futex(void) {
  DIR *tasks = opendir("/proc/self/task");
  if (tasks == NULL) return 0;
  long me = syscall(SYS_gettid);
  int all = 1;
  struct dirent *d;
  while (all && (d = readdir(tasks)) != NULL) {
    long tid = atol(d->d_name);
    if (tid <= 0 || tid == me) continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
    FILE *f = fopen(path, "r");
    long nr = -1;
    if (f == NULL || fscanf(f, "%ld", &nr) != 1 || nr != SYS_futex) all = 0;
    if (f != NULL) fclose(f);
  }
  closedir(tasks);
  return all;
}

/* Waits for `pid` for at most PARENT_DEADLINE seconds; kills it if it is still there. */
static int wait_with_deadline(pid_t pid, int *status) {
  double deadline = now_s() + PARENT_DEADLINE;
  for (;;) {
    pid_t got = waitpid(pid, status, WNOHANG);
    if (got == pid) return 1;
    if (got < 0 && errno != EINTR) return 0;
    if (now_s() > deadline) {
      fprintf(stderr, "  the child did not exit within %d s; killing it\n", PARENT_DEADLINE);
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      return 0;
    }
    sleep_s(0.01);
  }
}

static void test_an_engine_does_not_cross_a_fork(void) {
  interlock_engine *e = new_engine();
  char s[INTERLOCK_ID_SIZE], t[INTERLOCK_ID_SIZE];
  open_session(e, "parent", s);
  open_session(e, "other", t);
  interlock_lease held;
  CHECK_OK(interlock_acquire(e, s, "instrument", NULL, &held));
  bool yes = false;
  CHECK_OK(interlock_check_fence(e, "instrument", held.fence, &yes));
  CHECK(yes);
  /* Fork only while the engine's threads wait for work (see the top of this file). */
  CHECK(EVENTUALLY(other_threads_wait_on_futex()));

  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) _exit(child(e, s, &held));
  CHECK(pid > 0);
  if (pid > 0) {
    int status = 0;
    CHECK(wait_with_deadline(pid, &status));
    if (WIFSIGNALED(status)) fprintf(stderr, "  the child died of signal %d\n", WTERMSIG(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

  /* The parent's engine still works, and the child changed nothing in it. */
  CHECK_OK(interlock_check_fence(e, "instrument", held.fence, &yes));
  CHECK(yes);
  interlock_acquire_options now = with_timeout(0);
  interlock_lease l;
  CHECK_STATUS(interlock_acquire(e, t, "instrument", &now, &l), INTERLOCK_TIMEOUT);
  CHECK_OK(interlock_release(e, "instrument", held.token));
  CHECK_OK(interlock_acquire(e, t, "instrument", &now, &l));
  CHECK(l.fence > held.fence);
  CHECK_OK(interlock_release(e, "instrument", l.token));
  interlock_engine_free(e);
}

int main(void) {
  RUN(test_an_engine_does_not_cross_a_fork);
  return summary("test_fork");
}
