#include "common/test.h"
TEST_BEGIN
  li a0, 5
  li a1, 7
  add a2, a0, a1
  CHECK_EQ(1, a2, 12)
TEST_PASS
TEST_END
