// SPDX-License-Identifier: MIT
/* Prints the engine's tensor type table for tests/e2e/test_inspect.py. */
#include <stdio.h>

#include "format/ggml_types.h"

int main(void)
{
	unsigned int t;

	for (t = 0; t < GGML_TYPE_COUNT; t++) {
		const struct ggml_type_info *ti = ggml_type_get(t);

		if (ti)
			printf("%u %s %u %u\n", t, ti->name, ti->block_elems,
			       ti->block_bytes);
	}
	return 0;
}
