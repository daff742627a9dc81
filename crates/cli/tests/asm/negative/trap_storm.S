/* Negative control: the trap vector points at unmapped memory, so every
 * trap faults again on fetch; `lockstep bare` must report a trap loop. */
#include "common/test.h"
TEST_BEGIN
  li t0, 0x40000000
  csrw mtvec, t0
  .word 0          /* illegal instruction */
TEST_END
