/* Negative control: never reports; `lockstep bare` must stop at its budget. */
#include "common/test.h"
TEST_BEGIN
1:  j 1b
TEST_END
