/* callgrind's collection switched from Python through ctypes (bench/stream_cpu.py --first):
   cc -O2 -shared -fPIC -o /tmp/cgtoggle.so bench/cgtoggle.c */
#include <valgrind/callgrind.h>

void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
