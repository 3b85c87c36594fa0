// SPDX-License-Identifier: MIT
#include "hash.h"

#include <errno.h>
#include <stdlib.h>

int hash_index_init(struct hash_index *ix, uint64_t n)
{
	uint64_t cap = 4;

	ix->slot = NULL;
	ix->mask = 0;
	if (n >= 1ull << 31)
		return -ENOMEM;
	while (cap < 2 * n)
		cap <<= 1;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	if (!ix->slot)
		return -ENOMEM;
	ix->mask = cap - 1;
	return 0;
}

void hash_index_free(struct hash_index *ix)
{
	free(ix->slot);
	ix->slot = NULL;
	ix->mask = 0;
}
