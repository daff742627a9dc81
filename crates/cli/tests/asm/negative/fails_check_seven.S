/* Negative control for the runner: passes checks 1..6, then fails check 7.
 * `lockstep bare` must exit non-zero and name test 7. */
#include "common/test.h"
TEST_BEGIN
  li a0, 6
  CHECK_EQ(1, a0, 6)
  addi a0, a0, 1
  CHECK_EQ(6, a0, 7)
  CHECK_EQ(7, a0, 8)
TEST_PASS
TEST_END
