/* The header compiles on its own as strict C99 and as C++ (run.sh builds this file both
 * ways), and its typedefs are usable as documented. */
#include "interlock.h"

int main(void) {
  interlock_status ok = INTERLOCK_OK;
  interlock_lease lease;
  lease.token[INTERLOCK_ID_SIZE - 1] = '\0';
  interlock_engine *engine = 0;
  interlock_event_callback on_event = 0;
  interlock_lost_callback on_lost = 0;
  (void)engine;
  (void)on_event;
  (void)on_lost;
  return (int)ok + lease.token[INTERLOCK_ID_SIZE - 1];
}
